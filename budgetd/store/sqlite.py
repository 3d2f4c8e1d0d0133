"""The embedded store: one SQLite file owned by one daemon.

WAL mode with synchronous=NORMAL: a committed transaction survives a crash
of the process (kill -9); the last commits may roll back on power loss
(use ``?synchronous=full`` in the URL to fsync every commit). Every
operation below runs inside a group-commit transaction (see batching.py),
so each is atomic and acknowledged only after COMMIT. Under NORMAL, holds,
settles and status reads run on the event loop, everything else on
aiosqlite's connection thread.

The file is checked after every transaction, before anyone is answered: it
must still be the file opened (the device and inode of its path, taken at
open). Once it was deleted or replaced, every operation raises StoreLost
until the store is opened again (a commit into a deleted file "succeeds"
into an inode nothing will read again). One os.stat per batch, a couple of
microseconds; ping also checks the -wal file (the commits since the last
checkpoint live there).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs

import aiosqlite

from ..plan import Plan
from . import rules
from .base import (
    Balance,
    CapChange,
    Counter,
    HoldRequest,
    HoldResult,
    PauseRecord,
    Claimed,
    PlanLookup,
    Pricing,
    AgentState,
    RequestConflict,
    SettleRequest,
    SettleResult,
    Store,
    StoreError,
    StoreLost,
)
from ..notices import model as notices
from ..notices.model import Notice
from .batching import GroupCommitter

SCHEMA_VERSION = 5
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
    kind TEXT NOT NULL,      -- 'settle' or 'expiry' (a charged expiry)
    cost_nanos INTEGER NOT NULL,
    tags TEXT NOT NULL,
    held_ms INTEGER,
    settled_ms INTEGER NOT NULL,
    model TEXT, provider TEXT,                  -- set when priced from usage
    input_tokens INTEGER, cached_input_tokens INTEGER, output_tokens INTEGER, reasoning_tokens INTEGER,
    price_version TEXT,
    day TEXT,                -- the local day (daily period) the cost was charged to
    groups TEXT              -- JSON list of the agent's groups charged
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
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_ms) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS ledger_by_agent ON ledger (agent_id, settled_ms);
CREATE INDEX IF NOT EXISTS ledger_by_day ON ledger (day);
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
}
_AFTER_MIGRATION = {
    3: ["INSERT INTO calls (agent_id, request_id, state, held_nanos, charged_nanos, counters, tags, created_ms, "
        "deadline_ms, ended_ms) SELECT agent_id, request_id, state, held_nanos, charged_nanos, counters, tags, "
        "created_ms, deadline_ms, ended_ms FROM calls_v2", "DROP TABLE calls_v2"],
}

def _add_spent_sql(rows: int) -> str:
    """One statement for every counter of a step (one row each)."""
    return (
        "INSERT INTO counters (scope, win, period, spent_nanos, reserved_nanos) VALUES "
        + ", ".join(["(?, ?, ?, ?, ?)"] * rows)
        + " ON CONFLICT DO UPDATE SET spent_nanos = spent_nanos + excluded.spent_nanos,"
        " reserved_nanos = reserved_nanos + excluded.reserved_nanos"
        " RETURNING scope, win, period, spent_nanos"
    )


_ADD_SPENT = [_add_spent_sql(n) for n in range(9)]  # statements for up to 8 counters, built once


def _add_spent(conn: sqlite3.Connection, counters, spent_delta: int, reserved_delta: int) -> dict[Counter, int]:
    """Add the deltas to every counter; their spend after."""
    if not counters:
        return {}
    sql = _ADD_SPENT[len(counters)] if len(counters) < len(_ADD_SPENT) else _add_spent_sql(len(counters))
    rows = conn.execute(sql, [v for c in counters for v in (*c, spent_delta, reserved_delta)]).fetchall()
    return {(scope, win, period): spent for scope, win, period, spent in rows}


def sqlite_path(url: str) -> tuple[str, dict[str, str]]:
    """``sqlite:///var/lib/budgetd/budgetd.db`` -> ``/var/lib/budgetd/budgetd.db``;
    ``sqlite://relative.db`` is relative to the working directory."""
    rest = url[len("sqlite://") :]
    path, _, query = rest.partition("?")
    return path, {k: v[-1] for k, v in parse_qs(query).items()}


class SqliteStore(Store):
    def __init__(self, url: str) -> None:
        self.path, options = sqlite_path(url)
        synchronous = options.get("synchronous", "normal").upper()
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"store.url: synchronous must be normal or full, got {synchronous.lower()}")
        self._synchronous = synchronous
        self._db: aiosqlite.Connection | None = None
        self._committer: GroupCommitter | None = None
        self._lock_file = None
        self._opened_as: tuple[int, int] | None = None  # (device, inode) of the file at open
        self._wal_opened_as: tuple[int, int] | None = None

    # -- lifecycle ------------------------------------------------------------
    async def open(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = _own_exclusively(self.path)
        try:
            # Without fsync on commit, quick batches run on the event loop
            # (see batching.py); the connection is then used from two threads,
            # one at a time.
            inline = self._synchronous == "NORMAL"
            self._db = await aiosqlite.connect(self.path, isolation_level=None, check_same_thread=not inline)
            self._opened_as = _identity(self.path)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute(f"PRAGMA synchronous={self._synchronous}")
            await self._db.execute("PRAGMA busy_timeout=5000")
            if inline:
                await self._db.execute("PRAGMA wal_autocheckpoint=0")  # the committer checkpoints off the loop
            await self._migrate()
            self._wal_opened_as = _identity(f"{self.path}-wal")  # written by now (WAL mode, the migration)
        except (sqlite3.Error, OSError) as err:
            await self.close()
            raise StoreError(f"sqlite {self.path}: {err}") from err
        self._committer = GroupCommitter(self._db, inline=inline, check=self._check_file)

    async def _migrate(self) -> None:
        (version,) = await (await self._db.execute("PRAGMA user_version")).fetchone()
        has_tables = await (await self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'ledger'")).fetchone()
        steps = range(version + 1, SCHEMA_VERSION + 1) if has_tables else range(0)
        for step in steps:
            for statement in MIGRATIONS.get(step, []):
                await self._db.execute(statement)
        await self._db.executescript(SCHEMA)
        for step in steps:
            for statement in _AFTER_MIGRATION.get(step, []):
                await self._db.execute(statement)
        await self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    async def close(self) -> None:
        self._committer = None  # nothing new starts on the connection
        if self._db is not None:
            await self._db.close()
            self._db = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone(), quick=True)  # checks the file after
        self._check_wal()

    def _check_file(self) -> None:
        """Raise StoreLost unless the path still names the file opened (after
        every transaction, before its callers are answered)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise self._lost(self.path, self._opened_as, None) from None
        except OSError as err:
            raise StoreError(f"sqlite: cannot check {self.path}: {err}") from None
        if (st.st_dev, st.st_ino) != self._opened_as:
            raise self._lost(self.path, self._opened_as, st.st_ino)

    def _check_wal(self) -> None:
        """The -wal file too (at ping: every 2 s in the daemon). Deleted
        alone, it takes the commits since the last checkpoint with it."""
        if self._wal_opened_as is None or self._committer is None:
            return
        wal = f"{self.path}-wal"
        try:
            st = os.stat(wal)
            now = st.st_ino if (st.st_dev, st.st_ino) != self._wal_opened_as else 0
        except FileNotFoundError:
            now = None
        except OSError as err:
            raise StoreError(f"sqlite: cannot check {wal}: {err}") from None
        if now != 0:
            self._committer.lost = self._lost(wal, self._wal_opened_as, now)
            raise self._committer.lost

    @staticmethod
    def _lost(path: str, opened_as, inode_now: int | None) -> StoreLost:
        what = "deleted" if inode_now is None else f"replaced (inode {inode_now} there now)"
        return StoreLost(
            f"the SQLite file {os.path.abspath(path)} was deleted or replaced while budgetd was running "
            f"(opened as inode {opened_as[1]}; {what}); refusing writes so nothing more is acknowledged into "
            "a file that no longer exists")

    async def _run(self, op, quick: bool = False):
        """``quick``: a few rows by key (may run on the event loop)."""
        if self._committer is None:
            raise StoreError("the store is closed")
        return await self._committer.run(op, quick)

    # -- the atomic steps -------------------------------------------------------
    async def hold(self, req: HoldRequest) -> HoldResult:
        return await self._run(lambda conn: _hold(conn, req), quick=True)

    async def settle(self, req: SettleRequest) -> SettleResult:
        return await self._run(lambda conn: _settle(conn, req), quick=True)

    async def release(self, request_id: str, plan: Plan, now_ms: int) -> bool:
        return await self._run(lambda conn: _release(conn, request_id, plan.agent_id), quick=True)

    async def expire(self, now_ms: int, charge: bool, plan_for: PlanLookup) -> int:
        return await self._run(lambda conn: _expire(conn, now_ms, charge, plan_for))

    async def pause(self, plan: Plan, reason: str, now_ms: int) -> None:
        def op(conn):
            conn.execute("INSERT OR REPLACE INTO pauses VALUES (?, 'manual', '', '', ?, ?)",
                         (f"agent:{plan.agent_id}", reason, now_ms))
            _notify(conn, notices.paused_by_operator(plan.agent_id, reason, now_ms))

        await self._run(op)

    async def resume(self, plan: Plan, now_ms: int) -> bool:
        def op(conn):
            scope = f"agent:{plan.agent_id}"
            lifted = conn.execute("DELETE FROM pauses WHERE scope = ?", (scope,)).rowcount > 0
            if lifted:
                _notify(conn, notices.resumed(plan.agent_id, scope, "operator", now_ms))
            return lifted

        return await self._run(op)

    async def reconcile(self, plan: Plan, now_ms: int, cause: CapChange | None = None) -> list[Notice]:
        targets = rules.reconcile_targets(plan, cause)

        def op(conn):
            written = []
            balances = _balances(conn, plan.counters)
            paused = {(p.scope, p.window, p.period) for p in _pauses(conn, plan) if p.kind == "cap"}
            for limit, change in targets:
                spent = balances.get(limit.counter, Balance()).spent_nanos
                scope, window, period = limit.counter
                capped = limit.cap_nanos is not None
                reason, pause_notice, resumed_notice = rules.reconcile_notices(plan, limit, change, now_ms)
                if capped and spent >= limit.cap_nanos and limit.counter not in paused:
                    conn.execute("INSERT OR IGNORE INTO pauses VALUES (?, ?, ?, ?, ?, ?)",
                                 (scope, "cap", window, period, reason, now_ms))
                    notice = replace(pause_notice, spent_nanos=spent)
                elif (not capped or spent < limit.cap_nanos) and limit.counter in paused:
                    conn.execute("DELETE FROM pauses WHERE scope = ? AND win = ? AND period = ?", limit.counter)
                    notice = resumed_notice
                else:
                    continue
                if _notify(conn, notice):
                    written.append(notice)
            return written

        return await self._run(op)

    async def report(self, by: str, since_day: str, until_day: str) -> list[tuple[str, int, int]]:
        if by == "group":
            source, key = "ledger, json_each(ledger.groups) AS g", "g.value"
        else:
            source = "ledger"
            key = {"agent": "agent_id", "model": "coalesce(model, '(no model)')", "day": "day"}.get(
                by, "coalesce(json_extract(tags, '$.\"' || :tag || '\"'), '(none)')")
        sql = (f"SELECT {key} AS k, sum(cost_nanos), count(DISTINCT request_id) FROM {source} "
               "WHERE day BETWEEN :since AND :until GROUP BY k ORDER BY 2 DESC, k")
        return await self._run(lambda conn: [tuple(row) for row in conn.execute(
            sql, {"tag": by, "since": since_day, "until": until_day}).fetchall()])

    async def trim_ledger(self, before_ms: int) -> int:
        return await self._run(lambda conn: conn.execute(
            "DELETE FROM ledger WHERE settled_ms < ?", (before_ms,)).rowcount)

    async def lift_lapsed_pauses(self, plan: Plan, now_ms: int) -> list[Notice]:
        def op(conn):
            written = []
            for scope in plan.scopes:
                lapsed = [
                    (window, period)
                    for window, period in conn.execute(
                        "SELECT win, period FROM pauses WHERE scope = ? AND kind = 'cap'", (scope.key,)).fetchall()
                    if (limit := plan.limit_for(scope.key, window)) is None or limit.period.key != period
                ]
                for window, period in lapsed:
                    conn.execute("DELETE FROM pauses WHERE scope = ? AND win = ? AND period = ?",
                                 (scope.key, window, period))
                left = _pauses(conn, plan)
                if lapsed and not any(p.scope == scope.key for p in left):
                    window, period = lapsed[-1]
                    notice = notices.resumed(plan.agent_id, scope.key, "rollover", now_ms, window, period)
                    if _notify(conn, notice):
                        written.append(notice)
            return written

        return await self._run(op)

    # -- the outbox -------------------------------------------------------------
    async def add_notice(self, notice: Notice, plan: Plan | None) -> bool:
        return await self._run(lambda conn: _notify(conn, notice))

    async def claim_notices(self, owner: str, now_ms: int, lease_ms: int, limit: int) -> list[Claimed]:
        def op(conn):
            rows = conn.execute(
                "UPDATE outbox SET lease_owner = ?, lease_until_ms = ?, attempts = attempts + 1 WHERE id IN ("
                "SELECT id FROM outbox WHERE state = 'pending' AND next_ms <= ? AND lease_until_ms <= ? "
                "ORDER BY id LIMIT ?) RETURNING id, payload, attempts",
                (owner, now_ms + lease_ms, now_ms, now_ms, limit),
            ).fetchall()
            return [Claimed(str(i), Notice.from_json(p), a) for i, p, a in sorted(rows)]

        return await self._run(op)

    async def finish_notice(self, claimed: Claimed, outcome: str, now_ms: int, error: str = "") -> None:
        await self._run(lambda conn: conn.execute(
            "UPDATE outbox SET state = ?, done_ms = ?, last_error = ?, lease_until_ms = 0 WHERE id = ?",
            (outcome, now_ms, error or None, int(claimed.id))))

    async def retry_notice(self, claimed: Claimed, next_ms: int, now_ms: int, error: str) -> None:
        await self._run(lambda conn: conn.execute(
            "UPDATE outbox SET next_ms = ?, last_error = ?, lease_until_ms = 0 WHERE id = ?",
            (next_ms, error, int(claimed.id))))

    async def events_after(self, cursor: object | None) -> tuple[list[Notice], object]:
        def op(conn):
            if cursor is None:
                return [], conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0]
            rows = conn.execute("SELECT id, payload FROM outbox WHERE id > ? ORDER BY id LIMIT 1000",
                                (cursor,)).fetchall()
            return [Notice.from_json(p) for _, p in rows], (rows[-1][0] if rows else cursor)

        return await self._run(op)

    async def outbox_depth(self) -> int:
        return await self._run(lambda conn: conn.execute(
            "SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0])

    # -- reads for reports and checks ------------------------------------------------
    async def spent_in(self, plan: Plan, scope: str, window: str, periods: list[str]) -> dict[str, int]:
        return await self._run(lambda conn: {period: spent for period, spent in conn.execute(
            f"SELECT period, spent_nanos FROM counters WHERE scope = ? AND win = ? AND period IN "
            f"({', '.join('?' * len(periods))})", (scope, window, *periods)).fetchall()})

    async def top_models(self, plan: Plan, since_ms: int, limit: int) -> list[tuple[str, int]]:
        return await self._run(lambda conn: conn.execute(
            "SELECT model, sum(cost_nanos) AS spent FROM ledger WHERE agent_id = ? AND settled_ms >= ? "
            "AND model IS NOT NULL GROUP BY model ORDER BY spent DESC, model LIMIT ?",
            (plan.agent_id, since_ms, limit)).fetchall())

    async def top_spenders(self, window: str, period: str, plan_for: PlanLookup, limit: int) -> list[tuple[str, int]]:
        return await self._run(lambda conn: [(scope.split(":", 1)[1], spent) for scope, spent in conn.execute(
            "SELECT scope, spent_nanos FROM counters WHERE win = ? AND period = ? AND scope LIKE 'agent:%' "
            "AND spent_nanos > 0 ORDER BY spent_nanos DESC, scope LIMIT ?", (window, period, limit)).fetchall()])

    async def read(self, plan: Plan) -> AgentState:
        return await self._run(lambda conn: AgentState(_balances(conn, plan.counters), _pauses(conn, plan)), quick=True)

    async def active_agents(self, daily_period: str, monthly_period: str) -> list[str]:
        def query(conn):
            rows = conn.execute(
                "SELECT DISTINCT scope FROM counters WHERE scope LIKE 'agent:%' AND "
                "((win = 'daily' AND period = ?) OR (win = 'monthly' AND period = ?)) "
                "UNION SELECT DISTINCT scope FROM pauses WHERE scope LIKE 'agent:%'",
                (daily_period, monthly_period),
            ).fetchall()
            return sorted(scope.split(":", 1)[1] for (scope,) in rows)

        return await self._run(query)


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of a file; None if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _own_exclusively(path: str):
    """One daemon owns the file: a second one fails here, clearly, instead of
    becoming a second writer."""
    lock = open(f"{path}.lock", "w")  # noqa: SIM115 - held open for the store's lifetime
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise StoreError(f"{path} is in use by another budgetd (lock {path}.lock is held)") from None
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


# -- the operations, run on the connection thread inside a transaction ----------


def _balances(conn: sqlite3.Connection, counters: list[Counter]) -> dict[Counter, Balance]:
    if not counters:
        return {}
    rows = conn.execute(
        "SELECT scope, win, period, spent_nanos, reserved_nanos FROM counters "
        f"WHERE (scope, win, period) IN (VALUES {', '.join(['(?, ?, ?)'] * len(counters))})",
        [part for counter in counters for part in counter],
    ).fetchall()
    return {(s, w, p): Balance(spent, reserved) for s, w, p, spent, reserved in rows}


def _pauses(conn: sqlite3.Connection, plan: Plan) -> list[PauseRecord]:
    keys = [s.key for s in plan.scopes]
    rows = conn.execute(
        f"SELECT scope, kind, win, period, reason, since_ms FROM pauses WHERE scope IN ({', '.join('?' * len(keys))})",
        keys,
    ).fetchall()
    return [PauseRecord(*row) for row in rows]


def _hold_read_sql(counters: int, scopes: int) -> str:
    """One read for everything a hold decides on: the call (if its id was
    seen), the balances of its counters and the pauses of its scopes, each
    row tagged by what it is."""
    return (
        "SELECT 0, scope, win, period, spent_nanos, reserved_nanos, NULL FROM counters "
        f"WHERE (scope, win, period) IN (VALUES {', '.join(['(?, ?, ?)'] * counters)}) "
        "UNION ALL SELECT 1, scope, kind, win, period, reason, since_ms FROM pauses "
        f"WHERE scope IN ({', '.join('?' * scopes)}) "
        "UNION ALL SELECT 2, state, held_nanos, deadline_ms, NULL, NULL, NULL FROM calls "
        "WHERE agent_id = ? AND request_id = ?"
    )


def _hold_read(plan: Plan) -> tuple[str, tuple]:
    """The hold's read statement and its fixed parameters, once per plan."""
    found = plan.memo.get("sqlite hold read")
    if found is None:
        params = (*(part for counter in plan.counters for part in counter), *(s.key for s in plan.scopes))
        found = plan.memo["sqlite hold read"] = (_hold_read_sql(len(plan.counters), len(plan.scopes)), params)
    return found


def _hold(conn: sqlite3.Connection, req: HoldRequest) -> HoldResult:
    plan = req.plan
    sql, params = _hold_read(plan)
    balances: dict[Counter, Balance] = {}
    pauses: list[PauseRecord] = []
    for row in conn.execute(sql, (*params, req.agent_id, req.request_id)).fetchall():
        if row[0] == 0:
            balances[row[1:4]] = Balance(row[4], row[5])
        elif row[0] == 1:
            pauses.append(PauseRecord(*row[1:]))
        elif row[1] == "held":  # a retry of a hold that went through
            return HoldResult(True, row[2], row[3])
        else:
            raise RequestConflict(f"request_id {req.request_id} was already {row[1]}")
    denial = rules.refuse_hold(plan, balances, pauses, req.amount_nanos)
    if denial is not None:
        return HoldResult(False, denial=denial)
    _add_spent(conn, plan.counters, 0, req.amount_nanos)
    conn.execute(
        "INSERT INTO calls (request_id, agent_id, state, held_nanos, counters, tags, created_ms, deadline_ms) "
        "VALUES (?, ?, 'held', ?, ?, ?, ?, ?)",
        (req.request_id, req.agent_id, req.amount_nanos, plan.counters_json, _tags_json(req.tags),
         req.now_ms, req.deadline_ms),
    )
    return HoldResult(True, req.amount_nanos, req.deadline_ms)


def _tags_json(tags) -> str:
    return json.dumps(dict(tags)) if tags else "{}"


def _notify(conn: sqlite3.Connection, notice: Notice) -> bool:
    """Write a notice unless its key was written before."""
    return conn.execute(
        "INSERT OR IGNORE INTO outbox (key, payload, created_ms, next_ms) VALUES (?, ?, ?, ?)",
        (notice.key, notice.to_json(), notice.at_ms, notice.at_ms),
    ).rowcount > 0


def _charge(conn, plan: Plan | None, counters, spent_delta: int, reserved_delta: int, now_ms: int,
            agent_id: str = "", warn: bool = False) -> tuple[PauseRecord, ...]:
    """Apply the deltas to every counter; warn at each threshold crossed and
    pause each window brought to its cap, with their notices, in this step.
    ``counters`` are tuples (scope, window, period)."""
    spent_after = _add_spent(conn, counters, spent_delta, reserved_delta)
    if plan is None:
        return ()
    started = []
    capped = plan.capped
    for counter in counters:
        limit = capped.get(counter)
        if limit is None:  # uncapped, or a period that is no longer current
            continue
        spent = spent_after[counter]
        if spent < limit.cap_nanos:
            if warn:  # a settle's cost warns; a charged expiry does not
                for fraction in rules.warnings_crossed(plan, counter, spent - spent_delta, spent):
                    _notify(conn, notices.warning(agent_id, limit, fraction, spent, now_ms))
            continue
        scope, window, period = counter
        record = PauseRecord(scope, "cap", window, period, rules.cap_pause_reason(limit), now_ms)
        inserted = conn.execute(
            "INSERT OR IGNORE INTO pauses VALUES (?, ?, ?, ?, ?, ?)",
            (record.scope, record.kind, record.window, record.period, record.reason, record.since_ms),
        ).rowcount
        if inserted:
            started.append(record)
            _notify(conn, notices.paused_at_cap(agent_id, record, spent, limit.cap_nanos))
    return tuple(started)


def _counters(plan: Plan | None, counters_json: str) -> tuple[Counter, ...]:
    """A call's stored counters as tuples; the plan's own (no parsing) when
    the call was held in the current periods, as nearly every one is."""
    if plan is not None and counters_json == plan.counters_json:
        return plan.counters
    return tuple(tuple(c) for c in json.loads(counters_json))


def _day_and_groups_json(plan: Plan | None, agent_id: str, counters) -> tuple[str | None, str]:
    if plan is not None and counters is plan.counters:
        found = plan.memo.get("sqlite day and groups")
        if found is None:
            day, groups = rules.day_and_groups(agent_id, counters)
            found = plan.memo["sqlite day and groups"] = (day, json.dumps(groups))
        return found
    day, groups = rules.day_and_groups(agent_id, counters)
    return day, json.dumps(groups)


def _ledger(conn, request_id, agent_id, kind, cost, tags_json, held_ms, now_ms, counters,
            pricing: Pricing | None = None, plan: Plan | None = None) -> None:
    priced = (
        (pricing.model, pricing.provider, pricing.input_tokens, pricing.cached_input_tokens, pricing.output_tokens,
         pricing.reasoning_tokens, pricing.price_version)
        if pricing is not None else (None,) * 7
    )
    day, groups = _day_and_groups_json(plan, agent_id, counters)
    conn.execute(
        "INSERT INTO ledger (request_id, agent_id, kind, cost_nanos, tags, held_ms, settled_ms, model, provider, "
        "input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, price_version, day, groups) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (request_id, agent_id, kind, cost, tags_json, held_ms, now_ms, *priced, day, groups),
    )


# A settle's tags are added to the hold's (a settle's value wins); ? twice: the
# settle's tags as JSON, or NULL for none.
_MERGED_TAGS = "tags = CASE WHEN ? IS NULL THEN tags ELSE json_patch(tags, ?) END"


def _settle(conn: sqlite3.Connection, req: SettleRequest) -> SettleResult:
    # The common case, a call still held, in one statement: a held call has
    # charged nothing yet, so what it adds to spend is what it now charges.
    tags = json.dumps(dict(req.tags)) if req.tags else None
    row = conn.execute(
        f"UPDATE calls SET state = 'settled', charged_nanos = coalesce(?, held_nanos), ended_ms = ?, {_MERGED_TAGS} "
        "WHERE agent_id = ? AND request_id = ? AND state = 'held' "
        "RETURNING held_nanos, charged_nanos, counters, tags, created_ms",
        (req.actual_nanos, req.now_ms, tags, tags, req.agent_id, req.request_id),
    ).fetchone()
    if row is not None:
        held, amount, counters_json, tags_json, created_ms = row
        counters = _counters(req.plan, counters_json)
        paused = _charge(conn, req.plan, counters, amount, -held, req.now_ms, req.agent_id, warn=True)
        _ledger(conn, req.request_id, req.agent_id, "settle", amount, tags_json, created_ms, req.now_ms, counters,
                req.pricing, req.plan)
        return SettleResult(amount, paused=paused)
    return _settle_not_held(conn, req)


def _settle_not_held(conn: sqlite3.Connection, req: SettleRequest) -> SettleResult:
    """No call, or one that was settled, released or expired."""
    row = conn.execute(
        "SELECT state, held_nanos, charged_nanos, counters, tags, created_ms FROM calls "
        "WHERE agent_id = ? AND request_id = ?",
        (req.agent_id, req.request_id),
    ).fetchone()
    if row is None:  # no hold (fail-open, or a hold this store never saw): charge the current windows
        amount = req.actual_nanos if req.actual_nanos is not None else req.plan.estimate_nanos
        counters = req.plan.counters
        tags = _tags_json(req.tags)
        conn.execute(
            "INSERT INTO calls (request_id, agent_id, state, held_nanos, charged_nanos, counters, tags, created_ms, "
            "deadline_ms, ended_ms) VALUES (?, ?, 'settled', 0, ?, ?, ?, ?, ?, ?)",
            (req.request_id, req.agent_id, amount, req.plan.counters_json, tags, req.now_ms, req.now_ms, req.now_ms),
        )
        paused = _charge(conn, req.plan, counters, amount, 0, req.now_ms, req.agent_id, warn=True)
        _ledger(conn, req.request_id, req.agent_id, "settle", amount, tags, None, req.now_ms, counters, req.pricing,
                req.plan)
        return SettleResult(amount, paused=paused)
    state, held, charged, counters_json, _, created_ms = row
    if state == "settled":
        return SettleResult(charged, duplicate=True)
    # released or expired: no reservation is left; the cost comes, less what
    # an expiry already charged (counted once).
    amount = req.actual_nanos if req.actual_nanos is not None else held
    spent_delta = amount - charged
    counters = _counters(req.plan, counters_json)
    paused = _charge(conn, req.plan, counters, spent_delta, 0, req.now_ms, req.agent_id, warn=True)
    new_tags = json.dumps(dict(req.tags)) if req.tags else None
    (tags,) = conn.execute(
        f"UPDATE calls SET state = 'settled', charged_nanos = ?, ended_ms = ?, {_MERGED_TAGS} "
        "WHERE agent_id = ? AND request_id = ? RETURNING tags",
        (amount, req.now_ms, new_tags, new_tags, req.agent_id, req.request_id),
    ).fetchone()
    _ledger(conn, req.request_id, req.agent_id, "settle", spent_delta, tags, created_ms, req.now_ms, counters,
            req.pricing, req.plan)
    return SettleResult(amount, paused=paused)


def _release(conn: sqlite3.Connection, request_id: str, agent_id: str) -> bool:
    row = conn.execute(
        "SELECT state, held_nanos, counters FROM calls WHERE agent_id = ? AND request_id = ?", (agent_id, request_id)
    ).fetchone()
    if row is None or row[0] != "held":
        return False
    _charge(conn, None, _counters(None, row[2]), 0, -row[1], 0)
    conn.execute("UPDATE calls SET state = 'released' WHERE agent_id = ? AND request_id = ?", (agent_id, request_id))
    return True


def _expire(conn: sqlite3.Connection, now_ms: int, charge: bool, plan_for: PlanLookup) -> int:
    rows = conn.execute(
        "SELECT request_id, agent_id, held_nanos, counters, tags, created_ms FROM calls "
        "WHERE state = 'held' AND deadline_ms <= ? ORDER BY deadline_ms LIMIT 1000",
        (now_ms,),
    ).fetchall()
    for request_id, agent_id, held, counters_json, tags_json, created_ms in rows:
        charged = held if charge else 0
        plan = plan_for(agent_id) if charge else None
        counters = _counters(plan, counters_json)
        _charge(conn, plan, counters, charged, -held, now_ms, agent_id)
        conn.execute(
            "UPDATE calls SET state = 'expired', charged_nanos = ?, ended_ms = ? WHERE agent_id = ? AND request_id = ?",
            (charged, now_ms, agent_id, request_id),
        )
        if charged:
            _ledger(conn, request_id, agent_id, "expiry", charged, tags_json, created_ms, now_ms, counters, None, plan)
    return len(rows)
