"""The values of reconciliation: what a provider reports for a UTC day, what
budgetd's ledger holds for it, and the compared result the store keeps.

No I/O and no imports from the rest of budgetd (the store contract imports
this module). Money from a provider stays a ``Decimal`` of dollars exactly as
it came (never a float); the result holds integer nanodollars.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal

PROVIDERS = ("openai", "anthropic")
PROVIDER_NAMES = {"openai": "OpenAI", "anthropic": "Anthropic"}
TOKEN_KINDS = ("input", "cached_input", "cache_write", "output")


def provider_name(provider: str) -> str:
    """How a provider is named to people: "openai" -> "OpenAI"."""
    return PROVIDER_NAMES.get(provider, provider)


@dataclass(frozen=True)
class Tokens:
    """Token counts by kind, each counted once:
    ``input``: input neither read from nor written to a cache;
    ``cached_input``: input read from the cache;
    ``cache_write``: input written to the cache (Anthropic's 5-minute and
    1-hour writes together);
    ``output``: output tokens, reasoning tokens included."""

    input: int = 0
    cached_input: int = 0
    cache_write: int = 0
    output: int = 0

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(*(getattr(self, k) + getattr(other, k) for k in TOKEN_KINDS))

    def of(self, kind: str) -> int:
        return int(getattr(self, kind))


@dataclass(frozen=True)
class ProviderModelDay:
    """One model's day as the provider reports it. ``cost_usd`` is the sum of
    the cost lines naming the model; ``cost_by_kind_usd`` splits it by
    TOKEN_KINDS where the provider's lines say the kind, anything else under
    "other"."""

    model: str
    requests: int = 0
    tokens: Tokens = Tokens()
    cost_usd: Decimal = Decimal(0)
    cost_by_kind_usd: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderDay:
    """A provider's report of one UTC day (``day``: YYYY-MM-DD), after its
    filters (project / workspace / API key). ``complete``: the day has ended
    (its bucket is closed); a partial day is compared but never called
    agreed. ``unattributed_cost_usd``: cost lines that name no model (tools,
    storage, fine-tuning)."""

    provider: str
    day: str
    models: dict[str, ProviderModelDay]
    complete: bool
    unattributed_cost_usd: Decimal = Decimal(0)


# -- the compared result (what the store keeps) --------------------------------

CLASSIFICATIONS = ("agree", "untracked", "stale_price", "estimates", "timing", "not_at_provider", "unexplained")
STATES = ("ok", "drift", "partial", "error", "missing")  # missing: shown, never stored


@dataclass(frozen=True)
class ReconcileRow:
    """One provider, UTC day and model compared. Costs in nanodollars;
    ``drift_nanos`` = provider - ledger (positive: the bill is higher)."""

    model: str
    classification: str  # CLASSIFICATIONS
    provider_requests: int
    ledger_requests: int
    provider_tokens: Tokens
    ledger_tokens: Tokens
    provider_cost_nanos: int
    ledger_cost_nanos: int
    estimate_nanos: int = 0  # ledger cost settled from estimates (holds, abandoned streams, unpriced)
    estimate_requests: int = 0
    near_midnight_requests: int = 0  # ledger calls within the timing margin of the day's edges
    near_midnight_nanos: int = 0  # and their cost
    past_tolerance: bool = False
    explanation: str = ""
    suggestion: str = ""  # e.g. the prices: override to add

    @property
    def drift_nanos(self) -> int:
        return self.provider_cost_nanos - self.ledger_cost_nanos


@dataclass(frozen=True)
class ReconcileDay:
    """One provider's UTC day, compared (or the error that stopped it).
    ``passes``: the scheduled passes done for the day ("first", "second",
    "today-N" for today's partial runs, N counting today_every_minutes
    from midnight); a pass done is never claimed again.
    ``state``: "ok" (every row within tolerance, day complete), "drift"
    (some row past it), "partial" (the day is not over, or the provider's
    report of it is not complete), "error" (``detail`` says why; rows are
    those of the last successful run, if any)."""

    provider: str
    day: str
    state: str  # STATES
    detail: str
    checked_ms: int  # when this result was made
    rows: tuple[ReconcileRow, ...] = ()
    passes: tuple[str, ...] = ()
    last_success_ms: int | None = None  # the newest run that read the provider in full

    @property
    def provider_cost_nanos(self) -> int:
        return sum(r.provider_cost_nanos for r in self.rows)

    @property
    def ledger_cost_nanos(self) -> int:
        return sum(r.ledger_cost_nanos for r in self.rows)

    @property
    def drift_nanos(self) -> int:
        return self.provider_cost_nanos - self.ledger_cost_nanos

    def with_passes(self, *more: str) -> ReconcileDay:
        return replace(self, passes=tuple(sorted({*self.passes, *more})))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ReconcileDay:
        data = json.loads(text)
        rows = []
        for row in data.pop("rows"):
            row["provider_tokens"] = Tokens(**row["provider_tokens"])
            row["ledger_tokens"] = Tokens(**row["ledger_tokens"])
            rows.append(ReconcileRow(**row))
        return cls(rows=tuple(rows), passes=tuple(data.pop("passes")), **data)
