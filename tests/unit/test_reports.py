"""The one place reports and per-tag spikes are computed (budgetd/reports.py):
nearest-rank p95, rates and averages rounded half-even, the order, the top
N and a total over every row; and the month shorthand of the client."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from budgetd_client._core import month_days, report_request

from budgetd.reports import LedgerEntry, ReportPart, TagHourSpend, p95, parts_of, spikes, summarize


def test_p95_is_the_nearest_rank():
    assert p95({}) is None
    assert p95({7: 1}) == 7
    values = {v: 1 for v in range(1, 21)}  # 20 values: rank ceil(19.0) = 19
    assert p95(values) == 19
    values = {v: 1 for v in range(1, 22)}  # 21 values: rank ceil(19.95) = 20
    assert p95(values) == 20
    assert p95({10: 95, 1000: 5}) == 10 and p95({10: 94, 1000: 6}) == 1000


def test_a_calls_rows_are_one_request_and_rows_without_tokens_count_spend_only():
    parts = parts_of([
        LedgerEntry(["acme"], ("a", "r1"), 700),  # an expiry's charge: no tokens
        LedgerEntry(["acme"], ("a", "r1"), 300, 1000, 250),  # its late settle
        LedgerEntry(["acme"], ("b", "r1"), 5, 1000, 0),  # the same request id of another agent
        LedgerEntry(["acme"], ("a", "r2"), 2),  # recorded as an amount
        LedgerEntry(["globex", "initech"], ("a", "r3"), 11, 10, 10),  # a group report: under both groups
    ])
    assert parts == [ReportPart("acme", 1000, 2, 1005, 250), ReportPart("acme", None, 1, 2, 0),
                     ReportPart("globex", 10, 1, 11, 10), ReportPart("initech", 10, 1, 11, 10)]
    summary = summarize(parts)
    acme = summary.rows[0]
    assert (acme.key, acme.cost_nanos, acme.calls, acme.priced_calls, acme.input_tokens) == ("acme", 1007, 3, 2, 2000)
    assert acme.avg_cost_nanos == 336  # 1007 / 3 = 335.67
    assert acme.cache_hit_rate == Decimal("0.125") and acme.p95_input_tokens == 1000
    assert [r.key for r in summary.rows] == ["acme", "globex", "initech"]  # by spend, then by key
    assert summary.total.cost_nanos == 1029 and summary.total.calls == 5


def test_top_keeps_the_biggest_rows_and_the_total_covers_every_row():
    parts = [ReportPart(f"k{i}", None, 1, cost) for i, cost in enumerate([5, 50, 500, 50])]
    top = summarize(parts, top=2)
    assert [(r.key, r.cost_nanos) for r in top.rows] == [("k2", 500), ("k1", 50)]
    assert (top.total.cost_nanos, top.total.calls, top.rows_in_all) == (605, 4, 4)
    assert top.total.p95_input_tokens is None and top.total.cache_hit_rate is None
    assert len(summarize(parts, top=0).rows) == 4 and len(summarize(parts, top=9).rows) == 4


def test_rates_and_averages_round_half_even_exactly():
    assert summarize([ReportPart("k", 3, 1, 5, 1)]).rows[0].cache_hit_rate == Decimal("0.333333")
    assert summarize([ReportPart("k", 3, 1, 5, 2)]).rows[0].cache_hit_rate == Decimal("0.666667")
    # 4 / 8,000,000 = 0.0000005 and 12 / 8,000,000 = 0.0000015: halves, to the even
    assert str(summarize([ReportPart("k", 8_000_000, 1, 5, 4)]).rows[0].cache_hit_rate) == "0.000000"
    assert str(summarize([ReportPart("k", 8_000_000, 1, 5, 12)]).rows[0].cache_hit_rate) == "0.000002"
    assert str(summarize([ReportPart("k", 8_000_000, 1, 5, 5)]).rows[0].cache_hit_rate) == "0.000001"
    assert str(summarize([ReportPart("k", 4, 1, 5, 4)]).rows[0].cache_hit_rate) == "1.000000"
    assert str(summarize([ReportPart("k", 4, 1, 5, 0)]).rows[0].cache_hit_rate) == "0.000000"
    assert summarize([ReportPart("k", None, 2, 5)]).rows[0].avg_cost_nanos == 2  # 2.5 to even
    assert summarize([ReportPart("k", None, 2, 7)]).rows[0].avg_cost_nanos == 4  # 3.5 to even


def test_a_spike_is_over_the_floor_and_over_factor_times_the_hourly_average():
    history = [TagHourSpend("feature", v, h, 100) for v in ("chat", "search", "new") for h in range(0, 168, 2)]
    current = [TagHourSpend("feature", "chat", 168, 251), TagHourSpend("feature", "search", 168, 250),
               TagHourSpend("customer", "fresh", 168, 1000), TagHourSpend("customer", "small", 168, 40)]
    found = spikes(history + current, 168, Decimal("5"), floor_nanos=50)
    assert [(s.tag, s.value, s.spent_nanos, s.ratio) for s in found] == [
        ("customer", "fresh", 1000, "∞"),  # no history at all
        ("feature", "chat", 251, "5.0")]  # 251 > 5 x 50; search's 250 is not over it
    assert found[1].average_nanos == Fraction(50)


def test_month_is_its_first_to_its_last_day():
    assert month_days("2026-11") == ("2026-11-01", "2026-11-30")
    assert month_days("2026-12") == ("2026-12-01", "2026-12-31")
    assert month_days("2028-02") == ("2028-02-01", "2028-02-29")
    for bad in ("2026-13", "2026-00", "2026-1", "nov"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            month_days(bad)
    request = report_request("customer", "", "", 10, "2026-11")
    assert (request.since, request.until, request.top) == ("2026-11-01", "2026-11-30", 10)
    with pytest.raises(ValueError, match="not both"):
        report_request("customer", "2026-11-02", "", 0, "2026-11")
    with pytest.raises(ValueError, match="top"):
        report_request("customer", "", "", -1, "")
