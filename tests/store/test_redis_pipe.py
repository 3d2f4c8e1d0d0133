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

pytestmark = pytest.mark.redis  # each test starts a redis-server of its own

# From the real clock: the Redis server expires keys by its own clock, so a
# fixed date would age into keys that expire as they are written.
NOW = datetime.now(timezone.utc).replace(microsecond=0)
NOW_MS = int(NOW.timestamp() * 1000)
CONFIG = load_config_text("agents:\n  a1: {daily_usd: 1}\n")
PLAN = make_plan(Resolver(CONFIG).budget("a1"), NOW, CONFIG.zone)


def hold(request_id: str, nanos: int = 5) -> HoldRequest:
    return HoldRequest(request_id, nanos, PLAN, NOW_MS, NOW_MS + 60_000, {})


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
    assert (await store.settle(SettleRequest("r2", 3, PLAN, NOW_MS, {}))).counted_nanos == 3
    assert (await store.read(PLAN)).balance(PLAN.limits[0]).spent_nanos == 3


async def test_a_lost_connection_fails_its_calls_and_the_next_call_reconnects(server_and_store):
    server, store = server_and_store
    admin = redis.Redis.from_url(server.url, decode_responses=True)
    assert (await store.hold(hold("r1"))).allowed
    # The next hold is sent and waiting: Redis holds writes back while paused
    # (CLIENT PAUSE WRITE; CLIENT KILL still runs).
    admin.client_pause(5_000, all=False)
    waiting = asyncio.create_task(store.hold(hold("r2")))
    deadline = asyncio.get_running_loop().time() + 5
    while not (piped := [c for c in admin.client_list() if c["cmd"] == "evalsha" and "b" in c["flags"]]):
        assert asyncio.get_running_loop().time() < deadline, "the hold never reached Redis"
        await asyncio.sleep(0.01)
    # Its connection is lost under it: the call fails, as a lost connection (not a timeout).
    admin.client_kill_filter(_id=piped[0]["id"])
    with pytest.raises(StoreError, match="connection to redis lost"):
        await asyncio.wait_for(waiting, 10)
    admin.client_unpause()
    # The next call opens a new connection and is answered.
    assert (await asyncio.wait_for(store.hold(hold("r3")), 10)).allowed
    [reopened] = [c["id"] for c in admin.client_list() if c["cmd"] == "evalsha"]
    assert reopened != piped[0]["id"]
    # The hold that was waiting never ran: r1 and r3 are held, r2 is not.
    balance = (await store.read(PLAN)).balance(PLAN.limits[0])
    assert balance.reserved_nanos == 10


async def test_concurrent_calls_on_one_connection_get_their_own_replies(server_and_store):
    _, store = server_and_store
    # Amounts that differ per call: a reply given to the wrong caller shows.
    results = await asyncio.gather(*(store.hold(hold(f"r{i}", nanos=1000 + i)) for i in range(200)))
    assert [r.held_nanos for r in results] == [1000 + i for i in range(200)]
    settled = await asyncio.gather(*(store.settle(SettleRequest(f"r{i}", i, PLAN, NOW_MS, {}))
                                     for i in range(200)))
    assert [s.counted_nanos for s in settled] == list(range(200))
    balance = (await store.read(PLAN)).balance(PLAN.limits[0])
    assert (balance.spent_nanos, balance.reserved_nanos) == (sum(range(200)), 0)
