"""The comparison of one provider's day with the ledger's, per model: each
classification from the counts that call for it, the tolerance, and the
schedule of passes. Pure functions: the end-to-end tests
(tests/e2e/test_reconcile_e2e.py) show the same through the daemon."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from budgetd.reconcile.compare import OTHER_COST, Tolerance, compare_day, to_nanos
from budgetd.reconcile.ledger_side import LedgerModelDay
from budgetd.reconcile.model import ProviderDay, ProviderModelDay, Tokens
from budgetd.reconcile.schedule import due_passes

TOLERANCE = Tolerance(Decimal(1), Decimal("0.01"))  # past 1% and past one cent
GPT4O = {"input": Decimal("2.5"), "cached_input": Decimal("1.25"), "cache_write": Decimal("2.5"),
         "output": Decimal(10)}


def price_of(model: str, kind: str) -> Decimal | None:
    return GPT4O[kind] if model == "gpt-4o" else None


def ledger_row(calls: int, tokens: Tokens, cost_usd: str, *, estimated: int = 0, estimate_usd: str = "0",
               edge: int = 0, edge_usd: str = "0", beyond: int = 0, beyond_usd: str = "0") -> LedgerModelDay:
    return LedgerModelDay(calls, tokens, to_nanos(Decimal(cost_usd)), estimated, to_nanos(Decimal(estimate_usd)),
                          edge, to_nanos(Decimal(edge_usd)), beyond, to_nanos(Decimal(beyond_usd)))


def provider_day(model: str, requests: int, tokens: Tokens, cost_usd: str, **by_kind: str) -> ProviderDay:
    kinds = {kind: Decimal(usd) for kind, usd in by_kind.items()}
    return ProviderDay("openai", "2026-12-02", {model: ProviderModelDay(model, requests, tokens, Decimal(cost_usd),
                                                                        kinds)}, complete=True)


def one(day: ProviderDay, ledger: dict[str, LedgerModelDay], *, requests_known: bool = True):
    rows = compare_day(day, ledger, TOLERANCE, price_of, requests_known=requests_known)
    assert len(rows) == 1, rows
    return rows[0]


TOKENS = Tokens(input=100_000, cached_input=50_000, output=20_000)  # $0.25 + $0.0625 + $0.20 at gpt-4o prices


def test_equal_counts_and_cost_agree_with_a_difference_of_exactly_zero():
    row = one(provider_day("gpt-4o-2024-08-06", 40, TOKENS, "0.5125"), {"gpt-4o": ledger_row(40, TOKENS, "0.5125")})
    assert (row.model, row.classification, row.drift_nanos, row.past_tolerance) == ("gpt-4o", "agree", 0, False)


def test_usage_the_ledger_never_saw_is_untracked_spend_with_its_share_of_the_bill():
    more = Tokens(input=103_000, cached_input=51_500, output=20_600)
    row = one(provider_day("gpt-4o", 42, more, "0.527875"), {"gpt-4o": ledger_row(40, TOKENS, "0.5125")})
    assert row.classification == "untracked" and row.past_tolerance
    assert row.drift_nanos == to_nanos(Decimal("0.015375"))
    assert "2 more requests" in row.explanation and "2.9% of the bill" in row.explanation
    assert "api_key_ids" in row.suggestion


def test_a_model_only_the_provider_has_is_untracked_and_one_only_the_ledger_has_is_not_at_the_provider():
    rows = compare_day(provider_day("o3", 5, TOKENS, "0.3"), {"gpt-4o": ledger_row(40, TOKENS, "0.5125")},
                       TOLERANCE, price_of, requests_known=True)
    by_model = {r.model: r for r in rows}
    assert by_model["o3"].classification == "untracked" and "5 requests budgetd never saw" in by_model["o3"].explanation
    assert by_model["gpt-4o"].classification == "not_at_provider"
    assert by_model["gpt-4o"].drift_nanos == -to_nanos(Decimal("0.5125"))


def test_equal_tokens_with_a_dearer_bill_is_a_stale_price_naming_the_implied_price_and_the_override():
    # The bill: gpt-4o at $3 input, $1.50 cached, $12 output (20% over budgetd's).
    row = one(provider_day("gpt-4o", 40, TOKENS, "0.615", input="0.3", cached_input="0.075", output="0.24"),
              {"gpt-4o": ledger_row(40, TOKENS, "0.5125")})
    assert row.classification == "stale_price" and row.past_tolerance
    assert "+20.0%" in row.explanation and "input $3/Mtok" in row.explanation
    assert row.suggestion == ("prices:\n  gpt-4o: {input_usd_per_mtok: 3, cached_input_usd_per_mtok: 1.5, "
                              "output_usd_per_mtok: 12}")


def test_without_cost_by_kind_the_stale_price_scales_budgetds_price_by_the_ratio():
    row = one(provider_day("gpt-4o", 40, TOKENS, "0.615"), {"gpt-4o": ledger_row(40, TOKENS, "0.5125")})
    assert row.classification == "stale_price"
    assert "input_usd_per_mtok: 3," in row.suggestion and "output_usd_per_mtok: 12}" in row.suggestion


def test_calls_settled_from_estimates_explain_more_tokens_at_the_provider_for_the_same_requests():
    # 10 of 40 calls were abandoned streams: settled at $0.05 each, with no tokens.
    priced = Tokens(input=75_000, cached_input=37_500, output=15_000)
    row = one(provider_day("gpt-4o", 40, TOKENS, "0.5125"),
              {"gpt-4o": ledger_row(40, priced, "0.884375", estimated=10, estimate_usd="0.5")})
    assert row.classification == "estimates" and row.estimate_requests == 10
    assert "10 calls were settled at an estimate ($0.50)" in row.explanation


def test_calls_near_midnight_explain_a_difference_both_ways():
    # budgetd counted 2 calls at 23:59 that the provider put on the next day...
    edge = one(provider_day("gpt-4o", 38, Tokens(95_000, 47_500, 0, 19_000), "0.486875"),
               {"gpt-4o": ledger_row(40, TOKENS, "0.5125", edge=2, edge_usd="0.025625")})
    assert edge.classification == "timing" and edge.near_midnight_requests == 2
    # ...and on the next day the provider has 2 calls that budgetd counted the day before.
    beyond = one(provider_day("gpt-4o", 42, Tokens(105_000, 52_500, 0, 21_000), "0.538125"),
                 {"gpt-4o": ledger_row(40, TOKENS, "0.5125", beyond=2, beyond_usd="0.025625")})
    assert beyond.classification == "timing"


def test_anthropic_rows_are_compared_on_tokens_and_cost_alone():
    day = ProviderDay("anthropic", "2026-12-02", {"claude-sonnet-4-20250514": ProviderModelDay(
        "claude-sonnet-4-20250514", 0, TOKENS, Decimal("0.6"))}, complete=True)
    row = one(day, {"claude-sonnet-4": ledger_row(40, TOKENS, "0.6")}, requests_known=False)
    assert (row.model, row.classification, row.drift_nanos) == ("claude-sonnet-4", "agree", 0)


def test_cost_lines_naming_no_model_are_a_row_of_their_own():
    day = ProviderDay("openai", "2026-12-02", {}, complete=True, unattributed_cost_usd=Decimal("2.50"))
    row = one(day, {})
    assert (row.model, row.classification) == (OTHER_COST, "untracked")


def test_the_tolerance_is_passed_only_past_both_the_percent_and_the_dollars():
    tolerance = Tolerance(Decimal(1), Decimal(1))
    assert tolerance.allows(to_nanos(Decimal("0.99")), to_nanos(Decimal(10)))  # 9.9% but under $1
    assert tolerance.allows(to_nanos(Decimal("5")), to_nanos(Decimal(1000)))  # $5 but 0.5%
    assert not tolerance.allows(to_nanos(Decimal("15")), to_nanos(Decimal(1000)))  # $15 and 1.5%
    assert not tolerance.allows(-to_nanos(Decimal("15")), to_nanos(Decimal(1000)))


def test_provider_dollars_become_nanodollars_exactly():
    assert to_nanos(Decimal("0.000000001")) == 1
    assert to_nanos(Decimal("123456.123456789")) == 123_456_123_456_789
    assert to_nanos(Decimal("0.0000000015")) == 2 and to_nanos(Decimal("0.0000000025")) == 2  # half-even


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def test_passes_fall_due_at_the_configured_time_for_yesterday_and_the_day_before():
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=3)
    day = lambda back: (today - timedelta(days=back)).date().isoformat()  # noqa: E731
    before = due_passes(ms(today.replace(hour=1, minute=59)), "02:00", 60)
    assert [(p.day, p.name) for p in before] == [(day(2), "first"), (day(0), "today-1")]
    after = due_passes(ms(today.replace(hour=2)), "02:00", 60)
    assert [(p.day, p.name, p.also_done) for p in after] == [
        (day(2), "second", ("first",)), (day(1), "first", ()), (day(0), "today-2", ())]
    assert [p.name for p in due_passes(ms(today.replace(hour=2)), "02:00", 0)] == ["second", "first"]
    assert due_passes(ms(today.replace(hour=13, minute=31)), "02:00", 30)[-1].name == "today-27"


def test_one_estimate_does_not_explain_away_a_bill_of_calls_made_elsewhere():
    # Anthropic (no request counts): one abandoned stream at $0.01, and $500 billed from another system.
    day = ProviderDay("anthropic", "2026-12-02", {"claude-sonnet-4": ProviderModelDay(
        "claude-sonnet-4", 0, Tokens(input=100_000_000, output=10_000_000), Decimal("500.3"))}, complete=True)
    row = one(day, {"claude-sonnet-4": ledger_row(41, Tokens(input=100_000, output=10_000), "0.31",
                                                  estimated=1, estimate_usd="0.01")}, requests_known=False)
    assert row.classification == "untracked" and row.past_tolerance


def test_a_model_budgetd_saw_only_on_the_day_before_near_midnight_is_timing():
    row = one(provider_day("gpt-4o", 3, TOKENS, "0.5125"),
              {"gpt-4o": ledger_row(0, Tokens(), "0", beyond=3, beyond_usd="0.5125")})
    assert row.classification == "timing" and row.near_midnight_requests == 3


def test_calls_settled_without_their_model_explain_the_models_the_provider_billed_them_under():
    # 4 holds expired (charged $0.60 with no model); the provider billed those 4 calls as gpt-4o ($0.5125).
    rows = compare_day(provider_day("gpt-4o", 44, Tokens(input=200_000, cached_input=100_000, output=40_000),
                                    "1.025"),
                       {"gpt-4o": ledger_row(40, TOKENS, "0.5125"),
                        "(no model)": ledger_row(4, Tokens(), "0.6", estimated=4, estimate_usd="0.6")},
                       Tolerance(Decimal(1), Decimal("0.2")), price_of, requests_known=True)
    by_model = {r.model: r for r in rows}
    assert {r.classification for r in rows} == {"estimates"} and not any(r.past_tolerance for r in rows)
    assert "4 calls budgetd settled without their model" in by_model["gpt-4o"].explanation
    assert by_model["(no model)"].drift_nanos == -to_nanos(Decimal("0.6"))
