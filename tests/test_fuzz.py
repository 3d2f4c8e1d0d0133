"""Malformed input, generated: the client raises ValueError, the daemon
answers INVALID_ARGUMENT (or a proper refusal) and stays up."""

from __future__ import annotations

import math
from decimal import Decimal

import grpc
import pytest
from budgetd_client import Budget
from budgetd_client import limits
from budgetd_client.money import MAX_CALL_NANOS, usd_to_nanos
from budgetd_client.v1 import budget_pb2 as pb
from budgetd_client.v1 import budget_pb2_grpc as pb_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import DaemonProcess

ANSWERS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

amounts = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.decimals(allow_nan=True, allow_infinity=True),
                    st.integers(min_value=-(2**70), max_value=2**70), st.text(max_size=30), st.booleans())


@FUZZ
@given(amounts)
def test_client_amounts_are_nanodollars_or_a_value_error(amount):
    try:
        nanos = usd_to_nanos(amount)
    except ValueError:
        return
    assert isinstance(nanos, int) and 0 <= nanos <= MAX_CALL_NANOS
    if isinstance(amount, float):
        assert math.isfinite(amount)


@FUZZ
@given(st.text(max_size=200), st.dictionaries(st.text(max_size=80), st.text(max_size=300), max_size=20))
def test_client_ids_and_tags_are_valid_or_a_value_error(agent_id, tags):
    for check in (lambda: limits.check_agent_id(agent_id), lambda: limits.check_tags(tags)):
        try:
            check()
        except ValueError:
            pass


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = DaemonProcess(tmp_path_factory.mktemp("fuzz"), "defaults: {daily_usd: 100}\n").start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def channel(daemon):
    with grpc.insecure_channel(daemon.address) as c:
        yield c


def _expect_refusal_or_answer(call):
    try:
        call()
    except grpc.RpcError as err:
        assert err.code() in ANSWERS, (err.code(), err.details())


int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@FUZZ
@given(st.text(max_size=150), st.text(max_size=150), st.one_of(st.none(), int64),
       st.dictionaries(st.text(max_size=70), st.text(max_size=300), max_size=20))
def test_raw_authorize_and_commit_fields(channel, agent_id, request_id, amount, tags):
    stub = pb_grpc.BudgetStub(channel)
    auth = pb.AuthorizeRequest(agent_id=agent_id, request_id=request_id, tags=tags)
    commit = pb.CommitRequest(agent_id=agent_id, request_id=request_id, tags=tags)
    if amount is not None:
        auth.estimate_nanos = amount
        commit.actual_nanos = amount
    _expect_refusal_or_answer(lambda: stub.Authorize(auth, timeout=5))
    _expect_refusal_or_answer(lambda: stub.Commit(commit, timeout=5))


METHODS = ["/budgetd.v1.Budget/Authorize", "/budgetd.v1.Budget/Commit", "/budgetd.v1.Budget/Release",
           "/budgetd.v1.Budget/GetStatus", "/budgetd.v1.Admin/Pause", "/budgetd.v1.Admin/Report"]


@FUZZ
@given(st.sampled_from(METHODS), st.binary(max_size=2000))
def test_raw_protobuf_bytes(channel, method, body):
    _expect_refusal_or_answer(lambda: channel.unary_unary(method)(body, timeout=5))


def test_the_daemon_is_still_up_and_counting_after_the_fuzz(daemon):
    budget = Budget(daemon.address)
    before = budget.status("after-fuzz").daily.spent_usd
    with budget.guard("after-fuzz", estimate_usd="0.01") as call:
        call.record_usd("0.01")
    assert budget.status("after-fuzz").daily.spent_usd == before + Decimal("0.01")
    assert daemon.proc.poll() is None
