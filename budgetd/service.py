"""The gRPC services: validate, plan, one store step, answer.

Each RPC makes exactly one store call on its hot path. Bad input is refused
with INVALID_ARGUMENT before anything is touched.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone

import grpc
from budgetd_client import validation
from budgetd_client.v1 import budget_pb2 as pb
from budgetd_client.usage import Usage
from budgetd_client.v1 import budget_pb2_grpc as pb_grpc

from . import wire
from .auth import PermissionDenied, Unauthenticated, identify, may_act_for, require
from .config import Config, Resolver
from .config.schema import GLOB_CHARS
from .plan import Plan, PlanCache
from .pricing import PriceTable, UnknownModel
from .store import HoldRequest, Pricing, RequestConflict, SettleRequest, Store, StoreError, StoreRefused
from .windows import current_periods

log = logging.getLogger("budgetd.service")

Clock = Callable[[], datetime]


class UnknownAgent(Exception):
    pass


class Draining(Exception):
    """The daemon is shutting down: new holds are refused (UNAVAILABLE, so
    clients wait for the restart or another replica), settles still land."""

    def __init__(self, what: str = "new holds") -> None:
        super().__init__(f"budgetd is draining (shutting down): {what} are refused; "
                         "settles of holds already granted are still taken")


@dataclass(frozen=True)
class Active:
    """The config in force and what is derived from it; replaced whole."""

    config: Config
    resolver: Resolver
    prices: PriceTable
    plans: PlanCache
    warn_at: tuple  # the config's, one tuple for every settle (stores cache per plan and warn_at)

    @classmethod
    def of(cls, config: Config) -> Active:
        resolver = Resolver(config)
        return cls(config, resolver, PriceTable(config), PlanCache(resolver.budget, config.zone),
                   tuple(config.warn_at))


def to_ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def system_clock() -> datetime:
    return datetime.now(timezone.utc)


def _system_now_ms() -> int:
    return time.time_ns() // 1_000_000


_ERRORS = (
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownAgent, grpc.StatusCode.NOT_FOUND),
    (Draining, grpc.StatusCode.UNAVAILABLE),
    ((RequestConflict, UnknownModel, StoreRefused), grpc.StatusCode.FAILED_PRECONDITION),
    (StoreError, grpc.StatusCode.UNAVAILABLE),
)


def rpc(method=None, *, admin: bool = False):
    """Check the caller's token (admin methods need an admin token; the others
    one scoped to the request's agent), time the call, and turn our
    exceptions into gRPC status codes with messages that say what."""
    if method is None:
        return lambda m: rpc(m, admin=admin)
    name = method.__name__

    @functools.wraps(method)
    async def wrapper(self, request, context: grpc.aio.ServicerContext):
        metrics = self.core.metrics
        started = time.perf_counter()
        try:
            auth = self.core.active.config.auth
            if auth is not None:  # without auth every caller is trusted: no metadata to read
                require(identify(auth, context.invocation_metadata()), agent_id=None if admin else request.agent_id,
                        admin=admin)
            return await method(self, request, context)
        except Exception as err:
            code = next((code for kind, code in _ERRORS if isinstance(err, kind)), grpc.StatusCode.INTERNAL)
            metrics.rpc_errors.labels(name, code.name).inc()
            if code is grpc.StatusCode.INTERNAL:
                log.exception("internal error in %s", name)
                await context.abort(code, f"internal error in {name}; see the daemon's log")
            if code is grpc.StatusCode.UNAVAILABLE and not isinstance(err, Draining):
                metrics.store_errors.inc()
                log.error("store error in %s: %s", name, err)
                await context.abort(code, f"store unavailable: {err}")
            await context.abort(code, str(err))
        finally:
            metrics.rpc_latency_of(name).observe(time.perf_counter() - started)

    return wrapper


class Core:
    """What both services share: the config in force, the store, the clock."""

    def __init__(self, active: Active, store: Store, clock: Clock, metrics) -> None:
        self.active = active
        self.store = store
        self.clock = clock
        self.metrics = metrics
        # Holds and settles need only the time in unix ms: on the system clock
        # read it as an int, with no datetime made (an injected clock, in
        # tests, is read as it is).
        self.now_ms: Callable[[], int] = _system_now_ms if clock is system_clock else lambda: to_ms(clock())
        # Holds this process granted and has not yet seen settled or released,
        # with their deadlines: a drain waits for them (a deadline passed means
        # the sweeper settles it, so a drain does not wait for those).
        self.granted: dict[tuple[str, str], int] = {}
        self.draining = False
        self._all_settled = asyncio.Event()

    def hold_granted(self, agent_id: str, request_id: str, deadline_ms: int) -> None:
        self.granted[(agent_id, request_id)] = deadline_ms

    def hold_ended(self, agent_id: str, request_id: str) -> None:
        if self.granted.pop((agent_id, request_id), None) is not None and self.draining and not self.granted:
            self._all_settled.set()

    def forget_lapsed_holds(self, now_ms: int) -> None:
        """Drop holds past their deadline from ``granted`` (the sweeper's now)."""
        for key in [key for key, deadline in self.granted.items() if deadline <= now_ms]:
            del self.granted[key]
        if self.draining and not self.granted:
            self._all_settled.set()

    def end_drain_now(self) -> None:
        """Stop waiting for the holds still out (a second signal)."""
        self.granted.clear()
        self._all_settled.set()

    async def drain(self, grace_seconds: float) -> int:
        """Refuse new holds; wait until every hold granted here is settled,
        released or past its deadline, or ``grace_seconds`` pass. Returns how
        many were left unsettled."""
        self.draining = True
        self.forget_lapsed_holds(self.now_ms())
        if self.granted:
            try:
                await asyncio.wait_for(self._all_settled.wait(), grace_seconds)
            except TimeoutError:
                pass
        return len(self.granted)

    def plan(self, agent_id: str, now: datetime) -> Plan:
        return self.plan_at_ms(agent_id, to_ms(now))

    def plan_at_ms(self, agent_id: str, now_ms: int) -> Plan:
        plan = self.active.plans.get_at_ms(agent_id, now_ms)
        if plan is None:
            raise UnknownAgent(f"agent {agent_id!r} has no budget (and the config has no defaults)")
        return plan

    def plan_or_none(self, agent_id: str) -> Plan | None:
        return self.active.plans.get(agent_id, self.clock())

    async def status(self, agent_id: str) -> pb.AgentStatus:
        plan = self.plan(agent_id, self.clock())
        msg = wire.agent_status(plan, await self.store.read(plan))
        msg.budget_source = self.active.resolver.source(agent_id)
        return msg

    async def require_known(self, agent_id: str, doing: str, may_see: Callable[[str], bool] | None = None) -> None:
        """Refuse (NOT_FOUND) an operator command for an agent that is neither
        in the config by its exact id nor ever seen: a typo would otherwise
        pause, resume or show a defaults budget nobody uses. Seen: spend or
        holds in a current window, a pause, or a ledger row (the ledger is
        read only when the cheaper answers say no, so a typo costs one scan).
        ``may_see``: which ids the caller may be told of (a scoped token)."""
        active = self.active
        if active.resolver.source(agent_id) == "configured":
            return
        daily, monthly = current_periods(self.clock(), self.active.config.zone)
        seen = set(await self.store.active_agents(daily.key, monthly.key))
        if agent_id in seen:
            return
        seen |= {key for key, _, _ in await self.store.report("agent", "0001-01-01", "9999-12-31")}
        if agent_id in seen:
            return
        # Off the loop: a config may name a million agents.
        close = await asyncio.to_thread(_close_matches, agent_id, active.config.agents, seen, may_see)
        hint = (f"did you mean {' or '.join(repr(c) for c in close)}?" if close
                else "`budgetctl status` lists the agents budgetd knows")
        raise UnknownAgent(f"agent {agent_id!r} is not in the config and budgetd has never seen it (no spend, "
                           f"holds, pause or ledger rows); {hint} ({doing})")

    async def sweep(self) -> int:
        """Expire holds past their deadline (the scheduler calls this)."""
        charge = self.active.config.on_reservation_expiry == "charge"
        now_ms = to_ms(self.clock())
        self.forget_lapsed_holds(now_ms)
        expired = await self.store.expire(now_ms, charge, self.plan_or_none)
        if expired:
            log.info("expired holds", extra={"count": expired, "policy": "charge" if charge else "release"})
        return expired


class BudgetService(pb_grpc.BudgetServicer):
    def __init__(self, core: Core, events=None) -> None:
        self.core = core
        self.events = events  # an EventHub, for Watch

    @rpc
    async def Authorize(self, request: pb.AuthorizeRequest, context) -> pb.AuthorizeResponse:
        if self.core.draining:
            raise Draining()
        agent_id = validation.check_agent_id(request.agent_id)
        request_id = validation.check_request_id(request.request_id)
        tags = validation.check_tags(dict(request.tags)) if request.tags else {}
        now_ms = self.core.now_ms()
        plan = self.core.plan_at_ms(agent_id, now_ms)
        amount = self._estimate(request, plan)
        deadline_ms = now_ms + self.core.active.config.reservation_ttl_seconds * 1000
        result = await self.core.store.hold(HoldRequest(request_id, amount, plan, now_ms, deadline_ms, tags))
        if result.allowed:
            self.core.hold_granted(agent_id, request_id, result.deadline_ms)
            self.core.metrics.holds_allowed.inc()
            return pb.AuthorizeResponse(
                decision=pb.DECISION_ALLOWED,
                held_nanos=result.held_nanos,
                hold_expires_at=wire.timestamp(ms=result.deadline_ms),
            )
        d = result.denial
        self.core.metrics.holds.labels("denied", d.kind).inc()
        log.debug("denied", extra={"agent": agent_id, "kind": d.kind, "scope": d.scope.key})
        decision = pb.DECISION_DENIED_PAUSED if d.kind == "paused" else pb.DECISION_DENIED_CAP
        return pb.AuthorizeResponse(decision=decision, denial=wire.denial(d))

    def _estimate(self, request: pb.AuthorizeRequest, plan: Plan) -> int:
        which = request.WhichOneof("estimate")
        if which == "estimate_nanos":
            return validation.check_nanos(request.estimate_nanos, field="estimate_nanos")
        if which == "estimate_usage":
            e = request.estimate_usage
            output = e.output_tokens if e.HasField("output_tokens") else self.core.active.resolver.budget(
                plan.agent_id).estimate_output_tokens
            usage = Usage(model=e.model, provider=e.provider or "openai", input_tokens=e.input_tokens,
                          output_tokens=output, service_tier=e.service_tier, batch=e.batch)
            return validation.check_nanos(self.core.active.prices.price(usage).nanos, field="estimate_usage (priced)")
        return plan.estimate_nanos

    def _actual(self, request: pb.CommitRequest) -> tuple[int | None, Pricing | None]:
        which = request.WhichOneof("actual")
        if which == "actual_nanos":
            return validation.check_nanos(request.actual_nanos, field="actual_nanos"), None
        if which != "usage":
            return None, None
        usage = Usage.from_proto(request.usage)
        prices = self.core.active.prices
        try:
            price = prices.price(usage)
            nanos, version = validation.check_nanos(price.nanos, field="usage (priced)"), price.version
        except UnknownModel as err:
            # Money was spent; it cannot be counted as zero. Settle what was held.
            log.warning("settling the hold: %s", err, extra={"request_id": request.request_id})
            nanos, version = None, f"unpriced ({usage.model}): settled the hold"
        pricing = Pricing(usage.model, usage.provider, usage.input_tokens, usage.cached_input_tokens,
                          usage.output_tokens, usage.reasoning_tokens, version)
        return nanos, pricing

    @rpc
    async def Commit(self, request: pb.CommitRequest, context) -> pb.CommitResponse:
        agent_id = validation.check_agent_id(request.agent_id)
        request_id = validation.check_request_id(request.request_id)
        tags = validation.check_tags(dict(request.tags)) if request.tags else {}
        actual, pricing = self._actual(request)
        now_ms = self.core.now_ms()
        plan = self.core.plan_at_ms(agent_id, now_ms)
        result = await self.core.store.settle(
            SettleRequest(request_id, actual, plan, now_ms, tags, pricing)
        )
        self.core.hold_ended(agent_id, request_id)
        for pause in result.paused:
            log.warning("paused at cap", extra={"agent": agent_id, "scope": pause.scope, "window": pause.window,
                                                "period": pause.period, "reason": pause.reason})
        return pb.CommitResponse(counted_nanos=result.counted_nanos, duplicate=result.duplicate,
                                 paused=bool(result.paused), price_version=pricing.price_version if pricing else "")

    @rpc
    async def Release(self, request: pb.ReleaseRequest, context) -> pb.ReleaseResponse:
        agent_id = validation.check_agent_id(request.agent_id)
        request_id = validation.check_request_id(request.request_id)
        now = self.core.clock()
        plan = self.core.plan(agent_id, now)
        released = await self.core.store.release(request_id, plan, to_ms(now))
        self.core.hold_ended(agent_id, request_id)
        return pb.ReleaseResponse(released=released)

    @rpc
    async def GetStatus(self, request: pb.GetStatusRequest, context) -> pb.AgentStatus:
        agent_id = validation.check_agent_id(request.agent_id)
        if request.known_only:  # an operator asking: a typo is refused, not shown as a defaults budget
            await self.core.require_known(agent_id, "nothing to show", _visible_to(self.core, context))
        return await self.core.status(agent_id)

    async def Watch(self, request: pb.WatchRequest, context):
        try:
            if self.core.draining:
                raise Draining("new watches")
            require(identify(self.core.active.config.auth, context.invocation_metadata()), agent_id=request.agent_id)
            agent_id = validation.check_agent_id(request.agent_id)
            self.core.plan(agent_id, self.core.clock())
        except Exception as err:
            code = next((code for kind, code in _ERRORS if isinstance(err, kind)), None)
            if code is None:
                raise
            await context.abort(code, str(err))
        # The stream's metadata is kept: a config change that revokes its token ends it.
        queue = self.events.subscribe(agent_id, context.invocation_metadata())
        try:
            while (event := await queue.get()) is not self.events.CLOSED:
                if isinstance(event, (Unauthenticated, PermissionDenied)):
                    code = next(code for kind, code in _ERRORS if isinstance(event, kind))
                    await context.abort(code, f"the watch of {agent_id!r} ended: after a config change its "
                                              f"token is no longer allowed (revoked, or it lost access): {event}")
                yield wire.event(event)
            # Told at once, so a watch does not hold the drain; the client reconnects.
            await context.abort(grpc.StatusCode.UNAVAILABLE, "budgetd is draining (shutting down): watch again")
        finally:
            self.events.unsubscribe(agent_id, queue)


class AdminService(pb_grpc.AdminServicer):
    def __init__(self, core: Core, reloader=None) -> None:
        self.core = core
        self.reloader = reloader  # None: the config came from no file

    @rpc(admin=True)
    async def Pause(self, request: pb.PauseRequest, context) -> pb.AgentStatus:
        agent_id = validation.check_agent_id(request.agent_id)
        reason = validation.check_reason(request.reason) or "paused by an operator"
        await self.core.require_known(agent_id, "nothing was paused")
        now = self.core.clock()
        await self.core.store.pause(self.core.plan(agent_id, now), reason, to_ms(now))
        log.warning("paused by operator", extra={"agent": agent_id, "reason": reason})
        return await self.core.status(agent_id)

    @rpc(admin=True)
    async def Resume(self, request: pb.ResumeRequest, context) -> pb.AgentStatus:
        agent_id = validation.check_agent_id(request.agent_id)
        await self.core.require_known(agent_id, "nothing was resumed")
        now = self.core.clock()
        if await self.core.store.resume(self.core.plan(agent_id, now), to_ms(now)):
            log.warning("resumed by operator", extra={"agent": agent_id})
        return await self.core.status(agent_id)

    @rpc(admin=True)
    async def ListStatus(self, request: pb.ListStatusRequest, context) -> pb.ListStatusResponse:
        daily, monthly = current_periods(self.core.clock(), self.core.active.config.zone)
        seen = await self.core.store.active_agents(daily.key, monthly.key)
        agent_ids = sorted(set(self.core.active.resolver.exact_agent_ids) | set(seen))
        statuses = []
        for agent_id in agent_ids:
            try:
                statuses.append(await self.core.status(agent_id))
            except UnknownAgent:  # seen earlier, no longer in the config
                continue
        return pb.ListStatusResponse(agents=statuses)

    @rpc(admin=True)
    async def GetConfig(self, request: pb.GetConfigRequest, context) -> pb.ConfigInfo:
        r = self.reloader
        if r is None:
            return pb.ConfigInfo(generation=1)
        info = pb.ConfigInfo(generation=r.generation, loaded_at=wire.timestamp(r.loaded_at), source=str(r.path),
                             last_error=r.last_error)
        if r.last_error_at is not None:
            info.last_error_at.CopyFrom(wire.timestamp(r.last_error_at))
        return info

    @rpc(admin=True)
    async def Report(self, request: pb.ReportRequest, context) -> pb.ReportResponse:
        by = request.by or "agent"
        if by not in ("agent", "model", "day", "group"):
            validation.check_tags({by: ""}, field="by")  # a tag key: the same rule as tags
        today = current_periods(self.core.clock(), self.core.active.config.zone)[0].key
        since, until = (_day(request.since, "since") or today), (_day(request.until, "until") or today)
        if since > until:  # an empty range is a mistake to say, not an empty report
            raise ValueError(f"since {since} is after until {until}" + (" (today)" if not request.until else "")
                             + ": the range is empty; give since on or before until")
        rows = await self.core.store.report(by, since, until)
        return pb.ReportResponse(rows=[pb.ReportRow(key=k or "", cost_nanos=c, calls=n) for k, c, n in rows],
                                 total_nanos=sum(c for _, c, _ in rows), since=since, until=until)


def _close_matches(agent_id: str, configured, seen: set[str], may_see) -> list[str]:
    """The known ids nearest to a mistyped one ("did you mean")."""
    slack = max(2, len(agent_id) // 3)  # ids much longer or shorter are never close: skip them cheaply
    known = {a for a in (*configured, *seen) if abs(len(a) - len(agent_id)) <= slack and not GLOB_CHARS.search(a)
             and (may_see is None or may_see(a))}
    return difflib.get_close_matches(agent_id, sorted(known), n=3)


def _visible_to(core: Core, context) -> Callable[[str], bool] | None:
    """Which agent ids the caller's token may be told of (None: all)."""
    auth = core.active.config.auth
    who = identify(auth, context.invocation_metadata()) if auth is not None else None
    if who is None or who.role == "admin":
        return None
    return lambda agent_id: may_act_for(who, agent_id)


def _day(text: str, field: str) -> str:
    if not text:
        return ""
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not a date (YYYY-MM-DD)") from None
