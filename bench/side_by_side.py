"""This checkout's budgetd against another checkout's, measured in one run.

    git worktree add ../budgetd-before <commit> && make -C ../budgetd-before install
    .venv/bin/python bench/side_by_side.py ../budgetd-before [--seconds 9]

Separate `make bench` runs on one machine can differ by more than a change
does: the machine's speed drifts (the same client's CPU per call moved by
±15% between runs here). This starts the floor and both revisions' daemons
on SQLite and on one Redis (each under its own key prefix), warms them with
the throughput phase `make bench` runs, then calls them all in turn from one
thread, call by call in a shuffled order, so every target's latencies are
taken at the same moments. The other checkout's daemons run with its own
interpreter (OTHER/.venv/bin/python); the client is this checkout's.
Prints p50 / floor p50 per target. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import uuid
from pathlib import Path

import grpc
from bench import WORK, Floor, drive, guarded, interleaved, pct
from budgetd_client import Budget
from helpers import DaemonProcess
from redis_servers import RedisServer

BODY = "defaults: {daily_usd: 1000000}\n"


def start(python: str, store_url: str | None, name: str) -> DaemonProcess:
    workdir = WORK / f"{name}-{uuid.uuid4().hex[:6]}"
    workdir.mkdir()
    return DaemonProcess(workdir, BODY, store_url=store_url, python=python).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="the other checkout, with its own .venv")
    parser.add_argument("--seconds", type=float, default=9.0, help="length of the 1-thread phase")
    parser.add_argument("--other-label", default="other", help="its name in the table (e.g. before)")
    args = parser.parse_args()
    other_python = args.other.resolve() / ".venv" / "bin" / "python"
    if not other_python.exists():
        sys.exit(f"{other_python} is missing: run `make install` in {args.other}")

    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, grpcio {grpc.__version__}")
    redis = RedisServer(WORK / "redis", "--appendonly", "yes", "--appendfsync", "everysec").start()
    floor = Floor()
    this, other = sys.executable, str(other_python)
    label = args.other_label
    daemons = {
        f"sqlite-{label}": start(other, None, "sqlite-other"),
        "sqlite-this": start(this, None, "sqlite-this"),
        f"redis-{label}": start(other, f"{redis.url}?prefix=o", "redis-other"),
        "redis-this": start(this, f"{redis.url}?prefix=t", "redis-this"),
    }
    targets = {"floor": floor.call, **{name: guarded(Budget(d.address), "bench") for name, d in daemons.items()}}
    try:
        for call in targets.values():
            drive(call, 4, 0.5)
        for threads in (1, 8, 32):  # what `make bench` does before its 1-thread phase
            for _ in range(2):
                for call in targets.values():
                    drive(call, threads)
        latencies = interleaved(targets, args.seconds)
    finally:
        for d in daemons.values():
            d.stop()
        floor.stop()
        redis.stop()

    base = pct(latencies["floor"], 0.5)
    print(f"\n1 thread, the targets called in turn for {args.seconds:.0f} s")
    print(f"{'':>14} {'p50 ms':>7} {'p99 ms':>7} {'p50 / floor p50':>16}")
    for name, lat in latencies.items():
        print(f"{name:>14} {pct(lat, 0.5):>7.3f} {pct(lat, 0.99):>7.3f} {pct(lat, 0.5) / base:>16.3f}")


if __name__ == "__main__":
    main()
