"""The use cases of budgetd.app on the memory store, with an injected time
source: no gRPC, no socket."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from budgetd.app import BudgetService, ConfigInForce, Draining, UnknownAgent, to_ms
from budgetd.config import load_config_text
from budgetd.metrics import Metrics
from budgetd.store.memory import MemoryStore
from budgetd_client.usage import UsageEstimate

USD = 1_000_000_000
START_MS = to_ms(datetime(2026, 11, 22, 12, 0, tzinfo=UTC))


class Clock:
    def __init__(self) -> None:
        self.ms = START_MS

    def __call__(self) -> int:
        return self.ms


class ReadCounting(MemoryStore):
    """Counts the reads of one agent and of many that the service asks for
    (the memory store may answer a batch one agent at a time)."""

    def __init__(self) -> None:
        super().__init__()
        self.single_reads = self.batched_reads = 0
        self._in_batch = False

    async def read(self, plan):
        self.single_reads += not self._in_batch
        return await super().read(plan)

    async def read_many(self, plans):
        self.batched_reads += 1
        self._in_batch = True
        try:
            return await super().read_many(plans)
        finally:
            self._in_batch = False


@pytest.fixture
async def app():
    async def make(body: str) -> tuple[BudgetService, Clock]:
        config = load_config_text('server: {listen: "127.0.0.1:0"}\nstore: {url: "memory://"}\n' + body)
        store = ReadCounting()
        await store.open()
        clock = Clock()
        return BudgetService(ConfigInForce.of(config), store, clock, Metrics()), clock

    return make


async def test_a_hold_then_a_settle_counts_the_spend_in_the_period_of_the_injected_time(app):
    service, _ = await app("agents:\n  a1: {daily_usd: 1.00}\n")
    held = await service.hold("a1", "r1", {}, 300_000_000)
    assert held.allowed and held.held_nanos == 300_000_000
    settled = await service.settle("a1", "r1", {"team": "x"}, 250_000_000)
    assert (settled.counted_nanos, settled.duplicate, settled.paused) == (250_000_000, False, False)
    report = await service.status("a1")
    daily = report.plan.limit_for("agent:a1", "daily")
    assert daily is not None and daily.period.key == "2026-11-22"
    assert report.state.balance(daily).spent_nanos == 250_000_000
    assert report.budget_source == "configured" and not report.paused


async def test_a_hold_past_the_cap_is_refused_and_a_settle_at_the_cap_pauses(app):
    service, _ = await app("agents:\n  a1: {daily_usd: 1.00}\n")
    assert not (await service.hold("a1", "big", {}, 2 * USD)).allowed
    await service.hold("a1", "r1", {}, USD)
    assert (await service.settle("a1", "r1", {}, USD)).paused
    refused = await service.hold("a1", "r2", {}, 1)
    assert not refused.allowed and refused.denial is not None and refused.denial.kind == "paused"
    assert (await service.status("a1")).paused


async def test_a_usage_estimate_without_output_tokens_takes_the_agents_configured_estimate(app):
    service, _ = await app("agents:\n  a1: {daily_usd: 100, estimate_output_tokens: 1000}\n")
    without = await service.hold("a1", "r1", {}, UsageEstimate("gpt-4o-mini", 1000))
    given = await service.hold("a1", "r2", {}, UsageEstimate("gpt-4o-mini", 1000, 1000))
    assert without.held_nanos == given.held_nanos > 0


async def test_input_is_checked_before_anything_is_touched(app):
    service, _ = await app("agents:\n  a1: {daily_usd: 1.00}\n")
    with pytest.raises(ValueError, match="agent_id"):
        await service.hold("bad id!", "r1", {}, 1)
    with pytest.raises(ValueError, match="estimate_nanos"):
        await service.hold("a1", "r1", {}, -1)
    with pytest.raises(UnknownAgent, match="has no budget"):
        await service.hold("nobody", "r1", {}, 1)
    with pytest.raises(ValueError, match="the range is empty"):
        await service.report("agent", "2026-11-23", "2026-11-22")


async def test_a_drain_refuses_new_holds_and_ends_when_the_granted_hold_settles(app):
    service, _ = await app("agents:\n  a1: {daily_usd: 1.00}\n")
    await service.hold("a1", "r1", {}, 1000)
    drained = asyncio.ensure_future(service.drain(5))
    await asyncio.sleep(0)
    with pytest.raises(Draining):
        await service.hold("a1", "r2", {}, 1000)
    await service.settle("a1", "r1", {}, 1000)  # settles still land
    assert await asyncio.wait_for(drained, 1) == 0


async def test_lapsed_holds_expire_by_the_injected_time(app):
    service, clock = await app("reservation_ttl_seconds: 60\nagents:\n  a1: {daily_usd: 1.00}\n")
    await service.hold("a1", "r1", {}, 1000)
    assert await service.expire_lapsed_holds() == 0
    clock.ms += 61_000
    assert await service.expire_lapsed_holds() == 1
    assert len(service.holds_in_flight) == 0


async def test_status_lists_read_every_agent_in_one_batch(app):
    service, _ = await app("agents:\n  a1: {daily_usd: 1}\n  a2: {daily_usd: 2}\n  a3: {daily_usd: 3}\n")
    reports = await service.list_statuses()
    assert [r.plan.agent_id for r in reports] == ["a1", "a2", "a3"]
    assert (service.store.single_reads, service.store.batched_reads) == (0, 1)


async def test_an_operator_command_for_an_agent_never_seen_is_refused_with_a_hint(app):
    service, _ = await app("defaults: {daily_usd: 1}\nagents:\n  research-bot: {daily_usd: 1}\n")
    with pytest.raises(UnknownAgent, match="did you mean 'research-bot'"):
        await service.pause("research-bto", "")
    paused = await service.pause("research-bot", "")
    assert paused.paused
