"""How many calls a cap worth exactly 100 of them lets through `wrap()`.

    python bench/bench_headroom.py      (about 2 minutes; BENCH_HEADROOM_RUNS runs per cell, 3 by default)

A loopback OpenAI-shaped provider answers each chat call after 0.2 s with
1,000 prompt and 1,000 completion tokens of gpt-4o-mini; the prompt is
exactly 1,000 tokens by OpenAI's count, so what the provider reports is the
truth. An agent's daily cap is exactly 100 such calls. 300 calls are offered,
C at a time (threads for the sync client, asyncio tasks for the async one);
a refused call is not retried. A perfect guard lets exactly 100 through and
spends exactly the cap: fewer means calls refused while money remained
(concurrent holds filling the cap), more means overspend.

Every cell uses an agent id of its own, so no run sees another's spend, and
every row a provider of its own, so each counts only its row's requests. The
C = 1 cells of all rows run side by side (100 serial calls take over 20 s,
and serial calls cannot race one another whatever runs beside them); the
others run one at a time. Not a test: it asserts nothing about the guard but
prints what it measured.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import grpc
import openai

try:
    import httpx2 as httpx  # the HTTP library of openai 3
except ImportError:  # openai 2
    import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fake_provider import FakeProvider  # noqa: E402
from redis_servers import RedisServer  # noqa: E402
from token_counts import english_prompt  # noqa: E402

from bench import WORK, daemon  # noqa: E402
from budgetd.config import load_config_text  # noqa: E402
from budgetd.config.schema import NANOS_PER_USD  # noqa: E402
from budgetd.pricing import PriceTable  # noqa: E402
from budgetd_client import AgentPaused, AsyncBudget, Budget, BudgetExceeded, tokens  # noqa: E402
from budgetd_client.usage import Usage  # noqa: E402

RUNS = int(os.environ.get("BENCH_HEADROOM_RUNS", "3"))
MODEL = "gpt-4o-mini"
INPUT_TOKENS = OUTPUT_TOKENS = 1_000
CAP_CALLS = 100
OFFERED = 300
CONCURRENCY = (1, 20, 100)
DELAY_S = 0.2
REFUSED = (BudgetExceeded, AgentPaused)
# The SDK's connection pool must not be what limits concurrency: at C = 100
# a smaller pool would queue calls and the guard would never see them overlap.
LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=200)

PROMPT = english_prompt(INPUT_TOKENS)  # exactly 1,000 tokens by OpenAI's count (it asserts so)
MESSAGES = [{"role": "user", "content": PROMPT}]

# One call's exact cost, priced by budgetd's own bundled table (no overrides),
# in nanodollars; the cap is exactly CAP_CALLS of them, in USD as a Decimal.
PRICES = PriceTable(load_config_text("agents: {}\n"))
CALL_NANOS = PRICES.price(Usage(model=MODEL, input_tokens=INPUT_TOKENS, output_tokens=OUTPUT_TOKENS)).nanos
CALL_USD = Decimal(CALL_NANOS) / NANOS_PER_USD
CAP_NANOS = CAP_CALLS * CALL_NANOS
CAP_USD = Decimal(CAP_NANOS) / NANOS_PER_USD
# A pattern: every fresh agent id "capped-..." gets a cap of its own.
BODY = f'defaults: {{daily_usd: 1000000}}\nagents:\n  "capped-*": {{daily_usd: {CAP_USD}}}\n'


@dataclass
class Outcome:
    provider: int | None  # requests the provider received (None: no provider)
    returned: int
    refused: int
    errors: Counter  # anything else, by exception type: should be empty
    spent: Decimal
    reserved: Decimal
    seconds: float


def fresh_agent() -> str:
    return f"capped-{uuid.uuid4().hex[:12]}"


def chat_kwargs() -> dict:
    return {"model": MODEL, "messages": MESSAGES, "max_tokens": OUTPUT_TOKENS}


def classify(results: list[BaseException | None]) -> tuple[int, int, Counter]:
    errors = Counter(type(r).__name__ for r in results if r is not None and not isinstance(r, REFUSED))
    return (sum(r is None for r in results), sum(isinstance(r, REFUSED) for r in results), errors)


def offer_in_threads(one, c: int) -> tuple[list[BaseException | None], float]:
    """``one(i)`` for each of the OFFERED calls, ``c`` threads at a time: the
    results and the seconds it took."""
    started = time.perf_counter()
    with ThreadPoolExecutor(c) as pool:
        results = list(pool.map(one, range(OFFERED)))
    return results, time.perf_counter() - started


def run_sync(provider: FakeProvider, address: str, c: int) -> Outcome:
    agent, before = fresh_agent(), len(provider.requests)
    budget = Budget(address)
    raw = openai.OpenAI(api_key="test-key", base_url=provider.base_url, max_retries=0,
                        http_client=openai.DefaultHttpxClient(limits=LIMITS))
    client = budget.wrap(raw, agent_id=agent)

    def one(_: int) -> BaseException | None:
        try:
            client.chat.completions.create(**chat_kwargs())
        except Exception as err:  # counted below, by kind
            return err
        return None

    results, seconds = offer_in_threads(one, c)
    st = budget.status(agent).daily
    raw.close()
    budget.close()
    return Outcome(len(provider.requests) - before, *classify(results), st.spent_usd, st.reserved_usd, seconds)


async def _run_async(provider: FakeProvider, addresses: list[str], c: int) -> Outcome:
    """Worker i calls through the daemon at addresses[i % len(addresses)]."""
    agent, before = fresh_agent(), len(provider.requests)
    budgets = [AsyncBudget(a) for a in addresses]
    raws = [openai.AsyncOpenAI(api_key="test-key", base_url=provider.base_url, max_retries=0,
                               http_client=openai.DefaultAsyncHttpxClient(limits=LIMITS)) for _ in addresses]
    clients = [b.wrap(r, agent_id=agent) for b, r in zip(budgets, raws, strict=True)]
    gate = asyncio.Semaphore(c)

    async def one(i: int) -> BaseException | None:
        async with gate:
            try:
                await clients[i % len(clients)].chat.completions.create(**chat_kwargs())
            except Exception as err:  # counted below, by kind
                return err
            return None

    started = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(OFFERED)))
    seconds = time.perf_counter() - started
    st = (await budgets[0].status(agent)).daily
    for r in raws:
        await r.close()
    for b in budgets:
        await b.close()
    return Outcome(len(provider.requests) - before, *classify(results), st.spent_usd, st.reserved_usd, seconds)


def run_async(provider: FakeProvider, addresses: list[str], c: int) -> Outcome:
    return asyncio.run(_run_async(provider, addresses, c))


def run_guard(address: str, c: int) -> Outcome:
    """The reference: a guard holding the exact cost, the call a 0.2 s sleep."""
    agent = fresh_agent()
    budget = Budget(address)

    def one(_: int) -> BaseException | None:
        try:
            with budget.guard(agent, estimate_usd=CALL_USD) as call:
                time.sleep(DELAY_S)
                call.record_usd(CALL_USD)
        except Exception as err:  # counted below, by kind
            return err
        return None

    results, seconds = offer_in_threads(one, c)
    st = budget.status(agent).daily
    budget.close()
    return Outcome(None, *classify(results), st.spent_usd, st.reserved_usd, seconds)


def side_by_side(cells: dict) -> list[tuple[str, Outcome]]:
    """Run the cells at once, each in a thread of its own."""
    results: dict[str, Outcome | BaseException] = {}

    def run(name: str, cell) -> None:
        try:
            results[name] = cell()
        except BaseException as err:  # re-raised below, in the caller's thread
            results[name] = err

    threads = [threading.Thread(target=run, args=item) for item in cells.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for result in results.values():
        if isinstance(result, BaseException):
            raise result
    return [(name, results[name]) for name in cells]  # type: ignore[misc]


def spread(values: list, fmt=str) -> str:
    """The median, and the range when the runs differ: "62 [60-64]"."""
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    return fmt(med) if lo == hi else f"{fmt(med)} [{fmt(lo)}-{fmt(hi)}]"


def pct_of_cap(spent: Decimal) -> float:
    return float(spent / CAP_USD * 100)


def print_row(name: str, c: int, outcomes: list[Outcome]) -> None:
    provider = spread([o.provider for o in outcomes]) if outcomes[0].provider is not None else "-"
    worst = max(o.spent for o in outcomes) - CAP_USD
    over = "none" if worst <= 0 else f"${worst} (+{float(worst / CAP_USD * 100):.1f}%)"
    errors = sum((o.errors for o in outcomes), Counter())
    notes = []
    if errors:
        notes.append("errors: " + ", ".join(f"{k} x{v}" for k, v in errors.items()))
    if any(o.reserved for o in outcomes):
        notes.append(f"left reserved: ${max(o.reserved for o in outcomes)}")
    print(f"{name:<44} {c:>4} {provider:>14} {spread([o.returned for o in outcomes]):>14} "
          f"{spread([o.refused for o in outcomes]):>14} "
          f"{spread([pct_of_cap(o.spent) for o in outcomes], lambda v: f'{v:.0f}%'):>14} {over:>16} "
          f"{spread([o.seconds for o in outcomes], lambda v: f'{v:.1f}'):>15}  {'; '.join(notes)}".rstrip())


def main() -> None:
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, grpcio {grpc.__version__}, "
          f"{platform.platform()}")
    tokens.preload(MODEL)  # the encoding's one-off load, outside every timed run
    from budgetd_client.estimate import estimate_chat

    held = estimate_chat(chat_kwargs())
    hold_nanos = PRICES.price(Usage(model=MODEL, input_tokens=held.input_tokens,
                                    output_tokens=held.output_tokens)).nanos
    print(f"cap ${CAP_USD}: {CAP_CALLS} calls of {CALL_NANOS:,} nanodollars ({MODEL}, {INPUT_TOKENS:,} input + "
          f"{OUTPUT_TOKENS:,} output tokens); {OFFERED} calls offered, the provider answering in {DELAY_S} s")
    print(f"wrap()'s hold for one call: {held.input_tokens:,} input + {held.output_tokens:,} output tokens = "
          f"{hold_nanos:,} nanodollars ({hold_nanos / CALL_NANOS:.2f}x the real cost)")

    def new_provider() -> FakeProvider:
        provider = FakeProvider().__enter__()
        provider.delay_s = DELAY_S
        provider.usage = {"input": INPUT_TOKENS, "cached": 0, "output": OUTPUT_TOKENS, "reasoning": 0}
        return provider

    # Whatever was started is stopped, even when a later start fails.
    providers: list[FakeProvider] = []
    daemons: list = []
    redis = RedisServer(WORK / "redis-headroom")
    try:
        providers.extend(new_provider() for _ in range(5))
        redis.start()
        daemons.append(sqlite_d := daemon(BODY, name="headroom-sqlite"))
        daemons.append(redis_d := daemon(BODY, f"{redis.url}?prefix=hr1", name="headroom-redis"))
        # Two replicas on one Redis share the key prefix, so they share the spend.
        replicas = [daemon(BODY, f"{redis.url}?prefix=hr2", name=f"headroom-replica{i}") for i in range(2)]
        daemons.extend(replicas)
        rows = {
            "Budget.wrap(OpenAI()), SQLite": lambda c: run_sync(providers[0], sqlite_d.address, c),
            "Budget.wrap(OpenAI()), Redis": lambda c: run_sync(providers[1], redis_d.address, c),
            "AsyncBudget.wrap(AsyncOpenAI()), SQLite": lambda c: run_async(providers[2], [sqlite_d.address], c),
            "AsyncBudget.wrap(AsyncOpenAI()), Redis": lambda c: run_async(providers[3], [redis_d.address], c),
            "async, two replicas on one Redis": lambda c: run_async(providers[4], [d.address for d in replicas], c),
            "guard, exact cost as estimate (SQLite)": lambda c: run_guard(sqlite_d.address, c),
        }
        outcomes: dict[tuple[str, int], list[Outcome]] = {}
        for _ in range(RUNS):  # rows alternate within a run, to spread drift over all of them
            for name, outcome in side_by_side({name: lambda cell=cell: cell(1) for name, cell in rows.items()}):
                outcomes.setdefault((name, 1), []).append(outcome)
            for c in CONCURRENCY[1:]:
                for name, cell in rows.items():
                    outcomes.setdefault((name, c), []).append(cell(c))
    finally:
        for d in daemons:
            d.stop()
        redis.stop()
        for provider in providers:
            provider.__exit__(None, None, None)
        shutil.rmtree(WORK, ignore_errors=True)

    print(f"\ncalls allowed of {OFFERED} offered against a cap worth exactly {CAP_CALLS} "
          f"(median [range] of {RUNS} runs)")
    print(f"{'':<44} {'C':>4} {'provider got':>14} {'returned':>14} {'refused':>14} {'spent / cap':>14} "
          f"{'worst over cap':>16} {'seconds':>15}")
    for name in rows:
        for c in CONCURRENCY:
            print_row(name, c, outcomes[(name, c)])
    print("(provider got: requests the provider received; returned: calls that returned a response;\n"
          " refused: BudgetExceeded or AgentPaused, not retried; spent / cap: the agent's daily spend after)")


if __name__ == "__main__":
    main()
