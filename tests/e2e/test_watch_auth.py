"""A Watch stream is authorized again on every config change: a token revoked
or narrowed in budgets.yaml ends the streams it opened before, and the client
raises instead of reconnecting."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from budgetd_client import Budget, BudgetError

from budgetd.auth import sha256_hex

ADMIN = f'    - {{name: ops, sha256: "{sha256_hex("admin-secret")}", role: admin}}\n'
POD = f'    - {{name: a1-pod, sha256: "{sha256_hex("a1-secret")}", agents: ["a1"]}}\n'
WIDE = f'    - {{name: fleet, sha256: "{sha256_hex("fleet-secret")}", agents: ["a*"]}}\n'
NARROWED = f'    - {{name: fleet, sha256: "{sha256_hex("fleet-secret")}", agents: ["b*"]}}\n'


def config(*tokens: str) -> str:
    return "agents:\n  a1: {daily_usd: 10}\nauth:\n  tokens:\n" + "".join(tokens)


def test_revoking_or_narrowing_a_token_ends_its_open_watch_and_the_client_raises(start_daemon):
    daemon = start_daemon(config(ADMIN, POD, WIDE))
    admin = Budget(daemon.address, token="admin-secret")
    budgets = {token: Budget(daemon.address, token=token) for token in ("a1-secret", "fleet-secret", "admin-secret")}
    streams = {token: budget.watch("a1") for token, budget in budgets.items()}
    pool = ThreadPoolExecutor(len(streams))
    try:
        pending = {token: pool.submit(next, stream) for token, stream in streams.items()}
        time.sleep(0.5)  # the streams are subscribed before the pause is written
        admin.pause("a1", reason="before the edit")
        for future in pending.values():  # every stream is live and allowed
            assert future.result(timeout=10).kind == "paused"
        admin.resume("a1")
        for stream in streams.values():
            assert next(stream).kind == "resumed"

        pending = {token: pool.submit(next, stream) for token, stream in streams.items()}
        daemon.write_config(config(ADMIN, NARROWED))  # a1-pod revoked, fleet no longer covers a1
        started = time.monotonic()
        with pytest.raises(BudgetError, match=r"UNAUTHENTICATED.*token is no longer allowed.*unknown token"):
            pending["a1-secret"].result(timeout=10)
        with pytest.raises(BudgetError, match=r"PERMISSION_DENIED.*token 'fleet' may not act for agent 'a1'"):
            pending["fleet-secret"].result(timeout=10)
        print(f"\nrevoked streams ended {time.monotonic() - started:.2f}s after the edit")
        assert admin.config().generation == 2

        for token in ("a1-secret", "fleet-secret"):  # ended, not reconnecting in the background
            with pytest.raises(StopIteration):
                next(streams[token])

        admin.pause("a1", reason="after the edit")  # the admin's stream was kept
        assert pending["admin-secret"].result(timeout=10).reason == "after the edit"
    finally:  # a failed step must not leave threads waiting on streams that never end
        for budget in budgets.values():
            budget.close()
        pool.shutdown(wait=True, cancel_futures=True)


def test_a_watch_whose_token_is_gone_after_a_restart_raises_instead_of_reconnecting_forever(start_daemon):
    daemon = start_daemon(config(ADMIN, POD))
    watcher = Budget(daemon.address, token="a1-secret", timeout=2)
    stream = watcher.watch("a1")
    pool = ThreadPoolExecutor(1)
    try:
        pending = pool.submit(next, stream)
        time.sleep(0.5)
        daemon.terminate()  # the stream is lost; the client reconnects with backoff...
        daemon.write_config(config(ADMIN))  # ...to a budgetd that no longer knows the token
        daemon.start()
        with pytest.raises(BudgetError, match=r"UNAUTHENTICATED.*unknown token"):
            pending.result(timeout=20)
    finally:
        watcher.close()
        pool.shutdown(wait=True, cancel_futures=True)
