"""SQLite files written by older schemas open and keep their data."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

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


async def test_a_version_5_file_gets_the_ledger_index_the_anomaly_check_reads_by(tmp_path):
    """Spend per tag value and hour reads only the hours asked for (the
    index on settled_ms, schema version 7), not the whole ledger."""
    path = tmp_path / "v5.db"
    store = open_store(f"sqlite://{path}")
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:  # as a version 5 file was: no such index
        db.execute("DROP INDEX ledger_by_settled")
        db.execute("PRAGMA user_version=5")
    store = open_store(f"sqlite://{path}")
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        plan = " ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {TAG_HOUR_SQL}",
                                                      {"tag": "feature", "since": 0, "until": 1}))
        assert "ledger_by_settled" in plan, plan
