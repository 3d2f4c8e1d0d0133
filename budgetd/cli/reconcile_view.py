"""``budgetctl reconcile``: the providers' status, then each provider's UTC
days per model, as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

from budgetd_client.status import ReconciledDay, ReconciledModel, ReconcileStatus, Reconciliation

from ..reconcile.model import TOKEN_KINDS, provider_name

CSV_FIELDS = ("day", "provider", "model", "state", "classification", "past_tolerance", "provider_cost_usd",
              "ledger_cost_usd", "drift_usd", "provider_requests", "ledger_requests",
              *(f"provider_{k}_tokens" for k in TOKEN_KINDS), *(f"ledger_{k}_tokens" for k in TOKEN_KINDS),
              "estimate_usd", "estimate_requests", "explanation", "suggestion")


def all_clear(found: Reconciliation) -> bool:
    """Exit status 0 only when something was compared, every provider's
    newest run read its report, and no day shown failed, is overdue or has a
    row past tolerance (today's partial runs included): never a false all clear."""
    return bool(found.days) and all(p.state in ("ok", "partial") for p in found.providers) and all(
        d.state in ("ok", "partial") and not any(r.past_tolerance for r in d.rows) for d in found.days)


def status_line(p: ReconcileStatus) -> str:
    name = provider_name(p.provider)
    if p.state == "error":
        line = p.detail if p.detail.startswith(f"{name}:") else f"{name}: {p.detail}"
    else:
        line = f"{name}: {p.state} — {p.detail}"
    if p.last_success_at is not None:
        line += f" (last read in full {p.last_success_at:%Y-%m-%d %H:%M}Z)"
    elif p.state == "error":
        line += " (never read in full)"
    return line


def _usd(amount: Decimal, signed: bool = False) -> str:
    text = f"${abs(amount):,.2f}" if abs(amount) >= Decimal("0.01") or not amount else f"${abs(amount):f}"
    return ("-" if amount < 0 else "+" if signed and amount else "") + text


def _row_values(day: ReconciledDay, r: ReconciledModel) -> list[object]:
    return [day.day, day.provider, r.model, day.state, r.classification, str(r.past_tolerance).lower(),
            r.provider_cost_usd, r.ledger_cost_usd, r.drift_usd, r.provider_requests, r.ledger_requests,
            *(r.provider_tokens[k] for k in TOKEN_KINDS), *(r.ledger_tokens[k] for k in TOKEN_KINDS),
            r.estimate_usd, r.estimate_requests, r.explanation, r.suggestion]


def as_json(found: Reconciliation) -> dict:
    def plain(value):
        return str(value) if isinstance(value, Decimal) else value

    return {
        "since": found.since, "until": found.until, "all_clear": all_clear(found),
        "providers": [{"provider": p.provider, "state": p.state, "detail": p.detail, "line": status_line(p),
                       "last_attempt_at": p.last_attempt_at.isoformat() if p.last_attempt_at else None,
                       "last_success_at": p.last_success_at.isoformat() if p.last_success_at else None}
                      for p in found.providers],
        "days": [{"provider": d.provider, "day": d.day, "state": d.state, "detail": d.detail,
                  "drift_usd": str(d.drift_usd), "passes": list(d.passes),
                  "checked_at": d.checked_at.isoformat() if d.checked_at else None,
                  "rows": [dict(zip(CSV_FIELDS[2:], map(plain, _row_values(d, r)[2:]), strict=True)) | {
                      "past_tolerance": r.past_tolerance, "provider_tokens": r.provider_tokens,
                      "ledger_tokens": r.ledger_tokens} for r in d.rows]}
                 for d in found.days],
    }


def render(found: Reconciliation, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(as_json(found), indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_FIELDS)
        writer.writerows(_row_values(d, r) for d in found.days for r in d.rows)
        return out.getvalue().rstrip("\n")
    lines = [status_line(p) for p in found.providers]
    header = ("DAY (UTC)", "PROVIDER", "MODEL", "CLASS", "BILLED", "BUDGETD", "DIFFERENCE", "REQUESTS")
    table: list[tuple[str, ...]] = [header]
    notes: dict[int, list[str]] = {}
    for d in found.days:
        if not d.rows:
            table.append((d.day, d.provider, "-", d.state, "-", "-", "-", "-"))
            notes[len(table) - 1] = [d.detail]
        for r in d.rows:
            mark = "  (past tolerance)" if r.past_tolerance else ""
            requests = f"{r.provider_requests:,}/{r.ledger_requests:,}" if d.provider != "anthropic" else \
                f"-/{r.ledger_requests:,}"
            table.append((d.day, d.provider, r.model, r.classification + mark, _usd(r.provider_cost_usd),
                          _usd(r.ledger_cost_usd), _usd(r.drift_usd, signed=True), requests))
            if r.classification != "agree":
                notes[len(table) - 1] = [r.explanation] + ([f"to do: {r.suggestion}"] if r.suggestion else [])
        if d.state == "error" and d.rows:
            notes.setdefault(len(table) - 1, []).append(f"(rows of an earlier run: this one failed: {d.detail})")
    lines.append(f"{found.since} .. {found.until} (UTC days)")
    if len(table) == 1:
        return "\n".join([*lines, "nothing compared in this range yet"])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        for note in notes.get(i, []):
            for part in note.splitlines():
                lines.append("    " + part)
    return "\n".join(lines)
