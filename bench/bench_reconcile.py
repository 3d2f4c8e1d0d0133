"""Reconciling a busy day: how long a run takes against the floor of reading
the same day's ledger.

    .venv/bin/python bench/bench_reconcile.py      (run by `make bench`; a few minutes)

A daemon on SQLite holds a day of BENCH_RECONCILE_CALLS calls (default
100,000) across 5 models of two providers, and a loopback fake of OpenAI's
and Anthropic's admin APIs holds the same calls (what the providers saw).
Printed, best of 3 each:
- a run asked for (`budgetctl reconcile --run --day D`: both providers'
  reports read, the ledger's day read and compared, the result stored and
  answered);
- the floor: `budgetctl export` of the same day (every ledger row of the
  day read and streamed, nothing compared), and the ratio;
- whether the day agreed to the nanodollar (it must: the fake bills at
  budgetd's own prices);
- what a run costs the agents meanwhile: the p50 / p99 of a guarded call at
  1 thread while runs follow one another, and while none runs, in
  alternating phases of PHASE_SECONDS so drift hits both alike.
Not a test: it asserts nothing but prints what it measured.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from fake_admin_api import FakeAdminApi  # noqa: E402
from helpers import DaemonProcess, free_port  # noqa: E402

from bench import WORK, drive, for_each, guarded, pct  # noqa: E402
from budgetd_client import Budget  # noqa: E402

CALLS = int(os.environ.get("BENCH_RECONCILE_CALLS", "100000"))
MODELS = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("openai", "o3"),
          ("anthropic", "claude-sonnet-4-20250514"), ("anthropic", "claude-3-5-haiku-20241022")]
# Dollars per million tokens: budgetd's bundled prices of these models.
PRICES = {
    "gpt-4o": {"input": "2.5", "cached_input": "1.25", "output": "10"},
    "gpt-4o-mini": {"input": "0.15", "cached_input": "0.075", "output": "0.6"},
    "o3": {"input": "2", "cached_input": "0.5", "output": "8"},
    "claude-sonnet-4-20250514": {"input": "3", "cached_input": "0.3", "cache_write": "3.75", "output": "15"},
    "claude-3-5-haiku-20241022": {"input": "0.8", "cached_input": "0.08", "cache_write": "1", "output": "4"},
}
KEY = "sk-admin-bench"
PHASE_SECONDS = 8.0


def best(fn, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def interference(budget: Budget, day: str) -> None:
    """A guarded call's latency while nothing else runs, while reconcile runs
    follow one another, and while exports of the same day do (the floor: the
    same rows read, nothing compared), in alternating phases."""
    guarded_call = guarded(budget, "agent-0")
    background = {"none": None, "reconcile": lambda: budget.reconcile(day, day, run=True),
                  "export": lambda: sum(1 for _ in budget.export(day, day))}
    latencies: dict[str, list[float]] = {name: [] for name in background}
    runs = dict.fromkeys(background, 0)
    for _ in range(2):
        for name, work in background.items():
            stop = threading.Event()

            def repeat(work=work, name=name, stop=stop) -> None:
                while not stop.is_set():
                    work()
                    runs[name] += 1

            worker = threading.Thread(target=repeat) if work is not None else None
            if worker is not None:
                worker.start()
            latencies[name] += drive(guarded_call, 1, PHASE_SECONDS)[1]
            stop.set()
            if worker is not None:
                worker.join()
    quiet = latencies["none"]
    for name, values in latencies.items():
        extra = "" if name == "none" else (f" ({runs[name]} runs back to back); ratio to none: p50 "
                                           f"{pct(values, 0.5) / pct(quiet, 0.5):.2f}, p99 "
                                           f"{pct(values, 0.99) / pct(quiet, 0.99):.2f}")
        print(f"guarded call at 1 thread beside {name}: p50 {pct(values, 0.5):.2f} ms, "
              f"p99 {pct(values, 0.99):.2f} ms{extra}")


def main() -> None:
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}")
    # The fake provider runs in a process of its own, started once the calls
    # are seeded: in this one it would take the GIL from the load generator.
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    body = ("defaults: {daily_usd: 1000000}\nreconcile:\n"
            f'  openai: {{admin_key: "{KEY}", base_url: "{base_url}"}}\n'
            f'  anthropic: {{admin_key: "{KEY}", base_url: "{base_url}"}}\n'
            "  today_every_minutes: 0\n")
    workdir = WORK / f"reconcile{uuid.uuid4().hex[:6]}"
    workdir.mkdir()
    daemon = DaemonProcess(workdir, body).start(timeout=60)
    try:
        budget = Budget(daemon.address, timeout=600)
        calls_file = workdir / "billed.json"
        calls_file.write_text(json.dumps(seed(budget)))
        provider = subprocess.Popen([sys.executable, __file__, "--serve", str(calls_file), str(port)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert provider.stdout is not None and provider.stdout.readline().strip() == "ready"
        try:
            measure(budget)
        finally:
            provider.communicate("")  # its stdin closed: it stops
        budget.close()
    finally:
        daemon.stop()


def serve(calls_file: str, port: int) -> None:
    """The fake provider's process: the billed calls, until stdin closes."""
    with FakeAdminApi(port=port) as admin:
        admin.admin_keys = {KEY}
        admin.prices = {m: {k: Decimal(v) for k, v in p.items()} for m, p in PRICES.items()}
        for provider, at_ms, model, uncached, cached, output in json.loads(Path(calls_file).read_text()):
            admin.add_call(provider, at_ms, model, input=uncached, cached_input=cached, output=output)
        print("ready", flush=True)
        sys.stdin.read()


def seed(budget: Budget) -> list[list]:
    """CALLS calls through budgetd; what the providers billed for them."""
    billed: list[list] = []

    def call(i: int) -> None:
        provider, model = MODELS[i % len(MODELS)]
        tokens = {"input": 500 + i % 3000, "cached": (i * 7) % 400, "output": 50 + i % 977}
        with budget.guard(f"agent-{i % 100}") as c:
            c.record_usage(model, tokens["input"], tokens["output"], cached_input_tokens=tokens["cached"],
                           provider=provider)
        billed.append([provider, int(time.time() * 1000), model, tokens["input"] - tokens["cached"],
                       tokens["cached"], tokens["output"]])

    started = time.perf_counter()
    for_each(range(CALLS), call, threads=16)
    print(f"seeded {CALLS:,} calls across {len(MODELS)} models in {time.perf_counter() - started:.0f} s")
    return billed


def measure(budget: Budget) -> None:
    day = datetime.now(UTC).date().isoformat()
    found = []
    run = best(lambda: found.append(budget.reconcile(day, day, run=True)))
    floor = best(lambda: sum(1 for _ in budget.export(day, day)))
    result = found[-1]
    drift = sum((d.drift_usd for d in result.days), Decimal(0))
    rows = [r for d in result.days for r in d.rows]
    print(f"reconcile --run of a day of {CALLS:,} calls: {run:.2f} s; floor (export of the same day): "
          f"{floor:.2f} s; ratio {run / floor:.2f}")
    print(f"result: {len(rows)} model rows, classes {sorted({r.classification for r in rows})}, "
          f"difference ${drift} (requests {sum(r.ledger_requests for r in rows):,})")
    interference(budget, day)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        main()
