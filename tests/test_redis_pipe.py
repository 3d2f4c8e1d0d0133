"""The Redis store's pipelined connection (holds, settles, releases): it
reloads a script Redis has forgotten, fails what waits when the connection
is lost and opens a new one for the next call, and answers concurrent calls
that share it each with its own reply."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
import redis
from redis_servers import RedisServer

from budgetd.config import Resolver, load_config_text
from budgetd.plan import make_plan
from budgetd.store import HoldRequest, SettleRequest, StoreError, open_store

NOW = datetime(2026, 11, 22, 15, 0, tzinfo=timezone.utc)
NOW_MS = int(NOW.timestamp() * 1000)
CONFIG = load_config_text("agents:\n  a1: {daily_usd: 1}\n")
PLAN = make_plan(Resolver(CONFIG).budget("a1"), NOW, CONFIG.zone)


def hold(request_id: str, nanos: int = 5) -> HoldRequest:
    return HoldRequest(request_id, "a1", nanos, PLAN, NOW_MS, NOW_MS + 60_000, {})


@pytest.fixture
async def server_and_store(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    store = open_store(f"{server.url}?prefix=pipe&timeout=1")
    await store.open()
    yield server, store
    await store.close()
    server.stop()


async def test_a_script_redis_forgot_is_loaded_again(server_and_store):
    server, store = server_and_store
    assert (await store.hold(hold("r1"))).allowed
    redis.Redis.from_url(server.url).script_flush()
    assert (await store.hold(hold("r2"))).allowed  # NOSCRIPT, then EVAL
    assert (await store.settle(SettleRequest("r2", "a1", 3, PLAN, NOW_MS, {}))).counted_nanos == 3
    assert (await store.read(PLAN)).balance(PLAN.limits[0]).spent_nanos == 3


async def test_a_lost_connection_fails_its_calls_and_the_next_call_reconnects(server_and_store):
    server, store = server_and_store
    assert (await store.hold(hold("r1"))).allowed
    redis.Redis.from_url(server.url).client_kill_filter(_type="normal", skipme=True)  # every client but this one
    outcomes = await asyncio.gather(store.hold(hold("r2")), return_exceptions=True)
    # The kill may land before or after the call is sent: a StoreError, or a hold on a new connection.
    assert isinstance(outcomes[0], StoreError) or outcomes[0].allowed
    assert (await store.hold(hold("r3"))).allowed


async def test_concurrent_calls_on_one_connection_get_their_own_replies(server_and_store):
    _, store = server_and_store
    # Amounts that differ per call: a reply given to the wrong caller shows.
    results = await asyncio.gather(*(store.hold(hold(f"r{i}", nanos=1000 + i)) for i in range(200)))
    assert [r.held_nanos for r in results] == [1000 + i for i in range(200)]
    settled = await asyncio.gather(*(store.settle(SettleRequest(f"r{i}", "a1", i, PLAN, NOW_MS, {}))
                                     for i in range(200)))
    assert [s.counted_nanos for s in settled] == list(range(200))
    balance = (await store.read(PLAN)).balance(PLAN.limits[0])
    assert (balance.spent_nanos, balance.reserved_nanos) == (sum(range(200)), 0)
