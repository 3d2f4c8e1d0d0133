"""The ledger on SQLite: reports aggregated in SQL, spend per tag value and hour,
retention, top models."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from ...plan import Plan
from ...reports import ReportPart, TagHourSpend


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
