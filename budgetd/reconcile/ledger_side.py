"""budgetd's side of a reconciliation: the ledger's calls of one UTC day,
per provider and model, counted the way the providers count them.

The providers' buckets are UTC days; the ledger's ``day`` is the local day
of the configured zone. So rows are read by the local days that overlap the
UTC day and kept by their own timestamp: the time the call was held (just
before its request went out; the settle may come minutes later, after a
long stream), or the settle's time for a call recorded without a hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from ..pricing import base_model
from ..store.base import Ledger
from ..store.model import CostEvent
from .model import Tokens

DAY_MS = 86_400_000
# A provider's name for itself in genai-prices, to the reconciled provider's.
_PROVIDER_IDS = {"openai": "openai", "azure": "openai", "anthropic": "anthropic"}
NO_MODEL = "(no model)"


@dataclass
class LedgerModelDay:
    """One model's calls of the day in the ledger (mutable while it is summed)."""

    requests: set[tuple[str, str]] = field(default_factory=set)  # (agent, request id)
    tokens: Tokens = Tokens()
    cost_nanos: int = 0
    estimate_requests: set[tuple[str, str]] = field(default_factory=set)
    estimate_nanos: int = 0
    # Calls of this day within the timing margin of its edges (the provider
    # may have counted them on the day next to it)...
    edge_requests: set[tuple[str, str]] = field(default_factory=set)
    edge_nanos: int = 0
    # ...and calls of the days next to it within the margin (which it may
    # have counted on this one).
    beyond_requests: set[tuple[str, str]] = field(default_factory=set)
    beyond_nanos: int = 0


def day_bounds_ms(day: str) -> tuple[int, int]:
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC)
    start_ms = int(start.timestamp()) * 1000
    return start_ms, start_ms + DAY_MS


def local_days_over(start_ms: int, end_ms: int, zone: ZoneInfo) -> tuple[str, str]:
    """The local days (the ledger's ``day`` column) that overlap [start_ms, end_ms)."""
    first = datetime.fromtimestamp(start_ms / 1000, UTC).astimezone(zone).date()
    last = datetime.fromtimestamp((end_ms - 1) / 1000, UTC).astimezone(zone).date()
    return first.isoformat(), last.isoformat()


def model_key(model: str) -> str:
    """Both sides' model names without their snapshot date (``gpt-4o-2024-08-06``
    and ``gpt-4o`` are one row): the ledger names what the response said, the
    provider what it billed, and the two disagree on snapshots."""
    return base_model(model) if model else NO_MODEL


def provider_of(event: CostEvent, configured: tuple[str, ...]) -> str:
    """Which provider a ledger row's call went to: the one its price named,
    else one its model's name gives away, else the only one configured
    (else "": left out, and counted as unattributed)."""
    if event.provider in _PROVIDER_IDS:
        return _PROVIDER_IDS[event.provider]
    model = event.model or event.model_requested
    if model.startswith("claude"):
        return "anthropic"
    if model.startswith(("gpt-", "o1", "o3", "o4", "chatgpt", "text-embedding", "davinci", "babbage")):
        return "openai"
    return configured[0] if len(configured) == 1 else ""


class LedgerDay:
    """The ledger's calls of one UTC day, by provider and model."""

    def __init__(self) -> None:
        self.models: dict[str, dict[str, LedgerModelDay]] = {}
        self.unattributed_nanos = 0  # rows no provider could be told for

    def of(self, provider: str) -> dict[str, LedgerModelDay]:
        return self.models.get(provider, {})


async def read_ledger_day(ledger: Ledger, day: str, zone: ZoneInfo, configured: tuple[str, ...],
                          near_midnight_ms: int) -> LedgerDay:
    start_ms, end_ms = day_bounds_ms(day)
    since, until = local_days_over(start_ms - near_midnight_ms, end_ms + near_midnight_ms, zone)
    found = LedgerDay()
    async for event in ledger.cost_events(since, until):
        when = event.held_ms if event.held_ms is not None else event.at_ms
        provider = provider_of(event, configured)
        if not start_ms - near_midnight_ms <= when < end_ms + near_midnight_ms:
            continue
        if not start_ms <= when < end_ms:  # a neighbour's call near the edge
            if provider and event.kind != "release":
                row = found.models.setdefault(provider, {}).setdefault(model_key(event.model or event.model_requested),
                                                                       LedgerModelDay())
                row.beyond_requests.add((event.agent_id, event.request_id))
                row.beyond_nanos += event.cost_nanos
            continue
        if not provider:
            found.unattributed_nanos += event.cost_nanos
            continue
        _add(found.models.setdefault(provider, {}), event,
             at_edge=when - start_ms < near_midnight_ms or end_ms - when <= near_midnight_ms)
    return found


def _add(models: dict[str, LedgerModelDay], event: CostEvent, *, at_edge: bool) -> None:
    call = (event.agent_id, event.request_id)
    row = models.setdefault(model_key(event.model or event.model_requested), LedgerModelDay())
    row.cost_nanos += event.cost_nanos
    if event.kind != "release":  # a failed call (recorded by its release) is no model request
        row.requests.add(call)
    if event.cost_source == "usage":
        uncached = event.input_tokens - event.cached_input_tokens - event.cache_write_tokens
        row.tokens = row.tokens + Tokens(uncached, event.cached_input_tokens, event.cache_write_tokens,
                                         event.output_tokens)
    elif event.kind != "release":
        # Held amounts, charged expiries, unpriced usage and caller amounts:
        # a cost with no token counts behind it.
        row.estimate_requests.add(call)
        row.estimate_nanos += event.cost_nanos
    if at_edge and event.kind != "release":
        row.edge_requests.add(call)
        row.edge_nanos += event.cost_nanos

