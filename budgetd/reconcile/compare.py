"""Comparing a provider's day with the ledger's, per model, and saying why
they differ. Pure: no I/O, no clock (docs/reconciliation.md describes each
classification and what to do about it).

The order of the checks is the order of the explanations' certainty: a model
only one side has says the most; then estimates (the ledger knows which of
its rows were not priced from usage); then equal counts with unequal cost (a
price); then counts that differ by no more than the calls near midnight
(timing); what is left is more usage at the provider than budgetd saw
(untracked) or less (not at the provider).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal

from budgetd_client.money import NANOS_PER_USD

from ..notices.messages import usd
from .ledger_side import NO_MODEL, LedgerModelDay, model_key
from .model import TOKEN_KINDS, ProviderDay, ReconcileRow, Tokens, provider_name

# The provider's cost lines that name no model (tools, storage, fine-tuning).
OTHER_COST = "(cost without a model)"
_MTOK = Decimal(1_000_000)

# (model, token kind) -> budgetd's price in dollars per million tokens, None when it has none.
PriceOf = Callable[[str, str], Decimal | None]


@dataclass(frozen=True)
class Tolerance:
    percent: Decimal
    usd: Decimal

    def allows(self, drift_nanos: int, provider_cost_nanos: int) -> bool:
        """Within tolerance unless the difference is more than both the percent
        of the provider's cost and the dollar amount."""
        by_percent = Decimal(abs(provider_cost_nanos)) * self.percent / 100
        return abs(drift_nanos) <= max(by_percent, self.usd * NANOS_PER_USD)


def to_nanos(usd: Decimal) -> int:
    """A provider's dollars in nanodollars: exact, rounded half-even below a nanodollar."""
    return int((usd * NANOS_PER_USD).to_integral_value(ROUND_HALF_EVEN))


@dataclass(frozen=True)
class _ProviderModel:
    """The provider's rows of one model key, merged (snapshots summed)."""

    requests: int
    tokens: Tokens
    cost_usd: Decimal
    cost_by_kind_usd: dict[str, Decimal]


def _merge_provider(day: ProviderDay) -> dict[str, _ProviderModel]:
    merged: dict[str, _ProviderModel] = {}
    for name, m in day.models.items():
        key = model_key(name)
        had = merged.get(key) or _ProviderModel(0, Tokens(), Decimal(0), {})
        kinds = dict(had.cost_by_kind_usd)
        for kind, amount in m.cost_by_kind_usd.items():
            kinds[kind] = kinds.get(kind, Decimal(0)) + amount
        merged[key] = _ProviderModel(had.requests + m.requests, had.tokens + m.tokens, had.cost_usd + m.cost_usd,
                                     kinds)
    if day.unattributed_cost_usd:
        merged[OTHER_COST] = _ProviderModel(0, Tokens(), day.unattributed_cost_usd, {})
    return merged


def compare_day(day: ProviderDay, ledger: dict[str, LedgerModelDay], tolerance: Tolerance,
                price_of: PriceOf, *, requests_known: bool) -> list[ReconcileRow]:
    """One row per model either side has, by model name. ``requests_known``:
    the provider reports request counts (Anthropic's usage report has none:
    its rows are compared on tokens and cost)."""
    provider = _merge_provider(day)
    rows = []
    for model in sorted(set(provider) | {k for k, v in ledger.items() if v.requests or v.cost_nanos}):
        rows.append(_row(day.provider, model, provider.get(model), ledger.get(model) or LedgerModelDay(),
                         tolerance, price_of, requests_known))
    return explain_calls_without_a_model(rows, tolerance)


def _row(provider: str, model: str, p: _ProviderModel | None, ledger: LedgerModelDay, tolerance: Tolerance,
         price_of: PriceOf, requests_known: bool) -> ReconcileRow:
    p_cost = to_nanos(p.cost_usd) if p else 0
    p_tokens = p.tokens if p else Tokens()
    p_requests = p.requests if p else 0
    row = ReconcileRow(
        model=model, classification="", provider_requests=p_requests, ledger_requests=ledger.requests,
        provider_tokens=p_tokens, ledger_tokens=ledger.tokens, provider_cost_nanos=p_cost,
        ledger_cost_nanos=ledger.cost_nanos, estimate_nanos=ledger.estimate_nanos,
        estimate_requests=ledger.estimate_requests)
    row = replace(row, past_tolerance=not tolerance.allows(row.drift_nanos, p_cost))
    who = provider_name(provider)
    same_requests = not requests_known or p_requests == ledger.requests
    drift = row.drift_nanos
    if drift == 0 and p_tokens == ledger.tokens and same_requests:
        return replace(row, classification="agree", explanation="budgetd and the provider agree")
    if not ledger.requests and not ledger.cost_nanos:
        if _timing_explains(row, ledger, requests_known) is False:  # only the neighbours' calls near midnight
            return _timing(row, ledger, edge=False)
        return _untracked(row, who, model, everything=True, requests_known=requests_known)
    if p is None or (not p_cost and p_tokens == Tokens() and not p_requests):
        if ledger.edge_requests and ledger.edge_requests == ledger.requests:
            return _timing(row, ledger, edge=True)
        return replace(row, classification="not_at_provider", explanation=(
            f"budgetd counted {usd(ledger.cost_nanos)} for {ledger.requests:,} calls to {model} that "
            f"{who} has not reported: its report may lag (the day is compared again tomorrow), or the "
            "filters leave out the project or key these calls used"))
    provider_more = _at_least(p_tokens, ledger.tokens) and (not requests_known or p_requests >= ledger.requests)
    if ledger.estimate_requests and provider_more and (not requests_known or p_requests <= ledger.requests) \
            and _estimates_explain(row, ledger):
        return _estimates(row, ledger)
    if p_tokens == ledger.tokens and same_requests:
        return _stale_price(row, who, model, p, ledger, price_of)
    timing = _timing_explains(row, ledger, requests_known)
    if timing is not None:
        return _timing(row, ledger, edge=timing)
    if provider_more and drift > 0:
        return _untracked(row, who, model, everything=False, requests_known=requests_known)
    if _at_least(ledger.tokens, p_tokens) and drift < 0:
        return replace(row, classification="not_at_provider", explanation=(
            f"budgetd counted {usd(-drift)} more for {model} than {who} billed: calls it settled that the "
            "provider did not bill (failed at the provider), or a filter that leaves out a key they used"))
    return replace(row, classification="unexplained", explanation=(
        f"the counts differ both ways (tokens {_token_text(p_tokens)} at {who}, {_token_text(ledger.tokens)} "
        f"in budgetd): look at this model's calls in budgetctl export"))


# An estimated call the provider billed more than this many times the
# dearer of an average priced call and its own estimate is not taken for an
# estimate gone wrong: the difference is then untracked spend (Anthropic
# reports no request counts, so this is what keeps one abandoned stream from
# explaining away a bill of calls made elsewhere).
ESTIMATE_SLACK = 10


def _estimates_explain(row: ReconcileRow, ledger: LedgerModelDay) -> bool:
    """Could the estimated calls alone account for what the provider billed
    beyond budgetd's calls priced from usage?"""
    priced_calls = ledger.requests - ledger.estimate_requests
    priced_nanos = ledger.cost_nanos - ledger.estimate_nanos
    billed_for_estimates = row.provider_cost_nanos - priced_nanos
    typical = max(priced_nanos // priced_calls if priced_calls > 0 else 0,
                  ledger.estimate_nanos // ledger.estimate_requests)
    return billed_for_estimates <= ESTIMATE_SLACK * typical * ledger.estimate_requests


def explain_calls_without_a_model(rows: list[ReconcileRow], tolerance: Tolerance) -> list[ReconcileRow]:
    """Calls budgetd settled without knowing their model (expired holds of
    calls that never reported back, amounts given with no model) are the
    ledger's row NO_MODEL, while the provider bills them under their model,
    whose row then shows more at the provider. When that row and the
    NO_MODEL row agree together, both are estimates, not spend elsewhere."""
    orphan = next((r for r in rows if r.model == NO_MODEL and r.estimate_requests), None)
    if orphan is None:
        return rows
    more = [r for r in rows if r.model not in (NO_MODEL, OTHER_COST) and r.drift_nanos > 0
            and r.classification in ("untracked", "stale_price", "unexplained")]
    together = sum(r.drift_nanos for r in more) + orphan.drift_nanos
    if not more or not tolerance.allows(together, sum(r.provider_cost_nanos for r in more)):
        return rows
    names = ", ".join(r.model for r in more)
    because = (f"{orphan.estimate_requests:,} calls budgetd settled without their model (expired holds of calls "
               f"that never reported back, or amounts given with no model: {usd(orphan.ledger_cost_nanos)}) "
               f"are billed by the provider under {names}; together the difference is {usd(together)}")
    todo = "let calls report back: settle or release every hold, record usage rather than an amount"
    explained = {id(orphan), *(id(r) for r in more)}
    return [replace(r, classification="estimates", past_tolerance=False, explanation=because, suggestion=todo)
            if id(r) in explained else r for r in rows]


def _at_least(a: Tokens, b: Tokens) -> bool:
    return all(a.of(kind) >= b.of(kind) for kind in TOKEN_KINDS)


def _token_text(t: Tokens) -> str:
    return "/".join(f"{t.of(kind):,}" for kind in TOKEN_KINDS)


def _untracked(row: ReconcileRow, who: str, model: str, *, everything: bool, requests_known: bool) -> ReconcileRow:
    drift = row.drift_nanos
    share = f" ({Decimal(drift) * 100 / row.provider_cost_nanos:.1f}% of the bill)" if row.provider_cost_nanos else ""
    if everything:
        what = (f"{row.provider_requests:,} request{'s' if row.provider_requests != 1 else ''}"
                if requests_known and row.provider_requests
                else "usage") + " budgetd never saw"
        if model == OTHER_COST:
            what = "cost lines that name no model (tools, storage, fine-tuning) budgetd does not track"
    elif requests_known and row.provider_requests > row.ledger_requests:
        more = row.provider_requests - row.ledger_requests
        what = f"{more:,} more request{'s' if more != 1 else ''} than budgetd saw"
    else:
        what = "more tokens than budgetd saw"
    return replace(row, classification="untracked", explanation=(
        f"{who} billed {usd(drift)}{share} for {model} for {what}: calls made outside budgetd, or a "
        "key shared with another system"), suggestion=(
        "route those calls through budgetd, or set this provider's api_key_ids / project_ids under "
        "reconcile: to the keys budgetd's agents use"))


def _estimates(row: ReconcileRow, ledger: LedgerModelDay) -> ReconcileRow:
    calls = ledger.estimate_requests
    return replace(row, classification="estimates", explanation=(
        f"{calls:,} calls were settled at an estimate ({usd(ledger.estimate_nanos)}) rather than priced "
        f"from their usage: abandoned streams, expired holds, unpriced models or amounts given by the caller; "
        f"the provider's bill differs from budgetd's by {usd(row.drift_nanos)}"), suggestion=(
        "let calls report their usage: finish or close streams (the wrapper asks for the usage chunk), "
        "call.record(response) rather than record_usd, and price unknown models under prices:"))


def _timing_explains(row: ReconcileRow, ledger: LedgerModelDay, requests_known: bool) -> bool | None:
    """True: the ledger's calls at this day's edges explain a provider that
    counted less (it put them on the next or previous day); False: the
    neighbours' calls near midnight explain a provider that counted more;
    None: neither does."""
    drift = row.drift_nanos
    gap = abs(row.provider_requests - row.ledger_requests)
    if drift < 0 and ledger.edge_requests and -drift <= ledger.edge_nanos and (
            not requests_known or gap <= ledger.edge_requests):
        return True
    if drift > 0 and ledger.beyond_requests and drift <= ledger.beyond_nanos and (
            not requests_known or gap <= ledger.beyond_requests):
        return False
    return None


def _timing(row: ReconcileRow, ledger: LedgerModelDay, *, edge: bool) -> ReconcileRow:
    calls = ledger.edge_requests if edge else ledger.beyond_requests
    nanos = ledger.edge_nanos if edge else ledger.beyond_nanos
    where = "on this day near midnight that the provider counted on the day next to it" if edge else \
        "near midnight on the day next to this one that the provider counted on this one"
    return replace(row, classification="timing", near_midnight_requests=calls, near_midnight_nanos=nanos,
                    explanation=f"{calls:,} calls ({usd(nanos)}) were made {where}",
                    suggestion="nothing to do: the two days together agree")


def _stale_price(row: ReconcileRow, who: str, model: str, p: _ProviderModel, ledger: LedgerModelDay,
                 price_of: PriceOf) -> ReconcileRow:
    """Tokens agree, cost does not: the price budgetd used is not the one billed.
    The implied price of each token kind: from the provider's cost line of
    that kind where it has one, else budgetd's price scaled by the ratio of
    the two costs."""
    ratio = Decimal(row.provider_cost_nanos) / ledger.cost_nanos if ledger.cost_nanos else None
    implied: dict[str, Decimal] = {}
    for kind in TOKEN_KINDS:
        tokens = p.tokens.of(kind)
        line = p.cost_by_kind_usd.get(kind)
        ours = price_of(model, kind)
        if tokens and line is not None:
            implied[kind] = line * _MTOK / tokens
        elif ours is not None and ratio is not None and (tokens or kind in ("input", "output")):
            implied[kind] = ours * ratio
    fields = {"input": "input_usd_per_mtok", "cached_input": "cached_input_usd_per_mtok",
              "cache_write": "cache_write_usd_per_mtok", "output": "output_usd_per_mtok"}
    shown = {fields[k]: _price_text(v) for k, v in implied.items()}
    if "input" in implied and "output" in implied:
        suggestion = f"prices:\n  {model}: {{{', '.join(f'{k}: {v}' for k, v in shown.items())}}}"
    else:
        suggestion = f"add {model} under prices: with the prices {who} bills"
    priced = ", ".join(f"{kind.replace('_', ' ')} ${_price_text(v)}/Mtok" for kind, v in implied.items())
    off = f" ({(ratio - 1) * 100:+.1f}%)" if ratio is not None else ""
    return replace(row, classification="stale_price", explanation=(
        f"the tokens agree but {who} billed {usd(row.provider_cost_nanos)} against budgetd's "
        f"{usd(ledger.cost_nanos)}{off}: budgetd's price for {model} is stale; the bill implies {priced}"),
        suggestion=suggestion)


def _price_text(usd_per_mtok: Decimal) -> str:
    text = f"{usd_per_mtok.quantize(Decimal('0.000001'), ROUND_HALF_EVEN):f}".rstrip("0").rstrip(".")
    return text or "0"
