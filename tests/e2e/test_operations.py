"""Operations: hot reload, group caps, ledger reports, Prometheus metrics."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import time
import urllib.request
from decimal import Decimal

import pytest
from budgetd_client import AgentPaused, Budget, BudgetExceeded
from prometheus_client.parser import text_string_to_metric_families

from fake_slack import FakeSlack
from helpers import free_port, script
from test_protocol_e2e import race_in_parallel

D = Decimal


def spend(budget: Budget, agent: str, usd: str, **tags) -> None:
    with budget.guard(agent, estimate_usd=usd, tags=tags or None) as call:
        call.record_usd(usd)


def wait_until(predicate, timeout: float) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "not within the time allowed"
        time.sleep(0.05)
    return time.monotonic() - started


def test_an_edited_cap_is_in_force_within_5_seconds_and_sighup_applies_at_once(start_daemon):
    daemon = start_daemon("agents:\n  a1: {daily_usd: 1.00}\n")
    budget = Budget(daemon.address)
    spend(budget, "a1", "1.00")
    assert budget.status("a1").paused

    daemon.write_config("agents:\n  a1: {daily_usd: 2.00}\n")  # raised: resumes
    took = wait_until(lambda: budget.status("a1").daily.cap_usd == D(2), 5)
    assert not budget.status("a1").paused
    spend(budget, "a1", "0.50")
    print(f"\nedit in force after {took:.2f}s")

    daemon.write_config("agents:\n  a1: {daily_usd: 1.00}\n")  # lowered below the spend: pauses
    daemon.proc.send_signal(signal.SIGHUP)
    took = wait_until(lambda: budget.status("a1").daily.cap_usd == D(1), 1.0)
    st = budget.status("a1")
    assert st.paused and st.pause_kind == "cap"
    with pytest.raises(AgentPaused):
        spend(budget, "a1", "0.01")
    assert budget.config().generation == 3
    print(f"SIGHUP in force after {took:.2f}s")


@pytest.mark.parametrize(("edit", "where"), [
    ("agents:\n  a1: {daily_usd: 5\n", "invalid YAML"),
    ("agents:\n  a1: {daily_usd: 5, dialy_usd: 6}\n", "line {a1}: agents.a1.dialy_usd: unknown key"),
    ("agents:\n  a1: {daily_usd: -5}\n", "line {a1}: agents.a1.daily_usd: must not be negative"),
])
def test_a_bad_edit_is_refused_and_the_old_config_keeps_serving(start_daemon, edit, where):
    with FakeSlack() as slack:
        body = f'slack: {{webhook_url: "{slack.webhook_url}", min_interval_seconds: 0}}\n'
        daemon = start_daemon("agents:\n  a1: {daily_usd: 1.00}\n" + body)
        budget = Budget(daemon.address)
        text = daemon.config_path.read_text().replace("agents:\n  a1: {daily_usd: 1.00}\n", "") + edit
        daemon.config_path.write_text(text)
        where = where.format(a1=text.splitlines().index("  " + edit.splitlines()[1].strip()) + 1)
        wait_until(lambda: budget.config().last_error != "", 5)
        info = budget.config()
        assert info.generation == 1 and where in info.last_error
        assert budget.status("a1").daily.cap_usd == D(1)  # the old config serves
        spend(budget, "a1", "0.10")
        slack.wait_for("budgets.yaml edit was rejected")
        status = subprocess.run([script("budgetctl"), "--address", daemon.address, "status"],
                                capture_output=True, text=True, timeout=30)
        assert "config generation 1" in status.stdout and "last rejected edit" in status.stdout
        assert where in status.stdout
        check = subprocess.run([script("budgetctl"), "check-config", str(daemon.config_path)],
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 1 and where in check.stderr


def test_two_members_racing_one_group_cap_exactly_100_pass(start_daemon):
    daemon = start_daemon("agents:\n  'team-*': {daily_usd: 100}\n"
                          "groups:\n  team: {members: ['team-*'], daily_usd: 1.00}\n")
    passed = race_in_parallel([(daemon.address, "team-a", 32), (daemon.address, "team-b", 32)])
    assert sum(passed) == 100
    st = Budget(daemon.address).status("team-a")
    assert st.groups[0].name == "team" and st.groups[0].daily.spent_usd == D("1.00")
    assert st.daily.spent_usd + Budget(daemon.address).status("team-b").daily.spent_usd == D("1.00")
    with pytest.raises((AgentPaused, BudgetExceeded)):
        spend(Budget(daemon.address), "team-c", "0.01")
    table = subprocess.run([script("budgetctl"), "--address", daemon.address, "status"],
                           capture_output=True, text=True, timeout=30).stdout
    assert "group team" in table


def run_report(daemon, by: str, fmt: str) -> str:
    done = subprocess.run([script("budgetctl"), "--address", daemon.address, "report", "--by", by, "--format", fmt],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_reports_by_agent_and_feature_in_csv_and_json_sum_to_status(start_daemon):
    daemon = start_daemon("defaults: {daily_usd: 100}\n")
    budget = Budget(daemon.address)
    for agent, usd, feature in [("a1", "0.123456789", "digest"), ("a1", "1.5", "search"), ("a2", "0.000000001", "digest"),
                                ("a2", "2.25", ""), ("a3", "0.333333333", "search")]:
        spend(budget, agent, usd, **({"feature": feature} if feature else {}))
    with budget.guard("a3", estimate_usd="0.01"):  # settles the hold: counted too
        pass
    spent = {a: budget.status(a).daily.spent_usd for a in ("a1", "a2", "a3")}
    total = sum(spent.values())

    by_agent = {row["agent"]: D(row["cost_usd"]) for row in csv.DictReader(io.StringIO(run_report(daemon, "agent", "csv")))}
    assert by_agent.pop("(total)") == total  # CSV's last row: the total
    assert by_agent == spent
    report = json.loads(run_report(daemon, "feature", "json"))
    features = {row["feature"]: D(row["cost_usd"]) for row in report["rows"]}
    assert features == {"digest": D("0.12345679"), "search": D("1.833333333"), "(none)": D("2.26")}
    assert sum(features.values()) == D(report["total_usd"]) == total
    *by_feature_csv, csv_total = csv.DictReader(io.StringIO(run_report(daemon, "feature", "csv")))
    assert sum(D(r["cost_usd"]) for r in by_feature_csv) == D(csv_total["cost_usd"]) == total
    assert sum(D(r["cost_usd"]) for r in json.loads(run_report(daemon, "agent", "json"))["rows"]) == total
    assert "TOTAL" in run_report(daemon, "day", "table")


def test_metrics_parse_and_carry_what_operators_watch(start_daemon):
    port = free_port()
    daemon = start_daemon('agents:\n  a1: {daily_usd: 0.10}\n')
    daemon.write_config('agents:\n  a1: {daily_usd: 0.10}\n')
    text = daemon.config_path.read_text().replace("server:\n", f'server:\n  metrics_listen: "127.0.0.1:{port}"\n', 1)
    daemon.config_path.write_text(text)
    daemon.restart()
    budget = Budget(daemon.address)
    spend(budget, "a1", "0.10")
    with pytest.raises(AgentPaused):
        spend(budget, "a1", "0.01")
    daemon.config_path.write_text(daemon.config_path.read_text() + "bogus: 1\n")  # a rejected reload
    wait_until(lambda: budget.config().last_error != "", 5)
    daemon.run_due_checks()  # the per-agent gauges refreshed now, not at the next 10 s tick
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    families = {f.name: f for f in text_string_to_metric_families(body)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("budgetd_holds_total", (("reason", ""), ("result", "allowed")))] == 1
    assert samples[("budgetd_holds_total", (("reason", "paused"), ("result", "denied")))] == 1
    assert samples[("budgetd_rpc_latency_seconds_count", (("method", "Authorize"),))] == 2
    assert samples[("budgetd_spent_usd", (("agent", "a1"), ("window", "daily")))] == 0.1
    assert samples[("budgetd_cap_usd", (("agent", "a1"), ("window", "daily")))] == 0.1
    assert samples[("budgetd_paused_agents", ())] == 1
    assert samples[("budgetd_config_reloads_total", (("outcome", "rejected"),))] == 1
    assert ("budgetd_outbox_depth", ()) in samples and ("budgetd_store_errors_total", ()) in samples
