"""The SQLite store's group commit: quick batches on the event loop keep the
WAL bounded (checkpoints off the loop), mix safely with long operations on
the connection thread, and under synchronous=full never leave the thread."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone

import pytest

from budgetd.config import Resolver, load_config_text
from budgetd.plan import make_plan
from budgetd.store import HoldRequest, SettleRequest, open_store
from budgetd.store.sqlite import batching

pytestmark = pytest.mark.sqlite

NOW = datetime.now(timezone.utc)  # SQLite expires nothing by itself; any time does
NOW_MS = int(NOW.timestamp() * 1000)
CONFIG = load_config_text("agents:\n  a1: {daily_usd: 1000}\n")
PLAN = make_plan(Resolver(CONFIG).budget("a1"), NOW, CONFIG.zone)


async def guarded_calls(store, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        await store.hold(HoldRequest(f"r{i}", 5, PLAN, NOW_MS, NOW_MS + 60_000, {}))
        await store.settle(SettleRequest(f"r{i}", 3, PLAN, NOW_MS, {}))


def wal_pages(path) -> int:
    return (path.parent / f"{path.name}-wal").stat().st_size // 4096


@pytest.mark.parametrize("checkpoints", [True, False])
async def test_the_wal_stays_bounded_while_quick_batches_run_on_the_loop(tmp_path, monkeypatch, checkpoints):
    if not checkpoints:  # the counterfactual: shows that the committer's checkpoints are what bound it
        monkeypatch.setattr(batching, "CHECKPOINT_EVERY", 10**9)
    path = tmp_path / "b.db"
    store = open_store(f"sqlite://{path}")
    await store.open()
    commits = 2 * 900
    await guarded_calls(store, commits // 2)
    pages = wal_pages(path)
    print(f"WAL after {commits} commits, checkpoints {'on' if checkpoints else 'off'}: {pages} pages")
    # Each commit appends several pages (at least the counters' and the call's);
    # a checkpoint every CHECKPOINT_EVERY (300) commits lets the WAL start over.
    assert (pages < 2 * commits) is checkpoints
    readout = await store.read(PLAN)
    assert readout.balance(PLAN.limits[0]).spent_nanos == 3 * commits // 2
    await store.close()


async def test_quick_and_long_operations_interleave_without_losing_a_write(tmp_path):
    store = open_store(f"sqlite://{tmp_path}/b.db")
    await store.open()
    day = PLAN.limits[0].period.key

    async def reports():
        for _ in range(40):
            await store.report("agent", day, day)  # on the connection thread

    await asyncio.gather(reports(), *(guarded_calls(store, 25, start=k * 100) for k in range(8)))
    readout = await store.read(PLAN)
    assert readout.balance(PLAN.limits[0]).spent_nanos == 3 * 8 * 25
    assert readout.balance(PLAN.limits[0]).reserved_nanos == 0
    rows = await store.report("agent", day, day)
    assert rows == [("a1", 3 * 8 * 25, 8 * 25)]
    await store.close()


@pytest.mark.parametrize("synchronous, on_loop", [("normal", True), ("full", False)])
async def test_holds_run_on_the_loop_only_without_fsync_per_commit(tmp_path, synchronous, on_loop):
    store = open_store(f"sqlite://{tmp_path}/b.db?synchronous={synchronous}")
    await store.open()
    seen = []
    await store._run(lambda conn: seen.append(threading.get_ident()), quick=True)
    assert (seen == [threading.get_ident()]) is on_loop
    await store.close()
