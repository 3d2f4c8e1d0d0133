"""What one call is checked against: every window of the agent and of each of
its groups, with the period the call falls in and the cap that applies.

This is the I/O-free part of a hold: the service computes a plan from config
and the clock, the store checks and updates every counter of the plan in one
atomic step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from .config.resolve import AgentBudget
from .windows import Period, Window, current_periods, period_of


@dataclass(frozen=True)
class Scope:
    kind: str  # "agent" or "group"
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

    @property
    def scopes(self) -> tuple[Scope, ...]:
        return tuple(dict.fromkeys(limit.scope for limit in self.limits))

    def limit_for(self, scope_key: str, window: str) -> Limit | None:
        return next((lm for lm in self.limits if lm.scope.key == scope_key and lm.window.value == window), None)


def make_plan(budget: AgentBudget, now: datetime, zone: ZoneInfo) -> Plan:
    daily, monthly = current_periods(now, zone)
    agent = Scope("agent", budget.agent_id)
    limits = [Limit(agent, daily, budget.daily_nanos), Limit(agent, monthly, budget.monthly_nanos)]
    for group in budget.groups:
        scope = Scope("group", group.name)
        limits += [Limit(scope, daily, group.daily_nanos), Limit(scope, monthly, group.monthly_nanos)]
    limits.append(Limit(agent, period_of(Window.HOURLY, now, zone), None))
    return Plan(budget.agent_id, budget.estimate_nanos, tuple(limits))
