"""tag_budgets in budgets.yaml: what is refused (with the key path and line),
which caps a tag value gets (exact, pattern, defaults, uncapped), and the
plan of a call that carries budgeted tags."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from budgetd.config import ConfigError, Resolver, load_config_text
from budgetd.plan import PlanCache

CONFIG = """
agents:
  a1: {daily_usd: 10}
tag_budgets:
  customer:
    defaults: {monthly_usd: 20}
    values:
      acme: {daily_usd: 5, monthly_usd: 500}
      "big-*": {monthly_usd: 100}
      "b*": {monthly_usd: 1}
  feature:
    values:
      search: {daily_usd: 2}
"""

BAD = {
    "agent as a tag": ("tag_budgets:\n  agent:\n    defaults: {daily_usd: 1}\n", "line 2: tag_budgets.agent",
                       "cannot be budgeted as a tag"),
    "unknown key": ("tag_budgets:\n  customer:\n    default: {daily_usd: 1}\n", "line 3: tag_budgets.customer.default",
                    "unknown key"),
    "unknown cap": ("tag_budgets:\n  customer:\n    values:\n      acme: {weekly_usd: 1}\n",
                    "line 4: tag_budgets.customer.values.acme.weekly_usd", "unknown key"),
    "negative cap": ("tag_budgets:\n  customer:\n    values:\n      acme: {daily_usd: -1}\n",
                     "line 4: tag_budgets.customer.values.acme.daily_usd", "negative"),
    "bad tag key": ("tag_budgets:\n  'cust omer': {}\n", "tag_budgets.cust omer", "pattern"),
}


@pytest.mark.parametrize("name", BAD)
def test_a_bad_tag_budget_is_refused_with_where_and_what(name):
    body, where, what = BAD[name]
    with pytest.raises(ConfigError) as refused:
        load_config_text(body)
    assert where in str(refused.value) and what in str(refused.value), str(refused.value)


def test_exact_value_wins_then_the_first_pattern_then_defaults():
    resolver = Resolver(load_config_text(CONFIG))
    found = {v: resolver.tag_budget("customer", v) for v in ("acme", "big-co", "bob", "zed")}
    assert {v: (b.daily_nanos, b.monthly_nanos, b.source) for v, b in found.items()} == {
        "acme": (5 * 10**9, 500 * 10**9, "configured"),
        "big-co": (None, 100 * 10**9, "pattern:big-*"),
        "bob": (None, 10**9, "pattern:b*"),
        "zed": (None, 20 * 10**9, "defaults"),
    }
    # No defaults: an unlisted value is counted, never capped; an unbudgeted tag costs nothing.
    other = resolver.tag_budget("feature", "chat")
    assert (other.daily_nanos, other.monthly_nanos, other.source) == (None, None, "uncapped")
    assert resolver.tag_budget("route", "/x") is None


def test_a_calls_plan_adds_the_windows_of_its_budgeted_tag_values_once_per_combination():
    resolver = Resolver(config := load_config_text(CONFIG))
    plans = PlanCache(resolver.budget, config.zone, tag_budget_of=resolver.tag_budget,
                      budgeted_tags=resolver.budgeted_tags)
    now_ms = int(datetime(2026, 11, 5, 12, tzinfo=UTC).timestamp() * 1000)
    own = plans.get_at_ms("a1", now_ms)
    assert plans.for_call("a1", {"route": "/x"}, now_ms) is own  # no budgeted tag: the agent's own plan
    tagged = plans.for_call("a1", {"customer": "acme", "feature": "search", "route": "/x"}, now_ms)
    assert tagged is plans.for_call("a1", {"feature": "search", "customer": "acme"}, now_ms)
    assert [(lm.scope.key, lm.window.value, lm.cap_nanos) for lm in tagged.limits] == [
        ("agent:a1", "daily", 10 * 10**9), ("agent:a1", "monthly", None),
        ("customer:acme", "daily", 5 * 10**9), ("customer:acme", "monthly", 500 * 10**9),
        ("feature:search", "daily", 2 * 10**9), ("feature:search", "monthly", None),
        ("agent:a1", "hourly", None),
    ]
    assert [s.key for s in tagged.scopes] == ["agent:a1", "customer:acme", "feature:search"]
