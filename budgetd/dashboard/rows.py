"""One row of the dashboard as JSON: the object `budgetctl status --format
json` prints for it (jsonable.py, from the same wire message the client
reads, so the two agree to the nanodollar) and what the fleet adds."""

from __future__ import annotations

from budgetd_client._core import agent_status

from .. import wire
from ..app import AgentReport, utc_of_ms
from ..jsonable import status_json
from ..store import AgentActivity
from ..store.rules import pause_in_force


def status_row(kind: str, row_id: str, report: AgentReport, activity: AgentActivity | None) -> dict:
    row = {"kind": kind, "id": row_id, **status_json(agent_status(wire.agent_status(report)))}
    for name, limit in (("daily", report.plan.limits[0]), ("monthly", report.plan.limits[1])):
        row[name]["percent"] = percent(report.state.balance(limit).spent_nanos, limit.cap_nanos)
    paused = pause_in_force(report.plan, report.state.pauses)
    row["paused_since"] = utc_of_ms(paused[0].since_ms).isoformat() if paused else None
    if kind == "agent":
        row["calls_today"] = activity.calls if activity else 0
        row["last_call_at"] = utc_of_ms(activity.last_ms).isoformat() if activity else None
    else:
        row["calls_today"] = row["last_call_at"] = None
    return row


def percent(spent_nanos: int, cap_nanos: int | None) -> str | None:
    """spent / cap x 100 to one decimal place, rounded down; None without a cap."""
    if cap_nanos is None:
        return None
    if cap_nanos == 0:  # a cap of $0 stops every call: it is as full as it gets
        return "100.0"
    tenths = spent_nanos * 1000 // cap_nanos
    return f"{tenths // 10}.{tenths % 10}"
