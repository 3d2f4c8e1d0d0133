"""Conformance of the Counters contract: holds and settles over every window
of the agent and its groups, releases, expiries, and the reads of counters
(the suite's fixtures and helpers are in store_suite.py)."""

from __future__ import annotations

import asyncio

import pytest
import store_suite
from store_suite import USD, T, balances, covers, hold, plan, settle

from budgetd.store import RequestConflict

# The suite's fixtures, under their names store and time_base.
store_fixture, time_base_fixture = store_suite.store_fixture, store_suite.time_base_fixture


@covers("hold", "settle", "read")
async def test_hold_reserves_in_every_window_and_settle_moves_it_to_spent(store):
    assert (await store.hold(hold("a1", "r1", 300_000_000))).allowed
    assert await balances(store, "a1") == {("agent:a1", "daily"): (0, 300_000_000),
                                           ("agent:a1", "monthly"): (0, 300_000_000),
                                           ("agent:a1", "hourly"): (0, 300_000_000)}
    result = await store.settle(settle("a1", "r1", 250_000_000))
    assert (result.counted_nanos, result.duplicate, result.paused) == (250_000_000, False, ())
    assert await balances(store, "a1") == {("agent:a1", "daily"): (250_000_000, 0),
                                           ("agent:a1", "monthly"): (250_000_000, 0),
                                           ("agent:a1", "hourly"): (250_000_000, 0)}


@covers("hold", "read")
async def test_denial_names_the_first_window_that_would_go_over_and_holds_nothing(store):
    assert (await store.hold(hold("a1", "r1", 900_000_000))).allowed
    result = await store.hold(hold("a1", "r2", 200_000_000))
    assert not result.allowed
    d = result.denial
    assert (d.kind, d.scope.key, d.limit.window.value, d.remaining_nanos) == ("cap", "agent:a1", "daily", 100_000_000)
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (0, 900_000_000)


@covers("hold", "settle")
async def test_a_cap_refusal_is_waitable_only_when_reservations_alone_refuse(store):
    assert (await store.hold(hold("a1", "r1", 900_000_000))).allowed
    by_reservations = (await store.hold(hold("a1", "r2", 200_000_000))).denial
    assert (by_reservations.kind, by_reservations.waitable) == ("cap", True)
    await store.settle(settle("a1", "r1", 850_000_000))  # spent 0.85 of the 1 USD daily cap
    by_spend = (await store.hold(hold("a1", "r3", 200_000_000))).denial
    assert (by_spend.kind, by_spend.waitable) == ("cap", False)
    assert (await store.hold(hold("a1", "r4", 150_000_000))).allowed  # exactly fits
    # A group's window is part of the same step: team-a's reservation in the
    # group makes team-b's refusal waitable, team-a's spend would not.
    assert (await store.hold(hold("team-a", "g1", 600_000_000))).allowed
    assert (await store.hold(hold("team-b", "g2", 600_000_000))).denial.waitable
    await store.settle(settle("team-a", "g1", 600_000_000))
    denial = (await store.hold(hold("team-b", "g3", 600_000_000))).denial
    assert (denial.scope.key, denial.waitable) == ("group:team", False)


@covers("hold", "settle")
async def test_monthly_window_refuses_when_daily_has_room(store):
    *days, last = T.days_in_one_month(4)
    for i, when in enumerate(days):
        assert (await store.hold(hold("a1", f"r{i}", USD, when))).allowed
        await store.settle(settle("a1", f"r{i}", USD, when))
    result = await store.hold(hold("a1", "r-next", 1, last))
    assert result.denial.limit.window.value == "monthly" and result.denial.remaining_nanos == 0


@covers("hold", "settle", "read")
async def test_group_cap_is_checked_in_the_same_step_and_named(store):
    assert (await store.hold(hold("team-a", "r1", 600_000_000))).allowed
    result = await store.hold(hold("team-b", "r2", 600_000_000))
    assert result.denial.kind == "cap" and result.denial.scope.key == "group:team"
    assert (await balances(store, "team-b"))[("agent:team-b", "daily")] == (0, 0)
    await store.settle(settle("team-a", "r1", USD))
    paused = await store.hold(hold("team-b", "r3", 1))
    assert paused.denial.kind == "paused" and paused.denial.scope.key == "group:team"
    assert "group team daily cap" in paused.denial.pause.reason


@covers("hold", "settle", "read")
async def test_hold_is_idempotent_by_request_id(store):
    first = await store.hold(hold("a1", "r1", 400_000_000))
    again = await store.hold(hold("a1", "r1", 400_000_000))
    assert first.allowed and again.allowed and again.held_nanos == 400_000_000
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (0, 400_000_000)
    # Request ids are scoped to their agent: the same id under a2 is another call.
    assert (await store.hold(hold("a2", "r1", 7))).held_nanos == 7
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (0, 400_000_000)
    await store.settle(settle("a1", "r1", 1))
    with pytest.raises(RequestConflict):
        await store.hold(hold("a1", "r1", 1))


@covers("hold", "settle", "read")
async def test_settle_twice_counts_once_and_returns_the_first_result(store):
    await store.hold(hold("a1", "r1", 100))
    assert (await store.settle(settle("a1", "r1", 70))).counted_nanos == 70
    second = await store.settle(settle("a1", "r1", 90))
    assert (second.counted_nanos, second.duplicate) == (70, True)
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (70, 0)
    # Another agent's settle of the same id is its own call; a1 is untouched.
    assert (await store.settle(settle("a2", "r1", 5))).counted_nanos == 5
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (70, 0)


@covers("hold", "settle", "read")
async def test_settle_without_amount_charges_the_hold_and_without_hold_the_estimate(store):
    await store.hold(hold("a1", "r1", 123))
    assert (await store.settle(settle("a1", "r1", None))).counted_nanos == 123
    # No hold at all (fail-open): the current windows are charged.
    assert (await store.settle(settle("a1", "r-nohold", 1000))).counted_nanos == 1000
    assert (await store.settle(settle("a1", "r-nohold2", None))).counted_nanos == T.resolver.budget("a1").estimate_nanos
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (123 + 1000 + 50_000_000, 0)


@covers("hold", "settle")
async def test_reaching_the_cap_pauses_for_that_period_only(store):
    await store.hold(hold("a1", "r1", USD))
    result = await store.settle(settle("a1", "r1", USD))
    assert [(p.scope, p.kind, p.window, p.period) for p in result.paused] == [("agent:a1", "cap", "daily", T.day)]
    refused = await store.hold(hold("a1", "r2", 0))
    assert refused.denial.kind == "paused" and refused.denial.limit.window.value == "daily"
    # The next day is a new period: no pause, fresh counter.
    assert (await store.hold(hold("a1", "r3", 1, T.next_day))).allowed


@covers("hold", "settle", "read")
async def test_a_hold_settled_the_next_day_is_counted_in_the_hold_periods(store):
    assert (await store.hold(hold("a2", "r1", 300))).allowed
    result = await store.settle(settle("a2", "r1", 200, T.next_day))
    assert (result.counted_nanos, result.duplicate) == (200, False)
    assert await balances(store, "a2") == {("agent:a2", "daily"): (200, 0),  # the hold's day, its reservation gone
                                           ("agent:a2", "monthly"): (200, 0),
                                           ("agent:a2", "hourly"): (200, 0)}
    next_month = T.next_day_key[:7]
    assert await balances(store, "a2", T.next_day) == {
        ("agent:a2", "daily"): (0, 0),
        ("agent:a2", "monthly"): (200, 0) if next_month == T.month else (0, 0),  # month end: a new month
        ("agent:a2", "hourly"): (0, 0)}
    assert (await store.settle(settle("a2", "r1", 200, T.next_day))).duplicate
    # A call that starts the next day counts there only.
    await store.settle(settle("a2", "r2", 40, T.next_day))
    assert (await balances(store, "a2", T.next_day))[("agent:a2", "daily")] == (40, 0)
    assert (await balances(store, "a2"))[("agent:a2", "daily")] == (200, 0)


@covers("hold", "settle", "read")
async def test_actual_over_the_estimate_is_counted(store):
    await store.hold(hold("a2", "r1", 100))
    assert (await store.settle(settle("a2", "r1", 5 * USD))).counted_nanos == 5 * USD
    assert (await balances(store, "a2"))[("agent:a2", "daily")] == (5 * USD, 0)


@covers("release", "hold", "read")
async def test_release_drops_only_live_holds(store):
    await store.hold(hold("a1", "r1", 500))
    assert not await store.release("r1", plan("a2"), T.now_ms)  # not a2's hold
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (0, 500)
    assert await store.release("r1", plan("a1"), T.now_ms)
    assert not await store.release("r1", plan("a1"), T.now_ms)
    assert not await store.release("unknown", plan("a1"), T.now_ms)
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (0, 0)


@covers("release", "hold", "settle", "read")
async def test_a_hold_released_the_next_day_gives_back_its_own_periods(store):
    await store.hold(hold("a2", "r1", 500))
    assert await store.release("r1", plan("a2", T.next_day), T.next_day_ms)
    assert (await balances(store, "a2"))[("agent:a2", "daily")] == (0, 0)
    # Settled after its release: charged to the hold's periods, once.
    assert (await store.settle(settle("a2", "r1", 30, T.next_day))).counted_nanos == 30
    assert (await balances(store, "a2"))[("agent:a2", "daily")] == (30, 0)
    assert (await balances(store, "a2", T.next_day))[("agent:a2", "daily")] == (0, 0)


@pytest.mark.parametrize("charge", [False, True])
@covers("expire", "hold", "release", "settle", "read")
async def test_expiry_releases_or_charges_and_a_late_settle_counts_once(store, charge):
    await store.hold(hold("a1", "r1", 400, ttl_ms=1000))
    await store.hold(hold("a1", "r2", 7, ttl_ms=10_000))
    assert await store.expire(T.now_ms + 999, charge, plan) == 0
    assert await store.expire(T.now_ms + 1000, charge, plan) == 1
    assert await store.expire(T.now_ms + 1000, charge, plan) == 0  # expired once
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (400 if charge else 0, 7)
    assert not await store.release("r1", plan("a1"), T.now_ms)
    late = await store.settle(settle("a1", "r1", 300))
    assert late.counted_nanos == 300
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (300, 7)
    # The other one expires after the next day began: back to its own periods.
    assert await store.expire(T.next_day_ms, charge, lambda agent: plan(agent, T.next_day)) == 1
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (307 if charge else 300, 0)
    assert (await balances(store, "a1", T.next_day))[("agent:a1", "daily")] == (0, 0)


@covers("expire", "hold")
async def test_charged_expiry_that_reaches_the_cap_pauses(store):
    await store.hold(hold("a1", "r1", USD, ttl_ms=10))
    assert await store.expire(T.now_ms + 10, True, plan) == 1
    assert (await store.hold(hold("a1", "r2", 0))).denial.kind == "paused"


@covers("hold", "read")
async def test_concurrent_holds_never_overshoot(store):
    async def one(i: int) -> bool:
        result = await store.hold(hold("a1", f"r{i}", 10_000_000))
        return result.allowed

    allowed = await asyncio.gather(*(one(i) for i in range(250)))
    assert sum(allowed) == 100
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (0, USD)


@covers("active_agents", "hold", "pause", "settle")
async def test_active_agents_are_those_with_counters_in_the_periods_or_a_pause(store):
    await store.hold(hold("a1", "r1", 1))
    await store.pause(plan("team-x"), "r", T.now_ms)
    await store.hold(hold("a2", "other", 1, T.another_month))
    await store.settle(settle("team-n", "next", 1, T.next_day))
    next_month = T.next_day_key[:7]
    same_month = next_month == T.month  # not at a month's end
    assert await store.active_agents(T.day, T.month) == (["a1", "team-n", "team-x"] if same_month else ["a1", "team-x"])
    assert await store.active_agents(T.next_day_key, next_month) == (
        ["a1", "team-n", "team-x"] if same_month else ["team-n", "team-x"])


@covers("read_many", "read", "hold", "settle", "pause")
async def test_read_many_reads_each_agent_as_read_does_in_the_order_given(store):
    await store.hold(hold("a1", "r1", 300))
    await store.settle(settle("a2", "r2", 700))
    await store.settle(settle("team-a", "r3", USD))  # the group's cap: team-a and team-b are paused by it
    await store.hold(hold("team-b", "r4", 0))
    await store.pause(plan("team-b"), "loop", T.now_ms)
    plans = [plan(agent) for agent in ("team-b", "a1", "team-z", "team-a", "a2", "a1")]
    many = await store.read_many(plans)
    assert len(many) == len(plans)
    for p, state in zip(plans, many, strict=True):
        alone = await store.read(p)
        assert [state.balance(lm) for lm in p.limits] == [alone.balance(lm) for lm in p.limits], p.agent_id
        assert sorted(state.pauses, key=repr) == sorted(alone.pauses, key=repr), p.agent_id
    team_b, a1, team_z, team_a, a2, _ = many
    assert a1.balance(plans[1].limits[0]).reserved_nanos == 300
    assert a2.balance(plans[4].limits[0]).spent_nanos == 700
    # team-z has done nothing: its own counters are empty, its group's are shared.
    assert [team_z.balance(lm).spent_nanos for lm in plans[2].limits] == [0, 0, USD, USD, 0]
    assert [(p.scope, p.kind) for p in team_z.pauses] == [("group:team", "cap")]
    assert sorted((p.scope, p.kind) for p in team_b.pauses) == [("agent:team-b", "manual"), ("group:team", "cap")]
    assert [(p.scope, p.kind) for p in team_a.pauses] == [("group:team", "cap")]
    assert await store.read_many([]) == []
