"""Atomicity, idempotency and expiry, against a real budgetd process."""

from __future__ import annotations

import threading
import time
import uuid
from decimal import Decimal

import grpc
import pytest
from budgetd_client import AgentPaused, Budget, BudgetExceeded
from budgetd_client.v1 import budget_pb2 as pb
from budgetd_client.v1 import budget_pb2_grpc as pb_grpc

D = Decimal


def race(address: str, agent: str, threads: int, per_call_usd: str) -> int:
    """``threads`` threads guard calls until refused; returns how many passed."""
    budget = Budget(address)
    passed = []
    start = threading.Barrier(threads)

    def worker():
        count = 0
        start.wait()
        while True:
            try:
                with budget.guard(agent, estimate_usd=per_call_usd) as call:
                    call.record_usd(per_call_usd)
            except (BudgetExceeded, AgentPaused):
                break
            count += 1
        passed.append(count)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    budget.close()
    return sum(passed)


def race_in_parallel(runs: list[tuple[str, str, int]], per_call_usd: str = "0.01") -> list[int]:
    """Several races at once, each (address, agent, threads): how many passed in each."""
    passed: dict[int, int] = {}
    pool = [threading.Thread(target=lambda i=i, r=r: passed.__setitem__(i, race(r[0], r[1], r[2], per_call_usd)))
            for i, r in enumerate(runs)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(180)
    return [passed[i] for i in range(len(runs))]


def test_64_threads_race_one_cap_exactly_100_pass(start_daemon):
    daemon = start_daemon('agents:\n  racer: {daily_usd: 1.00, monthly_usd: 5}\n')
    assert race(daemon.address, "racer", 64, "0.01") == 100
    st = Budget(daemon.address).status("racer")
    assert st.daily.spent_usd == D("1.00") and st.daily.reserved_usd == 0
    assert st.monthly.spent_usd == D("1.00")
    assert st.paused


@pytest.fixture
def raw(start_daemon):
    def connect(config: str):
        daemon = start_daemon(config)
        channel = grpc.insecure_channel(daemon.address)
        return daemon, pb_grpc.BudgetStub(channel)

    return connect


def test_settling_the_same_request_twice_counts_once(raw):
    daemon, stub = raw("agents:\n  a1: {daily_usd: 10}\n")
    rid = str(uuid.uuid4())
    held = stub.Authorize(pb.AuthorizeRequest(agent_id="a1", request_id=rid, estimate_nanos=500_000_000))
    assert held.decision == pb.DECISION_ALLOWED
    # A retried Authorize (same request id) does not hold twice.
    again = stub.Authorize(pb.AuthorizeRequest(agent_id="a1", request_id=rid, estimate_nanos=500_000_000))
    assert again.decision == pb.DECISION_ALLOWED
    assert Budget(daemon.address).status("a1").daily.reserved_usd == D("0.5")

    first = stub.Commit(pb.CommitRequest(agent_id="a1", request_id=rid, actual_nanos=123_000_000))
    second = stub.Commit(pb.CommitRequest(agent_id="a1", request_id=rid, actual_nanos=999_000_000))
    assert (first.counted_nanos, first.duplicate) == (123_000_000, False)
    assert (second.counted_nanos, second.duplicate) == (123_000_000, True)
    st = Budget(daemon.address).status("a1")
    assert st.daily.spent_usd == D("0.123") and st.daily.reserved_usd == 0

    # A settled request id cannot be held again.
    with pytest.raises(grpc.RpcError) as err:
        stub.Authorize(pb.AuthorizeRequest(agent_id="a1", request_id=rid, estimate_nanos=1))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    st = Budget(daemon.address).status("a1")
    assert st.daily.spent_usd == D("0.123") and st.daily.reserved_usd == 0


def test_a_request_id_is_scoped_to_its_agent(raw):
    daemon, stub = raw("agents:\n  a1: {daily_usd: 10}\n  a2: {daily_usd: 10}\n")
    budget = Budget(daemon.address)

    def balances(agent: str) -> tuple[Decimal, Decimal]:
        st = budget.status(agent).daily
        return st.spent_usd, st.reserved_usd

    rid = str(uuid.uuid4())
    held = stub.Authorize(pb.AuthorizeRequest(agent_id="a1", request_id=rid, estimate_nanos=500_000_000))
    assert held.decision == pb.DECISION_ALLOWED
    # The same id under a2 is a call of a2's own: not a retry of a1's, nor a way to reach it.
    assert not stub.Release(pb.ReleaseRequest(agent_id="a2", request_id=rid)).released
    assert balances("a1") == (0, D("0.5"))
    other = stub.Authorize(pb.AuthorizeRequest(agent_id="a2", request_id=rid, estimate_nanos=200_000_000))
    assert other.decision == pb.DECISION_ALLOWED
    assert balances("a2") == (0, D("0.2")) and balances("a1") == (0, D("0.5"))
    counted = stub.Commit(pb.CommitRequest(agent_id="a2", request_id=rid, actual_nanos=100_000_000))
    assert (counted.counted_nanos, counted.duplicate) == (100_000_000, False)
    assert balances("a2") == (D("0.1"), 0)
    assert balances("a1") == (0, D("0.5"))  # a1's hold is untouched
    assert not stub.Release(pb.ReleaseRequest(agent_id="a2", request_id=rid)).released
    assert balances("a1") == (0, D("0.5"))

    # a1's call settles as its own, not as a duplicate of a2's.
    first = stub.Commit(pb.CommitRequest(agent_id="a1", request_id=rid, actual_nanos=123_000_000))
    assert (first.counted_nanos, first.duplicate) == (123_000_000, False)
    assert balances("a1") == (D("0.123"), 0) and balances("a2") == (D("0.1"), 0)
    budget.close()


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize("policy", ["release", "charge"])
def test_hold_past_its_ttl_is_expired_by_the_sweeper(raw, policy):
    daemon, stub = raw(
        f"reservation_ttl_seconds: 1\non_reservation_expiry: {policy}\nagents:\n  slow: {{daily_usd: 10}}\n"
    )
    budget = Budget(daemon.address)
    rid = str(uuid.uuid4())
    held = stub.Authorize(pb.AuthorizeRequest(agent_id="slow", request_id=rid, estimate_nanos=400_000_000))
    assert held.decision == pb.DECISION_ALLOWED
    assert budget.status("slow").daily.reserved_usd == D("0.4")

    st = wait_for(lambda: (s := budget.status("slow")).daily.reserved_usd == 0 and s)
    assert st.daily.spent_usd == (D("0.4") if policy == "charge" else 0)
    # Releasing an expired hold does nothing (a charge stays charged).
    assert not stub.Release(pb.ReleaseRequest(agent_id="slow", request_id=rid)).released
    after = budget.status("slow").daily
    assert (after.spent_usd, after.reserved_usd) == (st.daily.spent_usd, 0)

    # A late commit after expiry is still counted, once: in place of a charge.
    late = stub.Commit(pb.CommitRequest(agent_id="slow", request_id=rid, actual_nanos=300_000_000))
    assert late.counted_nanos == 300_000_000 and not late.duplicate
    assert budget.status("slow").daily.spent_usd == D("0.3")
    again = stub.Commit(pb.CommitRequest(agent_id="slow", request_id=rid, actual_nanos=250_000_000))
    assert (again.counted_nanos, again.duplicate) == (300_000_000, True)
    assert budget.status("slow").daily.spent_usd == D("0.3")
    budget.close()
