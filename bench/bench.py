"""budgetd against the bare gRPC floor, measured side by side in one run.

    make bench            (about 8 minutes; BENCH_SECONDS sets the length of one run,
                           BENCH_RELOAD_AGENTS the size of the reload run, bench_reload.py)

The floor is a grpc.aio server answering two unary calls per "guarded call"
with no logic; budgetd does a hold and a settle through the public client.
Both are driven by the same load generator in this process; runs alternate
floor / SQLite / Redis to cancel drift. Not a test: it asserts nothing but
prints what it measured.
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from budgetd_client import AgentPaused, Budget, BudgetExceeded  # noqa: E402
from helpers import DaemonProcess, free_port  # noqa: E402
from redis_servers import RedisServer  # noqa: E402

from budgetd.config import load_config_text  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
PAYLOAD = b"x" * 64
WORK = Path(tempfile.mkdtemp(prefix="budgetd-bench-"))


def drive(call, threads: int, seconds: float = SECONDS) -> tuple[float, list[float]]:
    """Run ``call`` in ``threads`` threads for ``seconds``: (calls/s, latencies)."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def worker(out: list[float]) -> None:
        start.wait()
        while (t := time.perf_counter()) < stop_at[0]:
            call()
            out.append(time.perf_counter() - t)

    pool = [threading.Thread(target=worker, args=(latencies[i],)) for i in range(threads)]
    for t in pool:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    start.wait()
    for t in pool:
        t.join()
    flat = [x for lat in latencies for x in lat]
    return len(flat) / seconds, flat


def for_each(items, do, threads: int = 16) -> None:
    """``do(item)`` for every item, spread over ``threads`` threads (to seed spend)."""
    items = iter(items)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                item = next(items, None)
            if item is None:
                return
            do(item)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def interleaved(calls: dict, seconds: float) -> dict[str, list[float]]:
    """One thread calling each target in turn, call by call: every target's
    latencies are taken at the same moments of a machine whose speed drifts.
    The order is shuffled every round: a call is slowed by what the previous
    target still does after answering, and in a fixed order each target
    would always follow the same one."""
    latencies: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls)
    shuffle = random.Random(8).shuffle  # the same sequence of orders in every run
    stop_at = time.perf_counter() + seconds
    while time.perf_counter() < stop_at:
        shuffle(order)
        for name in order:
            call = calls[name]
            started = time.perf_counter()
            call()
            latencies[name].append(time.perf_counter() - started)
    return latencies


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


class Floor:
    """The bare server; with ``redis_url``, one Redis round trip per call, or
    with ``mode="store"`` budgetd's Redis store itself (floor_server.py)."""

    def __init__(self, redis_url: str | None = None, mode: str = "") -> None:
        self.port = free_port()
        extra = [redis_url, mode] if redis_url else []
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "floor_server.py"), str(self.port), *extra],
                                     stdout=subprocess.PIPE)
        assert self.proc.stdout.readline().strip() == b"ready"
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.hold = self.channel.unary_unary("/floor.Floor/Hold")
        self.settle = self.channel.unary_unary("/floor.Floor/Settle")

    def call(self) -> None:
        self.hold(PAYLOAD, timeout=5)
        self.settle(PAYLOAD, timeout=5)

    def stop(self) -> None:
        self.channel.close()
        self.proc.terminate()
        self.proc.wait()


def guarded(budget: Budget, agent: str):
    def call() -> None:
        with budget.guard(agent, estimate_usd="0.000001") as c:
            c.record_usd("0.000001")

    return call


def daemon(body: str, store_url: str | None = None, name: str = "") -> DaemonProcess:
    workdir = WORK / f"{name}{uuid.uuid4().hex[:6]}"
    workdir.mkdir()
    return DaemonProcess(workdir, body, store_url=store_url).start()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def overspend(address: str) -> float:
    budget = Budget(address)
    barrier = threading.Barrier(64)

    def worker() -> None:
        barrier.wait()
        while True:
            try:
                with budget.guard("capped", estimate_usd="0.01") as c:
                    c.record_usd("0.01")
            except (BudgetExceeded, AgentPaused):
                return

    pool = [threading.Thread(target=worker) for _ in range(64)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    spent = budget.status("capped").daily.spent_usd
    return float((spent - 1) / 1 * 100)


def agents_yaml(n: int) -> str:
    return "agents:\n" + "".join(f"  agent-{i}: {{daily_usd: 1000, monthly_usd: 10000}}\n" for i in range(n))


def main() -> None:
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, grpcio {grpc.__version__}, "
          f"{platform.platform()}")
    body = "defaults: {daily_usd: 1000000}\nagents:\n  capped: {daily_usd: 1.00}\n"
    redis = RedisServer(WORK / "redis", "--appendonly", "yes", "--appendfsync", "everysec").start()
    floor = Floor()
    sqlite_d = daemon(body, name="sqlite")
    redis_d = daemon(body, f"{redis.url}?prefix=b", name="redis")
    targets = {"floor": floor.call, "sqlite": guarded(Budget(sqlite_d.address), "bench"),
               "redis": guarded(Budget(redis_d.address), "bench")}
    for call in targets.values():  # warm up connections and caches
        drive(call, 4, 0.5)

    rates: dict[tuple[str, int], list[float]] = {}
    for threads in (1, 8, 32):
        for _ in range(2):  # alternate to cancel drift
            for name, call in targets.items():
                rates.setdefault((name, threads), []).append(drive(call, threads)[0])
    # Diagnostics beside them (not part of the ratios above): the floor plus
    # one Redis round trip per call, the least any store on that Redis adds;
    # and the floor plus budgetd's Redis store called directly, what the
    # store alone adds before any validation, protobuf or client.
    redis_floor, store_floor = Floor(redis.url), Floor(redis.url, mode="store")
    one_thread = interleaved({**targets, "floor+redis": redis_floor.call, "floor+store": store_floor.call},
                             3 * SECONDS)
    redis_floor.stop()
    store_floor.stop()

    print("\nguarded calls per second (hold + settle), and the ratio to the floor in this run")
    print(f"{'threads':>8} {'floor':>9} {'sqlite':>9} {'ratio':>6} {'redis':>9} {'ratio':>6}")
    for threads in (1, 8, 32):
        f, s, r = (statistics.mean(rates[(n, threads)]) for n in ("floor", "sqlite", "redis"))
        print(f"{threads:>8} {f:>9.0f} {s:>9.0f} {s / f:>6.2f} {r:>9.0f} {r / f:>6.2f}")

    print("\nlatency of one guarded call at 1 thread (ms; the targets called in turn)")
    print(f"{'':>11} {'p50':>7} {'p99':>7} {'p50 / floor p50':>16}")
    base = pct(one_thread["floor"], 0.5)
    for name, lat in one_thread.items():
        print(f"{name:>11} {pct(lat, 0.5):>7.3f} {pct(lat, 0.99):>7.3f} {pct(lat, 0.5) / base:>16.2f}")
    print(f"(floor+redis: the floor plus one Redis PING per call; redis p50 / its p50: "
          f"{pct(one_thread['redis'], 0.5) / pct(one_thread['floor+redis'], 0.5):.2f}\n"
          f" floor+store: the floor plus budgetd's Redis store, its hold and settle called directly)")

    print("\nconfigured agents (SQLite): config load (best of 3), daemon RSS, p50 / p99 of a guarded call at 1 thread")
    print(f"{'agents':>8} {'load s':>7} {'RSS MB':>7} {'p50 ms':>7} {'p99 ms':>7} {'p50 / p50 at 10':>16}")
    sizes = (10, 1000, 100_000)
    loads, sized = {}, {}
    for n in sizes:
        text = agents_yaml(n)
        loads[n] = min(timed(load_config_text, text) for _ in range(3))  # the best of 3: the least disturbed
        sized[n] = daemon(text, name=f"agents{n}")
    calls = {n: guarded(Budget(d.address), f"agent-{n // 2}") for n, d in sized.items()}
    for call in calls.values():
        drive(call, 1, 0.5)
    latencies = interleaved(calls, 3 * SECONDS)
    for n in sizes:
        lat = latencies[n]
        print(f"{n:>8} {loads[n]:>7.2f} {rss_mb(sized[n].proc.pid):>7.0f} {pct(lat, 0.5):>7.3f} {pct(lat, 0.99):>7.3f} "
              f"{pct(lat, 0.5) / pct(latencies[10], 0.5):>16.2f}")
        sized[n].stop()

    second = daemon(body, f"{redis.url}?prefix=b", name="redis2")
    replicas = {"a": guarded(Budget(redis_d.address), "bench"), "b": guarded(Budget(second.address), "bench")}
    results = {}
    threads = [threading.Thread(target=lambda k=k, call=call: results.__setitem__(k, drive(call, 4)[0]))
               for k, call in replicas.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    combined = sum(results.values())
    print(f"\ntwo replicas on one Redis, 4 threads each: {combined:.0f} guarded calls/s combined "
          f"(one replica at 8 threads: {statistics.mean(rates[('redis', 8)]):.0f})")

    print("\noverspend at 64 threads against a $1.00 cap at $0.01 a call")
    for name, d in (("sqlite", sqlite_d), ("redis", redis_d)):
        print(f"{name:>8}: {overspend(d.address):.1f}%")

    for d in (sqlite_d, redis_d, second):
        d.stop()
    floor.stop()
    redis.stop()

    import bench_reload  # last: it needs some 3 GB and a minute or two on its own

    bench_reload.run()


if __name__ == "__main__":
    main()
