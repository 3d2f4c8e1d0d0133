"""The SQLite store's reads of counters look each counter up by its primary
key: a scan of the table grows with every agent and tag value that ever
spent (a hold took 20 ms at 100,000 counters when the read was written as
``(scope, win, period) IN (VALUES ...)``, which SQLite runs as a scan)."""

from __future__ import annotations

import sqlite3

from budgetd.store.sqlite.calls import _hold_read_sql
from budgetd.store.sqlite.reads import counters_of
from budgetd.store.sqlite.schema import SCHEMA


def query_plan(sql: str, params: list) -> list[str]:
    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA)
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


def test_a_holds_read_searches_counters_by_key_never_scans():
    steps = query_plan(_hold_read_sql(7, 3), ["x"] * 21 + ["a", "b", "c", "agent", "request"])
    assert "SEARCH c USING PRIMARY KEY (scope=? AND win=? AND period=?)" in steps, steps
    assert not any(step.startswith("SCAN c") or step == "SCAN counters" for step in steps), steps


def test_a_status_read_of_many_counters_searches_by_key():
    steps = query_plan(f"SELECT c.spent_nanos FROM {counters_of(500)}", ["x"] * 1500)
    assert "SEARCH c USING PRIMARY KEY (scope=? AND win=? AND period=?)" in steps, steps
