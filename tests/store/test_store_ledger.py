"""Conformance of the Ledger contract, and the reads of spend it goes with:
reports grouped in the store, retention, top models and spenders (the
suite's fixtures and helpers are in store_suite.py)."""

from __future__ import annotations

import asyncio
import time
from datetime import date, timedelta

import pytest
import store_suite
from store_suite import T, covers, plan, priced, settle

from budgetd.store import HoldRequest, SettleRequest

# The suite's fixtures, under their names store and time_base.
store_fixture, time_base_fixture = store_suite.store_fixture, store_suite.time_base_fixture


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


@covers("settle", "report", "trim_ledger")
async def test_reports_group_in_the_store_and_old_ledger_rows_are_trimmed(store):
    await store.settle(settle("a1", "r1", 300))
    await store.settle(settle("team-a", "r2", 700))
    await store.settle(settle("team-a", "r3", 11, T.next_day))
    assert await store.report("agent", T.day, T.day) == [("team-a", 700, 1), ("a1", 300, 1)]
    assert await store.report("group", T.day, T.day) == [("team", 700, 1)]
    assert await store.report("day", T.day, T.next_day_key) == [(T.day, 1000, 2), (T.next_day_key, 11, 1)]
    week = (date.fromisoformat(T.next_day_key) + timedelta(days=7)).isoformat()
    assert await store.report("agent", T.next_day_key, week) == [("team-a", 11, 1)]
    # A cutoff before every row drops none. (SQLite trims by a row's settle
    # time, Redis by when it wrote the entry: with one clock the two agree;
    # the cutoffs here are on the same side of both, even when Redis's clock
    # is behind this process's.)
    assert await store.trim_ledger(1) == 0
    await asyncio.sleep(0.01)
    assert await store.trim_ledger(max(T.next_day_ms, int(time.time() * 1000)) + 1) == 3
    assert await store.report("agent", T.day, week) == []


@pytest.mark.parametrize("expired_first", [False, True])
@covers("hold", "settle", "report")
async def test_a_settles_tags_are_added_to_its_holds_and_win(store, expired_first):
    """The ledger row carries the hold's tags with the settle's on top, for a
    held call and for a late settle after its hold expired."""
    await store.hold(HoldRequest("r1", 5, plan("a2"), T.now_ms, T.now_ms + 10,
                                 {"feature": "search", "team": "blue"}))
    if expired_first:
        assert await store.expire(T.now_ms + 10, False, plan) == 1
    await store.settle(SettleRequest("r1", 5, plan("a2"), T.now_ms, {"feature": "answer", "run": "7"}))
    day = T.day
    assert await store.report("feature", day, day) == [("answer", 5, 1)]
    assert await store.report("team", day, day) == [("blue", 5, 1)]
    assert await store.report("run", day, day) == [("7", 5, 1)]
    assert await store.report("model", day, day) == [("(no model)", 5, 1)]
