"""The Store contract, once, for every backend (alisaifee/limits' approach):
each test runs against every store in STORES."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone

import pytest

from budgetd.config import Resolver, load_config_text
from budgetd.plan import make_plan
from budgetd.store import HoldRequest, RequestConflict, SettleRequest, open_store

STORES = ["sqlite", "redis", "redis-cluster"]
NOW = datetime(2026, 11, 22, 15, 0, tzinfo=timezone.utc)
NOW_MS = int(NOW.timestamp() * 1000)
NEXT_DAY = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)
USD = 10**9

CONFIG = load_config_text("""
agents:
  a1: {daily_usd: 1, monthly_usd: 3}
  a2: {daily_usd: 100}
  "team-*": {daily_usd: 10}
groups:
  team: {members: ["team-*"], daily_usd: 1}
""")
RESOLVER = Resolver(CONFIG)


def plan(agent: str, now: datetime = NOW):
    return make_plan(RESOLVER.budget(agent), now, CONFIG.zone)


def hold(agent: str, rid: str, amount: int, now: datetime = NOW, ttl_ms: int = 60_000):
    ms = int(now.timestamp() * 1000)
    return HoldRequest(rid, agent, amount, plan(agent, now), ms, ms + ttl_ms, {"feature": "t"})


def settle(agent: str, rid: str, actual: int | None, now: datetime = NOW):
    return SettleRequest(rid, agent, actual, plan(agent, now), int(now.timestamp() * 1000), {})


@pytest.fixture(params=STORES)
async def store(request, tmp_path):
    prefix = f"t{uuid.uuid4().hex[:12]}"  # each test its own keys on the shared servers
    if request.param == "sqlite":
        s = open_store(f"sqlite://{tmp_path}/store.db")
    elif request.param == "redis":
        s = open_store(f"{request.getfixturevalue('redis_server').url}?prefix={prefix}")
    else:
        s = open_store(f"{request.getfixturevalue('redis_cluster').url}&prefix={prefix}")
    await s.open()
    yield s
    await s.close()


async def balances(store, agent: str, now: datetime = NOW):
    p = plan(agent, now)
    readout = await store.read(p)
    return {(lm.scope.key, lm.window.value): (readout.balance(lm).spent_nanos, readout.balance(lm).reserved_nanos)
            for lm in p.limits}


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


async def test_denial_names_the_first_window_that_would_go_over_and_holds_nothing(store):
    assert (await store.hold(hold("a1", "r1", 900_000_000))).allowed
    result = await store.hold(hold("a1", "r2", 200_000_000))
    assert not result.allowed
    d = result.denial
    assert (d.kind, d.scope.key, d.limit.window.value, d.remaining_nanos) == ("cap", "agent:a1", "daily", 100_000_000)
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (0, 900_000_000)


async def test_monthly_window_refuses_when_daily_has_room(store):
    for day in (20, 21, 22):
        when = datetime(2026, 11, day, 12, tzinfo=timezone.utc)
        assert (await store.hold(hold("a1", f"r{day}", USD, when))).allowed
        await store.settle(settle("a1", f"r{day}", USD, when))
    result = await store.hold(hold("a1", "r-next", 1, datetime(2026, 11, 23, 12, tzinfo=timezone.utc)))
    assert result.denial.limit.window.value == "monthly" and result.denial.remaining_nanos == 0


async def test_group_cap_is_checked_in_the_same_step_and_named(store):
    assert (await store.hold(hold("team-a", "r1", 600_000_000))).allowed
    result = await store.hold(hold("team-b", "r2", 600_000_000))
    assert result.denial.kind == "cap" and result.denial.scope.key == "group:team"
    assert (await balances(store, "team-b"))[("agent:team-b", "daily")] == (0, 0)
    await store.settle(settle("team-a", "r1", USD))
    paused = await store.hold(hold("team-b", "r3", 1))
    assert paused.denial.kind == "paused" and paused.denial.scope.key == "group:team"
    assert "group team daily cap" in paused.denial.pause.reason


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


async def test_settle_twice_counts_once_and_returns_the_first_result(store):
    await store.hold(hold("a1", "r1", 100))
    assert (await store.settle(settle("a1", "r1", 70))).counted_nanos == 70
    second = await store.settle(settle("a1", "r1", 90))
    assert (second.counted_nanos, second.duplicate) == (70, True)
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (70, 0)
    # Another agent's settle of the same id is its own call; a1 is untouched.
    assert (await store.settle(settle("a2", "r1", 5))).counted_nanos == 5
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (70, 0)


async def test_settle_without_amount_charges_the_hold_and_without_hold_the_estimate(store):
    await store.hold(hold("a1", "r1", 123))
    assert (await store.settle(settle("a1", "r1", None))).counted_nanos == 123
    # No hold at all (fail-open): the current windows are charged.
    assert (await store.settle(settle("a1", "r-nohold", 1000))).counted_nanos == 1000
    assert (await store.settle(settle("a1", "r-nohold2", None))).counted_nanos == RESOLVER.budget("a1").estimate_nanos
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (123 + 1000 + 50_000_000, 0)


async def test_reaching_the_cap_pauses_for_that_period_only(store):
    await store.hold(hold("a1", "r1", USD))
    result = await store.settle(settle("a1", "r1", USD))
    assert [(p.scope, p.kind, p.window, p.period) for p in result.paused] == [("agent:a1", "cap", "daily", "2026-11-22")]
    refused = await store.hold(hold("a1", "r2", 0))
    assert refused.denial.kind == "paused" and refused.denial.limit.window.value == "daily"
    # The next day is a new period: no pause, fresh counter.
    assert (await store.hold(hold("a1", "r3", 1, NEXT_DAY))).allowed


async def test_a_hold_settled_the_next_day_is_counted_in_the_hold_periods(store):
    assert (await store.hold(hold("a2", "r1", 300))).allowed
    result = await store.settle(settle("a2", "r1", 200, NEXT_DAY))
    assert (result.counted_nanos, result.duplicate) == (200, False)
    assert (await balances(store, "a2"))[("agent:a2", "daily")] == (200, 0)  # the hold's day, its reservation gone
    assert (await balances(store, "a2", NEXT_DAY))[("agent:a2", "daily")] == (0, 0)
    assert (await store.settle(settle("a2", "r1", 200, NEXT_DAY))).duplicate


async def test_actual_over_the_estimate_is_counted(store):
    await store.hold(hold("a2", "r1", 100))
    assert (await store.settle(settle("a2", "r1", 5 * USD))).counted_nanos == 5 * USD
    assert (await balances(store, "a2"))[("agent:a2", "daily")] == (5 * USD, 0)


async def test_manual_pause_refuses_until_resumed_and_resume_lifts_cap_pauses_too(store):
    await store.pause(plan("a2"), "runaway loop", NOW_MS)
    refused = await store.hold(hold("a2", "r1", 1, NEXT_DAY))
    assert refused.denial.kind == "paused" and refused.denial.pause.kind == "manual"
    assert refused.denial.pause.reason == "runaway loop"
    assert await store.resume(plan("a2"), NOW_MS)
    assert not await store.resume(plan("a2"), NOW_MS)
    assert (await store.hold(hold("a2", "r1", 1, NEXT_DAY))).allowed

    await store.hold(hold("a1", "c1", USD))
    await store.settle(settle("a1", "c1", USD))
    assert await store.resume(plan("a1"), NOW_MS)
    # Resumed, but the day's cap is spent: refused by the cap itself.
    assert (await store.hold(hold("a1", "c2", 1))).denial.kind == "cap"


async def test_release_drops_only_live_holds(store):
    await store.hold(hold("a1", "r1", 500))
    assert not await store.release("r1", plan("a2"), NOW_MS)  # not a2's hold
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (0, 500)
    assert await store.release("r1", plan("a1"), NOW_MS)
    assert not await store.release("r1", plan("a1"), NOW_MS)
    assert not await store.release("unknown", plan("a1"), NOW_MS)
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (0, 0)


@pytest.mark.parametrize("charge", [False, True])
async def test_expiry_releases_or_charges_and_a_late_settle_counts_once(store, charge):
    await store.hold(hold("a1", "r1", 400, ttl_ms=1000))
    await store.hold(hold("a1", "r2", 7, ttl_ms=10_000))
    assert await store.expire(NOW_MS + 999, charge, plan) == 0
    assert await store.expire(NOW_MS + 1000, charge, plan) == 1
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (400 if charge else 0, 7)
    assert not await store.release("r1", plan("a1"), NOW_MS)
    late = await store.settle(settle("a1", "r1", 300))
    assert late.counted_nanos == 300
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (300, 7)


async def test_charged_expiry_that_reaches_the_cap_pauses(store):
    await store.hold(hold("a1", "r1", USD, ttl_ms=10))
    await store.expire(NOW_MS + 10, True, plan)
    assert (await store.hold(hold("a1", "r2", 0))).denial.kind == "paused"


async def test_concurrent_holds_never_overshoot(store):
    async def one(i: int) -> bool:
        result = await store.hold(hold("a1", f"r{i}", 10_000_000))
        return result.allowed

    allowed = await asyncio.gather(*(one(i) for i in range(250)))
    assert sum(allowed) == 100
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (0, USD)


async def test_active_agents_are_those_with_counters_in_the_periods_or_a_pause(store):
    await store.hold(hold("a1", "r1", 1))
    await store.pause(plan("team-x"), "r", NOW_MS)
    await store.hold(hold("a2", "old", 1, datetime(2026, 10, 2, tzinfo=timezone.utc)))
    assert await store.active_agents("2026-11-22", "2026-11") == ["a1", "team-x"]


# -- the outbox ---------------------------------------------------------------------------

from decimal import Decimal  # noqa: E402

from budgetd.notices.model import Notice  # noqa: E402

WARN_AT = (Decimal("0.5"), Decimal("0.8"))


def settle_warning(agent: str, rid: str, actual: int, now: datetime = NOW):
    return SettleRequest(rid, agent, actual, plan(agent, now), int(now.timestamp() * 1000), {}, None, WARN_AT)


async def drain(store, owner: str = "me") -> list[Notice]:
    claimed = await store.claim_notices(owner, NOW_MS, 60_000, 100)
    for item in claimed:
        await store.finish_notice(item, "sent", NOW_MS)
    return [item.notice for item in claimed]


async def test_thresholds_warn_once_and_the_cap_pauses_with_one_notice(store):
    await store.settle(settle_warning("a1", "r1", 600_000_000))  # 60%: crosses 50%
    await store.settle(settle_warning("a1", "r2", 100_000_000))  # 70%: nothing
    await store.settle(settle_warning("a1", "r3", 150_000_000))  # 85%: crosses 80%
    await store.settle(settle_warning("a1", "r4", 150_000_000))  # 100%: paused
    await store.settle(settle_warning("a1", "r5", 1))
    notices = await drain(store)
    assert [(n.kind, n.window, n.extra.get("threshold")) for n in notices] == [
        ("warning", "daily", "0.5"), ("warning", "daily", "0.8"), ("paused", "daily", None)]
    assert notices[1].spent_nanos == 850_000_000 and notices[1].cap_nanos == 10**9
    assert notices[2].spent_nanos == 10**9 and notices[2].agent_id == "a1" and "daily cap" in notices[2].reason
    assert await drain(store) == []


async def test_a_leased_notice_goes_to_one_owner_and_a_retry_comes_back(store):
    assert await store.add_notice(Notice("k1", "digest", at_ms=NOW_MS), None)
    assert not await store.add_notice(Notice("k1", "digest", at_ms=NOW_MS), None)  # written once
    [first] = await store.claim_notices("replica-a", NOW_MS, 60_000, 10)
    assert await store.claim_notices("replica-b", NOW_MS, 60_000, 10) == []  # leased to replica-a
    await store.retry_notice(first, NOW_MS + 1000, NOW_MS, "503")
    await asyncio.sleep(1.2)
    [again] = await store.claim_notices("replica-b", NOW_MS + 1200, 60_000, 10)
    assert again.notice.key == "k1" and again.attempts == 2
    await store.finish_notice(again, "sent", NOW_MS)
    assert await store.claim_notices("replica-a", NOW_MS + 10**8, 60_000, 10) == []
    assert await store.outbox_depth() == 0


async def test_operator_pause_and_resume_write_notices_and_events_follow_the_outbox(store):
    _, cursor = await store.events_after(None)
    await store.pause(plan("a2"), "loop", NOW_MS)
    assert await store.resume(plan("a2"), NOW_MS + 1)
    events, cursor = await store.events_after(cursor)
    assert [(e.kind, e.extra["by"]) for e in events] == [("paused", "operator"), ("resumed", "operator")]
    assert (await store.events_after(cursor))[0] == []


async def test_a_lapsed_cap_pause_is_lifted_once_with_a_resumed_notice(store):
    await store.settle(settle_warning("a1", "r1", 10**9))
    await drain(store)
    assert await store.lift_lapsed_pauses(plan("a1"), NOW_MS) == []  # still its period
    written = await store.lift_lapsed_pauses(plan("a1", NEXT_DAY), NOW_MS)
    assert [(n.kind, n.scope, n.window, n.period) for n in written] == [("resumed", "agent:a1", "daily", "2026-11-22")]
    assert await store.lift_lapsed_pauses(plan("a1", NEXT_DAY), NOW_MS) == []
    assert [n.kind for n in await drain(store)] == ["resumed"]


async def test_hourly_spend_and_top_spenders_and_models_are_read_back(store):
    await store.settle(settle("a1", "r1", 300))
    await store.settle(settle("a2", "r2", 700))
    hour = plan("a1").limits[-1].period.key
    assert await store.spent_in(plan("a1"), "agent:a1", "hourly", [hour, "2000-01-01T00"]) == {hour: 300}
    assert await store.top_spenders("daily", "2026-11-22", plan, 10) == [("a2", 700), ("a1", 300)]


async def test_reports_group_in_the_store_and_old_ledger_rows_are_trimmed(store):
    await store.settle(settle("a1", "r1", 300))
    await store.settle(settle("team-a", "r2", 700))
    assert await store.report("agent", "2026-11-22", "2026-11-22") == [("team-a", 700, 1), ("a1", 300, 1)]
    assert await store.report("group", "2026-11-22", "2026-11-22") == [("team", 700, 1)]
    assert await store.report("agent", "2026-11-23", "2026-11-30") == []
    await asyncio.sleep(0.01)
    assert await store.trim_ledger(int(time.time() * 1000) + 1) == 2
    assert await store.report("agent", "2026-11-22", "2026-11-22") == []


@pytest.mark.parametrize("expired_first", [False, True])
async def test_a_settles_tags_are_added_to_its_holds_and_win(store, expired_first):
    """The ledger row carries the hold's tags with the settle's on top, for a
    held call and for a late settle after its hold expired."""
    await store.hold(HoldRequest("r1", "a2", 5, plan("a2"), NOW_MS, NOW_MS + 10,
                                 {"feature": "search", "team": "blue"}))
    if expired_first:
        assert await store.expire(NOW_MS + 10, False, plan) == 1
    await store.settle(SettleRequest("r1", "a2", 5, plan("a2"), NOW_MS, {"feature": "answer", "run": "7"}))
    day = "2026-11-22"
    assert await store.report("feature", day, day) == [("answer", 5, 1)]
    assert await store.report("team", day, day) == [("blue", 5, 1)]
    assert await store.report("run", day, day) == [("7", 5, 1)]
