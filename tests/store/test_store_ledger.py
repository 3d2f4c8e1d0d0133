"""Conformance of the Ledger contract, and the reads of spend it goes with:
reports grouped in the store, retention, top models and spenders (the
suite's fixtures and helpers are in store_suite.py)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import date, timedelta

import pytest
import store_suite
from report_sums import Call, expected_report, random_calls
from store_suite import T, balances, covers, hold, plan, priced, settle

from budgetd.reports import summarize
from budgetd.store import AgentActivity, CallFacts, CostEvent, HoldRequest, Ledger, Pricing, SettleRequest, UsageSum

# The suite's fixtures, under their names store and time_base.
store_fixture, time_base_fixture = store_suite.store_fixture, store_suite.time_base_fixture


async def report(store, by: str, since: str, until: str) -> list[tuple[str, int, int]]:
    """(key, cost, calls) per row, as the summary of the store's parts gives them."""
    return [(row.key, row.cost_nanos, row.calls) for row in summarize(await store.report_parts(by, since, until)).rows]


@covers("settle", "spent_in", "top_spenders", "top_models")
async def test_hourly_spend_and_top_spenders_and_models_are_read_back(store):
    await store.settle(settle("a1", "r1", 300, pricing=priced("m-small")))
    await store.settle(settle("a2", "r2", 700, pricing=priced("m-other")))
    await store.settle(settle("a1", "r3", 500, pricing=priced("m-big")))
    await store.settle(settle("a1", "r4", 250, pricing=priced("m-small")))
    await store.settle(settle("a1", "r5", 5))  # priced by amount: no model
    await store.settle(settle("a1", "r6", 40, T.next_day))
    hour = plan("a1").limits[-1].period.key
    assert await store.spent_in(plan("a1"), "agent:a1", "hourly", [hour, "2000-01-01T00"]) == {hour: 1055}
    assert await store.spent_in(plan("a1"), "agent:a1", "daily", [T.day, T.next_day_key]) == {
        T.day: 1055, T.next_day_key: 40}
    assert await store.top_spenders("daily", T.day, plan, 10) == [("a1", 1055), ("a2", 700)]
    assert await store.top_spenders("daily", T.day, plan, 1) == [("a1", 1055)]
    assert await store.top_spenders("daily", T.next_day_key, plan, 10) == [("a1", 40)]
    assert await store.top_models(plan("a1"), T.now_ms, 10) == [("m-small", 550), ("m-big", 500)]
    assert await store.top_models(plan("a1"), T.now_ms, 1) == [("m-small", 550)]
    assert await store.top_models(plan("a2"), T.now_ms, 10) == [("m-other", 700)]
    assert await store.top_models(plan("a1"), T.next_day_ms + 1, 10) == []  # nothing settled since


@covers("settle", "report_parts", "trim_ledger")
async def test_reports_group_in_the_store_and_old_ledger_rows_are_trimmed(store):
    await store.settle(settle("a1", "r1", 300))
    await store.settle(settle("team-a", "r2", 700))
    await store.settle(settle("team-a", "r3", 11, T.next_day))
    assert await report(store, "agent", T.day, T.day) == [("team-a", 700, 1), ("a1", 300, 1)]
    assert await report(store, "group", T.day, T.day) == [("team", 700, 1)]
    assert await report(store, "day", T.day, T.next_day_key) == [(T.day, 1000, 2), (T.next_day_key, 11, 1)]
    week = (date.fromisoformat(T.next_day_key) + timedelta(days=7)).isoformat()
    assert await report(store, "agent", T.next_day_key, week) == [("team-a", 11, 1)]
    # A cutoff before every row drops none. (SQLite trims by a row's settle
    # time, Redis by when it wrote the entry: with one clock the two agree;
    # the cutoffs here are on the same side of both, even when Redis's clock
    # is behind this process's.)
    assert await store.trim_ledger(1) == 0
    await asyncio.sleep(0.01)
    assert await store.trim_ledger(max(T.next_day_ms, int(time.time() * 1000)) + 1) == 3
    assert await report(store, "agent", T.day, week) == []


@pytest.mark.parametrize("expired_first", [False, True])
@covers("hold", "settle", "report_parts")
async def test_a_settles_tags_are_added_to_its_holds_and_win(store, expired_first):
    """The ledger row carries the hold's tags with the settle's on top, for a
    held call and for a late settle after its hold expired."""
    await store.hold(HoldRequest("r1", 5, plan("a2"), T.now_ms, T.now_ms + 10,
                                 {"feature": "search", "team": "blue"}))
    if expired_first:
        assert await store.expire(T.now_ms + 10, False, plan) == 1
    await store.settle(SettleRequest("r1", 5, plan("a2"), T.now_ms, {"feature": "answer", "run": "7"}))
    day = T.day
    assert await report(store, "feature", day, day) == [("answer", 5, 1)]
    assert await report(store, "team", day, day) == [("blue", 5, 1)]
    assert await report(store, "run", day, day) == [("7", 5, 1)]
    assert await report(store, "model", day, day) == [("(no model)", 5, 1)]


# -- cost events: the whole ledger row, for the export ----------------------------------------


async def _events(store, since: str, until: str) -> list:
    """In the order written; on Redis Cluster each shard's (an agent or group's) in turn, so sorted here."""
    events = [event async for event in store.cost_events(since, until)]
    return sorted(events, key=lambda e: e.request_id) if store.backend == "redis-cluster" else events


@covers("hold", "settle", "record_failure", "cost_events", "read")
async def test_every_settle_and_recorded_failure_is_a_whole_cost_event_read_back_in_order(store):
    usage = Pricing("gpt-4o-2024-08-06", "openai", 1000, 200, 300, 50, "genai-prices-1", cache_write_tokens=100)
    assert (await store.hold(hold("a1", "r1", 500))).allowed
    priced = await store.settle(SettleRequest("r1", 400, plan("a1"), T.now_ms, {"route": "/chat"}, usage,
                                              CallFacts("gpt-4o", 123)))
    caller = await store.settle(SettleRequest("r2", 77, plan("team-a"), T.now_ms, {"feature": "f2"}))  # no hold
    assert (await store.hold(hold("a1", "r3", 300))).allowed
    estimate = await store.settle(settle("a1", "r3", None))
    assert (await store.hold(hold("a1", "r4", 200))).allowed
    failed = await store.record_failure("r4", plan("a1"), T.now_ms, CallFacts("gpt-4o", 5, "RateLimitError:429"))
    assert await store.record_failure("r4", plan("a1"), T.now_ms, CallFacts("", None, "again")) is None  # not held
    assert await store.record_failure("never-held", plan("a1"), T.now_ms, CallFacts("", None, "x")) is None
    assert (await store.settle(settle("a1", "r1", 400))).event is None  # a duplicate writes nothing
    later = await store.settle(settle("a1", "r5", 9, T.next_day))
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (400 + 300, 0)  # r4's hold is gone

    assert priced.event == CostEvent(
        request_id="r1", kind="settle", at_ms=T.now_ms, held_ms=T.now_ms, day=T.day, agent_id="a1", groups=(),
        tags={"feature": "t", "route": "/chat"}, cost_nanos=400, cost_source="usage", model_requested="gpt-4o",
        model="gpt-4o-2024-08-06", provider="openai", input_tokens=1000, cached_input_tokens=200,
        cache_write_tokens=100, output_tokens=300, reasoning_tokens=50, price_version="genai-prices-1",
        latency_ms=123)
    assert caller.event == CostEvent("r2", "settle", T.now_ms, None, T.day, "team-a", ("team",), {"feature": "f2"},
                                     77, "caller")
    assert estimate.event == CostEvent("r3", "settle", T.now_ms, T.now_ms, T.day, "a1", (), {"feature": "t"}, 300,
                                       "estimate")
    assert failed == CostEvent("r4", "release", T.now_ms, T.now_ms, T.day, "a1", (), {"feature": "t"}, 0, "caller",
                               model_requested="gpt-4o", latency_ms=5, error_code="RateLimitError:429")
    today = [priced.event, caller.event, estimate.event, failed]  # r1..r4: in order on every store
    assert await _events(store, T.day, T.day) == today
    assert await _events(store, T.next_day_key, T.next_day_key) == [later.event]
    assert await _events(store, T.day, T.next_day_key) == [*today, later.event]
    assert await _events(store, "2000-01-01", "2000-01-02") == []
    # The export and the report count the same money.
    assert sum(e.cost_nanos for e in today) == sum(cost for _, cost, _ in await store.report("agent", T.day, T.day))


@covers("hold", "expire", "settle", "cost_events")
async def test_a_charged_expiry_and_a_settle_after_it_are_cost_events_that_count_the_cost_once(store):
    ms = T.now_ms
    assert (await store.hold(HoldRequest("r1", 250, plan("a1"), ms, ms + 1_000, {"feature": "t"}))).allowed
    assert (await store.hold(HoldRequest("r2", 50, plan("a1"), ms, ms + 1_500, {}))).allowed
    swept: list[CostEvent] = []
    assert await store.expire(ms + 2_000, True, plan, swept) == 2
    late = await store.settle(SettleRequest("r1", 400, plan("a1"), ms + 3_000, {}, None, CallFacts("", 7)))
    events = sorted(await _events(store, T.day, T.day), key=lambda e: (e.request_id, e.at_ms))
    assert [(e.request_id, e.kind, e.cost_nanos, e.cost_source, e.held_ms) for e in events] == [
        ("r1", "expiry", 250, "estimate", ms), ("r1", "settle", 150, "caller", ms), ("r2", "expiry", 50, "estimate", ms)]
    assert swept == [events[0], events[2]]  # what the sweep wrote, for the sink
    assert events[0].tags == {"feature": "t"} and events[0].at_ms == ms + 2_000
    assert events[1] == late.event and late.event.latency_ms == 7
    # A sweep that releases writes no row.
    assert (await store.hold(HoldRequest("r3", 50, plan("a1"), ms, ms + 1_000, {}))).allowed
    released: list[CostEvent] = []
    assert await store.expire(ms + 4_000, False, plan, released) == 1
    assert released == [] and len(await _events(store, T.day, T.day)) == 3


@covers("settle", "cost_events")
async def test_cost_events_of_a_long_range_are_read_in_pages(store):
    for i in range(1205):  # past a page of every store
        await store.settle(settle("a1", f"r{i:04d}", 1))
    events = await _events(store, T.day, T.day)
    assert [e.request_id for e in events] == [f"r{i:04d}" for i in range(1205)]


# -- reports of many calls, against sums computed in the test (report_sums.py) ------------

def as_dicts(lines) -> list[dict]:
    return [{"key": r.key, "cost": r.cost_nanos, "calls": r.calls, "avg": r.avg_cost_nanos, "rate": r.cache_hit_rate,
             "p95": r.p95_input_tokens, "input": r.input_tokens, "cached": r.cached_input_tokens,
             "priced": r.priced_calls} for r in lines]


def settle_of(call: Call, now, plans: dict) -> SettleRequest:
    pricing = None if call.usage is None else Pricing("m", "openai", call.usage[0], call.usage[1], 10, 0, "v1")
    the_plan = plans.get((call.agent, now)) or plans.setdefault((call.agent, now), plan(call.agent, now))
    return SettleRequest(call.rid, call.cost, the_plan, store_suite._ms(now), call.tags, pricing)


@covers("hold", "expire", "settle", "report_parts")
async def test_reports_of_10000_random_calls_equal_sums_computed_from_the_calls(store):
    # 10,000 calls at the time base "now"; at the others (the same code at a
    # month's end and a DST change) 2,000, which keeps the suite quick.
    calls = random_calls(10_000 if T.name == "now" else 2_000, seed=20261122)
    # A few calls whose hold expired (charged the amount held) before a late
    # settle, on the same day: two ledger rows, one call, its cost what the settle said.
    calls[:25] = late = [replace(c, next_day=False) for c in calls[:25]]
    for call in late:
        await store.hold(HoldRequest(call.rid, 7_000_000, plan(call.agent), T.now_ms, T.now_ms + 5, call.tags))
    assert await store.expire(T.now_ms + 5, True, plan) == len(late)
    plans: dict = {}
    for start in range(0, len(calls), 50):  # 50 at a time: every store serves concurrent callers
        await asyncio.gather(*(store.settle(settle_of(c, T.next_day if c.next_day else T.now, plans))
                               for c in calls[start:start + 50]))
    today = [c for c in calls if not c.next_day]
    for by, key in (("customer", lambda c: c.tags.get("customer", "(none)")),
                    ("feature", lambda c: c.tags.get("feature", "(none)")), ("agent", lambda c: c.agent)):
        expected = expected_report(today, key)
        summary = summarize(await store.report_parts(by, T.day, T.day))
        assert as_dicts(summary.rows) == expected, by
        [total] = expected_report(today, lambda c: "TOTAL")
        assert as_dicts([summary.total]) == [total]
        assert total["cost"] == sum(r["cost"] for r in expected) and total["calls"] == len(today)
        top = summarize(await store.report_parts(by, T.day, T.day), top=5)
        assert as_dicts(top.rows) == expected[:5] and top.rows_in_all == len(expected)
        assert as_dicts([top.total]) == [total]  # the total covers every row, not only the top 5
    both_days = expected_report(calls, lambda c: c.tags.get("feature", "(none)"))
    assert as_dicts(summarize(await store.report_parts("feature", T.day, T.next_day_key)).rows) == both_days
    by_day = summarize(await store.report_parts("day", T.day, T.next_day_key))
    assert {r.key: r.calls for r in by_day.rows} == {T.day: len(today), T.next_day_key: len(calls) - len(today)}


@covers("settle", "tag_spend_by_hour")
async def test_spend_per_tag_value_and_hour_is_summed_from_the_ledger(store):
    since = T.now_ms - 3 * 3_600_000
    rows = [(since - 1, {"feature": "chat"}, 1),  # before the range: left out
            (since, {"feature": "chat", "customer": "acme"}, 10),
            (since + 1_000, {"feature": "chat"}, 20),
            (since + 3_600_000, {"feature": "search", "customer": "acme"}, 300),
            (since + 2 * 3_600_000 + 5, {"customer": "globex"}, 4_000),
            (since + 3 * 3_600_000 - 1, {"feature": "search"}, 50_000),
            (since + 3 * 3_600_000, {"feature": "chat"}, 600_000)]  # at until: left out
    for i, (at_ms, tags, cost) in enumerate(rows):  # in the order they happened
        await store.settle(SettleRequest(f"h{i}", cost, plan("a2"), at_ms, tags))
    found = await store.tag_spend_by_hour(["feature", "customer"], since, since + 3 * 3_600_000)
    assert [(s.tag, s.value, s.hour, s.cost_nanos) for s in found] == [
        ("customer", "acme", 0, 10), ("customer", "acme", 1, 300), ("customer", "globex", 2, 4_000),
        ("feature", "chat", 0, 30), ("feature", "search", 1, 300), ("feature", "search", 2, 50_000)]
    assert await store.tag_spend_by_hour(["route"], since, since + 3 * 3_600_000) == []


@covers("settle", "hold", "expire", "record_failure", "activity")
async def test_activity_counts_each_agents_request_ids_once_on_the_days_asked(store):
    await store.settle(settle("a1", "r1", 300))
    await store.hold(hold("a1", "r2", 100))
    assert await store.expire(T.now_ms + 60_000, True, plan) == 1  # a charged expiry: a row of r2
    await store.settle(settle("a1", "r2", 50))  # and its late settle: a second row, the same call
    await store.settle(settle("a2", "r1", 7))  # the same request id under another agent: another call
    await store.hold(hold("a2", "r3", 100))
    assert await store.record_failure("r3", plan("a2"), T.now_ms + 5, CallFacts(error_code="timeout"))
    await store.settle(settle("a2", "r4", 9, T.next_day))
    await store.settle(settle("team-a", "r5", 11, T.next_day))
    assert await store.activity(T.day, T.day) == [AgentActivity("a1", 2, T.now_ms + 60_000),
                                                  AgentActivity("a2", 2, T.now_ms + 5)]
    assert await store.activity(T.day, T.next_day_key) == [
        AgentActivity("a1", 2, T.now_ms + 60_000), AgentActivity("a2", 3, T.next_day_ms),
        AgentActivity("team-a", 1, T.next_day_ms)]
    assert await store.activity(T.next_day_key, T.next_day_key) == [
        AgentActivity("a2", 1, T.next_day_ms), AgentActivity("team-a", 1, T.next_day_ms)]
    assert await store.activity("2000-01-01", "2000-01-31") == []


@covers("settle", "record_failure", "hold", "recent_events", "cost_events")
async def test_recent_events_are_the_agents_newest_rows_newest_first(store):
    def at(ms: int):
        return T.now + timedelta(milliseconds=ms)

    for i in range(4):
        await store.settle(settle("a1", f"r{i}", 100 + i, at(i), pricing=priced("m1") if i % 2 else None))
        await store.settle(settle("a2", f"r{i}", 200 + i, at(i)))  # another agent's rows, interleaved
    await store.settle(settle("a1", "r4", 104, at(3)))  # the same time as r3: the one written later first
    await store.hold(hold("a1", "r5", 100, at(5)))
    failed = await store.record_failure("r5", plan("a1", at(5)), T.now_ms + 6, CallFacts(error_code="timeout"))
    await store.settle(settle("a1", "r6", 106, T.next_day))
    newest = await store.recent_events(plan("a1"), 3)
    assert [(e.request_id, e.kind, e.cost_nanos, e.at_ms) for e in newest] == [
        ("r6", "settle", 106, T.next_day_ms), ("r5", "release", 0, T.now_ms + 6), ("r4", "settle", 104, T.now_ms + 3)]
    assert newest[1] == failed
    written = [e async for e in store.cost_events(T.day, T.next_day_key) if e.agent_id == "a1"]
    every = await store.recent_events(plan("a1"), 50)
    assert [e.request_id for e in every] == ["r6", "r5", "r4", "r3", "r2", "r1", "r0"]
    assert sorted(every, key=lambda e: e.request_id) == sorted(written, key=lambda e: e.request_id)  # whole rows
    assert every[3].model == "m1" and every[4].model == ""
    assert [e.request_id for e in await store.recent_events(plan("a2"), 50)] == ["r3", "r2", "r1", "r0"]
    assert {e.agent_id for e in await store.recent_events(plan("a2"), 50)} == {"a2"}
    assert await store.recent_events(plan("team-a"), 10) == []
    assert await store.recent_events(plan("a1"), 0) == []


@covers("hold", "settle", "expire", "record_failure", "cost_events")
async def test_usage_sums_slice_the_calls_by_their_time_and_count_each_once(store):
    """Ledger.usage_sums (reconciliation's read): per provider, model and slice
    of time, by the call's hold time (else its row's); a backend that sums in
    the store (SQLite, in SQL) gives what the reference (from cost_events) gives."""
    hour = 3_600_000
    later = T.now + timedelta(hours=2)
    claude = Pricing("claude-x", "anthropic", 400, 100, 20, 0, "v1", cache_write_tokens=50)
    await store.hold(hold("a1", "r1", 500))
    await store.settle(replace(settle("a1", "r1", 300, T.now + timedelta(seconds=1), priced("gpt-4o")),
                               facts=CallFacts(model_requested="gpt-4o")))  # settled later: kept by its hold
    await store.hold(hold("a1", "r2", 100))
    assert await store.expire(T.now_ms + 60_000, True, plan) == 1  # charged: an estimate, no model
    await store.hold(hold("a2", "r3", 100))
    assert await store.record_failure("r3", plan("a2"), T.now_ms + 5, CallFacts(model_requested="gpt-4o"))
    await store.settle(settle("a2", "r4", 70, later, claude))  # no hold: kept by its settle's time
    await store.settle(settle("a2", "r5", 30, later, claude))
    await store.settle(settle("a2", "r6", 9, T.now + timedelta(hours=5), claude))  # past the last bound
    bounds = [T.now_ms - 1000, T.now_ms + 500, T.now_ms + 3 * hour, T.now_ms + 4 * hour]
    sums = await store.usage_sums(bounds, T.day, T.next_day_key)
    assert sums == [
        UsageSum("", "", 0, calls=1, cost_nanos=100, estimate_calls=1, estimate_nanos=100),
        UsageSum("", "gpt-4o", 0),  # the failed call: a row, no call, no cost
        UsageSum("anthropic", "claude-x", 1, calls=2, cost_nanos=100, input_tokens=800, cached_input_tokens=200,
                 cache_write_tokens=100, output_tokens=40),
        UsageSum("openai", "gpt-4o", 0, calls=1, cost_nanos=300, input_tokens=100, output_tokens=50),
    ]
    assert sums == await Ledger.usage_sums(store, bounds, T.day, T.next_day_key)  # the reference's reading
    assert await store.usage_sums(bounds, "2000-01-01", "2000-01-02") == []
    # Bounds that repeat (no margin): the empty slices are simply never used.
    flat = [T.now_ms - 1000, T.now_ms - 1000, T.now_ms + 4 * hour]
    assert {s.zone for s in await store.usage_sums(flat, T.day, T.next_day_key)} == {1}
