"""Scoped tokens, loopback-only without auth, TLS and mutual TLS."""

from __future__ import annotations

import subprocess

import pytest
import trustme
from budgetd_client import Budget, BudgetError, BudgetUnavailable, Tls

from budgetd.auth import sha256_hex
from helpers import free_port, script

AUTH = f"""
agents:
  a1: {{daily_usd: 10}}
  a2: {{daily_usd: 10}}
auth:
  tokens:
    - {{name: ops, sha256: "{sha256_hex('admin-secret')}", role: admin}}
    - {{name: a1-pod, sha256: "{sha256_hex('a1-secret')}", agents: ["a1"]}}
"""


def spend(budget: Budget, agent: str) -> None:
    with budget.guard(agent, estimate_usd="0.01") as call:
        call.record_usd("0.01")


def test_a_scoped_token_acts_only_for_its_agents_and_admin_can_pause(start_daemon):
    daemon = start_daemon(AUTH)
    scoped = Budget(daemon.address, token="a1-secret")
    spend(scoped, "a1")
    assert scoped.status("a1").daily.spent_usd > 0
    with pytest.raises(BudgetError, match="PERMISSION_DENIED.*may not act for agent 'a2'"):
        spend(scoped, "a2")
    with pytest.raises(BudgetError, match="PERMISSION_DENIED.*not an admin token"):
        scoped.pause("a1", reason="mine")
    with pytest.raises(BudgetError, match="PERMISSION_DENIED"):
        next(iter(scoped.watch("a2")))
    for token in (None, "", "wrong-secret"):
        with pytest.raises(BudgetError, match="UNAUTHENTICATED"):
            spend(Budget(daemon.address, token=token), "a1")
    admin = Budget(daemon.address, token="admin-secret")
    assert admin.pause("a2", reason="ops").paused
    assert not admin.resume("a2").paused
    listed = subprocess.run([script("budgetctl"), "--address", daemon.address, "--token", "admin-secret", "status"],
                            capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0 and "a1" in listed.stdout
    refused = subprocess.run([script("budgetctl"), "--address", daemon.address, "--token", "a1-secret", "status"],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr


def test_no_auth_refuses_a_non_loopback_address_unless_told(tmp_path):
    config = tmp_path / "b.yaml"
    config.write_text(f'server: {{listen: "0.0.0.0:{free_port()}"}}\nstore: {{url: "sqlite://{tmp_path}/b.db"}}\n')
    done = subprocess.run([script("budgetd"), "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "refusing a non-loopback address without an auth section" in done.stderr


def test_allow_unauthenticated_lets_it_listen_anywhere(start_daemon):
    daemon = start_daemon("agents:\n  a1: {}\n", server_extra="allow_unauthenticated: true")
    assert daemon.proc.poll() is None


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("agent-pod")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    server.cert_chain_pems[0].write_to_path(str(d / "server.pem"))
    server.private_key_pem.write_to_path(str(d / "server.key"))
    client.cert_chain_pems[0].write_to_path(str(d / "client.pem"))
    client.private_key_pem.write_to_path(str(d / "client.key"))
    return d


def test_tls_works_and_plaintext_to_a_tls_port_fails_cleanly(start_daemon, certs):
    daemon = start_daemon("agents:\n  a1: {}\n", server_extra=(
        f'tls: {{cert_file: "{certs}/server.pem", key_file: "{certs}/server.key"}}'),
        tls=Tls(ca_file=str(certs / "ca.pem")))
    spend(Budget(daemon.address, tls=Tls(ca_file=str(certs / "ca.pem"))), "a1")
    with pytest.raises(BudgetUnavailable):
        spend(Budget(daemon.address, timeout=2), "a1")
    with pytest.raises(BudgetUnavailable):  # a CA that did not sign the server
        spend(Budget(daemon.address, timeout=2, tls=Tls(ca_file=str(certs / "client.pem"))), "a1")
    assert daemon.proc.poll() is None


def test_mutual_tls_requires_a_client_certificate(start_daemon, certs, monkeypatch):
    daemon = start_daemon("agents:\n  a1: {}\n", server_extra=(
        f'tls: {{cert_file: "{certs}/server.pem", key_file: "{certs}/server.key", '
        f'client_ca_file: "{certs}/ca.pem"}}'),
        tls=Tls(str(certs / "ca.pem"), str(certs / "client.pem"), str(certs / "client.key")))
    with pytest.raises(BudgetUnavailable):
        spend(Budget(daemon.address, timeout=2, tls=Tls(ca_file=str(certs / "ca.pem"))), "a1")
    monkeypatch.setenv("BUDGETD_TLS_CA_FILE", str(certs / "ca.pem"))
    monkeypatch.setenv("BUDGETD_TLS_CERT_FILE", str(certs / "client.pem"))
    monkeypatch.setenv("BUDGETD_TLS_KEY_FILE", str(certs / "client.key"))
    spend(Budget(daemon.address), "a1")  # the settings come from the environment
