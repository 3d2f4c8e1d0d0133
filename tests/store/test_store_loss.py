"""A store that lost what it acknowledged says so, and acknowledges nothing
more: a SQLite file deleted or replaced under the daemon, a Redis restarted
without its data. Real files and real redis-server processes, killed and
started again; no store is mocked."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from datetime import UTC, datetime, timezone

import pytest
import redis

from budgetd.config import Resolver, load_config_text
from budgetd.plan import make_plan
from budgetd.reconcile.model import ReconcileDay
from budgetd.store import HoldRequest, SettleRequest, StoreError, StoreLost, open_store
from budgetd.store.redis import store as redis_store
from budgetd.notices.model import Notice

from redis_servers import RedisCluster, RedisServer

CONFIG = load_config_text("agents:\n  a1: {daily_usd: 100}\n  a2: {daily_usd: 100}\n")
RESOLVER = Resolver(CONFIG)


def plan(agent: str = "a1"):
    return make_plan(RESOLVER.budget(agent), datetime.now(timezone.utc), CONFIG.zone)


def now_ms() -> int:
    return int(time.time() * 1000)


def utc_day() -> str:
    return datetime.now(UTC).date().isoformat()


def hold(rid: str, amount: int = 10, agent: str = "a1") -> HoldRequest:
    ms = now_ms()
    return HoldRequest(rid, amount, plan(agent), ms, ms + 60_000)


def settle(rid: str, amount: int = 7, agent: str = "a1") -> SettleRequest:
    return SettleRequest(rid, amount, plan(agent), now_ms())


async def spent(store, agent: str = "a1") -> tuple[int, int]:
    p = plan(agent)
    balance = (await store.read(p)).balance(p.limits[0])
    return balance.spent_nanos, balance.reserved_nanos


def every_write(store):
    """One of each write of the contract, as awaitables."""
    p = plan()
    return {
        "hold": lambda: store.hold(hold("w-hold")),
        "settle": lambda: store.settle(settle("w-settle")),
        "release": lambda: store.release("w-hold", p, now_ms()),
        "pause": lambda: store.pause(p, "loop", now_ms()),
        "resume": lambda: store.resume(p, now_ms()),
        "reconcile": lambda: store.reconcile(p, now_ms()),
        "add_notice": lambda: store.add_notice(Notice(f"k{now_ms()}", "digest", at_ms=now_ms()), None),
        "expire": lambda: store.expire(now_ms(), True, lambda agent: plan(agent)),
        "trim_ledger": lambda: store.trim_ledger(0),
        "claim_reconciliation": lambda: store.claim_reconciliation("openai", utc_day(), "first", "me", now_ms(),
                                                                   60_000),
        "save_reconciliation": lambda: store.save_reconciliation(
            ReconcileDay("openai", utc_day(), "ok", "", now_ms(), passes=("first",)), "me"),
    }


async def assert_every_write_refused(store, match: str) -> None:
    for name, write in every_write(store).items():
        with pytest.raises(StoreLost, match=match):
            await write()
        assert name  # (named in the traceback when one does not raise)
    with pytest.raises(StoreLost, match=match):
        await store.ping()


# -- SQLite ---------------------------------------------------------------------------------


def remove_db(path) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass


@pytest.mark.sqlite
@pytest.mark.parametrize("synchronous", ["normal", "full"])  # batches on the loop, and on the connection thread
async def test_a_deleted_sqlite_file_fails_the_next_settle_naming_it_and_every_write_after(tmp_path, synchronous):
    path = tmp_path / "budgetd.db"
    store = open_store(f"sqlite://{path}?synchronous={synchronous}")
    await store.open()
    assert (await store.hold(hold("r1"))).allowed
    assert (await store.settle(settle("r1"))).counted_nanos == 7
    assert (await store.hold(hold("r2"))).allowed
    await store.ping()

    remove_db(path)
    with pytest.raises(StoreLost) as lost:
        await store.settle(settle("r2"))  # committed into the deleted file: not acknowledged
    message = str(lost.value)
    assert str(path) in message and "deleted" in message and "inode" in message
    assert "refusing writes" in message
    with pytest.raises(StoreLost, match=str(path)):
        await store.ping()
    # Several at once (one batch, or several): none is acknowledged.
    results = await asyncio.gather(*(store.settle(settle(f"c{i}")) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, StoreLost) for r in results), results
    await assert_every_write_refused(store, str(path))
    with pytest.raises(StoreLost):
        await store.read(plan())  # reads from a ghost file are not answered either
    await store.close()

    # Opened again, the store adopts the file as it is now: empty, nothing of the above in it.
    assert not path.exists()
    again = open_store(f"sqlite://{path}")
    await again.open()
    await again.ping()
    assert await spent(again) == (0, 0)
    assert await again.report("agent", "0000-01-01", "9999-12-31") == []
    await again.close()


@pytest.mark.sqlite
async def test_a_replaced_sqlite_file_is_lost_and_only_what_was_in_the_new_file_remains(tmp_path):
    path = tmp_path / "budgetd.db"
    store = open_store(f"sqlite://{path}")
    await store.open()
    assert (await store.settle(settle("r1", 100))).counted_nanos == 100
    assert (await store.hold(hold("r2"))).allowed
    # A copy of the file as it is now, put in its place (a restore from a backup).
    copy = tmp_path / "copy.db"
    with sqlite3.connect(path) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    source.close()
    target.close()
    for suffix in ("-wal", "-shm"):  # as a restore does: the old file's WAL does not belong to the copy
        os.unlink(f"{path}{suffix}")
    os.replace(copy, path)

    with pytest.raises(StoreLost) as lost:
        await store.settle(settle("r2", 30))
    assert str(path) in str(lost.value) and "replaced (inode" in str(lost.value)
    with pytest.raises(StoreLost):
        await store.hold(hold("r3"))
    with pytest.raises(StoreLost):
        await store.ping()
    await store.close()

    again = open_store(f"sqlite://{path}")
    await again.open()
    assert await spent(again) == (100, 10)  # r2 still held there: its refused settle was never acknowledged
    assert (await again.settle(settle("r2", 30))).counted_nanos == 30
    assert await spent(again) == (130, 0)
    await again.close()


@pytest.mark.sqlite
async def test_a_deleted_wal_file_is_found_by_the_next_ping(tmp_path):
    path = tmp_path / "budgetd.db"
    store = open_store(f"sqlite://{path}")
    await store.open()
    await store.settle(settle("r1"))
    os.unlink(f"{path}-wal")
    with pytest.raises(StoreLost, match=f"{path}-wal"):
        await store.ping()
    with pytest.raises(StoreLost):
        await store.settle(settle("r2"))
    await store.close()


@pytest.mark.sqlite
@pytest.mark.parametrize("synchronous, calls", [("normal", 700), ("full", 300)])
async def test_an_untouched_sqlite_file_is_never_reported_lost(tmp_path, synchronous, calls):
    """Checkpoints (the committer's every few hundred commits; SQLite's own
    under synchronous=full) keep the file and its WAL: no false alarm."""
    path = tmp_path / "budgetd.db"
    store = open_store(f"sqlite://{path}?synchronous={synchronous}")
    await store.open()
    for i in range(calls):
        await store.hold(hold(f"r{i}", 1))
        await store.settle(settle(f"r{i}", 1))
        if i % 100 == 0:
            await store.ping()
    await store.ping()
    assert await spent(store) == (calls, 0)
    await store.close()
    await store.open()  # closed and opened again: the same file
    await store.ping()
    await store.close()


# -- Redis ----------------------------------------------------------------------------------


async def poll_until_lost(store, timeout: float = 10) -> tuple[StoreLost, float]:
    started = time.monotonic()
    while True:
        try:
            await store.ping()
        except StoreLost as err:
            return err, time.monotonic() - started
        except StoreError:
            pass  # not answering yet
        assert time.monotonic() - started < timeout, "the loss was not reported in time"
        await asyncio.sleep(0.1)


async def ping_until_it_answers(store, timeout: float = 10) -> None:
    """Ping until the store answers; a StoreLost fails the test at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await store.ping()
        except StoreLost:
            raise
        except StoreError:
            assert time.monotonic() < deadline, "the store did not answer again"
            await asyncio.sleep(0.1)


@pytest.mark.redis
async def test_a_redis_restarted_without_its_data_is_lost_and_refuses_writes(tmp_path):
    server = RedisServer(tmp_path / "redis").start()  # --save "" --appendonly no
    store = open_store(server.url)
    try:
        await store.open()
        await store.ping()
        assert (await store.hold(hold("r1"))).allowed
        assert (await store.settle(settle("r1"))).counted_nanos == 7
        before = redis.Redis(port=server.port).info("server")["run_id"]

        server.kill()
        server.start()  # the same port, empty
        after = redis.Redis(port=server.port).info("server")["run_id"]
        lost, took = await poll_until_lost(store)
        message = str(lost)
        print(f"lost after {took:.2f}s: {message}")
        assert f"Redis at 127.0.0.1:{server.port} restarted without its data" in message
        assert f"run_id {before} → {after}" in message and "marker key" in message and "missing" in message
        assert "acknowledged before are gone" in message
        await assert_every_write_refused(store, "restarted without its data")
        with pytest.raises(StoreLost):
            await store.read(plan())
        await store.close()

        # Opened again, the store adopts Redis as it is now.
        await store.open()
        await store.ping()
        assert await spent(store) == (0, 0)
        assert (await store.hold(hold("r2"))).allowed
    finally:
        await store.close()
        server.stop()


@pytest.mark.redis
async def test_after_a_restart_without_data_the_first_write_is_refused_before_any_ping(tmp_path):
    """Every connection is new after a restart, and checks the marker before
    its first command: no hold or settle is acknowledged into the empty Redis."""
    server = RedisServer(tmp_path / "redis").start()
    store = open_store(server.url)
    try:
        await store.open()
        assert (await store.hold(hold("r1"))).allowed
        server.kill()
        server.start()
        # The first may still go to the old connection, which is gone: not
        # acknowledged either. The next connection checks the marker first.
        with pytest.raises(StoreError):
            await store.settle(settle("r1"))
        with pytest.raises(StoreLost, match="restarted without its data"):
            await store.settle(settle("r1"))
        assert redis.Redis(port=server.port).dbsize() == 0  # nothing was written into the emptied Redis
        with pytest.raises(StoreLost):
            await store.hold(hold("r2"))
    finally:
        await store.close()
        server.stop()


@pytest.mark.redis
async def test_a_redis_flushed_without_a_restart_is_lost(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    store = open_store(server.url)
    try:
        await store.open()
        await store.settle(settle("r1"))
        redis.Redis(port=server.port).flushall()
        lost, _ = await poll_until_lost(store, timeout=5)
        assert "lost its data" in str(lost) and "flushed" in str(lost)
        with pytest.raises(StoreLost):
            await store.hold(hold("r2"))
    finally:
        await store.close()
        server.stop()


@pytest.mark.redis
async def test_a_redis_restarted_with_its_data_is_not_lost(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(redis_store, "RUN_ID_CHECK_EVERY", 1)  # look at the run_id at every ping
    server = RedisServer(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always").start()
    store = open_store(server.url)
    try:
        await store.open()
        assert (await store.hold(hold("r1"))).allowed
        assert (await store.settle(settle("r1", 40))).counted_nanos == 40
        server.kill()
        server.start()
        caplog.set_level(logging.INFO, logger="budgetd.store")
        await ping_until_it_answers(store)  # it may be loading its file first
        for _ in range(3):
            await store.ping()
        assert await spent(store) == (40, 0)
        assert (await store.settle(settle("r1", 40))).duplicate
        assert (await store.hold(hold("r2"))).allowed
        assert any("restarted with its data" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    finally:
        await store.close()
        server.stop()


@pytest.mark.redis
async def test_a_redis_restarted_with_its_data_under_load_is_an_outage_not_a_loss(tmp_path):
    """Calls that run while Redis is down, and while it loads its data again,
    fail as a store error; none is reported lost, and every acknowledged
    settle is counted."""
    server = RedisServer(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always").start()
    filler = redis.Redis(port=server.port)
    # Loading takes a while. In batches: one script of 300,000 SETs can pass
    # Redis's busy-script threshold (5 s) on a loaded machine, and then every
    # other command is refused BUSY.
    for start in range(1, 300_001, 20_000):
        filler.eval("for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do redis.call('SET', 'fill:' .. i, i) end", 0,
                    start, start + 19_999)
    filler.bgrewriteaof()
    while filler.info("persistence")["aof_rewrite_in_progress"]:
        time.sleep(0.05)
    store = open_store(f"{server.url}?timeout=1")
    acked, unexpected, stop = [], [], asyncio.Event()

    async def load(worker: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            rid = f"w{worker}-{i}"
            try:
                if (await store.hold(hold(rid, 1))).allowed and not (await store.settle(settle(rid, 1))).duplicate:
                    acked.append(rid)
            except StoreLost as err:
                unexpected.append(repr(err))
                return
            except StoreError:
                await asyncio.sleep(0.01)
            except Exception as err:  # anything else is a bug
                unexpected.append(repr(err))
                return

    try:
        await store.open()
        workers = [asyncio.create_task(load(k)) for k in range(8)]
        await asyncio.sleep(0.5)
        server.kill()
        await asyncio.sleep(0.3)
        await asyncio.to_thread(server.start)  # the workers keep calling while it loads
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*workers)
        assert unexpected == [], unexpected[:3]
        await ping_until_it_answers(store)  # a pooled connection from before the restart fails once
        spent_nanos, _ = await spent(store)
        assert len(acked) > 50 and spent_nanos >= len(acked)
    finally:
        stop.set()
        await store.close()
        server.stop()


@pytest.mark.redis
async def test_replicas_on_one_redis_adopt_the_same_marker(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    first, second = open_store(server.url), open_store(server.url)
    try:
        await first.open()
        await second.open()  # finds the marker written by the first, and adopts it
        for _ in range(2):
            await first.ping()
            await second.ping()
        await first.settle(settle("r1"))
        server.kill()
        server.start()
        for store in (first, second):
            lost, _ = await poll_until_lost(store)
            assert "restarted without its data" in str(lost)
    finally:
        await first.close()
        await second.close()
        server.stop()


@pytest.mark.parametrize("persistence, warned", [
    ((), "keeps nothing on disk"),
    (("--appendonly", "yes"), None),
    (("--save", "3600 1"), None),
    (("--rename-command", "CONFIG", '""'), "could not tell whether Redis"),
])
@pytest.mark.redis
async def test_open_warns_when_redis_keeps_nothing_on_disk(tmp_path, caplog, persistence, warned):
    server = RedisServer(tmp_path / "redis", *persistence).start()
    store = open_store(server.url)
    try:
        with caplog.at_level(logging.WARNING, logger="budgetd.store"):
            await store.open()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        if warned is None:
            assert warnings == []
        else:
            [warning] = warnings
            assert warned in warning and f"127.0.0.1:{server.port}" in warning
        await store.ping()
    finally:
        await store.close()
        server.stop()


@pytest.mark.redis
async def test_an_unreachable_redis_at_open_is_checked_once_it_answers(tmp_path):
    server = RedisServer(tmp_path / "redis")  # not started yet
    store = open_store(f"{server.url}?timeout=0.5")
    try:
        await store.open()  # does not fail: health says NOT_SERVING until it answers
        with pytest.raises(StoreError):
            await store.ping()
        server.start()
        await store.ping()  # writes the marker now
        await store.settle(settle("r1"))
        server.kill()
        server.start()
        lost, _ = await poll_until_lost(store)
        assert "restarted without its data" in str(lost)
    finally:
        await store.close()
        server.stop()


@pytest.mark.redis
@pytest.mark.cluster
async def test_a_cluster_master_restarted_without_its_data_is_lost(tmp_path):
    """Each master holds a marker of its own: any one of them restarted empty is noticed."""
    cluster = RedisCluster(tmp_path / "cluster").start()
    store = open_store(cluster.url)
    try:
        await store.open()
        await store.ping()
        for agent in ("a1", "a2"):
            await store.settle(settle("r1", agent=agent))
        node = cluster.nodes[2]
        node.kill()
        node.start()  # keeps its slots (nodes.conf), not its data
        lost, took = await poll_until_lost(store, timeout=10)
        print(f"lost after {took:.2f}s: {lost}")
        assert f"Redis at 127.0.0.1:{node.port}" in str(lost) and "marker key" in str(lost)
        with pytest.raises(StoreLost):
            await store.hold(hold("r2"))
    finally:
        await store.close()
        cluster.stop()
