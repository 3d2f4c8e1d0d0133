"""Reconciliation end to end: a real budgetd (in-process, with an injected
clock) whose ledger is written by real clients, a loopback fake of OpenAI's
and Anthropic's admin APIs serving what "the provider saw", the real
slack-sdk against a loopback Slack, and `budgetctl reconcile` as an
operator runs it.

Each scenario makes calls on a day D through budgetd and tells the fake
provider what it billed for them (the same calls, or fewer, more, dearer),
moves the clock to 02:00 UTC on D+1 (the configured time), runs the
scheduled job, and reads the classification from budgetctl and Slack."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import openai
import pytest
from budgetd_client import AsyncBudget, Budget
from test_dashboard_api import budgetctl as run_budgetctl
from test_dashboard_api import dashboard
from test_notices import FakeClock, days_ahead, slack, slack_config, start_and_settle  # noqa: F401 (fixtures)

from budgetd.cli import budgetctl
from budgetd.config import load_config_text
from budgetd.pricing import PriceTable
from budgetd.reconcile.http import RetryPolicy
from budgetd.reconcile.runner import _price_per_mtok
from budgetd.server import Daemon, Intervals
from fake_admin_api import FakeAdminApi
from fake_provider import FakeProvider

QUIET = Intervals(deliver=3600, rollover=3600, digest=3600, anomaly=3600, gauges=3600, retention=3600,
                  reconcile=3600)
FAST = RetryPolicy(attempts=4, base_seconds=0.01, max_seconds=0.05, timeout_seconds=5)
OPENAI_KEY, ANTHROPIC_KEY = "sk-admin-budgetd-test", "sk-ant-admin01-budgetd-test"
KINDS = ("input", "cached_input", "cache_write", "output")


@pytest.fixture
def admin():
    with FakeAdminApi() as api:
        api.admin_keys = {OPENAI_KEY, ANTHROPIC_KEY}
        yield api


def config_text(tmp_path, admin, slack, *, openai_key: str = OPENAI_KEY, extra: str = "") -> str:
    return (f'server: {{listen: "127.0.0.1:0"}}\nstore: {{url: "sqlite://{tmp_path}/b.db"}}\n'
            "defaults: {daily_usd: 100000}\n"
            "reconcile:\n"
            f'  openai: {{admin_key: "{openai_key}", base_url: "{admin.base_url}"}}\n'
            f'  anthropic: {{admin_key: "{ANTHROPIC_KEY}", base_url: "{admin.base_url}"}}\n'
            '  tolerance_percent: 1\n  tolerance_usd: 0.001\n  at: "02:00"\n  today_every_minutes: 0\n'
            + extra + slack_config(slack))


class Reconciling:
    """A daemon, a client of it, the fake provider and Slack, and a clock."""

    def __init__(self, daemon: Daemon, clock: FakeClock, admin: FakeAdminApi, slack) -> None:
        self.daemon, self.clock, self.admin, self.slack = daemon, clock, admin, slack
        self.address = f"127.0.0.1:{daemon.port}"
        self.budget = AsyncBudget(self.address)
        self.prices = PriceTable(daemon.service.in_force.config)

    @property
    def day(self) -> str:
        return self.clock().date().isoformat()

    def price(self, provider: str, model: str) -> dict[str, Decimal]:
        """budgetd's own prices of a model, per kind (what an up-to-date provider bills)."""
        found = {kind: _price_per_mtok(self.prices, provider, model, kind) for kind in KINDS}
        priced = {kind: usd for kind, usd in found.items() if usd is not None}
        assert {"input", "cached_input", "output"} <= set(priced), found
        return priced

    async def call(self, model: str, *, input: int, cached: int = 0, output: int, provider: str = "openai",
                   billed: bool = True, agent: str = "worker") -> None:
        """One call through budgetd with its usage, and (``billed``) the same call at the provider."""
        async with self.budget.guard(agent) as call:
            call.record_usage(model, input, output, cached_input_tokens=cached, provider=provider)
        if billed:
            self.bill(model, input=input, cached=cached, output=output, provider=provider)

    def bill(self, model: str, *, input: int, cached: int = 0, output: int, provider: str = "openai",
             requests: int = 1) -> None:
        """The provider saw this call (made through budgetd or not)."""
        if model not in self.admin.prices:
            self.admin.prices[model] = self.price(provider, model)
        at_ms = int(self.clock().timestamp() * 1000)
        for _ in range(requests):
            self.admin.add_call(provider, at_ms, model, input=input - cached, cached_input=cached, output=output)

    async def next_morning(self) -> list:
        """02:00 UTC the next day: the scheduled job, then one delivery of notices."""
        self.clock.set(self.clock().replace(hour=2, minute=0, second=0) + timedelta(days=1))
        results = await self.daemon.reconciler.run_due()
        await self.daemon.deliverer.deliver_due()
        return results

    async def budgetctl(self, capsys, *args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(budgetctl.main, ["--address", self.address, "reconcile", *args])
        return code, capsys.readouterr().out

    async def shown(self, capsys, day: str) -> dict:
        code, out = await self.budgetctl(capsys, "--day", day, "--format", "json")
        data = json.loads(out)
        assert code == (0 if data["all_clear"] else 2)
        return data

    def reconcile_posts(self) -> list[str]:
        return [text for text in self.slack.texts() if ":mag:" in text]


@pytest.fixture
async def reconciling(tmp_path, admin, slack):
    started: list[Reconciling] = []

    async def start(**options) -> Reconciling:
        clock = options.pop("clock", None) or FakeClock(days_ahead(1, 12))
        config = load_config_text(config_text(tmp_path, admin, slack, **options))
        daemon = Daemon(config, now_ms=lambda: int(clock().timestamp() * 1000), intervals=QUIET)
        daemon.reconciler.retry = FAST
        await start_and_settle(daemon)
        started.append(Reconciling(daemon, clock, admin, slack))
        return started[-1]

    yield start
    for run in started:
        await run.budget.close()
        await run.daemon.stop()


def rows_of(data: dict, provider: str = "openai") -> dict[str, dict]:
    return {row["model"]: row for day in data["days"] if day["provider"] == provider for row in day["rows"]}


async def test_agreement_shows_every_model_agreeing_and_posts_nothing(reconciling, capsys):
    run = await reconciling()
    day = run.day
    for i in range(20):
        await run.call("gpt-4o", input=1000 + i, cached=500, output=200)
        await run.call("claude-sonnet-4-20250514", input=2000, cached=1500, output=100, provider="anthropic")
    await run.next_morning()
    data = await run.shown(capsys, day)
    assert data["all_clear"] and [p["state"] for p in data["providers"]] == ["ok", "ok"]
    assert rows_of(data)["gpt-4o"]["classification"] == "agree"
    assert rows_of(data, "anthropic")["claude-sonnet-4"]["classification"] == "agree"
    assert {d["drift_usd"] for d in data["days"]} == {"0"}
    assert run.reconcile_posts() == []
    code, table = await run.budgetctl(capsys, "--day", day)
    assert code == 0 and "OpenAI: ok" in table and "Anthropic: ok" in table and "agree" in table


async def test_three_percent_of_spend_outside_budgetd_is_untracked_spend(reconciling, capsys):
    run = await reconciling()
    day = run.day
    for _ in range(100):
        await run.call("gpt-4o", input=1200, cached=1000, output=300)
    run.bill("gpt-4o", input=1200, cached=1000, output=300, requests=3)  # another system on the same key
    await run.next_morning()
    row = rows_of(await run.shown(capsys, day))["gpt-4o"]
    assert (row["classification"], row["past_tolerance"], row["provider_requests"], row["ledger_requests"]) == \
        ("untracked", True, 103, 100)
    assert Decimal(row["drift_usd"]) == 3 * Decimal("0.00475") and "2.9% of the bill" in row["explanation"]
    [post] = run.reconcile_posts()
    assert "untracked spend" in post and "gpt-4o" in post and f"budgetctl reconcile --day {day}" in post


async def test_a_stale_gpt_4o_price_is_named_with_the_price_billed_and_the_override_to_add(reconciling, capsys):
    run = await reconciling()
    day = run.day
    run.admin.prices["gpt-4o"] = {k: v * Decimal("1.2") for k, v in run.price("openai", "gpt-4o").items()}
    for _ in range(50):
        await run.call("gpt-4o", input=1200, cached=1000, output=300)
    await run.next_morning()
    row = rows_of(await run.shown(capsys, day))["gpt-4o"]
    assert row["classification"] == "stale_price" and row["past_tolerance"]
    assert row["provider_tokens"] == row["ledger_tokens"]
    assert "+20.0%" in row["explanation"]
    assert row["suggestion"] == ("prices:\n  gpt-4o: {input_usd_per_mtok: 3, cached_input_usd_per_mtok: 1.5, "
                                 "output_usd_per_mtok: 12}")
    [post] = run.reconcile_posts()
    assert "stale price" in post and "input_usd_per_mtok: 3" in post


async def test_abandoned_streams_settled_at_their_hold_are_estimates_settled_as_cost(reconciling, capsys):
    run = await reconciling()
    day = run.day
    with FakeProvider() as provider:
        client = run.budget.wrap(openai.AsyncOpenAI(api_key="k", base_url=provider.base_url, max_retries=0),
                                 agent_id="streamer")
        usage = provider.usage
        for _ in range(5):  # finished calls: priced from their usage
            await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=400)
            run.bill("gpt-4o", input=usage["input"], cached=usage["cached"], output=usage["output"])
        for _ in range(5):  # abandoned after the first chunk: the provider still billed the whole answer
            stream = await client.chat.completions.create(model="gpt-4o", stream=True, max_tokens=400,
                                                          messages=[{"role": "user", "content": "hi"}])
            async for _chunk in stream:
                break
            await stream.close()
            run.bill("gpt-4o", input=usage["input"], cached=usage["cached"], output=usage["output"])
    await run.next_morning()
    row = rows_of(await run.shown(capsys, day))["gpt-4o"]
    assert (row["classification"], row["estimate_requests"], row["ledger_requests"]) == ("estimates", 5, 10)
    assert row["past_tolerance"] and "5 calls were settled at an estimate" in row["explanation"]
    [post] = run.reconcile_posts()
    assert "estimates settled as cost" in post


async def test_a_429_is_retried_and_the_day_is_compared(reconciling, capsys):
    run = await reconciling()
    day = run.day
    for _ in range(10):
        await run.call("gpt-4o", input=1200, cached=1000, output=300)
    run.admin.fail("/organization/costs", 429, times=2, retry_after=0)
    await run.next_morning()
    data = await run.shown(capsys, day)
    assert data["all_clear"] and rows_of(data)["gpt-4o"]["classification"] == "agree"
    costs = [q for path, q in run.admin.requests if path.endswith("/organization/costs")]
    assert len(costs) >= 3  # two refused, then read
    assert run.reconcile_posts() == []  # agreed after the retries: nothing to say


async def test_a_key_that_is_not_an_admin_key_is_a_clear_error_never_an_all_clear(reconciling, capsys):
    run = await reconciling(openai_key="sk-proj-not-an-admin-key")
    day = run.day
    await run.call("gpt-4o", input=1200, cached=1000, output=300)
    await run.next_morning()
    code, table = await run.budgetctl(capsys, "--day", day)
    assert code == 2
    assert "OpenAI: 403 — the key is not an admin key" in table
    data = await run.shown(capsys, day)
    openai_status = next(p for p in data["providers"] if p["provider"] == "openai")
    assert openai_status["state"] == "error" and not data["all_clear"]
    assert next(d for d in data["days"] if d["provider"] == "openai")["state"] == "error"
    # Silence would read as all clear: one notice says the key needs fixing (for each day it stops).
    posts = [text for text in run.slack.texts() if "could not compare OpenAI's bill" in text]
    assert posts and all("403 — the key is not an admin key" in text for text in posts)
    assert any(day in text for text in posts)
    # Retried with backoff (a minute, then two, ...: this was its second failure in a row, the first
    # at the start), not on every tick; never marked done.
    asked = len(run.admin.requests)
    run.clock.advance(seconds=110)
    await run.daemon.reconciler.run_due()
    assert len(run.admin.requests) == asked
    run.clock.advance(seconds=11)
    await run.daemon.reconciler.run_due()
    assert len(run.admin.requests) > asked
    [stored] = await run.daemon.store.reconciliations(day, day, "openai")
    assert stored.passes == () and stored.state == "error"


async def test_a_page_that_fails_half_way_is_an_error_not_a_partial_all_clear(reconciling, capsys):
    run = await reconciling()
    day = run.day
    for model in ("gpt-4o", "gpt-4o-mini", "o3"):
        for _ in range(3):
            await run.call(model, input=1200, cached=1000, output=300)
    run.admin.page_size = 1  # one result a page: three models, three pages
    run.admin.fail_page("/usage/completions", 2, 500)
    await run.next_morning()
    data = await run.shown(capsys, day)
    openai_status = next(p for p in data["providers"] if p["provider"] == "openai")
    assert openai_status["state"] == "error" and "500" in openai_status["detail"] and not data["all_clear"]
    [stored] = await run.daemon.store.reconciliations(day, day, "openai")
    assert stored.rows == () and stored.passes == ()  # nothing of the partial read, and tried again later
    assert run.reconcile_posts() == []  # a server error heals by retrying: a status, not a page to on-call
    # The next run (the failure gone) reads every page and compares the day.
    run.admin.heal("/usage/completions")
    run.clock.advance(hours=1)
    await run.daemon.reconciler.run_now("openai", day)
    data = await run.shown(capsys, day)
    assert data["all_clear"] and {r["classification"] for r in rows_of(data).values()} == {"agree"}


FIVE_MODELS = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("openai", "o3"),
               ("anthropic", "claude-sonnet-4-20250514"), ("anthropic", "claude-3-5-haiku-20241022")]


async def test_a_day_of_10000_calls_across_5_models_in_agreement_differs_by_exactly_zero(reconciling, capsys):
    run = await reconciling()
    day = run.day
    semaphore = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        provider, model = FIVE_MODELS[i % 5]
        async with semaphore:  # every token count different: no two calls cost the same
            await run.call(model, input=500 + i, cached=(i * 7) % 400, output=50 + i % 977, provider=provider,
                           agent=f"agent-{i % 40}")

    await asyncio.gather(*(one(i) for i in range(10_000)))
    await run.next_morning()
    data = await run.shown(capsys, day)
    assert data["all_clear"]
    rows = {**rows_of(data), **rows_of(data, "anthropic")}
    assert set(rows) == {"gpt-4o", "gpt-4o-mini", "o3", "claude-sonnet-4", "claude-3-5-haiku"}
    assert {r["classification"] for r in rows.values()} == {"agree"}
    assert sum(r["ledger_requests"] for r in rows.values()) == 10_000
    assert all(Decimal(r["drift_usd"]) == 0 for r in rows.values())
    assert [d["drift_usd"] for d in data["days"]] == ["0", "0"]
    billed = sum(Decimal(r["provider_cost_usd"]) for r in rows.values())
    spent = sum(Decimal(r["ledger_cost_usd"]) for r in rows.values())
    assert billed == spent > 0
    report = await run.budget.report("agent", day, day)  # the ledger's own total, to the nanodollar
    assert report.total_usd == spent


def reads_of(admin: FakeAdminApi, day: str) -> int:
    """How many times the provider's cost report was read for ``day`` (either provider)."""
    return sum(1 for path, query in admin.requests
               if path.endswith(("/organization/costs", "/organizations/cost_report")) and admin.day_of(query) == day)


async def test_it_runs_by_itself_at_its_time_once_per_day_and_pass_after_a_restart_too(
        tmp_path, admin, slack, capsys):
    clock = FakeClock(days_ahead(1, 12))
    day = clock().date().isoformat()
    config = load_config_text(config_text(tmp_path, admin, slack))
    ticking = Intervals(deliver=3600, rollover=3600, digest=3600, anomaly=3600, gauges=3600, retention=3600,
                        reconcile=0.05)

    async def started() -> Reconciling:
        daemon = Daemon(config, now_ms=lambda: int(clock().timestamp() * 1000), intervals=ticking)
        daemon.reconciler.retry = FAST
        await start_and_settle(daemon)
        return Reconciling(daemon, clock, admin, slack)

    async def ticks(n: int = 10) -> None:  # the job runs every 50 ms: let it run n times
        await asyncio.sleep(0.05 * n)

    run = await started()
    try:
        await run.call("gpt-4o", input=1200, cached=1000, output=300)
        clock.set(clock().replace(hour=1, minute=59) + timedelta(days=1))
        await ticks()
        assert reads_of(admin, day) == 0  # not before its time
        clock.set(clock().replace(hour=2, minute=0))
        for _ in range(100):
            if reads_of(admin, day) == 2:
                break
            await ticks(1)
        await ticks()
        assert reads_of(admin, day) == 2  # once per provider, however many ticks
        [first] = await run.daemon.store.reconciliations(day, day, "openai")
        assert first.passes == ("first",) and first.state == "ok"
    finally:
        await run.budget.close()
        await run.daemon.stop()

    clock.advance(hours=1)  # 03:00: restarted on the same store
    run = await started()
    try:
        await ticks()
        assert reads_of(admin, day) == 2  # done before the restart: not again
        clock.advance(days=1)  # 02:00 and an hour the day after: the second pass, once
        for _ in range(100):
            if reads_of(admin, day) == 4:
                break
            await ticks(1)
        await ticks()
        assert reads_of(admin, day) == 4
        [second] = await run.daemon.store.reconciliations(day, day, "openai")
        assert second.passes == ("first", "second")
        code, _ = await run.budgetctl(capsys, "--run", "--day", day)  # unless asked
        assert code == 0 and reads_of(admin, day) == 6
    finally:
        await run.budget.close()
        await run.daemon.stop()


def test_the_dashboard_api_serves_what_budgetctl_prints_and_says_when_it_is_not_configured(start_daemon, admin):
    daemon, web = dashboard(start_daemon, "agents: {bot: {daily_usd: 10}}\n")
    status, body = web.get("/api/v1/reconcile")
    assert status == 400 and "reconciliation is not configured" in body["error"]

    admin.prices["gpt-4o"] = {"input": Decimal("2.5"), "cached_input": Decimal("1.25"), "output": Decimal(10)}
    daemon, web = dashboard(start_daemon, "agents: {bot: {daily_usd: 10}}\nreconcile:\n"
                                          f'  openai: {{admin_key: "{OPENAI_KEY}", base_url: "{admin.base_url}"}}\n')
    with Budget(daemon.address) as budget, budget.guard("bot") as call:
        call.record_usage("gpt-4o", 1200, 300, cached_input_tokens=1000)
    admin.add_call("openai", int(time.time() * 1000), "gpt-4o", input=200, cached_input=1000, output=300)
    printed = json.loads(run_budgetctl(daemon, "reconcile", "--run", "--format", "json"))
    served = web.ok("/api/v1/reconcile")
    assert served == printed
    [today] = [d for d in served["days"] if d["rows"]]
    assert today["state"] == "partial" and today["rows"][0]["classification"] == "agree"
    status, body = web.get("/api/v1/reconcile?provider=nobody")
    assert status == 400 and "provider" in body["error"]


async def test_two_replicas_on_one_redis_read_each_providers_day_once(tmp_path, admin, slack, redis_server):
    clock = FakeClock(days_ahead(1, 12))
    day = clock().date().isoformat()
    url = f"{redis_server.url}?prefix=t{uuid.uuid4().hex[:8]}"
    config = load_config_text(config_text(tmp_path, admin, slack).replace(f"sqlite://{tmp_path}/b.db", url))
    replicas = []
    try:
        for _ in range(2):
            daemon = Daemon(config, now_ms=lambda: int(clock().timestamp() * 1000), intervals=QUIET)
            daemon.reconciler.retry = FAST
            await start_and_settle(daemon)
            replicas.append(Reconciling(daemon, clock, admin, slack))
        for i in range(20):  # spend through both replicas
            await replicas[i % 2].call("gpt-4o", input=1200, cached=1000, output=300)
        clock.set(clock().replace(hour=2) + timedelta(days=1))
        ran = await asyncio.gather(*(r.daemon.reconciler.run_due() for r in replicas for _ in range(3)))
        assert reads_of(admin, day) == 2  # once per provider, by whichever replica claimed it
        assert sum(1 for results in ran for result in results if result.day == day) == 2
        for replica in replicas:  # both see the one result
            [stored] = await replica.daemon.store.reconciliations(day, day, "openai")
            assert stored.passes == ("first",) and stored.rows[0].classification == "agree"
            assert stored.rows[0].ledger_requests == 20
    finally:
        for replica in replicas:
            await replica.budget.close()
            await replica.daemon.stop()


async def test_never_an_all_clear_for_an_overdue_day_a_partial_day_past_tolerance_or_nothing(reconciling, capsys):
    run = await reconciling()
    day = run.day
    for _ in range(10):
        await run.call("gpt-4o", input=1200, cached=1000, output=300)
    run.bill("gpt-4o", input=1200, cached=1000, output=300, requests=5)  # untracked, past tolerance
    # Today, compared on request: partial, with a row past tolerance: not clear.
    code, _ = await run.budgetctl(capsys, "--run", "--day", day)
    data = await run.shown(capsys, day)
    assert code == 2 and not data["all_clear"] and data["days"][0]["state"] == "partial"
    # The day closed and its first pass is overdue (never run: this daemon's job is not ticking): "missing".
    run.clock.set(run.clock().replace(hour=3) + timedelta(days=1))
    data = await run.shown(capsys, day)
    states = {d["provider"]: d["state"] for d in data["days"]}
    assert states == {"openai": "missing", "anthropic": "missing"} and not data["all_clear"]
    assert "has not been compared since it closed" in data["days"][0]["detail"]
    # A range with nothing compared in it is not clear either (days to come: nothing is due yet).
    later = (run.clock() + timedelta(days=10)).date().isoformat()
    code, out = await run.budgetctl(capsys, "--since", later, "--until", later)
    assert code == 2 and "nothing compared in this range yet" in out


async def test_a_store_lost_mid_run_fails_the_pass_without_crashing_the_job(reconciling, tmp_path, caplog):
    run = await reconciling()
    await run.call("gpt-4o", input=1200, cached=1000, output=300)
    (tmp_path / "b.db").unlink()  # budgetd's SQLite file deleted under it
    run.clock.set(run.clock().replace(hour=2) + timedelta(days=1))
    results = await run.daemon.reconciler.run_due()  # returns: the job is not crashed
    assert results == []  # nothing could be recorded, and that was logged
    assert "reconcile: the failure could not be recorded" in caplog.text
    assert "was deleted or replaced while budgetd was running" in caplog.text  # why, in the log
