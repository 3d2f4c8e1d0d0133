"""The ledger on SQLite: reports aggregated in SQL, retention, top models."""

from __future__ import annotations

import json
import sqlite3

from ...plan import Plan
from ..model import CostEvent


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
