"""The ledger on SQLite: reports aggregated in SQL, retention, top models."""

from __future__ import annotations

import sqlite3

from ...plan import Plan


def report(conn: sqlite3.Connection, by: str, since_day: str, until_day: str) -> list[tuple[str, int, int]]:
    if by == "group":
        source, key = "ledger, json_each(ledger.groups) AS g", "g.value"
    else:
        source = "ledger"
        key = {"agent": "agent_id", "model": "coalesce(model, '(no model)')", "day": "day"}.get(
            by, "coalesce(json_extract(tags, '$.\"' || :tag || '\"'), '(none)')")
    sql = (f"SELECT {key} AS k, sum(cost_nanos), count(DISTINCT request_id) FROM {source} "
           "WHERE day BETWEEN :since AND :until GROUP BY k ORDER BY 2 DESC, k")
    return [tuple(row) for row in conn.execute(sql, {"tag": by, "since": since_day, "until": until_day}).fetchall()]


def trim(conn: sqlite3.Connection, before_ms: int) -> int:
    return conn.execute("DELETE FROM ledger WHERE settled_ms < ?", (before_ms,)).rowcount


def top_models(conn: sqlite3.Connection, plan: Plan, since_ms: int, limit: int) -> list[tuple[str, int]]:
    return conn.execute(
        "SELECT model, sum(cost_nanos) AS spent FROM ledger WHERE agent_id = ? AND settled_ms >= ? "
        "AND model IS NOT NULL GROUP BY model ORDER BY spent DESC, model LIMIT ?",
        (plan.agent_id, since_ms, limit)).fetchall()
