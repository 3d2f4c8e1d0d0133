"""kill -9 under load loses nothing acknowledged; fail-open settles later."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

import pytest
from budgetd_client import Budget, BudgetError, BudgetUnavailable

from helpers import wait_until
from redis_servers import RedisServer

D = Decimal


@pytest.mark.parametrize("store", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_kill_9_under_load_keeps_every_acknowledged_settle(start_daemon, tmp_path, store):
    server = None
    url = None
    if store == "redis":
        server = RedisServer(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always").start()
        url = f"{server.url}?prefix=k{uuid.uuid4().hex[:6]}"
    try:
        daemon = start_daemon("agents:\n  busy: {daily_usd: 1000}\n", store_url=url)
        budget = Budget(daemon.address, timeout=3)
        acked, settled = [], []

        def load():
            ok = 0
            while True:
                try:
                    with budget.guard("busy", estimate_usd="0.001") as call:
                        call.record_usd("0.001")
                except BudgetError:
                    break  # the daemon died: this call may or may not have settled
                ok += 1
                settled.append(1)
            acked.append(ok)

        workers = [threading.Thread(target=load) for _ in range(16)]
        for w in workers:
            w.start()
        wait_until(lambda: len(settled) > 100, 30, what="the load to get going")
        daemon.kill()
        for w in workers:
            w.join(60)
        daemon.start()
        # A guard whose settle the daemon did not take before it died kept it
        # and counted as done: closing the client delivers what it kept.
        budget.close()
        calls = Budget(daemon.address).status("busy").daily.spent_usd / D("0.001")
        assert sum(acked) > 50
        assert sum(acked) <= calls <= sum(acked) + len(workers), (sum(acked), calls)
    finally:
        if server is not None:
            server.stop()


def test_fail_open_calls_proceed_while_down_and_are_settled_when_it_returns(start_daemon):
    daemon = start_daemon("agents:\n  a1: {daily_usd: 10}\n")
    budget = Budget(daemon.address, timeout=1, fail_open=True)
    assert daemon.terminate() == 0
    ran = 0
    for _ in range(5):
        with budget.guard("a1", estimate_usd="0.01") as call:
            ran += 1
            call.record_usd("0.01")
    assert ran == 5
    daemon.start()
    # Back: the client reconnects (its backoff is up to 1 s) and its retrier sends the kept settles.
    wait_until(lambda: answers(budget) and not budget._kept.pending, what="the kept settles to be delivered")
    with budget.guard("a1", estimate_usd="0.01") as call:
        call.record_usd("0.01")
    assert Budget(daemon.address).status("a1").daily.spent_usd == D("0.06")
    with budget.guard("a1", estimate_usd="0.01") as call:  # nothing is counted twice
        call.record_usd("0.01")
    assert Budget(daemon.address).status("a1").daily.spent_usd == D("0.07")


def answers(budget: Budget) -> bool:
    try:
        budget.status("a1")
    except BudgetUnavailable:
        return False
    return True
