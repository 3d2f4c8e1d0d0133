"""The dashboard in a real browser: a real budgetd serving its page on
``server.dashboard_listen``, spend seeded through the real client, budgetctl
run as a subprocess, and the system's Chromium (/usr/bin/chromium) driven
headless by Playwright (which never downloads a browser here).

Without /usr/bin/chromium the module is skipped, unless BUDGETD_REQUIRE_BROWSER
is set (.ci/run sets it): then a missing browser fails. Screenshots of every
page go to tests/artifacts/; BUDGETD_UPDATE_DOCS_SCREENSHOT=1 also writes the
fleet at 1366x768 to docs/dashboard-fleet.png.

Under ``make test-clock-ahead`` (libfaketime, FAKETIME set) the browser and
Playwright's driver run on the real clock: libfaketime is taken out of their
environment; the page takes the day and the time from budgetd, not from the
browser's clock."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from budgetd_client import Budget

from budgetd.auth import sha256_hex
from fake_admin_api import FakeAdminApi
from helpers import ROOT, free_port, script, wait_until

CHROMIUM = "/usr/bin/chromium"
REQUIRED = bool(os.environ.get("BUDGETD_REQUIRE_BROWSER"))
if not REQUIRED and not os.path.exists(CHROMIUM):
    pytest.skip(f"no {CHROMIUM} (apt-get install chromium; BUDGETD_REQUIRE_BROWSER=1 makes this a failure)",
                allow_module_level=True)
if REQUIRED:
    from playwright.sync_api import expect, sync_playwright
else:
    expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect
    from playwright.sync_api import sync_playwright

ARTIFACTS = ROOT / "tests" / "artifacts"
DOCS_SHOT = ROOT / "docs" / "dashboard-fleet.png"
LIVE_S = 2.0  # a change shows on the open page within this, without a reload
CENT = Decimal("0.01")

CONFIG = """
timezone: UTC
agents:
  summarizer: {daily_usd: 50, monthly_usd: 500}
  router: {daily_usd: 20}
  crawler: {daily_usd: 5, monthly_usd: 100}
  triage: {daily_usd: 10}
{quiet}groups:
  research: {members: [summarizer, crawler], daily_usd: 60}
tag_budgets:
  customer:
    defaults: {daily_usd: 10}
    values:
      acme: {daily_usd: 25, monthly_usd: 200}
"""
# More configured agents than a page holds, all quiet; they sort after the busy ones.
CONFIG = CONFIG.replace("{quiet}", "".join(f"  zz-quiet-{i:02d}: {{daily_usd: 1}}\n" for i in range(55)))

ADMIN_TOKEN, AGENT_TOKEN = "ops-admin-secret", "bot-agent-secret"
AUTH = f"""
auth:
  tokens:
    - {{name: ops, sha256: "{sha256_hex(ADMIN_TOKEN)}", role: admin}}
    - {{name: bot, sha256: "{sha256_hex(AGENT_TOKEN)}", agents: ["*"]}}
"""

# (agent, dollars, tags): several calls, amounts below a cent too.
SPEND = [
    ("summarizer", "3.123456789", {"customer": "acme"}),
    ("summarizer", "1.505", {"customer": "globex"}),
    ("summarizer", "0.004999999", {}),
    ("router", "2.345", {"customer": "acme"}),
    ("router", "0.015", {}),
    ("crawler", "4.125", {}),
    ("crawler", "0.000000001", {"customer": "initech"}),
]


# ---------------------------------------------------------------- the browser

def _real_clock_env() -> dict[str, str]:
    """This environment without libfaketime: Chromium under a faked wall clock
    misbehaves (certificate and timer checks); the page needs no faked clock."""
    env = dict(os.environ)
    if "FAKETIME" in env:
        for name in ("LD_PRELOAD", "FAKETIME", "DONT_FAKE_MONOTONIC", "FAKETIME_NO_CACHE"):
            env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def browser():
    if REQUIRED:
        assert os.path.exists(CHROMIUM), f"BUDGETD_REQUIRE_BROWSER is set and there is no {CHROMIUM}"
    env = _real_clock_env()
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # Playwright's driver (node) inherits this process's environment
    try:
        playwright = sync_playwright().start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, env=env,
                                          args=["--no-sandbox", "--disable-dev-shm-usage"])
    yield chromium
    chromium.close()
    playwright.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # The dashboard's Content-Security-Policy refusing a part of its own page.
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text else None)
    yield page
    context.close()
    assert not errors, f"the page's script failed or was refused: {sorted({e[:300] for e in errors})}"


def shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


# ---------------------------------------------------------------- budgetd

def start(start_daemon, extra: str = "", env: dict[str, str] | None = None):
    port = free_port()
    daemon = start_daemon(CONFIG + extra, env=env, server_extra=f'dashboard_listen: "127.0.0.1:{port}"')
    daemon.url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(daemon.url), 20, what="the dashboard to listen")
    return daemon


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/", timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def seed(address: str, token: str | None = None) -> None:
    with Budget(address, token=token) as budget:
        for agent, usd, tags in SPEND:
            with budget.guard(agent, estimate_usd=usd, tags=tags) as call:
                call.record_usd(usd)
        with budget.guard("triage", estimate_usd="1", tags={"customer": "acme"}) as call:
            call.record_usage("gpt-4o-mini", input_tokens=120_000, output_tokens=40_000, cached_input_tokens=20_000)


def budgetctl(daemon, *args: str, token: str | None = None):
    env = dict(os.environ, BUDGETD_TOKEN=token) if token else None
    done = subprocess.run([script("budgetctl"), "--address", daemon.address, *args], capture_output=True, text=True,
                          timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if "--format" in args and "json" in args else done.stdout


def status_json(daemon, *args: str, token: str | None = None) -> list[dict]:
    return budgetctl(daemon, "status", *args, "--format", "json", token=token)


def cents(usd: str) -> str:
    """What the page shows for an amount: to the cent, half away from zero."""
    return f"${Decimal(usd).quantize(CENT, ROUND_HALF_UP):,}"


def check_window(row, prefix: str, window: dict) -> None:
    """A fleet or detail window shown as budgetctl prints it: to the cent in
    the cell, exactly in its title."""
    for field in ("spent_usd", "reserved_usd", "cap_usd", "remaining_usd"):
        value = window[field]
        cell = row.locator(f'[data-field="{prefix}.{field}"]')
        if value is None:
            if field == "cap_usd":
                expect(cell).to_have_text("no cap")
            continue
        expect(cell).to_have_text(cents(value))
        title = cell.get_attribute("title")
        assert title.endswith(" USD") and Decimal(title.removesuffix(" USD")) == Decimal(value), (prefix, field, title)


def check_bar(row, prefix: str, window: dict) -> None:
    """The bar's spent part is as wide as spent / cap of the whole (to 2 px)."""
    bar = row.locator(f'[data-field="{prefix}.bar"]')
    spent = bar.locator(".spent")
    expect(spent).to_have_count(1)
    whole, part = bar.bounding_box()["width"], spent.bounding_box()["width"]
    share = min(Decimal(1), Decimal(window["spent_usd"]) / Decimal(window["cap_usd"]))
    assert abs(part - float(share) * whole) <= 2, (prefix, part, whole, share)


# Text (and placeholders, and SVG text) whose contrast with its background is
# under 4.5:1; controls without a label; table headers without a scope.
A11Y_JS = """() => {
  const parse = (c) => {
    const m = /rgba?\\(([^)]+)\\)/.exec(c || "");
    if (!m) return null;
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const lum = ({ r, g, b }) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const bgOf = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0.5) return c;
    }
    return { r: 255, g: 255, b: 255, a: 1 };
  };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const bad = [];
  const seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const text = walker.currentNode;
    const el = text.parentElement;
    if (!text.textContent.trim() || !el || seen.has(el)) continue;
    seen.add(el);
    if (!el.getClientRects().length || getComputedStyle(el).visibility === "hidden") continue;
    const fg = parse(el instanceof SVGElement ? getComputedStyle(el).fill : getComputedStyle(el).color);
    if (!fg) continue;
    const r = ratio(fg, bgOf(el));
    if (r < 4.5) bad.push(`contrast ${r.toFixed(2)}: ${el.tagName} "${text.textContent.trim().slice(0, 40)}"`);
  }
  for (const input of document.querySelectorAll("input[placeholder]")) {
    const r = ratio(parse(getComputedStyle(input, "::placeholder").color), bgOf(input));
    if (r < 4.5) bad.push(`contrast ${r.toFixed(2)}: the placeholder of #${input.id}`);
  }
  for (const control of document.querySelectorAll("input:not([type=hidden]):not([hidden]), select, textarea")) {
    if (!control.labels || !control.labels.length) bad.push(`no label: ${control.id || control.name}`);
  }
  for (const th of document.querySelectorAll("th:not([scope])")) bad.push(`th without scope: ${th.textContent}`);
  return bad;
}"""


def check_accessible(page) -> None:
    assert page.evaluate(A11Y_JS) == []


def fleet_row(page, kind: str, row_id: str):
    return page.locator(f'#fleet-table tbody tr[data-kind="{kind}"][data-id="{row_id}"]')


# ---------------------------------------------------------------- tests

def test_the_fleet_shows_each_agent_group_and_tag_value_as_budgetctl_status_does(start_daemon, page):
    daemon = start(start_daemon)
    seed(daemon.address)
    page.goto(daemon.url + "/#/fleet")
    expect(page.locator("#fleet-pageinfo")).to_contain_text("Page 1 of 2")

    shown = status_json(daemon)
    assert {"summarizer", "router", "crawler", "triage"} <= {s["agent_id"] for s in shown}
    groups: dict[str, dict] = {}
    for agent in shown:
        if agent["agent_id"].startswith("zz-quiet-"):
            continue
        row = fleet_row(page, "agent", agent["agent_id"])
        expect(row).to_have_count(1)
        for window in ("daily", "monthly"):
            check_window(row, window, agent[window])
        check_bar(row, "daily", agent["daily"])
        expect(row.locator('[data-field="paused"]')).to_have_text("no")
        groups.update({g["name"]: g for g in agent["groups"]})
    check_window(fleet_row(page, "group", "research"), "daily", groups["research"]["daily"])
    check_window(fleet_row(page, "group", "research"), "monthly", groups["research"]["monthly"])
    for value in ("acme", "globex"):
        [tag] = status_json(daemon, "--tag", f"customer={value}")
        row = fleet_row(page, "tag", f"customer={value}")
        for window in ("daily", "monthly"):
            check_window(row, window, tag[window])
    acme = fleet_row(page, "tag", "customer=acme")
    expect(acme.locator("a")).to_have_attribute("href", "#/tag/customer/acme")
    expect(fleet_row(page, "agent", "summarizer").locator("a")).to_have_attribute("href", "#/agent/summarizer")
    expect(page.locator("#fleet-table tbody tr")).to_have_count(50)

    # Sorted by the server: today's spend, biggest first; aria-sort says so.
    page.locator('button[data-sort="daily_spent"]').click()
    header = page.locator('th[data-sort="daily_spent"]')
    expect(header).to_have_attribute("aria-sort", "descending")
    expect(page.locator('th[data-sort="id"]')).to_have_attribute("aria-sort", "none")
    expect(page.locator("#fleet-table tbody tr").first).to_have_attribute("data-id", "research")
    page.locator('button[data-sort="daily_spent"]').click()
    expect(header).to_have_attribute("aria-sort", "ascending")
    # The headers are buttons: the keyboard sorts too.
    page.locator('button[data-sort="calls_today"]').focus()
    page.keyboard.press("Enter")
    expect(page.locator('th[data-sort="calls_today"]')).to_have_attribute("aria-sort", "descending")
    expect(page.locator("#fleet-table tbody tr").first).to_have_attribute("data-id", "summarizer")

    # The next page, the filter and the kind select are asked of the server too.
    page.locator('button[data-sort="id"]').click()
    page.locator("#fleet-next").click()
    expect(page.locator("#fleet-pageinfo")).to_contain_text("Page 2 of 2")
    expect(fleet_row(page, "agent", "zz-quiet-54")).to_have_count(1)
    page.locator("#fleet-q").fill("SUMM")
    expect(page.locator("#fleet-table tbody tr")).to_have_count(1)
    expect(page.locator("#fleet-pageinfo")).to_have_text("Page 1 of 1, 1 row")
    page.locator("#fleet-q").fill("")
    page.locator("#fleet-kind").select_option("tag")
    expect(page.locator('#fleet-table tbody tr[data-kind="agent"]')).to_have_count(0)
    expect(fleet_row(page, "tag", "customer=acme")).to_have_count(1)


def test_a_pause_by_budgetctl_shows_on_the_open_page_within_2_seconds_without_a_reload(start_daemon, page):
    daemon = start(start_daemon)
    seed(daemon.address)
    page.goto(daemon.url + "/#/fleet")
    cell = fleet_row(page, "agent", "router").locator('[data-field="paused"]')
    expect(cell).to_have_text("no")
    reloads: list[str] = []
    page.on("framenavigated", lambda frame: reloads.append(frame.url) if frame == page.main_frame else None)

    budgetctl(daemon, "pause", "router", "--reason", "runaway retry loop")
    expect(cell).to_contain_text("Paused (manual)", timeout=LIVE_S * 1000)
    expect(cell).to_contain_text("runaway retry loop", timeout=LIVE_S * 1000)
    assert reloads == []

    # The agent page, open, sees the resume the same way.
    page.goto(daemon.url + "/#/agent/router")
    expect(page.locator('[data-field="state"]')).to_have_text("Paused (manual)")
    budgetctl(daemon, "resume", "router")
    expect(page.locator('[data-field="state"]')).to_have_text("Running", timeout=LIVE_S * 1000)


def test_pause_and_resume_clicked_on_the_agent_and_tag_pages_act_on_budgetd(start_daemon, page):
    daemon = start(start_daemon)
    seed(daemon.address)
    page.goto(daemon.url + "/#/agent/crawler")
    [before] = status_json(daemon, "crawler")
    check_window(page.locator('[data-window="daily"]'), "daily", before["daily"])
    expect(page.locator("#last-calls tbody tr")).to_have_count(2)
    expect(page.locator("#resume-button")).to_be_disabled()

    page.get_by_label("Pause reason").fill("crawling too wide")
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#status")).to_have_text("Paused agent crawler.")
    [paused] = status_json(daemon, "crawler")
    assert paused["paused"] and paused["pause_kind"] == "manual" and paused["pause_reason"] == "crawling too wide"
    expect(page.locator("#pause-history tbody tr").first).to_have_attribute("data-kind", "paused",
                                                                             timeout=LIVE_S * 1000)

    resume = page.get_by_role("button", name="Resume")
    expect(resume).to_be_enabled()
    resume.click()
    expect(page.locator("#status")).to_have_text("Resumed agent crawler.")
    wait_until(lambda: not status_json(daemon, "crawler")[0]["paused"], 5, what="budgetctl to show crawler resumed")
    expect(page.locator('[data-field="state"]')).to_have_text("Running")

    # The same on a tag value's page.
    page.goto(daemon.url + "/#/tag/customer/acme")
    [acme] = status_json(daemon, "--tag", "customer=acme")
    check_window(page.locator('[data-window="daily"]'), "daily", acme["daily"])
    check_window(page.locator('[data-window="monthly"]'), "monthly", acme["monthly"])
    expect(page.locator("#tag-agents tbody tr")).to_have_count(3)
    page.get_by_label("Pause reason").fill("invoice overdue")
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#status")).to_have_text("Paused tag customer=acme.")
    [acme] = status_json(daemon, "--tag", "customer=acme")
    assert acme["paused"] and acme["pause_reason"] == "invoice overdue"
    expect(page.locator('[data-field="state"]')).to_have_text("Paused (manual)")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#status")).to_have_text("Resumed tag customer=acme.")
    wait_until(lambda: not status_json(daemon, "--tag", "customer=acme")[0]["paused"], 5,
               what="budgetctl to show customer=acme resumed")

    # An API error is shown in the page's alert region.
    page.goto(daemon.url + "/#/agent/no-such-agent")
    expect(page.locator("#alert")).to_contain_text("no-such-agent")


def test_with_auth_only_an_admin_signs_in_and_actions_need_the_session_and_its_csrf_token(start_daemon, page, browser):
    daemon = start(start_daemon, AUTH, env={"BUDGETD_TOKEN": ADMIN_TOKEN})
    seed(daemon.address, token=ADMIN_TOKEN)
    page.goto(daemon.url + "/")
    form = page.locator("#signin-form")
    expect(form).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    shoot(page, "sign-in")
    check_accessible(page)

    # An agent token is refused, and so is an unknown one: the form stays.
    for refused in (AGENT_TOKEN, "not-a-token"):
        page.get_by_label("Admin token").fill(refused)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#alert")).to_contain_text("Sign-in refused")
        expect(form).to_be_visible()

    # Without signing in, an action is refused and changes nothing.
    anonymous = browser.new_context()
    try:
        answer = anonymous.request.post(daemon.url + "/api/v1/pause", data={"agent": "router", "reason": "x"},
                                        headers={"Content-Type": "application/json"}, fail_on_status_code=False)
        assert answer.status in (401, 403), answer.text()
        assert "error" in answer.json()
    finally:
        anonymous.close()
    assert not status_json(daemon, "router", token=ADMIN_TOKEN)[0]["paused"]

    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_have_text("Signed in as ops")
    expect(fleet_row(page, "agent", "router")).to_have_count(1)
    page.goto(daemon.url + "/#/agent/router")
    page.get_by_label("Pause reason").fill("signed-in pause")
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#status")).to_have_text("Paused agent router.")
    [router] = status_json(daemon, "router", token=ADMIN_TOKEN)
    assert router["paused"] and router["pause_reason"] == "signed-in pause"

    # The session cookie alone, without X-CSRF-Token, is refused and changes nothing.
    request = page.context.request
    for path, body in (("/api/v1/resume", {"agent": "router"}), ("/api/v1/pause", {"agent": "triage", "reason": "x"})):
        answer = request.post(daemon.url + path, data=body, headers={"Content-Type": "application/json"},
                              fail_on_status_code=False)
        assert answer.status == 403, (path, answer.status, answer.text())
    # With the token but from another site's page (its Origin), refused too.
    csrf = request.get(daemon.url + "/api/v1/session").json()["csrf"]
    answer = request.post(daemon.url + "/api/v1/resume", data={"agent": "router"}, fail_on_status_code=False,
                          headers={"Content-Type": "application/json", "X-CSRF-Token": csrf,
                                   "Origin": "http://evil.example"})
    assert answer.status == 403, (answer.status, answer.text())
    assert status_json(daemon, "router", token=ADMIN_TOKEN)[0]["paused"]
    assert not status_json(daemon, "triage", token=ADMIN_TOKEN)[0]["paused"]
    # ... and with it, from here, the same request goes through (the refusals were the token's and the Origin's).
    answer = request.post(daemon.url + "/api/v1/resume", data={"agent": "router"},
                          headers={"Content-Type": "application/json", "X-CSRF-Token": csrf})
    assert answer.ok, answer.text()
    assert not status_json(daemon, "router", token=ADMIN_TOKEN)[0]["paused"]

    page.get_by_role("button", name="Sign out").click()
    expect(form).to_be_visible()


def test_the_spend_page_total_is_budgetctl_reports_for_the_same_range(start_daemon, page):
    daemon = start(start_daemon)
    seed(daemon.address)
    page.goto(daemon.url + "/#/spend")
    report = budgetctl(daemon, "report", "--format", "json")
    total = page.locator('#spend-totals [data-field="report.total_usd"]')
    expect(total).to_have_text(cents(report["total_usd"]))
    assert Decimal(total.get_attribute("title").removesuffix(" USD")) == Decimal(report["total_usd"])
    series_total = page.locator('#spend-totals tfoot [data-field="total_usd"]')
    assert Decimal(series_total.get_attribute("title").removesuffix(" USD")) == Decimal(report["total_usd"])
    expect(page.locator(".stacked-svg rect")).not_to_have_count(0)
    legend = page.locator(".legend")
    for agent in ("summarizer", "router", "crawler", "triage"):
        expect(legend).to_contain_text(agent)

    # Several days (daily buckets), stacked by a budgeted tag.
    today = date.fromisoformat(report["since"])
    since = (today - timedelta(days=2)).isoformat()
    page.locator("#spend-since").fill(since)
    page.locator("#spend-by").select_option("customer")
    report = budgetctl(daemon, "report", "--by", "customer", "--since", since, "--until", today.isoformat(),
                       "--format", "json")
    expect(page.locator("#spend-summary")).to_contain_text(f"{since} to {today.isoformat()}, by customer, daily")
    expect(total).to_have_text(cents(report["total_usd"]))
    assert Decimal(total.get_attribute("title").removesuffix(" USD")) == Decimal(report["total_usd"])
    expect(page.locator('#spend-totals tbody tr[data-series="acme"]')).to_have_count(1)


def test_every_page_screenshotted_and_checked_for_labels_scopes_and_contrast(start_daemon, page):
    daemon = start(start_daemon)
    seed(daemon.address)
    budgetctl(daemon, "pause", "crawler", "--reason", "crawling too wide")
    with Budget(daemon.address) as budget, budget.guard("summarizer", estimate_usd="6.5"):
        # A call in flight: its hold shows as reserved beside the spend.
        page.goto(daemon.url + "/#/fleet")
        expect(fleet_row(page, "agent", "crawler").locator('[data-field="paused"]')).to_contain_text("Paused")
        held = fleet_row(page, "agent", "summarizer").locator('[data-field="daily.reserved_usd"]')
        expect(held).to_have_text("$6.50")
        page.screenshot(path=str(_artifact("fleet-1366x768.png")))
        if os.environ.get("BUDGETD_UPDATE_DOCS_SCREENSHOT"):
            page.screenshot(path=str(DOCS_SHOT))
        shoot(page, "fleet")
        check_accessible(page)
    for name, route, ready in (
        ("spend", "#/spend", "#spend-totals"),
        ("agent", "#/agent/summarizer", "#last-calls"),
        ("tag", "#/tag/customer/acme", "#tag-agents"),
        ("notices", "#/notices", "#notices-table"),
    ):
        page.goto(f"{daemon.url}/{route}")
        expect(page.locator(ready)).to_be_visible()
        shoot(page, name)
        check_accessible(page)
    expect(page.locator('#notices-table tbody tr[data-kind="paused"]')).not_to_have_count(0)
    expect(page.locator('[data-field="pending"]')).to_have_text(re.compile(r"^\d+$"))
    expect(page.locator("#config-ok")).to_be_visible()

    # A rejected config edit shows on the open notices page (its notice is an event).
    daemon.write_config(CONFIG.replace("summarizer: {daily_usd: 50", "summarizer: {daily_usd: lots"))
    expect(page.locator("#config-last-error")).to_contain_text("summarizer", timeout=10_000)
    expect(page.locator('#notices-table tbody tr[data-kind="config_rejected"]')).to_have_count(1)
    shoot(page, "notices-config-rejected")


def _artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


def test_the_reconciliation_page_shows_each_providers_status_and_each_rows_class(start_daemon, page):
    with FakeAdminApi() as admin:
        admin.admin_keys = {"sk-admin-browser"}
        admin.prices["gpt-4o-mini"] = {"input": Decimal("0.15"), "cached_input": Decimal("0.075"),
                                       "output": Decimal("0.6")}
        daemon = start(start_daemon, "reconcile:\n"
                                     f'  openai: {{admin_key: "sk-admin-browser", base_url: "{admin.base_url}"}}\n'
                                     f'  anthropic: {{admin_key: "wrong", base_url: "{admin.base_url}"}}\n'
                                     "  tolerance_usd: 0.001\n")
        seed(daemon.address)  # triage's gpt-4o-mini call is the one priced from usage
        now_ms = int(time.time() * 1000)
        admin.add_call("openai", now_ms, "gpt-4o-mini", input=100_000, cached_input=20_000, output=40_000)
        admin.add_call("openai", now_ms, "gpt-4o-mini", input=100_000, cached_input=20_000, output=40_000)  # untracked
        today = datetime.now(UTC).date().isoformat()
        found = json.loads(subprocess.run([script("budgetctl"), "--address", daemon.address, "reconcile", "--run",
                                           "--day", today, "--format", "json"], capture_output=True, text=True,
                                          timeout=60).stdout)
        page.goto(daemon.url + "/#/reconcile")
        row = page.locator(f'#reconcile-table tbody tr[data-provider="openai"][data-model="gpt-4o-mini"]')
        expect(row).to_have_attribute("data-classification", "untracked")
        expected = next(r for d in found["days"] if d["provider"] == "openai" for r in d["rows"]
                        if r["model"] == "gpt-4o-mini")
        assert Decimal(row.locator('[data-field="difference"]').get_attribute("title").removesuffix(" USD")) == \
            Decimal(expected["drift_usd"])
        expect(page.locator('#reconcile-providers li[data-provider="anthropic"]')).to_contain_text(
            "Anthropic: 403 — the key is not an admin key")
        shoot(page, "reconcile")
        check_accessible(page)
