"""A hot reload that lowers a cap below the spend pauses the agent, and one
that raises it again resumes it, with their notices, on every store: a real
budgetd per store, edited as an operator edits budgets.yaml."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from decimal import Decimal

import pytest
from budgetd_client import AgentPaused, Budget, BudgetError

from budgetd.auth import sha256_hex
from fake_slack import FakeSlack
from helpers import free_port, wait_until


@pytest.fixture
def slack():
    with FakeSlack() as s:
        yield s


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("redis-cluster", marks=[pytest.mark.redis, pytest.mark.cluster])])
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


def budgetctl(daemon, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "BUDGETD_ADDRESS": daemon.address, **({"BUDGETD_TOKEN": token} if token else {})}
    return subprocess.run([sys.executable, "-m", "budgetd.cli.budgetctl", *args], capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.mark.parametrize("edit, why", [
    ("", "the file is empty"),  # an editor's truncate, caught before its write
    ("# agents moved elsewhere\n", "the file is empty"),
    ("agents:\n  a1: {daily_usd: 9}\n---\nagents: {}\n", "second YAML document"),
])
def test_a_bad_edit_is_rejected_calls_go_on_under_the_old_config_and_a_good_one_is_picked_up(start_daemon, edit,
                                                                                             why):
    daemon = start_daemon("agents:\n  a1: {daily_usd: 2}\n")
    budget = Budget(daemon.address)
    generation = budget.config().generation
    daemon.config_path.write_text(edit)  # the whole file, header and all
    wait_until(lambda: budget.config().last_error, what="the edit to be rejected")
    info = budget.config()
    assert info.generation == generation and why in info.last_error and str(daemon.config_path) in info.last_error
    with budget.guard("a1", estimate_usd="0.10") as call:  # still the old config: a1 is known
        call.record_usd("0.10")
    assert budget.status("a1").daily.cap_usd == Decimal("2")
    status = budgetctl(daemon, "status")
    assert status.returncode == 0 and "last rejected edit" in status.stdout and why in status.stdout, status.stdout

    daemon.write_config("agents:\n  a1: {daily_usd: 3}\n")
    wait_until(lambda: budget.status("a1").daily.cap_usd == Decimal("3"), what="the good edit to be picked up")
    assert budget.config().generation == generation + 1
    budget.close()


def test_an_unrelated_edit_leaves_an_operators_resume_and_a_raised_cap_says_so(start_daemon, slack):
    body = "agents:\n  a1: {{daily_usd: {cap}}}\n  a2: {{daily_usd: 50}}\n" + \
        'slack: {{webhook_url: "%s", min_interval_seconds: 0}}\n' % slack.webhook_url
    daemon = start_daemon(body.format(cap="50"))
    budget = Budget(daemon.address)
    with budget.guard("a1", estimate_usd="45.20") as call:
        call.record_usd("45.20")
    daemon.write_config(body.format(cap="40"))
    [paused] = slack.wait_for("is paused")
    assert ("*a1* is paused because its daily cap was lowered from $50.00 to $40.00 in the config, "
            "at or below its spend of $45.20.") in paused
    budget.resume("a1")  # the operator lets it run on
    assert not budget.status("a1").paused

    daemon.write_config(body.format(cap="40") + "digest: {at: '23:59'}\n")  # no cap changed
    wait_until(lambda: budget.config().generation == 3, what="the unrelated edit to be applied")
    daemon.run_due_checks()  # what the edit might have started (a pause, its notice) is done by now
    assert not budget.status("a1").paused, "an edit that changed no cap re-paused an agent an operator resumed"
    assert len(slack.texts("is paused")) == 1

    daemon.write_config(body.format(cap="35"))  # lowered again: paused again
    wait_until(lambda: budget.status("a1").paused)
    daemon.write_config(body.format(cap="100"))
    [resumed] = slack.wait_for("is running again because its daily cap")
    assert "*a1* is running again because its daily cap was raised from $35.00 to $100.00 in the config." in resumed
    assert "operator" not in resumed
    assert not budget.status("a1").paused
    budget.close()


def test_an_edit_that_drops_auth_while_listening_off_loopback_is_rejected(start_daemon):
    port = free_port()
    with_auth = ("agents:\n  a1: {daily_usd: 2}\n"
                 f'auth:\n  tokens:\n    - {{name: ops, sha256: "{sha256_hex("admin-secret")}", role: admin}}\n')
    daemon = start_daemon(with_auth, server_extra=f'metrics_listen: "0.0.0.0:{port}"')
    admin = Budget(daemon.address, token="admin-secret")
    daemon.write_config("agents:\n  a1: {daily_usd: 2}\n")
    wait_until(lambda: admin.config().last_error, what="the edit to be rejected")
    error = admin.config().last_error
    assert "no auth section" in error and f"0.0.0.0:{port}" in error and "allow_unauthenticated" in error
    assert admin.config().generation == 1
    with pytest.raises(BudgetError):  # auth still in force: a call without a token is refused
        Budget(daemon.address).status("a1")

    # Saying the network is trusted is an operator's choice, and is taken.
    daemon.server_extra += "\n          allow_unauthenticated: true"  # at the header's indent
    daemon.write_config("agents:\n  a1: {daily_usd: 2}\n")
    wait_until(lambda: admin.config().generation == 2, what="the explicit edit to be applied")
    admin.close()
