"""The walking skeleton end to end: a real budgetd process, the real client, through a
restart. (The guard's other rules are in test_async_client.py, on a daemon and on FakeBudget.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from budgetd_client import AgentPaused, Budget, BudgetExceeded

D = Decimal

CAP_CONFIG = """
timezone: "UTC"
agents:
  capped: {daily_usd: 1.00}
"""


def next_utc_midnight() -> datetime:
    now = datetime.now(UTC)
    return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


def test_daily_cap_denies_pauses_resumes_and_survives_restart(start_daemon):
    daemon = start_daemon(CAP_CONFIG)
    budget = Budget(daemon.address)

    for _ in range(3):
        with budget.guard("capped", estimate_usd="0.30") as call:
            call.record_usd("0.30")
    st = budget.status("capped")
    assert st.daily.spent_usd == D("0.90")
    assert st.monthly.spent_usd == D("0.90")
    assert st.daily.reserved_usd == 0 and st.daily.remaining_usd == D("0.10")
    assert st.monthly.cap_usd is None and st.monthly.remaining_usd is None

    with pytest.raises(BudgetExceeded) as exceeded, budget.guard("capped", estimate_usd="0.30"):
        pytest.fail("the block must not run when the hold is denied")
    err = exceeded.value
    assert err.window == "daily"
    assert err.remaining_usd == D("0.10")
    assert err.cap_usd == D("1")
    assert err.resets_at == next_utc_midnight()

    with budget.guard("capped", estimate_usd="0.10") as call:
        call.record_usd("0.10")
    st = budget.status("capped")
    assert st.daily.spent_usd == D("1.00")
    assert st.paused and st.pause_kind == "cap"
    assert st.resumes_at == next_utc_midnight()

    with pytest.raises(AgentPaused) as paused, budget.guard("capped", estimate_usd="0.01"):
        pass
    assert paused.value.kind == "cap" and paused.value.resumes_at == next_utc_midnight()
    assert "daily cap" in paused.value.reason

    assert not budget.resume("capped").paused
    # Resumed, but the day's cap is spent: the next hold is refused by the cap, by name.
    with pytest.raises(BudgetExceeded) as again, budget.guard("capped", estimate_usd="0.01"):
        pass
    assert again.value.remaining_usd == 0

    budget.pause("capped", reason="runaway loop")
    daemon.restart()
    st = budget.status("capped")
    assert st.daily.spent_usd == D("1.00") and st.monthly.spent_usd == D("1.00")
    assert st.paused and st.pause_kind == "manual" and st.pause_reason == "runaway loop"
    assert st.resumes_at is None
    with pytest.raises(AgentPaused) as manual, budget.guard("capped", estimate_usd="0.01"):
        pass
    assert manual.value.kind == "manual" and manual.value.resumes_at is None
    budget.resume("capped")
    assert not budget.status("capped").paused
    budget.close()
