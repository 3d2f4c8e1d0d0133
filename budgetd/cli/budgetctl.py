"""`budgetctl`: see spend, pause, resume, check a config.

Address and token default from BUDGETD_ADDRESS and BUDGETD_TOKEN; the
address is host:port, http://host:port or https://host:port (TLS). Every
failure is one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from decimal import Decimal

from budgetd_client import AgentStatus, Budget, BudgetError, WindowStatus
from budgetd_client._core import unreachable

from ..config import ConfigError, load_config
from ..jsonable import REPORT_FIELDS, report_json, report_values, status_json
from . import reconcile_view


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _on_defaults(st: AgentStatus) -> bool:
    return st.budget_source == "defaults"


def _ran_today(st: AgentStatus) -> bool:
    return st.paused or bool(st.daily.spent_usd or st.daily.reserved_usd)


def _usd(amount: Decimal | None) -> str:
    return "-" if amount is None else f"${amount:,.4f}"


def _pause_text(st: AgentStatus) -> str:
    if not st.paused:
        return ""
    until = f" until {st.resumes_at:%Y-%m-%d %H:%M}Z" if st.resumes_at else " until resumed"
    by = "" if st.paused_by in (f"agent:{st.agent_id}", st.scope) else f" [{st.paused_by}]"
    return f"PAUSED{by}{until}: {st.pause_reason}"


def status_table(statuses: list[AgentStatus]) -> str:
    header = ("AGENT", "WINDOW", "PERIOD", "SPENT", "RESERVED", "CAP", "REMAINING", "STATE")
    rows = [header]
    for st in statuses:
        # "(defaults)": nothing in the config names it (a new agent, or a typo in its id).
        name = st.agent_id or f"tag {st.scope}"  # a tag value's status has no agent
        who = f"{name} (defaults)" if _on_defaults(st) else name
        windows: list[tuple[str, WindowStatus]] = [(who, st.daily), ("", st.monthly)]
        for group in st.groups:
            windows += [(f"  group {group.name}", group.daily), ("", group.monthly)]
        for i, (who, w) in enumerate(windows):
            rows.append((who, w.window, w.period, _usd(w.spent_usd), _usd(w.reserved_usd), _usd(w.cap_usd),
                         _usd(w.remaining_usd), _pause_text(st) if i == 0 else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
                     for row in rows)


def _config_line(info) -> str:
    line = f"config generation {info.generation}"
    if info.loaded_at:
        line += f", loaded {info.loaded_at:%Y-%m-%d %H:%M:%S}Z from {info.source}"
    if info.last_error:
        line += f"\nlast rejected edit ({info.last_error_at:%Y-%m-%d %H:%M:%S}Z): {info.last_error}"
    return line


CSV_TOTAL = "(total)"  # the key of CSV's last row: the total of every row


def _percent(rate: Decimal | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def render_report(report, fmt: str) -> str:
    """Rows biggest spend first (with --top, only that many), then the total
    of every row: JSON's "total", CSV's last row (key "(total)"), the
    table's TOTAL line."""
    total = report.total
    if fmt == "json":
        return json.dumps(report_json(report), indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([report.by, *REPORT_FIELDS])
        writer.writerows(["" if v is None else v for v in [r.key, *report_values(r)]] for r in report.rows)
        if total is not None:
            writer.writerow(["" if v is None else v for v in [CSV_TOTAL, *report_values(total)]])
        return out.getvalue().rstrip("\n")
    header = (report.by.upper(), "SPEND", "REQUESTS", "AVG/REQUEST", "CACHE HIT", "P95 INPUT")

    def line(key: str, r) -> tuple[str, ...]:
        p95 = "-" if r.p95_input_tokens is None else f"{r.p95_input_tokens:,}"
        return key, _usd(r.cost_usd), f"{r.calls:,}", _usd(r.avg_cost_usd), _percent(r.cache_hit_rate), p95

    rows = [header] + [line(r.key, r) for r in report.rows]
    if total is not None:
        rows.append(line("TOTAL", total))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in rows]
    shown = (f", top {len(report.rows)} of {report.rows_in_all} rows; TOTAL covers all {report.rows_in_all}"
             if report.rows_in_all > len(report.rows) else "")
    return f"{report.since} .. {report.until}{shown}\n" + "\n".join(lines)


def write_export(messages, fmt: str, out) -> None:
    """Each CostEvent as it streams in: a JSON line, or a CSV row under a header."""
    from .. import export

    if fmt == "csv":
        out.write(export.csv_header())
    line = export.csv_line if fmt == "csv" else export.json_line
    for message in messages:
        out.write(line(export.from_proto(message)))
    out.flush()


def _health(budget: Budget) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    tls = budget.settings.tls
    address = budget.settings.address
    with (grpc.secure_channel(address, tls.credentials()) if tls else grpc.insecure_channel(address)) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=budget.settings.timeout
            )
        except grpc.RpcError as err:
            said = unreachable(err.details() or "") if err.code() == grpc.StatusCode.UNAVAILABLE else err.code().name
            print(f"budgetctl: budgetd at {address}: {said}", file=sys.stderr)
            return 1
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(f"{budget.settings.address}: {name}")
    return 0 if answer.status == health_pb2.HealthCheckResponse.SERVING else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="budgetctl", description="Operate budgetd.")
    parser.add_argument("--address", help="budgetd address (default: $BUDGETD_ADDRESS or localhost:50051)")
    parser.add_argument("--token", help="bearer token (default: $BUDGETD_TOKEN)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per call")
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="spend, holds, caps and pauses")
    status.add_argument("agent", nargs="?", help="one agent (default: every known agent)")
    status.add_argument("--tag", metavar="KEY=VALUE",
                        help="a budgeted tag value's windows and pause instead, e.g. customer=acme")
    status.add_argument("--format", choices=["table", "json"], default="table")
    status.add_argument("--unconfigured", action="store_true",
                        help="only agents running on defaults (not named in the config) that spent, held or were "
                             "paused today: new agents, or typos in agent ids")
    pause = commands.add_parser("pause", help="pause an agent (or a tag value) until resumed")
    pause.add_argument("agent", nargs="?")
    pause.add_argument("--tag", metavar="KEY=VALUE", help="pause every call carrying this tag value instead")
    pause.add_argument("--reason", default="", help="shown to the agent and in status")
    resume = commands.add_parser("resume", help="lift an agent's (or a tag value's) pause")
    resume.add_argument("agent", nargs="?")
    resume.add_argument("--tag", metavar="KEY=VALUE", help="resume this tag value instead")
    check = commands.add_parser("check-config", help="validate a budgets.yaml offline")
    check.add_argument("file")
    commands.add_parser("health", help="exit 0 when budgetd reports SERVING (for probes)")
    report = commands.add_parser("report", help="spend from the ledger, grouped")
    report.add_argument("--by", default="agent",
                        help="optional (default: agent): agent, model, feature, route, customer, environment, day, "
                             "group or any tag key")
    report.add_argument("--since", default="", help="first local day, YYYY-MM-DD (default: today)")
    report.add_argument("--until", default="", help="last local day, YYYY-MM-DD (default: today)")
    report.add_argument("--month", default="", help="a month, YYYY-MM: its first to its last day (not with --since "
                                                    "or --until)")
    report.add_argument("--top", type=int, default=0, help="only the N rows of the biggest spend (the total still "
                                                           "covers every row)")
    report.add_argument("--format", choices=["table", "csv", "json"], default="table")
    export = commands.add_parser("export", help="every cost event (ledger row) of a range of days, to stdout")
    export.add_argument("--since", default="", help="first local day, YYYY-MM-DD (default: today)")
    export.add_argument("--until", default="", help="last local day, YYYY-MM-DD (default: today)")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl",
                        help="jsonl: one JSON object a line; csv: a header, then a row an event (docs/export.md)")
    reconcile = commands.add_parser("reconcile", help="the ledger against the providers' own cost reports "
                                                      "(exit 2: a difference past tolerance or a provider failing)")
    reconcile.add_argument("--day", default="", help="one UTC day, YYYY-MM-DD")
    reconcile.add_argument("--since", default="", help="first UTC day (default: yesterday)")
    reconcile.add_argument("--until", default="", help="last UTC day (default: today)")
    reconcile.add_argument("--provider", default="", choices=["", "openai", "anthropic"], help="only this one")
    reconcile.add_argument("--run", action="store_true", help="read the providers' reports again now (at most "
                                                              "31 days), then show")
    reconcile.add_argument("--format", choices=["table", "csv", "json"], default="table")
    args = parser.parse_args(argv)
    if args.command == "reconcile" and args.day:
        if args.since or args.until:
            parser.error("reconcile: give --day, or --since and --until, not both")
        args.since = args.until = args.day

    if args.command == "check-config":
        try:
            config = load_config(args.file)
        except ConfigError as err:
            print(err, file=sys.stderr)
            return 1
        print(f"{args.file}: OK ({_plural(len(config.agents), 'agent')}, {_plural(len(config.groups), 'group')}, "
              f"timezone {config.timezone})")
        return 0

    try:
        budget = Budget(args.address, token=args.token, timeout=args.timeout)
    except ValueError as err:  # an address or timeout we cannot use
        print(f"budgetctl: {err}", file=sys.stderr)
        return 1
    if args.command == "health":
        return _health(budget)
    try:
        if args.command == "status":
            # One agent asked for by name: a typo is refused ("did you mean"), not shown as a defaults budget.
            if args.tag:
                statuses = [budget.status(args.agent, tag=args.tag)]
            else:
                statuses = [budget.status(args.agent, known_only=True)] if args.agent else budget.list_status()
            if args.unconfigured:
                statuses = [st for st in statuses if _on_defaults(st) and _ran_today(st)]
            if args.format == "json":
                print(json.dumps([status_json(st) for st in statuses], indent=2))
            else:
                print(_config_line(budget.config()))
                empty = "no agents on defaults today" if args.unconfigured else "no agents"
                print(status_table(statuses) if statuses else empty)
        elif args.command == "report":
            print(render_report(budget.report(args.by, args.since, args.until, top=args.top, month=args.month),
                                args.format))
        elif args.command == "export":
            write_export(budget.export(args.since, args.until), args.format, sys.stdout)
        elif args.command == "reconcile":
            found = budget.reconcile(args.since, args.until, provider=args.provider, run=args.run)
            print(reconcile_view.render(found, args.format))
            return 0 if reconcile_view.all_clear(found) else 2
        elif args.command == "pause":
            print(status_table([budget.pause(args.agent, reason=args.reason, tag=args.tag)]))
        elif args.command == "resume":
            print(status_table([budget.resume(args.agent, tag=args.tag)]))
    except (BudgetError, ValueError) as err:
        print(f"budgetctl: {err}", file=sys.stderr)
        return 1
    finally:
        budget.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
