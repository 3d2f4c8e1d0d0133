"""Conformance of the Outbox contract: notices written in the step that
caused them, leased to one deliverer, retried, and followed as events (the
suite's fixtures and helpers are in store_suite.py)."""

from __future__ import annotations

import asyncio

import store_suite
from store_suite import T, covers, drain, plan, settle_warning

from budgetd.notices.model import Notice
from budgetd.store import QueuedNotice

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


@covers("add_notice", "claim_notices", "retry_notice", "finish_notice", "recent_notices")
async def test_recent_notices_follow_a_notice_from_pending_through_a_retry_to_sent(store):
    notice = Notice("k1", "digest", at_ms=T.now_ms)
    assert await store.add_notice(notice, None)
    assert await store.recent_notices(10) == [QueuedNotice(notice, "pending", 0, "", None)]
    [claimed] = await store.claim_notices("me", T.now_ms, 60_000, 10)
    assert await store.recent_notices(10) == [QueuedNotice(notice, "pending", 1, "", None)]
    await store.retry_notice(claimed, T.now_ms + 1000, T.now_ms, "HTTP 503 from Slack")
    assert await store.recent_notices(10) == [QueuedNotice(notice, "pending", 1, "HTTP 503 from Slack", None)]
    if store.backend.startswith("redis"):  # Redis times a lease by its own clock (idle time), not by now_ms
        await asyncio.sleep(1.2)
    [again] = await store.claim_notices("me", T.now_ms + 1200, 60_000, 10)
    await store.finish_notice(again, "sent", T.now_ms + 1300)
    # The error of the try that failed is kept: why it took two.
    assert await store.recent_notices(10) == [QueuedNotice(notice, "sent", 2, "HTTP 503 from Slack", T.now_ms + 1300)]
    assert await store.recent_notices(10, state="pending") == []


@covers("add_notice", "claim_notices", "finish_notice", "recent_notices")
async def test_recent_notices_are_newest_first_at_most_limit_and_filtered_by_state(store):
    written = [Notice(f"d{i}", "digest", at_ms=T.now_ms + i) for i in range(1, 5)]
    for notice in written:
        assert await store.add_notice(notice, None)
        await asyncio.sleep(0.002)  # Redis orders its entries by its own clock
    leased = {item.notice.key: item for item in await store.claim_notices("me", T.now_ms + 10, 60_000, 10)}
    assert sorted(leased) == ["d1", "d2", "d3", "d4"]
    await store.finish_notice(leased["d1"], "sent", T.now_ms + 20)
    await store.finish_notice(leased["d2"], "failed", T.now_ms + 21, "channel_not_found")
    await store.finish_notice(leased["d3"], "skipped", T.now_ms + 22)
    fresh = Notice("d5", "digest", at_ms=T.now_ms + 5)  # never delivered
    assert await store.add_notice(fresh, None)
    assert [q.notice.key for q in await store.recent_notices(10)] == ["d5", "d4", "d3", "d2", "d1"]
    assert [q.notice.key for q in await store.recent_notices(2)] == ["d5", "d4"]
    assert await store.recent_notices(0) == []
    assert await store.recent_notices(10, state="pending") == [
        QueuedNotice(fresh, "pending", 0, "", None), QueuedNotice(written[3], "pending", 1, "", None)]
    assert await store.recent_notices(1, state="pending") == [QueuedNotice(fresh, "pending", 0, "", None)]
    assert await store.recent_notices(10, state="failed") == [
        QueuedNotice(written[1], "failed", 1, "channel_not_found", T.now_ms + 21)]
    assert await store.recent_notices(10, state="sent") == [QueuedNotice(written[0], "sent", 1, "", T.now_ms + 20)]
    assert await store.recent_notices(10, state="skipped") == [
        QueuedNotice(written[2], "skipped", 1, "", T.now_ms + 22)]


@covers("add_notice", "recent_notices")
async def test_recent_notices_of_a_scope_and_of_an_agent_include_the_notices_about_the_agent(store):
    first = Notice("w1", "warning", "a1", "agent:a1", "daily", T.day, at_ms=T.now_ms)
    tipped = Notice("g1", "paused", "team-a", "group:team", "daily", T.day, at_ms=T.now_ms)  # team-a's call
    other = Notice("w2", "warning", "a2", "agent:a2", "daily", T.day, at_ms=T.now_ms)
    tag = Notice("t1", "paused", "", "customer:acme", reason="loop", at_ms=T.now_ms)
    second = Notice("w3", "warning", "a1", "agent:a1", "monthly", T.month, at_ms=T.now_ms + 1)
    for notice, owner in ((first, "a1"), (tipped, "team-a"), (other, "a2"), (tag, None), (second, "a1")):
        assert await store.add_notice(notice, plan(owner) if owner else None)
        await asyncio.sleep(0.002)  # Redis orders its entries by its own clock

    async def keys(scope: str, state: str | None = None) -> list[str]:
        return [q.notice.key for q in await store.recent_notices(10, scope=scope, state=state)]

    assert await keys("agent:a1") == ["w3", "w1"]
    assert await keys("agent:team-a") == ["g1"]
    assert await keys("group:team") == ["g1"]
    assert await keys("agent:a2") == ["w2"]
    assert await keys("customer:acme") == ["t1"]
    assert await keys("agent:nobody") == []
    assert await keys("agent:a1", "pending") == ["w3", "w1"]
    assert await keys("agent:a1", "sent") == []
    assert [q.notice.key for q in await store.recent_notices(1, scope="agent:a1")] == ["w3"]
