"""budgetd's side of a reconciliation: the ledger's calls of one UTC day,
per provider and model, counted the way the providers count them.

The providers' buckets are UTC days; the ledger's ``day`` is the local day
of the configured zone. So rows are read by the local days that overlap the
UTC day and kept by their own timestamp: the time the call was held (just
before its request went out; the settle may come minutes later, after a
long stream), or the settle's time for a call recorded without a hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from ..pricing import base_model
from ..store.base import Ledger
from .model import Tokens

DAY_MS = 86_400_000
# A provider's name for itself in genai-prices, to the reconciled provider's.
_PROVIDER_IDS = {"openai": "openai", "azure": "openai", "anthropic": "anthropic"}
NO_MODEL = "(no model)"


@dataclass
class LedgerModelDay:
    """One model's calls of the day in the ledger (mutable while it is summed)."""

    requests: int = 0  # calls: distinct (agent, request id), failed calls left out
    tokens: Tokens = Tokens()  # of the calls priced from usage
    cost_nanos: int = 0
    estimate_requests: int = 0  # calls settled from an estimate, not usage
    estimate_nanos: int = 0
    # Calls of this day within the timing margin of its edges (the provider
    # may have counted them on the day next to it)...
    edge_requests: int = 0
    edge_nanos: int = 0
    # ...and calls of the days next to it within the margin (which it may
    # have counted on this one).
    beyond_requests: int = 0
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


def provider_of(priced_by: str, model: str, configured: tuple[str, ...]) -> str:
    """Which provider a ledger row's call went to: the one its price named,
    else one its model's name gives away, else the only one configured
    (else "": left out, and counted as unattributed)."""
    if priced_by in _PROVIDER_IDS:
        return _PROVIDER_IDS[priced_by]
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
    """The day's calls by provider and model, summed in the store
    (``Ledger.usage_sums``) over five slices of time: the margin before the
    day, its first margin, the rest, its last margin, the margin after."""
    start_ms, end_ms = day_bounds_ms(day)
    margin = near_midnight_ms
    bounds = [start_ms - margin, start_ms, start_ms + margin, end_ms - margin, end_ms, end_ms + margin]
    since, until = local_days_over(bounds[0], bounds[-1], zone)
    found = LedgerDay()
    for part in await ledger.usage_sums(bounds, since, until):
        provider = provider_of(part.provider, part.model, configured)
        if not provider:
            if part.zone in (1, 2, 3):
                found.unattributed_nanos += part.cost_nanos
            continue
        row = found.models.setdefault(provider, {}).setdefault(model_key(part.model), LedgerModelDay())
        if part.zone in (0, 4):  # a neighbour's calls near the edge
            row.beyond_requests += part.calls
            row.beyond_nanos += part.cost_nanos
            continue
        row.requests += part.calls
        row.cost_nanos += part.cost_nanos
        writes = part.cache_write_tokens if provider == "anthropic" else 0  # OpenAI counts them as input
        row.tokens = row.tokens + Tokens(
            part.input_tokens - part.cached_input_tokens - writes, part.cached_input_tokens, writes,
            part.output_tokens)
        row.estimate_requests += part.estimate_calls
        row.estimate_nanos += part.estimate_nanos
        if part.zone != 2:
            row.edge_requests += part.calls
            row.edge_nanos += part.cost_nanos
    return found
