"""The SQLite store's tables, and the migrations that bring a file written
by an older budgetd up to them (``PRAGMA user_version`` is the file's
schema version)."""

from __future__ import annotations

import aiosqlite

SCHEMA_VERSION = 8
SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
    scope TEXT NOT NULL,               -- 'agent:NAME' or 'group:NAME'
    win TEXT NOT NULL,                 -- 'daily' or 'monthly'
    period TEXT NOT NULL,              -- '2026-11-22' or '2026-11'
    spent_nanos INTEGER NOT NULL DEFAULT 0,
    reserved_nanos INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, win, period)
) WITHOUT ROWID;

-- One row per (agent, request id): the hold and, later, how it ended.
-- Request ids are scoped to their agent (as on Redis, where they live under
-- the agent's hash tag): no agent can touch another's hold.
CREATE TABLE IF NOT EXISTS calls (
    agent_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('held', 'settled', 'released', 'expired')),
    held_nanos INTEGER NOT NULL,
    charged_nanos INTEGER NOT NULL DEFAULT 0,  -- what this request has added to spent
    counters TEXT NOT NULL,                    -- JSON [[scope, win, period], ...]
    tags TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    deadline_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    PRIMARY KEY (agent_id, request_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS calls_live_by_deadline ON calls (deadline_ms) WHERE state = 'held';

CREATE TABLE IF NOT EXISTS pauses (
    scope TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('manual', 'cap')),
    win TEXT NOT NULL,       -- '' for a manual pause
    period TEXT NOT NULL,    -- '' for a manual pause
    reason TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    PRIMARY KEY (scope, win, period)
) WITHOUT ROWID;

-- Append-only: every change to spent, with the amount it added.
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    kind TEXT NOT NULL,      -- 'settle', 'expiry' (a charged expiry) or 'release' (a failed call, cost 0)
    cost_nanos INTEGER NOT NULL,
    tags TEXT NOT NULL,
    held_ms INTEGER,
    settled_ms INTEGER NOT NULL,
    model TEXT, provider TEXT,                  -- set when priced from usage
    input_tokens INTEGER, cached_input_tokens INTEGER, output_tokens INTEGER, reasoning_tokens INTEGER,
    price_version TEXT,
    day TEXT,                -- the local day (daily period) the cost was charged to
    groups TEXT,             -- JSON list of the agent's groups charged
    -- The rest of the cost event (schema 6; NULL in rows written before).
    cost_source TEXT,        -- 'usage', 'caller' or 'estimate'
    model_requested TEXT, cache_write_tokens INTEGER, latency_ms INTEGER, error_code TEXT
);

-- Notices, written in the same transaction as the change that caused them;
-- a worker leases, delivers and marks them. The key makes each notice unique.
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed', 'skipped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until_ms INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    done_ms INTEGER
);
-- Reconciliation (schema 8): the result of each provider's UTC day, the
-- ReconcileDay as its JSON (its passes: those done, never dropped), and the
-- leases of the day's scheduled passes to one replica at a time.
CREATE TABLE IF NOT EXISTS reconcile_days (
    provider TEXT NOT NULL,
    day TEXT NOT NULL,       -- YYYY-MM-DD, UTC
    result TEXT NOT NULL,    -- ReconcileDay.to_json()
    PRIMARY KEY (provider, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reconcile_leases (
    provider TEXT NOT NULL,
    day TEXT NOT NULL,
    pass TEXT NOT NULL,      -- 'first', 'second', 'hour-07', ...
    owner TEXT NOT NULL,
    until_ms INTEGER NOT NULL,
    PRIMARY KEY (provider, day, pass)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_ms) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS ledger_by_agent ON ledger (agent_id, settled_ms);
CREATE INDEX IF NOT EXISTS ledger_by_day ON ledger (day);
CREATE INDEX IF NOT EXISTS ledger_by_settled ON ledger (settled_ms);  -- spend per tag and hour, retention
"""

# Schema changes after version 1, applied in order to older files.
MIGRATIONS = {
    2: [f"ALTER TABLE ledger ADD COLUMN {column}" for column in (
        "model TEXT", "provider TEXT", "input_tokens INTEGER", "cached_input_tokens INTEGER",
        "output_tokens INTEGER", "reasoning_tokens INTEGER", "price_version TEXT")],
    # Request ids became scoped to their agent: rebuild calls with the new key
    # (SCHEMA then creates the table and index afresh; the rows are copied back).
    3: ["ALTER TABLE calls RENAME TO calls_v2", "DROP INDEX IF EXISTS calls_live_by_deadline"],
    4: [],  # the outbox table: created by SCHEMA
    5: ["ALTER TABLE ledger ADD COLUMN day TEXT", "ALTER TABLE ledger ADD COLUMN groups TEXT"],
    # The whole cost event. Older rows get the source that can still be told
    # (an expiry, a priced usage); the rest stay NULL (unknown).
    6: [*(f"ALTER TABLE ledger ADD COLUMN {column}" for column in (
        "cost_source TEXT", "model_requested TEXT", "cache_write_tokens INTEGER", "latency_ms INTEGER",
        "error_code TEXT")),
        "UPDATE ledger SET cost_source = CASE WHEN kind = 'expiry' THEN 'estimate' WHEN model IS NOT NULL AND "
        "price_version NOT LIKE 'unpriced%' THEN 'usage' END"],
    7: [],  # the ledger_by_settled index: created by SCHEMA
    8: [],  # the reconcile_days and reconcile_leases tables: created by SCHEMA
}
_AFTER_MIGRATION = {
    3: ["INSERT INTO calls (agent_id, request_id, state, held_nanos, charged_nanos, counters, tags, created_ms, "
        "deadline_ms, ended_ms) SELECT agent_id, request_id, state, held_nanos, charged_nanos, counters, tags, "
        "created_ms, deadline_ms, ended_ms FROM calls_v2", "DROP TABLE calls_v2"],
}


async def migrate(db: aiosqlite.Connection) -> None:
    """Bring the file to SCHEMA_VERSION: a new file gets the tables, an older
    one each migration after its version, in order."""
    (version,) = await (await db.execute("PRAGMA user_version")).fetchone() or (0,)
    has_tables = await (await db.execute("SELECT 1 FROM sqlite_master WHERE name = 'ledger'")).fetchone()
    steps = range(version + 1, SCHEMA_VERSION + 1) if has_tables else range(0)
    for step in steps:
        for statement in MIGRATIONS.get(step, []):
            await db.execute(statement)
    await db.executescript(SCHEMA)
    for step in steps:
        for statement in _AFTER_MIGRATION.get(step, []):
            await db.execute(statement)
    await db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
