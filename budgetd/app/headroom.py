"""Holds that wait for headroom instead of being refused.

A hold refused only because of other calls' reservations (spent + amount
fits every cap, spent + reserved + amount does not) would fit once some of
those calls settle below their estimates or release: refusing it would stop
an agent with budget left. So it waits, first come first served among the
holds of its agent on this replica, until a settle or release frees room,
its wait ends, or the room can no longer appear (a retry refused by spend
alone, or a pause). Only the queue's head retries, so a wait costs one store
call per wake, not one per waiter.

Wakes: a settle, release or expiry here wakes the heads of the queues that
share a scope (the agent or a group) with the call that ended; a head also
retries every POLL_SECONDS, which is how a settle on another replica of a
shared store (Redis) is seen, and a config reload that raised a cap.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from ..plan import Scope
from ..store import HoldResult

POLL_SECONDS = 0.025  # a head's retry when nothing here woke it: a settle on another replica


@dataclass(eq=False)
class _Waiter:
    scope_keys: frozenset[str]
    turn: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Waited:
    result: HoldResult  # the last attempt's
    waited_seconds: float
    ended_by: str  # "allowed", "refused" (room cannot appear), "timeout" or "draining"


class HeadroomQueues:
    def __init__(self, poll_seconds: float = POLL_SECONDS) -> None:
        self.poll_seconds = poll_seconds
        self._queues: dict[str, deque[_Waiter]] = {}  # by agent id, oldest first

    def __contains__(self, agent_id: str) -> bool:
        """Whether holds of this agent are waiting: a new one queues behind them."""
        return agent_id in self._queues

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def freed(self, scopes: Iterable[Scope] | None = None) -> None:
        """Room may have appeared in these scopes (None: anywhere); wake the
        heads of the queues that share one. Called on every settle: with no
        one waiting it returns before building anything."""
        if not self._queues:
            return
        keys = None if scopes is None else frozenset(s.key for s in scopes)
        for queue in self._queues.values():
            head = queue[0]
            if keys is None or not head.scope_keys.isdisjoint(keys):
                head.turn.set()

    async def wait(self, agent_id: str, scopes: Iterable[Scope], attempt: Callable[[], Awaitable[HoldResult]],
                   first: HoldResult | None, wait_seconds: float, draining: Callable[[], bool]) -> Waited:
        """Queue, then retry ``attempt`` at each turn until it is allowed,
        refused for good, or ``wait_seconds`` pass. ``first``: the refusal
        that sent the hold here (None: it queued behind others untried)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        ends_at = started + wait_seconds
        me = _Waiter(frozenset(s.key for s in scopes))
        queue = self._queues.setdefault(agent_id, deque())
        queue.append(me)
        last = first
        try:
            while True:
                if draining():
                    return Waited(last or HoldResult(False), loop.time() - started, "draining")
                left = ends_at - loop.time()
                if left <= 0:
                    if last is None:  # never reached the head: tried once at the end, so the answer is current
                        last = await attempt()
                        return Waited(last, loop.time() - started, "allowed" if last.allowed else "timeout")
                    return Waited(last, loop.time() - started, "timeout")
                head = queue[0] is me
                try:
                    await asyncio.wait_for(me.turn.wait(), min(left, self.poll_seconds) if head else left)
                except TimeoutError:
                    pass
                me.turn.clear()
                if queue[0] is not me or draining():
                    continue
                last = await attempt()
                if last.allowed:
                    return Waited(last, loop.time() - started, "allowed")
                if last.denial is None or not last.denial.waitable:
                    return Waited(last, loop.time() - started, "refused")
        finally:
            queue.remove(me)
            if not queue:
                del self._queues[agent_id]
            else:
                queue[0].turn.set()  # the next in line tries now: the room may fit it too
