"""A tag value's notices end to end (real daemon, real slack-sdk, loopback
Slack): its cap pause is its own notice, naming the value and how to resume
it; a pause and a resume by hand are told too."""

from __future__ import annotations

from budgetd_client import AgentPaused, BudgetExceeded
from test_notices import FakeClock, days_ahead, running, slack  # noqa: F401 (fixtures)

CONFIG = """
warn_at: []
agents:
  a1: {daily_usd: 100}
  b1: {daily_usd: 100}
tag_budgets:
  customer:
    values:
      acme: {daily_usd: "1.00"}
"""


async def test_a_customer_at_its_cap_gets_one_pause_notice_naming_it(running, slack):  # noqa: F811
    run = await running(FakeClock(days_ahead(1, 12)), CONFIG)
    acme = {"customer": "acme"}
    async with run.budget.guard("a1", estimate_usd="0.60", tags=acme) as call:
        call.record_usd("0.60")
    async with run.budget.guard("b1", estimate_usd="0.40", tags=acme) as call:
        call.record_usd("0.40")
    [paused] = await run.due()
    assert "customer *acme* (via *b1*) is paused: customer acme daily cap of 1 USD reached" in paused
    assert "spent $1.00 of $1.00" in paused and "Resumes by itself at" in paused
    assert "`budgetctl resume --tag customer=acme`" in paused
    for agent in ("a1", "b1"):
        try:
            async with run.budget.guard(agent, estimate_usd="0.01", tags=acme):
                raise AssertionError("a paused customer's call went through")
        except (AgentPaused, BudgetExceeded) as refused:
            assert refused.scope == "customer:acme"
    assert await run.due() == []  # told once

    status = await run.budget.resume(tag=("customer", "acme"))
    assert not status.paused and status.scope == "customer:acme"
    [resumed] = await run.deliver()
    assert "customer *acme* is running again because an operator resumed it" in resumed

    await run.budget.pause(tag="customer=acme", reason="invoice overdue")
    [manual] = await run.deliver()
    assert "customer *acme* was paused by an operator: invoice overdue" in manual
    assert "`budgetctl resume --tag customer=acme`" in manual


async def test_a_customers_cap_pause_lifts_at_midnight_with_its_own_resumed_notice(running, slack):  # noqa: F811
    clock = FakeClock(days_ahead(1, 23, 30))
    run = await running(clock, CONFIG)
    async with run.budget.guard("a1", estimate_usd="1.00", tags={"customer": "acme"}) as call:
        call.record_usd("1.00")
    [paused] = await run.due()
    assert "customer *acme* (via *a1*) is paused" in paused
    clock.advance(hours=1)  # the next day
    [resumed] = await run.due()
    assert "customer *acme* is running again because its daily window rolled over" in resumed
    async with run.budget.guard("b1", estimate_usd="0.10", tags={"customer": "acme"}) as call:
        call.record_usd("0.10")
    assert await run.due() == []  # told once
