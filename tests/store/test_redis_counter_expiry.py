"""Redis counters expire on their own (a period's end plus its retention):
holds and settles set the expiry only on a counter they may have created,
so every path that creates one must set it, or the key would live forever."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
import redis

from budgetd.config import Resolver, load_config_text
from budgetd.plan import make_plan
from budgetd.store import HoldRequest, SettleRequest
from budgetd.store.redis import COUNTER_RETENTION_MS, RedisStore

CONFIG = load_config_text("""
agents:
  capped: {daily_usd: 1, monthly_usd: 3}
  "team-*": {}
groups:
  team: {members: ["team-*"], daily_usd: 1}
""")
RESOLVER = Resolver(CONFIG)


@pytest.fixture
async def store(redis_server):
    prefix = f"x{uuid.uuid4().hex[:10]}"
    s = RedisStore(f"{redis_server.url}?prefix={prefix}")
    await s.open()
    s.raw = redis.Redis(port=redis_server.port, decode_responses=True)
    s.counters = lambda: sorted(s.raw.scan_iter(f"{prefix}:*:c:*"))
    yield s
    s.raw.close()
    await s.close()


def request(agent: str, rid: str, now: datetime):
    plan = make_plan(RESOLVER.budget(agent), now, CONFIG.zone)
    ms = int(now.timestamp() * 1000)
    return plan, HoldRequest(rid, 10, plan, ms, ms + 60_000), SettleRequest(rid, 20, plan, ms)


@pytest.mark.parametrize("agent", ["capped", "team-a"])  # capped windows, and uncapped ones with a group's cap
async def test_a_hold_gives_every_counter_it_creates_its_expiry(store, agent):
    now = datetime.now(timezone.utc)
    plan, hold, settle = request(agent, "r1", now)
    assert (await store.hold(hold)).allowed
    keys = store.counters()
    assert len(keys) == len(plan.counters)
    for limit in plan.limits:
        key = next(k for k in keys if k.endswith(":".join(limit.counter)))
        expected = int(limit.period.resets_at.timestamp() * 1000) + COUNTER_RETENTION_MS[limit.window.value]
        assert store.raw.pexpiretime(key) == expected, key
    await store.settle(settle)
    assert all(store.raw.pexpiretime(k) > 0 for k in store.counters())


async def test_a_settle_without_a_hold_gives_its_counters_their_expiry(store):
    _, _, settle = request("capped", "r2", datetime.now(timezone.utc))
    assert (await store.settle(settle)).counted_nanos == 20
    keys = store.counters()
    assert keys and all(store.raw.pexpiretime(k) > 0 for k in keys)


async def test_a_counter_gone_between_hold_and_settle_comes_back_with_its_expiry(store):
    _, hold, settle = request("capped", "r3", datetime.now(timezone.utc))
    assert (await store.hold(hold)).allowed
    keys = store.counters()
    store.raw.delete(*keys)  # as if they had expired while the call ran
    await store.settle(settle)
    assert store.counters() == keys
    assert all(store.raw.pexpiretime(k) > 0 for k in keys)
