"""The SQLite store: its lifecycle, the checks of its file, and each step of
the contract run by the group committer (batching.py). The steps themselves
are in calls.py, pauses.py, ledger.py, outbox.py, reads.py and
reconciliations.py."""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import IO

import aiosqlite

from ...notices.model import Notice
from ...plan import Plan
from ...reconcile.model import ReconcileDay
from ...reports import ReportPart, TagHourSpend
from ..base import Store
from ..model import (
    AgentActivity,
    AgentState,
    CallFacts,
    CapChange,
    Claimed,
    CostEvent,
    HoldRequest,
    HoldResult,
    PlanLookup,
    QueuedNotice,
    SettleRequest,
    SettleResult,
    StoreError,
    UsageSum,
)
from ..per_plan import PerPlan
from . import calls, ledger, outbox, pauses, reads, reconciliations
from .batching import GroupCommitter, Operation
from .files import identity, lost, own_exclusively, sqlite_path
from .schema import migrate

EXPORT_PAGE = 1000  # ledger rows per read of an export


class SqliteStore(Store):
    def __init__(self, url: str) -> None:
        self.path, options = sqlite_path(url)
        synchronous = options.get("synchronous", "normal").upper()
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"store.url: synchronous must be normal or full, got {synchronous.lower()}")
        self._synchronous = synchronous
        self._db: aiosqlite.Connection | None = None
        self._committer: GroupCommitter | None = None
        self._lock_file: IO[str] | None = None
        self._opened_as: tuple[int, int] | None = None  # (device, inode) of the file at open
        self._wal_opened_as: tuple[int, int] | None = None
        self._statements = PerPlan(calls.plan_statements)

    # -- lifecycle ------------------------------------------------------------
    async def open(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = own_exclusively(self.path)
        try:
            # Without fsync on commit, quick batches run on the event loop
            # (see batching.py); the connection is then used from two threads,
            # one at a time.
            inline = self._synchronous == "NORMAL"
            self._db = db = await aiosqlite.connect(self.path, isolation_level=None, check_same_thread=not inline)
            self._opened_as = identity(self.path)
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(f"PRAGMA synchronous={self._synchronous}")
            await db.execute("PRAGMA busy_timeout=5000")
            if inline:
                await db.execute("PRAGMA wal_autocheckpoint=0")  # the committer checkpoints off the loop
            await migrate(db)
            self._wal_opened_as = identity(f"{self.path}-wal")  # written by now (WAL mode, the migration)
        except (sqlite3.Error, OSError) as err:
            await self.close()
            raise StoreError(f"sqlite {self.path}: {err}") from err
        self._committer = GroupCommitter(db, inline=inline, check=self._check_file)

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
            raise lost(self.path, self._opened_as, None) from None
        except OSError as err:
            raise StoreError(f"sqlite: cannot check {self.path}: {err}") from None
        if (st.st_dev, st.st_ino) != self._opened_as:
            raise lost(self.path, self._opened_as, st.st_ino)

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
            self._committer.lost = lost(wal, self._wal_opened_as, now)
            raise self._committer.lost

    async def _run(self, op: Operation, quick: bool = False):
        """``quick``: a few rows by key (may run on the event loop)."""
        if self._committer is None:
            raise StoreError("the store is closed")
        return await self._committer.run(op, quick)

    # -- counters and holds -------------------------------------------------------
    async def hold(self, req: HoldRequest) -> HoldResult:
        statements = self._statements(req.plan)
        return await self._run(lambda conn: calls.hold(conn, req, statements), quick=True)

    async def settle(self, req: SettleRequest) -> SettleResult:
        statements = self._statements(req.plan)
        return await self._run(lambda conn: calls.settle(conn, req, statements), quick=True)

    async def release(self, request_id: str, plan: Plan, now_ms: int) -> bool:
        return await self._run(lambda conn: calls.release(conn, request_id, plan.agent_id), quick=True)

    async def record_failure(self, request_id: str, plan: Plan, now_ms: int, facts: CallFacts) -> CostEvent | None:
        statements = self._statements(plan)
        return await self._run(lambda conn: calls.record_failure(conn, request_id, plan, now_ms, facts, statements),
                               quick=True)

    async def expire(self, now_ms: int, charge: bool, plan_for: PlanLookup,
                     events: list[CostEvent] | None = None) -> int:
        written: list[CostEvent] = []

        def step(conn: sqlite3.Connection) -> int:
            written.clear()  # a step is run again alone when its batch failed
            return calls.expire(conn, now_ms, charge, plan_for, written)

        expired = await self._run(step)
        if events is not None:
            events.extend(written)  # committed by now
        return expired

    async def read(self, plan: Plan) -> AgentState:
        return await self._run(lambda conn: reads.read(conn, plan), quick=True)

    async def read_many(self, plans: Sequence[Plan]) -> list[AgentState]:
        return await self._run(lambda conn: reads.read_many(conn, plans))

    async def spent_in(self, plan: Plan, scope: str, window: str, periods: list[str]) -> dict[str, int]:
        return await self._run(lambda conn: reads.spent_in(conn, scope, window, periods))

    async def top_spenders(self, window: str, period: str, plan_for: PlanLookup, limit: int) -> list[tuple[str, int]]:
        return await self._run(lambda conn: reads.top_spenders(conn, window, period, limit))

    async def active_agents(self, daily_period: str, monthly_period: str) -> list[str]:
        return await self._run(lambda conn: reads.active_agents(conn, daily_period, monthly_period))

    # -- pauses -----------------------------------------------------------------------
    async def pause(self, plan: Plan, reason: str, now_ms: int) -> None:
        await self._run(lambda conn: pauses.pause(conn, plan, reason, now_ms))

    async def resume(self, plan: Plan, now_ms: int) -> bool:
        return await self._run(lambda conn: pauses.resume(conn, plan, now_ms))

    async def reconcile(self, plan: Plan, now_ms: int, cause: CapChange | None = None) -> list[Notice]:
        return await self._run(lambda conn: pauses.reconcile(conn, plan, now_ms, cause))

    async def paused_tag_values(self) -> list[str]:
        return await self._run(pauses.paused_tag_values)

    async def lift_lapsed_pauses(self, plan: Plan, now_ms: int) -> list[Notice]:
        return await self._run(lambda conn: pauses.lift_lapsed(conn, plan, now_ms))

    # -- the ledger -----------------------------------------------------------------------
    async def report_parts(self, by: str, since_day: str, until_day: str) -> list[ReportPart]:
        return await self._run(lambda conn: ledger.report_parts(conn, by, since_day, until_day))

    async def tag_spend_by_hour(self, tags: Sequence[str], since_ms: int, until_ms: int) -> list[TagHourSpend]:
        return await self._run(lambda conn: ledger.tag_spend_by_hour(conn, tags, since_ms, until_ms))

    async def cost_events(self, since_day: str, until_day: str) -> AsyncIterator[CostEvent]:
        after = 0
        while True:
            page: list[tuple[int, CostEvent]] = await self._run(
                functools.partial(ledger.cost_events, since_day=since_day, until_day=until_day, after_seq=after,
                                  limit=EXPORT_PAGE))
            for _, event in page:
                yield event
            if len(page) < EXPORT_PAGE:
                return
            after = page[-1][0]

    async def trim_ledger(self, before_ms: int) -> int:
        return await self._run(lambda conn: ledger.trim(conn, before_ms))

    async def top_models(self, plan: Plan, since_ms: int, limit: int) -> list[tuple[str, int]]:
        return await self._run(lambda conn: ledger.top_models(conn, plan, since_ms, limit))

    async def usage_sums(self, bounds: Sequence[int], since_day: str, until_day: str) -> list[UsageSum]:
        return await self._read_apart(lambda conn: ledger.usage_sums(conn, bounds, since_day, until_day))

    async def _read_apart(self, read):
        """A long read on a read-only connection of its own, in a thread: in
        WAL mode a reader sees the last commit and blocks no writer, so holds
        and settles do not queue behind it for the one connection (a day of a
        hundred thousand calls summed takes a few hundred milliseconds)."""
        if self._committer is None:
            raise StoreError("the store is closed")
        if self._committer.lost is not None:
            raise self._committer.lost

        def run():
            uri = Path(self.path).resolve().as_uri() + "?mode=ro"  # a path with # or % in it, escaped
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            try:
                conn.execute("PRAGMA busy_timeout=5000")
                return read(conn)
            finally:
                conn.close()

        try:
            found = await asyncio.to_thread(run)
        except sqlite3.Error as err:
            raise StoreError(f"sqlite {self.path}: {err}") from err
        self._check_file()  # read from the file opened, not one put in its place...
        self._check_wal()  # ...with its last commits (a deleted -wal takes them with it)
        return found

    async def activity(self, since_day: str, until_day: str) -> list[AgentActivity]:
        return await self._run(lambda conn: ledger.activity(conn, since_day, until_day))

    async def recent_events(self, plan: Plan, limit: int) -> list[CostEvent]:
        return await self._run(lambda conn: ledger.recent_events(conn, plan, limit))

    # -- the outbox -------------------------------------------------------------------------
    async def add_notice(self, notice: Notice, plan: Plan | None) -> bool:
        return await self._run(lambda conn: outbox.notify(conn, notice))

    async def claim_notices(self, owner: str, now_ms: int, lease_ms: int, limit: int) -> list[Claimed]:
        return await self._run(lambda conn: outbox.claim(conn, owner, now_ms, lease_ms, limit))

    async def finish_notice(self, claimed: Claimed, outcome: str, now_ms: int, error: str = "") -> None:
        await self._run(lambda conn: outbox.finish(conn, claimed, outcome, now_ms, error))

    async def retry_notice(self, claimed: Claimed, next_ms: int, now_ms: int, error: str) -> None:
        await self._run(lambda conn: outbox.retry(conn, claimed, next_ms, error))

    async def events_after(self, cursor: object | None) -> tuple[list[Notice], object]:
        return await self._run(lambda conn: outbox.events_after(conn, cursor))

    async def outbox_depth(self) -> int:
        return await self._run(outbox.depth)

    async def recent_notices(self, limit: int, *, state: str | None = None,
                             scope: str | None = None) -> list[QueuedNotice]:
        return await self._run(lambda conn: outbox.recent(conn, limit, state, scope))

    # -- reconciliation results ----------------------------------------------------------------
    async def claim_reconciliation(self, provider: str, day: str, pass_name: str, owner: str,
                                   now_ms: int, lease_ms: int) -> bool:
        return await self._run(lambda conn: reconciliations.claim(conn, provider, day, pass_name, owner, now_ms,
                                                                  lease_ms))

    async def save_reconciliation(self, result: ReconcileDay, owner: str) -> None:
        await self._run(lambda conn: reconciliations.save(conn, result, owner))

    async def reconciliations(self, since_day: str, until_day: str,
                              provider: str | None = None) -> list[ReconcileDay]:
        return await self._run(lambda conn: reconciliations.reconciliations(conn, since_day, until_day, provider))
