"""A hot reload that lowers a cap below the spend pauses the agent, and one
that raises it again resumes it, with their notices, on every store: a real
budgetd per store, edited as an operator edits budgets.yaml."""

from __future__ import annotations

import signal
import uuid
from decimal import Decimal

import pytest
from budgetd_client import AgentPaused, Budget

from fake_slack import FakeSlack
from helpers import wait_until


@pytest.fixture
def slack():
    with FakeSlack() as s:
        yield s


@pytest.fixture(params=["sqlite", "redis", "redis-cluster"])
def store_url(request):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    if request.param == "sqlite":
        return None  # the daemon's own file
    if request.param == "redis":
        return f"{request.getfixturevalue('redis_server').url}?prefix={prefix}"
    return f"{request.getfixturevalue('redis_cluster').url}&prefix={prefix}"


def test_a_cap_lowered_below_the_spend_pauses_and_raised_again_resumes(start_daemon, slack, store_url):
    body = 'agents:\n  a1: {{daily_usd: {cap}}}\n  a2: {{daily_usd: {cap}}}\nslack: {{webhook_url: "%s"}}\n' % (
        slack.webhook_url)
    daemon = start_daemon(body.format(cap="2.00"), store_url=store_url)
    budget = Budget(daemon.address)
    for agent in ("a1", "a2"):
        with budget.guard(agent, estimate_usd="0.50") as call:
            call.record_usd("0.50")

    daemon.write_config(body.format(cap="0.40"))
    daemon.proc.send_signal(signal.SIGHUP)
    # Every agent is reconciled, not only the first: both are paused, each with its notice.
    wait_until(lambda: budget.status("a1").paused and budget.status("a2").paused)
    for agent in ("a1", "a2"):
        st = budget.status(agent)
        assert (st.pause_kind, st.daily.cap_usd, st.daily.spent_usd) == ("cap", Decimal("0.40"), Decimal("0.50"))
        with pytest.raises(AgentPaused):
            with budget.guard(agent, estimate_usd="0.01"):
                pytest.fail("a paused agent's block must not run")
    assert len(slack.wait_for("is paused", count=2)) == 2

    daemon.write_config(body.format(cap="1.00"))
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: not budget.status("a1").paused and not budget.status("a2").paused)
    with budget.guard("a1", estimate_usd="0.01") as call:
        call.record_usd("0.01")
    assert budget.status("a1").daily.spent_usd == Decimal("0.51")
    assert len(slack.wait_for("running again", count=2)) == 2
    assert "store unavailable" not in daemon.log()
    budget.close()


def test_an_agent_the_store_refuses_does_not_leave_the_others_unreconciled(start_daemon, redis_cluster):
    # On Redis Cluster an agent in two groups is refused (its keys cannot share
    # one hash slot); it sorts first, so a reconcile that stopped at it would
    # leave b1 running over its new cap. Both caps change: only agents whose
    # caps changed are reconciled.
    body = ('agents:\n  a0: {{daily_usd: {cap}}}\n  b1: {{daily_usd: {cap}}}\n'
            'groups:\n  g1: {{members: [a0]}}\n  g2: {{members: [a0]}}\n')
    url = f"{redis_cluster.url}&prefix=t{uuid.uuid4().hex[:8]}"
    daemon = start_daemon(body.format(cap="2.00"), store_url=url)
    budget = Budget(daemon.address)
    with budget.guard("b1", estimate_usd="0.50") as call:
        call.record_usd("0.50")
    daemon.write_config(body.format(cap="0.40"))
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: budget.status("b1").paused)
    wait_until(lambda: "1 agent(s) not reconciled" in daemon.log())
    assert "could not reconcile a0" in daemon.log()
    budget.close()
