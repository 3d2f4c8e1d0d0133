"""The ledger on SQLite: reports aggregated in SQL, spend per tag value and hour,
retention, top models, the dashboard's activity and newest rows."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from ...plan import Plan
from ...reports import ReportPart, TagHourSpend
from ..model import AgentActivity, CostEvent, UsageSum


def report_parts(conn: sqlite3.Connection, by: str, since_day: str, until_day: str) -> list[ReportPart]:
    """Each call's rows summed (per key, agent and request id), then the calls
    of a key grouped by their input tokens: what reports.summarize takes."""
    if by == "group":
        source, key = "ledger, json_each(ledger.groups) AS g", "g.value"
    else:
        source = "ledger"
        key = {"agent": "agent_id", "model": "coalesce(model, '(no model)')", "day": "day"}.get(
            by, "coalesce(json_extract(tags, '$.\"' || :tag || '\"'), '(none)')")
    sql = (f"WITH per_call AS (SELECT {key} AS k, sum(cost_nanos) AS cost, sum(input_tokens) AS tokens, "
           f"sum(cached_input_tokens) AS cached FROM {source} WHERE day BETWEEN :since AND :until "
           "GROUP BY k, agent_id, request_id) "
           "SELECT k, tokens, count(*), sum(cost), coalesce(sum(cached), 0) FROM per_call "
           "GROUP BY k, tokens ORDER BY k, tokens IS NULL, tokens")
    rows = conn.execute(sql, {"tag": by, "since": since_day, "until": until_day}).fetchall()
    return [ReportPart(k, tokens, calls, cost, cached) for k, tokens, calls, cost, cached in rows]


def tag_spend_by_hour(conn: sqlite3.Connection, tags: Sequence[str], since_ms: int,
                      until_ms: int) -> list[TagHourSpend]:
    """By the index on settled_ms: only the rows of the hours asked for are read."""
    found = []
    for tag in sorted(set(tags)):
        found += [TagHourSpend(tag, str(value), hour, cost) for value, hour, cost in
                  conn.execute(TAG_HOUR_SQL, {"tag": tag, "since": since_ms, "until": until_ms}).fetchall()]
    return found


TAG_HOUR_SQL = (
    "SELECT json_extract(tags, '$.\"' || :tag || '\"') AS v, (settled_ms - :since) / 3600000 AS h, "
    "sum(cost_nanos) FROM ledger WHERE settled_ms >= :since AND settled_ms < :until "
    "AND v IS NOT NULL AND v != '' GROUP BY v, h ORDER BY v, h")


def trim(conn: sqlite3.Connection, before_ms: int) -> int:
    return conn.execute("DELETE FROM ledger WHERE settled_ms < ?", (before_ms,)).rowcount


def top_models(conn: sqlite3.Connection, plan: Plan, since_ms: int, limit: int) -> list[tuple[str, int]]:
    return conn.execute(
        "SELECT model, sum(cost_nanos) AS spent FROM ledger WHERE agent_id = ? AND settled_ms >= ? "
        "AND model IS NOT NULL GROUP BY model ORDER BY spent DESC, model LIMIT ?",
        (plan.agent_id, since_ms, limit)).fetchall()


# By the ledger_by_day index: only the rows of the days asked for are read.
ACTIVITY_SQL = ("SELECT agent_id, count(DISTINCT request_id), max(settled_ms) FROM ledger "
                "WHERE day BETWEEN ? AND ? GROUP BY agent_id ORDER BY agent_id")


def activity(conn: sqlite3.Connection, since_day: str, until_day: str) -> list[AgentActivity]:
    return [AgentActivity(*row) for row in conn.execute(ACTIVITY_SQL, (since_day, until_day)).fetchall()]


_EVENT_COLUMNS = ("seq, request_id, kind, settled_ms, held_ms, day, agent_id, groups, tags, cost_nanos, cost_source, "
                  "model_requested, model, provider, input_tokens, cached_input_tokens, cache_write_tokens, "
                  "output_tokens, reasoning_tokens, price_version, latency_ms, error_code")


def cost_events(conn: sqlite3.Connection, since_day: str, until_day: str, after_seq: int,
                limit: int) -> list[tuple[int, CostEvent]]:
    """A page of the rows of the days, after ``after_seq``, in the order written."""
    rows = conn.execute(
        f"SELECT {_EVENT_COLUMNS} FROM ledger WHERE day BETWEEN ? AND ? AND seq > ? ORDER BY seq LIMIT ?",
        (since_day, until_day, after_seq, limit)).fetchall()
    return [(row[0], _event(row)) for row in rows]


def recent_events_sql() -> str:
    """Newest first by the ledger_by_agent index, (agent_id, settled_ms) and
    the rowid (seq) after them: no sort, and only ``limit`` rows read."""
    return f"SELECT {_EVENT_COLUMNS} FROM ledger WHERE agent_id = ? ORDER BY settled_ms DESC, seq DESC LIMIT ?"


def recent_events(conn: sqlite3.Connection, plan: Plan, limit: int) -> list[CostEvent]:
    return [_event(row) for row in conn.execute(recent_events_sql(), (plan.agent_id, limit)).fetchall()]


def _event(row) -> CostEvent:
    (_, request_id, kind, at_ms, held_ms, day, agent_id, groups, tags, cost, source, model_requested, model, provider,
     input_tokens, cached, cache_write, output, reasoning, price_version, latency_ms, error_code) = row
    return CostEvent(
        request_id=request_id, kind=kind, at_ms=at_ms, held_ms=held_ms, day=day or "", agent_id=agent_id,
        groups=tuple(json.loads(groups or "[]")), tags=json.loads(tags or "{}"), cost_nanos=cost,
        cost_source=source or "", model_requested=model_requested or "", model=model or "", provider=provider or "",
        input_tokens=input_tokens or 0, cached_input_tokens=cached or 0, cache_write_tokens=cache_write or 0,
        output_tokens=output or 0, reasoning_tokens=reasoning or 0, price_version=price_version or "",
        latency_ms=latency_ms, error_code=error_code or "")


def usage_sums(conn: sqlite3.Connection, bounds: Sequence[int], since_day: str, until_day: str) -> list[UsageSum]:
    """Summed in SQL (by the ledger_by_day index): no row becomes a Python
    object, so a day of a million calls is read in a statement, not in a
    million objects on the connection's thread."""
    zones = " ".join(f"WHEN t < :b{i + 1} THEN {i}" for i in range(len(bounds) - 1))
    params: dict[str, object] = {f"b{i}": bound for i, bound in enumerate(bounds)}
    params.update(since=since_day, until=until_day)
    call = "agent_id || char(0) || request_id"
    sql = (
        f"WITH rows AS (SELECT *, coalesce(held_ms, settled_ms) AS t, CASE WHEN cost_source = 'usage' THEN 1 "
        f"ELSE 0 END AS priced FROM ledger WHERE day BETWEEN :since AND :until), "
        f"zoned AS (SELECT *, CASE {zones} END AS zone FROM rows WHERE t >= :b0 AND t < :b{len(bounds) - 1}) "
        "SELECT coalesce(provider, ''), coalesce(nullif(model, ''), nullif(model_requested, ''), '') AS m, zone, "
        f"count(DISTINCT CASE WHEN kind != 'release' THEN {call} END), sum(cost_nanos), "
        "coalesce(sum(CASE WHEN priced THEN input_tokens END), 0), "
        "coalesce(sum(CASE WHEN priced THEN cached_input_tokens END), 0), "
        "coalesce(sum(CASE WHEN priced THEN cache_write_tokens END), 0), "
        "coalesce(sum(CASE WHEN priced THEN output_tokens END), 0), "
        f"count(DISTINCT CASE WHEN kind != 'release' AND NOT priced THEN {call} END), "
        "coalesce(sum(CASE WHEN kind != 'release' AND NOT priced THEN cost_nanos END), 0) "
        "FROM zoned GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
    return [UsageSum(*row) for row in conn.execute(sql, params).fetchall()]
