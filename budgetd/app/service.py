"""The use cases of budgetd: hold, settle, release, status, pause, resume,
report, and the sweep of lapsed holds. The gRPC servicers, the scheduler's
jobs and any later front end (a dashboard) call these; nothing here knows
the wire. Each hold, settle and release makes exactly one store call.
Input is checked (ValueError) before anything is touched."""

from __future__ import annotations

import asyncio
import difflib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime

from budgetd_client import validation
from budgetd_client.usage import Usage, UsageEstimate

from ..config.schema import GLOB_CHARS
from ..metrics import Metrics
from ..plan import Plan, tag_plan
from ..pricing import UnknownModel
from ..reports import Summary, summarize
from ..store import AgentState, CallFacts, CostEvent, HoldRequest, HoldResult, Pricing, SettleRequest, Store
from ..store.rules import pause_in_force
from ..windows import current_periods
from .clock import NowMs, utc_of_ms
from .errors import Draining, UnknownAgent
from .headroom import HeadroomQueues
from .holds_in_flight import HoldsInFlight
from .snapshot import ConfigInForce

log = logging.getLogger("budgetd.service")

REPORT_GROUPINGS = ("agent", "model", "day", "group")
MS_PER_DAY = 86_400_000


@dataclass(frozen=True)
class AgentReport:
    """An agent's status: its plan now, what the store holds for it, and
    where its budget comes from ("configured", "defaults", ...)."""

    plan: Plan
    state: AgentState
    budget_source: str

    @property
    def paused(self) -> bool:
        return pause_in_force(self.plan, self.state.pauses) is not None


@dataclass(frozen=True)
class Settled:
    counted_nanos: int
    duplicate: bool
    paused: bool
    price_version: str


@dataclass(frozen=True)
class Report:
    summary: Summary  # the rows shown (top N) and the total over all of them
    since: str
    until: str

    @property
    def rows(self) -> list[tuple[str, int, int]]:
        """(key, cost nanos, calls) of the rows shown."""
        return [(row.key, row.cost_nanos, row.calls) for row in self.summary.rows]


class BudgetService:
    def __init__(self, in_force: ConfigInForce, store: Store, now_ms: NowMs, metrics: Metrics) -> None:
        self.in_force = in_force  # replaced whole by a reload
        self.store = store
        self.now_ms = now_ms
        self.metrics = metrics
        self.holds_in_flight = HoldsInFlight()
        self.headroom = HeadroomQueues()
        metrics.holds_waiting.set_function(lambda: len(self.headroom))
        # Each cost event the store acknowledged (the export sink's write; None: no sink).
        self.on_event: Callable[[CostEvent], None] | None = None

    def now(self) -> datetime:
        """The time as a datetime, for calendar work off the hot path."""
        return utc_of_ms(self.now_ms())

    @property
    def draining(self) -> bool:
        return self.holds_in_flight.draining

    async def drain(self, grace_seconds: float) -> int:
        """Refuse new holds (those waiting for headroom too); wait for those
        granted here (see HoldsInFlight)."""
        self.holds_in_flight.draining = True
        self.headroom.freed()  # each waiter sees the drain at its turn
        return await self.holds_in_flight.drain(self.now_ms(), grace_seconds)

    def plan_at_ms(self, agent_id: str, now_ms: int) -> Plan:
        plan = self.in_force.plans.get_at_ms(agent_id, now_ms)
        if plan is None:
            raise UnknownAgent(f"agent {agent_id!r} has no budget (and the config has no defaults)")
        return plan

    def call_plan_at_ms(self, agent_id: str, tags: Mapping[str, str], now_ms: int) -> Plan:
        """The plan of one call: the agent's windows, its groups' and those of
        the budgeted tag values it carries (tag_budgets)."""
        plan = self.in_force.plans.for_call(agent_id, tags, now_ms)
        if plan is None:
            raise UnknownAgent(f"agent {agent_id!r} has no budget (and the config has no defaults)")
        return plan

    def plan_or_none(self, agent_id: str) -> Plan | None:
        return self.in_force.plans.get_at_ms(agent_id, self.now_ms())

    async def hold(self, agent_id: str, request_id: str, tags: dict[str, str],
                   estimate: int | UsageEstimate | None, *, wait_ms: int | None = None) -> HoldResult:
        """``estimate``: nanos, token bounds to price, or None (the plan's).
        ``wait_ms``: how long the caller can wait for headroom (its deadline;
        None: no deadline), capped by the config's ``max_wait_ms``."""
        if self.draining:
            raise Draining()
        agent_id = validation.check_agent_id(agent_id)
        request_id = validation.check_request_id(request_id)
        tags = validation.check_tags(tags) if tags else {}
        now_ms = self.now_ms()
        plan = self.call_plan_at_ms(agent_id, tags, now_ms)
        if plan.required_tags:
            _require_tags(plan, tags)
        amount = self._estimate_nanos(estimate, plan)
        ttl_ms = self.in_force.config.reservation_ttl_seconds * 1000
        result = None if agent_id in self.headroom else await self.store.hold(
            HoldRequest(request_id, amount, plan, now_ms, now_ms + ttl_ms, tags))
        if result is None or (not result.allowed and result.denial is not None and result.denial.waitable):
            max_wait_ms = self.in_force.config.max_wait_ms
            wait_ms = max_wait_ms if wait_ms is None else max(0, min(wait_ms, max_wait_ms))
            if result is None or wait_ms > 0:
                result = await self._wait_for_headroom(request_id, amount, plan, tags, result, wait_ms)
        if result.allowed:
            self.holds_in_flight.granted(agent_id, request_id, result.deadline_ms, result.held_nanos)
            self.metrics.holds_allowed.inc()
        else:
            d = result.denial
            assert d is not None  # a refused hold says why
            self.metrics.holds.labels("denied", d.kind).inc()
            log.debug("denied", extra={"agent": agent_id, "kind": d.kind, "scope": d.scope.key})
        return result

    async def _wait_for_headroom(self, request_id: str, amount: int, plan: Plan, tags: dict[str, str],
                                 first: HoldResult | None, wait_ms: int) -> HoldResult:
        """Wait in the agent's queue (headroom.py) and retry the hold at each
        turn, with the time and the plan of that moment."""
        async def attempt() -> HoldResult:
            now_ms = self.now_ms()
            current = self.call_plan_at_ms(plan.agent_id, tags, now_ms)  # a new day or a reload may have changed it
            ttl_ms = self.in_force.config.reservation_ttl_seconds * 1000
            return await self.store.hold(HoldRequest(request_id, amount, current, now_ms, now_ms + ttl_ms, tags))

        waited = await self.headroom.wait(plan.agent_id, plan.scopes, attempt, first,
                                          wait_ms / 1000, lambda: self.draining)
        self.metrics.hold_waits.labels(waited.ended_by).inc()
        self.metrics.hold_wait_seconds.observe(waited.waited_seconds)
        if waited.ended_by == "draining":
            raise Draining()
        return replace(waited.result, waited_ms=round(waited.waited_seconds * 1000))

    def _estimate_nanos(self, estimate: int | UsageEstimate | None, plan: Plan) -> int:
        if estimate is None:
            return plan.estimate_nanos
        if isinstance(estimate, int):
            return validation.check_nanos(estimate, field="estimate_nanos")
        output = estimate.output_tokens
        if output is None:
            budget = self.in_force.resolver.budget(plan.agent_id)
            assert budget is not None  # the agent has a plan, so a budget
            output = budget.estimate_output_tokens
        usage = Usage(model=estimate.model, provider=estimate.provider or "openai",
                      input_tokens=estimate.input_tokens, output_tokens=output,
                      service_tier=estimate.service_tier, batch=estimate.batch)
        return validation.check_nanos(self.in_force.prices.price(usage).nanos, field="estimate_usage (priced)")

    async def settle(self, agent_id: str, request_id: str, tags: dict[str, str],
                     actual: int | Usage | None, facts: CallFacts | None = None) -> Settled:
        """``actual``: nanos, the usage to price, or None (settle what was held).
        ``facts``: the model asked for and the call's latency, for its cost event."""
        agent_id = validation.check_agent_id(agent_id)
        request_id = validation.check_request_id(request_id)
        tags = validation.check_tags(tags) if tags else {}
        facts = _check_facts(facts)
        nanos, pricing = self._actual_nanos(actual, request_id)
        now_ms = self.now_ms()
        # The hold's counters are settled (the store kept them); the call's
        # plan gives the caps a settle pauses and warns at.
        plan = self.call_plan_at_ms(agent_id, tags, now_ms)
        result = await self.store.settle(SettleRequest(request_id, nanos, plan, now_ms, tags, pricing, facts))
        if result.event is not None:
            self._emit(result.event)
        held = self.holds_in_flight.ended(agent_id, request_id)
        self.headroom.freed(plan.scopes)
        if held and nanos is not None and pricing is not None and not result.duplicate and result.counted_nanos > 0:
            # How much the estimate over-held, per model: the slack operators can tighten.
            self.metrics.held_to_actual_of(pricing.model).observe(held / result.counted_nanos)
        for pause in result.paused:
            log.warning("paused at cap", extra={"agent": agent_id, "scope": pause.scope, "window": pause.window,
                                                "period": pause.period, "reason": pause.reason})
        return Settled(result.counted_nanos, result.duplicate, bool(result.paused),
                       pricing.price_version if pricing else "")

    def _actual_nanos(self, actual: int | Usage | None, request_id: str) -> tuple[int | None, Pricing | None]:
        if actual is None:
            return None, None
        if isinstance(actual, int):
            return validation.check_nanos(actual, field="actual_nanos"), None
        nanos: int | None
        try:
            price = self.in_force.prices.price(actual)
            nanos, version = validation.check_nanos(price.nanos, field="usage (priced)"), price.version
        except UnknownModel as err:
            # Money was spent; it cannot be counted as zero. Settle what was held.
            log.warning("settling the hold: %s", err, extra={"request_id": request_id})
            nanos, version = None, f"unpriced ({actual.model}): settled the hold"
        return nanos, Pricing(actual.model, actual.provider, actual.input_tokens, actual.cached_input_tokens,
                              actual.output_tokens, actual.reasoning_tokens, version, actual.cache_write_tokens)

    def _emit(self, event: CostEvent) -> None:
        """Hand an acknowledged event to the sink; nothing it does fails the call."""
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:
            self.metrics.export_errors.inc()
            log.exception("export: the sink failed on request %s", event.request_id)

    async def release(self, agent_id: str, request_id: str, facts: CallFacts | None = None) -> bool:
        """With ``facts`` carrying an error code, the failed call is recorded
        (a ledger row of cost 0 with the error) as the hold is dropped."""
        agent_id = validation.check_agent_id(agent_id)
        request_id = validation.check_request_id(request_id)
        facts = _check_facts(facts)
        now_ms = self.now_ms()
        plan = self.plan_at_ms(agent_id, now_ms)
        if facts is not None and facts.error_code:
            event = await self.store.record_failure(request_id, plan, now_ms, facts)
            released = event is not None
            if event is not None:
                self._emit(event)
        else:
            released = await self.store.release(request_id, plan, now_ms)
        self.holds_in_flight.ended(agent_id, request_id)
        self.headroom.freed(plan.scopes)
        return released

    async def status(self, agent_id: str, *, known_only: bool = False,
                     may_see: Callable[[str], bool] | None = None) -> AgentReport:
        """``known_only``: an operator asking, so a typo is refused, not shown
        as a defaults budget (``may_see``: the ids the caller may be told of)."""
        agent_id = validation.check_agent_id(agent_id)
        if known_only:
            await self.require_known(agent_id, "nothing to show", may_see)
        return await self._report(agent_id)

    async def _report(self, agent_id: str) -> AgentReport:
        plan = self.plan_at_ms(agent_id, self.now_ms())
        return AgentReport(plan, await self.store.read(plan), self.in_force.resolver.source(agent_id))

    async def statuses(self, agent_ids: Iterable[str]) -> list[AgentReport]:
        """The status of each agent that has a budget, in one batched read
        (agents seen earlier but no longer budgeted are left out)."""
        now_ms = self.now_ms()
        plans = [plan for agent_id in agent_ids if (plan := self.in_force.plans.get_at_ms(agent_id, now_ms))]
        states = await self.store.read_many(plans)
        source = self.in_force.resolver.source
        return [AgentReport(plan, state, source(plan.agent_id)) for plan, state in zip(plans, states, strict=True)]

    async def list_statuses(self) -> list[AgentReport]:
        """Every configured agent and every agent with spend this period, by id."""
        daily, monthly = current_periods(self.now(), self.in_force.config.zone)
        seen = await self.store.active_agents(daily.key, monthly.key)
        return await self.statuses(sorted(set(self.in_force.resolver.exact_agent_ids) | set(seen)))

    def open_watch(self, agent_id: str) -> str:
        """Whether a stream of the agent's events may open: the checked id."""
        if self.draining:
            raise Draining("new watches")
        agent_id = validation.check_agent_id(agent_id)
        self.plan_at_ms(agent_id, self.now_ms())
        return agent_id

    async def pause(self, agent_id: str, reason: str) -> AgentReport:
        agent_id = validation.check_agent_id(agent_id)
        reason = validation.check_reason(reason) or "paused by an operator"
        await self.require_known(agent_id, "nothing was paused")
        now_ms = self.now_ms()
        await self.store.pause(self.plan_at_ms(agent_id, now_ms), reason, now_ms)
        log.warning("paused by operator", extra={"agent": agent_id, "reason": reason})
        return await self._report(agent_id)

    async def resume(self, agent_id: str) -> AgentReport:
        agent_id = validation.check_agent_id(agent_id)
        await self.require_known(agent_id, "nothing was resumed")
        now_ms = self.now_ms()
        if await self.store.resume(self.plan_at_ms(agent_id, now_ms), now_ms):
            log.warning("resumed by operator", extra={"agent": agent_id})
        return await self._report(agent_id)

    # -- a tag value's own windows (tag_budgets) -------------------------------------
    def tag_plan(self, key: str, value: str) -> tuple[Plan, str]:
        """A tag value's plan now and where its caps come from; INVALID_ARGUMENT
        for a tag without a ``tag_budgets`` entry (nothing counts its values)."""
        validation.check_tags({key: value}, field="tag")
        if not value:
            raise ValueError(f"tag {key!r}: the value must not be empty (e.g. {key}=acme)")
        budget = self.in_force.resolver.tag_budget(key, value)
        if budget is None:
            budgeted = ", ".join(self.in_force.resolver.budgeted_tags) or "none"
            raise ValueError(f"tag {key!r} has no tag_budgets entry in the config (budgeted tags: {budgeted}): "
                             "budgetd does not count or pause its values")
        return tag_plan(budget, self.now(), self.in_force.config.zone), budget.source

    async def tag_status(self, key: str, value: str) -> AgentReport:
        plan, source = self.tag_plan(key, value)
        return AgentReport(plan, await self.store.read(plan), source)

    async def pause_tag(self, key: str, value: str, reason: str) -> AgentReport:
        """Pause every call carrying this tag value, of any agent, until resumed."""
        reason = validation.check_reason(reason) or "paused by an operator"
        plan, _ = self.tag_plan(key, value)
        await self.store.pause(plan, reason, self.now_ms())
        log.warning("paused by operator", extra={"scope": plan.owner_scope.key, "reason": reason})
        return await self.tag_status(key, value)

    async def resume_tag(self, key: str, value: str) -> AgentReport:
        """Lift the tag value's pauses (manual, and a cap pause of its windows)."""
        plan, _ = self.tag_plan(key, value)
        if await self.store.resume(plan, self.now_ms()):
            log.warning("resumed by operator", extra={"scope": plan.owner_scope.key})
        return await self.tag_status(key, value)

    async def report(self, by: str, since: str, until: str, top: int = 0) -> Report:
        """Spend grouped ``by`` (a grouping or a tag key) over days ``since``
        to ``until`` (YYYY-MM-DD; empty: today), the ``top`` rows of the
        biggest spend (0: all) and the total of every row."""
        if top < 0:
            raise ValueError(f"top must be 0 (every row) or more, got {top}")
        by = by or "agent"
        if by not in REPORT_GROUPINGS:
            validation.check_tags({by: ""}, field="by")  # a tag key: the same rule as tags
        today = current_periods(self.now(), self.in_force.config.zone)[0].key
        first, last = (_day(since, "since") or today), (_day(until, "until") or today)
        if first > last:  # an empty range is a mistake to say, not an empty report
            raise ValueError(f"since {first} is after until {last}" + (" (today)" if not until else "")
                             + ": the range is empty; give since on or before until")
        return Report(summarize(await self.store.report_parts(by, first, last), top), first, last)

    def export(self, since: str, until: str) -> tuple[str, str, AsyncIterator[CostEvent]]:
        """The cost events of local days ``since`` to ``until`` (YYYY-MM-DD;
        empty: today), oldest first: the days, and the events to iterate."""
        today = current_periods(self.now(), self.in_force.config.zone)[0].key
        first, last = (_day(since, "since") or today), (_day(until, "until") or today)
        if first > last:
            raise ValueError(f"since {first} is after until {last}" + (" (today)" if not until else "")
                             + ": the range is empty; give since on or before until")
        return first, last, self.store.cost_events(first, last)

    async def require_known(self, agent_id: str, doing: str, may_see: Callable[[str], bool] | None = None) -> None:
        """Refuse (NOT_FOUND) an operator command for an agent that is neither
        in the config by its exact id nor ever seen: a typo would otherwise
        pause, resume or show a defaults budget nobody uses. Seen: spend or
        holds in a current window, a pause, or a ledger row (the ledger is
        read only when the cheaper answers say no, so a typo costs one scan).
        ``may_see``: which ids the caller may be told of (a scoped token)."""
        in_force = self.in_force
        if in_force.resolver.source(agent_id) == "configured":
            return
        daily, monthly = current_periods(self.now(), in_force.config.zone)
        seen = set(await self.store.active_agents(daily.key, monthly.key))
        if agent_id in seen:
            return
        seen |= {key for key, _, _ in await self.store.report("agent", "0001-01-01", "9999-12-31")}
        if agent_id in seen:
            return
        # Off the loop: a config may name a million agents.
        close = await asyncio.to_thread(_close_matches, agent_id, in_force.config.agents, seen, may_see)
        hint = (f"did you mean {' or '.join(repr(c) for c in close)}?" if close
                else "`budgetctl status` lists the agents budgetd knows")
        raise UnknownAgent(f"agent {agent_id!r} is not in the config and budgetd has never seen it (no spend, "
                           f"holds, pause or ledger rows); {hint} ({doing})")

    async def trim_ledger(self) -> int:
        """Drop ledger rows older than the configured retention."""
        days = self.in_force.config.ledger_retention_days
        dropped = await self.store.trim_ledger(self.now_ms() - days * MS_PER_DAY)
        if dropped:
            log.info("ledger trimmed", extra={"rows": dropped, "retention_days": days})
        return dropped

    async def expire_lapsed_holds(self) -> int:
        """Settle or release holds past their deadline, by the config's policy."""
        charge = self.in_force.config.on_reservation_expiry == "charge"
        now_ms = self.now_ms()
        self.holds_in_flight.forget_lapsed(now_ms)
        events: list[CostEvent] | None = [] if self.on_event is not None else None
        expired = await self.store.expire(now_ms, charge, self.plan_or_none, events)
        for event in events or ():
            self._emit(event)
        if expired:
            self.headroom.freed()  # released, or charged at what was held: either may leave room
            log.info("expired holds", extra={"count": expired, "policy": "charge" if charge else "release"})
        return expired


def _require_tags(plan: Plan, tags: dict[str, str]) -> None:
    """Refuse (ValueError: INVALID_ARGUMENT) a hold without every required
    tag; an empty value is no attribution either."""
    missing = [key for key in plan.required_tags if not tags.get(key)]
    if missing:
        named = " and ".join(repr(key) for key in missing)
        raise ValueError(f"missing tag{'s' if len(missing) > 1 else ''} {named}: set it in guard(..., tags=...) "
                         f"or in wrap(..., tags=...) (agent {plan.agent_id!r} requires "
                         f"{', '.join(plan.required_tags)}; require_tags in the config)")


MAX_FACT_CHARS = 200  # model_requested and error_code are cut to this
MAX_LATENCY_MS = 2**31


def _check_facts(facts: CallFacts | None) -> CallFacts | None:
    """What a cost event can carry of what the caller said. Never a reason to
    refuse a settle (its money was spent): too long is cut, a latency out of
    range is dropped, characters that cannot be printed are replaced."""
    if facts is None:
        return None
    latency = facts.latency_ms if facts.latency_ms is not None and 0 <= facts.latency_ms <= MAX_LATENCY_MS else None

    def clean(text: str) -> str:
        text = text[:MAX_FACT_CHARS]
        return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)

    return CallFacts(clean(facts.model_requested), latency, clean(facts.error_code))


def _close_matches(agent_id: str, configured: Iterable[str], seen: set[str],
                   may_see: Callable[[str], bool] | None) -> list[str]:
    """The known ids nearest to a mistyped one ("did you mean")."""
    slack = max(2, len(agent_id) // 3)  # ids much longer or shorter are never close: skip them cheaply
    known = {a for a in (*configured, *seen) if abs(len(a) - len(agent_id)) <= slack and not GLOB_CHARS.search(a)
             and (may_see is None or may_see(a))}
    return difflib.get_close_matches(agent_id, sorted(known), n=3)


def _day(text: str, field: str) -> str:
    if not text:
        return ""
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not a date (YYYY-MM-DD)") from None


