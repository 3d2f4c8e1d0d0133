"""Statuses and reports as JSON objects: what `budgetctl --format json`
prints and what the dashboard's API answers, built in one place so the two
agree to the nanodollar. Money is a plain decimal string of dollars, times
ISO 8601."""

from __future__ import annotations

from decimal import Decimal

from budgetd_client import AgentStatus, WindowStatus

REPORT_FIELDS = ("cost_usd", "calls", "avg_cost_usd", "cache_hit_rate", "p95_input_tokens", "input_tokens",
                 "cached_input_tokens", "priced_calls")


def window_json(w: WindowStatus) -> dict:
    return {k: (str(v) if isinstance(v, Decimal) else v.isoformat() if hasattr(v, "isoformat") else v)
            for k, v in vars(w).items()}


def status_json(st: AgentStatus) -> dict:
    return {
        "agent_id": st.agent_id, "scope": st.scope, "budget_source": st.budget_source,
        "paused": st.paused, "pause_kind": st.pause_kind, "pause_reason": st.pause_reason,
        "paused_by": st.paused_by, "resumes_at": st.resumes_at.isoformat() if st.resumes_at else None,
        "daily": window_json(st.daily), "monthly": window_json(st.monthly),
        "groups": [{"name": g.name, "daily": window_json(g.daily), "monthly": window_json(g.monthly)}
                   for g in st.groups],
    }


def report_values(row) -> list:
    """A row's REPORT_FIELDS, money and rates as plain decimal strings."""
    values = [getattr(row, name) for name in REPORT_FIELDS]
    return [str(v) if isinstance(v, Decimal) else v for v in values]


def report_json(report) -> dict:
    """A client ``Report``: its rows biggest spend first and the total of every row."""
    total = report.total
    return {"by": report.by, "since": report.since, "until": report.until,
            "total_usd": str(report.total_usd), "rows_in_all": report.rows_in_all,
            "rows": [{report.by: r.key, **dict(zip(REPORT_FIELDS, report_values(r), strict=True))}
                     for r in report.rows],
            "total": dict(zip(REPORT_FIELDS, report_values(total), strict=True)) if total else None}
