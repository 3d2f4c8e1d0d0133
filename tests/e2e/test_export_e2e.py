"""The cost events end to end: calls through guard and wrap(OpenAI()) (the
real openai SDK against the loopback provider) reach the export file, and
`budgetctl export` (JSON lines and CSV), with every field, and their costs
add up to `budgetctl status` and `budgetctl report` to the nanodollar. The
file is reopened on SIGHUP and rotated past max_bytes without losing a line."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from budgetd_client import Budget

from fake_provider import FakeProvider
from helpers import script, wait_until

MESSAGES = [{"role": "user", "content": "Say hello."}]
FIELDS = {
    "schema_version", "request_id", "kind", "time", "time_ms", "held_at", "held_ms", "day", "agent_id", "groups",
    "tags", "model_requested", "model", "provider", "input_tokens", "cached_input_tokens", "cache_write_tokens",
    "output_tokens", "reasoning_tokens", "cost_nanos", "cost_usd", "cost_source", "price_version", "latency_ms",
    "error_code",
}


def config(path: Path, extra: str = "") -> str:
    return f"""
export:
  path: "{path}"
  {extra}
agents:
  bot: {{daily_usd: 100, estimate_usd: 0.002}}
groups:
  team: {{members: [bot], daily_usd: 500}}
"""


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def budgetctl(address: str, *args: str) -> str:
    done = subprocess.run([script("budgetctl"), "--address", address, *args], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def nanos(usd: str) -> int:
    amount = Decimal(usd) * 10**9
    assert amount == amount.to_integral_value()
    return int(amount)


@pytest.fixture
def provider():
    with FakeProvider() as p:
        yield p


def test_guard_and_wrap_calls_are_whole_cost_events_in_the_file_and_budgetctl_export(start_daemon, tmp_path,
                                                                                     provider):
    events_path = tmp_path / "events.jsonl"
    daemon = start_daemon(config(events_path))
    budget = Budget(daemon.address)
    try:
        client = budget.wrap(openai.OpenAI(api_key="k", base_url=provider.base_url, max_retries=0), agent_id="bot",
                             tags={"feature": "chat"})
        # 1. usage with cached and reasoning tokens; the provider names a dated model.
        provider.usage = {"input": 1200, "cached": 1000, "output": 300, "reasoning": 120}
        provider.served_model = "o4-mini-2025-04-16"
        provider.delay_s = 0.05
        client.chat.completions.create(model="o4-mini", messages=MESSAGES, max_tokens=400)
        # 2. a cost the caller gives.
        with budget.guard("bot", estimate_usd="0.05", tags={"customer": "acme"}) as call:
            call.record_usd("0.012345678")
        # 3. usage recorded by hand, with cache writes.
        with budget.guard("bot", estimate_usd="0.05") as call:
            call.record_usage("gpt-4o", 500, 50, cached_input_tokens=100, cache_write_tokens=200,
                              reasoning_tokens=20)
        # 4. nothing recorded: the hold (the agent's estimate) is settled.
        with budget.guard("bot"):
            pass
        # 5. the provider refuses: the hold is released and the call recorded with its error.
        provider.fail_with = 429
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=50)
        status = budget.status("bot")
    finally:
        budget.close()
    assert status.daily.reserved_usd == 0

    written = wait_until(lambda: len(got := lines(events_path)) == 5 and got, what="5 lines in the export file")
    assert all(set(e) == FIELDS and e["schema_version"] == 1 for e in written)
    wrapped, caller, by_hand, estimate, failed = written
    day = wrapped["day"]
    assert {e["day"] for e in written} == {day} and {e["agent_id"] for e in written} == {"bot"}
    assert all(e["groups"] == ["team"] for e in written)
    assert len({e["request_id"] for e in written}) == 5

    assert wrapped["kind"] == "settle" and wrapped["cost_source"] == "usage"
    assert (wrapped["model_requested"], wrapped["model"], wrapped["provider"]) == (
        "o4-mini", "o4-mini-2025-04-16", "openai")
    assert (wrapped["input_tokens"], wrapped["cached_input_tokens"], wrapped["cache_write_tokens"],
            wrapped["output_tokens"], wrapped["reasoning_tokens"]) == (1200, 1000, 0, 300, 120)
    # o4-mini: $1.10 input, $0.275 cached, $4.40 output per million (reasoning is output, counted once).
    assert (wrapped["cost_nanos"], wrapped["cost_usd"]) == (1_815_000, "0.001815000")
    assert wrapped["price_version"].startswith("genai-prices-")
    assert wrapped["tags"] == {"feature": "chat"} and wrapped["error_code"] == ""
    assert 50 <= wrapped["latency_ms"] < 10_000
    assert wrapped["time"].endswith("Z") and wrapped["time"][19] == "." and len(wrapped["time"]) == 24
    assert wrapped["held_ms"] <= wrapped["time_ms"] and wrapped["held_at"].endswith("Z")

    assert (caller["cost_source"], caller["cost_nanos"], caller["cost_usd"]) == ("caller", 12_345_678, "0.012345678")
    assert (caller["model"], caller["tags"], caller["latency_ms"] >= 0) == ("", {"customer": "acme"}, True)
    assert (by_hand["cost_source"], by_hand["model"], by_hand["cache_write_tokens"], by_hand["cached_input_tokens"],
            by_hand["reasoning_tokens"], by_hand["output_tokens"]) == ("usage", "gpt-4o", 200, 100, 20, 50)
    assert (estimate["cost_source"], estimate["cost_nanos"], estimate["model"]) == ("estimate", 2_000_000, "")
    assert (failed["kind"], failed["cost_nanos"], failed["cost_usd"], failed["error_code"]) == (
        "release", 0, "0.000000000", "RateLimitError:429")
    assert (failed["model_requested"], failed["cost_source"], failed["tags"]) == ("gpt-4o", "caller",
                                                                                  {"feature": "chat"})

    # budgetctl export: the same events, as JSON lines and as CSV.
    exported = [json.loads(line) for line in
                budgetctl(daemon.address, "export", "--since", day, "--until", day).splitlines()]
    assert exported == written
    rows = list(csv.DictReader(io.StringIO(budgetctl(daemon.address, "export", "--since", day, "--until", day,
                                                     "--format", "csv"))))
    assert len(rows) == 5 and set(rows[0]) == FIELDS
    for row, event in zip(rows, written, strict=True):
        for name in FIELDS:
            value = event[name]
            expected = (json.dumps(value, separators=(",", ":"), sort_keys=True) if name in ("groups", "tags")
                        else "" if value is None else str(value))
            assert row[name] == expected, name

    # The costs add up to the status's spend and the report's total, to the nanodollar.
    total = sum(e["cost_nanos"] for e in written)
    assert total == 1_815_000 + 12_345_678 + by_hand["cost_nanos"] + 2_000_000
    st = json.loads(budgetctl(daemon.address, "status", "bot", "--format", "json"))[0]
    assert nanos(st["daily"]["spent_usd"]) == total
    report = json.loads(budgetctl(daemon.address, "report", "--since", day, "--until", day, "--format", "json"))
    assert nanos(report["total_usd"]) == total


def _call(budget: Budget, n: int) -> None:
    with budget.guard("bot", estimate_usd="0.01", tags={"n": str(n)}) as call:
        call.record_usd("0.000001")


def test_sighup_reopens_the_file_and_size_rotation_keeps_every_line(start_daemon, tmp_path):
    events_path = tmp_path / "events.jsonl"
    rotated = Path(f"{events_path}.1")
    moved = tmp_path / "events.jsonl.moved"
    daemon = start_daemon(config(events_path, "max_bytes: 4096"))
    budget = Budget(daemon.address)
    made = 0
    try:
        # Past max_bytes the file is renamed to .1 and a new one is opened.
        while not rotated.exists():
            _call(budget, made)
            made += 1
            wait_until(lambda: len(lines(events_path)) + len(lines(rotated)) == made, what="the line")
            assert made < 50, "never rotated"
        for _ in range(2):
            _call(budget, made)
            made += 1
        wait_until(lambda: len(lines(events_path)) + len(lines(rotated)) == made, what="every line")
        assert rotated.stat().st_size <= 4096 and lines(events_path)
        before = [e["tags"]["n"] for e in lines(rotated) + lines(events_path)]
        assert before == [str(i) for i in range(made)]

        # A log rotator moves the file away, then sends SIGHUP: lines go on to the
        # moved file until the signal, and to a new file after it.
        kept = lines(rotated)  # shipped by now, say
        rotated.unlink()
        os.rename(events_path, moved)
        _call(budget, made)
        made += 1
        daemon.proc.send_signal(signal.SIGHUP)
        first_after = made
        while not events_path.exists():
            _call(budget, made)
            made += 1
            assert made < first_after + 50, "not reopened"
        wait_until(lambda: len(kept) + len(lines(moved)) + len(lines(events_path)) == made,
                   what="every line after SIGHUP")
    finally:
        budget.close()
    after = [e["tags"]["n"] for e in kept + lines(moved) + lines(events_path)]
    assert after == [str(i) for i in range(made)]  # none lost, none twice, in order
    assert not rotated.exists()  # the new file is far from max_bytes


def test_a_hold_that_expires_is_charged_and_written_by_the_sweeper(start_daemon, tmp_path):
    events_path = tmp_path / "events.jsonl"
    daemon = start_daemon("reservation_ttl_seconds: 1\n" + config(events_path))
    budget = Budget(daemon.address)
    try:
        guard = budget.guard("bot", tags={"feature": "lost"})
        call = guard.__enter__()  # the process "dies" inside the block: no settle ever comes
        (expired,) = wait_until(lambda: lines(events_path), timeout=20, what="the expiry's line")
        spent = budget.status("bot").daily.spent_usd
    finally:
        budget.close()
    assert (expired["kind"], expired["request_id"], expired["cost_source"]) == ("expiry", call.request_id, "estimate")
    assert (expired["cost_nanos"], expired["tags"], expired["groups"]) == (2_000_000, {"feature": "lost"}, ["team"])
    assert expired["held_ms"] < expired["time_ms"] and nanos(str(spent)) == 2_000_000


async def test_export_is_for_admin_tokens_and_refuses_an_empty_range(start_daemon, tmp_path):
    from budgetd_client import AsyncBudget, BudgetError

    from budgetd.auth import sha256_hex

    daemon = start_daemon(f"""
agents:
  bot: {{daily_usd: 10}}
auth:
  tokens:
    - {{name: ops, sha256: "{sha256_hex("admin-secret")}", role: admin}}
    - {{name: pod, sha256: "{sha256_hex("pod-secret")}", agents: ["bot"]}}
""")
    async with AsyncBudget(daemon.address, token="pod-secret") as pod, \
            AsyncBudget(daemon.address, token="admin-secret") as admin:
        async with pod.guard("bot", estimate_usd="0.5") as call:
            call.record_usd("0.25")
        with pytest.raises(BudgetError, match="PERMISSION_DENIED"):
            [e async for e in pod.export()]
        (event,) = [e async for e in admin.export()]  # the wire message: integer nanodollars
        assert (event.request_id, event.cost_nanos, event.cost_source) == (call.request_id, 250_000_000, "caller")
        assert event.HasField("latency_ms")
        with pytest.raises(ValueError, match="after until"):
            [e async for e in admin.export(since="2026-12-05", until="2026-12-01")]
    done = subprocess.run([script("budgetctl"), "--address", daemon.address, "--token", "admin-secret", "export",
                           "--since", "someday"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "not a date" in done.stderr and done.stdout == ""
