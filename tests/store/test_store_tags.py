"""Conformance of tag budgets (tag_budgets): a budgeted tag value's windows
are checked with the agent's and its groups' in the same hold, shared by
every agent that carries the value, paused at their cap and by hand, and
read as the value's own status. On Redis Cluster the value's counters live
in a slot of their own (the store holds there first, then in the agent's
slot); the cases are the same on every store (store_suite.py)."""

from __future__ import annotations

from functools import cache

import store_suite
from store_suite import USD, T, covers, drain

from budgetd.config import Resolver, load_config_text
from budgetd.plan import PlanCache, tag_plan
from budgetd.store import HoldRequest, SettleRequest

store_fixture, time_base_fixture = store_suite.store_fixture, store_suite.time_base_fixture

TAG_BUDGETS = """
warn_at: []
agents:
  a1: {daily_usd: 100}
  "team-*": {daily_usd: 100}
groups:
  team: {members: ["team-*"], daily_usd: 100}
tag_budgets:
  customer:
    defaults: {daily_usd: 1}
    values:
      acme: {daily_usd: "0.5", monthly_usd: 2}
      "big-*": {daily_usd: 5}
"""


@cache
def _resolver(timezone: str) -> Resolver:
    return Resolver(load_config_text(f"timezone: {timezone}\n{TAG_BUDGETS}"))


def call_plan(agent: str, tags: dict[str, str]):
    cache = _plan_cache(T.timezone)
    found = cache.for_call(agent, tags, T.now_ms)
    assert found is not None
    return found


@cache
def _plan_cache(timezone: str) -> PlanCache:
    resolver = _resolver(timezone)
    return PlanCache(resolver.budget, resolver.config.zone, tag_budget_of=resolver.tag_budget,
                     budgeted_tags=resolver.budgeted_tags)


def customer_plan(value: str, now=None):
    budget = _resolver(T.timezone).tag_budget("customer", value)
    assert budget is not None
    return tag_plan(budget, now or T.now, T.zone)


def hold(agent: str, rid: str, amount: int, tags: dict[str, str]) -> HoldRequest:
    return HoldRequest(rid, amount, call_plan(agent, tags), T.now_ms, T.now_ms + 60_000, tags)


def settle(agent: str, rid: str, actual: int | None, tags: dict[str, str]) -> SettleRequest:
    return SettleRequest(rid, actual, call_plan(agent, tags), T.now_ms, tags)


async def customer_windows(store, value: str) -> dict[str, tuple[int, int]]:
    plan = customer_plan(value)
    state = await store.read(plan)
    return {limit.window.value: (state.balance(limit).spent_nanos, state.balance(limit).reserved_nanos)
            for limit in plan.limits}


ACME = {"customer": "acme"}


@covers("hold", "settle", "read")
async def test_one_customer_cap_is_shared_by_agents_of_different_groups(store):
    assert (await store.hold(hold("a1", "r1", USD // 5, ACME))).allowed
    assert (await store.hold(hold("team-x", "r2", USD // 5, ACME))).allowed
    assert await customer_windows(store, "acme") == {"daily": (0, 2 * USD // 5), "monthly": (0, 2 * USD // 5)}
    refused = await store.hold(hold("team-x", "r3", USD // 5, ACME))  # 0.6 > the 0.5 daily cap
    assert not refused.allowed
    d = refused.denial
    assert (d.kind, d.scope.key, d.limit.window.value, d.remaining_nanos) == ("cap", "customer:acme", "daily",
                                                                              USD // 10)
    # The refused hold left nothing behind: not in the customer's counters, nor the agent's.
    assert await customer_windows(store, "acme") == {"daily": (0, 2 * USD // 5), "monthly": (0, 2 * USD // 5)}
    agent = await store.read(call_plan("team-x", ACME))
    assert agent.balance(call_plan("team-x", ACME).limits[0]).reserved_nanos == USD // 5
    await store.settle(settle("a1", "r1", USD // 10, ACME))
    await store.settle(settle("team-x", "r2", USD // 10, ACME))
    assert await customer_windows(store, "acme") == {"daily": (USD // 5, 0), "monthly": (USD // 5, 0)}
    # A call without the tag is not the customer's.
    assert (await store.hold(hold("a1", "r4", 10 * USD, {}))).allowed


@covers("hold", "read")
async def test_values_under_defaults_and_patterns_get_their_own_counters(store):
    assert (await store.hold(hold("a1", "r1", USD // 2, {"customer": "new-co"}))).allowed  # defaults: 1 USD
    assert not (await store.hold(hold("a1", "r2", USD, {"customer": "new-co"}))).allowed
    assert (await store.hold(hold("a1", "r3", 4 * USD, {"customer": "big-one"}))).allowed  # pattern: 5 USD
    assert await customer_windows(store, "new-co") == {"daily": (0, USD // 2), "monthly": (0, USD // 2)}
    assert await customer_windows(store, "big-one") == {"daily": (0, 4 * USD), "monthly": (0, 4 * USD)}
    assert await customer_windows(store, "acme") == {"daily": (0, 0), "monthly": (0, 0)}


@covers("hold", "settle", "read", "claim_notices", "finish_notice")
async def test_a_value_at_its_cap_is_paused_for_the_period_with_its_own_notice(store):
    assert (await store.hold(hold("a1", "r1", USD // 2, ACME))).allowed
    result = await store.settle(settle("a1", "r1", USD // 2, ACME))
    assert [(p.scope, p.kind, p.window) for p in result.paused] == [("customer:acme", "cap", "daily")]
    refused = await store.hold(hold("team-x", "r2", 1, ACME))
    assert (refused.denial.kind, refused.denial.scope.key) == ("paused", "customer:acme")
    state = await store.read(customer_plan("acme"))
    assert [(p.scope, p.kind, p.window, p.period) for p in state.pauses] == [("customer:acme", "cap", "daily", T.day)]
    paused = [n for n in await drain(store) if n.kind == "paused"]
    assert [(n.scope, n.window, n.agent_id) for n in paused] == [("customer:acme", "daily", "a1")]
    assert "customer acme daily cap of 0.5 USD reached" in paused[0].reason
    # Another customer, and the agent without the tag, still run.
    assert (await store.hold(hold("team-x", "r3", 1, {"customer": "other"}))).allowed
    assert (await store.hold(hold("team-x", "r4", 1, {}))).allowed


@covers("pause", "resume", "hold", "read", "claim_notices", "finish_notice")
async def test_pausing_a_value_by_hand_stops_every_agent_carrying_it_until_resumed(store):
    await store.pause(customer_plan("acme"), "fraud check", T.now_ms)
    for agent in ("a1", "team-x"):
        refused = await store.hold(hold(agent, f"r-{agent}", 1, ACME))
        assert (refused.denial.kind, refused.denial.scope.key, refused.denial.pause.reason) == \
            ("paused", "customer:acme", "fraud check")
    assert (await store.hold(hold("a1", "r-other", 1, {"customer": "other"}))).allowed
    assert [p.kind for p in (await store.read(customer_plan("acme"))).pauses] == ["manual"]
    assert await store.resume(customer_plan("acme"), T.now_ms)
    assert (await store.hold(hold("a1", "r-after", 1, ACME))).allowed
    notices = [(n.kind, n.scope, n.extra.get("by")) for n in await drain(store)]
    assert notices == [("paused", "customer:acme", "operator"), ("resumed", "customer:acme", "operator")]


@covers("hold", "release", "settle", "read")
async def test_a_release_without_the_tags_frees_the_value_too(store):
    """The service releases with the agent's plan (a release carries no
    tags): the hold's own counters are released, the customer's included."""
    assert (await store.hold(hold("team-x", "r1", USD // 2, ACME))).allowed
    assert await store.release("r1", call_plan("team-x", {}), T.now_ms)
    assert await customer_windows(store, "acme") == {"daily": (0, 0), "monthly": (0, 0)}
    assert (await store.hold(hold("team-x", "r2", USD // 2, ACME))).allowed
    # A settle whose tags lost the customer still settles the customer's hold.
    await store.settle(settle("team-x", "r2", USD // 4, {}))
    assert await customer_windows(store, "acme") == {"daily": (USD // 4, 0), "monthly": (USD // 4, 0)}


@covers("hold", "expire", "read")
async def test_an_expired_hold_charges_or_frees_the_value_as_the_agent(store):
    request = hold("team-x", "r1", USD // 4, ACME)
    short = HoldRequest(request.request_id, request.amount_nanos, request.plan, T.now_ms, T.now_ms + 10, ACME)
    assert (await store.hold(short)).allowed
    expired = await store.expire(T.now_ms + 1_000, True, lambda agent_id: call_plan(agent_id, {}))
    assert expired >= 1  # on Cluster the customer's part expires on its own, as well as the agent's
    assert await customer_windows(store, "acme") == {"daily": (USD // 4, 0), "monthly": (USD // 4, 0)}
    agent_plan = call_plan("team-x", {})
    state = await store.read(agent_plan)
    assert state.balance(agent_plan.limits[0]).spent_nanos == USD // 4


@covers("hold", "settle", "read")
async def test_a_hold_refused_in_the_agents_slot_gives_back_what_the_value_reserved(store):
    """On Cluster the customer's slot is reserved first; a refusal by the
    agent's own window must not leave that reservation behind, and the same
    request id can be held again (a wait for headroom retries it)."""
    # big-* caps at 5 USD: refused there (a1 has room).
    assert (await store.hold(hold("a1", "r1", 6 * USD, {"customer": "big-x"}))).denial.scope.key == "customer:big-x"
    assert (await store.hold(hold("a1", "r2", 99 * USD, {}))).allowed  # a1's daily cap is 100
    refused = await store.hold(hold("a1", "r3", 2 * USD, {"customer": "big-x"}))
    assert refused.denial.scope.key == "agent:a1"
    assert await customer_windows(store, "big-x") == {"daily": (0, 0), "monthly": (0, 0)}
    await store.settle(settle("a1", "r2", 0, {}))
    assert (await store.hold(hold("a1", "r3", 2 * USD, {"customer": "big-x"}))).allowed  # the same id, again
    assert await customer_windows(store, "big-x") == {"daily": (0, 2 * USD), "monthly": (0, 2 * USD)}


@covers("hold", "settle", "paused_tag_values", "lift_lapsed_pauses", "claim_notices", "finish_notice")
async def test_a_values_cap_pause_lapses_at_the_next_period_with_one_resumed_notice(store):
    assert await store.paused_tag_values() == []
    assert (await store.hold(hold("a1", "r1", USD // 2, ACME))).allowed
    assert (await store.settle(settle("a1", "r1", USD // 2, ACME))).paused
    assert await store.paused_tag_values() == ["customer:acme"]
    await drain(store)
    assert await store.lift_lapsed_pauses(customer_plan("acme"), T.now_ms) == []  # still its period
    [resumed] = await store.lift_lapsed_pauses(customer_plan("acme", T.next_day), T.next_day_ms)
    assert (resumed.kind, resumed.scope, resumed.window, resumed.period, resumed.extra["by"]) == \
        ("resumed", "customer:acme", "daily", T.day, "rollover")
    claimed = await store.claim_notices("me", T.next_day_ms + 60_000, 60_000, 100)
    assert [item.notice.key for item in claimed] == [resumed.key]
    for item in claimed:
        await store.finish_notice(item, "sent", T.next_day_ms)
    assert await store.lift_lapsed_pauses(customer_plan("acme", T.next_day), T.next_day_ms) == []  # once
    assert await store.paused_tag_values() == []
