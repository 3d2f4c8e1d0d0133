"""The client rides through budgetd restarts: calls wait for the daemon within
their timeout instead of failing at once, a new Budget made right after a
restart works on its first call, nothing acknowledged is lost or counted
twice, and watch() reconnects by itself. Against a real budgetd, restarted
on the same port and SQLite file by SIGTERM (a drain) and by kill -9."""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import threading
import time
from decimal import Decimal

import pytest
from budgetd_client import AsyncBudget, Budget, BudgetUnavailable

from helpers import wait_until

D = Decimal
AMOUNT = D("0.000123")
SYNC_AGENTS = [f"sync-{i}" for i in range(3)]
ASYNC_AGENTS = [f"async-{i}" for i in range(2)]
# Holds are released, not charged, when they expire: spend is then exactly
# what was settled. None expires during the test anyway (ttl 600 s).
CONFIG = "timezone: UTC\nreservation_ttl_seconds: 600\non_reservation_expiry: release\nagents:\n" + "".join(
    f"  {a}: {{daily_usd: 100000, estimate_usd: 0.01}}\n" for a in SYNC_AGENTS + ASYNC_AGENTS + ["w"]
)
MAX_CALLS_PER_AGENT = 5_000  # a bound on the loops besides the restarts' time


class Tally:
    """What the agents saw: guards that exited cleanly, failures, the slowest call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ok: dict[str, int] = {}
        self.failures: list[str] = []
        self.slowest = 0.0
        self.waited = 0  # calls that took over 0.5 s: they rode through a restart

    def record(self, agent: str, seconds: float, error: BaseException | None) -> None:
        with self.lock:
            self.slowest = max(self.slowest, seconds)
            self.waited += seconds > 0.5
            if error is None:
                self.ok[agent] = self.ok.get(agent, 0) + 1
            else:
                self.failures.append(f"{agent}: {type(error).__name__}: {error} after {seconds:.2f}s")


def sync_agent(budget: Budget, agent: str, stop: threading.Event, tally: Tally) -> None:
    for _ in range(MAX_CALLS_PER_AGENT):
        if stop.is_set():
            return
        started = time.monotonic()
        try:
            with budget.guard(agent) as call:
                call.record_usd(AMOUNT)
            error = None
        except Exception as err:  # noqa: BLE001 - every failure is counted and reported
            error = err
        tally.record(agent, time.monotonic() - started, error)
        time.sleep(0.003)


def async_agents(address: str, stop: threading.Event, tally: Tally) -> None:
    async def one(budget: AsyncBudget, agent: str) -> None:
        for _ in range(MAX_CALLS_PER_AGENT):
            if stop.is_set():
                return
            started = time.monotonic()
            try:
                async with budget.guard(agent) as call:
                    call.record_usd(AMOUNT)
                error = None
            except Exception as err:  # noqa: BLE001
                error = err
            tally.record(agent, time.monotonic() - started, error)
            await asyncio.sleep(0.003)

    async def main() -> None:
        async with AsyncBudget(address, timeout=5) as budget:
            await asyncio.gather(*(one(budget, a) for a in ASYNC_AGENTS))

    asyncio.run(main())


@pytest.mark.serial  # it times each restart: a loaded machine makes a restart slower than the timeout
def test_agents_ride_through_ten_restarts_and_spend_is_exactly_what_was_acknowledged(start_daemon):
    daemon = start_daemon(CONFIG)
    budget = Budget(daemon.address, timeout=5)
    stop = threading.Event()
    tally = Tally()
    workers = [threading.Thread(target=sync_agent, args=(budget, a, stop, tally)) for a in SYNC_AGENTS]
    workers.append(threading.Thread(target=async_agents, args=(daemon.address, stop, tally)))
    for w in workers:
        w.start()

    downtimes, first_calls, waits_while_down = [], [], []
    rng = random.Random(7)
    try:
        for i in range(10):
            # Up long enough between restarts for a call to meet at most one
            # outage: a channel reconnects within its backoff (at most ~1.2 s) of
            # budgetd coming back, so a call spans outage + backoff < 5 s.
            time.sleep(1.5)
            went_down = time.monotonic()
            if i % 2 == 0:
                assert daemon.terminate() == 0  # a drain: settles land, new holds wait
            else:
                daemon.kill()
            # A Budget made while budgetd is down: its first call waits for it.
            during = Budget(daemon.address, timeout=5)
            waited: list = []
            t = threading.Thread(target=lambda b=during, out=waited: out.append(_timed(b.status, "sync-0")))
            t.start()
            time.sleep(rng.uniform(0.4, 1.6))
            daemon.start()
            downtimes.append(time.monotonic() - went_down)
            # A Budget made right after the restart: its first call works.
            fresh = Budget(daemon.address, timeout=5)
            first_calls.append(_timed(fresh.status, "sync-0"))
            fresh.close()
            t.join(10)
            waits_while_down.append(waited[0] if waited else ("no answer", None))
            during.close()
    finally:
        stop.set()
        for w in workers:
            w.join(30)

    kept = len(getattr(budget, "_kept", []))  # settles that missed their timeout and were kept (none should)
    budget.close()  # delivers anything kept, with the daemon up
    print(f"\ndown: {[round(d, 2) for d in downtimes]}; calls: {sum(tally.ok.values())} ok, "
          f"{len(tally.failures)} failed; {tally.waited} rode through (> 0.5 s), slowest {tally.slowest:.2f}s; "
          f"kept settles: {kept}; first call after a restart: {max((s for _, s in first_calls if s is not None), default=0):.3f}s at most; "
          f"a call made while down waited up to {max((s for _, s in waits_while_down if s is not None), default=0):.2f}s")

    assert max(downtimes) < 4.5, downtimes  # each restart is inside the 5 s timeout
    assert not tally.failures, tally.failures[:10]
    assert kept == 0, "a settle missed its timeout: the client waited less than the outage"
    assert all(seconds is not None for _, seconds in first_calls), first_calls
    assert all(seconds is not None for _, seconds in waits_while_down), waits_while_down
    assert tally.waited > 0, "no call was ever under way during a restart: the test did not test anything"
    for agent in SYNC_AGENTS + ASYNC_AGENTS:
        assert tally.ok.get(agent, 0) > 20, tally.ok
    check = Budget(daemon.address)
    for agent in SYNC_AGENTS + ASYNC_AGENTS:
        st = check.status(agent)
        # Every guard that exited cleanly counted exactly once, and nothing else.
        assert (agent, st.daily.spent_usd, st.daily.reserved_usd) == (agent, AMOUNT * tally.ok[agent], 0)
    check.close()


def _timed(fn, *args):
    started = time.monotonic()
    try:
        result = fn(*args)
    except BudgetUnavailable as err:
        return err, None
    return result, time.monotonic() - started


def next_event(events: queue.Queue, kind: str, timeout: float = 15.0):
    """The next event of ``kind`` (others before it are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        event = events.get(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(event, BaseException):
            raise event
        if event.kind == kind:
            return event


def test_watch_reconnects_across_restarts_and_gets_the_events_after_them(start_daemon, caplog):
    daemon = start_daemon(CONFIG)
    budget = Budget(daemon.address, timeout=5)
    events: queue.Queue = queue.Queue()
    caplog.set_level(logging.WARNING, logger="budgetd_client")

    def consume():
        try:
            for event in budget.watch("w"):
                events.put(event)
        except BaseException as err:  # noqa: BLE001 - handed to the test
            events.put(err)

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    time.sleep(0.5)  # the watch is open
    budget.pause("w", reason="before")
    assert next_event(events, "paused").reason == "before"
    budget.resume("w")
    next_event(events, "resumed")

    # SIGTERM: the drain ends the stream at once with UNAVAILABLE "draining".
    assert daemon.terminate() == 0
    wait_until(lambda: caplog.text.count("the watch of w was lost") == 1, what="the client to see the stream end")
    daemon.start()
    back = next_event(events, "reconnected")
    assert back.agent_id == "w" and back.status is not None and not back.status.paused
    assert "may have been missed" in back.reason
    budget.pause("w", reason="after the restart")
    assert next_event(events, "paused").reason == "after the restart"

    # kill -9 while paused; the event after the restart comes through too.
    daemon.kill()
    wait_until(lambda: caplog.text.count("the watch of w was lost") == 2, what="the client to see the stream end")
    daemon.start()
    back = next_event(events, "reconnected")
    assert back.status.paused and back.status.pause_reason == "after the restart"  # what the gap hid
    budget.resume("w")
    next_event(events, "resumed")
    assert events.empty()

    text = caplog.text
    assert text.count("the watch of w was lost") == 2 and "draining" in text
    assert text.count("the watch of w is back") == 2
    budget.close()  # ends the watch
    consumer.join(10)
    assert not consumer.is_alive()


async def test_async_watch_reconnects_after_kill_9(start_daemon):
    daemon = start_daemon(CONFIG)
    async with AsyncBudget(daemon.address, timeout=5) as budget:
        watch = budget.watch("w")
        first = asyncio.ensure_future(watch.__anext__())  # opens the stream
        await asyncio.sleep(0.5)
        await budget.pause("w", reason="one")
        assert (await asyncio.wait_for(first, 10)).kind == "paused"
        await asyncio.to_thread(daemon.kill)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(daemon.start)
        kinds = []
        async with asyncio.timeout(15):
            async for event in watch:
                kinds.append(event.kind)
                if event.kind == "reconnected":
                    assert event.status.paused and event.status.pause_reason == "one"
                    await budget.resume("w")
                elif event.kind == "resumed":
                    break
        await watch.aclose()
        assert kinds == ["reconnected", "resumed"]
