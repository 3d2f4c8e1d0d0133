"""Conformance of the Outbox contract: notices written in the step that
caused them, leased to one deliverer, retried, and followed as events (the
suite's fixtures and helpers are in store_suite.py)."""

from __future__ import annotations

import asyncio

import store_suite
from store_suite import T, covers, drain, plan, settle_warning

from budgetd.notices.model import Notice

# The suite's fixtures, under their names store and time_base.
store_fixture, time_base_fixture = store_suite.store_fixture, store_suite.time_base_fixture


@covers("settle", "claim_notices", "finish_notice")
async def test_thresholds_warn_once_and_the_cap_pauses_with_one_notice(store):
    await store.settle(settle_warning("a1", "r1", 600_000_000))  # 60%: crosses 50%
    await store.settle(settle_warning("a1", "r2", 100_000_000))  # 70%: nothing
    await store.settle(settle_warning("a1", "r3", 150_000_000))  # 85%: crosses 80%
    await store.settle(settle_warning("a1", "r4", 150_000_000))  # 100%: paused
    await store.settle(settle_warning("a1", "r5", 1))
    notices = await drain(store)
    assert [(n.kind, n.window, n.period, n.extra.get("threshold")) for n in notices] == [
        ("warning", "daily", T.day, "0.5"), ("warning", "daily", T.day, "0.8"), ("paused", "daily", T.day, None)]
    assert notices[1].spent_nanos == 850_000_000 and notices[1].cap_nanos == 10**9
    assert notices[2].spent_nanos == 10**9 and notices[2].agent_id == "a1" and "daily cap" in notices[2].reason
    assert notices[2].at_ms == T.now_ms
    assert await drain(store) == []


@covers("add_notice", "claim_notices", "retry_notice", "finish_notice", "outbox_depth")
async def test_a_leased_notice_goes_to_one_owner_and_a_retry_comes_back(store):
    assert await store.outbox_depth() == 0
    assert await store.add_notice(Notice("k1", "digest", at_ms=T.now_ms), None)
    assert not await store.add_notice(Notice("k1", "digest", at_ms=T.now_ms), None)  # written once
    assert await store.add_notice(Notice("k2", "anomaly", "a1", at_ms=T.now_ms), plan("a1"))
    assert await store.outbox_depth() == 2
    first, second = await store.claim_notices("replica-a", T.now_ms, 60_000, 10)
    assert sorted([first.notice.key, second.notice.key]) == ["k1", "k2"]
    assert first.attempts == second.attempts == 1
    assert await store.claim_notices("replica-b", T.now_ms, 60_000, 10) == []  # leased to replica-a
    assert await store.outbox_depth() == 2  # leased is not delivered
    if first.notice.key == "k2":
        first, second = second, first
    await store.finish_notice(second, "skipped", T.now_ms)
    assert await store.outbox_depth() == 1
    await store.retry_notice(first, T.now_ms + 1000, T.now_ms, "503")
    assert await store.outbox_depth() == 1
    if store.backend.startswith("redis"):  # Redis times a lease by its own clock (idle time), not by now_ms
        await asyncio.sleep(1.2)
    [again] = await store.claim_notices("replica-b", T.now_ms + 1200, 60_000, 10)
    assert again.notice == Notice("k1", "digest", at_ms=T.now_ms) and again.attempts == 2
    await store.finish_notice(again, "sent", T.now_ms)
    assert await store.claim_notices("replica-a", T.now_ms + 10**8, 60_000, 10) == []
    assert await store.outbox_depth() == 0


@covers("events_after", "pause", "resume", "add_notice")
async def test_operator_pause_and_resume_write_notices_and_events_follow_the_outbox(store):
    _, cursor = await store.events_after(None)
    assert (await store.events_after(cursor))[0] == []
    await store.pause(plan("a2"), "loop", T.now_ms)
    assert await store.resume(plan("a2"), T.now_ms + 1)
    events, cursor = await store.events_after(cursor)
    assert [(e.kind, e.agent_id, e.extra["by"], e.at_ms) for e in events] == [
        ("paused", "a2", "operator", T.now_ms), ("resumed", "a2", "operator", T.now_ms + 1)]
    assert events[0].reason == "loop"
    assert (await store.events_after(cursor))[0] == []
    await store.add_notice(Notice("d1", "digest", at_ms=T.now_ms), None)
    events, cursor = await store.events_after(cursor)
    assert [e.key for e in events] == ["d1"]
    _, fresh = await store.events_after(None)  # None: from now on
    assert (await store.events_after(fresh))[0] == []
