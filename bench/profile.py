"""Where the daemon's time goes under load: py-spy samples a running budgetd
while client threads make guarded calls, and this prints the share of the
samples by part of the daemon.

    make profile                          (SQLite, 8 threads, 10 s)
    PROFILE_STORE=redis make profile      (on a Redis of its own)

Samples are taken only while a thread holds the GIL (py-spy --gil): with
one interpreter lock, that time is what bounds the daemon's throughput.
Writes the raw stacks to bench/profile-<store>.txt (folded: one stack and
its count per line; flamegraph.pl and speedscope read it). py-spy needs
ptrace permission on the daemon (root, or CAP_SYS_PTRACE in a container).
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from pathlib import Path

import bench

SECONDS = int(os.environ.get("PROFILE_SECONDS", "10"))
THREADS = int(os.environ.get("PROFILE_THREADS", "8"))
STORE = os.environ.get("PROFILE_STORE", "sqlite")
HERE = Path(__file__).resolve().parent


def part_of(frames: list[str]) -> str:
    """The part of the daemon a sample is charged to: the innermost budgetd
    frame's module, or what runs without one (gRPC's completions, the loop)."""
    if any("_connection_worker_thread" in f for f in frames):
        return "SQLite connection thread (aiosqlite: long store operations, checkpoints)"
    for frame in reversed(frames):
        if "budgetd/" in frame and "budgetd/__main__" not in frame and "budgetd/cli/" not in frame:
            module = frame.rsplit("(", 1)[1].split(":", 1)[0]
            return module[module.index("budgetd/"):]
    return "gRPC and the event loop (no budgetd frame)"


def summarize(folded: Path) -> None:
    parts: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        total += n
        parts[part_of(frames)] += n
        leaves[frames[-1]] += n
    if not total:
        print("py-spy took no samples (is ptrace permitted?)")
        return
    print(f"\nshare of {total} GIL-holding samples, by part of the daemon (callees included)")
    for part, n in parts.most_common():
        print(f"  {n * 100 / total:5.1f}%  {part}")
    print("\nframes where the samples were taken (self time), top 15")
    for leaf, n in leaves.most_common(15):
        print(f"  {n * 100 / total:5.1f}%  {leaf}")


def main() -> None:
    py_spy = Path(sys.executable).parent / "py-spy"
    body = "defaults: {daily_usd: 1000000}\n"
    redis = None
    if STORE == "redis":
        redis = bench.RedisServer(bench.WORK / "redis", "--appendonly", "yes", "--appendfsync", "everysec").start()
        daemon = bench.daemon(body, f"{redis.url}?prefix=p", name="redis")
    else:
        daemon = bench.daemon(body, name="sqlite")
    call = bench.guarded(bench.Budget(daemon.address), "profiled")
    bench.drive(call, THREADS, 1)  # warm up
    folded = HERE / f"profile-{STORE}.txt"
    spy = subprocess.Popen([str(py_spy), "record", "--gil", "--format", "raw", "--rate", "200", "--duration",
                            str(SECONDS), "--pid", str(daemon.proc.pid), "--output", str(folded)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # py-spy attaches
    rate, _ = bench.drive(call, THREADS, SECONDS - 1)
    _, err = spy.communicate()
    daemon.stop()
    if redis is not None:
        redis.stop()
    if spy.returncode != 0:
        sys.exit(f"py-spy failed: {err.decode().strip()}")
    print(f"{STORE}, {THREADS} client threads: {rate:.0f} guarded calls/s while sampled (sampling slows it)")
    summarize(folded)
    print(f"\nraw stacks: {folded}")


if __name__ == "__main__":
    main()
