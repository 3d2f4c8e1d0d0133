"""Notices end to end: a real budgetd, the real slack-sdk, a loopback Slack.

Most tests run the daemon in-process with an injected clock. Its periodic
jobs run once at its start, as always, and then not again for an hour: the
test runs the due-checks and the delivery pass itself, at the clock it set,
and asserts exactly what reached Slack by then. "Once, nothing more" is
then a fact about the outbox (one more pass, later, posts nothing), not a
guess that a sleep was long enough."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from budgetd_client import AsyncBudget, Budget

from budgetd.config import load_config_text
from budgetd.server import Daemon, Intervals
from fake_slack import FakeSlack

NY = ZoneInfo("America/New_York")


def days_ahead(days: int, hour: int, minute: int = 0, second: int = 0, zone=timezone.utc) -> datetime:
    """That local time ``days`` days after the real today: a date that never ages."""
    day = datetime.now(zone).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=zone)


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


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now.astimezone(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when.astimezone(timezone.utc)

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


# After the runs at start, nothing periodic touches the outbox within a test.
QUIET = Intervals(deliver=3600, rollover=3600, digest=3600, anomaly=3600, gauges=3600, retention=3600)


async def start_and_settle(daemon: Daemon) -> None:
    """Start the daemon and wait until each periodic job has finished its
    first run (a start runs every job at once, to catch up)."""
    ran: set[str] = set()
    done = asyncio.Event()
    await daemon.start()
    # The scheduler's first pass is queued on the loop, not run yet: listening
    # from here sees every first run.
    jobs = {job.id for job in daemon.scheduler.get_jobs()}

    def finished(event) -> None:
        ran.add(event.job_id)
        if ran >= jobs:
            done.set()

    daemon.scheduler.add_listener(finished, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    await asyncio.wait_for(done.wait(), 20)


class Running:
    """An in-process daemon, a client of it over gRPC, and its notice work on demand."""

    def __init__(self, daemon: Daemon, slack: FakeSlack) -> None:
        self.daemon = daemon
        self.slack = slack
        self.budget = AsyncBudget(f"127.0.0.1:{daemon.port}")

    async def deliver(self) -> list[str]:
        """One delivery pass now: the texts it posted."""
        before = len(self.slack.posts)
        await self.daemon.deliverer.deliver_due()
        return self.slack.texts()[before:]

    async def due(self) -> list[str]:
        """The due-checks, then one delivery pass, now: the texts posted."""
        await self.daemon.checks.run_due()
        return await self.deliver()


@pytest.fixture
async def running(tmp_path, slack):
    started: list[Running] = []

    async def start(clock, body: str, *, slack_settings: str | None = None, store_url: str | None = None) -> Running:
        url = store_url or f"sqlite://{tmp_path}/b.db"
        settings = slack_config(slack) if slack_settings is None else slack_settings
        config = load_config_text(f'server: {{listen: "127.0.0.1:0"}}\nstore: {{url: "{url}"}}\n' + body + settings)
        daemon = Daemon(config, now_ms=lambda: int(clock().timestamp() * 1000), intervals=QUIET)
        await start_and_settle(daemon)
        started.append(Running(daemon, slack))
        return started[-1]

    yield start
    for run in started:
        await run.budget.close()
        await run.daemon.stop()  # a second stop (after a test's own) does nothing


async def aspend(budget: AsyncBudget, agent: str, usd: str) -> None:
    async with budget.guard(agent, estimate_usd=usd) as call:
        call.record_usd(usd)


async def test_crossing_80_percent_warns_once_and_reaching_the_cap_posts_one_pause(running, slack):
    clock = FakeClock(days_ahead(1, 12))
    run = await running(clock, "warn_at: [0.8]\nagents:\n  capped: {daily_usd: 1.00}\n")
    await aspend(run.budget, "capped", "0.50")
    await aspend(run.budget, "capped", "0.35")  # 85%: crosses 80%
    await aspend(run.budget, "capped", "0.05")  # 90%: no new warning
    [warning] = await run.due()
    assert "*capped*" in warning and "80% of the daily cap" in warning
    assert "spent $0.85 of $1.00" in warning and "$0.15 remaining" in warning

    await aspend(run.budget, "capped", "0.10")  # 100%: paused
    [paused] = await run.due()
    assert "*capped* is paused: daily cap of 1 USD reached" in paused
    assert "spent $1.00 of $1.00" in paused and "`budgetctl resume capped`" in paused
    assert "Resumes by itself at" in paused
    blocks = slack.posts[-1]["blocks"]
    assert blocks[0]["type"] == "section" and "capped" in blocks[0]["text"]["text"]

    # Later passes (past any lease or retry) find nothing more to say.
    clock.advance(minutes=5)
    assert await run.due() == []
    assert slack.texts() == [warning, paused]


async def test_bot_token_mode_posts_to_the_channel(running, slack):
    run = await running(FakeClock(days_ahead(1, 12)), "agents:\n  capped: {daily_usd: 0.10}\n",
                        slack_settings=f'slack: {{bot_token: "xoxb-test", channel: "C123", '
                                       f'api_url: "{slack.api_url}", min_interval_seconds: 0}}\n')
    await aspend(run.budget, "capped", "0.10")
    [paused] = await run.due()
    assert "*capped* is paused" in paused
    assert [(p["path"], p["channel"]) for p in slack.posts] == [("/api/chat.postMessage", "C123")]


async def test_a_slack_outage_delays_the_pause_notice_and_it_arrives_once(running, slack):
    clock = FakeClock(days_ahead(1, 12))
    run = await running(clock, "agents:\n  capped: {daily_usd: 0.10}\n" + slack_config(slack, retry_max_seconds=1),
                        slack_settings="")
    slack.fail_with = 503
    await aspend(run.budget, "capped", "0.10")
    assert await run.deliver() == [] and slack.refused == 1  # tried, refused
    assert await run.deliver() == [] and slack.refused == 1  # not tried again before its backoff (1 s)
    clock.advance(seconds=1)
    assert await run.deliver() == [] and slack.refused == 2  # retried, refused again
    slack.fail_with = None
    assert await run.deliver() == []  # the next try is a backoff away
    clock.advance(seconds=1)
    [paused] = await run.deliver()
    assert "*capped* is paused" in paused
    clock.advance(hours=1)
    assert await run.due() == []
    assert slack.texts() == [paused] and slack.refused == 2


async def test_a_permanent_refusal_is_logged_and_not_retried(running, slack, caplog):
    clock = FakeClock(days_ahead(1, 12))
    run = await running(clock, "agents:\n  capped: {daily_usd: 0.10}\n" + slack_config(slack, retry_max_seconds=1),
                        slack_settings="")
    slack.fail_with = 404  # a revoked webhook
    await aspend(run.budget, "capped", "0.10")
    with caplog.at_level(logging.WARNING, logger="budgetd.notices"):
        assert await run.deliver() == []
    assert slack.refused == 1
    [dropped] = [r for r in caplog.records if r.name == "budgetd.notices"]
    assert dropped.levelno == logging.ERROR
    assert "notice dropped" in dropped.getMessage() and "slack answered 404" in dropped.getMessage()
    for _ in range(3):  # many backoffs (at most 1 s here) later: no retry
        clock.advance(minutes=10)
        assert await run.due() == []
    assert slack.refused == 1 and slack.posts == []


async def test_a_notice_waiting_through_a_restart_arrives_once(running, slack):
    clock = FakeClock(days_ahead(1, 12))
    body = "agents:\n  capped: {daily_usd: 0.10}\n" + slack_config(slack, retry_max_seconds=1)
    first = await running(clock, body, slack_settings="")
    slack.fail_with = 503
    await aspend(first.budget, "capped", "0.10")
    assert await first.deliver() == [] and slack.refused == 1
    await first.daemon.stop()  # the notice is still waiting in the outbox

    slack.fail_with = None
    clock.advance(seconds=2)  # its retry is due
    second = await running(clock, body, slack_settings="")  # same store file
    # The start's own delivery pass sent it.
    [paused] = slack.texts()
    assert "*capped* is paused" in paused
    clock.advance(hours=1)
    assert await second.due() == []
    assert slack.texts() == [paused] and slack.refused == 1


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


async def test_a_daily_capped_agent_resumes_at_local_midnight_and_a_manual_pause_stays(running, slack):
    evening = days_ahead(3, 23, 50, zone=NY)
    midnight = days_ahead(4, 0, 0, 30, zone=NY)
    clock = FakeClock(evening)
    run = await running(clock, "timezone: America/New_York\nagents:\n  nightly: {daily_usd: 1}\n"
                               "  held: {daily_usd: 1}\n")
    budget = run.budget
    await aspend(budget, "nightly", "1.00")
    await budget.pause("held", reason="investigating")
    posted = await run.due()
    [paused] = [t for t in posted if "*nightly* is paused" in t]
    assert f"Resumes by itself at {midnight:%Y-%m-%d} 00:00 America/New_York" in paused
    assert await run.due() == []  # before midnight nothing lifts

    clock.set(midnight)
    [resumed] = await run.due()
    assert "*nightly* is running again" in resumed and "daily window rolled over" in resumed
    assert not (await budget.status("nightly")).paused
    await aspend(budget, "nightly", "0.10")
    clock.advance(hours=1)
    assert await run.due() == []  # the manual pause does not lift with the window
    st = await budget.status("held")
    assert st.paused and st.pause_kind == "manual"
    assert slack.texts("*held* is running again") == [] and slack.texts("*nightly* is running again") == [resumed]


async def test_the_digest_is_sent_at_its_configured_time_and_lists_top_spenders(running, slack):
    first_day = days_ahead(3, 12, zone=NY)
    day = lambda n: (first_day.date() + timedelta(days=n)).isoformat()  # noqa: E731
    clock = FakeClock(first_day)
    run = await running(clock, 'timezone: America/New_York\ndigest: {at: "09:00"}\n'
                               "defaults: {daily_usd: 100}\n")
    # Started at noon, the daemon caught up that day's digest (of the day before) at its start.
    await run.deliver()
    [caught_up] = slack.texts()
    assert f"Spend digest for {day(-1)}" in caught_up
    for agent, usd in [("small", "1.00"), ("big", "7.00"), ("middle", "3.00")]:
        await aspend(run.budget, agent, usd)
    clock.set(days_ahead(4, 12, zone=NY))
    for agent, usd in [("small", "2.00"), ("big", "20.00"), ("middle", "4.00")]:
        await aspend(run.budget, agent, usd)

    clock.set(days_ahead(5, 8, 59, zone=NY))
    assert await run.due() == []  # not before 09:00 local
    clock.set(days_ahead(5, 9, 0, 5, zone=NY))
    [digest] = await run.due()
    assert f"Spend digest for {day(1)}" in digest
    assert "$26.00 in total" in digest and f"+136% on {day(0)}" in digest
    assert digest.index("*big* $20.00") < digest.index("*middle* $4.00") < digest.index("*small* $2.00")
    clock.set(days_ahead(5, 18, zone=NY))
    assert await run.due() == []  # once a day
    assert slack.texts("Spend digest") == [caught_up, digest]


async def test_a_5x_hourly_spike_raises_one_anomaly_and_steady_traffic_none(running, slack):
    start = days_ahead(1, 0, 30)
    clock = FakeClock(start)
    run = await running(clock, "defaults: {daily_usd: 1000, monthly_usd: 100000}\n"
                               "anomaly: {factor: 3, floor_usd: 2}\n")
    for hour in range(7 * 24):  # a week of $1 an hour, checked once a day
        clock.set(start + timedelta(hours=hour))
        await aspend(run.budget, "steady", "1.00")
        await aspend(run.budget, "spiky", "1.00")
        if hour % 24 == 23:
            assert await run.due() == []
    clock.set(start + timedelta(hours=7 * 24))
    await aspend(run.budget, "steady", "1.00")
    for _ in range(5):
        await aspend(run.budget, "spiky", "1.00")  # 5x its hourly average
    [notice] = await run.due()
    assert "*spiky* spent $5.00 in the last hour" in notice
    assert "5.0x its 7-day hourly average of $1.00" in notice
    clock.advance(minutes=20)  # the same hour, checked again
    assert await run.due() == []
    assert slack.texts() == [notice]


async def tspend(budget: AsyncBudget, agent: str, usd: str, **tags: str) -> None:
    async with budget.guard(agent, estimate_usd=usd, tags=tags) as call:
        call.record_usd(usd)


@pytest.mark.parametrize("store", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def test_a_feature_spiking_5x_its_hourly_average_raises_one_anomaly_and_steady_ones_none(
        running, slack, store, request, tmp_path):
    url = (f"{request.getfixturevalue('redis_server').url}?prefix=t{uuid.uuid4().hex[:8]}" if store == "redis"
           else None)
    start = days_ahead(1, 0, 30)
    clock = FakeClock(start)
    # One agent runs every feature: its own spend ($3 an hour, under the
    # floor; then $7, under 3x) never fires, nor do the customers ($3 an
    # hour each, every other hour), so only the spiking feature's check can.
    run = await running(clock, "defaults: {daily_usd: 1000, monthly_usd: 100000}\n"
                               "anomaly: {factor: 3, floor_usd: 3.5, tags: [feature, customer]}\n", store_url=url)
    for hour in range(7 * 24):  # a week of $1 an hour per feature, checked once a day
        clock.set(start + timedelta(hours=hour))
        for feature in ("chat", "search", "digest"):
            await tspend(run.budget, "app", "1.00", feature=feature, customer="acme" if hour % 2 else "globex")
        if hour % 24 == 23:
            assert await run.due() == []
    clock.set(start + timedelta(hours=7 * 24))
    await tspend(run.budget, "app", "1.00", feature="chat")
    await tspend(run.budget, "app", "1.00", feature="search")
    for _ in range(5):
        await tspend(run.budget, "app", "1.00", feature="digest")  # 5x its hourly average
    hour = clock.now.strftime("%Y-%m-%d %H")
    [notice] = await run.due()
    assert f"Calls tagged feature=*digest* spent $5.00 in the hour from {hour}:00 UTC" in notice
    assert "5.0x their 7-day hourly average of $1.00" in notice
    assert "budgetctl report --by feature" in notice
    clock.advance(minutes=20)  # the same hour, checked again
    assert await run.due() == []
    # A second replica's check of the same hour writes nothing either (the
    # notice's key is the tag, its value and the hour).
    assert await run.daemon.checks.tag_anomalies() == 0
    assert slack.texts() == [notice]


async def test_two_replicas_on_redis_deliver_each_notice_once(running, redis_server, slack):
    url = f"{redis_server.url}?prefix=t{uuid.uuid4().hex[:8]}"
    body = "warn_at: [0.5]\nagents:\n  shared: {daily_usd: 1.00}\n"
    clock = FakeClock(datetime.now(timezone.utc))  # Redis keeps time by the real clock
    first, second = await running(clock, body, store_url=url), await running(clock, body, store_url=url)
    first.daemon.deliverer.owner, second.daemon.deliverer.owner = "host-1", "host-2"  # as on two hosts
    seen: list[str] = []

    async def watch_on_second():
        async for event in second.budget.watch("shared"):
            seen.append(event.kind)
            if event.kind == "paused":
                return

    watcher = asyncio.create_task(watch_on_second())
    deadline = time.monotonic() + 10
    while "shared" not in second.daemon.events._subscribers:  # the stream is open on the second replica
        assert time.monotonic() < deadline, "the watch did not subscribe"
        await asyncio.sleep(0.02)
    await aspend(first.budget, "shared", "0.60")
    await aspend(second.budget, "shared", "0.40")
    # The first replica's send is in flight when the second passes over the
    # outbox: the first holds both notices, the second leaves them alone.
    release = slack.hold_next()
    sending = asyncio.create_task(first.deliver())
    deadline = time.monotonic() + 10
    while slack.held == 0:
        assert time.monotonic() < deadline, "the first replica sent nothing"
        await asyncio.sleep(0.02)
    assert await second.deliver() == []
    release.set()
    assert len(await sending) == 2
    # Both at once, then each again: nothing more.
    await asyncio.gather(first.deliver(), second.deliver())
    assert await second.deliver() == [] and await first.deliver() == []
    assert len(slack.texts()) == 2, slack.texts()
    assert len(slack.texts("*shared* is paused")) == 1 and len(slack.texts("50% of the daily cap")) == 1
    # A pause made on one replica reaches the other's watchers.
    await asyncio.wait_for(watcher, 10)
    assert seen[-1] == "paused" and "warning" in seen
