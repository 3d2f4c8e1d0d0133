"""The Store contract, once, for every backend (alisaifee/limits' approach):
each test runs against every store in STORES, and at every time base in
TIME_BASES.

No date here is fixed: Redis expires counters by its own clock, so a suite
pinned to a calendar date fails once the real clock passes it. Every time
base is derived from the real clock and lies ahead of it (or at it), so
every expiry a store computes is in the future:
- "now": the real time (UTC), and 01:00 UTC of the next day;
- "month-end": 23:30 local on the last day of next month, and 90 minutes
  later (the next day of the next month: daily and monthly rollover);
- "dst": 23:30 local on the eve of the next DST change of the zone (found
  with zoneinfo), and 90 minutes after the change (the next local day).

Every test declares the Store methods it covers (``@covers``); the store a
test gets records the calls it makes, and a test that does not call what it
declares fails. test_every_store_method_has_a_conformance_case fails when a
method of one of the contracts (budgetd.store.CONTRACTS) has no case.

Each store is a param of the ``store`` fixture with a marker, so one backend
runs alone: ``pytest tests/store -m memory`` (or sqlite, redis, cluster).
A new store adds its param to STORES and its URL to store_url().
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from datetime import time as clock_time
from decimal import Decimal
from functools import cached_property
from zoneinfo import ZoneInfo

import pytest

from budgetd.config import Resolver, load_config_text
from budgetd.notices.model import Notice
from budgetd.plan import make_plan
from budgetd.store import (
    CONTRACTS,
    CapChange,
    HoldRequest,
    Pricing,
    RequestConflict,
    SettleRequest,
    Store,
    StoreError,
    open_store,
)

# The memory store first: the reference the others are held to.
STORES = [
    pytest.param("memory", marks=pytest.mark.memory),
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("redis-cluster", marks=[pytest.mark.redis, pytest.mark.cluster]),
]
USD = 10**9
CONTRACT = frozenset().union(*(contract.__abstractmethods__ for contract in CONTRACTS))

# No warnings from these caps (settle_warning's plans bring their own warn_at):
# the tests that drain the outbox count the notices they expect.
BUDGETS = """
warn_at: []
agents:
  a1: {daily_usd: 1, monthly_usd: 3}
  a2: {daily_usd: 100}
  "team-*": {daily_usd: 10}
groups:
  team: {members: ["team-*"], daily_usd: 1}
"""
# The same agents with lower caps: a config change that a reconcile applies.
LOWERED = """
warn_at: []
agents:
  a1: {daily_usd: "0.5", monthly_usd: "0.5"}
  a2: {daily_usd: 100}
  "team-*": {daily_usd: 10}
groups:
  team: {members: ["team-*"], daily_usd: "0.5"}
"""


# -- time bases ------------------------------------------------------------------------------


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _first_of_next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def next_dst_change(zone: ZoneInfo, after: datetime) -> datetime:
    """The first instant after ``after`` at which the zone's UTC offset changes."""
    t = after.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    offset = t.astimezone(zone).utcoffset()
    for _ in range(24 * 800):
        following = t + timedelta(hours=1)
        if following.astimezone(zone).utcoffset() != offset:
            while (t + timedelta(minutes=1)).astimezone(zone).utcoffset() == offset:  # to the minute
                t += timedelta(minutes=1)
            return t + timedelta(minutes=1)
        t = following
    raise AssertionError(f"{zone} has no DST change within two years")


@dataclass(frozen=True)
class TimeBase:
    name: str
    timezone: str
    now: datetime  # aware, UTC: when the test's calls happen
    next_day: datetime  # a time in the next local day

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def config(self):
        return load_config_text(f"timezone: {self.timezone}\n{BUDGETS}")

    @cached_property
    def resolver(self) -> Resolver:
        return Resolver(self.config)

    @cached_property
    def lowered(self) -> Resolver:
        return Resolver(load_config_text(f"timezone: {self.timezone}\n{LOWERED}"))

    @property
    def now_ms(self) -> int:
        return _ms(self.now)

    @property
    def next_day_ms(self) -> int:
        return _ms(self.next_day)

    def local(self, day: date, hour: int = 12) -> datetime:
        return datetime.combine(day, clock_time(hour), self.zone).astimezone(timezone.utc)

    @property
    def day(self) -> str:
        return self.now.astimezone(self.zone).date().isoformat()

    @property
    def next_day_key(self) -> str:
        return self.next_day.astimezone(self.zone).date().isoformat()

    @property
    def month(self) -> str:
        return self.day[:7]

    def days_in_one_month(self, n: int) -> list[datetime]:
        """``n`` times on consecutive local days of one month, none before now."""
        first = self.now.astimezone(self.zone).date()
        if (_first_of_next_month(first) - first).days < n:
            first = _first_of_next_month(first)
        times = [self.local(first + timedelta(days=k)) for k in range(n)]
        return [max(t, self.now) for t in times]

    @property
    def another_month(self) -> datetime:
        """A time in neither now's day nor its month (and after both)."""
        return self.local(_first_of_next_month(self.next_day.astimezone(self.zone).date()))


def _now_base() -> TimeBase:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    tomorrow = datetime.combine(now.date() + timedelta(days=1), clock_time(1), timezone.utc)
    return TimeBase("now", "UTC", now, tomorrow)


def _month_end_base() -> TimeBase:
    zone = ZoneInfo("America/New_York")
    today = datetime.now(timezone.utc).astimezone(zone).date()
    last_day = _first_of_next_month(_first_of_next_month(today)) - timedelta(days=1)  # of next month
    now = datetime.combine(last_day, clock_time(23, 30), zone).astimezone(timezone.utc)
    return TimeBase("month-end", zone.key, now, now + timedelta(minutes=90))


def _dst_base() -> TimeBase:
    zone = ZoneInfo("America/New_York")
    change = next_dst_change(zone, datetime.now(timezone.utc) + timedelta(days=2))
    eve = (change.astimezone(zone) - timedelta(days=1)).date()
    now = datetime.combine(eve, clock_time(23, 30), zone).astimezone(timezone.utc)
    return TimeBase("dst", zone.key, now, change + timedelta(minutes=90))


TIME_BASES = {"now": _now_base, "month-end": _month_end_base, "dst": _dst_base}


def test_the_time_bases_are_ahead_of_the_clock_and_cross_what_they_say():
    real = datetime.now(timezone.utc) - timedelta(seconds=5)
    for make in TIME_BASES.values():
        base = make()
        assert base.now >= real and base.next_day > base.now, base
        assert base.next_day_key == (date.fromisoformat(base.day) + timedelta(days=1)).isoformat(), base
        assert all(t >= base.now for t in base.days_in_one_month(4)), base
    month_end = _month_end_base()
    assert month_end.next_day_key.endswith("-01") and month_end.next_day_key[:7] != month_end.month
    dst = _dst_base()
    assert dst.now.astimezone(dst.zone).utcoffset() != dst.next_day.astimezone(dst.zone).utcoffset()


# The time base the running test uses (set by the ``store`` fixture).
T: TimeBase = _now_base()


@pytest.fixture(params=list(TIME_BASES))
def time_base(request) -> TimeBase:
    global T
    T = TIME_BASES[request.param]()
    return T


# -- coverage of the contract --------------------------------------------------------------


def covers(*methods: str):
    """Declare the Store methods a test exercises (and asserts on)."""
    unknown = set(methods) - CONTRACT
    assert not unknown, f"not methods of the Store contract: {unknown}"

    def mark(fn):
        fn.covers = frozenset(methods)
        return fn

    return mark


class Recording:
    """The store under test, recording which contract methods a test called."""

    def __init__(self, store: Store, backend: str) -> None:
        self._store = store
        self.backend = backend
        self.called: set[str] = set()

    def __getattr__(self, name: str):
        value = getattr(self._store, name)
        if name not in CONTRACT:
            return value

        async def call(*args, **kwargs):
            self.called.add(name)
            return await value(*args, **kwargs)

        return call


def _conformance_tests():
    return {name: fn for name, fn in globals().items() if name.startswith("test_") and inspect.isfunction(fn)}


def test_every_store_method_has_a_conformance_case():
    tests = _conformance_tests()
    on_store = {name: fn for name, fn in tests.items() if "store" in inspect.signature(fn).parameters}
    undeclared = sorted(name for name, fn in on_store.items() if not getattr(fn, "covers", None))
    assert not undeclared, f"tests that declare no Store methods with @covers: {undeclared}"
    declared_off_store = sorted(name for name, fn in tests.items() if getattr(fn, "covers", None) and name not in on_store)
    assert not declared_off_store, f"@covers on tests that do not run on the store fixture: {declared_off_store}"
    covered = frozenset().union(*(fn.covers for fn in on_store.values()))
    missing = {contract.__name__: sorted(contract.__abstractmethods__ - covered) for contract in CONTRACTS}
    assert not any(missing.values()), f"contract methods no conformance test calls: {missing}"


def test_the_store_contract_is_the_union_of_the_contracts():
    """So that covering every contract covers the whole Store."""
    assert Store.__abstractmethods__ == CONTRACT
    assert all(issubclass(Store, contract) for contract in CONTRACTS)


# -- the store ------------------------------------------------------------------------------


def plan(agent: str, now: datetime | None = None):
    return make_plan(T.resolver.budget(agent), now or T.now, T.zone)


def lowered_plan(agent: str, now: datetime | None = None):
    return make_plan(T.lowered.budget(agent), now or T.now, T.zone)


def hold(agent: str, rid: str, amount: int, now: datetime | None = None, ttl_ms: int = 60_000):
    ms = _ms(now or T.now)
    return HoldRequest(rid, amount, plan(agent, now), ms, ms + ttl_ms, {"feature": "t"})


def settle(agent: str, rid: str, actual: int | None, now: datetime | None = None, pricing: Pricing | None = None):
    return SettleRequest(rid, actual, plan(agent, now), _ms(now or T.now), {}, pricing)


def store_url(request, name: str, tmp_path) -> str:
    prefix = f"t{uuid.uuid4().hex[:12]}"  # each test its own keys on the shared servers
    if name == "memory":
        return "memory://"
    if name == "sqlite":
        return f"sqlite://{tmp_path}/store.db"
    if name == "redis":
        return f"{request.getfixturevalue('redis_server').url}?prefix={prefix}"
    return f"{request.getfixturevalue('redis_cluster').url}&prefix={prefix}"


@pytest.fixture(params=STORES)
async def store(request, tmp_path, time_base):
    s = open_store(store_url(request, request.param, tmp_path))
    recording = Recording(s, request.param)
    await recording.open()
    yield recording
    await recording.close()
    declared = getattr(request.function, "covers", frozenset())
    never_called = sorted(declared - recording.called)
    if never_called:
        pytest.fail(f"{request.function.__name__} declares it covers {never_called} but never called them")


async def balances(store, agent: str, now: datetime | None = None):
    p = plan(agent, now)
    readout = await store.read(p)
    return {(lm.scope.key, lm.window.value): (readout.balance(lm).spent_nanos, readout.balance(lm).reserved_nanos)
            for lm in p.limits}


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


@covers("ping", "open", "close", "settle", "read")
async def test_ping_answers_and_what_was_written_outlives_a_close_and_open(store):
    await store.ping()
    await store.settle(settle("a1", "r1", 300))
    await store.close()
    with pytest.raises(StoreError):
        await store.ping()  # closed: no answer
    await store.open()
    await store.ping()
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (300, 0)
    assert (await store.settle(settle("a1", "r1", 300))).duplicate


# -- the outbox ---------------------------------------------------------------------------

WARN_AT = (Decimal("0.5"), Decimal("0.8"))


def settle_warning(agent: str, rid: str, actual: int, now: datetime | None = None):
    return SettleRequest(rid, actual, dataclasses.replace(plan(agent, now), warn_at=WARN_AT), _ms(now or T.now), {})


async def drain(store, owner: str = "me") -> list[Notice]:
    claimed = await store.claim_notices(owner, T.now_ms + 60_000, 60_000, 100)  # notices of the next minute due too
    for item in claimed:
        await store.finish_notice(item, "sent", T.now_ms)
    return [item.notice for item in claimed]


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


def priced(model: str) -> Pricing:
    return Pricing(model, "openai", 100, 0, 50, 0, "v1")


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
