"""The Redis store's Python ↔ Lua interface (budgetd/store/redis/scripts.py):
each script reads its KEYS and ARGV by the names its encoder writes them
under, its notices are the ones the Python notices module builds, and a
script that fails leaves the keyspace as it was."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources

import pytest
import redis

from budgetd.config import Resolver, load_config_text
from budgetd.notices import model as notices
from budgetd.notices.model import Notice
from budgetd.plan import make_plan, threshold_nanos
from budgetd.reconcile.model import ReconcileDay
from budgetd.store import CapChange, HoldRequest, PauseRecord, SettleRequest, StoreError, rules
from budgetd.store.redis import RedisStore, outcomes, scripts

USD = 10**9
CONFIG = load_config_text("""
warn_at: [0.5, 0.8]
agents:
  a1: {daily_usd: 1, monthly_usd: 3}
  "team/*": {daily_usd: 10}
groups:
  team: {members: ["team/*"], daily_usd: 1}
""")
RESOLVER = Resolver(CONFIG)
NAME = re.compile(r"\b([KAC]_[A-Z_]+)\b")
LOCAL_NAME = re.compile(r"\blocal\s+([KAC]_[A-Z_]+)\s*=")


def lua(part: str) -> str:
    return resources.files("budgetd.store.redis").joinpath("lua", f"{part}.lua").read_text()


def plan_of(agent: str, now: datetime | None = None):
    return make_plan(RESOLVER.budget(agent), now or datetime.now(UTC), CONFIG.zone)


# -- the layout: the Lua's names against the encoders' ----------------------------------------


@pytest.mark.parametrize("script", scripts.SCRIPTS, ids=lambda s: s.name)
def test_the_script_reads_its_keys_and_arguments_by_the_names_of_its_layout(script):
    own = lua(script.name)
    parts = "".join(lua(part) for part in script.parts)
    defined = set(script.names()) | set(LOCAL_NAME.findall(own))
    used = set(NAME.findall(own + parts))
    assert used <= defined, f"{script.name}.lua reads names its layout does not define: {used - defined}"
    assert set(script.names()) <= used, f"names of the layout {script.name}.lua never reads: " \
                                        f"{set(script.names()) - used}"
    # No bare offsets: every index into KEYS or ARGV goes through a name.
    assert not re.search(r"(KEYS|ARGV)\[\s*\d", own + parts)


def positions(script, args, **expected):
    for name, value in expected.items():
        assert args[script.arg(name) - 1] == value, name


def test_hold_args_are_where_the_hold_script_reads_them():
    plan = plan_of("a1")
    limits = scripts.counter_limits(plan, plan.counters, 0)
    tail = scripts.hold_tail(3, limits)
    args = scripts.hold_args(agent="ag", request_id="rq", amount=7, now_ms=11, deadline_ms=13, tags="{t}",
                             counters_json="[c]", call_ttl_ms=17, tail=tail)
    positions(scripts.HOLD, args, agent="ag", request_id="rq", amount=7, now_ms=11, deadline_ms=13, tags="{t}",
              counters_json="[c]", call_ttl_ms=17, pause_count=3, counter_count=len(plan.counters))
    at, fields = scripts.HOLD.arg("per_counter") - 1, len(scripts.HOLD.per_counter)
    for i, (cap, expiry) in enumerate(zip(limits.caps, limits.expiries, strict=True)):
        assert args[at + i * fields + scripts.HOLD.per_counter.index("cap")] == cap
        assert args[at + i * fields + scripts.HOLD.per_counter.index("expiry")] == expiry
    assert args[at + len(plan.counters) * fields] == limits.pause_fields_json
    assert len(args) == at + len(plan.counters) * fields + 1


def test_settle_args_are_where_the_settle_script_reads_them():
    plan = plan_of("team/a")
    limits = scripts.counter_limits(plan, plan.counters, 0)
    tail = scripts.settle_tail(2, "day", "[g]", limits)
    args = scripts.settle_args(agent="ag", request_id="rq", actual=5, now_ms=11, tags="{t}", counters_json="[c]",
                               estimate=19, call_ttl_ms=17, pricing="{p}", tail=tail)
    positions(scripts.SETTLE, args, agent="ag", request_id="rq", actual=5, now_ms=11, tags="{t}", counters_json="[c]",
              estimate=19, call_ttl_ms=17, pricing="{p}", ledger_maxlen=scripts.LEDGER_MAXLEN, pause_count=2,
              counter_count=len(plan.counters), day="day", groups="[g]", threshold_count=len(plan.warn_at))
    stride = len(scripts.SETTLE.per_counter) + len(plan.warn_at)
    at = scripts.SETTLE.arg("per_counter") - 1
    for i, limit in enumerate(plan.limits):
        entry = args[at + i * stride:at + (i + 1) * stride]
        assert entry[scripts.SETTLE.per_counter.index("cap")] == (-1 if limit.cap_nanos is None else limit.cap_nanos)
        thresholds = entry[len(scripts.SETTLE.per_counter):]
        if limit.cap_nanos is None:
            assert thresholds == (-1,) * len(plan.warn_at)
        else:
            assert thresholds == tuple(threshold_nanos(limit.cap_nanos, f) for f in plan.warn_at)
    assert args[at + len(plan.counters) * stride] == limits.limits_json
    assert len(args) == at + len(plan.counters) * stride + 1


def test_the_other_encoders_put_each_argument_under_its_name():
    plan = plan_of("a1")
    limits = scripts.counter_limits(plan, plan.counters, 0)
    positions(scripts.RELEASE, scripts.release_args(agent="ag", request_id="rq", counters_json="[c]", now_ms=11,
                                                    counter_count=5),
              agent="ag", request_id="rq", counters_json="[c]", now_ms=11, counter_count=5)
    positions(scripts.EXPIRE, scripts.expire_args(agent="ag", request_id="rq", now_ms=11, charge=True,
                                                  counters_json="[c]", pause_count=1, day="d", groups="[g]",
                                                  limits=limits),
              agent="ag", request_id="rq", now_ms=11, charge=1, counters_json="[c]", pause_count=1,
              counter_count=len(plan.counters), ledger_maxlen=scripts.LEDGER_MAXLEN, day="d", groups="[g]",
              limits=limits.limits_json)
    notice = notices.resumed("a1", "agent:a1", "operator", 11)
    positions(scripts.PAUSE, scripts.pause_args("resume", "v", notice), action="resume", value="v",
              notice=notice.to_json(), notice_key=notice.key)
    positions(scripts.OUTCOME, scripts.outcome_args("g", "1-0", "pending", 2, None, 5, "e"), group="g",
              entry_id="1-0", state="pending", attempts=2, done_ms="", idle_ms=5, error="e")
    positions(scripts.NOTIFY, scripts.notify_args(notice), notice=notice.to_json(), notice_key=notice.key,
              marker_ttl_ms=scripts.NOTICE_MARKER_MS)
    lift = scripts.lift_args(notice, ["daily:x", "monthly:y"])
    positions(scripts.LIFT, lift, notice=notice.to_json(), notice_key=notice.key,
              marker_ttl_ms=scripts.NOTICE_MARKER_MS, fields="daily:x")
    assert lift[scripts.LIFT.arg("fields"):] == ("monthly:y",)
    targets = rules.reconcile_targets(plan, None)
    args = scripts.reconcile_args(plan, targets, 11)
    positions(scripts.RECONCILE, args, now_ms=11, pause_count=len(plan.scopes), agent="a1")
    windows = json.loads(args[scripts.RECONCILE.arg("windows") - 1])
    assert [(w["scope"], w["window"], w["period"]) for w in windows] == [limit.counter for limit, _ in targets]
    positions(scripts.RECONCILE_CLAIM, scripts.reconcile_claim_args("openai|d", "first", "me", 11, 60),
              field="openai|d", owner="me", now_ms=11, lease_ms=60, keep_ms=scripts.RECONCILE_LEASE_KEEP_MS,
              **{"pass": "first"})
    result = ReconcileDay("openai", "d", "ok", "", 11, passes=("first", "second"))
    positions(scripts.RECONCILE_SAVE, scripts.reconcile_save_args("openai|d", result, "me"), field="openai|d",
              result=result.to_json(), passes='["first", "second"]', owner="me")
    positions(scripts.RECONCILE_READ, scripts.reconcile_read_args("a", "b", "openai"), since_day="a", until_day="b",
              provider="openai")
    assert scripts.reconcile_read_args("a", "b", None) == ("a", "b")  # every provider


# -- every script once against a real Redis -------------------------------------------------------


@pytest.fixture
async def store(redis_server):
    prefix = f"s{uuid.uuid4().hex[:10]}"
    s = RedisStore(f"{redis_server.url}?prefix={prefix}")
    await s.open()
    s.raw = redis.Redis(port=redis_server.port, decode_responses=True)
    s.keyspace = lambda: {k: s.raw.dump(k) for k in s.raw.scan_iter(f"{prefix}:*")}
    s.outbox = lambda: [Notice.from_json(f["payload"]) for _, f in s.raw.xrange(f"{prefix}:{{all}}:outbox")]
    s.payloads = lambda: [f["payload"] for _, f in s.raw.xrange(f"{prefix}:{{all}}:outbox")]
    yield s
    s.raw.close()
    await s.close()


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


async def test_every_script_runs_and_its_reply_decodes(store):
    now = datetime.now(UTC)
    plan, now_ms = plan_of("a1", now), ms(now)
    assert (await store.hold(HoldRequest("r1", USD // 10, plan, now_ms, now_ms + 60_000))).allowed  # hold
    settled = await store.settle(SettleRequest("r1", USD // 5, plan, now_ms))  # settle
    assert (settled.counted_nanos, settled.duplicate, settled.paused) == (USD // 5, False, ())
    assert (await store.hold(HoldRequest("r2", 1, plan, now_ms, now_ms + 60_000))).allowed
    assert await store.release("r2", plan, now_ms)  # release
    assert (await store.hold(HoldRequest("r3", 1, plan, now_ms, now_ms + 1))).allowed
    assert await store.expire(now_ms + 2, True, lambda agent: plan) == 1  # expire
    await store.pause(plan, "looks odd", now_ms)  # pause
    denial = (await store.hold(HoldRequest("r4", 1, plan, now_ms, now_ms + 60_000))).denial
    assert denial is not None and denial.pause == PauseRecord("agent:a1", "manual", "", "", "looks odd", now_ms)
    assert await store.resume(plan, now_ms)  # pause, resuming
    lowered = replace(plan, limits=(replace(plan.limits[0], cap_nanos=USD // 10), *plan.limits[1:]))
    written = await store.reconcile(lowered, now_ms)  # reconcile
    assert [n.kind for n in written] == ["paused"] and written[0].spent_nanos == USD // 5 + 1
    tomorrow = plan_of("a1", plan.limits[0].period.resets_at + timedelta(minutes=1))
    lifted = await store.lift_lapsed_pauses(tomorrow, now_ms)  # lift
    assert [n.kind for n in lifted] == ["resumed"]
    assert await store.add_notice(notices.resumed("a1", "agent:a1", "operator", now_ms + 1), plan)  # notify
    assert not await store.add_notice(notices.resumed("a1", "agent:a1", "operator", now_ms + 1), plan)
    day = now.date().isoformat()
    assert await store.claim_reconciliation("openai", day, "first", "me", now_ms, 60_000)  # reconcile_claim
    assert not await store.claim_reconciliation("openai", day, "first", "you", now_ms, 60_000)
    result = ReconcileDay("openai", day, "ok", "", now_ms, passes=("first",))
    await store.save_reconciliation(result, "me")  # reconcile_save
    assert await store.reconciliations(day, day) == [result]  # reconcile_read


async def test_the_notices_of_a_settle_are_those_the_notices_module_builds(store):
    now = datetime.now(UTC)
    plan, now_ms = plan_of("team/a", now), ms(now)
    await store.settle(SettleRequest("r1", USD * 6 // 10, plan, now_ms))  # crosses 50% of the group's daily cap
    result = await store.settle(SettleRequest("r2", USD * 5 // 10, plan, now_ms + 1))  # reaches it
    group_daily = plan.limits[2]
    assert group_daily.scope.key == "group:team" and group_daily.cap_nanos == USD
    pause = PauseRecord("group:team", "cap", "daily", group_daily.period.key, rules.cap_pause_reason(group_daily),
                        now_ms + 1)
    assert result.paused == (pause,)
    agent_daily = plan.limits[0]  # 10 USD: 1.1 USD is below every threshold
    assert agent_daily.cap_nanos == 10 * USD
    assert store.payloads() == [
        notices.warning("team/a", group_daily, Decimal("0.5"), USD * 6 // 10, now_ms).to_json(),
        notices.paused_at_cap("team/a", pause, USD * 11 // 10, USD).to_json(),
    ]


async def test_the_notices_of_a_reconcile_are_the_rules(store):
    now = datetime.now(UTC)
    plan, now_ms = plan_of("a1", now), ms(now)
    await store.settle(SettleRequest("r1", USD // 2, plan, now_ms))
    daily = plan.limits[0]
    lowered = replace(plan, limits=(replace(daily, cap_nanos=USD // 4), *plan.limits[1:]))
    cause = CapChange({("agent:a1", "daily"): (USD, USD // 4)})
    before = len(store.payloads())
    written = await store.reconcile(lowered, now_ms, cause)
    _, paused, _ = rules.reconcile_notices(lowered, lowered.limits[0], (USD, USD // 4), now_ms)
    assert written == [replace(paused, spent_nanos=USD // 2)]
    assert store.payloads()[before:] == [written[0].to_json()]
    raised = await store.reconcile(plan, now_ms + 1, CapChange({("agent:a1", "daily"): (USD // 4, USD)}))
    _, _, resumed = rules.reconcile_notices(plan, daily, (USD // 4, USD), now_ms + 1)
    assert raised == [resumed] and store.payloads()[before + 1:] == [resumed.to_json()]


# -- a script that fails leaves nothing ----------------------------------------------------------


def counter_key(store, plan, index: int) -> str:
    return store._counter_key("all", plan.limits[index].counter)


@pytest.mark.parametrize(("step", "spoiled"), [
    ("hold", "last counter"), ("hold", "holds"), ("hold", "pause hash"), ("hold", "call"),
    ("settle", "last counter"), ("settle", "holds"), ("settle", "call"), ("settle", "ledger"),
])
async def test_a_hold_or_settle_that_fails_writes_nothing(store, step, spoiled):
    """A key of another type where the script reads or writes: the script
    fails, and the keyspace is as it was (DUMP of every key)."""
    now = datetime.now(UTC)
    plan, now_ms = plan_of("team/a", now), ms(now)
    assert (await store.hold(HoldRequest("r1", 5, plan, now_ms, now_ms + 60_000))).allowed
    assert (await store.settle(SettleRequest("r1", 5, plan, now_ms))).counted_nanos == 5
    if step == "settle":
        assert (await store.hold(HoldRequest("r2", 5, plan, now_ms, now_ms + 60_000))).allowed
    key = {"last counter": counter_key(store, plan, len(plan.limits) - 1), "holds": store._key("all", "holds"),
           "pause hash": store._pause_keys("all", plan)[1], "call": store._key("all", "r", "team/a", "r2"),
           "ledger": store._key("all", "ledger")}[spoiled]
    store.raw.delete(key)
    store.raw.set(key, "not what budgetd keeps here")
    before = store.keyspace()
    with pytest.raises(StoreError, match="WRONGTYPE|is a string"):
        if step == "hold":
            await store.hold(HoldRequest("r2", 5, plan, now_ms, now_ms + 60_000))
        else:
            await store.settle(SettleRequest("r2", 5, plan, now_ms))
    assert store.keyspace() == before


async def test_a_counter_field_that_is_not_a_number_fails_the_settle_before_any_write(store):
    now = datetime.now(UTC)
    plan, now_ms = plan_of("team/a", now), ms(now)
    assert (await store.hold(HoldRequest("r1", 5, plan, now_ms, now_ms + 60_000))).allowed
    store.raw.hset(counter_key(store, plan, len(plan.limits) - 1), "spent", "many")
    before = store.keyspace()
    with pytest.raises(StoreError, match="not a number"):
        await store.settle(SettleRequest("r1", 5, plan, now_ms))
    with pytest.raises(StoreError, match="not a number"):
        await store.release("r1", plan, now_ms)
    with pytest.raises(StoreError, match="not a number"):
        await store.expire(now_ms + 120_000, True, lambda agent: plan)
    assert store.keyspace() == before


async def test_a_malformed_argument_fails_the_script_before_any_write(store):
    now = datetime.now(UTC)
    plan, now_ms = plan_of("a1", now), ms(now)
    assert (await store.hold(HoldRequest("r1", 5, plan, now_ms, now_ms + 60_000))).allowed
    before = store.keyspace()
    enc = store._plan_keys(plan)
    keys = (enc.call_prefix + "r1", *enc.settle_keys)
    tail = list(enc.settle_tail)
    tail[tail.index(scripts.LEDGER_MAXLEN) + 8] = "soon"  # the first counter's first warning threshold
    args = scripts.settle_args(agent="a1", request_id="r1", actual=5, now_ms=now_ms, tags="{}",
                               counters_json=plan.counters_json, estimate=1, call_ttl_ms=1000, pricing="",
                               tail=tuple(tail))
    with pytest.raises(StoreError, match="not a number"):
        await store._run(scripts.SETTLE, keys, args)
    assert store.keyspace() == before


async def test_a_reconcile_that_fails_writes_nothing(store):
    now = datetime.now(UTC)
    plan, now_ms = plan_of("a1", now), ms(now)
    await store.settle(SettleRequest("r1", USD // 2, plan, now_ms))
    store.raw.delete(store._key("all", "outbox"))
    store.raw.set(store._key("all", "outbox"), "not a stream")
    before = store.keyspace()
    lowered = replace(plan, limits=tuple(replace(limit, cap_nanos=1) if limit.cap_nanos else limit
                                         for limit in plan.limits))
    with pytest.raises(StoreError, match="not a stream"):
        await store.reconcile(lowered, now_ms)
    assert store.keyspace() == before


async def test_the_reconciliation_scripts_that_fail_write_nothing(store):
    """A claim and a save whose keys are of another type, and stored passes
    that are not a list of names: the script fails before its first write."""
    now = datetime.now(UTC)
    now_ms, day = ms(now), now.date().isoformat()
    field = f"openai|{day}"
    leases = store._reconcile_key("leases", field)
    assert await store.claim_reconciliation("openai", day, "first", "me", now_ms, 60_000)
    store.raw.delete(leases)
    store.raw.set(leases, "not a hash")
    before = store.keyspace()
    with pytest.raises(StoreError, match="not a hash"):
        await store.claim_reconciliation("openai", day, "second", "me", now_ms, 60_000)
    with pytest.raises(StoreError, match="not a hash"):
        await store.save_reconciliation(ReconcileDay("openai", day, "ok", "", now_ms, passes=("first",)), "me")
    assert store.keyspace() == before
    store.raw.delete(leases)
    store.raw.hset(store._reconcile_key("passes"), field, '[1]')
    before = store.keyspace()
    with pytest.raises(StoreError, match="not a string"):
        await store.save_reconciliation(ReconcileDay("openai", day, "ok", "", now_ms, passes=("first",)), "me")
    assert store.keyspace() == before


async def test_reconciliation_keys_share_one_hash_tag_under_the_prefix(store):
    now = datetime.now(UTC)
    now_ms, day = ms(now), now.date().isoformat()
    assert await store.claim_reconciliation("openai", day, "first", "me", now_ms, 60_000)
    await store.save_reconciliation(ReconcileDay("openai", day, "ok", "", now_ms, passes=("first",)), "you")
    keys = sorted(k for k in store.raw.scan_iter(f"{store.prefix}:*") if ":rc:" in k)
    assert keys == [f"{store.prefix}:{{all}}:rc:days", f"{store.prefix}:{{all}}:rc:leases:openai|{day}",
                    f"{store.prefix}:{{all}}:rc:passes"]
    ttl = store.raw.pttl(keys[1])  # a lease hash goes by itself a while after its longest lease
    assert 60_000 < ttl <= 60_000 + scripts.RECONCILE_LEASE_KEEP_MS
    assert json.loads(store.raw.hget(keys[2], f"openai|{day}")) == ["first"]


# -- status reads in batches ---------------------------------------------------------------------


async def test_read_many_reads_every_agent_in_one_round_trip(store, monkeypatch):
    now = datetime.now(UTC)
    now_ms = ms(now)
    plans = [plan_of(agent, now) for agent in ("a1", "team/a", "team/b")]
    for i, plan in enumerate(plans):
        await store.settle(SettleRequest(f"r{i}", (i + 1) * 10, plan, now_ms))
    await store.pause(plans[1], "why not", now_ms)
    calls = []
    real_call = store._call

    async def counted(awaitable):
        calls.append(awaitable)
        return await real_call(awaitable)

    monkeypatch.setattr(store, "_call", counted)
    states = await store.read_many(plans)
    assert len(calls) == 1
    monkeypatch.undo()
    assert states == [await store.read(plan) for plan in plans]
    assert [s.balance(p.limits[0]).spent_nanos for s, p in zip(states, plans, strict=True)] == [10, 20, 30]
    assert [p.reason for p in states[1].pauses] == ["why not"] and not states[0].pauses


async def test_the_notice_scripts_that_fail_write_nothing(store):
    """pause, resume (pause.lua), lift and notify, with an outbox that is not a stream. (A pause adds the
    agent to the index of paused agents before its script, as holds add to theirs: an index entry too many
    is harmless, so only the keys the scripts write are compared.)"""
    now = datetime.now(UTC)
    plan, now_ms = plan_of("a1", now), ms(now)
    await store.settle(SettleRequest("r1", USD, plan, now_ms))  # a cap pause, to be lifted by a new period
    store.raw.delete(store._key("all", "outbox"))
    store.raw.set(store._key("all", "outbox"), "not a stream")
    def tagged():
        return {k: v for k, v in store.keyspace().items() if "{all}" in k}

    before = tagged()
    tomorrow = plan_of("a1", plan.limits[0].period.resets_at + timedelta(minutes=1))
    for step in (store.pause(plan, "why", now_ms), store.resume(plan, now_ms),
                 store.lift_lapsed_pauses(tomorrow, now_ms),
                 store.add_notice(notices.resumed("a1", "agent:a1", "operator", now_ms), plan)):
        with pytest.raises(StoreError, match="not a stream"):
            await step
        assert tagged() == before


async def test_outcomes_go_with_their_trimmed_entries_and_an_entry_acked_without_one_shows_as_sent(store,
                                                                                                   monkeypatch):
    """The outcomes hash is pruned to the stream's entries once over its limit;
    an entry a budgetd that kept no outcome acknowledged is told as sent."""
    monkeypatch.setattr(outcomes, "OUTCOMES_LIMIT", 2)
    now_ms = ms(datetime.now(UTC))
    for i in range(4):
        await store.add_notice(Notice(f"k{i}", "digest", at_ms=now_ms), None)
    claimed = await store.claim_notices("me", now_ms, 60_000, 10)
    outbox, kept = store._key("all", "outbox"), store._key("all", "outcomes")
    for item in claimed[:2]:
        await store.finish_notice(item, "sent", now_ms)
    store.raw.xtrim(outbox, maxlen=2, approximate=False)  # k0 and k1 go
    await store.finish_notice(claimed[2], "failed", now_ms, "bad")  # the third outcome: over the limit
    assert store.raw.hkeys(kept) == [claimed[2].id.split(" ")[1]]
    k3_id = claimed[3].id.split(" ")[1]
    store.raw.xack(outbox, "delivery", k3_id)  # as a budgetd before outcomes were kept
    found = await store.recent_notices(10)
    assert [(q.notice.key, q.state, q.attempts, q.last_error) for q in found] == [
        ("k3", "sent", 1, ""), ("k2", "failed", 1, "bad")]
    assert found[0].done_ms == int(k3_id.split("-")[0])
