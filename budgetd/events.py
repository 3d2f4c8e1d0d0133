"""Live events for ``Watch``: one poller per daemon reads the outbox as it
grows (so a pause written by any replica reaches this one's watchers) and
fans events out to the subscribers of that agent, or of a group it is in."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from .notices.model import Notice
from .service import Core
from .store import StoreError

log = logging.getLogger("budgetd.events")

POLL_SECONDS = 0.2
QUEUE_LIMIT = 1000


class EventHub:
    CLOSED = object()  # put in every watcher's queue at a drain: the stream ends

    def __init__(self, core: Core) -> None:
        self.core = core
        self._subscribers: dict[str, set[asyncio.Queue]] = defaultdict(set)
        self._cursor: object | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        try:
            _, self._cursor = await self.core.store.events_after(None)  # from now on
        except StoreError as err:
            log.warning("events start without a cursor: %s", err)
        self._task = asyncio.create_task(self._poll_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def close_watchers(self) -> None:
        """End every open Watch stream now (a drain must not wait for them)."""
        for queues in list(self._subscribers.values()):
            for queue in queues:
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait(self.CLOSED)

    def subscribe(self, agent_id: str) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(QUEUE_LIMIT)
        self._subscribers[agent_id].add(queue)
        return queue

    def unsubscribe(self, agent_id: str, queue: asyncio.Queue) -> None:
        self._subscribers[agent_id].discard(queue)
        if not self._subscribers[agent_id]:
            del self._subscribers[agent_id]

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                if self._cursor is None:
                    _, self._cursor = await self.core.store.events_after(None)
                    continue
                events, self._cursor = await self.core.store.events_after(self._cursor)
            except StoreError as err:
                log.debug("events poll: %s", err)
                continue
            for event in events:
                self._dispatch(event)

    def _dispatch(self, event: Notice) -> None:
        for agent_id, queues in list(self._subscribers.items()):
            if not self._concerns(event, agent_id):
                continue
            for queue in queues:
                if queue.full():  # a watcher that does not read loses its oldest event, not the daemon
                    queue.get_nowait()
                queue.put_nowait(event)

    def _concerns(self, event: Notice, agent_id: str) -> bool:
        if event.agent_id == agent_id and event.scope in ("", f"agent:{agent_id}"):
            return True
        if event.scope.startswith("group:"):
            plan = self.core.plan_or_none(agent_id)
            return plan is not None and any(s.key == event.scope for s in plan.scopes)
        return False
