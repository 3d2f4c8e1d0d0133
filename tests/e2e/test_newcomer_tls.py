"""https:// addresses against a TLS budgetd, and what a TLS mismatch says."""

from __future__ import annotations

import pytest
import trustme
from budgetd_client import Budget, BudgetUnavailable, Tls

from test_newcomer_cli import budgetctl


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    server.cert_chain_pems[0].write_to_path(str(d / "server.pem"))
    server.private_key_pem.write_to_path(str(d / "server.key"))
    return d


@pytest.fixture
def tls_daemon(start_daemon, certs):
    return start_daemon("agents:\n  a1: {daily_usd: 50}\n", server_extra=(
        f'tls: {{cert_file: "{certs}/server.pem", key_file: "{certs}/server.key"}}'),
        tls=Tls(ca_file=str(certs / "ca.pem")))


def test_an_https_address_speaks_tls_with_the_ca_given(tls_daemon, certs):
    url = f"https://{tls_daemon.address}"
    assert Budget(url, tls=Tls(ca_file=str(certs / "ca.pem"))).status("a1").daily.cap_usd == 50
    shown = budgetctl("status", "a1", env={"BUDGETD_ADDRESS": url, "BUDGETD_TLS_CA_FILE": str(certs / "ca.pem")})
    assert "a1" in shown.stdout and "$50.0000" in shown.stdout


def test_a_tls_mismatch_says_so_instead_of_asking_whether_budgetd_runs(tls_daemon):
    untrusted = f"https://{tls_daemon.address}"  # the system's CAs did not sign it
    with pytest.raises(BudgetUnavailable, match=r"cannot reach it \(the TLS handshake failed\); .*BUDGETD_TLS_CA_FILE"):
        Budget(untrusted, timeout=1).status("a1")
    plaintext = f"http://{tls_daemon.address}"
    with pytest.raises(BudgetUnavailable, match=r"closed at once\); a TLS port spoken to in plaintext\? Use https://"):
        Budget(plaintext, timeout=1).status("a1")
    said = budgetctl("health", address=plaintext, expect=1).stderr
    assert "a TLS port spoken to in plaintext" in said and "make run" not in said
