"""Generated from the async file by scripts/generate_sync.py: do not edit; change the
async file and run `make generate`.

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
    _wrapping.require_client(client, is_async=False)

    def guarded(endpoint, create):
        def guarded_create(*args, **kwargs):
            kwargs, asked_for_usage = endpoint.prepare(kwargs)
            guard = budget.guard(agent_id, tags=tags, estimate_usage=endpoint.estimate(kwargs))
            call = guard.__enter__()
            try:
                result = create(*args, **kwargs)
            except BaseException:
                guard.__exit__(*sys.exc_info())
                raise
            if endpoint.streams and kwargs.get("stream"):
                return GuardedStream(result, guard, call, _wrapping.StreamWatcher(asked_for_usage))
            try:
                call.record(result)
            except ValueError as err:  # no usage to read: the hold is settled
                log.warning("budgetd: %s; settling the hold", err)
            guard.__exit__(None, None, None)
            return result

        return guarded_create

    return _wrapping.build_proxy(client, guarded, lambda again: wrap_openai(budget, again, agent_id, tags))


class GuardedStream:
    """The provider's stream, passed through, settling once when it ends."""

    def __init__(self, stream, guard, call, watcher) -> None:
        self._stream = stream
        self._guard = guard
        self._call = call
        self._watcher = watcher
        self._settled = False

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            try:
                item = self._stream.__next__()
            except BaseException:
                self._settle()
                raise
            if self._watcher.passes(item):
                return item

    def _settle(self) -> None:
        if self._settled:
            return
        self._settled = True
        if self._watcher.usage is not None:
            self._call.record_usage(**vars(self._watcher.usage))
        self._guard.__exit__(None, None, None)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._settle()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __getattr__(self, name):
        return getattr(self._stream, name)
