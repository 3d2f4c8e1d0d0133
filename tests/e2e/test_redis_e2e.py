"""Many budgetd replicas on one Redis: one cap, failures of Redis itself."""

from __future__ import annotations

import threading
import time
import uuid
from decimal import Decimal

import pytest
import redis
from budgetd_client import Budget, BudgetError, BudgetUnavailable
from grpc_health.v1 import health_pb2

from helpers import health_status, wait_until
from redis_servers import RedisServer
from test_protocol_e2e import race_in_parallel

D = Decimal
CAP = "agents:\n  racer: {daily_usd: 1.00, monthly_usd: 5}\n"


pytestmark = pytest.mark.redis  # every test here starts a redis-server (or a cluster of them)


def test_two_daemons_on_one_redis_hold_one_cap_exactly(start_daemon, redis_server):
    url = f"{redis_server.url}?prefix=t{uuid.uuid4().hex[:8]}"
    first, second = start_daemon(CAP, store_url=url), start_daemon(CAP, store_url=url)
    passed = race_in_parallel([(first.address, "racer", 32), (second.address, "racer", 32)])
    assert sum(passed) == 100 and all(p > 0 for p in passed), passed
    for daemon in (first, second):
        st = Budget(daemon.address).status("racer")
        assert (st.daily.spent_usd, st.daily.reserved_usd, st.monthly.spent_usd) == (D("1.00"), 0, D("1.00"))
        assert st.paused and st.pause_kind == "cap"


def test_the_same_runs_on_a_redis_cluster(start_daemon, redis_cluster):
    url = f"{redis_cluster.url}&prefix=t{uuid.uuid4().hex[:8]}"
    first, second = start_daemon(CAP, store_url=url), start_daemon(CAP, store_url=url)
    passed = race_in_parallel([(first.address, "racer", 16), (second.address, "racer", 16)])
    assert sum(passed) == 100
    assert Budget(second.address).status("racer").daily.spent_usd == D("1.00")


def test_redis_killed_and_restarted_mid_load_loses_no_acknowledged_settle(start_daemon, tmp_path):
    server = RedisServer(tmp_path / "aof", "--appendonly", "yes", "--appendfsync", "always").start()
    try:
        daemon = start_daemon("agents:\n  busy: {daily_usd: 1000}\n", store_url=server.url)
        budget = Budget(daemon.address, timeout=3)
        acked, unacked, unexpected, settled, stop = [], [], [], [], threading.Event()

        def load():
            ok = failed = 0
            while not stop.is_set():
                try:
                    with budget.guard("busy", estimate_usd="0.001") as call:
                        call.record_usd("0.001")
                    ok += 1
                    settled.append(1)
                except BudgetUnavailable:
                    failed += 1  # the hold or the settle may or may not have landed
                    time.sleep(0.05)
                except Exception as err:  # anything else is a bug: kept, and this worker stops
                    unexpected.append(repr(err))
                    break
            acked.append(ok)
            unacked.append(failed)

        workers = [threading.Thread(target=load) for _ in range(16)]
        for w in workers:
            w.start()
        wait_until(lambda: len(settled) > 100, 30, what="the load to get going")
        server.kill()  # kill -9, mid-load
        wait_until(lambda: "store error in" in daemon.log(), 30, what="calls to meet the outage")
        server.start()  # same dir: the AOF is replayed
        after_restart = len(settled)
        wait_until(lambda: len(settled) > after_restart + 100, 30, what="the load to go on after the restart")
        stop.set()
        for w in workers:
            w.join(60)

        assert unexpected == [], unexpected[:3]  # a store outage is UNAVAILABLE, nothing else
        # The daemon met the outage (whether its clients saw it, or retried through it).
        assert "store error in" in daemon.log(), "Redis was down mid-load: calls must have met it"
        assert sum(acked) > 100
        st = budget.status("busy")
        spent_calls = st.daily.spent_usd / D("0.001")
        assert sum(acked) <= spent_calls <= sum(acked) + sum(unacked)
        # None counted twice: one ledger entry per settled request, summing to the spend.
        entries = redis.Redis(port=server.port, decode_responses=True).xrange("budgetd:{all}:ledger")
        ids = [e["request_id"] for _, e in entries]
        assert len(ids) == len(set(ids))
        assert sum(int(e["cost_nanos"]) for _, e in entries) == int(st.daily.spent_usd * 10**9)
    finally:
        server.stop()


def test_redis_down_fails_fast_health_not_serving_and_both_recover(start_daemon, tmp_path):
    # A Redis that keeps its data: a restart of it is an outage, not a loss
    # (an emptied Redis is refused as lost: test_lost_store_e2e).
    server = RedisServer(tmp_path / "down", "--appendonly", "yes", "--appendfsync", "always").start()
    try:
        daemon = start_daemon("agents:\n  a1: {daily_usd: 10}\n", store_url=server.url)
        budget = Budget(daemon.address, timeout=2)
        with budget.guard("a1", estimate_usd="0.01") as call:
            call.record_usd("0.01")
        assert budget.status("a1").daily.spent_usd == D("0.01")

        server.kill()
        started = time.monotonic()
        with pytest.raises(BudgetUnavailable):
            with budget.guard("a1", estimate_usd="0.01"):
                pytest.fail("must not run without a hold")
        assert time.monotonic() - started < 2.5  # within the call's deadline (2 s), retries included
        deadline = time.monotonic() + 10
        while health_status(daemon.address) != health_pb2.HealthCheckResponse.NOT_SERVING:
            assert time.monotonic() < deadline, "health did not turn NOT_SERVING"
            time.sleep(0.2)
        unguarded = Budget(daemon.address, timeout=2, fail_open=True)
        with unguarded.guard("a1", estimate_usd="0.01") as call:
            call.record_usd("0.01")  # fail_open: proceeds; its settle cannot land now and is kept

        server.start()
        deadline = time.monotonic() + 15
        while health_status(daemon.address) != health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline, "health did not recover"
            time.sleep(0.2)
        with budget.guard("a1", estimate_usd="0.01") as call:
            call.record_usd("0.01")
        with unguarded.guard("a1", estimate_usd="0.01") as call:  # sends the kept settle first
            call.record_usd("0.01")
        # Nothing acknowledged before the outage is lost, and the kept settle counts once.
        st = budget.status("a1").daily
        assert (st.spent_usd, st.reserved_usd) == (D("0.04"), 0)
        unguarded.close()
    finally:
        server.stop()


def test_a_cluster_agent_in_two_groups_is_refused_clearly(start_daemon, redis_cluster):
    url = f"{redis_cluster.url}&prefix=t{uuid.uuid4().hex[:8]}"
    daemon = start_daemon("agents:\n  x-1: {daily_usd: 1}\ngroups:\n  g1: {members: ['x-*']}\n"
                          "  g2: {members: ['*-1']}\n", store_url=url)
    with pytest.raises(BudgetError, match=r"\(FAILED_PRECONDITION\): agent 'x-1' is in groups \['g1', 'g2'\]: "
                                          r"on Redis Cluster .* at most one group") as refused:
        with Budget(daemon.address).guard("x-1", estimate_usd="0.01"):
            pytest.fail("must not run without a hold")
    assert type(refused.value) is BudgetError  # a refusal, not BudgetUnavailable (which would be retried)


def test_tls_and_an_acl_user_in_the_url(start_daemon, tmp_path):
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    server = RedisServer(
        tmp_path / "tls", "--tls-cert-file", str(tmp_path / "cert.pem"), "--tls-key-file", str(tmp_path / "key.pem"),
        "--tls-ca-cert-file", str(tmp_path / "ca.pem"), "--tls-auth-clients", "no",
        "--user", "default", "off", "--user", "budgetd", "on", ">s3cret", "~*", "&*", "+@all",
        client_kwargs={"ssl": True, "ssl_ca_certs": str(tmp_path / "ca.pem"), "username": "budgetd",
                       "password": "s3cret"},
    ).start()
    try:
        url = f"rediss://budgetd:s3cret@127.0.0.1:{server.port}/0?ssl_ca_certs={tmp_path / 'ca.pem'}"
        budget = Budget(start_daemon(CAP, store_url=url).address)
        with budget.guard("racer", estimate_usd="0.01") as call:
            call.record_usd("0.01")
        assert budget.status("racer").daily.spent_usd == D("0.01")
    finally:
        server.stop()
