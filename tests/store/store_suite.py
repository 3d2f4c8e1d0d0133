"""The conformance suite's fixtures and helpers: the Store contract, once,
for every backend (alisaifee/limits' approach). Each case runs against every
store in STORES, and at every time base in TIME_BASES. The cases are in the
modules of SUITE_MODULES, one per contract (test_store_counters.py,
test_store_pauses.py, test_store_ledger.py, test_store_outbox.py,
test_store_reconciliations.py) and test_store_conformance.py (the lifecycle, and the checks of the suite itself).

No date here is fixed: Redis expires counters by its own clock, so a suite
pinned to a calendar date fails once the real clock passes it. Every time
base is derived from the real clock and lies ahead of it (or at it), so
every expiry a store computes is in the future:
- "now": the real time (UTC), and 01:00 UTC of the next day;
- "month-end": 23:30 local on the last day of next month, and 90 minutes
  later (the next day of the next month: daily and monthly rollover);
- "dst": 23:30 local on the eve of the next DST change of the zone (found
  with zoneinfo), and 90 minutes after the change (the next local day).

Every case declares the Store methods it covers (``@covers``); the store a
case gets records the calls it makes, and a case that does not call what it
declares fails. test_every_store_method_has_a_conformance_case fails when a
method of one of the contracts (budgetd.store.CONTRACTS) has no case.

Each store is a param of the ``store`` fixture with a marker, so one backend
runs alone: ``pytest tests/store -m memory`` (or sqlite, redis, cluster).
A new store adds its param to STORES and its URL to store_url(). A module of
cases imports the fixtures ``store`` and ``time_base`` from here (as
store_fixture and time_base_fixture).
"""

from __future__ import annotations

import dataclasses
import inspect
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
from budgetd.store import CONTRACTS, HoldRequest, Pricing, SettleRequest, Store, open_store

# The modules of cases (test_every_store_method_has_a_conformance_case reads them all).
SUITE_MODULES = ("test_store_conformance", "test_store_counters", "test_store_pauses", "test_store_ledger",
                 "test_store_outbox", "test_store_tags", "test_store_reconciliations")

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


def now_base() -> TimeBase:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    tomorrow = datetime.combine(now.date() + timedelta(days=1), clock_time(1), timezone.utc)
    return TimeBase("now", "UTC", now, tomorrow)


def month_end_base() -> TimeBase:
    zone = ZoneInfo("America/New_York")
    today = datetime.now(timezone.utc).astimezone(zone).date()
    last_day = _first_of_next_month(_first_of_next_month(today)) - timedelta(days=1)  # of next month
    now = datetime.combine(last_day, clock_time(23, 30), zone).astimezone(timezone.utc)
    return TimeBase("month-end", zone.key, now, now + timedelta(minutes=90))


def dst_base() -> TimeBase:
    zone = ZoneInfo("America/New_York")
    change = next_dst_change(zone, datetime.now(timezone.utc) + timedelta(days=2))
    eve = (change.astimezone(zone) - timedelta(days=1)).date()
    now = datetime.combine(eve, clock_time(23, 30), zone).astimezone(timezone.utc)
    return TimeBase("dst", zone.key, now, change + timedelta(minutes=90))


TIME_BASES = {"now": now_base, "month-end": month_end_base, "dst": dst_base}


class _CurrentTimeBase:
    """The time base of the running case (set by the ``time_base`` fixture),
    read through this one object so that the modules of cases can import it."""

    base: TimeBase = now_base()

    def __getattr__(self, name: str):
        return getattr(self.base, name)


T = _CurrentTimeBase()


@pytest.fixture(name="time_base", params=list(TIME_BASES))
def time_base_fixture(request) -> TimeBase:
    T.base = TIME_BASES[request.param]()
    return T.base


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

    def __init__(self, store: Store, backend: str, url: str = "") -> None:
        self._store = store
        self.backend = backend
        self.url = url  # another store on this URL is another replica (Redis; SQLite's file is locked)
        self.called: set[str] = set()

    def __getattr__(self, name: str):
        value = getattr(self._store, name)
        if name not in CONTRACT:
            return value

        if inspect.isasyncgenfunction(value):  # cost_events: iterated, not awaited
            def iterate(*args, **kwargs):
                self.called.add(name)
                return value(*args, **kwargs)

            return iterate

        async def call(*args, **kwargs):
            self.called.add(name)
            return await value(*args, **kwargs)

        return call


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


@pytest.fixture(name="store", params=STORES)
async def store_fixture(request, tmp_path, time_base):
    url = store_url(request, request.param, tmp_path)
    s = open_store(url)
    recording = Recording(s, request.param, url)
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


# -- notices and pricing --------------------------------------------------------------------

WARN_AT = (Decimal("0.5"), Decimal("0.8"))


def settle_warning(agent: str, rid: str, actual: int, now: datetime | None = None):
    return SettleRequest(rid, actual, dataclasses.replace(plan(agent, now), warn_at=WARN_AT), _ms(now or T.now), {})


async def drain(store, owner: str = "me") -> list[Notice]:
    claimed = await store.claim_notices(owner, T.now_ms + 60_000, 60_000, 100)  # notices of the next minute due too
    for item in claimed:
        await store.finish_notice(item, "sent", T.now_ms)
    return [item.notice for item in claimed]


def priced(model: str) -> Pricing:
    return Pricing(model, "openai", 100, 0, 50, 0, "v1")
