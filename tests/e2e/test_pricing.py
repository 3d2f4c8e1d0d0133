"""Pricing: exact costs from usage, snapshots, unknown models, overrides."""

from __future__ import annotations

import sqlite3
import uuid
from decimal import Decimal

import grpc
import pytest
from budgetd_client import Budget, BudgetError
from budgetd_client.usage import UsageEstimate
from budgetd_client.v1 import budget_pb2 as pb
from budgetd_client.v1 import budget_pb2_grpc as pb_grpc

from budgetd.config import ConfigError, load_config_text
from budgetd.pricing import PriceTable
from budgetd_client.usage import Usage

D = Decimal
AGENTS = "agents:\n  a1: {daily_usd: 100}\n"


def spent_after(budget: Budget, agent: str, **usage) -> Decimal:
    before = budget.status(agent).daily.spent_usd
    with budget.guard(agent, estimate_usd="0.10") as call:
        call.record_usage(**usage)
    st = budget.status(agent)
    assert st.daily.reserved_usd == 0
    return st.daily.spent_usd - before


def test_reference_prices_are_exact_through_the_daemon(start_daemon):
    budget = Budget(start_daemon(AGENTS).address)
    assert spent_after(budget, "a1", model="gpt-4o", input_tokens=1200, cached_input_tokens=1000,
                       output_tokens=300) == D("0.00475")
    # Reasoning tokens are part of output tokens: counted once.
    assert spent_after(budget, "a1", model="o4-mini", input_tokens=500, output_tokens=1000,
                       reasoning_tokens=400) == D("0.00495")


def test_snapshot_names_price_as_their_base_model():
    table = PriceTable(load_config_text("timezone: UTC\n"))  # the bundled prices alone
    for snapshot, base in [("gpt-4o-2024-08-06", "gpt-4o"), ("o4-mini-2025-04-16", "o4-mini"),
                           ("gpt-4.1-2025-04-14", "gpt-4.1")]:
        usage = dict(input_tokens=10_000, cached_input_tokens=2_000, output_tokens=700)
        assert table.price(Usage(snapshot, **usage)).nanos == table.price(Usage(base, **usage)).nanos


def test_costs_round_up_to_the_next_nanodollar():
    # gpt-4o-mini input is $0.15 per million tokens: one token is 150 nanodollars.
    table = PriceTable(load_config_text("prices:\n  odd: {input_usd_per_mtok: 1, output_usd_per_mtok: 1}\n"))
    assert table.price(Usage("gpt-4o-mini", input_tokens=1)).nanos == 150
    assert table.price(Usage("odd", input_tokens=1)).nanos == 1000  # $0.000001 exactly
    assert PriceTable(load_config_text(
        "prices:\n  third: {input_usd_per_mtok: 0.000333, output_usd_per_mtok: 0}\n"
    )).price(Usage("third", input_tokens=1)).nanos == 1  # 0.000333 nanos, rounded up


def test_unknown_model_is_denied_by_default(start_daemon):
    budget = Budget(start_daemon(AGENTS).address)
    with pytest.raises(BudgetError, match="no price for model 'mystery-model'"):
        with budget.guard("a1", estimate_usage=UsageEstimate(model="mystery-model", input_tokens=100)):
            pass
    # A settle of an unknown model cannot count as zero: the hold is settled.
    with budget.guard("a1", estimate_usd="0.25") as call:
        call.record_usage(model="mystery-model", input_tokens=100, output_tokens=5)
    assert budget.status("a1").daily.spent_usd == D("0.25")


def test_unknown_model_with_fallback_price(start_daemon):
    budget = Budget(start_daemon(AGENTS + "unknown_model: fallback\n"
                                 "fallback_price: {input_usd_per_mtok: 10, output_usd_per_mtok: 30}\n").address)
    assert spent_after(budget, "a1", model="mystery-model", input_tokens=1000, output_tokens=100) == D("0.013")
    with budget.guard("a1", estimate_usage=UsageEstimate(model="mystery-model", input_tokens=1000,
                                                        output_tokens=1000)) as call:
        assert call.held_nanos == 40_000_000


def test_fallback_policy_needs_a_price():
    with pytest.raises(ConfigError, match=r"^<config>: line 1: \(top level\): unknown_model: fallback needs "
                                          r"fallback_price$"):
        load_config_text("unknown_model: fallback\n")


def test_usage_estimate_is_priced_by_the_daemon_and_defaults_output_from_config(start_daemon):
    budget = Budget(start_daemon("agents:\n  a1: {daily_usd: 100, estimate_output_tokens: 2000}\n").address)
    with budget.guard("a1", estimate_usage=UsageEstimate(model="gpt-4o", input_tokens=1000, output_tokens=500)) as c:
        assert c.held_nanos == 2_500 * 1000 + 10_000 * 500  # $2.50 / $10 per million
    with budget.guard("a1", estimate_usage=UsageEstimate(model="gpt-4o", input_tokens=1000)) as c:
        assert c.held_nanos == 2_500 * 1000 + 10_000 * 2000


def test_override_changes_the_price_of_the_next_settle_and_ledger_rows_carry_the_version(start_daemon):
    daemon = start_daemon(AGENTS)
    stub = pb_grpc.BudgetStub(grpc.insecure_channel(daemon.address))

    def settle() -> pb.CommitResponse:
        usage = pb.Usage(model="gpt-4o-2024-11-20", input_tokens=1_000_000, output_tokens=0)
        return stub.Commit(pb.CommitRequest(agent_id="a1", request_id=str(uuid.uuid4()), usage=usage))

    first = settle()
    assert first.counted_nanos == 2_500_000_000  # $2.50 per million input tokens, from genai-prices
    daemon.write_config(AGENTS + "prices:\n  gpt-4o: {input_usd_per_mtok: 2.00, output_usd_per_mtok: 8}\n")
    daemon.restart()
    stub = pb_grpc.BudgetStub(grpc.insecure_channel(daemon.address))
    second = settle()
    assert second.counted_nanos == 2_000_000_000
    assert first.price_version.startswith("genai-prices-0.2.3+") and second.price_version != first.price_version

    with sqlite3.connect(daemon.db_path) as db:
        rows = db.execute("SELECT model, input_tokens, cost_nanos, price_version FROM ledger ORDER BY seq").fetchall()
    assert rows == [("gpt-4o-2024-11-20", 1_000_000, 2_500_000_000, first.price_version),
                    ("gpt-4o-2024-11-20", 1_000_000, 2_000_000_000, second.price_version)]


def test_impossible_usage_is_refused_on_the_wire(start_daemon):
    stub = pb_grpc.BudgetStub(grpc.insecure_channel(start_daemon(AGENTS).address))
    bad = [pb.Usage(model="gpt-4o", input_tokens=10, cached_input_tokens=11),
           pb.Usage(model="gpt-4o", output_tokens=10, reasoning_tokens=11),
           pb.Usage(model="gpt-4o", input_tokens=-1),
           pb.Usage(model="", input_tokens=1)]
    for usage in bad:
        with pytest.raises(grpc.RpcError) as err:
            stub.Commit(pb.CommitRequest(agent_id="a1", request_id=str(uuid.uuid4()), usage=usage))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_client_refuses_impossible_usage():
    budget = Budget("127.0.0.1:1")
    call = budget.guard("a1")._call
    with pytest.raises(ValueError, match="cached_input_tokens"):
        call.record_usage(model="gpt-4o", input_tokens=10, cached_input_tokens=11)
    with pytest.raises(ValueError, match="reasoning_tokens"):
        call.record_usage(model="gpt-4o", input_tokens=10, output_tokens=1, reasoning_tokens=2)
    with pytest.raises(ValueError, match="input_tokens"):
        call.record_usage(model="gpt-4o", input_tokens=-1)
