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
- and whether the day agreed to the nanodollar (it must: the fake bills at
  budgetd's own prices).
Not a test: it asserts nothing but prints what it measured.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench import WORK, for_each  # noqa: E402
from budgetd_client import Budget  # noqa: E402
from fake_admin_api import FakeAdminApi  # noqa: E402
from helpers import DaemonProcess  # noqa: E402

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


def best(fn, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}")
    with FakeAdminApi() as admin:
        admin.admin_keys = {KEY}
        admin.prices = {m: {k: Decimal(v) for k, v in p.items()} for m, p in PRICES.items()}
        body = ("defaults: {daily_usd: 1000000}\nreconcile:\n"
                f'  openai: {{admin_key: "{KEY}", base_url: "{admin.base_url}"}}\n'
                f'  anthropic: {{admin_key: "{KEY}", base_url: "{admin.base_url}"}}\n'
                "  today_every_minutes: 0\n")
        workdir = WORK / f"reconcile{uuid.uuid4().hex[:6]}"
        workdir.mkdir()
        daemon = DaemonProcess(workdir, body).start(timeout=60)
        try:
            measure(daemon, admin)
        finally:
            daemon.stop()


def measure(daemon: DaemonProcess, admin: FakeAdminApi) -> None:
    budget = Budget(daemon.address, timeout=600)
    day = datetime.now(UTC).date().isoformat()

    def call(i: int) -> None:
        provider, model = MODELS[i % len(MODELS)]
        tokens = {"input": 500 + i % 3000, "cached": (i * 7) % 400, "output": 50 + i % 977}
        with budget.guard(f"agent-{i % 100}") as c:
            c.record_usage(model, tokens["input"], tokens["output"], cached_input_tokens=tokens["cached"],
                           provider=provider)
        admin.add_call(provider, int(time.time() * 1000), model, input=tokens["input"] - tokens["cached"],
                       cached_input=tokens["cached"], output=tokens["output"])

    started = time.perf_counter()
    for_each(range(CALLS), call, threads=16)
    print(f"seeded {CALLS:,} calls across {len(MODELS)} models in {time.perf_counter() - started:.0f} s")

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
    budget.close()


if __name__ == "__main__":
    main()
