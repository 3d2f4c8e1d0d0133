"""Bad input gets a clear error and changes nothing."""

from __future__ import annotations

import os
import socket
import uuid
from decimal import Decimal

import grpc
import pytest
from budgetd_client import Budget
from budgetd_client.v1 import budget_pb2 as pb
from budgetd_client.v1 import budget_pb2_grpc as pb_grpc

BAD_AMOUNTS = [-1, "-0.01", float("nan"), float("inf"), Decimal("NaN"), Decimal("-Infinity"), "abc", True, 10**7]
BAD_AGENT_IDS = ["", "x" * 129, "tab\there", "new\nline", "nul\x00", "sp ace", "{brace}", "star*"]
BAD_TAGS = [
    {f"k{i}": "v" for i in range(17)},
    {"feature": "x" * 257},
    {"k" * 65: "v"},
    {"bad key": "v"},
    {"feature": "ctrl\x07"},
    {"feature": 5},
]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    from helpers import DaemonProcess

    d = DaemonProcess(tmp_path_factory.mktemp("bad"), "agents:\n  a1: {daily_usd: 10}\n").start()
    yield d
    d.stop()


@pytest.mark.parametrize("amount", BAD_AMOUNTS, ids=repr)
def test_client_refuses_bad_amounts(daemon, amount):
    budget = Budget(daemon.address)
    with pytest.raises(ValueError, match="estimate_usd"):
        budget.guard("a1", estimate_usd=amount)
    with budget.guard("a1", estimate_usd="0.01") as call:
        with pytest.raises(ValueError, match="record_usd"):
            call.record_usd(amount)
        call.record_usd("0.01")
    assert budget.status("a1").daily.reserved_usd == 0


@pytest.mark.parametrize("agent_id", BAD_AGENT_IDS, ids=repr)
def test_client_refuses_bad_agent_ids(daemon, agent_id):
    budget = Budget(daemon.address)
    for call in (lambda: budget.guard(agent_id), lambda: budget.status(agent_id),
                 lambda: budget.pause(agent_id), lambda: budget.resume(agent_id)):
        with pytest.raises(ValueError, match="agent_id"):
            call()


@pytest.mark.parametrize("tags", BAD_TAGS, ids=lambda t: str(t)[:30])
def test_client_refuses_bad_tags(daemon, tags):
    with pytest.raises(ValueError, match="tags"):
        Budget(daemon.address).guard("a1", tags=tags)


def _authorize(**fields):
    fields.setdefault("agent_id", "a1")
    fields.setdefault("request_id", str(uuid.uuid4()))
    return pb.AuthorizeRequest(**fields)


RAW_BAD_REQUESTS = {
    "negative estimate": ("Authorize", _authorize(estimate_nanos=-1), "estimate_nanos"),
    "huge estimate": ("Authorize", _authorize(estimate_nanos=2**62), "estimate_nanos"),
    "empty agent": ("Authorize", _authorize(agent_id=""), "agent_id"),
    "long agent": ("Authorize", _authorize(agent_id="a" * 200), "agent_id"),
    "control agent": ("Authorize", _authorize(agent_id="a\x01"), "agent_id"),
    "empty request id": ("Authorize", _authorize(request_id=""), "request_id"),
    "too many tags": ("Authorize", _authorize(tags={f"t{i}": "v" for i in range(20)}), "tags"),
    "long tag": ("Authorize", _authorize(tags={"feature": "v" * 1000}), "tags"),
    "negative actual": ("Commit", pb.CommitRequest(agent_id="a1", request_id="r1", actual_nanos=-5), "actual_nanos"),
    "commit no agent": ("Commit", pb.CommitRequest(request_id="r1", actual_nanos=5), "agent_id"),
    "release no id": ("Release", pb.ReleaseRequest(agent_id="a1"), "request_id"),
    "status bad agent": ("GetStatus", pb.GetStatusRequest(agent_id="a b"), "agent_id"),
}


@pytest.mark.parametrize("name", RAW_BAD_REQUESTS)
def test_raw_grpc_caller_gets_invalid_argument_and_nothing_changes(daemon, name):
    method, request, field = RAW_BAD_REQUESTS[name]
    with grpc.insecure_channel(daemon.address) as channel:
        stub = pb_grpc.BudgetStub(channel)
        before = stub.GetStatus(pb.GetStatusRequest(agent_id="a1"))
        with pytest.raises(grpc.RpcError) as err:
            getattr(stub, method)(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in err.value.details()
        after = stub.GetStatus(pb.GetStatusRequest(agent_id="a1"))
        assert (after.daily.spent_nanos, after.daily.reserved_nanos) == (before.daily.spent_nanos, before.daily.reserved_nanos)


def test_raw_admin_caller_gets_invalid_argument(daemon):
    with grpc.insecure_channel(daemon.address) as channel:
        admin = pb_grpc.AdminStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            admin.Pause(pb.PauseRequest(agent_id="a1", reason="r" * 600))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "reason" in err.value.details()


def test_junk_bytes_on_the_port_do_not_disturb_the_daemon(daemon):
    host, port = daemon.address.rsplit(":", 1)
    junk = [os.urandom(4096), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(512),
            b"\x00" * 10000]
    for payload in junk:
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(payload)
            s.settimeout(1)
            try:
                s.recv(1024)
            except (TimeoutError, ConnectionError):
                pass
    # A well-formed gRPC call whose body is not our protobuf.
    with grpc.insecure_channel(daemon.address) as channel:
        call = channel.unary_unary("/budgetd.v1.Budget/Authorize")
        with pytest.raises(grpc.RpcError) as err:
            call(b"\xff\xff\xff\xff\x0f" + os.urandom(64), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "malformed AuthorizeRequest" in err.value.details()

    budget = Budget(daemon.address)
    with budget.guard("a1", estimate_usd="0.01") as call:
        call.record_usd("0.01")
    assert daemon.proc.poll() is None
    assert budget.status("a1").daily.spent_usd >= Decimal("0.01")
