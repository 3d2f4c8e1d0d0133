"""The client's behaviour, each case run against a real budgetd and against
``FakeBudget``, so the fake cannot drift from the real thing.
``test_sync_client.py`` is generated from this file by ``scripts/generate_sync.py``; edit here,
then run ``make generate``."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from fake_provider import FakeProvider
from helpers import free_port
from openai import AsyncOpenAI

from budgetd_client import AgentPaused, AsyncBudget, BudgetExceeded, BudgetUnavailable, UnknownAgent
from budgetd_client.testing import AsyncFakeBudget

D = Decimal

AGENTS = {
    "capped": {"daily_usd": "1.00"},
    "estimator": {"daily_usd": "10", "estimate_usd": "0.25"},
    "bot": {"daily_usd": "100", "monthly_usd": "500"},
}
# gpt-4o: $2.50 input, $1.25 cached input, $10 output per million tokens.
PRICES = {"gpt-4o": {"input_usd_per_mtok": "2.50", "cached_input_usd_per_mtok": "1.25", "output_usd_per_mtok": "10"}}
GPT4O_COST = D("0.00475")  # the fake provider's usage: 200 x 2.5 + 1000 x 1.25 + 300 x 10, per million


def daemon_config(agents: dict, prices: dict) -> str:
    """The same budgets as budgets.yaml says them."""
    def flow(entry: dict) -> str:
        return "{" + ", ".join(f"{key}: {value}" for key, value in entry.items()) + "}"

    return "\n".join(['timezone: "UTC"', "agents:", *(f"  {a}: {flow(e)}" for a, e in agents.items()),
                      "prices:", *(f"  {m}: {flow(p)}" for m, p in prices.items())]) + "\n"


@pytest.fixture(params=["daemon", "fake"])
async def budget(request, start_daemon):
    """A client of a real budgetd, or a FakeBudget with the same config."""
    if request.param == "fake":
        client = AsyncFakeBudget(AGENTS, prices=PRICES)
    else:
        client = AsyncBudget(start_daemon(daemon_config(AGENTS, PRICES)).address)
    async with client:
        yield client


def next_utc_midnight() -> datetime:
    now = datetime.now(UTC)
    return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


async def test_a_guarded_call_within_the_cap_passes_and_is_counted(budget):
    for _ in range(3):
        async with budget.guard("capped", estimate_usd="0.30") as call:
            call.record_usd("0.30")
    st = await budget.status("capped")
    assert st.daily.spent_usd == D("0.90") and st.monthly.spent_usd == D("0.90")
    assert st.daily.reserved_usd == 0 and st.daily.remaining_usd == D("0.10") and st.daily.cap_usd == D(1)
    assert st.monthly.cap_usd is None and st.monthly.remaining_usd is None
    assert st.daily.resets_at == next_utc_midnight() and st.budget_source == "configured"
    assert not st.paused and st.pause_kind is None


async def test_a_call_over_the_cap_raises_budget_exceeded_before_the_block_runs(budget):
    async with budget.guard("capped", estimate_usd="0.90") as call:
        call.record_usd("0.90")
    with pytest.raises(BudgetExceeded) as exceeded:
        async with budget.guard("capped", estimate_usd="0.30"):
            pytest.fail("the block must not run when the hold is denied")
    err = exceeded.value
    assert (err.window, err.scope, err.remaining_usd, err.cap_usd) == ("daily", "agent:capped", D("0.10"), D(1))
    assert err.resets_at == next_utc_midnight()
    assert (await budget.status("capped")).daily.spent_usd == D("0.90")  # a refusal costs nothing


async def test_reaching_the_cap_pauses_and_the_next_call_raises_agent_paused(budget):
    async with budget.guard("capped", estimate_usd="0.60") as call:
        call.record_usd("0.60")
    async with budget.guard("capped", estimate_usd="0.40") as call:
        call.record_usd("0.40")
    st = await budget.status("capped")
    assert st.daily.spent_usd == D(1) and st.daily.remaining_usd == 0
    assert st.paused and st.pause_kind == "cap" and st.paused_by == "agent:capped"
    assert st.resumes_at == next_utc_midnight()
    with pytest.raises(AgentPaused) as paused:
        async with budget.guard("capped", estimate_usd="0.01"):
            pytest.fail("must not run while paused")
    assert paused.value.kind == "cap" and paused.value.resumes_at == next_utc_midnight()
    assert paused.value.window == "daily" and "daily cap of 1 USD reached" in paused.value.reason

    assert not (await budget.resume("capped")).paused
    # Resumed, but the day's cap is spent: the next hold is refused by the cap, by name.
    with pytest.raises(BudgetExceeded) as again:
        async with budget.guard("capped", estimate_usd="0.01"):
            pass
    assert again.value.remaining_usd == 0


async def test_a_manual_pause_refuses_every_call_until_resumed(budget):
    st = await budget.pause("bot", reason="runaway loop")
    assert st.paused and st.pause_kind == "manual" and st.pause_reason == "runaway loop" and st.resumes_at is None
    with pytest.raises(AgentPaused, match="runaway loop") as paused:
        async with budget.guard("bot", estimate_usd="0.01"):
            pytest.fail("must not run while paused")
    assert paused.value.kind == "manual" and paused.value.resumes_at is None and paused.value.window is None
    assert [a.agent_id for a in await budget.list_status()] == sorted(AGENTS)
    assert not (await budget.resume("bot")).paused
    async with budget.guard("bot", estimate_usd="0.01"):
        pass
    assert (await budget.status("bot")).daily.spent_usd == D("0.01")


async def test_the_guard_holds_the_estimate_releases_on_error_and_settles_the_estimate_otherwise(budget):
    async with budget.guard("estimator", tags={"feature": "digest"}) as call:
        assert call.held_nanos == 250_000_000
        st = await budget.status("estimator")
        assert st.daily.reserved_usd == D("0.25") and st.daily.spent_usd == 0
    # Nothing recorded and no exception: the estimate is settled (conservative).
    st = await budget.status("estimator")
    assert st.daily.spent_usd == D("0.25") and st.daily.reserved_usd == 0

    class ModelCallFailed(Exception):
        pass

    with pytest.raises(ModelCallFailed):
        async with budget.guard("estimator"):
            assert (await budget.status("estimator")).daily.reserved_usd == D("0.25")
            raise ModelCallFailed
    st = await budget.status("estimator")
    assert st.daily.spent_usd == D("0.25") and st.daily.reserved_usd == 0  # released, not charged

    # A recorded cost wins even when the block then raises.
    with pytest.raises(ModelCallFailed):
        async with budget.guard("estimator") as call:
            call.record_usd(0.0123)
            raise ModelCallFailed
    st = await budget.status("estimator")
    assert st.daily.spent_usd == D("0.2623") and st.daily.reserved_usd == 0


async def test_recorded_usage_is_priced_and_an_unpriced_model_settles_the_hold(budget):
    async with budget.guard("bot", estimate_usd="0.50") as call:
        call.record_usage("gpt-4o-2024-08-06", 1200, 300, cached_input_tokens=1000)  # a snapshot: priced as gpt-4o
    assert (await budget.status("bot")).daily.spent_usd == GPT4O_COST
    async with budget.guard("bot", estimate_usd="0.50") as call:
        call.record_usage("no-such-model", 10, 10)
    st = await budget.status("bot")
    assert st.daily.spent_usd == GPT4O_COST + D("0.50") and st.daily.reserved_usd == 0


async def test_wrap_openai_counts_the_priced_cost_of_each_call(budget):
    with FakeProvider() as provider:
        client = budget.wrap(AsyncOpenAI(api_key="test-key", base_url=provider.base_url, max_retries=0),
                             agent_id="bot")
        resp = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}],
                                                    max_tokens=50)
    assert resp.choices[0].message.content == "Hello there."
    st = await budget.status("bot")
    assert (st.daily.spent_usd, st.monthly.spent_usd, st.daily.reserved_usd) == (GPT4O_COST, GPT4O_COST, 0)
    assert st.daily.remaining_usd == D(100) - GPT4O_COST


async def test_an_agent_without_a_budget_is_refused_by_name(budget):
    with pytest.raises(UnknownAgent, match="no-such-agent"):
        async with budget.guard("no-such-agent", estimate_usd="0.01"):
            pytest.fail("an agent with no budget must not run")
    with pytest.raises(UnknownAgent, match="no-such-agent"):
        await budget.pause("no-such-agent")
    with pytest.raises(ValueError, match="agent_id"):
        async with budget.guard("not an id"):
            pass


# -- the client alone ----------------------------------------------------------------


async def test_unreachable_daemon_fails_closed_by_default_and_open_when_asked_after_the_timeout():
    address = f"127.0.0.1:{free_port()}"  # nothing listens here
    ran = []
    started = time.monotonic()
    with pytest.raises(BudgetUnavailable, match=r"did not answer within 1s: cannot reach it \(Connection refused.*"
                                                 r"is it running\? Start it with `make run`"):
        async with AsyncBudget(address, timeout=1).guard("a1", estimate_usd="0.01"):
            ran.append("closed")
    assert 0.95 < time.monotonic() - started < 1.5  # it waited for budgetd, for the whole timeout
    started = time.monotonic()
    budget = AsyncBudget(address, timeout=1, fail_open=True)
    async with budget.guard("a1", estimate_usd="0.01") as call:
        ran.append("open")
        call.record_usd("0.01")
    assert ran == ["open"]
    assert 0.95 < time.monotonic() - started < 1.5  # one wait: the settle is kept, not waited for again
    assert len(budget._kept) == 1
    budget._kept.delivered(next(iter(budget._kept.pending)))  # not left for the test process's exit


async def test_calls_wait_their_timeout_then_say_budgetd_did_not_answer():
    address = f"127.0.0.1:{free_port()}"
    async with AsyncBudget(address, timeout=0.5) as budget:
        started = time.monotonic()
        with pytest.raises(BudgetUnavailable, match=rf"budgetd at {address} did not answer within 0.5s"):
            await budget.status("a1")
        assert 0.45 < time.monotonic() - started < 1.0
