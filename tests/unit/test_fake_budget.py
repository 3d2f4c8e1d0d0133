"""What FakeBudget does beyond the cases it shares with a real budgetd
(tests/e2e/test_async_client.py): its clock, defaults, shared state and the
mistakes it refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from budgetd_client import AgentPaused, BudgetError, BudgetExceeded, UnknownAgent
from budgetd_client.testing import AsyncFakeBudget, FakeBudget

D = Decimal


def test_a_new_day_lifts_a_cap_pause_and_starts_a_new_count():
    now = [datetime(2026, 3, 31, 23, 0, tzinfo=UTC)]
    budget = FakeBudget({"a1": {"daily_usd": "1", "monthly_usd": "5"}}, clock=lambda: now[0])
    with budget.guard("a1", estimate_usd="1") as call:
        call.record_usd("1")
    with pytest.raises(AgentPaused) as paused, budget.guard("a1", estimate_usd="0.01"):
        pass
    assert paused.value.resumes_at == datetime(2026, 4, 1, tzinfo=UTC)
    now[0] += timedelta(hours=2)  # a new day, and a new month
    st = budget.status("a1")
    assert not st.paused and (st.daily.period, st.daily.spent_usd) == ("2026-04-01", 0)
    assert (st.monthly.period, st.monthly.spent_usd) == ("2026-04", 0)


def test_days_start_at_local_midnight_of_the_timezone():
    budget = FakeBudget({"a1": {}}, timezone="America/New_York",
                        clock=lambda: datetime(2026, 7, 1, 3, 0, tzinfo=UTC))  # still June 30 in New York
    daily = budget.status("a1").daily
    assert daily.period == "2026-06-30" and daily.resets_at == datetime(2026, 7, 1, 4, 0, tzinfo=UTC)


def test_defaults_budget_any_other_agent_and_without_them_an_unknown_agent_is_refused():
    budget = FakeBudget({"a1": {"daily_usd": "1"}}, defaults={"daily_usd": "0.10", "estimate_usd": "0.02"})
    with budget.guard("anyone") as call:
        assert call.held_nanos == 20_000_000
    st = budget.status("anyone")
    assert (st.daily.cap_usd, st.daily.spent_usd, st.budget_source) == (D("0.10"), D("0.02"), "defaults")
    with pytest.raises(UnknownAgent):
        FakeBudget({"a1": {}}).status("anyone")


def test_the_default_estimate_is_budgetds():
    with FakeBudget({"a1": {}}).guard("a1") as call:
        assert call.held_nanos == 50_000_000


async def test_an_async_and_a_sync_fake_can_share_one_daemon():
    sync = FakeBudget({"a1": {"daily_usd": "1"}})
    async with AsyncFakeBudget(daemon=sync.daemon) as budget, budget.guard("a1", estimate_usd="0.70"):
        pass
    with pytest.raises(BudgetExceeded), sync.guard("a1", estimate_usd="0.70"):
        pass


def test_what_the_fake_does_not_fake_says_so():
    budget = FakeBudget({"a1": {}})
    with pytest.raises(BudgetError, match="report"):
        budget.report()
    with pytest.raises(NotImplementedError, match="watch"):
        next(iter(budget.watch("a1")))
    assert budget.config().generation == 1


@pytest.mark.parametrize(("agents", "prices", "message"), [
    ({"a1": {"daily": "1"}}, None, "unknown keys"),
    ({"a1": {"daily_usd": "-1"}}, None, "must not be negative"),
    ({"not an id": {}}, None, "agents"),
    ({"a1": {}}, {"m": {"input_usd_per_mtok": "1"}}, "output_usd_per_mtok"),
])
def test_a_mistake_in_the_fakes_config_is_refused_when_it_is_made(agents, prices, message):
    with pytest.raises(ValueError, match=message):
        FakeBudget(agents, prices=prices)
