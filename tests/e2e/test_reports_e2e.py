"""Reports end to end: calls with random tags and usage (cached tokens
included) recorded through a real budgetd, then `budgetctl report` by
customer and by feature, in JSON, CSV and the table, against sums computed
in the test from the same calls (report_sums.py)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from budgetd_client import Budget
from helpers import script
from report_sums import Call, expected_report, random_calls

CONFIG = """
defaults: {daily_usd: 1000000, monthly_usd: 1000000}
prices:
  m-test: {input_usd_per_mtok: 3, cached_input_usd_per_mtok: 1, output_usd_per_mtok: 12}
"""
NANOS = 10**9
WIDE = ("--since", "2000-01-01", "--until", "9999-12-31")  # whatever day the calls fell on


def priced(call: Call, output_tokens: int) -> Call:
    """The cost budgetd gives a call's usage at CONFIG's prices: $3, $1 and
    $12 per million tokens are 3,000, 1,000 and 12,000 nanodollars a token."""
    if call.usage is None:
        return call
    tokens, cached = call.usage
    return replace(call, cost=(tokens - cached) * 3_000 + cached * 1_000 + output_tokens * 12_000)


def budgetctl(daemon, *args: str, expect: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run([script("budgetctl"), "--address", daemon.address, "report", *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == expect, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done


def as_expected(row: dict, key: str) -> dict:
    """A row of budgetctl's JSON or CSV in the form of report_sums.expected_report."""
    def number(name):
        return None if row[name] in (None, "") else int(row[name])

    rate = row["cache_hit_rate"]
    return {"key": key, "cost": int(Decimal(row["cost_usd"]) * NANOS), "calls": int(row["calls"]),
            "avg": int(Decimal(row["avg_cost_usd"]) * NANOS), "rate": Decimal(rate) if rate else None,
            "p95": number("p95_input_tokens"), "input": int(row["input_tokens"]),
            "cached": int(row["cached_input_tokens"]), "priced": int(row["priced_calls"])}


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def recorded(request, start_daemon):
    """A daemon on each store and 600 calls recorded through the client."""
    url = None
    if request.param == "redis":
        url = f"{request.getfixturevalue('redis_server').url}?prefix=t{uuid.uuid4().hex[:8]}"
    daemon = start_daemon(CONFIG, store_url=url)
    calls = [priced(c, i % 700) for i, c in enumerate(random_calls(600, seed=7))]
    with Budget(daemon.address) as budget:
        for i, call in enumerate(calls):
            with budget.guard(call.agent, estimate_usd="1", tags=call.tags) as guarded:
                if call.usage is None:
                    guarded.record_usd(Decimal(call.cost) / NANOS)
                else:
                    guarded.record_usage("m-test", call.usage[0], i % 700, cached_input_tokens=call.usage[1])
    return daemon, calls


def test_a_report_by_customer_and_by_feature_equals_the_sums_of_the_calls(recorded):
    daemon, calls = recorded
    for by in ("customer", "feature"):
        expected = expected_report(calls, lambda c, by=by: c.tags.get(by, "(none)"))
        [total] = expected_report(calls, lambda c: "TOTAL")
        shown = json.loads(budgetctl(daemon, "--by", by, "--format", "json", *WIDE).stdout)
        assert [as_expected(r, r[by]) for r in shown["rows"]] == expected
        assert as_expected(shown["total"], "TOTAL") == total and shown["rows_in_all"] == len(expected)
        assert Decimal(shown["total_usd"]) * NANOS == sum(c.cost for c in calls)

        # --top 3: the three biggest, and a total of every row.
        top = json.loads(budgetctl(daemon, "--by", by, "--top", "3", "--format", "json", *WIDE).stdout)
        assert [as_expected(r, r[by]) for r in top["rows"]] == expected[:3]
        assert as_expected(top["total"], "TOTAL") == total
        *rows, last = csv.DictReader(io.StringIO(budgetctl(daemon, "--by", by, "--top", "3", "--format", "csv",
                                                           *WIDE).stdout))
        assert [as_expected(r, r[by]) for r in rows] == expected[:3]
        assert last[by] == "(total)" and as_expected(last, "TOTAL") == total

        table = budgetctl(daemon, "--by", by, "--top", "3", *WIDE).stdout.splitlines()
        assert f"top 3 of {len(expected)} rows" in table[0]
        assert table[1].split() == [by.upper(), "SPEND", "REQUESTS", "AVG/REQUEST", "CACHE", "HIT", "P95", "INPUT"]
        assert [line.split()[0] for line in table[2:]] == [r["key"] for r in expected[:3]] + ["TOTAL"]
        assert f"{total['calls']:,}" in table[-1].split()


def test_month_is_the_days_of_that_month_for_chargeback(recorded):
    daemon, calls = recorded
    month = datetime.now(UTC).strftime("%Y-%m")  # the config's zone is UTC
    expected = expected_report(calls, lambda c: c.tags.get("customer", "(none)"))
    shown = json.loads(budgetctl(daemon, "--by", "customer", "--month", month, "--format", "json").stdout)
    assert shown["since"] == f"{month}-01" and shown["until"][:7] == month and shown["until"] > shown["since"]
    assert [as_expected(r, r["customer"]) for r in shown["rows"]] == expected
    empty = json.loads(budgetctl(daemon, "--by", "customer", "--month", "2000-02", "--format", "json").stdout)
    assert (empty["since"], empty["until"], empty["rows"], empty["total_usd"]) == ("2000-02-01", "2000-02-29", [],
                                                                                   "0")
    refused = budgetctl(daemon, "--month", month, "--since", f"{month}-02", expect=1)
    assert "not both" in refused.stderr
    assert "YYYY-MM" in budgetctl(daemon, "--month", "2026-13", expect=1).stderr
