"""What a newcomer meets first, through budgetctl and the client against a real
budgetd: plain money, a daemon that is not there, an address written as a
URL, a typo in an agent id, agents running on defaults, small CLI wording."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from decimal import Decimal

import pytest
from budgetd_client import Budget, BudgetExceeded, UnknownAgent

from helpers import free_port, script

D = Decimal
CONFIG = """
defaults: {daily_usd: 5, monthly_usd: 100}
agents:
  summarizer: {daily_usd: 50, monthly_usd: 100}
  "research-*": {daily_usd: 1000000}
"""


def budgetctl(*args: str, address: str | None = None, env: dict[str, str] | None = None,
              expect: int | None = 0) -> subprocess.CompletedProcess:
    argv = [script("budgetctl"), *(["--address", address] if address else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})
    assert "Traceback" not in done.stderr, done.stderr
    if expect is not None:
        assert done.returncode == expect, (done.stdout, done.stderr)
    return done


def spend(budget: Budget, agent: str, usd: str) -> None:
    with budget.guard(agent, estimate_usd=usd) as call:
        call.record_usd(usd)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def daemon(request, start_daemon):
    """Both stores: "seen" is what each store can answer (current windows, pauses, the ledger)."""
    url = None
    if request.param == "redis":
        url = f"{request.getfixturevalue('redis_server').url}?prefix=t{uuid.uuid4().hex[:8]}"
    daemon = start_daemon(CONFIG, store_url=url)
    budget = Budget(daemon.address)
    spend(budget, "summarizer", "0.0123")
    spend(budget, "research-a", "0.000000001")
    spend(budget, "newbie", "1")  # on defaults: allowed, that is what defaults are for
    return daemon


def by_agent(daemon, *args: str) -> dict[str, dict]:
    shown = json.loads(budgetctl("status", "--format", "json", *args, address=daemon.address).stdout)
    return {st["agent_id"]: st for st in shown}


def test_money_prints_as_plain_decimals_in_json_tables_reports_and_errors(daemon):
    shown = by_agent(daemon)
    assert shown["summarizer"]["daily"].items() >= {"cap_usd": "50", "spent_usd": "0.0123",
                                                     "remaining_usd": "49.9877"}.items()
    assert shown["summarizer"]["monthly"]["cap_usd"] == "100"
    assert shown["research-a"]["daily"]["cap_usd"] == "1000000"
    assert shown["research-a"]["daily"]["spent_usd"] == "0.000000001"
    assert shown["newbie"]["daily"]["cap_usd"] == "5" and shown["newbie"]["daily"]["reserved_usd"] == "0"
    report = json.loads(budgetctl("report", "--format", "json", address=daemon.address).stdout)
    assert report["total_usd"] == "1.012300001"
    assert {r["agent"]: r["cost_usd"] for r in report["rows"]} == {
        "newbie": "1", "summarizer": "0.0123", "research-a": "0.000000001"}
    csv = budgetctl("report", "--format", "csv", address=daemon.address).stdout
    assert "research-a,0.000000001,1" in csv and "E-" not in csv and "E+" not in csv

    budget = Budget(daemon.address)
    st = budget.status("summarizer")
    assert str(st.daily.cap_usd) == "50" and st.daily.cap_usd == D(50) and str(st.monthly.cap_usd) == "100"
    with pytest.raises(BudgetExceeded) as exceeded:
        budget.guard("newbie", estimate_usd="10").__enter__()
    assert "4 USD of 5 USD remains" in str(exceeded.value)
    with pytest.raises(ValueError, match=r"2000000 USD is over the limit of 1000000 USD"):
        budget.guard("newbie", estimate_usd=D("2E+6"))


def test_with_no_daemon_budgetctl_says_it_cannot_reach_it_and_how_to_start_it():
    address = f"127.0.0.1:{free_port()}"  # nothing listens here
    for args in (["--timeout", "1", "status"], ["--timeout", "1", "pause", "a1"], ["health"]):
        done = budgetctl(*args, address=address, expect=1)
        said = done.stderr
        assert said.startswith("budgetctl: ") and said.count("\n") == 1, said
        assert f"budgetd at {address}" in said and "cannot reach it (Connection refused" in said
        assert "is it running? Start it with `make run`" in said and "BUDGETD_ADDRESS" in said
        assert "failed to connect to all addresses" not in said and "ipv6:%5B" not in said


@pytest.mark.parametrize("address", ["localhost", "localhost:notaport", "ftp://localhost:50051"])
def test_an_address_budgetctl_cannot_use_is_refused_naming_where_it_came_from(address):
    done = budgetctl("status", env={"BUDGETD_ADDRESS": address}, expect=1)
    assert done.stderr.startswith(f"budgetctl: BUDGETD_ADDRESS: {address!r} is not an address of budgetd: "
                                  "expected host:port (e.g. localhost:50051)")
    assert budgetctl("--address", address, "status", expect=1).stderr.startswith("budgetctl: address: ")


def test_an_http_address_reaches_a_running_daemon(daemon):
    url = f"http://{daemon.address}"
    done = budgetctl("status", "summarizer", env={"BUDGETD_ADDRESS": url})
    assert "summarizer" in done.stdout
    assert budgetctl("health", address=f"{url}/").stdout.strip().endswith("SERVING")
    assert Budget(url).status("summarizer").daily.spent_usd == D("0.0123")


def test_a_typo_in_an_agent_id_is_refused_with_did_you_mean_and_changes_nothing(daemon):
    for command in ("pause", "resume"):
        done = budgetctl(command, "sumarizer", address=daemon.address, expect=1)
        assert "NOT_FOUND" in done.stderr and "did you mean 'summarizer'?" in done.stderr
        assert f"nothing was {command}d" in done.stderr
    done = budgetctl("status", "sumarizer", address=daemon.address, expect=1)
    assert "did you mean 'summarizer'?" in done.stderr
    assert "did you mean 'newbie'?" in budgetctl("pause", "newbi", address=daemon.address, expect=1).stderr

    budget = Budget(daemon.address)
    assert not budget.status("summarizer").paused
    assert "sumarizer" not in {st.agent_id for st in budget.list_status()}  # no pause row was written
    with pytest.raises(UnknownAgent, match="did you mean 'summarizer'"):
        budget.pause("sumarizer")
    with pytest.raises(UnknownAgent, match="did you mean 'summarizer'"):
        budget.status("sumarizer", known_only=True)
    # An agent asking for itself is not an operator: a new id under defaults is answered.
    assert budget.status("brand-new").budget_source == "defaults"

    # Seen agents and configured ones are operated on, whether or not they ran.
    assert "PAUSED" in budgetctl("pause", "newbie", "--reason", "who is this", address=daemon.address).stdout
    assert budgetctl("resume", "newbie", address=daemon.address).returncode == 0
    budgetctl("status", "summarizer", address=daemon.address)


def test_status_marks_agents_on_defaults_and_lists_those_that_ran_today(daemon):
    shown = by_agent(daemon)
    assert {a: st["budget_source"] for a, st in shown.items()} == {
        "newbie": "defaults", "research-a": "pattern:research-*", "summarizer": "configured"}
    table = budgetctl("status", address=daemon.address).stdout
    assert "newbie (defaults)" in table and "summarizer (defaults)" not in table
    assert list(by_agent(daemon, "--unconfigured")) == ["newbie"]
    only = budgetctl("status", "--unconfigured", address=daemon.address).stdout
    assert "newbie (defaults)" in only and "summarizer" not in only and "research-a" not in only


def test_not_paused_means_no_pause_kind_and_no_pause_reason(daemon):
    budget = Budget(daemon.address)
    st = budget.status("summarizer")
    assert (st.paused, st.pause_kind, st.pause_reason, st.paused_by) == (False, None, None, None)
    assert by_agent(daemon)["summarizer"].items() >= {"pause_kind": None, "pause_reason": None}.items()
    st = budget.pause("summarizer", reason="investigating")
    assert (st.paused, st.pause_kind, st.pause_reason) == (True, "manual", "investigating")


def test_a_report_since_after_until_is_refused_for_every_client(daemon):
    done = budgetctl("report", "--since", "2026-12-05", "--until", "2026-12-01", address=daemon.address, expect=1)
    assert "since 2026-12-05 is after until 2026-12-01: the range is empty" in done.stderr
    with pytest.raises(ValueError, match="since 2026-12-05 is after until 2026-12-01"):
        Budget(daemon.address).report(since="2026-12-05", until="2026-12-01")
    with pytest.raises(ValueError, match=r"is after until \d{4}-\d\d-\d\d \(today\)"):
        Budget(daemon.address).report(since="9999-01-01")


def test_check_config_counts_in_the_right_number_and_report_help_says_by_is_optional(tmp_path):
    config = tmp_path / "budgets.yaml"
    config.write_text("agents:\n  a1: {daily_usd: 1}\ngroups:\n  g: {members: [a1], daily_usd: 2}\n")
    assert "OK (1 agent, 1 group, timezone UTC)" in budgetctl("check-config", str(config)).stdout
    config.write_text("agents:\n  a1: {daily_usd: 1}\n  a2: {daily_usd: 1}\n")
    assert "OK (2 agents, 0 groups, timezone UTC)" in budgetctl("check-config", str(config)).stdout
    helped = " ".join(budgetctl("report", "--help").stdout.split())
    assert "--by BY optional (default: agent)" in helped


def test_did_you_mean_names_only_agents_the_callers_token_may_see(start_daemon):
    from budgetd.auth import sha256_hex

    daemon = start_daemon(
        "agents:\n  report-a: {daily_usd: 1}\n  report-b: {daily_usd: 1}\nauth:\n  tokens:\n"
        f'    - {{name: ops, sha256: "{sha256_hex("admin-secret")}", role: admin}}\n'
        f'    - {{name: pod, sha256: "{sha256_hex("pod-secret")}", agents: ["report-a*"]}}\n')
    with pytest.raises(UnknownAgent, match=r"did you mean 'report-[ab]' or 'report-[ab]'\?"):
        Budget(daemon.address, token="admin-secret").status("report-ab", known_only=True)
    with pytest.raises(UnknownAgent, match=r"did you mean 'report-a'\? ") as scoped:
        Budget(daemon.address, token="pod-secret").status("report-ab", known_only=True)
    assert "report-b" not in str(scoped.value)
