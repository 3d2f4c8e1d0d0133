"""One pipelined connection to Redis for the store's hot path (holds,
settles, releases).

redis-py spends about as much of the daemon's time on each script call as
the rest of budgetd together (a pool checkout with fork checks, command
encoding in Python, a stream reader, a timeout per read), and at one client
thread it doubles the latency a Redis round trip adds. Here a call is: hiredis packs the command
(C), the transport writes it, and this protocol parses replies with hiredis
as bytes arrive and answers the waiting futures in order. Redis answers a
connection's commands in the order they came, so calls from concurrent RPCs
share the one connection and are pipelined under load. One timer per
connection, not one per call, bounds the wait: when the oldest command has
had no answer for the timeout, the connection is dropped and every call
waiting on it fails (a timer per call costs more than the call's own work here).

The connection is opened by redis-py (so TLS, ACL users, passwords and the
database number in the URL mean what they mean everywhere else), then its
transport is handed to this protocol. Everything else the store does still
goes through redis-py; on Redis Cluster the store does not use this at all.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError


class _Protocol(asyncio.Protocol):
    def __init__(self, opened_by, transport: asyncio.Transport, timeout: float) -> None:
        # redis-py's connection owns the stream objects around the transport;
        # kept so that nothing of it is collected (and closes the transport).
        self._opened_by = opened_by
        self._transport = transport
        self._timeout = timeout
        self._reader = hiredis.Reader(encoding="utf-8")
        self._waiting: collections.deque[tuple[asyncio.Future, float]] = collections.deque()  # and when sent
        self._watchdog: asyncio.TimerHandle | None = None
        self._failure: Exception | None = None
        self.closed = False
        # The loop the connection was opened on, which is the only one that
        # may use it; kept, since get_running_loop() on Python 3.11 makes a
        # getpid() system call each time.
        self._loop = asyncio.get_running_loop()

    def send(self, command: tuple) -> asyncio.Future:
        loop = self._loop
        future = loop.create_future()
        self._waiting.append((future, loop.time()))
        self._transport.write(hiredis.pack_command(command))
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._timeout, self._check_answers)
        return future

    def _check_answers(self) -> None:
        """One timer per connection instead of one per call: the oldest
        command unanswered for the whole timeout drops the connection (and
        fails every call waiting on it)."""
        self._watchdog = None
        if not self._waiting or self.closed:
            return
        loop = self._loop
        late_at = self._waiting[0][1] + self._timeout
        if loop.time() >= late_at:
            self.abort(TimeoutError(f"redis did not answer within {self._timeout:g} s"))
        else:
            self._watchdog = loop.call_at(late_at, self._check_answers)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            future, _ = self._waiting.popleft()
            if not future.done():  # a caller that was cancelled has gone; its reply is dropped here
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        error = self._failure or RedisConnectionError(f"connection to redis lost: {exc or 'closed by the server'}")
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)

    def abort(self, failure: Exception | None = None) -> None:
        self.closed = True
        self._failure = failure
        self._transport.abort()  # connection_lost fails whatever still waits


class RedisPipe:
    """Script calls over one connection, opened on first use and again after
    it is lost."""

    def __init__(self, pool, timeout: float) -> None:
        self._pool = pool  # a redis-py pool: only its connection class and arguments are used
        self._timeout = timeout  # for an answer, from the oldest command waiting
        self._protocol: _Protocol | None = None
        self._opening = asyncio.Lock()

    async def evalsha(self, script: str, sha: str, keys: list, args: list):
        """EVALSHA, and EVAL once when Redis no longer has the script (a restart
        or SCRIPT FLUSH). Arguments may be str, bytes or int."""
        reply = await self._execute(("EVALSHA", sha, len(keys), *keys, *args))
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = await self._execute(("EVAL", script, len(keys), *keys, *args))
        if isinstance(reply, hiredis.ReplyError):
            raise ResponseError(str(reply))
        return reply

    async def execute(self, *command):
        """Any one command (the benchmark's Redis floor sends PING)."""
        return await self._execute(command)

    async def _execute(self, command: tuple):
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._open()
        return await protocol.send(command)

    async def _open(self) -> _Protocol:
        async with self._opening:  # one connect for a burst of first calls
            if self._protocol is None or self._protocol.closed:
                connection = self._pool.connection_class(**self._pool.connection_kwargs)
                await connection.connect()  # TLS, AUTH, SELECT as the URL says
                transport = connection._writer.transport
                self._protocol = _Protocol(connection, transport, self._timeout)
                transport.set_protocol(self._protocol)
                transport.resume_reading()
            return self._protocol

    def abort(self) -> None:
        """Drop the connection (the store is closing)."""
        if self._protocol is not None:
            self._protocol.abort()
            self._protocol = None


def sha1(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()
