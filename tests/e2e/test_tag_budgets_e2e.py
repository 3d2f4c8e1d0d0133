"""Tag budgets end to end: one customer's cap shared by agents of different
groups, raced by 64 threads through real daemons on SQLite, Redis and Redis
Cluster; the denial names the customer; budgetctl shows, pauses and resumes
a tag value."""

from __future__ import annotations

import subprocess
import threading
import uuid
from decimal import Decimal

import pytest
from budgetd_client import AgentPaused, Budget, BudgetExceeded

from helpers import script

D = Decimal

CONFIG = """
agents:
  a1: {daily_usd: 100}
  b1: {daily_usd: 100}
groups:
  ga: {members: [a1], daily_usd: 100}
  gb: {members: [b1], daily_usd: 100}
tag_budgets:
  customer:
    defaults: {daily_usd: "1.00", monthly_usd: 50}
    values:
      acme: {daily_usd: "1.00", monthly_usd: 5}
"""


def race_tagged(runs: list[tuple[str, str, int]], tags: dict[str, str]) -> tuple[int, set[str]]:
    """Threads guard $0.01 calls carrying ``tags`` until refused, for each
    (address, agent, threads) at once: how many passed, and the scopes the
    refusals named."""
    total = sum(threads for _, _, threads in runs)
    start = threading.Barrier(total)
    passed: list[int] = []
    refused_by: set[str] = set()

    def worker(budget: Budget, agent: str) -> None:
        count = 0
        start.wait()
        while True:
            try:
                with budget.guard(agent, estimate_usd="0.01", tags=tags) as call:
                    call.record_usd("0.01")
            except (BudgetExceeded, AgentPaused) as refused:
                refused_by.add(refused.scope)
                break
            count += 1
        passed.append(count)

    budgets = [Budget(address) for address, _, _ in runs]
    pool = [threading.Thread(target=worker, args=(budget, agent))
            for budget, (_, agent, threads) in zip(budgets, runs, strict=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(180)
    for budget in budgets:
        budget.close()
    assert len(passed) == total, "a racer did not finish"
    return sum(passed), refused_by


def _daemons(backend: str, start_daemon, request) -> tuple[str, str]:
    """Two addresses serving the race: one daemon on SQLite (it owns the
    file), two replicas on one Redis or one Redis Cluster."""
    if backend == "sqlite":
        daemon = start_daemon(CONFIG)
        return daemon.address, daemon.address
    prefix = f"t{uuid.uuid4().hex[:8]}"
    if backend == "redis":
        url = f"{request.getfixturevalue('redis_server').url}?prefix={prefix}"
    else:
        url = f"{request.getfixturevalue('redis_cluster').url}&prefix={prefix}"
    return start_daemon(CONFIG, store_url=url).address, start_daemon(CONFIG, store_url=url).address


BACKENDS = [pytest.param("sqlite"), pytest.param("redis", marks=pytest.mark.redis),
            pytest.param("cluster", marks=[pytest.mark.redis, pytest.mark.cluster])]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("customer", ["acme", "first-seen-in-the-race"])
def test_64_threads_two_agents_one_customer_cap_exactly_100_pass(backend, customer, start_daemon, request):
    """acme is listed; the other customer falls under defaults and has no
    counter until the race's first holds make it."""
    first, second = _daemons(backend, start_daemon, request)
    passed, refused_by = race_tagged([(first, "a1", 32), (second, "b1", 32)], {"customer": customer})
    assert passed == 100
    assert refused_by == {f"customer:{customer}"}
    with Budget(first) as budget:
        st = budget.status(tag=("customer", customer))
        assert (st.scope, st.daily.spent_usd, st.daily.reserved_usd, st.daily.cap_usd) == \
            (f"customer:{customer}", D("1.00"), 0, D("1.00"))
        assert st.paused and st.pause_kind == "cap" and st.paused_by == f"customer:{customer}"
        assert st.budget_source == ("configured" if customer == "acme" else "defaults")
        # The agents spent it between them, each within its own caps, and run for other customers.
        spent = [budget.status(agent).daily.spent_usd for agent in ("a1", "b1")]
        assert sum(spent) == D("1.00") and all(s > 0 for s in spent)
        with budget.guard("a1", estimate_usd="0.01", tags={"customer": "someone-else"}) as call:
            call.record_usd("0.01")


def test_the_denial_names_the_customer_and_budgetctl_shows_pauses_and_resumes_it(start_daemon):
    daemon = start_daemon(CONFIG)
    ctl = [script("budgetctl"), "--address", daemon.address]
    with Budget(daemon.address) as budget:
        with budget.guard("a1", estimate_usd="0.60", tags={"customer": "acme"}) as call:
            call.record_usd("0.60")
        with pytest.raises(BudgetExceeded) as refused:
            with budget.guard("b1", estimate_usd="0.50", tags={"customer": "acme"}):
                pass
        assert (refused.value.scope, refused.value.window, refused.value.remaining_usd) == \
            ("customer:acme", "daily", D("0.40"))

        shown = subprocess.run([*ctl, "status", "--tag", "customer=acme"], capture_output=True, text=True)
        assert shown.returncode == 0, shown.stderr
        assert "tag customer:acme" in shown.stdout and "0.60" in shown.stdout and "1.00" in shown.stdout

        paused = subprocess.run([*ctl, "pause", "--tag", "customer=acme", "--reason", "invoice overdue"],
                                capture_output=True, text=True)
        assert paused.returncode == 0, paused.stderr
        assert "PAUSED" in paused.stdout and "invoice overdue" in paused.stdout
        for agent in ("a1", "b1"):
            with pytest.raises(AgentPaused) as stopped:
                with budget.guard(agent, estimate_usd="0.01", tags={"customer": "acme"}):
                    pass
            assert (stopped.value.scope, stopped.value.reason) == ("customer:acme", "invoice overdue")
        with budget.guard("a1", estimate_usd="0.01", tags={"customer": "other"}) as call:  # others still run
            call.record_usd("0.01")

        resumed = subprocess.run([*ctl, "resume", "--tag", "customer=acme"], capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr
        assert "PAUSED" not in resumed.stdout
        with budget.guard("b1", estimate_usd="0.40", tags={"customer": "acme"}) as call:
            call.record_usd("0.40")
        assert budget.status(tag="customer=acme").daily.spent_usd == D("1.00")

        # A tag without a tag_budgets entry is refused with what to do, and nothing changes.
        unknown = subprocess.run([*ctl, "pause", "--tag", "feature=search"], capture_output=True, text=True)
        assert unknown.returncode == 1
        assert "tag 'feature' has no tag_budgets entry" in unknown.stderr and "customer" in unknown.stderr
        both = subprocess.run([*ctl, "pause", "a1", "--tag", "customer=acme"], capture_output=True, text=True)
        assert both.returncode == 1 and "not both" in both.stderr
        assert not budget.status("a1").paused
