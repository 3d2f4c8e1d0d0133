"""What the dashboard's pages show besides the fleet: an agent's or a tag
value's detail, spend over time and the notices, as the JSON of
docs/dashboard.md. Everything is read through the service and the store;
nothing here knows HTTP."""

from __future__ import annotations

from datetime import date, timedelta

from budgetd_client._core import report as client_report
from budgetd_client.money import nanos_to_usd

from .. import export, wire
from ..app import BudgetService, to_ms, utc_of_ms
from ..jsonable import report_json
from ..notices.model import Notice
from ..reports import MS_PER_HOUR, report_keys
from ..store import CostEvent, QueuedNotice
from ..windows import local_midnight
from .fleet import Fleet, Subject

LAST_CALLS = 50
EVENTS_READ = 2000  # an agent's newest ledger rows read for its detail (tags, burn)
NOTICES_SHOWN = 100
MAX_RANGE_DAYS = 92
MAX_SERIES = 50
OTHER = "(other)"


def usd(nanos: int) -> str:
    return str(nanos_to_usd(nanos))


def notice_json(notice: Notice, queued: QueuedNotice | None = None) -> dict:
    row = {"key": notice.key, "kind": notice.kind, "agent_id": notice.agent_id, "scope": notice.scope,
           "window": notice.window, "period": notice.period, "spent_usd": usd(notice.spent_nanos),
           "cap_usd": usd(notice.cap_nanos) if notice.cap_nanos else None, "reason": notice.reason,
           "at": utc_of_ms(notice.at_ms).isoformat() if notice.at_ms else None,
           "state": "pending", "attempts": 0, "last_error": "", "done_at": None}
    if queued is not None:
        row.update(state=queued.state, attempts=queued.attempts, last_error=queued.last_error,
                   done_at=utc_of_ms(queued.done_ms).isoformat() if queued.done_ms else None)
    return row


def _burn(window_row: dict, events: list[CostEvent], spent_now_nanos: int) -> dict:
    """Cumulative spend through the window's rows, oldest first, ending at the
    counter's spend now: computed backwards, so it stays exact when only the
    newest rows were read."""
    points, spent = [], spent_now_nanos
    for event in events:  # newest first
        points.append({"at": utc_of_ms(event.at_ms).isoformat(), "spent_usd": usd(spent)})
        spent -= event.cost_nanos
    points.append({"at": window_row["starts_at"], "spent_usd": usd(max(0, spent))})
    return {"window": window_row["window"], "period": window_row["period"], "cap_usd": window_row["cap_usd"],
            "points": points[::-1]}


class Views:
    def __init__(self, service: BudgetService, fleet: Fleet) -> None:
        self.service = service
        self.fleet = fleet

    async def agent(self, agent_id: str) -> dict:
        report = await self.service.status(agent_id, known_only=True)  # UnknownAgent: 404
        budget = self.service.in_force.resolver.budget(agent_id)
        groups = [Subject(g.name, "group") for g in (budget.groups if budget else ())]
        status, *group_rows = await self.fleet.rows([Subject(agent_id, "agent"), *groups])
        events = await self.service.store.recent_events(report.plan, EVENTS_READ)
        today = [e for e in events if e.day == report.plan.limits[0].period.key]
        tags: dict[tuple[str, str], list] = {}
        for event in today:
            for key, value in event.tags.items():
                acc = tags.setdefault((key, value), [0, set()])
                acc[0] += event.cost_nanos
                acc[1].add(event.request_id)
        notices = await self.service.store.recent_notices(NOTICES_SHOWN, scope=f"agent:{agent_id}")
        spent_today = report.state.balance(report.plan.limits[0]).spent_nanos
        return {
            "status": status, "groups": group_rows,
            "tags": [{"key": k, "value": v, "cost_usd": usd(cost), "calls": len(calls)}
                     for (k, v), (cost, calls) in sorted(tags.items(), key=lambda kv: (-kv[1][0], kv[0]))],
            "last_calls": [export.record(e) for e in events[:LAST_CALLS]],
            "notices": [notice_json(q.notice, q) for q in notices],
            "pause_history": [notice_json(q.notice, q) for q in notices if q.notice.kind in ("paused", "resumed")],
            "burn": _burn(status["daily"], today, spent_today),
        }

    async def tag(self, key: str, value: str) -> dict:
        report = await self.service.tag_status(key, value)  # ValueError (no tag_budgets entry): 400
        (status,) = await self.fleet.rows([Subject(f"{key}={value}", "tag")])
        day = report.plan.limits[0].period.key
        events = [e async for e in self.service.store.cost_events(day, day) if e.tags.get(key) == value]
        agents: dict[str, list] = {}
        for event in events:
            acc = agents.setdefault(event.agent_id, [0, set()])
            acc[0] += event.cost_nanos
            acc[1].add(event.request_id)
        notices = await self.service.store.recent_notices(NOTICES_SHOWN, scope=f"{key}:{value}")
        events.sort(key=lambda e: e.at_ms, reverse=True)
        return {
            "status": status,
            "agents": [{"agent_id": a, "cost_usd": usd(cost), "calls": len(calls)}
                       for a, (cost, calls) in sorted(agents.items(), key=lambda kv: (-kv[1][0], kv[0]))],
            "notices": [notice_json(q.notice, q) for q in notices],
            "burn": _burn(status["daily"], events, report.state.balance(report.plan.limits[0]).spent_nanos),
        }

    async def report(self, by: str, since: str, until: str, top: int) -> dict:
        report = await self.service.report(by, since, until, top)  # ValueError: 400
        return report_json(client_report(by or "agent", wire.report_response(report)))

    async def spend(self, by: str, since: str, until: str, top: int) -> dict:
        """Spend per bucket (hours of one day, or days), stacked by ``by``;
        the report of the same range beside it, whose total the series add up to."""
        by = by or "agent"
        report = await self.report(by, since, until, 0)  # checks by and the days
        first, last = report["since"], report["until"]
        days = (date.fromisoformat(last) - date.fromisoformat(first)).days + 1
        if days > MAX_RANGE_DAYS:
            raise ValueError(f"since {first} to until {last} is {days} days: at most {MAX_RANGE_DAYS} at once")
        hourly = days == 1
        zone = self.service.in_force.config.zone
        if hourly:
            day = date.fromisoformat(first)
            start_ms = to_ms(local_midnight(day, zone))
            hours = (to_ms(local_midnight(day + timedelta(days=1), zone)) - start_ms) // MS_PER_HOUR  # 23-25
            buckets = [utc_of_ms(start_ms + h * MS_PER_HOUR).astimezone(zone).strftime("%H:%M") for h in range(hours)]

            def bucket(e: CostEvent) -> int | None:
                # Clamped: a row of the day written a moment outside it (replicas' clocks apart).
                return max(0, min((e.at_ms - start_ms) // MS_PER_HOUR, hours - 1))
        else:
            buckets = [(date.fromisoformat(first) + timedelta(days=i)).isoformat() for i in range(days)]
            index_of_day = {d: i for i, d in enumerate(buckets)}

            def bucket(e: CostEvent) -> int | None:
                return index_of_day.get(e.day)
        sums: dict[str, list[int]] = {}
        _, _, events = self.service.export(first, last)
        async for e in events:
            index = bucket(e)
            if index is None:
                continue
            for key in report_keys(by, e.agent_id, e.model, e.day, e.groups, e.tags):
                sums.setdefault(key, [0] * len(buckets))[index] += e.cost_nanos
        ranked = sorted(sums.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
        shown, rest = ranked[:top], ranked[top:]
        if rest:
            shown.append((OTHER, [sum(values) for values in zip(*(v for _, v in rest), strict=True)]))
        return {"by": by, "since": first, "until": last, "bucket": "hour" if hourly else "day", "buckets": buckets,
                "series": [{"key": key, "values": [usd(n) for n in values], "total_usd": usd(sum(values))}
                           for key, values in shown],
                "total_usd": report["total_usd"], "report": report}

    async def notices(self, limit: int, state: str) -> dict:
        queued = await self.service.store.recent_notices(limit, state=None if state == "all" else state)
        return {"notices": [notice_json(q.notice, q) for q in queued],
                "pending": await self.service.store.outbox_depth()}

