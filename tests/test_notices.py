"""Notices end to end: a real budgetd, the real slack-sdk, a loopback Slack."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from budgetd_client import AsyncBudget, Budget

from budgetd.config import load_config_text
from budgetd.server import Daemon, Intervals
from fake_slack import FakeSlack

NY = ZoneInfo("America/New_York")


@pytest.fixture
def slack():
    with FakeSlack() as s:
        yield s


def spend(budget: Budget, agent: str, usd: str) -> None:
    with budget.guard(agent, estimate_usd=usd) as call:
        call.record_usd(usd)


def slack_config(slack: FakeSlack, **extra) -> str:
    options = ", ".join(f"{k}: {v}" for k, v in {"min_interval_seconds": 0, **extra}.items())
    return f'slack: {{webhook_url: "{slack.webhook_url}", {options}}}\n'


def test_crossing_80_percent_warns_once_and_reaching_the_cap_posts_one_pause(start_daemon, slack):
    daemon = start_daemon("warn_at: [0.8]\nagents:\n  capped: {daily_usd: 1.00}\n" + slack_config(slack))
    budget = Budget(daemon.address)
    spend(budget, "capped", "0.50")
    spend(budget, "capped", "0.35")  # 85%: crosses 80%
    spend(budget, "capped", "0.05")  # 90%: no new warning
    [warning] = slack.wait_for("capped")
    assert "80% of the daily cap" in warning and "spent $0.85 of $1.00" in warning and "$0.15 remaining" in warning
    spend(budget, "capped", "0.10")  # 100%: paused
    paused = slack.wait_for("paused", 1)
    time.sleep(1.5)  # nothing more arrives
    assert slack.texts("capped") == [warning, *paused] and len(paused) == 1
    text = paused[0]
    assert "*capped* is paused: daily cap of 1 USD reached" in text
    assert "spent $1.00 of $1.00" in text and "`budgetctl resume capped`" in text and "Resumes by itself at" in text
    blocks = slack.posts[-1]["blocks"]
    assert blocks[0]["type"] == "section" and "capped" in blocks[0]["text"]["text"]


def test_bot_token_mode_posts_to_the_channel(start_daemon, slack):
    daemon = start_daemon("agents:\n  capped: {daily_usd: 0.10}\n"
                          f'slack: {{bot_token: "xoxb-test", channel: "C123", api_url: "{slack.api_url}", '
                          "min_interval_seconds: 0}\n")
    spend(Budget(daemon.address), "capped", "0.10")
    slack.wait_for("is paused")
    assert slack.posts[-1]["path"] == "/api/chat.postMessage" and slack.posts[-1]["channel"] == "C123"


def test_a_slack_outage_delays_the_pause_notice_and_it_arrives_once(start_daemon, slack):
    daemon = start_daemon("agents:\n  capped: {daily_usd: 0.10}\n" + slack_config(slack, retry_max_seconds=1))
    slack.fail_with = 503
    spend(Budget(daemon.address), "capped", "0.10")
    deadline = time.monotonic() + 15
    while slack.refused < 2:  # tried, refused, retried
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert slack.posts == []
    slack.fail_with = None
    slack.wait_for("is paused")
    time.sleep(2.5)
    assert len(slack.texts("is paused")) == 1


def test_a_permanent_refusal_is_logged_and_not_retried(start_daemon, slack):
    daemon = start_daemon("agents:\n  capped: {daily_usd: 0.10}\n" + slack_config(slack, retry_max_seconds=1))
    slack.fail_with = 404  # a revoked webhook
    spend(Budget(daemon.address), "capped", "0.10")
    deadline = time.monotonic() + 10
    while slack.refused < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(3)  # retries would have come by now (backoff is at most 1 s here)
    assert slack.refused == 1 and slack.posts == []
    assert "notice dropped" in daemon.log() and "slack answered 404" in daemon.log()


def test_a_notice_waiting_through_a_restart_arrives_once(start_daemon, slack):
    daemon = start_daemon("agents:\n  capped: {daily_usd: 0.10}\n" + slack_config(slack, retry_max_seconds=1))
    slack.fail_with = 503
    spend(Budget(daemon.address), "capped", "0.10")
    deadline = time.monotonic() + 15
    while slack.refused < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert daemon.terminate() == 0  # the notice is still waiting in the outbox
    slack.fail_with = None
    daemon.start()
    slack.wait_for("is paused")
    time.sleep(2.5)
    assert len(slack.texts("is paused")) == 1


def test_a_watcher_sees_the_pause_within_one_second(start_daemon):
    daemon = start_daemon("agents:\n  capped: {daily_usd: 0.10}\n")
    seen: list[tuple[float, object]] = []
    subscribed = threading.Event()

    def watch():
        watcher = Budget(daemon.address)
        stream = watcher.watch("capped")
        subscribed.set()
        for event in stream:
            seen.append((time.monotonic(), event))
            if event.kind == "paused":
                break
        watcher.close()

    thread = threading.Thread(target=watch)
    thread.start()
    subscribed.wait(5)
    time.sleep(0.5)  # the stream is open
    spend(Budget(daemon.address), "capped", "0.10")
    committed = time.monotonic()
    thread.join(10)
    assert seen, "no event arrived"
    at, event = seen[-1]
    assert event.kind == "paused" and event.window == "daily" and event.cap_usd == Decimal("0.1")
    assert at - committed < 1.0, f"the pause took {at - committed:.2f}s to arrive"


# -- with an injected clock: the daemon in-process, the real client over gRPC ---------


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now.astimezone(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when.astimezone(timezone.utc)


FAST = Intervals(deliver=0.2, rollover=1, digest=1, anomaly=1)


@pytest.fixture
async def running(tmp_path, slack):
    daemons = []

    async def start(clock: FakeClock, body: str) -> AsyncBudget:
        config = load_config_text(f'server: {{listen: "127.0.0.1:0"}}\nstore: {{url: "sqlite://{tmp_path}/b.db"}}\n'
                                  + body + slack_config(slack))
        daemon = Daemon(config, clock=clock, intervals=FAST)
        await daemon.start()
        daemons.append(daemon)
        return AsyncBudget(f"127.0.0.1:{daemon.port}")

    yield start
    for daemon in daemons:
        await daemon.stop()


async def wait_for_post(slack: FakeSlack, containing: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while not slack.texts(containing):
        assert time.monotonic() < deadline, f"no post containing {containing!r}: {slack.texts()}"
        await asyncio.sleep(0.05)
    return slack.texts(containing)[0]


async def aspend(budget: AsyncBudget, agent: str, usd: str) -> None:
    async with budget.guard(agent, estimate_usd=usd) as call:
        call.record_usd(usd)


async def test_a_daily_capped_agent_resumes_at_local_midnight_and_a_manual_pause_stays(running, slack):
    clock = FakeClock(datetime(2026, 11, 22, 23, 50, tzinfo=NY))
    budget = await running(clock, "timezone: America/New_York\nagents:\n  nightly: {daily_usd: 1}\n"
                                  "  held: {daily_usd: 1}\n")
    await aspend(budget, "nightly", "1.00")
    await budget.pause("held", reason="investigating")
    paused = await wait_for_post(slack, "*nightly* is paused")
    assert "Resumes by itself at 2026-11-23 00:00 America/New_York" in paused

    clock.set(datetime(2026, 11, 23, 0, 0, 30, tzinfo=NY))
    resumed = await wait_for_post(slack, "*nightly* is running again")
    assert "daily window rolled over" in resumed
    assert not (await budget.status("nightly")).paused
    await aspend(budget, "nightly", "0.10")
    await asyncio.sleep(2)
    st = await budget.status("held")
    assert st.paused and st.pause_kind == "manual"
    assert slack.texts("*held* is running again") == [] and len(slack.texts("*nightly* is running again")) == 1
    await budget.close()


async def test_the_digest_is_sent_at_its_configured_time_and_lists_top_spenders(running, slack):
    clock = FakeClock(datetime(2026, 11, 21, 12, 0, tzinfo=NY))
    budget = await running(clock, 'timezone: America/New_York\ndigest: {at: "09:00"}\n'
                                  "defaults: {daily_usd: 100}\n")
    for agent, usd in [("small", "1.00"), ("big", "7.00"), ("middle", "3.00")]:
        await aspend(budget, agent, usd)
    clock.set(datetime(2026, 11, 22, 12, 0, tzinfo=NY))  # yesterday, for the digest of the 23rd
    for agent, usd in [("small", "2.00"), ("big", "20.00"), ("middle", "4.00")]:
        await aspend(budget, agent, usd)
    # Started at noon, the daemon caught up that day's digest (of the 20th).
    await wait_for_post(slack, "Spend digest for 2026-11-20")
    clock.set(datetime(2026, 11, 23, 8, 59, tzinfo=NY))
    await asyncio.sleep(2.5)
    assert slack.texts("Spend digest for 2026-11-22") == []  # not before 09:00 local
    clock.set(datetime(2026, 11, 23, 9, 0, 5, tzinfo=NY))
    digest = await wait_for_post(slack, "Spend digest for 2026-11-22")
    assert "$26.00 in total" in digest and "+136% on 2026-11-21" in digest
    assert digest.index("*big* $20.00") < digest.index("*middle* $4.00") < digest.index("*small* $2.00")
    await asyncio.sleep(2.5)
    assert len(slack.texts("Spend digest for 2026-11-22")) == 1
    await budget.close()


async def test_a_5x_hourly_spike_raises_one_anomaly_and_steady_traffic_none(running, slack):
    start = datetime(2026, 11, 1, 0, 30, tzinfo=timezone.utc)
    clock = FakeClock(start)
    budget = await running(clock, "defaults: {daily_usd: 1000, monthly_usd: 100000}\n"
                                  "anomaly: {factor: 3, floor_usd: 2}\n")
    for hour in range(7 * 24):  # a week of $1 an hour
        clock.set(start + timedelta(hours=hour))
        await aspend(budget, "steady", "1.00")
        await aspend(budget, "spiky", "1.00")
    clock.set(start + timedelta(hours=7 * 24))
    await aspend(budget, "steady", "1.00")
    for _ in range(5):
        await aspend(budget, "spiky", "1.00")  # 5x its hourly average
    notice = await wait_for_post(slack, "*spiky* spent $5.00 in the last hour")
    assert "5.0x its 7-day hourly average of $1.00" in notice
    await asyncio.sleep(2.5)  # several more checks
    assert len(slack.texts("in the last hour")) == 1
    assert slack.texts("*steady*") == []
    await budget.close()


def test_two_replicas_on_redis_deliver_each_notice_once(start_daemon, redis_server, slack):
    url = f"{redis_server.url}?prefix=t{uuid.uuid4().hex[:8]}"
    body = "warn_at: [0.5]\nagents:\n  shared: {daily_usd: 1.00}\n" + slack_config(slack)
    first, second = start_daemon(body, store_url=url), start_daemon(body, store_url=url)
    seen = []

    def watch_on_second():
        for event in Budget(second.address).watch("shared"):
            seen.append(event.kind)
            if event.kind == "paused":
                break

    watcher = threading.Thread(target=watch_on_second)
    watcher.start()
    time.sleep(0.5)
    spend(Budget(first.address), "shared", "0.60")
    spend(Budget(second.address), "shared", "0.40")
    slack.wait_for("is paused")
    slack.wait_for("50% of the daily cap")
    time.sleep(3)  # both replicas deliver every second: any duplicate would be here by now
    assert len(slack.texts("is paused")) == 1 and len(slack.texts("50% of the daily cap")) == 1
    watcher.join(10)
    assert seen[-1] == "paused" and "warning" in seen  # a pause made on one replica reaches the other's watchers
