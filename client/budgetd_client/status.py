"""What ``Budget.status`` returns: plain frozen dataclasses in Decimal dollars
(which print plainly: ``50``, ``0.000000001``, never ``5E+1``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class WindowStatus:
    window: str  # "daily" or "monthly"
    period: str  # "2026-11-22" or "2026-11"
    spent_usd: Decimal
    reserved_usd: Decimal
    cap_usd: Decimal | None  # None: no cap
    remaining_usd: Decimal | None  # None: no cap
    starts_at: datetime
    resets_at: datetime


@dataclass(frozen=True)
class GroupStatus:
    name: str
    daily: WindowStatus
    monthly: WindowStatus


@dataclass(frozen=True)
class AgentStatus:
    agent_id: str
    paused: bool
    pause_reason: str | None  # None when not paused (as pause_kind)
    pause_kind: str | None  # "manual", "cap"; None when not paused
    paused_by: str | None  # "agent:NAME" or "group:NAME" when paused
    resumes_at: datetime | None  # when a cap pause lifts by itself
    daily: WindowStatus
    monthly: WindowStatus
    groups: tuple[GroupStatus, ...] = ()
    # Where its caps come from: "configured" (its exact id is in the config),
    # "pattern:GLOB" (an agents: pattern matched it) or "defaults" (nothing
    # in the config names it: a new agent, or a typo in its id).
    budget_source: str = ""
    # Whose status: "agent:NAME", or a budgeted tag value ("customer:acme",
    # from status(tag=...): daily and monthly are its windows, agent_id is "").
    scope: str = ""


@dataclass(frozen=True)
class Event:
    """Something that happened to an agent, from ``budget.watch(agent_id)``.

    ``kind="reconnected"`` is the client's own: the stream was lost (budgetd
    restarted) and is back; events in between may have been missed, and
    ``status`` is the agent's status read on reconnecting (None otherwise).
    """

    kind: str  # "paused", "resumed", "warning", "anomaly", or "reconnected"
    agent_id: str
    scope: str  # "agent:NAME" or "group:NAME"
    window: str  # "daily", "monthly", or "" (manual pause or resume)
    period: str
    spent_usd: Decimal
    cap_usd: Decimal | None
    reason: str
    at: datetime | None
    status: AgentStatus | None = None  # only on "reconnected"


@dataclass(frozen=True)
class ReportRow:
    key: str
    cost_usd: Decimal  # spend
    calls: int  # requests
    avg_cost_usd: Decimal = Decimal(0)  # spend per request, to the nanodollar
    cache_hit_rate: Decimal | None = None  # cached input / input tokens (None: no input tokens)
    p95_input_tokens: int | None = None  # nearest rank, over the calls priced from token counts
    input_tokens: int = 0  # over the calls priced from token counts
    cached_input_tokens: int = 0
    priced_calls: int = 0  # the calls priced from token counts (the others carry none)


@dataclass(frozen=True)
class Report:
    by: str
    since: str
    until: str
    rows: tuple[ReportRow, ...]  # biggest spend first; with top, only that many
    total_usd: Decimal  # of every row, shown or not
    total: ReportRow | None = None  # every row summed (key "TOTAL")
    rows_in_all: int = 0  # how many rows there are, shown or not


@dataclass(frozen=True)
class ConfigInfo:
    generation: int
    loaded_at: datetime | None
    source: str
    last_error: str
    last_error_at: datetime | None


@dataclass(frozen=True)
class ReconciledModel:
    """One provider, UTC day and model: the provider's report against budgetd's ledger."""

    model: str
    classification: str  # agree, untracked, stale_price, estimates, timing, not_at_provider, unexplained
    provider_requests: int
    ledger_requests: int
    provider_tokens: dict[str, int]  # input, cached_input, cache_write, output (each counted once)
    ledger_tokens: dict[str, int]
    provider_cost_usd: Decimal
    ledger_cost_usd: Decimal
    drift_usd: Decimal  # provider - ledger
    estimate_usd: Decimal  # of the ledger's cost, settled from estimates
    estimate_requests: int
    past_tolerance: bool
    explanation: str
    suggestion: str


@dataclass(frozen=True)
class ReconciledDay:
    provider: str
    day: str  # UTC
    state: str  # ok, drift, partial, error
    detail: str
    checked_at: datetime | None
    last_success_at: datetime | None
    rows: tuple[ReconciledModel, ...]
    passes: tuple[str, ...]

    @property
    def drift_usd(self) -> Decimal:
        return sum((r.drift_usd for r in self.rows), Decimal(0))


@dataclass(frozen=True)
class ReconcileStatus:
    provider: str
    state: str  # ok, drift, partial, error, not run
    detail: str  # what the newest run found, or why it failed ("OpenAI: 403 — ...")
    last_attempt_at: datetime | None
    last_success_at: datetime | None


@dataclass(frozen=True)
class Reconciliation:
    since: str
    until: str
    days: tuple[ReconciledDay, ...]  # by provider, then day
    providers: tuple[ReconcileStatus, ...]  # one per provider configured
