"""What a reload reconciles: only windows whose cap changed, on every store,
with notices that say what the config did; and which agents a config edit
changes (budgetd.config.diff), so that an unrelated edit reconciles none."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from budgetd.config import Resolver, load_config_text
from budgetd.config.diff import a_member, diff, diff_agents
from budgetd.notices.messages import Context, render
from budgetd.plan import make_plan
from budgetd.store import CapChange, HoldRequest, SettleRequest, open_store

USD = 10**9
UTC = timezone.utc


@pytest.fixture(params=[pytest.param("memory", marks=pytest.mark.memory),
                        pytest.param("sqlite", marks=pytest.mark.sqlite),
                        pytest.param("redis", marks=pytest.mark.redis)])
async def store(request, tmp_path):
    if request.param == "memory":
        s = open_store("memory://")
    elif request.param == "sqlite":
        s = open_store(f"sqlite://{tmp_path}/store.db")
    else:
        s = open_store(f"{request.getfixturevalue('redis_server').url}?prefix=t{uuid.uuid4().hex[:12]}")
    await s.open()
    yield s
    await s.close()


def plan(agent: str, daily: str, group_daily: str | None = None):
    group = f"groups:\n  team: {{members: [{agent}], daily_usd: {group_daily}}}\n" if group_daily else ""
    resolver = Resolver(load_config_text(f"agents:\n  {agent}: {{daily_usd: {daily}}}\n{group}"))
    return make_plan(resolver.budget(agent), datetime.now(UTC), UTC)


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def text(notice) -> str:
    return render(notice, Context())[0]


def daily(before: float | None, after: float | None, scope: str = "agent:a1") -> CapChange:
    nanos = lambda usd: None if usd is None else int(usd * 100) * USD // 100  # noqa: E731
    return CapChange({(scope, "daily"): (nanos(before), nanos(after))})


async def spend(store, p, nanos: int) -> None:
    t = now_ms()
    await store.settle(SettleRequest(f"r{uuid.uuid4().hex}", nanos, p, t))


async def test_lowered_then_raised_cap_pauses_and_resumes_and_the_notices_name_the_change(store):
    await spend(store, plan("a1", "1000"), 45_200_000_000)  # $45.20
    [paused] = await store.reconcile(plan("a1", "40"), now_ms(), daily(50, 40))
    assert (paused.kind, paused.window, paused.spent_nanos, paused.cap_nanos) == ("paused", "daily", 45_200_000_000,
                                                                                40 * USD)
    assert paused.extra == {"by": "cap", "cause": "config", "cap_before_nanos": 50 * USD, "cap_after_nanos": 40 * USD}
    assert ("*a1* is paused because its daily cap was lowered from $50.00 to $40.00 in the config, "
            "at or below its spend of $45.20.") in text(paused)
    assert "5E+1" not in paused.reason and "cap of 40 USD reached" in paused.reason

    [resumed] = await store.reconcile(plan("a1", "100"), now_ms() + 1, daily(40, 100))
    assert (resumed.kind, resumed.cap_nanos, resumed.extra["by"]) == ("resumed", 100 * USD, "config")
    assert "*a1* is running again because its daily cap was raised from $40.00 to $100.00 in the config." \
        in text(resumed)
    assert "operator" not in text(resumed)


async def test_a_cause_reconciles_only_the_windows_it_names_so_an_operators_resume_stands(store):
    p = plan("a1", "40")
    await spend(store, plan("a1", "1000"), 45 * USD)
    assert [n.kind for n in await store.reconcile(p, now_ms(), daily(50, 40))] == ["paused"]
    assert await store.resume(p, now_ms())  # the operator lets it run over its cap
    # An edit that changed another window (monthly, a cap added far above the spend) leaves daily alone.
    monthly = CapChange({("agent:a1", "monthly"): (None, 10_000 * USD)})
    assert await store.reconcile(p, now_ms() + 1, monthly) == []
    assert (await store.read(p)).pauses == []
    t = now_ms() + 2
    assert (await store.hold(HoldRequest("r-after", 1, p, t, t + 60_000))).allowed is False  # over its cap
    assert (await store.read(p)).pauses == []  # refused by the cap, not paused again
    # Without a cause (as before), every capped window is looked at: it pauses again.
    assert [n.kind for n in await store.reconcile(p, now_ms() + 3)] == ["paused"]


async def test_a_removed_cap_lifts_its_pause(store):
    await spend(store, plan("a1", "1000"), 45 * USD)
    await store.reconcile(plan("a1", "40"), now_ms(), daily(50, 40))
    uncapped = make_plan(Resolver(load_config_text("agents:\n  a1: {}\n")).budget("a1"), datetime.now(UTC), UTC)
    [resumed] = await store.reconcile(uncapped, now_ms() + 1, daily(40, None))
    assert "*a1* is running again because its daily cap of $40.00 was removed in the config." in text(resumed)
    t = now_ms() + 2
    assert (await store.hold(HoldRequest("r2", USD, uncapped, t, t + 60_000))).allowed


async def test_a_group_cap_lowered_pauses_the_group_and_says_so(store):
    await spend(store, plan("a1", "1000", group_daily="1000"), 30 * USD)
    [paused] = await store.reconcile(plan("a1", "1000", group_daily="25.5"), now_ms(),
                                     daily(1000, 25.5, scope="group:team"))
    assert paused.scope == "group:team"
    assert ("group *team* (via *a1*) is paused because its daily cap was lowered from $1,000.00 to $25.50 "
            "in the config, at or below its spend of $30.00.") in text(paused)


# -- which agents an edit changes ------------------------------------------------------------

BASE = """
defaults: {daily_usd: 5}
agents:
  a1: {daily_usd: 50}
  a2: {daily_usd: 50, estimate_usd: 0.01}
  "bot-*": {daily_usd: 7}
groups:
  team: {members: [a1, "bot-*"], daily_usd: 500}
"""


def resolvers(edited: str) -> tuple[Resolver, Resolver]:
    return Resolver(load_config_text(BASE)), Resolver(load_config_text(edited))


def test_an_edit_that_changes_no_cap_changes_no_agent():
    old, new = resolvers(BASE.replace("estimate_usd: 0.01", "estimate_usd: 0.02")
                         + 'slack: {webhook_url: "http://127.0.0.1:1/hook"}\n')
    assert not diff(old, new)


def test_one_cap_changed_is_one_agent_and_window_with_before_and_after():
    old, new = resolvers(BASE.replace("a1: {daily_usd: 50}", "a1: {daily_usd: 40, monthly_usd: 900}"))
    changes = diff(old, new)
    assert changes.agents == {"a1": {("agent:a1", "daily"): (50 * USD, 40 * USD),
                                     ("agent:a1", "monthly"): (None, 900 * USD)}}
    assert not changes.groups and not changes.fallback_changed


def test_an_agent_dropped_from_the_file_falls_back_to_defaults_and_counts():
    old, new = resolvers(BASE.replace("  a2: {daily_usd: 50, estimate_usd: 0.01}\n", ""))
    assert diff(old, new).agents == {"a2": {("agent:a2", "daily"): (50 * USD, 5 * USD)}}


def test_defaults_or_patterns_changed_look_at_the_active_agents_they_budget():
    old, new = resolvers(BASE.replace("defaults: {daily_usd: 5}", "defaults: {daily_usd: 6}"))
    changes = diff(old, new)
    assert changes.fallback_changed and not changes.agents
    # Of the agents active today, those on defaults changed; a1 (listed) and bot-x (a pattern) did not.
    assert diff_agents(old, new, ["a1", "bot-x", "walk-in"]) == {
        "walk-in": {("agent:walk-in", "daily"): (5 * USD, 6 * USD)}}


def test_a_group_cap_changed_is_reconciled_through_one_member():
    old, new = resolvers(BASE.replace("daily_usd: 500", "daily_usd: 400"))
    changes = diff(old, new)
    assert changes.groups == {"team": {("group:team", "daily"): (500 * USD, 400 * USD)}}
    assert changes.agents == {}
    assert a_member(new, "team", []) == "a1"
    only_pattern = Resolver(load_config_text(BASE.replace('[a1, "bot-*"]', '["bot-*"]')))
    assert a_member(only_pattern, "team", ["a2", "bot-7"]) == "bot-7"
