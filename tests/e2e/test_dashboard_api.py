"""The dashboard's JSON API end to end: a real budgetd with seeded spend,
read over HTTP. Its numbers equal `budgetctl status` and `budgetctl report`
to the nanodollar; it pages a big fleet; bad input is a 4xx with a message
that changes nothing; actions need an admin, a session's CSRF token and our
own Origin; the live stream carries a pause made elsewhere."""

from __future__ import annotations

import hashlib
import http.cookiejar
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from datetime import date, timedelta
from decimal import Decimal

import pytest
from budgetd_client import Budget

from fake_slack import FakeSlack
from helpers import DaemonProcess, free_port, script, wait_until

ADMIN, AGENT = "admin-token-for-tests", "agent-token-for-tests"
CONFIG = """
agents:
  alpha: {daily_usd: 10, monthly_usd: 100}
  beta: {daily_usd: 4}
  gamma: {daily_usd: 1}
groups:
  team: {members: [alpha, beta], daily_usd: 12}
tag_budgets:
  customer:
    defaults: {daily_usd: 5}
    values:
      acme: {daily_usd: 3}
"""
AUTH = f"""
auth:
  tokens:
    - {{name: ops, sha256: {hashlib.sha256(ADMIN.encode()).hexdigest()}, role: admin}}
    - {{name: bot, sha256: {hashlib.sha256(AGENT.encode()).hexdigest()}, agents: ["*"]}}
"""


class Http:
    """A browser's worth of HTTP: a cookie jar, JSON in and out, errors as values."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def call(self, method: str, path: str, body=None, headers: dict | None = None, raw: bytes | None = None,
             content_type: str = "application/json") -> tuple[int, dict]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def get(self, path: str, **kw) -> tuple[int, dict]:
        return self.call("GET", path, **kw)

    def ok(self, path: str) -> dict:
        status, body = self.get(path)
        assert status == 200, body
        return body

    def csrf(self) -> str:
        return self.ok("/api/v1/session")["csrf"]


def dashboard(start_daemon, body: str = CONFIG, **kw):
    port = free_port()
    daemon = start_daemon(body, server_extra=f'dashboard_listen: "127.0.0.1:{port}"', **kw)
    wait_until(lambda: f"127.0.0.1:{port}" in daemon.log() or _listening(port), what="the dashboard port")
    return daemon, Http(f"http://127.0.0.1:{port}")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def budgetctl(daemon, *args: str, token: str | None = None) -> str:
    cmd = [script("budgetctl"), "--address", daemon.address, *(["--token", token] if token else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def seed(address: str, token: str | None = None) -> None:
    with Budget(address, token=token) as budget:
        for agent, amounts, tags in [("alpha", ["1.25", "0.000000001"], {"customer": "acme", "feature": "chat"}),
                                     ("beta", ["2.5"], {"customer": "globex"}),
                                     ("gamma", ["1"], {})]:
            for amount in amounts:
                with budget.guard(agent, estimate_usd="0.01", tags=tags) as call:
                    call.record_usd(amount)


def as_printed(row: dict, printed: dict) -> dict:
    """The row's fields that `budgetctl status --format json` prints (the
    fleet adds a percent to each window, and fields of its own)."""
    def window(w: dict, like: dict) -> dict:
        return {k: w[k] for k in like}
    out = {k: row[k] for k in printed}
    for name in ("daily", "monthly"):
        out[name] = window(row[name], printed[name])
    out["groups"] = [{"name": g["name"], "daily": window(g["daily"], p["daily"]),
                      "monthly": window(g["monthly"], p["monthly"])}
                     for g, p in zip(row["groups"], printed["groups"], strict=True)]
    return out


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {row["id"]: row for row in rows}


def test_fleet_rows_equal_budgetctl_status_to_the_nanodollar(start_daemon):
    daemon, web = dashboard(start_daemon)
    seed(daemon.address)
    expected = {st["agent_id"]: st for st in json.loads(budgetctl(daemon, "status", "--format", "json"))}
    fleet = web.ok("/api/v1/fleet?kind=agent")
    rows = by_id(fleet["rows"])
    assert set(rows) == {"alpha", "beta", "gamma"} and fleet["total"] == 3
    for agent, st in expected.items():
        row = rows[agent]
        assert as_printed(row, st) == st  # every field budgetctl prints, unchanged
        assert row["kind"] == "agent"
    assert rows["alpha"]["daily"]["spent_usd"] == "1.250000001"
    assert rows["alpha"]["daily"]["percent"] == "12.5"
    # Calls today come from the fleet's list, kept 2 s (docs/dashboard.md): they may lag the calls by that.
    alpha = wait_until(lambda: [r for r in web.ok("/api/v1/fleet?kind=agent&q=alpha")["rows"]
                                if r["calls_today"] == 2], timeout=3, what="alpha's two calls counted")[0]
    assert alpha["last_call_at"]
    assert rows["gamma"]["paused"] and rows["gamma"]["pause_kind"] == "cap" and rows["gamma"]["paused_since"]
    # The group and the tag values: their windows as `budgetctl status --tag` prints them.
    everything = by_id(web.ok("/api/v1/fleet")["rows"])
    assert everything["team"]["kind"] == "group" and everything["team"]["daily"]["spent_usd"] == "3.750000001"
    assert everything["team"]["daily"]["cap_usd"] == "12"
    for value in ("acme", "globex"):
        (tag_status,) = json.loads(budgetctl(daemon, "status", "--tag", f"customer={value}", "--format", "json"))
        row = everything[f"customer={value}"]
        assert as_printed(row, tag_status) == tag_status
    assert everything["customer=globex"]["daily"]["cap_usd"] == "5"  # the tag's defaults


def test_a_big_fleet_is_paged_sorted_and_filtered(start_daemon):
    agents = "\n".join(f"  agent-{i:04d}: {{daily_usd: 10}}" for i in range(1200))
    daemon, web = dashboard(start_daemon, f"agents:\n{agents}\n")
    with Budget(daemon.address) as budget:
        for i, amount in [(7, "3"), (500, "5"), (1100, "1")]:
            with budget.guard(f"agent-{i:04d}", estimate_usd="0.01") as call:
                call.record_usd(amount)
    first = web.ok("/api/v1/fleet?page_size=100")
    assert first["total"] == 1200 and first["pages"] == 12 and len(first["rows"]) == 100
    assert [r["id"] for r in first["rows"][:2]] == ["agent-0000", "agent-0001"]
    last = web.ok("/api/v1/fleet?page_size=100&page=12")
    assert last["rows"][-1]["id"] == "agent-1199"
    # The order comes from a list kept 2 s (docs/dashboard.md): the spend above may be that new to it.
    expected = [("agent-0500", "5"), ("agent-0007", "3"), ("agent-1100", "1")]
    wait_until(lambda: [(r["id"], r["daily"]["spent_usd"]) for r in
                        web.ok("/api/v1/fleet?sort=daily_spent&page_size=3")["rows"]] == expected, timeout=3,
               what="the biggest spenders first")
    assert web.ok("/api/v1/fleet?sort=daily_spent&order=asc&page_size=1")["rows"][0]["daily"]["spent_usd"] == "0"
    assert [r["id"] for r in web.ok("/api/v1/fleet?sort=calls_today&page_size=3")["rows"]] == [
        "agent-0007", "agent-0500", "agent-1100"]  # one call each: ties by id
    found = web.ok("/api/v1/fleet?q=AGENT-05&state=active")
    assert [r["id"] for r in found["rows"]] == ["agent-0500"]
    budgetctl(daemon, "pause", "agent-0042", "--reason", "looping")
    paused = wait_until(lambda: web.ok("/api/v1/fleet?state=paused")["rows"], timeout=2,
                        what="the pause in the fleet (its notice makes the fleet read afresh)")
    assert [(r["id"], r["pause_reason"]) for r in paused] == [("agent-0042", "looping")]


def test_spend_series_add_up_to_budgetctl_report(start_daemon):
    daemon, web = dashboard(start_daemon)
    seed(daemon.address)
    for by in ("agent", "model", "customer", "group"):
        spend = web.ok(f"/api/v1/spend?by={by}")
        report = json.loads(budgetctl(daemon, "report", "--by", by, "--format", "json"))
        assert spend["report"] == report
        assert spend["bucket"] == "hour" and len(spend["buckets"]) == 24  # the example zone is UTC: no DST
        series_total = sum(Decimal(s["total_usd"]) for s in spend["series"])
        assert series_total == Decimal(report["total_usd"]) == Decimal(spend["total_usd"])
        for s in spend["series"]:
            assert sum(Decimal(v) for v in s["values"]) == Decimal(s["total_usd"])
    spend = web.ok("/api/v1/spend?by=agent")
    assert {s["key"]: s["total_usd"] for s in spend["series"]} == {"alpha": "1.250000001", "beta": "2.5",
                                                                  "gamma": "1"}
    today = web.ok("/api/v1/session")["today"]
    since = (date.fromisoformat(today) - timedelta(days=13)).isoformat()
    daily = web.ok(f"/api/v1/spend?by=customer&since={since}&until={today}")
    assert len(daily["buckets"]) == 14 and daily["buckets"][-1] == today and sum(Decimal(s["total_usd"]) for s in daily["series"]) == Decimal(
        "4.750000001")
    two = web.ok("/api/v1/spend?by=agent&top=1")
    assert [s["key"] for s in two["series"]] == ["beta", "(other)"]
    assert two["series"][1]["total_usd"] == "2.250000001"


def test_agent_and_tag_detail(start_daemon):
    daemon, web = dashboard(start_daemon)
    seed(daemon.address)
    detail = web.ok("/api/v1/agents/alpha")
    assert detail["status"]["daily"]["spent_usd"] == "1.250000001"
    assert [g["id"] for g in detail["groups"]] == ["team"]
    assert {(t["key"], t["value"], t["cost_usd"], t["calls"]) for t in detail["tags"]} == {
        ("customer", "acme", "1.250000001", 2), ("feature", "chat", "1.250000001", 2)}
    assert [c["cost_usd"] for c in detail["last_calls"]] == ["0.000000001", "1.250000000"]  # newest first
    burn = detail["burn"]
    assert burn["cap_usd"] == "10" and [p["spent_usd"] for p in burn["points"]] == ["0", "1.25", "1.250000001"]
    budgetctl(daemon, "pause", "alpha", "--reason", "audit")
    detail = web.ok("/api/v1/agents/alpha")
    assert detail["pause_history"][0]["kind"] == "paused" and detail["pause_history"][0]["reason"] == "audit"
    tag = web.ok("/api/v1/tags/customer/acme")
    assert tag["status"]["daily"]["spent_usd"] == "1.250000001" and tag["status"]["daily"]["cap_usd"] == "3"
    assert tag["agents"] == [{"agent_id": "alpha", "cost_usd": "1.250000001", "calls": 2}]


@pytest.mark.parametrize(("path", "status", "says"), [
    ("/api/v1/agents/nobody", 404, "'nobody' is not in the config"),
    ("/api/v1/agents/" + "x" * 300, 400, "agent_id"),
    ("/api/v1/tags/feature/chat", 400, "no tag_budgets entry"),
    ("/api/v1/fleet?page_size=100000", 400, "page_size: 100000 is out of range"),
    ("/api/v1/fleet?page=0", 400, "page: 0 is out of range"),
    ("/api/v1/fleet?page=abc", 400, "page: 'abc' is not a whole number"),
    ("/api/v1/fleet?sort=cost", 400, "sort: 'cost' is not one of"),
    ("/api/v1/fleet?kind=robots", 400, "kind: 'robots'"),
    ("/api/v1/spend?since=2026-12-05&until=2026-12-01", 400, "since 2026-12-05 is after until 2026-12-01"),
    ("/api/v1/spend?since=2026-01-01&until=2026-12-01", 400, "at most 92"),
    ("/api/v1/spend?since=yesterday", 400, "since: 'yesterday' is not a date"),
    ("/api/v1/spend?top=1000", 400, "top: 1000 is out of range"),
    ("/api/v1/spend?by=bad%20key", 400, "by"),
    ("/api/v1/notices?limit=-5", 400, "limit: -5 is out of range"),
    ("/api/v1/nothing-here", 404, "no such page"),
])
def test_bad_reads_are_4xx_with_a_message(start_daemon, path, status, says):
    daemon, web = dashboard(start_daemon)
    got, body = web.get(path)
    assert got == status and says in body["error"], body
    assert web.get("/api/v1/fleet")[0] == 200  # and it keeps serving


def test_bad_actions_change_nothing(start_daemon):
    daemon, web = dashboard(start_daemon)
    csrf = {"X-CSRF-Token": web.csrf()}
    cases = [
        (dict(raw=b"{not json"), 400, "not JSON"),
        (dict(raw=b"[1, 2]"), 400, "must be a JSON object"),
        (dict(raw=b"\xff\xfe junk"), 400, "not JSON"),
        (dict(body={"agent": "alpha", "colour": "red"}), 400, "unknown field 'colour'"),
        (dict(body={"agent": "alpha", "tag": "customer=acme"}), 400, 'give one of "agent"'),
        (dict(body={"agent": 7}), 400, "agent: expected a string"),
        (dict(body={"agent": ""}), 400, "agent_id"),
        (dict(body={"agent": "nobody"}), 404, "'nobody' is not in the config"),
        (dict(body={"tag": "customer"}), 400, "tag: expected KEY=VALUE"),
        (dict(body={"tag": "feature=chat"}), 400, "no tag_budgets entry"),
        (dict(body={"agent": "alpha"}, content_type="text/plain"), 415, "application/json"),
        (dict(raw=b"{" + b" " * 70_000 + b"}"), 413, ""),
    ]
    for kwargs, status, says in cases:
        got, body = web.call("POST", "/api/v1/pause", headers=csrf, **kwargs)
        assert got == status and says in body.get("error", ""), (kwargs, body)
    assert not any(st["paused"] for st in json.loads(budgetctl(daemon, "status", "--format", "json")))
    assert web.call("POST", "/api/v1/pause", body={"agent": "alpha", "reason": "ok"}, headers=csrf)[0] == 200


def test_without_auth_actions_still_need_the_page_csrf_token_and_origin(start_daemon):
    daemon, web = dashboard(start_daemon)
    got, body = web.call("POST", "/api/v1/pause", body={"agent": "alpha"})  # a forged request: no token
    assert got == 403 and "X-CSRF-Token" in body["error"]
    csrf = {"X-CSRF-Token": web.csrf()}
    got, body = web.call("POST", "/api/v1/pause", body={"agent": "alpha"},
                         headers={**csrf, "Origin": "http://evil.example"})
    assert got == 403 and "Origin" in body["error"]
    assert not json.loads(budgetctl(daemon, "status", "alpha", "--format", "json"))[0]["paused"]
    got, row = web.call("POST", "/api/v1/pause", body={"agent": "alpha", "reason": "from the page"}, headers=csrf)
    assert got == 200 and row["paused"] and row["pause_reason"] == "from the page"
    wait_until(lambda: "dashboard action" in daemon.log() and "loopback (no auth)" in daemon.log(),
               what="the action logged with who did it")
    got, row = web.call("POST", "/api/v1/resume", body={"agent": "alpha"}, headers=csrf)
    assert got == 200 and not row["paused"]


def test_with_auth_only_an_admin_signed_in_with_csrf_may_act(start_daemon):
    daemon, web = dashboard(start_daemon, CONFIG + AUTH)
    assert web.get("/api/v1/session") == (200, {"auth": True, "signed_in": False, "currency": "USD"})
    got, body = web.get("/api/v1/fleet")
    assert got == 401 and "sign in" in body["error"]
    got, body = web.call("POST", "/api/v1/pause", body={"agent": "alpha"})
    assert got == 401
    got, body = web.call("POST", "/api/v1/session", body={"token": AGENT})
    assert got == 403 and "not an admin token" in body["error"]
    got, body = web.call("POST", "/api/v1/session", body={"token": "wrong"})
    assert got == 401 and "unknown token" in body["error"]
    assert web.get("/api/v1/fleet", headers={"Authorization": f"Bearer {AGENT}"})[0] == 403

    got, session = web.call("POST", "/api/v1/session", body={"token": ADMIN})
    assert got == 200 and session["who"] == "ops" and session["csrf"]
    (cookie,) = list(web.jar)
    assert cookie.name == "budgetd_session" and cookie.has_nonstandard_attr("HttpOnly")
    assert web.get("/api/v1/fleet")[0] == 200
    got, body = web.call("POST", "/api/v1/pause", body={"agent": "alpha"})  # the cookie alone: CSRF refused
    assert got == 403 and "X-CSRF-Token" in body["error"]
    got, body = web.call("POST", "/api/v1/pause", body={"agent": "alpha"}, headers={"X-CSRF-Token": "guess"})
    assert got == 403
    status = json.loads(budgetctl(daemon, "status", "alpha", "--format", "json", token=ADMIN))[0]
    assert not status["paused"]
    got, row = web.call("POST", "/api/v1/pause", body={"agent": "alpha", "reason": "by ops"},
                        headers={"X-CSRF-Token": session["csrf"]})
    assert got == 200 and row["paused"]
    wait_until(lambda: '"who": "ops"' in daemon.log(), what="the action logged with the token's name")
    # A script's bearer admin token needs no CSRF token (there is no cookie to forge).
    script_http = Http(web.base)
    got, row = script_http.call("POST", "/api/v1/resume", body={"agent": "alpha"},
                                headers={"Authorization": f"Bearer {ADMIN}"})
    assert got == 200 and not row["paused"]
    # Signing out ends the session.
    assert web.call("DELETE", "/api/v1/session", headers={"X-CSRF-Token": session["csrf"]})[0] == 200
    assert web.get("/api/v1/fleet")[0] == 401


def test_a_reload_that_revokes_the_admin_token_ends_its_sessions(start_daemon):
    daemon, web = dashboard(start_daemon, CONFIG + AUTH)
    assert web.call("POST", "/api/v1/session", body={"token": ADMIN})[0] == 200
    other = hashlib.sha256(b"another-admin").hexdigest()
    daemon.write_config(CONFIG + f"auth:\n  tokens:\n    - {{name: ops2, sha256: {other}, role: admin}}\n")
    wait_until(lambda: web.get("/api/v1/fleet")[0] == 401, timeout=15, what="the session to end")


def test_a_non_loopback_dashboard_without_auth_is_refused(tmp_path):
    daemon = DaemonProcess(tmp_path, CONFIG, server_extra=f'dashboard_listen: "0.0.0.0:{free_port()}"')
    with pytest.raises(RuntimeError, match="dashboard_listen .* refusing a non-loopback address"):
        daemon.start()


def test_the_event_stream_carries_a_pause_made_with_budgetctl(start_daemon):
    daemon, web = dashboard(start_daemon)
    lines: list[str] = []

    def read_stream() -> None:
        with urllib.request.urlopen(web.base + "/api/v1/events", timeout=20) as stream:
            for raw in stream:
                lines.append(raw.decode())
                if raw.startswith(b"data:"):
                    return

    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    wait_until(lambda: lines, what="the stream to open")
    paused_at = time.monotonic()
    budgetctl(daemon, "pause", "beta", "--reason", "seen live")
    wait_until(lambda: any(line.startswith("data:") for line in lines), timeout=2, interval=0.02,
               what="the pause on the stream")
    assert time.monotonic() - paused_at < 2
    event = json.loads(next(line for line in lines if line.startswith("data:"))[5:])
    assert (event["kind"], event["agent_id"], event["reason"]) == ("paused", "beta", "seen live")


def test_notices_show_what_is_pending_and_why(start_daemon):
    with FakeSlack() as slack:
        slack.fail_with = 503
        daemon, web = dashboard(start_daemon, CONFIG + f'slack: {{webhook_url: "{slack.webhook_url}"}}\n')
        budgetctl(daemon, "pause", "alpha", "--reason", "for the notice")

        def pending_with_error():
            notices = web.ok("/api/v1/notices")["notices"]
            found = [n for n in notices if n["kind"] == "paused" and n["agent_id"] == "alpha"]
            return found and found[0]["attempts"] >= 1 and found[0]["last_error"] and found[0]
        notice = wait_until(pending_with_error, timeout=15, what="a failed delivery recorded")
        assert notice["state"] == "pending" and "503" in notice["last_error"]
        assert web.ok("/api/v1/notices?state=pending")["pending"] >= 1
        slack.fail_with = None
        wait_until(lambda: [n for n in web.ok("/api/v1/notices?state=sent")["notices"] if n["agent_id"] == "alpha"],
                   timeout=30, what="the notice sent once Slack is back")
