"""The dashboard at fleet scale, and what it costs the agents while open.

    .venv/bin/python bench/bench_dashboard.py      (run by `make bench`; a few minutes)

Prints, for a daemon on SQLite with 100,000 agents configured:
- the fleet API's first page (GET /api/v1/fleet, 50 rows): the first request
  after start (it builds the fleet's snapshot) and the p50 / p99 after, by
  id and sorted by today's spend, with 1,000 agents that spent and then with
  all 100,000 spent; beside them the floor, an HTTP round trip to the same
  server that reads nothing (GET /api/v1/session), and the ratio;
- the p50 / p99 of a guarded call at 1 thread with the dashboard closed and
  open and refreshing (an event stream open, the fleet page read every
  second by id and by spend, as a page left open does at ten times its
  pace), in alternating phases so drift hits both alike; the ratio of the
  p50s is the figure of merit (within 5%).
Not a test: it asserts nothing but prints what it measured.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request
import uuid

from bench import SECONDS, WORK, drive, for_each, guarded, pct
from budgetd_client import Budget
from helpers import DaemonProcess, free_port, wait_until

AGENTS = int(os.environ.get("BENCH_DASHBOARD_AGENTS", "100000"))
PHASES = 6  # closed, open, closed, open, ...


def agents_yaml(n: int) -> str:
    return "agents:\n" + "".join(f"  agent-{i:06d}: {{daily_usd: 1000, monthly_usd: 10000}}\n" for i in range(n))


def start(body: str, name: str) -> tuple[DaemonProcess, str]:
    workdir = WORK / f"{name}{uuid.uuid4().hex[:6]}"
    workdir.mkdir()
    port = free_port()
    daemon = DaemonProcess(workdir, body, server_extra=f'dashboard_listen: "127.0.0.1:{port}"').start(timeout=120)
    return daemon, f"http://127.0.0.1:{port}"


def get(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()
    return time.perf_counter() - started


def _answers(url: str) -> bool:
    try:
        get(url)
        return True
    except OSError:
        return False


def spend(address: str, agents: range, threads: int = 16) -> None:
    """One call for each agent: its counters exist after."""
    budget = Budget(address)

    def one(i: int) -> None:
        with budget.guard(f"agent-{i:06d}", estimate_usd="0.000001") as c:
            c.record_usd(f"0.{i % 1000 + 1:06d}")

    for_each(agents, one, threads)
    budget.close()


def pages(base: str, label: str) -> None:
    """``first``: once the fleet's list has aged past the 2 s it is kept; its
    read is done again then (in the background once it is slow), so this is
    what a page refreshed now and then gets. The very first read at this
    size (a fleet that just grew, or just started) is printed apart."""
    floor = [get(f"{base}/api/v1/session") for _ in range(50)]
    floor_p50 = pct(floor, 0.5)
    time.sleep(2.1)
    grown = get(f"{base}/api/v1/fleet") * 1000
    print(f"{label}: floor GET /api/v1/session p50 {floor_p50:.2f} ms; the first read of the list at this size "
          f"{grown:.1f} ms")
    print(f"{'first page of 50':>32} {'its 1st':>8} {'first':>8} {'p50':>8} {'p99':>8} {'p50 / floor':>12}")
    for name, query in [("by id", ""), ("by today's spend", "?sort=daily_spent"),
                        ("page 1000 by id", "?page=1000" if AGENTS >= 50_000 else "?page=2")]:
        url = f"{base}/api/v1/fleet{query}"
        own = get(url) * 1000  # this query's own first read (a sort reads every state once)
        time.sleep(2.1)  # past the list's age
        first = get(url) * 1000
        lat = [get(url) for _ in range(40)]
        print(f"{name:>32} {own:>8.1f} {first:>8.1f} {pct(lat, 0.5):>8.1f} {pct(lat, 0.99):>8.1f} "
              f"{pct(lat, 0.5) / floor_p50:>12.1f}")


class OpenPage:
    """What an open dashboard does to the daemon, ten times faster than the page."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._refresh, daemon=True),
                        threading.Thread(target=self._stream, daemon=True)]

    def __enter__(self) -> OpenPage:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.threads[0].join()

    def _refresh(self) -> None:
        while not self.stop.is_set():
            get(f"{self.base}/api/v1/fleet")
            get(f"{self.base}/api/v1/fleet?sort=daily_spent")
            self.stop.wait(1.0)

    def _stream(self) -> None:
        with urllib.request.urlopen(f"{self.base}/api/v1/events", timeout=60) as stream:
            while not self.stop.is_set():
                stream.readline()


def guarded_with_page(address: str, base: str) -> None:
    budget = Budget(address)
    call = guarded(budget, "agent-000001")
    drive(call, 1, 1.0)
    closed: list[float] = []
    opened: list[float] = []
    for phase in range(PHASES):
        if phase % 2:
            with OpenPage(base):
                time.sleep(0.5)  # the first refresh builds the snapshot: measured, not skipped, after it
                opened += drive(call, 1, SECONDS)[1]
        else:
            closed += drive(call, 1, SECONDS)[1]
    print("\none guarded call at 1 thread (ms), dashboard closed / open and refreshing, alternating phases")
    print(f"{'':>24} {'p50':>8} {'p99':>8} {'mean':>8} {'max':>8} {'calls':>8}")
    for name, lat in (("dashboard closed", closed), ("dashboard open", opened)):
        print(f"{name:>24} {pct(lat, 0.5):>8.3f} {pct(lat, 0.99):>8.3f} {sum(lat) / len(lat) * 1000:>8.3f} "
              f"{max(lat) * 1000:>8.1f} {len(lat):>8}")
    print(f"{'p50 open / closed':>24} {pct(opened, 0.5) / pct(closed, 0.5):>8.3f}")
    budget.close()


def main() -> None:
    print(f"machine: {os.cpu_count()} cores; {AGENTS:,} agents configured, SQLite")
    daemon, base = start(agents_yaml(AGENTS), "dash")
    try:
        spend(daemon.address, range(0, AGENTS, max(1, AGENTS // 1000)))
        pages(base, f"{AGENTS:,} configured, 1,000 spent today")
        guarded_with_page(daemon.address, base)
        spend(daemon.address, range(AGENTS), threads=32)
        pages(base, f"\n{AGENTS:,} configured, all {AGENTS:,} spent today")
        guarded_with_page(daemon.address, base)
        daemon.restart()
        wait_until(lambda: _answers(f"{base}/api/v1/session"), timeout=30, what="the dashboard after the restart")
        print(f"\nafter a restart, all {AGENTS:,} spent: the first page by id {get(f'{base}/api/v1/fleet') * 1000:.1f} ms,"
              f" by today's spend {get(f'{base}/api/v1/fleet?sort=daily_spent') * 1000:.1f} ms")
    finally:
        daemon.stop()


if __name__ == "__main__":
    main()
