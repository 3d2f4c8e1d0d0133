"""A Redis that stops answering (here: SIGSTOP, as a stalled server or a
network partition looks) turns into a StoreError within the store's
timeout, and the store works again once Redis answers."""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timezone

import pytest
from redis_servers import RedisServer

from budgetd.config import Resolver, load_config_text
from budgetd.plan import make_plan
from budgetd.store import HoldRequest, StoreError, open_store

pytestmark = pytest.mark.redis  # each test starts a redis-server of its own

NOW = datetime.now(timezone.utc)  # Redis expires counters by its own clock: no fixed date
NOW_MS = int(NOW.timestamp() * 1000)
CONFIG = load_config_text("agents:\n  a1: {daily_usd: 1}\n")
PLAN = make_plan(Resolver(CONFIG).budget("a1"), NOW, CONFIG.zone)


async def test_a_stalled_redis_is_a_store_error_within_the_timeout(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    store = open_store(f"{server.url}?prefix=t&timeout=0.5")
    await store.open()
    await store.hold(HoldRequest("r1", 5, PLAN, NOW_MS, NOW_MS + 60_000, {}))
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(StoreError):
            await store.hold(HoldRequest("r2", 5, PLAN, NOW_MS, NOW_MS + 60_000, {}))
        waited = time.monotonic() - started
        assert waited < 5, f"the hold waited {waited:.1f} s on a stalled Redis (timeout 0.5 s)"
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    result = await store.hold(HoldRequest("r3", 5, PLAN, NOW_MS, NOW_MS + 60_000, {}))
    assert result.allowed
    await store.close()
    server.stop()
