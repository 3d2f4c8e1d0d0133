"""Group commit for the SQLite store.

Every store operation is a plain synchronous function of a sqlite3
connection. Operations that arrive while a batch is running wait for the
next one; a batch runs all of them in one transaction and answers every
caller only after COMMIT. One failing operation rolls back to its own
savepoint and fails alone. Batches run one at a time, so the connection is
never used by two threads at once.

Where a batch runs:
- On aiosqlite's connection thread by default: each hop there and back
  costs two thread switches and a wake-up of the event loop (~65-100 us,
  and under load a tenth of the daemon's time in the profile).
- On the event loop itself when the store allows it (``inline``) and every
  operation of the batch is quick (a hold, a settle, a status read: a few
  rows by primary key). With synchronous=NORMAL a commit writes the WAL
  without fsync, tens of microseconds. Checkpoints, which do fsync, are
  then taken off the loop: automatic checkpoints are off and the committer
  runs one on the connection thread every CHECKPOINT_EVERY commits.
  Long operations (reports, sweeps, listings) always go to the thread.
- A quick operation that finds the committer idle runs at once, inside the
  handler, with no task and no future: at one client thread that is a loop
  turn less per call (p50 of a guarded call about 0.03-0.05x of the floor's
  lower in bench runs). Batches then form only behind work on the thread (a
  checkpoint, a report) or under synchronous=full. Batching every quick
  operation behind a callback (``call_soon``) gave about 5% more guarded
  calls per second at 8 threads and a higher p50; bench/RESULTS.md has both.

After each transaction, before anyone is answered, the store's ``check``
runs (the SQLite store: is the database file still the one it opened?). A
commit into a file that was deleted or replaced "succeeds" into an inode
that is gone: checking after the commit and failing the whole batch with
StoreLost is the honest answer (nothing is acknowledged after the loss).
From then on every operation fails with that StoreLost, unrun.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import aiosqlite

from ..model import StoreError, StoreLost

log = logging.getLogger("budgetd.store.sqlite")

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], Any]

# Commits between checkpoints when automatic checkpoints are off; a commit
# writes a few pages, so the WAL stays within a few thousand pages (SQLite's
# automatic checkpoint is at 1000 pages).
CHECKPOINT_EVERY = 300


def _run_on_connection_thread(db: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]):
    # aiosqlite has no public "run this callable on the connection thread";
    # _execute is what every public method of it uses. aiosqlite is pinned
    # (<0.23) and every store test goes through here.
    return db._execute(fn, db._conn)


class GroupCommitter:
    def __init__(self, db: aiosqlite.Connection, inline: bool = False,
                 check: Callable[[], None] | None = None) -> None:
        """``inline``: quick batches may run on the event loop (the
        connection must allow use from another thread, and automatic
        checkpoints must be off). ``check``: run after every transaction,
        before its callers are answered; StoreLost from it fails the batch
        and every operation after it."""
        self._db = db
        self._inline = inline
        self._check = check
        self.lost: StoreLost | None = None
        self._pending: list[tuple[Operation, asyncio.Future, bool]] = []
        self._draining = False
        self._commits = 0

    def _verified(self, outcomes: list[tuple[bool, Any]]) -> list[tuple[bool, Any]]:
        """The batch's outcomes, or StoreLost for every one of them."""
        if self._check is None:
            return outcomes
        try:
            self._check()
        except StoreLost as err:
            self.lost = err
            return [(False, err)] * len(outcomes)
        except Exception as err:  # could not tell (e.g. the directory unreadable): fail the batch, not the store
            return _failed(err, len(outcomes))
        return outcomes

    async def run(self, op: Operation, quick: bool = False) -> Any:
        if self.lost is not None:
            raise self.lost
        if quick and self._inline and not self._draining:
            # Nothing is queued and the connection is free: run it now, with
            # no task and no future. A batch could only gather operations
            # while this one waited, and on the loop it never waits; skipping
            # the hop saves a loop turn per call (see the module's docstring).
            ok, value = self._verified(_transaction_or_error(self._db._conn, [(op, None, quick)]))[0]
            self._committed()
            if ok:
                return value
            raise value
        future = asyncio.get_running_loop().create_future()
        self._pending.append((op, future, quick))
        self._start_draining()
        return await future

    def _start_draining(self) -> None:
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())

    def _checkpoint_due(self) -> bool:
        return self._inline and self._commits >= CHECKPOINT_EVERY

    def _committed(self) -> None:
        self._commits += 1
        if self._checkpoint_due():
            self._start_draining()  # the drain takes the checkpoint; quick operations queue meanwhile

    async def _drain(self) -> None:
        try:
            while self._pending or self._checkpoint_due():
                if self._checkpoint_due():
                    self._commits = 0
                    if self.lost is None:
                        await self._checkpoint()
                    continue
                batch, self._pending = self._pending, []
                if self.lost is not None:
                    outcomes = [(False, self.lost)] * len(batch)
                elif self._inline and all(quick for _, _, quick in batch):
                    outcomes = self._verified(_transaction_or_error(self._db._conn, batch))
                else:
                    try:
                        in_transaction = functools.partial(_transaction, batch=batch)
                        outcomes = await _run_on_connection_thread(self._db, in_transaction)
                    except Exception as err:
                        outcomes = _failed(err, len(batch))
                    outcomes = self._verified(outcomes)
                for (_, future, _), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():  # the caller went away (cancelled)
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
                self._commits += 1
        finally:
            self._draining = False

    async def _checkpoint(self) -> None:
        def checkpoint(conn: sqlite3.Connection) -> None:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # fetched: no statement left open

        try:
            await _run_on_connection_thread(self._db, checkpoint)
        except sqlite3.Error as err:  # tried again after CHECKPOINT_EVERY more commits; the WAL grows meanwhile
            log.warning("sqlite checkpoint failed: %s", err)


def _transaction_or_error(conn: sqlite3.Connection, batch) -> list[tuple[bool, Any]]:
    try:
        return _transaction(conn, batch)
    except Exception as err:
        return _failed(err, len(batch))


def _failed(err: Exception, count: int) -> list[tuple[bool, Any]]:
    """The whole transaction failed: nobody is acknowledged."""
    error = err if isinstance(err, StoreError) else StoreError(f"sqlite: {err}")
    return [(False, error)] * count


def _transaction(conn: sqlite3.Connection, batch) -> list[tuple[bool, Any]]:
    if len(batch) == 1:
        return [_run_in_own_transaction(conn, batch[0][0])]
    outcomes: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for op, *_ in batch:
            conn.execute("SAVEPOINT op")
            try:
                outcomes.append((True, op(conn)))
            except Exception as err:
                conn.execute("ROLLBACK TO op")
                outcomes.append((False, _error(err)))
            conn.execute("RELEASE op")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def _run_in_own_transaction(conn: sqlite3.Connection, op: Operation) -> tuple[bool, Any]:
    """A batch of one needs no savepoint: its failure rolls back the whole
    transaction (two statements fewer, the common case at low load)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        try:
            value = op(conn)
        except Exception as err:
            conn.execute("ROLLBACK")
            return False, _error(err)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return True, value


def _error(err: Exception) -> Exception:
    return err if not isinstance(err, sqlite3.Error) else StoreError(f"sqlite: {err}")
