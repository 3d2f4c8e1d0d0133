"""The shared store: many budgetd replicas on one Redis (or Redis Cluster).

Each step is one Lua script run by EVALSHA (redis-py reloads it on
NOSCRIPT), so a hold checks and updates every window of the agent and its
groups atomically, whichever replica runs it; a script reads and checks
everything before its first write, so one that fails leaves nothing.
scripts.py is the interface to the scripts (their KEYS and ARGV by name).
Amounts are integer nanodollars (never INCRBYFLOAT). Counter keys carry
their period, so rollover needs no job; they expire well after the period
ends. Status reads (read_many) pipeline a batch of agents.

Key layout (prefix ``budgetd`` unless ``?prefix=`` says otherwise), with
``{T}`` the hash tag:
    {p}:{T}:c:<scope>:<window>:<period>   hash spent, reserved
    {p}:{T}:p:<scope>                     hash of pauses: manual | <window>:<period>
    {p}:{T}:r:<agent>:<request id>        hash: one call (hold and how it ended)
    {p}:{T}:holds                         zset "<agent> <request id>" by deadline
    {p}:{T}:ledger                        stream, one entry per change to spent
    {p}:{T}:outbox                        stream of notices (payload: Notice.to_json), leased by a group
    {p}:{T}:outcomes                      hash: outbox entry id -> state|attempts|done_ms|error (outcome.lua)
    {p}:{T}:n:<notice key>                marker: this notice was written (within NOTICE_MARKER_MS)
    {p}:tags, {p}:seen:<window>:<period>, {p}:paused   indexes (sweeping, listing)
    {p}:{R}:rc:days                       hash: <provider>|<day> -> ReconcileDay JSON (as saved)
    {p}:{R}:rc:passes                     hash: <provider>|<day> -> JSON list of the day's passes done (the union
                                          of every save's: what a result read is given, and a claim checks)
    {p}:{R}:rc:leases:<provider>|<day>    hash: pass -> until_ms|owner (expires after its longest lease)
with ``{R}`` the reconciliation results' one tag: ``all`` on a single
Redis, ``reconcile`` on Cluster (a slot of their own: every script of them
touches only it).
On a single Redis every key has the same tag. With ``?cluster=true`` the tag
is the agent's group (or the agent's id if it has none), so that one script
touches one slot: an agent may then belong to at most one group.

A Redis that lost its data (restarted without persistence, flushed) is
detected by a marker: ``{p}:{T}:instance`` holds a random id, written at open
unless it exists (then adopted, so replicas sharing a Redis share it). The
store raises StoreLost once the marker is gone or changed: at ``ping`` (every
2 s in the daemon) and, on a new connection, before its first command (a
restart drops every connection, so nothing is acknowledged into the emptied
Redis). On Redis Cluster each master of the time of open holds a marker of
its own, under a tag that hashes to one of its slots, so that any master
restarted empty is noticed; a slot migrated later takes its marker along
(still checked, on its new master), and a master added later gets a marker
when budgetd opens the store again. (The check on a new connection is for a
single Redis; on a cluster the ping finds a loss, within 2 s.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ... import reports
from ...notices import model as notices
from ...notices.model import Notice
from ...plan import Plan, Scope
from ...reconcile.model import ReconcileDay
from ...reports import ReportPart, TagHourSpend
from .. import rules
from ..base import Store
from ..model import (
    AgentActivity,
    AgentState,
    Balance,
    CallFacts,
    CapChange,
    Claimed,
    CostEvent,
    Counter,
    Denial,
    HoldRequest,
    HoldResult,
    PauseRecord,
    PlanLookup,
    QueuedNotice,
    RequestConflict,
    SettleRequest,
    SettleResult,
    StoreError,
    StoreLost,
    StoreRefused,
    cost_source,
)
from ..per_plan import PerPlan
from . import outcomes, scripts
from .pipe import RedisPipe, sha1
from .scripts import CALL_RETENTION_MS, HELD_IN_OTHER_PERIODS, Script

log = logging.getLogger("budgetd.store.redis")

GROUP = "delivery"  # the consumer group that leases notices to one replica each
_WRITTEN_ONCE_LIMIT = 100_000
_PIPED = (scripts.HOLD, scripts.SETTLE, scripts.RELEASE)  # the hot path's scripts: over RedisPipe (not on Cluster)
RUN_ID_CHECK_EVERY = 15  # pings (30 s in the daemon) between looks at the servers' run_id, for the log only
READ_BATCH = 500  # agents per pipeline of a read_many
CLOCK_SKEW_MS = 60_000  # how far apart replicas' clocks may be, for a scan of the newest ledger entries
RECENT_EVENTS_SCAN = 10_000  # ledger entries recent_events reads at most (the stream is shared by agents)
RECENT_PAGE = 1000  # entries per read of a newest-first scan (recent_events, recent_notices)


@dataclass
class _PlanKeys:
    """A plan's keys and the arguments of its hold and settle that are the
    same on every call, for one store."""

    tag: str
    pauses: tuple[str, ...]
    call_prefix: str  # a call's key is this and its request id
    hold_keys: tuple[str, ...]  # after the call's key
    settle_keys: tuple[str, ...]  # after the call's key
    hold_tail: tuple  # scripts.hold_tail
    settle_tail: tuple  # scripts.settle_tail
    indexed: bool = False  # whether _index_plan wrote the plan's index entries


@dataclass(frozen=True)
class _ClusterParts:
    agent: Plan  # the agent's and its groups' windows: the agent's slot
    tags: tuple[Plan, ...]  # one per budgeted tag value, each its own slot


@dataclass
class _Marker:
    """One marker key (see the module's docstring), as adopted at open."""

    key: str
    value: str
    address: str  # host:port of the server that held it at open
    run_id: str  # that server's run_id at open ("?" if unknown)


def _run_id_of(info_text: str) -> str:
    for line in info_text.splitlines():
        if line.startswith("run_id:"):
            return line.split(":", 1)[1].strip()
    return "?"


class RedisStore(Store):
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        self.cluster = query.pop("cluster", "false").lower() in ("1", "true", "yes")
        self.prefix = query.pop("prefix", "budgetd")
        self.timeout = float(query.pop("timeout", "2"))
        self.max_connections = int(query.pop("max_connections", "64"))
        self._url = urlunsplit(parts._replace(query=urlencode(query)))
        # redis.asyncio.Redis, or RedisCluster with ?cluster=true: the commands
        # used here are the same on both, and redis-py's types do not say so.
        self._client: Any = None
        # The cluster client's per-node pools raise instead of waiting when all
        # connections are busy (and a burst of first connects trips it): keep
        # calls in flight within the pool size for both kinds of client.
        self._in_flight = asyncio.Semaphore(self.max_connections)
        self._scripts: dict = {}
        self._shas = {script.name: sha1(script.source) for script in _PIPED}
        self._pipe: RedisPipe | None = None
        self._written_once: set[str] = set()  # index entries and consumer groups this process wrote
        self._indexing = asyncio.Lock()
        self._lease_ms = 60_000
        # Plans are cached per agent and passed on every call: their keys and
        # fixed arguments are encoded once per plan.
        self._plan_keys = PerPlan(self._encode_plan)
        self._cluster_parts = PerPlan(self._split_plan)
        self._bare_parts: dict[tuple[str, str], Plan] = {}

    # -- lifecycle ------------------------------------------------------------
    async def open(self) -> None:
        self._lost = None
        self._markers = None
        self._pings = 0
        common = dict(decode_responses=True, socket_timeout=self.timeout, socket_connect_timeout=self.timeout)
        if self.cluster:
            self._client = RedisCluster.from_url(self._url, max_connections=self.max_connections, **common)
        else:
            # Every new connection checks the marker before its first command
            # (the cluster client takes no such hook: there, ping finds a loss).
            pool = aioredis.BlockingConnectionPool.from_url(
                self._url, max_connections=self.max_connections, timeout=self.timeout,
                redis_connect_func=self._on_connect, **common
            )
            self._client = aioredis.Redis(connection_pool=pool)
            self._pipe = RedisPipe(pool, timeout=self.timeout * 2)
            kwargs = pool.connection_kwargs
            self._address = f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}" if "path" not in kwargs \
                else kwargs["path"]
        self._scripts = {script.name: self._client.register_script(script.source) for script in scripts.SCRIPTS}
        # An unreachable Redis does not stop the daemon: health says NOT_SERVING
        # and calls answer UNAVAILABLE until it is back (the first ping that
        # reaches it then writes or adopts the markers).
        try:
            await self._adopt_markers()
        except StoreError as err:
            log.warning("redis unreachable at open; its data is checked once it answers: %s", err)

    async def close(self) -> None:
        if self._pipe is not None:
            self._pipe.abort()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- a Redis that lost its data ----------------------------------------------
    _lost: StoreLost | None = None
    _markers: list[_Marker] | None = None  # None: not yet written or adopted
    _address = ""  # a single Redis's host:port
    _pings = 0

    async def _marker_places(self) -> list[tuple[str, Any]]:
        """The marker keys, each with the cluster node it lives on (None on a single Redis)."""
        if not self.cluster:
            return [(self._key("all", "instance"), None)]
        await self._call(self._client.initialize())
        places, wanted = [], {node.name: node for node in self._client.get_primaries()}
        for i in range(16384 * 8):
            key = self._key(f"m{i}", "instance")
            node = self._client.get_node_from_key(key)
            if node.name in wanted:
                places.append((key, wanted.pop(node.name)))
                if not wanted:
                    break
        return places

    async def _adopt_markers(self) -> None:
        markers = []
        for key, node in await self._marker_places():
            value = None
            for _ in range(3):  # SET NX, then GET: the first writer's id, whoever wrote it
                await self._call(self._client.set(key, uuid.uuid4().hex, nx=True))
                value = await self._call(self._client.get(key))
                if value is not None:
                    break
            if value is None:
                raise StoreError(f"redis: the marker key {key} does not stay written")
            info = await self._call(self._on(node, "INFO", "server"))
            markers.append(_Marker(key, value, node.name if node is not None else self._address,
                                   str(info.get("run_id", "?"))))
            await self._warn_unless_kept_on_disk(node, markers[-1].address)
        self._markers = markers

    def _on(self, node, *command):
        """A command to one cluster node (a single Redis: to it)."""
        if node is None:
            return self._client.execute_command(*command)
        return self._client.execute_command(*command, target_nodes=node)

    async def _warn_unless_kept_on_disk(self, node, address: str) -> None:
        try:
            save = (await self._call(self._on(node, "CONFIG", "GET", "save"))).get("save", "")
            appendonly = (await self._call(self._on(node, "CONFIG", "GET", "appendonly"))).get("appendonly", "")
        except StoreError as err:  # CONFIG disabled or renamed (managed Redis), or not allowed to this user
            log.warning("could not tell whether Redis at %s keeps its data on disk (CONFIG GET failed: %s); "
                        "without RDB or AOF persistence a restart of it loses every counter, hold and pause",
                        address, err)
            return
        if save.strip() == "" and appendonly == "no":
            log.warning("Redis at %s keeps nothing on disk (save \"\" and appendonly no): a restart of it loses "
                        "every counter, hold and pause, and budgetd then refuses writes until it is restarted; "
                        "turn on AOF (appendonly yes) or RDB snapshots", address)

    def _loss(self, marker: _Marker, found: str | None, run_id: str, address: str = "") -> StoreLost:
        """``address``: the server that now serves the marker's slot (a Cluster's slots can move)."""
        what = "missing" if found is None else f"holds {found!r}, not {marker.value!r}"
        if run_id not in ("?", marker.run_id):
            how = f"restarted without its data (run_id {marker.run_id} → {run_id}, marker key {marker.key} {what})"
        else:
            how = (f"lost its data without a restart (run_id {marker.run_id} unchanged, marker key {marker.key} "
                   f"{what}: flushed, or the key evicted)")
        return StoreLost(f"Redis at {address or marker.address} {how}: the counters and holds acknowledged before are "
                         "gone; refusing writes so nothing more is acknowledged into a store that forgot them")

    async def _on_connect(self, connection) -> None:
        """A new connection to a single Redis (after a restart, every one is
        new): before its first command, the server must still hold the marker."""
        await connection.on_connect()
        if self._lost is not None:  # lost stays lost (redis-py retries a failed connect)
            raise RedisConnectionError(str(self._lost))
        if not self._markers:
            return  # not written or adopted yet (this may be the connection that does it)
        marker = self._markers[0]
        # An error here (the server still loading its data, a timeout) fails
        # the connect, as it would have failed the command: redis-py has
        # dropped the connection by then.
        await connection.send_command("GET", marker.key)
        found = await connection.read_response()
        if found == marker.value:
            return
        await connection.send_command("INFO", "server")
        run_id = _run_id_of(await connection.read_response())
        self._lost = self._loss(marker, found, run_id)
        log.error("%s", self._lost)
        raise RedisConnectionError(str(self._lost))  # redis-py drops the connection

    async def ping(self) -> None:
        """One GET per marker: the server answers and still has its data."""
        if self._client is None:
            raise StoreError("the store is closed")
        if self._lost is not None:
            raise self._lost
        if self._markers is None:
            await self._adopt_markers()
            return
        markers = self._markers
        found = await asyncio.gather(*(self._call(self._client.get(m.key)) for m in markers))
        self._pings += 1
        look = self._pings % RUN_ID_CHECK_EVERY == 0
        for marker, value in zip(markers, found, strict=True):
            if value == marker.value and not look:
                continue
            node = self._client.get_node_from_key(marker.key) if self.cluster else None
            try:
                run_id = str((await self._call(self._on(node, "INFO", "server"))).get("run_id", "?"))
            except StoreError:
                if value == marker.value:
                    continue
                run_id = "?"
            if value != marker.value:
                if self._lost is None:
                    self._lost = self._loss(marker, value, run_id, node.name if node is not None else "")
                raise self._lost
            if run_id != marker.run_id and run_id != "?":
                log.info("Redis at %s restarted with its data (run_id %s → %s)", marker.address, marker.run_id,
                         run_id)
                marker.run_id = run_id

    async def _call(self, awaitable):
        if self._lost is not None:
            if hasattr(awaitable, "close"):
                awaitable.close()  # never to be awaited
            raise self._lost
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for wraps
            # every call in a task of its own.
            async with self._in_flight, asyncio.timeout(self.timeout * 2):
                reply = await awaitable
        except (RedisError, OSError, TimeoutError) as err:
            if self._lost is not None:  # found on a new connection (_on_connect)
                raise self._lost from None
            raise StoreError(f"redis: {type(err).__name__}: {err}") from None
        if self._lost is not None:  # found while this call was out: not acknowledged
            raise self._lost
        return reply

    async def _run(self, script: Script, keys, args) -> list:
        if self._pipe is not None and script in _PIPED:
            return await self._piped(script, keys, args)
        return await self._call(self._scripts[script.name](keys=keys, args=[str(a) for a in args]))

    async def _piped(self, script: Script, keys, args) -> list:
        if self._lost is not None:
            raise self._lost
        source, sha = script.source, self._shas[script.name]
        try:
            # The pipe's own watchdog bounds the wait (no timer per call); the
            # connect is bounded by redis-py's socket_connect_timeout.
            assert self._pipe is not None  # _run pipes only when there is one
            reply = await self._pipe.evalsha(source, sha, keys, args)
        except (RedisError, OSError) as err:
            if self._lost is not None:  # found on the pipe's new connection (_on_connect)
                raise self._lost from None
            raise StoreError(f"redis: {type(err).__name__}: {err}") from None
        if self._lost is not None:  # found while this call was out: not acknowledged
            raise self._lost
        return reply

    # -- keys -----------------------------------------------------------------
    def _tag(self, plan: Plan) -> str:
        if not self.cluster:
            return "all"
        if plan.owner is not None:  # a tag value's own slot: its counters are shared by every agent
            return f"t:{plan.owner.key}"
        groups = [s.name for s in plan.scopes if s.kind == "group"]
        if len(groups) > 1:
            raise StoreRefused(f"agent {plan.agent_id!r} is in groups {groups}: on Redis Cluster an agent's keys "
                               "share its group's hash slot, so it may belong to at most one group")
        return f"g:{groups[0]}" if groups else f"a:{plan.agent_id}"

    def _key(self, tag: str, *parts: str) -> str:
        return f"{self.prefix}:{{{tag}}}:" + ":".join(parts)

    def _counter_key(self, tag: str, counter) -> str:
        return self._key(tag, "c", *counter)

    def _pause_keys(self, tag: str, plan: Plan) -> list[str]:
        return [self._key(tag, "p", s.key) for s in plan.scopes]

    def _split_plan(self, plan: Plan) -> _ClusterParts:
        """On Cluster, a call's plan in the slots it touches: the agent's (its
        own and its groups' windows) and one per budgeted tag value."""
        tag_scopes = [s for s in plan.scopes if s.kind not in ("agent", "group")]
        if not tag_scopes:
            return _ClusterParts(plan, ())
        agent = replace(plan, limits=tuple(limit for limit in plan.limits if limit.scope not in tag_scopes))
        tags = tuple(replace(plan, limits=tuple(limit for limit in plan.limits if limit.scope == s), owner=s)
                     for s in tag_scopes)
        return _ClusterParts(agent, tags)

    async def _index(self, *entries: tuple[str, str]) -> None:
        """SADD to the listing/sweeping indexes, once per process per entry."""
        if all(f"{k} {m}" in self._written_once for k, m in entries):
            return
        async with self._indexing:  # one writer: a burst of first holds writes each entry once
            if len(self._written_once) > _WRITTEN_ONCE_LIMIT:
                self._written_once.clear()
            for key, member in entries:
                if f"{key} {member}" not in self._written_once:
                    await self._call(self._client.sadd(key, member))
                    self._written_once.add(f"{key} {member}")

    # -- the atomic steps -------------------------------------------------------
    def _encode_plan(self, plan: Plan) -> _PlanKeys:
        tag = self._tag(plan)
        holds, pauses = self._key(tag, "holds"), tuple(self._pause_keys(tag, plan))
        counters = tuple(self._counter_key(tag, c) for c in plan.counters)
        limits = scripts.counter_limits(plan, plan.counters, 0)
        return _PlanKeys(
            tag=tag,
            pauses=pauses,
            call_prefix=self._key(tag, "r", plan.agent_id, ""),
            hold_keys=(holds, *pauses, *counters),
            settle_keys=(holds, self._key(tag, "ledger"), self._key(tag, "outbox"), *pauses, *counters),
            hold_tail=scripts.hold_tail(len(pauses), limits),
            settle_tail=scripts.settle_tail(len(pauses), *scripts.day_and_groups(plan.agent_id, plan.counters),
                                            limits, ledger=plan.owner is None),
        )

    async def _index_plan(self, plan: Plan, enc: _PlanKeys) -> None:
        """Before a hold or settle writes: the tag (so the sweeper and the
        deliverer find its holds and notices) and the agent's current periods
        (so listings and the digest find its spend). Once per plan."""
        if enc.indexed:
            return
        if plan.owner is not None:  # a tag value's part of a call (Cluster): its holds are swept
            await self._index((f"{self.prefix}:tags", enc.tag))
            enc.indexed = True
            return
        daily, monthly = plan.limits[0].period, plan.limits[1].period
        await self._index((f"{self.prefix}:tags", enc.tag),
                          (f"{self.prefix}:seen:daily:{daily.key}", plan.agent_id),
                          (f"{self.prefix}:seen:monthly:{monthly.key}", plan.agent_id))
        enc.indexed = True

    async def hold(self, req: HoldRequest) -> HoldResult:
        if not self.cluster:
            return await self._hold_in_slot(req)
        parts = self._cluster_parts(req.plan)
        if not parts.tags:
            return await self._hold_in_slot(req)
        # Each tag value's counters live in a slot of their own, shared by
        # every agent: reserve there first, one slot at a time, then in the
        # agent's slot. Each step is exact in its slot (spent + reserved never
        # passes a cap), so together they never overspend; a refusal takes
        # back what the earlier steps reserved, so at worst another call saw
        # less headroom for a moment. A crash between the steps leaves a hold
        # in a tag slot, which expires like any other (the sweeper).
        taken: list[Plan] = []
        for part in (*parts.tags, parts.agent):
            try:
                result = await self._hold_in_slot(replace(req, plan=part))
            except RequestConflict:
                await self._withdraw(req.request_id, taken, req.now_ms)
                raise
            if not result.allowed:
                await self._withdraw(req.request_id, taken, req.now_ms)
                return result
            taken.append(part)
        # The agent's call names the tag slots it holds in, so a release or
        # settle that does not carry the hold's tags still finds them.
        call_key = self._plan_keys(parts.agent).call_prefix + req.request_id
        scopes = json.dumps([part.owner_scope.key for part in parts.tags])
        await self._call(self._client.hset(call_key, "parts", scopes))
        return result

    async def _tag_parts(self, request_id: str, parts: _ClusterParts) -> tuple[Plan, ...]:
        """The tag slots of a call on Cluster: those of its plan now and
        those its hold named (the hold's tags, if the caller's differ)."""
        if not parts.tags and not parts.agent.tags_budgeted:  # no tag_budgets: no call has tag parts
            return ()
        call_key = self._plan_keys(parts.agent).call_prefix + request_id
        named = json.loads(await self._call(self._client.hget(call_key, "parts")) or "[]")
        known = {part.owner_scope.key for part in parts.tags}
        return parts.tags + tuple(self._bare_part(parts.agent.agent_id, key) for key in named if key not in known)

    def _bare_part(self, agent_id: str, scope_key: str) -> Plan:
        """A tag value's part of a call known only by its scope: its counters
        come from the stored call; no cap is checked (the tag's plan is not known)."""
        found = self._bare_parts.get((agent_id, scope_key))
        if found is None:
            if len(self._bare_parts) >= _WRITTEN_ONCE_LIMIT:
                self._bare_parts.clear()
            found = self._bare_parts[(agent_id, scope_key)] = Plan(agent_id, 0, (), owner=Scope.parse(scope_key))
        return found

    async def _withdraw(self, request_id: str, parts: list[Plan], now_ms: int) -> None:
        """Take back the holds of a Cluster hold's earlier steps, leaving no
        trace of the request there: the hold may be retried with its id (a
        wait for headroom does)."""
        for part in parts:
            await self._release(request_id, part, now_ms, None)
            tag = self._plan_keys(part).tag
            await self._call(self._client.delete(self._key(tag, "r", part.agent_id, request_id)))

    async def _hold_in_slot(self, req: HoldRequest) -> HoldResult:
        plan = req.plan
        enc = self._plan_keys(plan)
        await self._index_plan(plan, enc)
        # Everything but the request's own values was encoded once per plan.
        keys = (enc.call_prefix + req.request_id, *enc.hold_keys)
        args = scripts.hold_args(
            agent=plan.agent_id, request_id=req.request_id, amount=req.amount_nanos, now_ms=req.now_ms,
            deadline_ms=req.deadline_ms, tags=_tags_json(req.tags), counters_json=plan.counters_json,
            call_ttl_ms=req.deadline_ms - req.now_ms + CALL_RETENTION_MS, tail=enc.hold_tail)
        reply = await self._run(scripts.HOLD, keys, args)
        if reply[0] == "allowed":
            return HoldResult(True, int(reply[1]), int(reply[2]))
        if reply[0] == "conflict":
            raise RequestConflict(f"request_id {req.request_id} was already {reply[1]}")
        if reply[0] == "cap":
            limit = plan.limits[int(reply[1]) - 1]
            return HoldResult(False, denial=Denial("cap", limit.scope, limit, int(reply[2]),
                                                   waitable=reply[3] == "1"))
        _, scope_index, limit_index, value, left = reply
        scope = plan.scopes[int(scope_index) - 1]
        capped = plan.limits[int(limit_index) - 1] if limit_index != "0" else None
        since, _, reason = value.partition("|")
        record = PauseRecord(scope.key, "cap" if capped else "manual", capped.window.value if capped else "",
                             capped.period.key if capped else "", reason, int(since))
        return HoldResult(False, denial=Denial("paused", scope, capped, int(left), record))

    async def settle(self, req: SettleRequest) -> SettleResult:
        if not self.cluster:
            return await self._settle_in_slot(req)
        parts = self._cluster_parts(req.plan)
        # The tag values' slots first, the agent's (which writes the ledger
        # entry and answers) last: a settle retried after a failure between
        # them finds the first ones settled (duplicates) and finishes.
        paused: tuple[PauseRecord, ...] = ()
        for part in await self._tag_parts(req.request_id, parts):
            paused += (await self._settle_in_slot(replace(req, plan=part))).paused
        result = await self._settle_in_slot(replace(req, plan=parts.agent))
        return replace(result, paused=paused + result.paused) if paused else result

    async def _index_tag_pauses(self, paused) -> None:
        """A tag value's pause, for the rollover check (paused_tag_values)."""
        scopes = [p.scope for p in paused if not p.scope.startswith(("agent:", "group:"))]
        if scopes:
            await self._index(*((f"{self.prefix}:paused_tags", scope) for scope in scopes))

    async def _settle_in_slot(self, req: SettleRequest) -> SettleResult:
        plan = req.plan
        enc = self._plan_keys(plan)
        await self._index_plan(plan, enc)
        counters: tuple[Counter, ...] = plan.counters
        # The common case, a hold in the plan's own periods: keys and limits encoded once per plan.
        keys = (enc.call_prefix + req.request_id, *enc.settle_keys)
        actual = -1 if req.actual_nanos is None else req.actual_nanos
        pricing = json.dumps(vars(req.pricing)) if req.pricing else ""
        source = cost_source(req.actual_nanos, req.pricing)
        said = _event_json(source, req.facts)

        def args(counters_json: str, tail: tuple) -> tuple:
            return scripts.settle_args(
                agent=plan.agent_id, request_id=req.request_id, actual=actual, now_ms=req.now_ms,
                tags=_tags_json(req.tags), counters_json=counters_json, estimate=plan.estimate_nanos,
                call_ttl_ms=CALL_RETENTION_MS, pricing=pricing, tail=tail, event=said)

        reply = await self._run(scripts.SETTLE, keys, args(plan.counters_json, enc.settle_tail))
        if reply[0] == HELD_IN_OTHER_PERIODS:  # settle the counters it was held on
            counters = tuple((scope, window, period) for scope, window, period in json.loads(reply[1]))
            keys = (keys[0], *enc.settle_keys[:3 + len(enc.pauses)], *(self._counter_key(enc.tag, c) for c in counters))
            tail = scripts.settle_tail(len(enc.pauses), *scripts.day_and_groups(plan.agent_id, counters),
                                       scripts.counter_limits(plan, counters, req.now_ms), ledger=plan.owner is None)
            reply = await self._run(scripts.SETTLE, keys, args(reply[1], tail))
        if reply[0] == "duplicate":
            return SettleResult(int(reply[1]), duplicate=True)
        _, amount, cost, tags, created, *started = reply
        paused = []
        for index in started:
            scope, window, period = counters[int(index) - 1]
            limit = plan.limit_for(scope, window)
            assert limit is not None  # a pause starts only at a cap of the plan
            paused.append(PauseRecord(scope, "cap", window, period, rules.cap_pause_reason(limit), req.now_ms))
        await self._index_tag_pauses(paused)
        day, groups = rules.day_and_groups(plan.agent_id, counters)
        event = CostEvent.of(req.request_id, "settle", req.now_ms, int(created) if created else None, day,
                             plan.agent_id, groups, json.loads(tags), int(cost), source, req.pricing, req.facts)
        return SettleResult(int(amount), paused=tuple(paused), event=event)

    async def release(self, request_id: str, plan: Plan, now_ms: int) -> bool:
        return (await self._release_parts(request_id, plan, now_ms, None))[0] == "released"

    async def record_failure(self, request_id: str, plan: Plan, now_ms: int, facts: CallFacts) -> CostEvent | None:
        reply = await self._release_parts(request_id, plan, now_ms, facts)
        if reply[0] != "released":
            return None
        _, tags, created, day, groups = reply
        return CostEvent.of(request_id, "release", now_ms, int(created) if created else None, day, plan.agent_id,
                            groups, json.loads(tags), 0, "caller", None, facts)

    async def _release_parts(self, request_id: str, plan: Plan, now_ms: int, facts: CallFacts | None) -> list:
        """On Cluster, the tag values' slots first (they write no ledger
        entry), then the agent's, whose reply answers."""
        if self.cluster:
            parts = self._cluster_parts(plan)
            for part in await self._tag_parts(request_id, parts):
                await self._release(request_id, part, now_ms, None)
            plan = parts.agent
        return await self._release(request_id, plan, now_ms, facts)

    async def _release(self, request_id: str, plan: Plan, now_ms: int, facts: CallFacts | None) -> list:
        """The release script's reply in one slot; with ``facts``, the day and groups of the entry written appended."""
        tag = self._plan_keys(plan).tag
        counters: list = list(plan.counters)
        counters_json = plan.counters_json
        while True:
            counter_keys = [self._counter_key(tag, tuple(c)) for c in counters]
            keys = [self._key(tag, "r", plan.agent_id, request_id), self._key(tag, "holds"), self._key(tag, "ledger"),
                    *counter_keys]
            record = ""
            if facts is not None:
                day, groups = rules.day_and_groups(plan.agent_id, [tuple(c) for c in counters])
                record = json.dumps({"day": day or "", "groups": json.dumps(groups),
                                     "event": _event_json("caller", facts)})
            reply = await self._run(scripts.RELEASE, keys, scripts.release_args(
                agent=plan.agent_id, request_id=request_id, counters_json=counters_json, now_ms=now_ms,
                counter_count=len(counter_keys), record=record))
            if reply[0] != HELD_IN_OTHER_PERIODS:
                if facts is not None and reply[0] == "released":
                    return [*reply, day or "", groups]
                return reply
            counters_json = reply[1]
            counters = json.loads(counters_json)

    async def expire(self, now_ms: int, charge: bool, plan_for: PlanLookup,
                     events: list[CostEvent] | None = None) -> int:
        expired = 0
        for tag in await self._call(self._client.smembers(f"{self.prefix}:tags")):
            due = await self._call(self._client.zrangebyscore(self._key(tag, "holds"), "-inf", now_ms,
                                                              start=0, num=1000))
            for member in due:
                agent_id, _, request_id = member.partition(" ")
                expired += await self._expire_one(tag, agent_id, request_id, now_ms, charge, plan_for, events)
        return expired

    async def _expire_one(self, tag, agent_id, request_id, now_ms, charge, plan_for, events=None) -> int:
        call_key = self._key(tag, "r", agent_id, request_id)
        stored = await self._call(self._client.hget(call_key, "counters"))
        # A tag value's slot (Cluster) holds the tag's part of a call: it is
        # released or charged on its own, with no ledger entry (the agent's
        # slot writes the call's).
        plan = plan_for(agent_id) if not tag.startswith("t:") else self._bare_part(agent_id, tag[2:])
        if stored is None or plan is None:  # gone, or no longer budgeted: just drop the entry
            await self._call(self._client.zrem(self._key(tag, "holds"), f"{agent_id} {request_id}"))
            return 0
        counters = [tuple(c) for c in json.loads(stored)]
        pauses = self._pause_keys(tag, plan)
        keys = [call_key, self._key(tag, "holds"), self._key(tag, "ledger"), self._key(tag, "outbox"), *pauses,
                *(self._counter_key(tag, c) for c in counters)]
        # No warnings from an expiry: only what was held is charged.
        limits = scripts.counter_limits(replace(plan, warn_at=()), counters, now_ms,
                                        check_caps=charge and plan.owner is None)
        day, groups = scripts.day_and_groups(agent_id, counters)
        args = scripts.expire_args(agent=agent_id, request_id=request_id, now_ms=now_ms, charge=charge,
                                   counters_json=stored, pause_count=len(pauses), day=day, groups=groups,
                                   limits=limits, ledger=plan.owner is None)
        reply = await self._run(scripts.EXPIRE, keys, args)
        if reply[0] != "expired":
            return 0
        if len(reply) > 1 and events is not None:  # charged: the ledger entry's tags, hold time and cost
            _, tags, created, cost = reply
            events.append(CostEvent.of(request_id, "expiry", now_ms, int(created) if created else None, day or None,
                                       agent_id, json.loads(groups), json.loads(tags or "{}"), int(cost), "estimate",
                                       None, None))
        return 1

    async def pause(self, plan: Plan, reason: str, now_ms: int) -> None:
        tag, scope = self._tag(plan), plan.owner_scope.key
        listed = [(f"{self.prefix}:paused", plan.agent_id)] if plan.owner is None else \
            [(f"{self.prefix}:paused_tags", scope)]
        await self._index((f"{self.prefix}:tags", tag), *listed)
        notice = notices.paused_by_operator(plan.agent_id, reason, now_ms, scope)
        await self._run(scripts.PAUSE, [self._key(tag, "p", scope), self._key(tag, "outbox")],
                        scripts.pause_args("pause", f"{now_ms}|{reason}", notice))

    async def resume(self, plan: Plan, now_ms: int) -> bool:
        tag, scope = self._tag(plan), plan.owner_scope.key
        notice = notices.resumed(plan.agent_id, scope, "operator", now_ms)
        lifted = await self._run(scripts.PAUSE, [self._key(tag, "p", scope), self._key(tag, "outbox")],
                                 scripts.pause_args("resume", "", notice))
        if plan.owner is None:
            await self._call(self._client.srem(f"{self.prefix}:paused", plan.agent_id))
            self._written_once.discard(f"{self.prefix}:paused {plan.agent_id}")
        return lifted == 1

    async def reconcile(self, plan: Plan, now_ms: int, cause: CapChange | None = None) -> list[Notice]:
        """The windows to reconcile in one script (one atomic step, as
        SQLite's one transaction): no window is left unreconciled because
        another one's call failed."""
        tag = self._tag(plan)
        targets = rules.reconcile_targets(plan, cause)
        if not targets:
            return []
        keys = [self._key(tag, "outbox"), *self._pause_keys(tag, plan),
                *(self._counter_key(tag, limit.counter) for limit, _ in targets)]
        reply = await self._run(scripts.RECONCILE, keys, scripts.reconcile_args(plan, targets, now_ms))
        written = []
        for (limit, change), done, spent in zip(targets, reply[0::2], reply[1::2], strict=True):
            _, paused, resumed = rules.reconcile_notices(plan, limit, change, now_ms)
            if done == "paused":  # at the spend the script read
                written.append(replace(paused, spent_nanos=int(spent)))
            elif done == "resumed":
                written.append(resumed)
        return written

    async def _ledgers(self) -> list[str]:
        return [self._key(tag, "ledger") for tag, _ in await self._outboxes()]

    async def _pages(self, key: str, count: int, newest_first: bool = False) -> AsyncIterator[list[dict]]:
        """A stream's entries (their fields), a page at a time, oldest first
        (or newest first)."""
        async for entries in self._entry_pages(key, count, newest_first):
            yield [fields for _, fields in entries]

    async def _entry_pages(self, key: str, count: int,
                           newest_first: bool = False) -> AsyncIterator[list[tuple[str, dict]]]:
        """``_pages`` with each entry's id. Each page starts after the last
        one's final entry."""
        last = "+" if newest_first else "-"
        while True:
            if newest_first:
                entries = await self._call(self._client.xrevrange(key, max=last, count=count))
            else:
                entries = await self._call(self._client.xrange(key, min=last, count=count))
            if last not in ("-", "+"):
                entries = entries[1:]  # the bound is inclusive: the previous page's last entry
            if not entries:
                return
            last = entries[-1][0]
            yield entries

    async def report_parts(self, by: str, since_day: str, until_day: str) -> list[ReportPart]:
        """Aggregated from the ledger streams (bounded by their retention)."""
        builder = reports.PartsBuilder()
        for key in await self._ledgers():
            async for page in self._pages(key, 5000):
                for f in page:
                    if not since_day <= f.get("day", "") <= until_day:
                        continue
                    priced = json.loads(f["pricing"]) if f.get("pricing") else None
                    builder.add(reports.LedgerEntry(
                        _report_keys(by, f, priced), (f["agent_id"], f["request_id"]), int(f["cost_nanos"]),
                        priced["input_tokens"] if priced else None, priced["cached_input_tokens"] if priced else None))
        return builder.parts()

    async def tag_spend_by_hour(self, tags: Sequence[str], since_ms: int, until_ms: int) -> list[TagHourSpend]:
        """From the newest entries of each ledger stream back to the first
        settled more than a minute (replicas' clocks apart) before since_ms,
        summed a page at a time."""
        sums: dict[tuple[str, str, int], int] = {}
        for key in await self._ledgers():
            async for entries in self._pages(key, 5000, newest_first=True):
                page, done = [], False
                for f in entries:
                    settled = int(f.get("settled_ms") or 0)
                    if settled < since_ms - CLOCK_SKEW_MS:
                        done = True
                        break
                    page.append((json.loads(f.get("tags") or "{}"), settled, int(f["cost_nanos"])))
                for spend in reports.hourly_by_tag(page, tags, since_ms, until_ms):
                    at = (spend.tag, spend.value, spend.hour)
                    sums[at] = sums.get(at, 0) + spend.cost_nanos
                if done:
                    break
        return [TagHourSpend(tag, value, hour, cost) for (tag, value, hour), cost in sorted(sums.items())]

    async def cost_events(self, since_day: str, until_day: str) -> AsyncIterator[CostEvent]:
        """Each ledger stream in turn (one on a single Redis), in the order written."""
        for key in await self._ledgers():
            async for page in self._pages(key, 1000):
                for f in page:
                    if since_day <= f.get("day", "") <= until_day:
                        yield _cost_event(f)

    async def activity(self, since_day: str, until_day: str) -> list[AgentActivity]:
        """From every ledger stream, a page at a time (bounded by their retention, as report_parts)."""
        counter = rules.ActivityCounter()
        for key in await self._ledgers():
            async for page in self._pages(key, 5000):
                for f in page:
                    if since_day <= f.get("day", "") <= until_day:
                        counter.add(f["agent_id"], f["request_id"], int(f["settled_ms"]))
        return counter.result()

    async def recent_events(self, plan: Plan, limit: int) -> list[CostEvent]:
        """A bounded scan: the agent's stream is shared (by every agent on a
        single Redis, by its group's on Cluster), so only its newest
        RECENT_EVENTS_SCAN entries are read, newest first; an agent that
        others outwrote by that many since its last call gets fewer rows, or none."""
        found: list[CostEvent] = []
        scanned = 0
        key = self._key(self._tag(plan), "ledger")
        async for page in self._pages(key, RECENT_PAGE, newest_first=True):
            found += [_cost_event(f) for f in page[:RECENT_EVENTS_SCAN - scanned] if f.get("agent_id") == plan.agent_id]
            scanned += len(page)
            if len(found) >= limit or scanned >= RECENT_EVENTS_SCAN:
                break
        found.sort(key=lambda event: event.at_ms, reverse=True)  # stable: a tie stays newest written first
        return found[:limit]

    async def trim_ledger(self, before_ms: int) -> int:
        dropped = 0
        for key in await self._ledgers():
            dropped += await self._call(self._client.xtrim(key, minid=f"{before_ms}-0", approximate=False))
        return dropped

    async def paused_tag_values(self) -> list[str]:
        """From the index the pauses of tag values write, less those whose
        pause hash is gone (lifted, resumed, lapsed)."""
        index = f"{self.prefix}:paused_tags"
        scopes = sorted(await self._call(self._client.smembers(index)))
        found = []
        for scope in scopes:
            tag = f"t:{scope}" if self.cluster else "all"
            if await self._call(self._client.exists(self._key(tag, "p", scope))):
                found.append(scope)
            else:
                await self._call(self._client.srem(index, scope))
                self._written_once.discard(f"{index} {scope}")
        return found

    async def lift_lapsed_pauses(self, plan: Plan, now_ms: int) -> list[Notice]:
        tag = self._tag(plan)
        written = []
        for scope, key in zip(plan.scopes, self._pause_keys(tag, plan), strict=True):
            fields = await self._call(self._client.hkeys(key))
            lapsed = []
            for f in fields:
                window, _, period = f.partition(":")
                limit = plan.limit_for(scope.key, window)
                if f != "manual" and (limit is None or limit.period.key != period):
                    lapsed.append((window, period))
            if not lapsed:
                continue
            window, period = lapsed[-1]
            notice = notices.resumed(plan.agent_id, scope.key, "rollover", now_ms, window, period)
            done = await self._run(scripts.LIFT, [key, self._key(tag, "n", notice.key), self._key(tag, "outbox")],
                                   scripts.lift_args(notice, [f"{w}:{p}" for w, p in lapsed]))
            if done == 1:
                written.append(notice)
        return written

    # -- the outbox -------------------------------------------------------------
    def _notice_tag(self, plan: Plan | None) -> str:
        return self._tag(plan) if plan is not None else ("all" if not self.cluster else "fleet")

    async def add_notice(self, notice: Notice, plan: Plan | None) -> bool:
        tag = self._notice_tag(plan)
        await self._index((f"{self.prefix}:tags", tag))
        done = await self._run(scripts.NOTIFY, [self._key(tag, "n", notice.key), self._key(tag, "outbox")],
                               scripts.notify_args(notice))
        return done == 1

    async def _outboxes(self) -> list[tuple[str, str]]:
        tags = await self._call(self._client.smembers(f"{self.prefix}:tags"))
        return [(tag, self._key(tag, "outbox")) for tag in sorted(tags)]

    async def _ensure_group(self, key: str) -> None:
        if f"group {key}" in self._written_once:
            return
        try:
            await self._call(self._client.xgroup_create(key, GROUP, id="0", mkstream=True))
        except StoreError as err:
            if "BUSYGROUP" not in str(err):
                raise
        self._written_once.add(f"group {key}")

    async def claim_notices(self, owner: str, now_ms: int, lease_ms: int, limit: int) -> list[Claimed]:
        claimed: list[Claimed] = []
        self._lease_ms = lease_ms
        for _, key in await self._outboxes():
            await self._ensure_group(key)
            # Leases that ran out (a replica died, or a retry is due), then new notices.
            _, stale, *_ = await self._call(self._client.xautoclaim(key, GROUP, owner, lease_ms, "0-0", count=limit))
            fresh = await self._call(self._client.xreadgroup(GROUP, owner, {key: ">"}, count=limit))
            entries = list(stale) + [e for _, batch in (fresh or []) for e in batch]
            for entry_id, fields in entries:
                if not fields:  # trimmed away meanwhile
                    await self._call(self._client.xack(key, GROUP, entry_id))
                    continue
                info = await self._call(self._client.xpending_range(key, GROUP, entry_id, entry_id, 1))
                attempts = info[0]["times_delivered"] if info else 1
                claimed.append(Claimed(f"{key} {entry_id}", Notice.from_json(fields["payload"]), attempts))
        return claimed

    async def finish_notice(self, claimed: Claimed, outcome: str, now_ms: int, error: str = "") -> None:
        """XACK, and the outcome kept for recent_notices (one script)."""
        await self._outcome(claimed, outcome, now_ms, 0, error)

    async def retry_notice(self, claimed: Claimed, next_ms: int, now_ms: int, error: str) -> None:
        # Leave it pending: it is reclaimed once idle for a lease. Setting its
        # idle time makes that happen at about next_ms.
        idle = max(0, self._lease_ms - (next_ms - now_ms))
        await self._outcome(claimed, "pending", None, idle, error)

    def _outcomes_key(self, outbox_key: str) -> str:
        """The outcomes hash of an outbox: the same hash tag, so the same slot."""
        return outbox_key.removesuffix(":outbox") + ":outcomes"

    async def _outcome(self, claimed: Claimed, state: str, done_ms: int | None, idle_ms: int, error: str) -> None:
        key, entry_id = claimed.id.split(" ")
        outcomes_key = self._outcomes_key(key)
        kept: Any = await self._run(scripts.OUTCOME, [key, outcomes_key], scripts.outcome_args(
            GROUP, entry_id, state, claimed.attempts, done_ms, idle_ms, error))
        if int(kept) > outcomes.OUTCOMES_LIMIT:  # the script answers the hash's length
            await self._prune_outcomes(key, outcomes_key)

    async def _prune_outcomes(self, key: str, outcomes_key: str) -> None:
        """Drop the outcomes of entries the stream no longer holds (XADD MAXLEN trimmed them)."""
        first = await self._call(self._client.xrange(key, count=1))
        oldest = outcomes.stream_id(first[0][0]) if first else (2**63, 0)
        gone = [f for f in await self._call(self._client.hkeys(outcomes_key)) if outcomes.stream_id(f) < oldest]
        for start in range(0, len(gone), 1000):
            await self._call(self._client.hdel(outcomes_key, *gone[start:start + 1000]))

    async def events_after(self, cursor: object | None) -> tuple[list[Notice], object]:
        positions: dict[str, str] = dict(cursor) if isinstance(cursor, dict) else {}
        events: list[Notice] = []
        for _, key in await self._outboxes():
            if cursor is None:
                last = await self._call(self._client.xrevrange(key, count=1))
                positions[key] = last[0][0] if last else "0-0"
                continue
            start = positions.get(key, "0-0")
            entries = await self._call(self._client.xrange(key, min=f"({start}", count=1000))
            if entries:
                positions[key] = entries[-1][0]
                events += [Notice.from_json(fields["payload"]) for _, fields in entries]
        return events, positions

    async def outbox_depth(self) -> int:
        depth = 0
        for _, key in await self._outboxes():
            await self._ensure_group(key)
            for group in await self._call(self._client.xinfo_groups(key)):
                if group["name"] == GROUP:
                    depth += int(group.get("pending") or 0) + int(group.get("lag") or 0)
        return depth

    async def recent_notices(self, limit: int, *, state: str | None = None,
                             scope: str | None = None) -> list[QueuedNotice]:
        """The newest rules.NOTICE_SCAN entries of each outbox (one on a
        single Redis, one per hash tag on Cluster), merged newest first by
        entry id: Redis's clock when written (on Cluster each master's own).

        What Redis tells: a notice in the group's pending list is pending
        (leased, or waiting for its retry) with XPENDING's delivery count as
        its attempts; one after the group's last delivered id is pending with
        0 attempts; a finished one has the state, attempts, error and time
        finish_notice kept. It cannot tell the outcome of an entry finished
        by a budgetd that kept none (shown as sent, done when written), nor
        anything of entries trimmed from the stream (MAXLEN ~ 100000)."""
        found: list[tuple[tuple[int, int], QueuedNotice]] = []
        for _, key in await self._outboxes():
            found += await self._recent_in(key, limit, state, scope)
        found.sort(key=lambda item: item[0], reverse=True)
        return [item for _, item in found[:limit]]

    async def _recent_in(self, key: str, limit: int, state: str | None,
                         scope: str | None) -> list[tuple[tuple[int, int], QueuedNotice]]:
        await self._ensure_group(key)
        groups = await self._call(self._client.xinfo_groups(key))
        last = next((g.get("last-delivered-id") for g in groups if g["name"] == GROUP), None) or "0-0"
        found: list[tuple[tuple[int, int], QueuedNotice]] = []
        scanned = 0
        async for entries in self._entry_pages(key, RECENT_PAGE, newest_first=True):
            page = [(entry_id, f) for entry_id, f in entries[:rules.NOTICE_SCAN - scanned] if f.get("payload")]
            scanned += len(entries)
            found += await self._queued_of(key, page, outcomes.stream_id(last), state, scope)
            if len(found) >= limit or scanned >= rules.NOTICE_SCAN:
                break
        return found[:limit]

    async def _queued_of(self, key: str, page: list[tuple[str, dict]], last_delivered: tuple[int, int],
                         state: str | None, scope: str | None) -> list[tuple[tuple[int, int], QueuedNotice]]:
        """A newest-first page of an outbox's entries as recent_notices tells
        them, those of the state and scope asked for."""
        if not page:
            return []
        ids = [entry_id for entry_id, _ in page]
        # The pending list before the outcomes: a notice finished between the
        # two reads shows as pending, not as finished with no outcome kept.
        pel = await self._call(self._client.xpending_range(key, GROUP, ids[-1], ids[0], len(ids)))
        delivered = {p["message_id"]: int(p["times_delivered"]) for p in pel}
        recorded = await self._call(self._client.hmget(self._outcomes_key(key), ids))
        found = []
        for (entry_id, f), kept in zip(page, recorded, strict=True):
            item = outcomes.queued(Notice.from_json(f["payload"]), entry_id, kept, delivered.get(entry_id),
                                   last_delivered)
            if (state is None or item.state == state) and (scope is None or rules.notice_in_scope(item.notice, scope)):
                found.append((outcomes.stream_id(entry_id), item))
        return found

    # -- reads for reports and checks ------------------------------------------------
    async def spent_in(self, plan: Plan, scope: str, window: str, periods: list[str]) -> dict[str, int]:
        tag = self._tag(plan)
        pipe = self._client.pipeline(transaction=False)
        for period in periods:
            pipe.hget(self._counter_key(tag, (scope, window, period)), "spent")
        values = await self._call(pipe.execute()) if periods else []
        return {period: int(value) for period, value in zip(periods, values, strict=True) if value is not None}

    async def top_models(self, plan: Plan, since_ms: int, limit: int) -> list[tuple[str, int]]:
        """From the newest ledger entries of the agent's tag (a bounded scan)."""
        totals: dict[str, int] = {}
        entries = await self._call(self._client.xrevrange(self._key(self._tag(plan), "ledger"), count=5000))
        for _, fields in entries:
            if int(fields.get("settled_ms") or 0) < since_ms:
                break
            if fields.get("agent_id") == plan.agent_id and fields.get("pricing"):
                model = json.loads(fields["pricing"])["model"]
                totals[model] = totals.get(model, 0) + int(fields["cost_nanos"])
        return sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:limit]

    async def top_spenders(self, window: str, period: str, plan_for: PlanLookup, limit: int) -> list[tuple[str, int]]:
        agents = [(agent_id, plan) for agent_id in await self._call(
            self._client.smembers(f"{self.prefix}:seen:{window}:{period}")) if (plan := plan_for(agent_id))]
        found = []
        for start in range(0, len(agents), READ_BATCH):  # a pipeline per batch, not a round trip per agent
            batch = agents[start:start + READ_BATCH]
            pipe = self._client.pipeline(transaction=False)
            for agent_id, plan in batch:
                pipe.hget(self._counter_key(self._tag(plan), (f"agent:{agent_id}", window, period)), "spent")
            for (agent_id, _), spent in zip(batch, await self._call(pipe.execute()), strict=True):
                if int(spent or 0) > 0:
                    found.append((agent_id, int(spent)))
        return sorted(found, key=lambda item: (-item[1], item[0]))[:limit]

    async def read(self, plan: Plan) -> AgentState:
        return (await self.read_many([plan]))[0]

    async def read_many(self, plans) -> list[AgentState]:
        """Pipelined: every counter and pause hash of a batch of agents in
        one round trip (on Cluster, one per node the batch touches)."""
        states: list[AgentState] = []
        for start in range(0, len(plans), READ_BATCH):
            batch = plans[start:start + READ_BATCH]
            pipe = self._client.pipeline(transaction=False)
            for plan in batch:
                tag = self._tag(plan)
                for limit in plan.limits:
                    pipe.hmget(self._counter_key(tag, limit.counter), "spent", "reserved")
                for key in self._pause_keys(tag, plan):
                    pipe.hgetall(key)
            replies = iter(await self._call(pipe.execute()))
            states += [_agent_state(plan, replies) for plan in batch]
        return states

    async def active_agents(self, daily_period: str, monthly_period: str) -> list[str]:
        names: set[str] = set()
        for key in (f"{self.prefix}:seen:daily:{daily_period}", f"{self.prefix}:seen:monthly:{monthly_period}",
                    f"{self.prefix}:paused"):
            names |= set(await self._call(self._client.smembers(key)))
        return sorted(names)

    # -- reconciliation results (budgetd/reconcile) -------------------------------------
    def _reconcile_key(self, *parts: str) -> str:
        return self._key("all" if not self.cluster else "reconcile", "rc", *parts)

    async def claim_reconciliation(self, provider: str, day: str, pass_name: str, owner: str,
                                   now_ms: int, lease_ms: int) -> bool:
        field = _reconcile_field(provider, day)
        won: Any = await self._run(scripts.RECONCILE_CLAIM,
                                   [self._reconcile_key("passes"), self._reconcile_key("leases", field)],
                                   scripts.reconcile_claim_args(field, pass_name, owner, now_ms, lease_ms))
        return int(won) == 1

    async def save_reconciliation(self, result: ReconcileDay, owner: str) -> None:
        """One script: the passes' union, the result and the lease drop together."""
        field = _reconcile_field(result.provider, result.day)
        await self._run(scripts.RECONCILE_SAVE, [self._reconcile_key("days"), self._reconcile_key("passes"),
                                                 self._reconcile_key("leases", field)],
                        scripts.reconcile_save_args(field, result.with_passes(), owner))

    async def reconciliations(self, since_day: str, until_day: str,
                              provider: str | None = None) -> list[ReconcileDay]:
        """Filtered in the script (the hash holds a field per provider and
        day ever saved); each result with the passes the day has done."""
        reply = await self._run(scripts.RECONCILE_READ, [self._reconcile_key("days"), self._reconcile_key("passes")],
                                scripts.reconcile_read_args(since_day, until_day, provider))
        found = [ReconcileDay.from_json(text).with_passes(*json.loads(passes))
                 for text, passes in zip(reply[0::2], reply[1::2], strict=True)]
        return sorted(found, key=lambda result: (result.provider, result.day))


def _reconcile_field(provider: str, day: str) -> str:
    """A provider's day in the reconciliation hashes (read back at the first ``|``)."""
    if "|" in provider:
        raise ValueError(f"a provider name has no '|': {provider!r}")
    return f"{provider}|{day}"


def _tags_json(tags) -> str:
    return json.dumps(dict(tags)) if tags else "{}"


def _event_json(source: str, facts: CallFacts | None) -> str:
    """The ledger entry's ``event`` field: what the cost event has beyond the other fields."""
    said: dict[str, object] = {"source": source}
    if facts is not None:
        said |= {"model_requested": facts.model_requested, "latency_ms": facts.latency_ms,
                 "error_code": facts.error_code}
    return json.dumps(said)


def _cost_event(f: dict) -> CostEvent:
    """A ledger entry as its cost event (entries older than the event field
    say no source, but an expiry's: what was held)."""
    priced = json.loads(f["pricing"]) if f.get("pricing") else {}
    said = json.loads(f["event"]) if f.get("event") else {}
    source = said.get("source") or ("estimate" if f.get("kind") == "expiry" else "")
    return CostEvent(
        request_id=f["request_id"], kind=f.get("kind", "settle"), at_ms=int(f["settled_ms"]),
        held_ms=int(f["held_ms"]) if f.get("held_ms") else None, day=f.get("day", ""), agent_id=f["agent_id"],
        groups=tuple(json.loads(f.get("groups") or "[]")), tags=json.loads(f.get("tags") or "{}"),
        cost_nanos=int(f["cost_nanos"]), cost_source=source, model_requested=said.get("model_requested") or "",
        model=priced.get("model", ""), provider=priced.get("provider", ""),
        input_tokens=priced.get("input_tokens", 0), cached_input_tokens=priced.get("cached_input_tokens", 0),
        cache_write_tokens=priced.get("cache_write_tokens", 0), output_tokens=priced.get("output_tokens", 0),
        reasoning_tokens=priced.get("reasoning_tokens", 0), price_version=priced.get("price_version", ""),
        latency_ms=said.get("latency_ms"), error_code=said.get("error_code") or "")


def _agent_state(plan: Plan, replies) -> AgentState:
    """From read_many's replies, the plan's: its counters' HMGETs, then its pause hashes' HGETALLs."""
    balances = {}
    for limit in plan.limits:
        spent, reserved = next(replies)
        balances[limit.counter] = Balance(int(spent or 0), int(reserved or 0))
    pauses = []
    for scope in plan.scopes:
        for field, value in next(replies).items():
            since, _, reason = value.partition("|")
            window, _, period = field.partition(":") if field != "manual" else ("", "", "")
            pauses.append(PauseRecord(scope.key, "manual" if field == "manual" else "cap",
                                      window, period, reason, int(since)))
    return AgentState(balances, pauses)


def _report_keys(by: str, fields: dict, priced: dict | None) -> list[str]:
    if by == "agent":
        return [fields["agent_id"]]
    if by == "day":
        return [fields.get("day", "")]
    if by == "model":
        return [priced["model"] if priced else "(no model)"]
    if by == "group":
        return json.loads(fields.get("groups") or "[]")
    return [json.loads(fields.get("tags") or "{}").get(by, "(none)")]
