"""SQLite files written by older schemas open and keep their data."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timezone

import pytest

from budgetd.config import Resolver, load_config_text
from budgetd.plan import make_plan
from budgetd.store import SettleRequest, open_store
from budgetd.store.sqlite import SCHEMA_VERSION
from budgetd.store.sqlite.ledger import TAG_HOUR_SQL

pytestmark = pytest.mark.sqlite

# The first schema (version 1): request ids were global, the ledger had no pricing.
SCHEMA_V1 = """
CREATE TABLE counters (scope TEXT NOT NULL, win TEXT NOT NULL, period TEXT NOT NULL,
    spent_nanos INTEGER NOT NULL DEFAULT 0, reserved_nanos INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, win, period)) WITHOUT ROWID;
CREATE TABLE calls (request_id TEXT PRIMARY KEY, agent_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('held', 'settled', 'released', 'expired')),
    held_nanos INTEGER NOT NULL, charged_nanos INTEGER NOT NULL DEFAULT 0, counters TEXT NOT NULL,
    tags TEXT NOT NULL, created_ms INTEGER NOT NULL, deadline_ms INTEGER NOT NULL, ended_ms INTEGER) WITHOUT ROWID;
CREATE INDEX calls_live_by_deadline ON calls (deadline_ms) WHERE state = 'held';
CREATE TABLE pauses (scope TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('manual', 'cap')), win TEXT NOT NULL,
    period TEXT NOT NULL, reason TEXT NOT NULL, since_ms INTEGER NOT NULL, PRIMARY KEY (scope, win, period)) WITHOUT ROWID;
CREATE TABLE ledger (seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, agent_id TEXT NOT NULL,
    kind TEXT NOT NULL, cost_nanos INTEGER NOT NULL, tags TEXT NOT NULL, held_ms INTEGER, settled_ms INTEGER NOT NULL);
PRAGMA user_version=1;
"""


async def test_a_version_1_file_migrates_and_its_live_hold_still_settles(tmp_path):
    path = tmp_path / "old.db"
    now = datetime.now(timezone.utc)
    day = now.date().isoformat()  # the config's zone is UTC
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_V1)
        db.execute("INSERT INTO counters VALUES ('agent:a1', 'daily', ?, 100, 40)", (day,))
        db.execute("INSERT INTO calls VALUES ('r1', 'a1', 'held', 40, 0, ?, '{}', 1, 2, NULL)",
                   (f'[["agent:a1", "daily", "{day}"]]',))
        db.execute("INSERT INTO ledger (request_id, agent_id, kind, cost_nanos, tags, settled_ms) "
                   "VALUES ('r0', 'a1', 'settle', 100, '{}', 1)")
    store = open_store(f"sqlite://{path}")
    await store.open()
    config = load_config_text("agents:\n  a1: {daily_usd: 1}\n")
    plan = make_plan(Resolver(config).budget("a1"), now, config.zone)
    result = await store.settle(SettleRequest("r1", 30, plan, 3, {}))
    assert (result.counted_nanos, result.duplicate) == (30, False)
    readout = await store.read(plan)
    assert (readout.balance(plan.limits[0]).spent_nanos, readout.balance(plan.limits[0]).reserved_nanos) == (130, 0)
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert db.execute("SELECT count(*), sum(cost_nanos) FROM ledger").fetchone() == (2, 130)


def _schema_v5() -> str:
    """The tables as budgetd wrote them at schema 5: the ledger without the
    cost event's source, requested model, cache writes, latency and error."""
    from budgetd.store.sqlite.schema import SCHEMA

    start = SCHEMA.index("    groups TEXT,")
    end = SCHEMA.index(");", start)
    return SCHEMA[:start] + "    groups TEXT\n" + SCHEMA[end:] + "PRAGMA user_version=5;\n"


async def test_a_version_5_ledger_migrates_to_cost_events_and_new_rows_carry_every_field(tmp_path):
    from budgetd.store import CallFacts, Pricing

    path = tmp_path / "v5.db"
    now = datetime.now(timezone.utc)
    day = now.date().isoformat()
    counters = f'[["agent:a1", "daily", "{day}"]]'
    with sqlite3.connect(path) as db:
        db.executescript(_schema_v5())
        assert "cost_source" not in {row[1] for row in db.execute("PRAGMA table_info(ledger)")}
        db.execute("INSERT INTO counters VALUES ('agent:a1', 'daily', ?, 1111, 40)", (day,))
        db.execute("INSERT INTO calls VALUES ('a1', 'r9', 'held', 40, 0, ?, '{\"feature\": \"f\"}', 5, ?, NULL)",
                   (counters, 2**62))
        insert = ("INSERT INTO ledger (request_id, agent_id, kind, cost_nanos, tags, held_ms, settled_ms, model, "
                  "provider, input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, price_version, day, "
                  "groups) VALUES (?, 'a1', ?, ?, '{}', 1, 2, ?, ?, 10, 2, 5, 1, ?, ?, '[]')")
        db.execute(insert, ("r1", "settle", 1000, "m1", "openai", "genai-prices-1", day))
        db.execute(insert, ("r2", "settle", 100, None, None, None, day))
        db.execute(insert, ("r3", "expiry", 10, None, None, None, day))
        db.execute(insert, ("r4", "settle", 1, "m2", "openai", "unpriced (m2): settled the hold", day))
    store = open_store(f"sqlite://{path}")
    await store.open()
    try:
        events = [e async for e in store.cost_events(day, day)]
        assert [(e.request_id, e.kind, e.cost_nanos, e.cost_source, e.model) for e in events] == [
            ("r1", "settle", 1000, "usage", "m1"), ("r2", "settle", 100, "", ""), ("r3", "expiry", 10, "estimate", ""),
            ("r4", "settle", 1, "", "m2")]
        assert (events[0].input_tokens, events[0].cached_input_tokens, events[0].cache_write_tokens,
                events[0].latency_ms, events[0].error_code, events[0].model_requested) == (10, 2, 0, None, "", "")
        config = load_config_text("agents:\n  a1: {daily_usd: 1}\n")
        plan = make_plan(Resolver(config).budget("a1"), now, config.zone)
        pricing = Pricing("m1-2025", "openai", 100, 20, 50, 10, "genai-prices-2", cache_write_tokens=30)
        settled = await store.settle(SettleRequest("r9", 39, plan, 3, {"route": "r"}, pricing, CallFacts("m1", 250)))
        assert settled.event is not None
        new = [e async for e in store.cost_events(day, day)][-1]
        assert new == settled.event
        assert (new.cost_source, new.model_requested, new.model, new.cache_write_tokens, new.latency_ms, new.tags,
                new.held_ms) == ("usage", "m1", "m1-2025", 30, 250, {"feature": "f", "route": "r"}, 5)
        assert await store.report("agent", day, day) == [("a1", 1150, 5)]
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


async def test_a_version_5_file_gets_the_ledger_index_the_anomaly_check_reads_by(tmp_path):
    """Spend per tag value and hour reads only the hours asked for (the
    index on settled_ms, schema version 7), not the whole ledger."""
    path = tmp_path / "v5.db"
    with sqlite3.connect(path) as db:  # as a version 5 file was: no such index
        db.executescript(_schema_v5())
        db.execute("DROP INDEX ledger_by_settled")
    store = open_store(f"sqlite://{path}")
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        plan = " ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {TAG_HOUR_SQL}",
                                                      {"tag": "feature", "since": 0, "until": 1}))
        assert "ledger_by_settled" in plan, plan


def _schema_v7() -> str:
    """The tables as budgetd wrote them at schema 7: no reconciliation tables."""
    from budgetd.store.sqlite.schema import SCHEMA

    start = SCHEMA.index("-- Reconciliation (schema 8)")
    end = SCHEMA.index("CREATE INDEX IF NOT EXISTS outbox_due")
    return SCHEMA[:start] + SCHEMA[end:] + "PRAGMA user_version=7;\n"


async def test_a_version_7_file_gains_the_reconciliation_tables_and_keeps_its_ledger(tmp_path):
    from budgetd.reconcile.model import ReconcileDay

    path = tmp_path / "v7.db"
    day = datetime.now(UTC).date().isoformat()
    with sqlite3.connect(path) as db:
        db.executescript(_schema_v7())
        assert not db.execute("SELECT 1 FROM sqlite_master WHERE name LIKE 'reconcile%'").fetchall()
        db.execute("INSERT INTO ledger (request_id, agent_id, kind, cost_nanos, tags, settled_ms, day, groups) "
                   "VALUES ('r1', 'a1', 'settle', 100, '{}', 1, ?, '[]')", (day,))
    store = open_store(f"sqlite://{path}")
    await store.open()
    try:
        assert await store.report("agent", day, day) == [("a1", 100, 1)]
        now = int(datetime.now(UTC).timestamp() * 1000)
        assert await store.claim_reconciliation("openai", day, "first", "me", now, 60_000)
        result = ReconcileDay("openai", day, "partial", "the day is not over", now, passes=("first",))
        await store.save_reconciliation(result, "me")
        assert await store.reconciliations(day, day) == [result]
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,) == (8,)
        assert {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'reconcile%'")} == {
            "reconcile_days", "reconcile_leases"}
