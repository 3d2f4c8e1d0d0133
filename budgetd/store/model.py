"""The values a store takes and gives (requests, results, balances, pauses)
and its errors: what crosses the contracts of base.py, the same on every
backend."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    # A cap refusal that only other calls' reservations cause: with them all
    # released the hold would fit every window (spent + amount <= cap). Such
    # a hold may wait for headroom; one refused by spend alone may not.
    waitable: bool = False


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
    waited_ms: int = 0  # how long the application held the hold back for headroom (app/headroom.py)


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
