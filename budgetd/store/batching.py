"""Group commit on aiosqlite's connection thread.

Every store operation is a plain synchronous function of a sqlite3
connection. Operations that arrive while a batch is running wait for the
next one; a batch runs all of them in one transaction with a single hop to
the connection thread (each aiosqlite await is a hop of ~65-100 us), and
answers every caller only after COMMIT. One failing operation rolls back to
its own savepoint and fails alone.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import aiosqlite

from .base import StoreError

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], Any]


def _run_on_connection_thread(db: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]):
    # aiosqlite has no public "run this callable on the connection thread";
    # _execute is what every public method of it uses. aiosqlite is pinned
    # (<0.23) and every store test goes through here.
    return db._execute(fn, db._conn)


class GroupCommitter:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._pending: list[tuple[Operation, asyncio.Future]] = []
        self._draining = False

    async def run(self, op: Operation) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((op, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    outcomes = await _run_on_connection_thread(self._db, lambda conn: _transaction(conn, batch))
                except Exception as err:  # the whole transaction failed: nobody is acknowledged
                    error = err if isinstance(err, StoreError) else StoreError(f"sqlite: {err}")
                    outcomes = [(False, error)] * len(batch)
                for (_, future), (ok, value) in zip(batch, outcomes):
                    if future.done():  # the caller went away (cancelled)
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._draining = False


def _transaction(conn: sqlite3.Connection, batch) -> list[tuple[bool, Any]]:
    if len(batch) == 1:
        return [_alone(conn, batch[0][0])]
    outcomes: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for op, _ in batch:
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


def _alone(conn: sqlite3.Connection, op: Operation) -> tuple[bool, Any]:
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
