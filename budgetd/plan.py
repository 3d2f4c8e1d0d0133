"""What one call is checked against: every window of the agent and of each of
its groups, with the period the call falls in and the cap that applies.

This is the I/O-free part of a hold: the service computes a plan from config
and the clock, the store checks and updates every counter of the plan in one
atomic step.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from zoneinfo import ZoneInfo

from .config.resolve import AgentBudget, GroupBudget, TagBudget
from .windows import Period, Window, current_periods, period_of


@dataclass(frozen=True)
class Scope:
    kind: str  # "agent", "group", or a budgeted tag's key ("customer")
    name: str

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"

    @classmethod
    def parse(cls, key: str) -> Scope:
        kind, _, name = key.partition(":")
        return cls(kind, name)


@dataclass(frozen=True)
class Limit:
    scope: Scope
    period: Period
    cap_nanos: int | None  # None: unlimited (counted, never refused)

    @property
    def window(self) -> Window:
        return self.period.window

    @property
    def counter(self) -> tuple[str, str, str]:
        """The counter's identity: (scope key, window, period key)."""
        return (self.scope.key, self.period.window.value, self.period.key)


@dataclass(frozen=True)
class Plan:
    agent_id: str
    estimate_nanos: int
    # The agent's daily and monthly windows first, then each group's, then the
    # agent's (uncapped) hourly counter.
    limits: tuple[Limit, ...]
    # Fractions of each cap whose crossing raises a warning notice (the config's).
    warn_at: tuple[Decimal, ...] = ()
    # Tags a hold must carry (require_tags: top level, the agent's, its groups').
    required_tags: tuple[str, ...] = ()
    # Set for a tag value's own plan (its status, pause and resume; on Redis
    # Cluster its part of a hold): whose plan it is when not the agent's.
    owner: Scope | None = None
    # The config has tag_budgets, so a hold of this agent may have reserved
    # in tag values' windows too (Redis Cluster looks for them only then).
    tags_budgeted: bool = False

    @property
    def owner_scope(self) -> Scope:
        """Who a manual pause or resume of this plan is for."""
        return self.owner if self.owner is not None else Scope("agent", self.agent_id)

    # A plan is immutable and cached per agent (PlanCache), so what is derived
    # from it is computed once: cached_property writes the instance's
    # __dict__, which a frozen dataclass allows.
    @functools.cached_property
    def scopes(self) -> tuple[Scope, ...]:
        return tuple(dict.fromkeys(limit.scope for limit in self.limits))

    @functools.cached_property
    def counters(self) -> tuple[tuple[str, str, str], ...]:
        return tuple(limit.counter for limit in self.limits)

    @functools.cached_property
    def counters_json(self) -> str:
        """The counters as stored with a hold (JSON [[scope, window, period], ...])."""
        return json.dumps(self.counters)

    @functools.cached_property
    def _limits_by_scope_window(self) -> dict[tuple[str, str], Limit]:
        by: dict[tuple[str, str], Limit] = {}
        for limit in self.limits:
            by.setdefault((limit.scope.key, limit.window.value), limit)
        return by

    @functools.cached_property
    def capped(self) -> dict[tuple[str, str, str], Limit]:
        """The capped limits by counter (scope key, window, period key): what
        a change of spend is checked against for warnings and pauses."""
        return {limit.counter: limit for limit in self.limits if limit.cap_nanos is not None}

    @functools.cached_property
    def warning_thresholds(self) -> dict[tuple[str, str, str], tuple[tuple[Decimal, int], ...]]:
        """(fraction, spend at which it fires, rounded up) for every capped counter."""
        return {counter: tuple((f, threshold_nanos(cap, f)) for f in self.warn_at)
                for counter, limit in self.capped.items() if (cap := limit.cap_nanos) is not None}

    def limit_for(self, scope_key: str, window: str) -> Limit | None:
        return self._limits_by_scope_window.get((scope_key, window))


def make_plan(budget: AgentBudget, now: datetime, zone: ZoneInfo) -> Plan:
    return _plan(budget, *current_periods(now, zone), period_of(Window.HOURLY, now, zone))


def _plan(budget: AgentBudget, daily: Period, monthly: Period, hourly: Period, tags_budgeted: bool = False) -> Plan:
    agent = Scope("agent", budget.agent_id)
    limits = [Limit(agent, daily, budget.daily_nanos), Limit(agent, monthly, budget.monthly_nanos)]
    for group in budget.groups:
        scope = Scope("group", group.name)
        limits += [Limit(scope, daily, group.daily_nanos), Limit(scope, monthly, group.monthly_nanos)]
    limits.append(Limit(agent, hourly, None))
    return Plan(budget.agent_id, budget.estimate_nanos, tuple(limits), budget.warn_at, budget.required_tags,
                tags_budgeted=tags_budgeted)


def tag_limits(budget: TagBudget, daily: Period, monthly: Period) -> tuple[Limit, Limit]:
    scope = Scope(budget.key, budget.value)
    return Limit(scope, daily, budget.daily_nanos), Limit(scope, monthly, budget.monthly_nanos)


def with_tags(plan: Plan, budgets: tuple[TagBudget, ...]) -> Plan:
    """The plan of one call: the agent's plan and the windows of every
    budgeted tag value the call carries, checked in the same step. The
    agent's uncapped hourly counter stays last."""
    daily, monthly = plan.limits[0].period, plan.limits[1].period
    tags = [limit for budget in budgets for limit in tag_limits(budget, daily, monthly)]
    return replace(plan, limits=(*plan.limits[:-1], *tags, plan.limits[-1]))


def tag_plan(budget: TagBudget, now: datetime, zone: ZoneInfo) -> Plan:
    """A tag value's own plan: its daily and monthly windows (status, pause, resume)."""
    daily, monthly = current_periods(now, zone)
    return Plan("", 0, tag_limits(budget, daily, monthly), owner=Scope(budget.key, budget.value))


def group_plan(group: GroupBudget, now: datetime, zone: ZoneInfo) -> Plan:
    """A group's own plan: its daily and monthly windows (the dashboard's group rows)."""
    daily, monthly = current_periods(now, zone)
    scope = Scope("group", group.name)
    return Plan("", 0, (Limit(scope, daily, group.daily_nanos), Limit(scope, monthly, group.monthly_nanos)),
                owner=scope)


def threshold_nanos(cap_nanos: int, fraction: Decimal) -> int:
    """The spend at which a warning fires: ``fraction`` of the cap, rounded up."""
    return int((cap_nanos * fraction).to_integral_value(rounding=ROUND_CEILING))


class PlanCache:
    """Plans by agent for the stretch of time in which none of the daily,
    monthly and hourly periods changes (at most an hour).

    A plan depends only on the agent's budget and on those periods, so within
    the stretch it is computed once per agent instead of once per call (the
    zone conversions were a tenth of the daemon's time under load). One cache
    belongs to one config: a reload brings a new one.
    """

    def __init__(self, budget_of: Callable[[str], AgentBudget | None], zone: ZoneInfo,
                 max_agents: int = 200_000, tag_budget_of: Callable[[str, str], TagBudget | None] | None = None,
                 budgeted_tags: tuple[str, ...] = (), max_with_tags: int = 20_000) -> None:
        self._budget_of = budget_of
        self._tag_budget_of = tag_budget_of
        self._budgeted_tags = budgeted_tags if tag_budget_of is not None else ()
        # Plans of calls with budgeted tags, by (agent, its budgeted tag
        # values): one object per combination, so what stores derive from a
        # plan (per_plan.py) is derived once for it too. Bounded lower than
        # agents' plans: combinations of agents and customers are many, a
        # plan and what stores derive from it some 4 KB, and one rebuilt
        # after the map starts afresh costs a few tens of microseconds.
        self._with_tags: dict[tuple[str, tuple[tuple[str, str], ...]], Plan] = {}
        self._max_with_tags = max_with_tags
        self._zone = zone
        self._max_agents = max_agents  # any id gets a plan under defaults: bound the memory
        self._periods: tuple[Period, Period, Period] | None = None
        self._valid_from_ms = self._valid_until_ms = 0  # unix ms: nothing is valid yet
        self._plans: dict[str, Plan] = {}

    def get(self, agent_id: str, now: datetime) -> Plan | None:
        """The agent's plan at ``now``; None when the config gives it no budget."""
        return self.get_at_ms(agent_id, int(now.timestamp() * 1000))

    def get_at_ms(self, agent_id: str, now_ms: int) -> Plan | None:
        """The same at ``now_ms`` (unix ms): every hold and settle asks, and
        comparing two ints is cheaper than comparing aware datetimes."""
        if not self._valid_from_ms <= now_ms < self._valid_until_ms:
            self._enter(datetime.fromtimestamp(now_ms // 1000, UTC).replace(microsecond=now_ms % 1000 * 1000))
        plan = self._plans.get(agent_id)
        if plan is None:
            budget = self._budget_of(agent_id)
            if budget is None:
                return None
            if len(self._plans) >= self._max_agents:
                self._plans.clear()
            assert self._periods is not None  # set by _enter, above
            plan = self._plans[agent_id] = _plan(budget, *self._periods, tags_budgeted=bool(self._budgeted_tags))
        return plan

    def for_call(self, agent_id: str, tags: Mapping[str, str], now_ms: int) -> Plan | None:
        """The plan of one call: the agent's, with the windows of the budgeted
        tag values among ``tags`` (a call with none of them: the agent's own)."""
        plan = self.get_at_ms(agent_id, now_ms)
        if plan is None or not self._budgeted_tags or not tags:
            return plan
        values = tuple((key, value) for key in self._budgeted_tags if (value := tags.get(key)))
        if not values:
            return plan
        combined = self._with_tags.get((agent_id, values))
        if combined is None:
            assert self._tag_budget_of is not None  # budgeted_tags are only kept with it
            budgets = tuple(b for key, value in values if (b := self._tag_budget_of(key, value)) is not None)
            if len(self._with_tags) >= self._max_with_tags:
                self._with_tags.clear()
            combined = self._with_tags[(agent_id, values)] = with_tags(plan, budgets)
        return combined

    def _enter(self, now: datetime) -> None:
        periods = (*current_periods(now, self._zone), period_of(Window.HOURLY, now, self._zone))
        self._periods = periods
        self._valid_from_ms = int(max(p.starts_at for p in periods).timestamp() * 1000)
        self._valid_until_ms = int(min(p.resets_at for p in periods).timestamp() * 1000)
        self._plans = {}
        self._with_tags = {}
