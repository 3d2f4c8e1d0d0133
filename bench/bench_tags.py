"""Tag budgets at scale: 100,000 customers, configured or seen, against 10.

    .venv/bin/python bench/bench_tags.py      (run by `make bench`; a few minutes)

Prints, for daemons on SQLite and on Redis:
- the config load of 10, 1,000 and 100,000 customers under tag_budgets
  (parse, validate, build the resolver; best of 3);
- the p50 / p99 of one guarded call at 1 thread carrying a budgeted customer,
  with 10 and with 100,000 customers configured, and on a daemon whose
  100,000 customers are not configured but seen (under defaults, each has
  spent, so its counters exist), the daemons called in turn (interleaved);
  the ratio to the 10-customer daemon is the figure of merit (within 10%);
- beside them, the same call with no budgeted tag: what checking a
  customer's windows in the hold adds.
Not a test: it asserts nothing but prints what it measured.
"""

from __future__ import annotations

import os
import uuid

from bench import SECONDS, WORK, daemon, drive, for_each, interleaved, pct, timed
from budgetd_client import Budget
from redis_servers import RedisServer

from budgetd.config import Resolver, load_config_text

SEEN = int(os.environ.get("BENCH_TAGS_SEEN", "100000"))
AGENTS = "defaults: {daily_usd: 1000000}\n"


def customers_yaml(n: int) -> str:
    values = "".join(f"      c-{i}: {{daily_usd: 1000, monthly_usd: 10000}}\n" for i in range(n))
    return f"{AGENTS}tag_budgets:\n  customer:\n    defaults: {{daily_usd: 1000}}\n    values:\n{values}"


def load(text: str) -> None:
    Resolver(load_config_text(text))


def tagged(budget: Budget, customer: str | None):
    tags = {"customer": customer} if customer else {"feature": "bench"}

    def call() -> None:
        with budget.guard("bench", estimate_usd="0.000001", tags=tags) as c:
            c.record_usd("0.000001")

    return call


def spend_for_many(address: str, customers: int, threads: int = 16) -> None:
    """One call for each of ``customers`` distinct customers: their counters exist after."""
    budget = Budget(address)

    def one(i: int) -> None:
        with budget.guard(f"seeder-{i % 64}", estimate_usd="0.000001", tags={"customer": f"seen-{i}"}) as c:
            c.record_usd("0.000001")

    for_each(range(customers), one, threads)
    budget.close()


def run(store: str, store_url) -> None:
    small, large = customers_yaml(10), customers_yaml(100_000)
    daemons = {"10 configured": daemon(small, store_url(), name=f"{store}10"),
               "100,000 configured": daemon(large, store_url(), name=f"{store}100k"),
               f"{SEEN:,} seen": daemon(customers_yaml(10), store_url(), name=f"{store}seen")}
    spend_for_many(daemons[f"{SEEN:,} seen"].address, SEEN)
    budgets = {name: Budget(d.address) for name, d in daemons.items()}
    calls = {"10 configured": tagged(budgets["10 configured"], "c-5"),
             "100,000 configured": tagged(budgets["100,000 configured"], "c-50000"),
             f"{SEEN:,} seen": tagged(budgets[f"{SEEN:,} seen"], f"seen-{SEEN // 2}"),
             "no budgeted tag": tagged(budgets["10 configured"], None)}
    for call in calls.values():
        drive(call, 1, 0.5)
    latencies = interleaved(calls, 3 * SECONDS)
    base = pct(latencies["10 configured"], 0.5)
    print(f"\n{store}: one guarded call carrying a budgeted customer, 1 thread (ms)")
    print(f"{'customers':>20} {'p50':>7} {'p99':>7} {'p50 / p50 at 10':>16}")
    for name, lat in latencies.items():
        print(f"{name:>20} {pct(lat, 0.5):>7.3f} {pct(lat, 0.99):>7.3f} {pct(lat, 0.5) / base:>16.2f}")
    for budget in budgets.values():
        budget.close()
    for d in daemons.values():
        d.stop()


def main() -> None:
    print("config load of customers under tag_budgets (best of 3)")
    for n in (10, 1000, 100_000):
        text = customers_yaml(n)
        print(f"{n:>8} customers: {min(timed(load, text) for _ in range(3)):.2f} s")
    run("sqlite", lambda: None)
    redis = RedisServer(WORK / "redis-tags", "--appendonly", "yes", "--appendfsync", "everysec").start()
    try:
        run("redis", lambda: f"{redis.url}?prefix=t{uuid.uuid4().hex[:6]}")
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
