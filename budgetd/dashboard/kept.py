"""A value read from the store and kept a while: what the fleet page builds
its order and filters from.

Kept for ``fresh_seconds``, or ``STALE_FACTOR`` times as long as its read
took when that is longer. When stale (aged, or marked so by a notice) it is
read again: at once if its last read was quick, else in the background
while the stale value keeps serving, so a read of seconds (100,000 agents
that all spent) never holds a request, and the loop runs one such read at a
time. Only the very first read is waited for."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from ..store import StoreError

log = logging.getLogger("budgetd.dashboard")

STALE_FACTOR = 3
READ_NOW_SECONDS = 0.2  # a read faster than this is done again at once when stale

T = TypeVar("T")


class Kept(Generic[T]):
    def __init__(self, read: Callable[[], Awaitable[T]], fresh_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self._fresh_seconds = fresh_seconds
        self._clock = clock
        self._value: T | None = None
        self._read_at = 0.0
        self._took = 0.0
        self._stale = False
        self._starts = 0  # reads begun, numbered from 1
        self._value_read = 0  # the number of the read that gave the value
        self._one_read = asyncio.Lock()
        self._background: asyncio.Task | None = None

    def invalidate(self) -> None:
        self._stale = True

    def close(self) -> None:
        if self._background is not None:
            self._background.cancel()

    async def get(self) -> T:
        if self._value is None:
            return await self._read_again()
        aged = self._clock() - self._read_at >= max(self._fresh_seconds, STALE_FACTOR * self._took)
        if self._stale or aged:
            if self._took < READ_NOW_SECONDS:
                return await self._read_again()
            if self._background is None or self._background.done():
                self._background = asyncio.create_task(self._read_in_background())
        return self._value

    async def latest(self) -> T:
        """As ``get``, after a read in the background now running (what is read
        from this value should not be older than it need be)."""
        if self._background is not None and not self._background.done():
            await asyncio.shield(self._background)
        return await self.get()

    async def _read_in_background(self) -> None:
        try:
            await self._read_again()
        except StoreError as err:
            log.warning("dashboard: the fleet was not read again: %s", err)

    async def _read_again(self) -> T:
        started_before = self._starts  # reads begun before this ask: their values may predate it
        async with self._one_read:
            if self._value is not None and self._value_read > started_before:  # begun after we asked
                return self._value
            self._stale = False  # a notice from now on makes it stale again
            self._starts += 1
            number = self._starts
            started = self._clock()
            value = await self._read()
            self._read_at = self._clock()
            self._took = self._read_at - started
            self._value, self._value_read = value, number
            return value
