"""The values a store takes and gives (requests, results, balances, pauses)
and its errors: what crosses the contracts of base.py, the same on every
backend."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
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
    cache_write_tokens: int = 0


@dataclass(frozen=True)
class CallFacts:
    """What the caller says of a call besides its cost, for its cost event."""

    model_requested: str = ""
    latency_ms: int | None = None  # the model call's, measured by the client
    error_code: str = ""  # a failed call (record_failure)


COST_SOURCES = ("usage", "caller", "estimate")


def cost_source(actual_nanos: int | None, pricing: Pricing | None) -> str:
    """Where a settle's cost came from: "usage" (priced from usage),
    "caller" (an amount the caller gave) or "estimate" (what was held, or
    the plan's estimate; a usage that could not be priced settles so too)."""
    if actual_nanos is None:
        return "estimate"
    return "usage" if pricing is not None else "caller"


@dataclass(frozen=True)
class CostEvent:
    """One ledger row, whole: what the export writes (docs/export.md)."""

    request_id: str
    kind: str  # "settle", "expiry" (a charged expiry) or "release" (a failed call, recorded)
    at_ms: int  # when the row was written
    held_ms: int | None  # when the call was held (None: no hold)
    day: str  # the local day charged
    agent_id: str
    groups: tuple[str, ...]
    tags: Mapping[str, str]
    cost_nanos: int  # what this row added to spend
    cost_source: str  # COST_SOURCES
    model_requested: str = ""
    model: str = ""
    provider: str = ""
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    price_version: str = ""
    latency_ms: int | None = None
    error_code: str = ""

    @classmethod
    def of(cls, request_id: str, kind: str, at_ms: int, held_ms: int | None, day: str | None, agent_id: str,
           groups, tags: Mapping[str, str], cost_nanos: int, source: str, pricing: Pricing | None,
           facts: CallFacts | None) -> CostEvent:
        """A row from what a step knows."""
        event = cls(request_id, kind, at_ms, held_ms, day or "", agent_id, tuple(groups), dict(tags), cost_nanos,
                    source)
        if pricing is not None:
            event = replace(event, model=pricing.model, provider=pricing.provider, input_tokens=pricing.input_tokens,
                            cached_input_tokens=pricing.cached_input_tokens,
                            cache_write_tokens=pricing.cache_write_tokens, output_tokens=pricing.output_tokens,
                            reasoning_tokens=pricing.reasoning_tokens, price_version=pricing.price_version)
        if facts is not None:
            event = replace(event, model_requested=facts.model_requested, latency_ms=facts.latency_ms,
                            error_code=facts.error_code)
        return event


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
    facts: CallFacts | None = None  # for the cost event

    @property
    def agent_id(self) -> str:
        return self.plan.agent_id


@dataclass(frozen=True)
class SettleResult:
    counted_nanos: int  # what this request added to spend in total
    duplicate: bool = False
    paused: tuple[PauseRecord, ...] = ()  # pauses this settle started
    event: CostEvent | None = None  # the ledger row written (None: a duplicate)


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


@dataclass(frozen=True)
class AgentActivity:
    """An agent's calls on a range of local days, for the dashboard's lists."""

    agent_id: str
    calls: int  # distinct request ids of the agent with a ledger row on these days
    last_ms: int  # at_ms (settled_ms) of the agent's newest ledger row on these days


@dataclass(frozen=True)
class UsageSum:
    """The ledger's calls of one provider, model and slice of time, summed
    (for reconciliation). ``model``: the row's priced model, else the model
    requested, else "". ``zone``: the slice, i where bounds[i] <= the call's
    time < bounds[i + 1]. Calls are distinct (agent, request id) of rows that
    are not a failed call's release; tokens are those of rows priced from
    usage; ``estimate_*``: rows not priced from usage (held amounts, expiries,
    unpriced usage, caller amounts)."""

    provider: str
    model: str
    zone: int
    calls: int = 0
    cost_nanos: int = 0
    input_tokens: int = 0  # cached and cache-write tokens included (the ledger's counting)
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    estimate_calls: int = 0
    estimate_nanos: int = 0


NOTICE_STATES = ("pending", "sent", "failed", "skipped")


@dataclass(frozen=True)
class QueuedNotice:
    """A notice as the outbox holds it, for the dashboard's notices page."""

    notice: Notice
    state: str  # NOTICE_STATES
    attempts: int  # deliveries tried
    last_error: str  # the last delivery error ("" when none)
    done_ms: int | None  # when it was finished (None: pending)


PlanLookup = Callable[[str], Plan | None]


@dataclass(frozen=True)
class CapChange:
    """Why a reconcile runs: these windows' caps changed in the config. Keys
    are (scope key, window); values (cap before, cap now) in nanodollars,
    None for uncapped. Only the windows named are reconciled."""

    windows: Mapping[tuple[str, str], tuple[int | None, int | None]]

    def of(self, limit: Limit) -> tuple[int | None, int | None] | None:
        return self.windows.get((limit.scope.key, limit.window.value))
