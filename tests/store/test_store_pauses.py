"""Conformance of the Pauses contract: an operator's pause and resume, cap
pauses lifted when their period ends, and reconcile after a config change,
with and without a cause (the suite's fixtures and helpers are in
store_suite.py)."""

from __future__ import annotations

import store_suite
from store_suite import USD, T, covers, drain, hold, lowered_plan, plan, settle, settle_warning

from budgetd.notices.model import Notice
from budgetd.store import CapChange

# The suite's fixtures, under their names store and time_base.
store_fixture, time_base_fixture = store_suite.store_fixture, store_suite.time_base_fixture


@covers("pause", "resume", "hold", "settle")
async def test_manual_pause_refuses_until_resumed_and_resume_lifts_cap_pauses_too(store):
    await store.pause(plan("a2"), "runaway loop", T.now_ms)
    refused = await store.hold(hold("a2", "r1", 1, T.next_day))
    assert refused.denial.kind == "paused" and refused.denial.pause.kind == "manual"
    assert refused.denial.pause.reason == "runaway loop"
    assert refused.denial.pause.since_ms == T.now_ms
    assert await store.resume(plan("a2"), T.now_ms)
    assert not await store.resume(plan("a2"), T.now_ms)
    assert (await store.hold(hold("a2", "r1", 1, T.next_day))).allowed

    await store.hold(hold("a1", "c1", USD))
    await store.settle(settle("a1", "c1", USD))
    assert await store.resume(plan("a1"), T.now_ms)
    # Resumed, but the day's cap is spent: refused by the cap itself.
    assert (await store.hold(hold("a1", "c2", 1))).denial.kind == "cap"


@covers("lift_lapsed_pauses", "settle", "hold", "claim_notices", "finish_notice")
async def test_a_lapsed_cap_pause_is_lifted_once_with_a_resumed_notice(store):
    await store.settle(settle_warning("a1", "r1", 10**9))
    await drain(store)
    assert await store.lift_lapsed_pauses(plan("a1"), T.now_ms) == []  # still its period
    written = await store.lift_lapsed_pauses(plan("a1", T.next_day), T.now_ms)
    assert [(n.kind, n.scope, n.window, n.period, n.extra["by"]) for n in written] == [
        ("resumed", "agent:a1", "daily", T.day, "rollover")]
    assert await store.lift_lapsed_pauses(plan("a1", T.next_day), T.now_ms) == []
    assert [n.kind for n in await drain(store)] == ["resumed"]
    # Lifted: a call in its own period is refused by the cap, not a pause.
    assert (await store.hold(hold("a1", "r2", 1))).denial.kind == "cap"


@covers("reconcile", "settle", "hold", "read", "claim_notices", "finish_notice")
async def test_a_cap_lowered_below_spend_pauses_and_raised_again_resumes_with_notices(store):
    await store.settle(settle("a1", "r1", 600_000_000))  # under 1 USD daily and 3 monthly
    await store.settle(settle("team-a", "r2", 600_000_000))  # under the group's 1 USD
    assert await store.reconcile(plan("a1"), T.now_ms) == []  # nothing to change
    assert await drain(store) == []

    # The caps lowered to 0.5: both of a1's windows pause, and the group's.
    written = await store.reconcile(lowered_plan("a1"), T.now_ms)
    assert [(n.kind, n.agent_id, n.scope, n.window, n.period, n.spent_nanos, n.cap_nanos, n.extra["by"])
            for n in written] == [("paused", "a1", "agent:a1", "daily", T.day, 600_000_000, USD // 2, "cap"),
                                  ("paused", "a1", "agent:a1", "monthly", T.month, 600_000_000, USD // 2, "cap")]
    assert all(n.at_ms == T.now_ms and "cap of 0.5 USD reached" in n.reason for n in written)
    [group] = await store.reconcile(lowered_plan("team-a"), T.now_ms)
    assert (group.kind, group.scope, group.window, group.spent_nanos) == ("paused", "group:team", "daily", 600_000_000)
    assert await drain(store) == [*written, group]  # the outbox has what was returned
    assert await store.reconcile(lowered_plan("a1"), T.now_ms + 1) == []  # paused already
    readout = await store.read(lowered_plan("a1"))
    assert sorted((p.kind, p.window, p.period, p.since_ms) for p in readout.pauses) == [
        ("cap", "daily", T.day, T.now_ms), ("cap", "monthly", T.month, T.now_ms)]
    refused = await store.hold(hold("a1", "r3", 1))
    assert refused.denial.kind == "paused" and refused.denial.pause.kind == "cap"
    assert (await store.hold(hold("team-b", "r4", 1))).denial.scope.key == "group:team"

    # Raised again above the spend: the pauses are lifted, one resumed notice per scope.
    resumed = await store.reconcile(plan("a1"), T.now_ms + 2)
    assert [(n.kind, n.scope, n.extra["by"], n.at_ms) for n in resumed] == [
        ("resumed", "agent:a1", "config", T.now_ms + 2)]
    assert (await store.read(plan("a1"))).pauses == []
    assert [n.kind for n in await store.reconcile(plan("team-a"), T.now_ms + 2)] == ["resumed"]
    assert await drain(store) == [*resumed, Notice(f"resumed:group:team:config:{T.now_ms + 2}", "resumed", "team-a",
                                                   "group:team", "daily", T.day, at_ms=T.now_ms + 2,
                                                   extra={"by": "config"})]
    assert await store.reconcile(plan("a1"), T.now_ms + 3) == []
    assert (await store.hold(hold("a1", "r5", 1))).allowed
    assert (await store.hold(hold("team-b", "r6", 1))).allowed


@covers("reconcile", "settle", "resume", "read", "claim_notices", "finish_notice")
async def test_a_reconcile_with_a_cause_looks_only_at_the_windows_it_names_and_says_what_changed(store):
    await store.settle(settle("a1", "r1", 600_000_000))
    daily = ("agent:a1", "daily")
    lowered = CapChange({daily: (USD, USD // 2)})
    [paused] = await store.reconcile(lowered_plan("a1"), T.now_ms, lowered)  # monthly is over too, but not named
    assert (paused.kind, paused.scope, paused.window, paused.period, paused.spent_nanos, paused.cap_nanos) == (
        "paused", "agent:a1", "daily", T.day, 600_000_000, USD // 2)
    assert paused.extra == {"by": "cap", "cause": "config", "cap_before_nanos": USD, "cap_after_nanos": USD // 2}
    assert await drain(store) == [paused]
    assert [(p.kind, p.window) for p in (await store.read(lowered_plan("a1"))).pauses] == [("cap", "daily")]
    # A cause naming another window leaves this one's pause alone; one naming it, raised, lifts it.
    assert await store.reconcile(plan("a1"), T.now_ms + 1, CapChange({("agent:a1", "monthly"): (USD // 2, 3 * USD)})) == []
    [resumed] = await store.reconcile(plan("a1"), T.now_ms + 2, CapChange({daily: (USD // 2, USD)}))
    assert (resumed.kind, resumed.scope, resumed.window, resumed.period, resumed.cap_nanos, resumed.at_ms) == (
        "resumed", "agent:a1", "daily", T.day, USD, T.now_ms + 2)
    assert resumed.extra == {"by": "config", "cause": "config", "cap_before_nanos": USD // 2, "cap_after_nanos": USD}
    assert (await store.read(plan("a1"))).pauses == []
    # An operator's resume stands against a cause that does not name the window.
    await store.reconcile(lowered_plan("a1"), T.now_ms + 3, lowered)
    assert await store.resume(lowered_plan("a1"), T.now_ms + 4)
    assert await store.reconcile(lowered_plan("a1"), T.now_ms + 5, CapChange({("group:team", "daily"): (1, 2)})) == []
    assert (await store.read(lowered_plan("a1"))).pauses == []
