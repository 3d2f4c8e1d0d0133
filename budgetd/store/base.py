"""The Store contract: every backend (SQLite, Redis) implements it and passes
one conformance suite (tests/test_store_conformance.py).

Each operation is one atomic step over every counter it touches. Callers
pass a ``Plan`` (which counters, which caps, computed from config and the
clock); the store does not read config or the clock itself, so the same
inputs give the same answer on every backend.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..notices.model import Notice

from ..plan import Limit, Plan, Scope

Counter = tuple[str, str, str]  # (scope key, window, period key)


class StoreError(Exception):
    """The backend failed or is unreachable; callers answer UNAVAILABLE."""


class StoreLost(StoreError):
    """The backend lost data it had acknowledged (the SQLite file was deleted
    or replaced; Redis restarted empty). The store refuses every write from
    then on, so nothing more is acknowledged into a store that forgets; the
    daemon reports it (log, metric, health NOT_SERVING, a notice). A restart
    of the daemon adopts the store as it is now."""


class StoreRefused(Exception):
    """The store cannot do this for this plan (e.g. an agent in two groups on
    Redis Cluster); callers answer FAILED_PRECONDITION."""


class RequestConflict(Exception):
    """A request id is reused after its call ended (settled, released, expired).

    Request ids are scoped to their agent: the same id under two agents is
    two calls, and no agent can touch another's hold."""


@dataclass(frozen=True)
class Balance:
    spent_nanos: int = 0
    reserved_nanos: int = 0


@dataclass(frozen=True)
class PauseRecord:
    scope: str  # scope key, "agent:NAME" or "group:NAME"
    kind: str  # "manual" or "cap"
    window: str  # "" for manual pauses
    period: str  # "" for manual pauses
    reason: str
    since_ms: int


@dataclass(frozen=True)
class Denial:
    kind: str  # "cap" or "paused"
    scope: Scope
    limit: Limit | None  # the refusing window (cap), the capped window (cap pause), None (manual)
    remaining_nanos: int
    pause: PauseRecord | None = None


@dataclass(frozen=True)
class HoldRequest:
    request_id: str
    amount_nanos: int
    plan: Plan  # the agent is the plan's
    now_ms: int
    deadline_ms: int
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def agent_id(self) -> str:
        return self.plan.agent_id


@dataclass(frozen=True)
class HoldResult:
    allowed: bool
    held_nanos: int = 0
    deadline_ms: int = 0
    denial: Denial | None = None


@dataclass(frozen=True)
class Pricing:
    """How a settled cost was priced, for the ledger row."""

    model: str
    provider: str
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    price_version: str


@dataclass(frozen=True)
class SettleRequest:
    request_id: str
    actual_nanos: int | None  # None: settle what was held (no hold: the plan's estimate)
    # The current plan: its agent, the counters when there was no hold, the
    # caps for pausing and the fractions of each cap that raise a warning.
    plan: Plan
    now_ms: int
    tags: Mapping[str, str] = field(default_factory=dict)
    pricing: Pricing | None = None  # None: the cost came as an amount

    @property
    def agent_id(self) -> str:
        return self.plan.agent_id


@dataclass(frozen=True)
class SettleResult:
    counted_nanos: int  # what this request added to spend in total
    duplicate: bool = False
    paused: tuple[PauseRecord, ...] = ()  # pauses this settle started


@dataclass(frozen=True)
class AgentState:
    balances: dict[Counter, Balance]
    pauses: list[PauseRecord]

    def balance(self, limit: Limit) -> Balance:
        return self.balances.get(limit.counter, Balance())


@dataclass(frozen=True)
class Claimed:
    """A notice leased to one deliverer."""

    id: str
    notice: Notice
    attempts: int  # deliveries tried, this one included


PlanLookup = Callable[[str], Plan | None]


@dataclass(frozen=True)
class CapChange:
    """Why a reconcile runs: these windows' caps changed in the config. Keys
    are (scope key, window); values (cap before, cap now) in nanodollars,
    None for uncapped. Only the windows named are reconciled."""

    windows: Mapping[tuple[str, str], tuple[int | None, int | None]]

    def of(self, limit: Limit) -> tuple[int | None, int | None] | None:
        return self.windows.get((limit.scope.key, limit.window.value))


class Store(abc.ABC):
    """One backend's implementation of the atomic steps."""

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreError unless the backend answers."""

    @abc.abstractmethod
    async def hold(self, req: HoldRequest) -> HoldResult:
        """Check pauses and every capped window of the plan; hold on all or none.

        Idempotent: a request id already held is allowed again without a
        second hold. Raises RequestConflict for a request id of this agent
        that is settled, released or expired.
        """

    @abc.abstractmethod
    async def settle(self, req: SettleRequest) -> SettleResult:
        """Drop the hold, add the actual cost to every window, record a ledger
        row, pause every window that reached its cap. Idempotent."""

    @abc.abstractmethod
    async def release(self, request_id: str, plan: Plan, now_ms: int) -> bool:
        """Drop a live hold of the plan's agent; False when there is none."""

    @abc.abstractmethod
    async def expire(self, now_ms: int, charge: bool, plan_for: PlanLookup) -> int:
        """Expire holds whose deadline passed: release them, or charge the held
        amount as spent. Returns how many expired."""

    @abc.abstractmethod
    async def pause(self, plan: Plan, reason: str, now_ms: int) -> None:
        """A manual pause of the plan's agent: it never lifts by itself. Writes
        a "paused" notice in the same step."""

    @abc.abstractmethod
    async def resume(self, plan: Plan, now_ms: int) -> bool:
        """Lift every pause of the plan's agent (manual and cap), with a
        "resumed" notice. False if there was none."""

    @abc.abstractmethod
    async def reconcile(self, plan: Plan, now_ms: int, cause: CapChange | None = None) -> list[Notice]:
        """After a config change: pause each current window whose spend is at
        or over its (new) cap, and lift cap pauses whose cap is now above the
        spend (or gone), with their notices. With a ``cause``, only the
        windows it names, and their notices say what changed (extra: cause,
        cap_before_nanos, cap_after_nanos). Returns the notices written."""

    @abc.abstractmethod
    async def report(self, by: str, since_day: str, until_day: str) -> list[tuple[str, int, int]]:
        """The ledger aggregated in the store: (key, cost nanos, calls) for
        ledger rows whose local day is within [since_day, until_day]. ``by``:
        agent, model, day, group, or a tag (feature, route, customer, environment, ...)."""

    @abc.abstractmethod
    async def trim_ledger(self, before_ms: int) -> int:
        """Drop ledger rows settled before ``before_ms`` (retention)."""

    @abc.abstractmethod
    async def lift_lapsed_pauses(self, plan: Plan, now_ms: int) -> list[Notice]:
        """Drop cap pauses of the plan's scopes whose period has ended; a
        "resumed" notice (once per pause) for each scope left with no pause in
        force. Returns the notices written."""

    # -- the outbox -------------------------------------------------------------
    @abc.abstractmethod
    async def add_notice(self, notice: Notice, plan: Plan | None) -> bool:
        """Write a notice unless one with its key exists (then False). ``plan``
        places it next to the agent's data; None for fleet-wide notices."""

    @abc.abstractmethod
    async def claim_notices(self, owner: str, now_ms: int, lease_ms: int, limit: int) -> list[Claimed]:
        """Lease due notices to ``owner``; a lease that runs out frees them again."""

    @abc.abstractmethod
    async def finish_notice(self, claimed: Claimed, outcome: str, now_ms: int, error: str = "") -> None:
        """``outcome``: "sent", "failed" (permanently) or "skipped" (nowhere to send)."""

    @abc.abstractmethod
    async def retry_notice(self, claimed: Claimed, next_ms: int, now_ms: int, error: str) -> None:
        """Deliver again from ``next_ms``."""

    @abc.abstractmethod
    async def events_after(self, cursor: object | None) -> tuple[list[Notice], object]:
        """Notices written after ``cursor`` (None: from now on), and the new cursor."""

    @abc.abstractmethod
    async def outbox_depth(self) -> int:
        """Notices not yet delivered."""

    # -- reads for reports and checks ------------------------------------------------
    @abc.abstractmethod
    async def spent_in(self, plan: Plan, scope: str, window: str, periods: list[str]) -> dict[str, int]:
        """Spend of one scope's counters in the given periods (absent: none)."""

    @abc.abstractmethod
    async def top_models(self, plan: Plan, since_ms: int, limit: int) -> list[tuple[str, int]]:
        """The models behind the agent's settled spend since ``since_ms``, biggest first."""

    @abc.abstractmethod
    async def top_spenders(self, window: str, period: str, plan_for: PlanLookup, limit: int) -> list[tuple[str, int]]:
        """The agents that spent most in the period, biggest first."""

    @abc.abstractmethod
    async def read(self, plan: Plan) -> AgentState:
        """Balances of every counter of the plan and the pauses of its scopes."""

    async def read_many(self, plans: Sequence[Plan]) -> list[AgentState]:
        """``read`` of many agents at once, in the order given: status lists,
        gauges and digests read a page of agents in one go, so a backend
        reads them in a few round trips rather than several per agent."""
        return [await self.read(plan) for plan in plans]

    @abc.abstractmethod
    async def active_agents(self, daily_period: str, monthly_period: str) -> list[str]:
        """Agents with spend or holds in the given periods, or with a pause."""
