"""Config validation: every error names the key path and line; the daemon
refuses to start on one and `budgetctl check-config` prints the same."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from budgetd.config import ConfigError, Resolver, load_config, load_config_text

ROOT = Path(__file__).resolve().parents[2]

BAD_CONFIGS = {
    "bad YAML": ("agents:\n  a1: {daily_usd: 1\n", "line 3", "invalid YAML"),
    "unknown key": ("agents:\n  a1:\n    daily_usd: 1\n    dayly_usd: 2\n", "line 4: agents.a1.dayly_usd", "unknown key"),
    "negative cap": ("timezone: UTC\nagents:\n  a1: {daily_usd: -5}\n", "line 3: agents.a1.daily_usd", "negative"),
    "unknown timezone": ("timezone: Mars/Olympus\n", "line 1: timezone", "unknown timezone"),
    "duplicate agent": ("agents:\n  a1: {daily_usd: 1}\n  a1: {daily_usd: 2}\n", "line 3: agents.a1", "duplicate key"),
    "bad agent id": ("agents:\n  'has space': {}\n", "line 2: agents.has space", "not a valid agent id"),
    "sub-nanodollar": ("agents:\n  a1: {daily_usd: 0.0000000001}\n", "line 2: agents.a1.daily_usd", "9 decimal"),
    "NaN": ("agents:\n  a1: {daily_usd: .nan}\n", "line 2: agents.a1.daily_usd", "finite"),
    "bad policy": ("on_reservation_expiry: refund\n", "line 1: on_reservation_expiry", "release"),
    # An editor's truncate-then-write read half way must not load as "no agents".
    "empty file": ("", "budgets.yaml: (top level)", "the file is empty"),
    "only comments": ("  \n# agents come later\n\n", "budgets.yaml: (top level)", "the file is empty"),
    "two documents": ("agents:\n  a1: {}\n---\nagents:\n  a2: {}\n", "line 3: (top level)", "second YAML document"),
    "port out of range": ("server:\n  listen: 0.0.0.0:99999\n", "line 2: server.listen", "from 0 to 65535"),
    "bad metrics port": ("server:\n  metrics_listen: 127.0.0.1:http\n", "line 2: server.metrics_listen",
                         "from 0 to 65535"),
    "bad IPv4 host": ("server:\n  listen: 300.0.0.1:50051\n", "line 2: server.listen", "not an IPv4 address"),
    "bad host name": ("server:\n  listen: bad..host:50051\n", "line 2: server.listen", "not a host name"),
    "IPv6 unbracketed": ("server:\n  listen: '::1:50051'\n", "line 2: server.listen", "in brackets"),
    "missing env": ("store:\n  url: ${BUDGETD_TEST_UNSET_VARIABLE}\n", "line 2: store.url", "BUDGETD_TEST_UNSET_VARIABLE"),
}


@pytest.mark.parametrize("name", BAD_CONFIGS)
def test_check_config_and_budgetd_refuse_with_key_path_and_line(tmp_path, name):
    body, where, what = BAD_CONFIGS[name]
    path = tmp_path / "budgets.yaml"
    path.write_text(body)

    check = subprocess.run([sys.executable, "-m", "budgetd.cli.budgetctl", "check-config", str(path)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 1
    assert where in check.stderr and what in check.stderr, check.stderr

    daemon = subprocess.run([sys.executable, "-m", "budgetd", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert daemon.returncode == 1
    assert check.stderr.strip() in daemon.stderr


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:65535", "localhost:50051", "budgetd_1.internal:443"])
def test_listen_addresses_gRPC_binds_are_accepted(listen):
    assert load_config_text(f"server: {{listen: '{listen}', metrics_listen: '{listen}'}}\n").server.listen == listen


def test_example_config_is_valid_and_check_config_says_ok():
    check = subprocess.run([sys.executable, "-m", "budgetd.cli.budgetctl", "check-config",
                            str(ROOT / "config" / "budgets.yaml")], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert "OK" in check.stdout


def test_dollars_are_read_exactly_and_env_is_substituted():
    config = load_config_text(
        "slack:\n  webhook_url: ${HOOK}\nagents:\n  a1: {daily_usd: 25.10, monthly_usd: 0.1}\n",
        environ={"HOOK": "http://127.0.0.1:1/hook"},
    )
    assert config.agents["a1"].daily_usd == Decimal("25.10")
    assert Resolver(config).budget("a1").monthly_nanos == 100_000_000  # not 100000000.00000000555
    assert config.slack.webhook_url == "http://127.0.0.1:1/hook"


def test_exact_id_wins_over_pattern_and_defaults_fill_in():
    resolver = Resolver(load_config_text(
        "defaults: {daily_usd: 5, estimate_usd: 0.02}\n"
        "agents:\n  'research-*': {daily_usd: 200}\n  research-lead: {daily_usd: 300}\n"
        "groups:\n  research: {members: ['research-*'], daily_usd: 500}\n"
    ))
    assert resolver.budget("research-lead").daily_nanos == 300 * 10**9
    assert resolver.budget("research-x").daily_nanos == 200 * 10**9
    assert resolver.budget("research-x").monthly_nanos is None  # a cap left out is unlimited
    assert resolver.budget("research-x").estimate_nanos == 20_000_000
    assert [g.name for g in resolver.budget("research-x").groups] == ["research"]
    assert resolver.budget("other").daily_nanos == 5 * 10**9 and resolver.budget("other").groups == ()


def test_without_defaults_unknown_agents_have_no_budget():
    assert Resolver(load_config_text("agents:\n  a1: {}\n")).budget("a2") is None


def test_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
