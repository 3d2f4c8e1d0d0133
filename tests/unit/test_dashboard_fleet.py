"""The fleet's order and its snapshots, on the memory store: quiet agents
merged in by id, a notice making the next page read afresh, and states that
are slow to read served stale while they are read again in the background."""

from __future__ import annotations

import asyncio

import pytest

from budgetd.app import BudgetService, ConfigInForce, system_now_ms
from budgetd.config import load_config_text
from budgetd.dashboard import fleet as fleet_module
from budgetd.dashboard import kept
from budgetd.dashboard.fleet import Fleet, FleetQuery
from budgetd.metrics import Metrics
from budgetd.store.memory import MemoryStore

CONFIG = "agents:\n" + "".join(f"  a{i:02d}: {{daily_usd: 10}}\n" for i in range(30)) + \
    "groups:\n  g: {members: [a05, a06], daily_usd: 100}\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fleet():
    store = MemoryStore()
    await store.open()
    service = BudgetService(ConfigInForce.of(load_config_text(CONFIG)), store, system_now_ms, Metrics())
    clock = Clock()
    yield service, Fleet(service, clock), clock
    await store.close()


async def spend(service: BudgetService, agent: str, nanos: int) -> None:
    await service.hold(agent, f"r-{agent}-{nanos}", {}, nanos)
    await service.settle(agent, f"r-{agent}-{nanos}", {}, nanos)


def ids(page: dict) -> list[str]:
    return [row["id"] for row in page["rows"]]


async def test_quiet_agents_sort_by_id_where_their_zero_falls(fleet):
    service, f, _ = fleet
    await spend(service, "a20", 3)
    await spend(service, "a03", 7)
    desc = await f.page(FleetQuery(kind="agent", sort="daily_spent", order="desc", page_size=4))
    assert ids(desc) == ["a03", "a20", "a00", "a01"]
    asc = await f.page(FleetQuery(kind="agent", sort="daily_spent", order="asc", page_size=30))
    assert ids(asc)[-2:] == ["a20", "a03"]
    assert ids(asc)[:3] == ["a00", "a01", "a02"]
    # No call yet: a last-call sort puts the agents without one last, by id.
    last = await f.page(FleetQuery(kind="agent", sort="last_call", order="desc", page_size=3))
    assert ids(last)[0] == "a03" and ids(last)[2] == "a00"


async def test_a_notice_makes_the_next_page_read_afresh(fleet):
    service, f, clock = fleet
    assert (await f.page(FleetQuery(state="paused")))["total"] == 0
    await service.pause("a07", "looping")
    assert (await f.page(FleetQuery(state="paused")))["total"] == 0  # the snapshot (2 s) does not know yet
    f.invalidate()  # what the dashboard does on the pause's notice
    assert ids(await f.page(FleetQuery(state="paused"))) == ["a07"]
    clock.now += fleet_module.SNAPSHOT_SECONDS
    await service.resume("a07")
    assert ids(await f.page(FleetQuery(state="paused"))) == []  # aged out: read again


async def test_slow_states_are_served_stale_while_read_again(fleet, monkeypatch):
    service, f, _ = fleet
    monkeypatch.setattr(kept, "READ_NOW_SECONDS", 0.0)  # every read counts as slow
    await spend(service, "a10", 5)
    assert ids(await f.page(FleetQuery(sort="daily_spent", page_size=1))) == ["a10"]  # the first read: waited for
    await spend(service, "a11", 9)
    f.invalidate()
    # Stale order at once (a10 still first), its row's numbers fresh; the new read runs behind it.
    page = await f.page(FleetQuery(kind="agent", sort="daily_spent", page_size=2))
    assert ids(page) == ["a10", "a00"] and page["rows"][0]["daily"]["spent_usd"] == "0.000000005"
    await asyncio.wait_for(f._states._background, 5)
    assert ids(await f.page(FleetQuery(kind="agent", sort="daily_spent", page_size=2))) == ["a11", "a10"]
