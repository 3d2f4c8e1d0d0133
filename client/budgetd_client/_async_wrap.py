"""``AsyncBudget.wrap(AsyncOpenAI())``. ``_sync_wrap.py`` is generated from
this file by ``scripts/generate_sync.py``; edit here, then run ``make generate``.

Each guarded call holds an estimate made from the request, then:
- the API raises (429, 500, timeout, ...): the hold is released;
- a plain response: its usage is settled;
- a stream: usage is read as it passes and settled when the stream ends. A
  stream that is closed or breaks before its usage arrived settles the
  amount held (the model may have produced tokens; the hold is the bound).
  A stream never finished nor closed is settled by the daemon's expiry
  (``on_reservation_expiry``) after ``reservation_ttl_seconds``.
"""

from __future__ import annotations

import logging
import sys

from . import _wrapping

log = logging.getLogger("budgetd_client")


def wrap_openai(budget, client, agent_id, tags):
    _wrapping.require_client(client, is_async=True)

    def guarded(endpoint, create):
        async def guarded_create(*args, **kwargs):
            kwargs, asked_for_usage = endpoint.prepare(kwargs)
            guard = budget.guard(agent_id, tags=tags, estimate_usage=endpoint.estimate(kwargs))
            call = await guard.__aenter__()
            try:
                result = await create(*args, **kwargs)
            except BaseException:
                await guard.__aexit__(*sys.exc_info())
                raise
            if endpoint.streams and kwargs.get("stream"):
                return AsyncGuardedStream(result, guard, call, _wrapping.StreamWatcher(asked_for_usage))
            try:
                call.record(result)
            except ValueError as err:  # no usage to read: the hold is settled
                log.warning("budgetd: %s; settling the hold", err)
            await guard.__aexit__(None, None, None)
            return result

        return guarded_create

    return _wrapping.build_proxy(client, guarded, lambda again: wrap_openai(budget, again, agent_id, tags))


class AsyncGuardedStream:
    """The provider's stream, passed through, settling once when it ends."""

    def __init__(self, stream, guard, call, watcher) -> None:
        self._stream = stream
        self._guard = guard
        self._call = call
        self._watcher = watcher
        self._settled = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        while True:
            try:
                item = await self._stream.__anext__()
            except BaseException:
                await self._settle()
                raise
            if self._watcher.passes(item):
                return item

    async def _settle(self) -> None:
        if self._settled:
            return
        self._settled = True
        if self._watcher.usage is not None:
            self._call.record_usage(**vars(self._watcher.usage))
        await self._guard.__aexit__(None, None, None)

    async def close(self) -> None:
        try:
            await self._stream.close()
        finally:
            await self._settle()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    def __getattr__(self, name):
        return getattr(self._stream, name)
