"""Reports computed in the test, from the calls themselves: what a report
of them must say (spend, requests, average per request, cache-hit rate,
nearest-rank p95 of input tokens), independently of budgetd's code. The
store suite and the end-to-end report tests share them."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

CUSTOMERS = [f"cust-{i:02d}" for i in range(23)]
FEATURES = ["chat", "search", "digest", "summarize", "classify", "embed", "cron:nightly"]


@dataclass(frozen=True)
class Call:
    agent: str
    rid: str
    cost: int
    tags: dict
    usage: tuple[int, int] | None  # (input tokens, cached input tokens); None: recorded as an amount
    next_day: bool = False


def random_calls(n: int, seed: int) -> list[Call]:
    rng = random.Random(seed)
    calls = []
    for i in range(n):
        tags = {}
        if rng.random() > 0.05:
            tags["customer"] = rng.choice(CUSTOMERS)
        if rng.random() > 0.02:
            tags["feature"] = rng.choice(FEATURES)
        usage = None
        if rng.random() < 0.8:
            tokens = rng.choice([0, rng.randrange(1, 200), rng.randrange(200, 30_000), 128_000])
            usage = (tokens, rng.randrange(0, tokens + 1) if rng.random() < 0.6 else 0)
        calls.append(Call(rng.choice(["a2", "team-a", "team-b"]), f"r{i}", rng.randrange(1, 50_000_000), tags, usage,
                          next_day=rng.random() < 0.03))
    return calls


def p95_nearest_rank(values: list[int]) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(Fraction(95 * len(ordered), 100)) - 1]


def expected_report(calls: list[Call], key) -> list[dict]:
    """Per key: spend, requests, avg, cache-hit rate and p95, computed here
    from the calls themselves, biggest spend first."""
    rows: dict[str, dict] = {}
    for call in calls:
        row = rows.setdefault(key(call), {"cost": 0, "calls": 0, "input": 0, "cached": 0, "tokens": []})
        row["cost"] += call.cost
        row["calls"] += 1
        if call.usage is not None:
            row["input"] += call.usage[0]
            row["cached"] += call.usage[1]
            row["tokens"].append(call.usage[0])
    return [{"key": k, "cost": r["cost"], "calls": r["calls"],
             "avg": round(Fraction(r["cost"], r["calls"])),
             "rate": (Decimal(round(Fraction(r["cached"] * 10**6, r["input"]))) / 10**6) if r["input"] else None,
             "p95": p95_nearest_rank(r["tokens"]), "input": r["input"], "cached": r["cached"],
             "priced": len(r["tokens"])}
            for k, r in sorted(rows.items(), key=lambda item: (-item[1]["cost"], item[0]))]
