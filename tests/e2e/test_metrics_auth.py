"""/metrics follows the gRPC port's rule: without an auth section it listens
only on loopback; with one, a scrape needs an admin bearer token of the
config in force."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request

from budgetd.auth import sha256_hex
from helpers import free_port, script, wait_until


def tokens(admin: str) -> str:
    return f"""
agents:
  a1: {{daily_usd: 10}}
auth:
  tokens:
    - {{name: ops, sha256: "{sha256_hex(admin)}", role: admin}}
    - {{name: a1-pod, sha256: "{sha256_hex('a1-secret')}", agents: ["a1"]}}
"""


def scrape(port: int, token: str | None = None) -> tuple[int, str, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode(), dict(answer.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


def test_with_auth_a_scrape_needs_an_admin_token_of_the_config_in_force(start_daemon):
    port = free_port()
    daemon = start_daemon(tokens("admin-secret"), server_extra=f'metrics_listen: "127.0.0.1:{port}"')

    status, body, headers = scrape(port)
    assert status == 401 and headers.get("WWW-Authenticate", "").startswith("Bearer"), (status, headers)
    assert scrape(port, "wrong-secret")[0] == 401
    status, body, _ = scrape(port, "a1-secret")
    assert status == 403 and "not an admin token" in body
    status, body, _ = scrape(port, "admin-secret")
    assert status == 200 and "budgetd_config_generation" in body

    daemon.write_config(tokens("rotated-secret"))  # noticed within a second
    wait_until(lambda: scrape(port, "rotated-secret")[0] == 200, what="the new admin token to be accepted")
    assert scrape(port, "admin-secret")[0] == 401


def test_without_auth_metrics_on_loopback_are_open(start_daemon):
    port = free_port()
    start_daemon("agents:\n  a1: {}\n", server_extra=f'metrics_listen: "127.0.0.1:{port}"')
    status, body, _ = scrape(port)
    assert status == 200 and "budgetd_holds" in body


def test_without_auth_metrics_off_loopback_refuse_to_start(tmp_path):
    config = tmp_path / "b.yaml"
    config.write_text(f'server: {{listen: "127.0.0.1:{free_port()}", metrics_listen: "0.0.0.0:{free_port()}"}}\n'
                      f'store: {{url: "sqlite://{tmp_path}/b.db"}}\n')
    done = subprocess.run([script("budgetd"), "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1, done.stderr
    assert "metrics_listen 0.0.0.0" in done.stderr and "without an auth section" in done.stderr, done.stderr
