"""The SQLite store's reads of counters look each counter up by its primary
key: a scan of the table grows with every agent and tag value that ever
spent (a hold took 20 ms at 100,000 counters when the read was written as
``(scope, win, period) IN (VALUES ...)``, which SQLite runs as a scan)."""

from __future__ import annotations

import sqlite3

from budgetd.store.sqlite import ledger, outbox
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


def test_activity_reads_the_days_by_the_day_index():
    steps = query_plan(ledger.ACTIVITY_SQL, ["2026-12-01", "2026-12-03"])
    assert "SEARCH ledger USING INDEX ledger_by_day (day>? AND day<?)" in steps, steps
    assert "SCAN ledger" not in steps, steps


def test_recent_events_read_the_agents_newest_rows_by_its_index_with_no_sort():
    steps = query_plan(ledger.recent_events_sql(), ["a1", 50])
    assert steps == ["SEARCH ledger USING INDEX ledger_by_agent (agent_id=?)"], steps


def test_recent_notices_read_the_newest_ids_by_the_primary_key_with_no_sort():
    steps = query_plan(outbox.RECENT_SQL, {"scan": 10_000, "state": None, "scope": None, "agent": None, "limit": 9})
    assert steps[0] == "SEARCH outbox USING INTEGER PRIMARY KEY (rowid>?)", steps
    assert not any("TEMP B-TREE" in step for step in steps), steps
