"""One pipelined connection to Redis for the store's hot path (holds,
settles, releases).

redis-py spent about as much of the daemon's time on each script call as
the rest of budgetd together (a pool checkout with fork checks, command
encoding in Python, a stream reader, a timeout per read): under the profile
it was 43% of the daemon's GIL time, and at one client thread it doubled the
latency a Redis round trip adds. Here a call is: hiredis packs the command
(C), the transport writes it, and this protocol parses replies with hiredis
as bytes arrive and answers the waiting futures in order. Redis answers a
connection's commands in the order they came, so calls from concurrent RPCs
share the one connection and are pipelined under load.

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
from redis.exceptions import NoScriptError, ResponseError


class _Protocol(asyncio.Protocol):
    def __init__(self, opened_by, transport: asyncio.Transport) -> None:
        # redis-py's connection owns the stream objects around the transport;
        # kept so that nothing of it is collected (and closes the transport).
        self._opened_by = opened_by
        self._transport = transport
        self._reader = hiredis.Reader(encoding="utf-8")
        self._waiting: collections.deque[asyncio.Future] = collections.deque()
        self.closed = False

    def send(self, command: tuple) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._transport.write(hiredis.pack_command(command))
        return future

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            future = self._waiting.popleft()
            if not future.done():  # a caller that timed out has gone; its reply is dropped here
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = RedisConnectionError(f"connection to redis lost: {exc or 'closed by the server'}")
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)

    def abort(self) -> None:
        self.closed = True
        self._transport.abort()  # connection_lost fails whatever still waits


class RedisPipe:
    """Script calls over one connection, opened on first use and again after
    it is lost."""

    def __init__(self, pool) -> None:
        self._pool = pool  # a redis-py pool: only its connection class and arguments are used
        self._protocol: _Protocol | None = None
        self._opening = asyncio.Lock()

    async def evalsha(self, script: str, sha: str, keys: list, args: list):
        """EVALSHA, and EVAL once when Redis no longer has the script (a restart
        or SCRIPT FLUSH). Arguments may be str, bytes or int."""
        reply = await self._execute(("EVALSHA", sha, len(keys), *keys, *args))
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = await self._execute(("EVAL", script, len(keys), *keys, *args))
        if isinstance(reply, hiredis.ReplyError):
            raise (NoScriptError if str(reply).startswith("NOSCRIPT") else ResponseError)(str(reply))
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
                self._protocol = _Protocol(connection, transport)
                transport.set_protocol(self._protocol)
                transport.resume_reading()
            return self._protocol

    def abort(self) -> None:
        """Drop the connection (a call timed out: it may never answer)."""
        if self._protocol is not None:
            self._protocol.abort()
            self._protocol = None


def sha1(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()
