"""SIGTERM drains: health goes NOT_SERVING and new holds are refused, but the
port stays open for the settles of holds already granted, until they are in
or the grace ends; Watch streams are ended at once. Against a real budgetd."""

from __future__ import annotations

import threading
import time
import uuid
from decimal import Decimal

import grpc
from budgetd_client import Budget
from budgetd_client.v1 import budget_pb2 as pb
from budgetd_client.v1 import budget_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2

from helpers import health_status, wait_until

CONFIG = "reservation_ttl_seconds: 60\nagents:\n  a1: {daily_usd: 100}\n"
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def authorize(stub, request_id: str, nanos: int) -> pb.AuthorizeResponse:
    return stub.Authorize(pb.AuthorizeRequest(agent_id="a1", request_id=request_id, estimate_nanos=nanos), timeout=5)


def test_a_hold_granted_before_sigterm_and_committed_during_the_drain_is_counted(start_daemon):
    daemon = start_daemon(CONFIG)
    with grpc.insecure_channel(daemon.address) as channel:
        stub = pb_grpc.BudgetStub(channel)
        assert authorize(stub, "before", 5_000_000).decision == pb.DECISION_ALLOWED
        daemon.proc.terminate()
        wait_until(lambda: health_status(daemon.address) == NOT_SERVING)
        time.sleep(0.3)  # well past the moment the old daemon closed its port at once
        # New holds are refused as draining (UNAVAILABLE: a client waits for the restart) ...
        try:
            authorize(stub, "during", 1)
            raise AssertionError("a new hold was granted during the drain")
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAVAILABLE and "draining" in err.details()
        assert daemon.proc.poll() is None, "the daemon left while a hold it granted was out"
        # ... while the settle of the hold granted before lands.
        answer = stub.Commit(pb.CommitRequest(agent_id="a1", request_id="before", actual_nanos=4_000_000), timeout=5)
        assert answer.counted_nanos == 4_000_000
    # Nothing left to wait for: the daemon stops long before its 5 s grace.
    started = time.monotonic()
    assert daemon._reap(10) == 0
    assert time.monotonic() - started < 3
    daemon.start()
    st = Budget(daemon.address).status("a1")
    assert (st.daily.spent_usd, st.daily.reserved_usd) == (Decimal("0.004"), 0)


def test_a_guard_whose_model_call_spans_a_sigterm_records_its_cost_and_does_not_raise(start_daemon):
    daemon = start_daemon(CONFIG)
    budget = Budget(daemon.address, timeout=5)
    with budget.guard("a1", estimate_usd="0.01") as call:
        daemon.proc.terminate()  # the model call is under way
        wait_until(lambda: health_status(daemon.address) == NOT_SERVING)
        call.record_usd("0.004")
    assert daemon._reap(10) == 0
    daemon.start()
    st = budget.status("a1")
    assert (st.daily.spent_usd, st.daily.reserved_usd) == (Decimal("0.004"), 0)
    budget.close()


def test_the_drain_ends_with_its_grace_when_a_hold_is_never_settled(start_daemon):
    daemon = start_daemon(CONFIG)  # shutdown_grace_seconds: 5 (tests/helpers.py)
    with grpc.insecure_channel(daemon.address) as channel:
        assert authorize(pb_grpc.BudgetStub(channel), "abandoned", 1_000).decision == pb.DECISION_ALLOWED
    started = time.monotonic()
    daemon.proc.terminate()
    assert daemon._reap(20) == 0
    waited = time.monotonic() - started
    assert 4.5 < waited < 10, waited
    assert "drain ended by its grace" in daemon.log()


def test_open_watch_streams_are_ended_at_once_and_do_not_hold_the_drain(start_daemon):
    daemon = start_daemon(CONFIG)
    outcome: list[grpc.StatusCode] = []
    channel = grpc.insecure_channel(daemon.address)
    stream = pb_grpc.BudgetStub(channel).Watch(pb.WatchRequest(agent_id="a1"))

    def read():
        try:
            for _ in stream:
                pass
        except grpc.RpcError as err:
            outcome.append((err.code(), err.details()))

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.3)  # the stream is open
    started = time.monotonic()
    daemon.proc.terminate()
    reader.join(5)
    assert outcome and outcome[0][0] == grpc.StatusCode.UNAVAILABLE and "draining" in outcome[0][1]
    assert daemon._reap(10) == 0
    assert time.monotonic() - started < 3, "an open watch held the drain"
    channel.close()


def test_a_second_signal_ends_the_drain_at_once(start_daemon):
    daemon = start_daemon(CONFIG)
    with grpc.insecure_channel(daemon.address) as channel:
        rid = str(uuid.uuid4())
        assert authorize(pb_grpc.BudgetStub(channel), rid, 1_000).decision == pb.DECISION_ALLOWED
    daemon.proc.terminate()
    wait_until(lambda: health_status(daemon.address) == NOT_SERVING)
    started = time.monotonic()
    daemon.proc.terminate()
    assert daemon._reap(10) == 0
    assert time.monotonic() - started < 3
    assert "a second signal ended the drain" in daemon.log()
