"""require_tags end to end: a wrapped call without a required tag never
reaches the provider, a raw gRPC caller gets INVALID_ARGUMENT naming the tag,
and neither changes anything."""

from __future__ import annotations

import grpc
import openai
import pytest
from budgetd_client import Budget
from budgetd_client.v1 import budget_pb2 as pb
from budgetd_client.v1 import budget_pb2_grpc as pb_grpc

from fake_provider import FakeProvider

CONFIG = "require_tags: [feature]\nagents:\n  billing: {daily_usd: 10, require_tags: [customer]}\n"
MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def provider():
    with FakeProvider() as p:
        yield p


def test_a_wrapped_call_without_a_required_tag_is_refused_before_any_request_is_sent(start_daemon, provider):
    budget = Budget(start_daemon(CONFIG).address)
    raw = openai.OpenAI(api_key="test-key", base_url=provider.base_url, max_retries=0)
    untagged = budget.wrap(raw, agent_id="billing", tags={"feature": "invoices"})
    with pytest.raises(ValueError, match=r"missing tag 'customer': set it in guard\(\.\.\., tags=\.\.\.\) "
                                         r"or in wrap\(\.\.\., tags=\.\.\.\)"):
        untagged.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
    assert provider.requests == []
    st = budget.status("billing")
    assert (st.daily.spent_usd, st.daily.reserved_usd) == (0, 0)
    with pytest.raises(ValueError, match="missing tag 'customer'"):
        with budget.guard("billing", estimate_usd="0.01", tags={"feature": "invoices"}):
            raise AssertionError("the block must not run")
    tagged = budget.wrap(raw, agent_id="billing", tags={"feature": "invoices", "customer": "acme"})
    tagged.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
    assert len(provider.requests) == 1 and budget.status("billing").daily.spent_usd > 0


def test_a_raw_caller_without_a_required_tag_gets_invalid_argument_and_nothing_changes(start_daemon):
    daemon = start_daemon(CONFIG)
    with grpc.insecure_channel(daemon.address) as channel:
        stub = pb_grpc.BudgetStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.Authorize(pb.AuthorizeRequest(agent_id="billing", request_id="r1", estimate_nanos=1000,
                                               tags={"customer": "acme"}), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "missing tag 'feature'" in err.value.details()
        after = stub.GetStatus(pb.GetStatusRequest(agent_id="billing"))
        assert (after.daily.spent_nanos, after.daily.reserved_nanos) == (0, 0)
        # The same request id, now tagged, is a fresh hold: the refusal wrote nothing.
        allowed = stub.Authorize(pb.AuthorizeRequest(agent_id="billing", request_id="r1", estimate_nanos=1000,
                                                     tags={"customer": "acme", "feature": "x"}), timeout=5)
        assert allowed.decision == pb.DECISION_ALLOWED
