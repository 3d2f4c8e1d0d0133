"""Holds that wait for headroom (budgetd/app/headroom.py), on the memory
store through the application: who waits, who is refused at once, in what
order the waiters are let in, and how a wait ends.

The queues' poll is set to a minute in most tests, so only the wakes a
settle, release or drain sends can let a waiter in: a test passes only if
those wakes work."""

from __future__ import annotations

import asyncio

import pytest

from budgetd.app import BudgetService, ConfigInForce, Draining
from budgetd.config import load_config_text
from budgetd.metrics import Metrics
from budgetd.store.memory import MemoryStore

USD = 1_000_000_000
BODY = """
agents:
  a1: {daily_usd: 1}
  team-a: {daily_usd: 100}
  team-b: {daily_usd: 100}
groups:
  team: {members: [team-a, team-b], daily_usd: 1}
"""


@pytest.fixture
async def service():
    async def make(extra: str = "", poll_seconds: float = 60.0) -> BudgetService:
        config = load_config_text('server: {listen: "127.0.0.1:0"}\nstore: {url: "memory://"}\n' + extra + BODY)
        store = MemoryStore()
        await store.open()
        svc = BudgetService(ConfigInForce.of(config), store, lambda: 1_795_000_000_000, Metrics())
        svc.headroom.poll_seconds = poll_seconds
        return svc

    return make


async def until(condition, what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"timed out waiting for {what}")


def waits(svc: BudgetService, agent: str, request_id: str, nanos: int, wait_ms: int = 5000) -> asyncio.Task:
    return asyncio.ensure_future(svc.hold(agent, request_id, {}, nanos, wait_ms=wait_ms))


async def test_a_hold_blocked_by_a_reservation_waits_and_gets_the_room_a_settle_frees(service):
    svc = await service()
    assert (await svc.hold("a1", "big", {}, 900_000_000)).allowed
    waiting = waits(svc, "a1", "next", 200_000_000)
    await until(lambda: len(svc.headroom) == 1, "the hold to wait")
    assert not waiting.done()
    await svc.settle("a1", "big", {}, 500_000_000)  # 0.5 spent: 0.2 fits now
    result = await waiting
    assert result.allowed and result.held_nanos == 200_000_000 and result.waited_ms >= 0
    assert len(svc.headroom) == 0


async def test_a_hold_that_cannot_fit_even_with_no_reservations_is_refused_at_once(service):
    svc = await service()
    assert (await svc.hold("a1", "r1", {}, 900_000_000)).allowed
    await svc.settle("a1", "r1", {}, 900_000_000)
    assert (await svc.hold("a1", "r2", {}, 50_000_000)).allowed  # a reservation is out too
    refused = await svc.hold("a1", "r3", {}, 200_000_000)  # 0.9 spent + 0.2 > 1: reservations are not the cause
    assert not refused.allowed and refused.denial.kind == "cap" and not refused.denial.waitable
    assert refused.waited_ms == 0 and len(svc.headroom) == 0
    over_cap = await svc.hold("a1", "r4", {}, 2 * USD)  # more than the cap itself
    assert not over_cap.allowed and over_cap.waited_ms == 0


async def test_waiters_are_let_in_first_come_first_served_and_a_newcomer_queues_behind_them(service):
    svc = await service()
    assert (await svc.hold("a1", "all", {}, USD)).allowed
    first, second, third = (waits(svc, "a1", name, 500_000_000) for name in ("first", "second", "third"))
    await until(lambda: len(svc.headroom) == 3, "three waiters")
    await svc.release("a1", "all")  # room for two of the three
    assert (await first).allowed and (await second).allowed
    await asyncio.sleep(0.01)
    assert not third.done()
    newcomer = waits(svc, "a1", "newcomer", 1)  # would fit alone, but it came after the third
    await until(lambda: len(svc.headroom) == 2, "the newcomer queued")
    await asyncio.sleep(0.01)
    assert not newcomer.done()
    await svc.settle("a1", "first", {}, 0)
    assert (await third).allowed
    await asyncio.sleep(0.01)
    assert not newcomer.done()  # second and third hold the whole cap
    await svc.settle("a1", "second", {}, 0)
    assert (await newcomer).allowed


async def test_a_wait_ends_at_the_callers_budget_with_a_refusal_that_says_it_waited(service):
    svc = await service()
    assert (await svc.hold("a1", "stuck", {}, 900_000_000)).allowed  # never settled here
    refused = await svc.hold("a1", "r2", {}, 200_000_000, wait_ms=80)
    assert not refused.allowed and refused.denial.waitable and refused.waited_ms >= 80
    assert len(svc.headroom) == 0


async def test_max_wait_ms_caps_the_wait_and_zero_refuses_at_once(service):
    svc = await service("max_wait_ms: 0\n")
    assert (await svc.hold("a1", "r1", {}, 900_000_000)).allowed
    refused = await svc.hold("a1", "r2", {}, 200_000_000)  # no caller deadline: the config's 0 applies
    assert not refused.allowed and refused.waited_ms == 0
    capped = await service("max_wait_ms: 60\n")
    assert (await capped.hold("a1", "r1", {}, 900_000_000)).allowed
    refused = await capped.hold("a1", "r2", {}, 200_000_000, wait_ms=60_000)
    assert not refused.allowed and 60 <= refused.waited_ms < 5_000


async def test_a_waiter_whose_room_can_no_longer_appear_is_refused_at_its_next_turn(service):
    svc = await service()
    assert (await svc.hold("a1", "r1", {}, 900_000_000)).allowed
    waiting = waits(svc, "a1", "r2", 200_000_000)
    await until(lambda: len(svc.headroom) == 1, "the hold to wait")
    await svc.settle("a1", "r1", {}, 850_000_000)  # 0.85 spent: 0.2 can never fit today
    refused = await waiting
    assert not refused.allowed and not refused.denial.waitable and refused.waited_ms >= 0


async def test_a_settle_in_a_group_wakes_the_waiters_of_another_member(service):
    svc = await service()
    assert (await svc.hold("team-a", "ra", {}, 800_000_000)).allowed
    waiting = waits(svc, "team-b", "rb", 500_000_000)
    await until(lambda: len(svc.headroom) == 1, "team-b to wait")
    await svc.settle("team-a", "ra", {}, 300_000_000)
    assert (await waiting).allowed


async def test_a_settle_elsewhere_is_seen_by_the_poll(service):
    """A settle this process never saw (another replica of a shared store)
    wakes nobody here: the head's poll retries and finds the room."""
    svc = await service(poll_seconds=0.02)
    assert (await svc.hold("a1", "r1", {}, 900_000_000)).allowed
    waiting = waits(svc, "a1", "r2", 200_000_000)
    await until(lambda: len(svc.headroom) == 1, "the hold to wait")
    await svc.store.release("r1", svc.plan_at_ms("a1", svc.now_ms()), svc.now_ms())  # behind the service's back
    assert (await waiting).allowed


async def test_a_drain_ends_every_wait_with_draining(service):
    svc = await service()
    assert (await svc.hold("a1", "r1", {}, USD)).allowed
    waiting = [waits(svc, "a1", f"w{i}", 500_000_000) for i in range(3)]
    await until(lambda: len(svc.headroom) == 3, "three waiters")
    drain = asyncio.ensure_future(svc.drain(grace_seconds=5))
    for task in waiting:
        with pytest.raises(Draining):
            await task
    await svc.settle("a1", "r1", {}, USD)
    assert await drain == 0


async def test_waits_and_estimate_slack_are_measured(service):
    from budgetd_client.usage import Usage

    svc = await service()
    sample = svc.metrics.registry.get_sample_value
    assert (await svc.hold("a1", "big", {}, 900_000_000)).allowed
    waiting = waits(svc, "a1", "next", 200_000_000)
    await until(lambda: len(svc.headroom) == 1, "the hold to wait")
    assert sample("budgetd_holds_waiting") == 1
    await svc.settle("a1", "big", {}, 500_000_000)
    assert (await waiting).allowed
    refused = await svc.hold("a1", "late", {}, 400_000_000, wait_ms=30)  # 0.7 held or spent: waits, then times out
    assert refused.waited_ms >= 30
    assert sample("budgetd_hold_waits_total", {"outcome": "allowed"}) == 1
    assert sample("budgetd_hold_waits_total", {"outcome": "timeout"}) == 1
    assert sample("budgetd_hold_wait_seconds_count") == 2 and sample("budgetd_holds_waiting") == 0
    # A usage-priced settle of a hold granted here: held / settled, by model.
    assert (await svc.hold("team-a", "priced", {}, 3_000_000)).allowed
    await svc.settle("team-a", "priced", {}, Usage("gpt-4o-mini", input_tokens=1000, output_tokens=1000))
    assert sample("budgetd_held_to_actual_ratio_count", {"model": "gpt-4o-mini"}) == 1
    assert sample("budgetd_held_to_actual_ratio_sum", {"model": "gpt-4o-mini"}) == 3_000_000 / 750_000
