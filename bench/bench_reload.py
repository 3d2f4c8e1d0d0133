"""Guarded calls while budgetd reloads a config of a million agents.

    python bench/bench_reload.py [AGENTS]      (bench.py runs it last)

budgetd starts on AGENTS agents (BENCH_RELOAD_AGENTS, default 1,000,000);
one thread makes guarded calls through the client without pause. First a
floor: calls with no reload. Then the config is replaced (written aside and
renamed in, as a deploy does) with the same agents and one cap changed, and
the calls made until the reload is done are the reload window. Not a test:
it prints what it measured.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench import WORK, guarded, pct, rss_mb  # noqa: E402
from budgetd_client import Budget  # noqa: E402
from helpers import DaemonProcess  # noqa: E402

AGENTS = int(os.environ.get("BENCH_RELOAD_AGENTS", "1000000"))
FLOOR_SECONDS = 15.0  # longer than the 10 s between refreshes of the per-agent gauges


def body(n: int, first_cap: int) -> str:
    return ("agents:\n" + f"  agent-0: {{daily_usd: {first_cap}, monthly_usd: 10000}}\n"
            + "".join(f"  agent-{i}: {{daily_usd: 1000, monthly_usd: 10000}}\n" for i in range(1, n)))


def replace_config(d: DaemonProcess, text: str) -> None:
    header = textwrap.dedent(f"""\
        server:
          listen: "{d.address}"
        store:
          url: "{d.store_url}"
        """)
    aside = d.config_path.with_suffix(".new")
    aside.write_text(header + text)
    os.replace(aside, d.config_path)


class Caller:
    """One thread of guarded calls; (start, latency) of each."""

    def __init__(self, call) -> None:
        self.call, self.samples, self._stop = call, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            self.call()
            self.samples.append((started, time.perf_counter() - started))

    def between(self, start: float, end: float) -> list[float]:
        return [lat for t, lat in self.samples if start <= t < end]

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()


def run(n: int = AGENTS) -> None:
    workdir = WORK / f"reload{n}"
    workdir.mkdir()
    d = DaemonProcess(workdir, "agents: {}\n")
    replace_config(d, body(n, 1000))
    started = time.perf_counter()
    d.start(timeout=600)
    startup = time.perf_counter() - started
    budget = Budget(d.address)
    caller = Caller(guarded(budget, f"agent-{n // 2}"))
    caller.thread.start()
    time.sleep(1.0)  # warm
    floor_start = time.perf_counter()
    time.sleep(FLOOR_SECONDS)
    floor_end = time.perf_counter()
    text = body(n, 999)  # one cap changed
    generation = budget.config().generation
    written = time.perf_counter()
    replace_config(d, text)
    del text
    while budget.config().generation == generation:  # GetConfig: answered on the loop too
        time.sleep(0.05)
    swapped = time.perf_counter()
    time.sleep(1.0)  # the reconcile after the swap, and the calls around it
    done = time.perf_counter()
    caller.stop()
    floor, during = caller.between(floor_start, floor_end), caller.between(written, done)
    status = budget.status("agent-0")
    log = d.log()
    rss = rss_mb_safe(d)
    d.stop()
    print(f"\nreload of {n:,} agents (SQLite; one cap changed), guarded calls at 1 thread meanwhile")
    print(f"startup load {startup:.1f} s; reload (file replaced -> new generation answers) {swapped - written:.1f} s; "
          f"daemon RSS after {rss}; agent-0 daily cap now {status.daily.cap_usd}")
    print(f"{'':>14} {'calls':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    for name, lat in (("no reload", floor), ("during reload", during)):
        print(f"{name:>14} {len(lat):>6} {pct(lat, 0.5):>7.2f} {pct(lat, 0.99):>7.2f} {max(lat) * 1000:>7.1f}")
    print(f"{'ratio':>14} {'':>6} {pct(during, 0.5) / pct(floor, 0.5):>7.2f} {pct(during, 0.99) / pct(floor, 0.99):>7.2f} "
          f"{max(during) / max(floor):>7.2f}")
    reconciled = [json.loads(line)["msg"] for line in log.splitlines() if "config change: reconciled" in line]
    print(f"{reconciled[-1] if reconciled else 'no reconcile logged'}; rejected edits: "
          f"{log.count('config edit rejected')}")


def rss_mb_safe(d: DaemonProcess) -> str:
    try:
        return f"{rss_mb(d.proc.pid):.0f} MB"
    except OSError:
        return "?"


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else AGENTS)
