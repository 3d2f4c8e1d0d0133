"""Live events for ``Watch``: one poller per daemon reads the outbox as it
grows (so a pause written by any replica reaches this one's watchers) and
fans events out to the subscribers of that agent, or of a group it is in.

A stream is authorized when it opens, and again whenever the config changes
(``reauthorize``): a token revoked or narrowed in budgets.yaml must not keep
receiving an agent's events on a stream it opened before."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from .app import BudgetService
from .auth import PermissionDenied, Unauthenticated, identify, require
from .notices.model import Notice
from .store import StoreError

log = logging.getLogger("budgetd.events")

POLL_SECONDS = 0.2
QUEUE_LIMIT = 1000


class EventHub:
    CLOSED = object()  # put in every watcher's queue at a drain: the stream ends

    def __init__(self, service: BudgetService) -> None:
        self.service = service
        # agent id -> {queue: the authorization metadata its stream opened with}
        self._subscribers: dict[str, dict[asyncio.Queue, tuple]] = defaultdict(dict)
        # Streams of every event, whoever it concerns (the dashboard's live updates).
        self._everything: set[asyncio.Queue] = set()
        self._cursor: object | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        try:
            _, self._cursor = await self.service.store.events_after(None)  # from now on
        except StoreError as err:
            log.warning("events start without a cursor: %s", err)
        self._task = asyncio.create_task(self._poll_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def close_watchers(self) -> None:
        """End every open Watch stream now (a drain must not wait for them)."""
        for queues in [*self._subscribers.values(), list(self._everything)]:
            for queue in queues:
                _put_last(queue, self.CLOSED)

    def reauthorize(self) -> int:
        """Check every open stream against the config in force now; end those
        whose token it no longer allows (the stream reads the refusal and
        ends with UNAUTHENTICATED or PERMISSION_DENIED). Returns how many.
        The reloader runs this right after each config swap."""
        auth = self.service.in_force.config.auth
        if auth is None:  # auth turned off: every caller is trusted
            return 0
        ended = 0
        for agent_id, queues in list(self._subscribers.items()):
            for queue, metadata in list(queues.items()):
                try:
                    require(identify(auth, metadata), agent_id=agent_id)
                except (Unauthenticated, PermissionDenied) as refusal:
                    del queues[queue]  # no more events; the stream ends at the refusal
                    _put_last(queue, refusal)
                    ended += 1
            if not queues:
                del self._subscribers[agent_id]
        if ended:
            log.warning("config change: ended %d watch stream(s) whose token is no longer allowed", ended)
        return ended

    def subscribe(self, agent_id: str, metadata=()) -> asyncio.Queue:
        """``metadata``: the stream's invocation metadata; only its
        authorization is kept, for ``reauthorize``."""
        queue: asyncio.Queue = asyncio.Queue(QUEUE_LIMIT)
        self._subscribers[agent_id][queue] = tuple((k, v) for k, v in (metadata or ()) if k == "authorization")
        return queue

    def subscribe_all(self) -> asyncio.Queue:
        """Every event of the fleet; the subscriber checks its own access."""
        queue: asyncio.Queue = asyncio.Queue(QUEUE_LIMIT)
        self._everything.add(queue)
        return queue

    def unsubscribe_all(self, queue: asyncio.Queue) -> None:
        self._everything.discard(queue)

    def unsubscribe(self, agent_id: str, queue: asyncio.Queue) -> None:
        queues = self._subscribers.get(agent_id)
        if queues is None:
            return
        queues.pop(queue, None)
        if not queues:
            del self._subscribers[agent_id]

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                if self._cursor is None:
                    _, self._cursor = await self.service.store.events_after(None)
                    continue
                events, self._cursor = await self.service.store.events_after(self._cursor)
            except StoreError as err:
                log.debug("events poll: %s", err)
                continue
            for event in events:
                self._dispatch(event)

    def _dispatch(self, event: Notice) -> None:
        for queue in list(self._everything):
            _put_last(queue, event)
        for agent_id, queues in list(self._subscribers.items()):
            if not self._concerns(event, agent_id):
                continue
            for queue in queues:
                _put_last(queue, event)

    def _concerns(self, event: Notice, agent_id: str) -> bool:
        if event.agent_id == agent_id and event.scope in ("", f"agent:{agent_id}"):
            return True
        if event.scope.startswith("group:"):
            plan = self.service.plan_or_none(agent_id)
            return plan is not None and any(s.key == event.scope for s in plan.scopes)
        return False


def _put_last(queue: asyncio.Queue, item) -> None:
    if queue.full():  # a watcher that does not read loses its oldest event, not the daemon
        queue.get_nowait()
    queue.put_nowait(item)
