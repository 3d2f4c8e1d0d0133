"""Tag budgets on Redis Cluster, where a hold is one step per slot (the tag
values' slots first, the agent's last): a crash between the steps leaves a
hold in a tag slot only. It must expire like any other (released, or
charged by the policy), hold up nothing else, and a retry of the hold with
its request id (what a client does when its call failed) completes it once.

The crash is made by running the first step alone: the store's one-slot hold
on the customer's part of the plan, which is what a daemon killed between
the steps leaves."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from budgetd.config import Resolver, load_config_text
from budgetd.plan import PlanCache, tag_plan
from budgetd.store import HoldRequest, SettleRequest
from budgetd.store.redis import RedisStore

pytestmark = [pytest.mark.redis, pytest.mark.cluster]

USD = 10**9
RESOLVER = Resolver(load_config_text("""
agents:
  a1: {daily_usd: 100}
tag_budgets:
  customer:
    values:
      acme: {daily_usd: 1}
"""))
PLANS = PlanCache(RESOLVER.budget, RESOLVER.config.zone, tag_budget_of=RESOLVER.tag_budget,
                  budgeted_tags=RESOLVER.budgeted_tags)
ACME = {"customer": "acme"}


@pytest.fixture
async def store(redis_cluster):
    s = RedisStore(f"{redis_cluster.url}&prefix=t{uuid.uuid4().hex[:8]}")
    await s.open()
    yield s
    await s.close()


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


async def customer(store, at_ms: int) -> tuple[int, int]:
    budget = RESOLVER.tag_budget("customer", "acme")
    plan = tag_plan(budget, datetime.fromtimestamp(at_ms / 1000, UTC), RESOLVER.config.zone)
    state = await store.read(plan)
    return state.balance(plan.limits[0]).spent_nanos, state.balance(plan.limits[0]).reserved_nanos


async def crash_after_the_customers_step(store, request_id: str, at_ms: int, ttl_ms: int) -> HoldRequest:
    request = HoldRequest(request_id, USD // 4, PLANS.for_call("a1", ACME, at_ms), at_ms, at_ms + ttl_ms, ACME)
    [customer_part] = store._cluster_parts(request.plan).tags
    assert (await store._hold_in_slot(replace(request, plan=customer_part))).allowed
    return request


@pytest.mark.parametrize("charge", [False, True])
async def test_a_hold_left_in_the_customers_slot_expires_by_the_policy(store, charge):
    at = now_ms()
    await crash_after_the_customers_step(store, "r1", at, ttl_ms=50)
    assert await customer(store, at) == (0, USD // 4)
    agent = PLANS.for_call("a1", {}, at)
    assert (await store.read(agent)).balance(agent.limits[0]).reserved_nanos == 0  # the agent's step never ran
    assert await store.expire(at + 1_000, charge, lambda agent_id: PLANS.for_call(agent_id, {}, at)) == 1
    assert await customer(store, at) == ((USD // 4 if charge else 0), 0)


async def test_a_retried_hold_completes_the_steps_once_and_settles_in_every_slot(store):
    at = now_ms()
    request = await crash_after_the_customers_step(store, "r1", at, ttl_ms=60_000)
    assert (await store.hold(request)).allowed  # the client's retry: the customer's step is found done
    assert await customer(store, at) == (0, USD // 4)
    agent = PLANS.for_call("a1", {}, at)
    assert (await store.read(agent)).balance(agent.limits[0]).reserved_nanos == USD // 4
    await store.settle(SettleRequest("r1", USD // 5, request.plan, at, ACME))
    assert await customer(store, at) == (USD // 5, 0)
    assert (await store.read(agent)).balance(agent.limits[0]).spent_nanos == USD // 5
