"""The client on its own: money at the edge, fail open/closed, the async guard."""

from __future__ import annotations

from decimal import Decimal

import pytest
from budgetd_client import AgentPaused, AsyncBudget, Budget, BudgetUnavailable
from budgetd_client.money import nanos_to_usd, usd_to_nanos

from helpers import free_port


@pytest.mark.parametrize(
    ("amount", "nanos"),
    [("0.0123", 12_300_000), (0.05, 50_000_000), (Decimal("0.1"), 100_000_000), (0.1 + 0.2, 300_000_001),
     ("0.0000000001", 1), (3, 3_000_000_000), (Decimal("1E-9"), 1), ("0", 0)],
)
def test_dollars_become_nanodollars_exactly_rounded_up(amount, nanos):
    assert usd_to_nanos(amount) == nanos


def test_nanodollars_become_exact_decimal_dollars():
    assert nanos_to_usd(1_000_000_000) == Decimal(1)
    assert nanos_to_usd(150) == Decimal("0.00000015")
    assert str(nanos_to_usd(4_750_000)) == "0.00475"


def test_unreachable_daemon_fails_closed_by_default_and_open_when_asked():
    address = f"127.0.0.1:{free_port()}"  # nothing listens here
    ran = []
    with pytest.raises(BudgetUnavailable):
        with Budget(address, timeout=1).guard("a1", estimate_usd="0.01"):
            ran.append("closed")
    with Budget(address, timeout=1, fail_open=True).guard("a1", estimate_usd="0.01") as call:
        ran.append("open")
        call.record_usd("0.01")
    assert ran == ["open"]


async def test_async_guard_settles_releases_and_reports_pauses(start_daemon):
    daemon = start_daemon("agents:\n  a1: {daily_usd: 10, estimate_usd: 0.5}\n")
    async with AsyncBudget(daemon.address) as budget:
        async with budget.guard("a1", tags={"feature": "digest"}) as call:
            assert call.held_nanos == 500_000_000
        assert (await budget.status("a1")).daily.spent_usd == Decimal("0.5")

        with pytest.raises(RuntimeError):
            async with budget.guard("a1"):
                raise RuntimeError("model call failed")
        st = await budget.status("a1")
        assert st.daily.spent_usd == Decimal("0.5") and st.daily.reserved_usd == 0

        await budget.pause("a1", reason="investigating")
        with pytest.raises(AgentPaused, match="investigating"):
            async with budget.guard("a1"):
                pytest.fail("must not run while paused")
        assert [a.agent_id for a in await budget.list_status()] == ["a1"]
        assert not (await budget.resume("a1")).paused
