"""A store that loses data is reported, end to end: a real budgetd, the real
slack-sdk against a loopback Slack, a real redis-server killed and started
again empty. Nothing is acknowledged into a store that forgets."""

from __future__ import annotations

import time
import urllib.request
import uuid
from decimal import Decimal

import grpc
import pytest
from budgetd_client import Budget
from budgetd_client.v1 import budget_pb2 as pb
from budgetd_client.v1 import budget_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2

from fake_slack import FakeSlack
from helpers import free_port, health_status, wait_until
from redis_servers import RedisServer

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def slack():
    with FakeSlack() as s:
        yield s


def config(slack: FakeSlack) -> str:
    return f'agents:\n  a1: {{daily_usd: 100}}\nslack: {{webhook_url: "{slack.webhook_url}"}}\n'


def metric(port: int, name: str) -> float | None:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def authorize(stub, request_id: str):
    return stub.Authorize(pb.AuthorizeRequest(agent_id="a1", request_id=request_id, estimate_nanos=1_000), timeout=2)


def commit(stub, request_id: str):
    return stub.Commit(pb.CommitRequest(agent_id="a1", request_id=request_id, actual_nanos=1_000), timeout=2)


def test_deleting_the_sqlite_file_while_serving_refuses_the_next_settle_and_is_reported(start_daemon, slack):
    metrics_port = free_port()
    daemon = start_daemon(config(slack), server_extra=f'metrics_listen: "127.0.0.1:{metrics_port}"')
    with grpc.insecure_channel(daemon.address) as channel:
        stub = pb_grpc.BudgetStub(channel)
        assert authorize(stub, "before").decision == pb.DECISION_ALLOWED
        assert commit(stub, "before").counted_nanos == 1_000
        assert authorize(stub, "held").decision == pb.DECISION_ALLOWED
        assert metric(metrics_port, "budgetd_store_lost") == 0
        for suffix in ("", "-wal", "-shm"):
            daemon.db_path.with_name(daemon.db_path.name + suffix).unlink(missing_ok=True)

        # The next settle fails, naming the file; it was not acknowledged.
        with pytest.raises(grpc.RpcError) as refused:
            commit(stub, "held")
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert str(daemon.db_path) in refused.value.details()
        wait_until(lambda: health_status(daemon.address) == NOT_SERVING, timeout=10)
        [notice] = slack.wait_for("store lost", timeout=10)
        assert str(daemon.db_path) in notice
        assert metric(metrics_port, "budgetd_store_lost") == 1
        # Nothing more is acknowledged: holds and settles keep failing.
        for rid in ("held", "after"):
            for call in (commit, authorize):
                with pytest.raises(grpc.RpcError) as again:
                    call(stub, rid)
                assert again.value.code() == grpc.StatusCode.UNAVAILABLE, call.__name__
    assert '"level": "CRITICAL"' in daemon.log() or "store lost" in daemon.log()
    assert daemon.log().count("store lost:") == 1, "the loss is reported once"
    assert len(slack.texts("store lost")) == 1


@pytest.mark.redis
def test_a_redis_restarted_without_its_data_is_reported_within_10_seconds(start_daemon, slack, tmp_path):
    redis = RedisServer(tmp_path / "redis").start()  # keeps nothing on disk
    try:
        metrics_port = free_port()
        daemon = start_daemon(config(slack), store_url=redis.url,
                              server_extra=f'metrics_listen: "127.0.0.1:{metrics_port}"')
        assert "keeps nothing on disk" in daemon.log() or "nothing on disk" in daemon.log()
        budget = Budget(daemon.address, timeout=5)
        with budget.guard("a1", estimate_usd="0.01") as call:
            call.record_usd("0.002")
        redis.kill()
        redis.start()  # the same port, empty
        restarted = time.monotonic()
        wait_until(lambda: metric(metrics_port, "budgetd_store_lost") == 1, timeout=10)
        took = time.monotonic() - restarted
        [notice] = slack.wait_for("store lost", timeout=10 - took)
        assert "Redis" in notice and str(redis.port) in notice
        assert "store lost" in daemon.log()
        assert health_status(daemon.address) == NOT_SERVING
        with grpc.insecure_channel(daemon.address) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                authorize(pb_grpc.BudgetStub(channel), str(uuid.uuid4()))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        budget.close()
    finally:
        redis.stop()


@pytest.mark.redis
def test_a_redis_restarted_with_its_data_is_not_reported(start_daemon, slack, tmp_path):
    redis = RedisServer(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always").start()
    try:
        metrics_port = free_port()
        daemon = start_daemon(config(slack), store_url=redis.url,
                              server_extra=f'metrics_listen: "127.0.0.1:{metrics_port}"')
        budget = Budget(daemon.address, timeout=5)
        with budget.guard("a1", estimate_usd="0.01") as call:
            call.record_usd("0.002")
        redis.kill()
        redis.start()
        # A few health checks (every 2 s) after the restart: the data is there, nothing is reported.
        with budget.guard("a1", estimate_usd="0.01") as call:
            call.record_usd("0.003")
        daemon.run_due_checks()  # the ping that would report a loss, and the delivery of its notice
        assert metric(metrics_port, "budgetd_store_lost") == 0
        assert slack.texts("store lost") == []
        assert budget.status("a1").daily.spent_usd == Decimal("0.005")
        budget.close()
    finally:
        redis.stop()
