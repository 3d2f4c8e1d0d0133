"""The README's ASGI example ("Turning a refusal into HTTP 429") does what
the README says: answered 200 while the customer's cap has room, then 429
with the refusal's scope, window, remaining USD and reset time, and a
Retry-After until then. The block is taken from the README as written and
run against AsyncFakeBudget, its app called with hand-built ASGI messages
(no server, no socket), so the README cannot drift from what is tested."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

from helpers import ROOT

from budgetd_client import AsyncBudget
from budgetd_client.testing import AsyncFakeBudget

HEADING = "### Turning a refusal into HTTP 429"


def readme_example() -> str:
    """The first ```python block under HEADING, before the next heading."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(HEADING)
    body, inside = [], False
    for line in lines[start + 1:]:
        if not inside and line.startswith("#"):
            break
        if not inside and line.strip() == "```python":
            inside = True
        elif inside and line.strip() == "```":
            return "\n".join(body) + "\n"
        elif inside:
            body.append(line)
    raise AssertionError(f"README.md: no ```python block under {HEADING!r}")


async def load_app(fake: AsyncFakeBudget):
    namespace: dict = {"__name__": "readme_asgi_example"}
    exec(compile(readme_example(), "README.md (ASGI example)", "exec"), namespace)
    # The example builds a real client at import; it never connected, and
    # the app reads the module-level `budget` on every request.
    assert isinstance(namespace["budget"], AsyncBudget)
    await namespace["budget"].close()
    namespace["budget"] = fake
    return namespace["app"]


async def request(app, customer: str) -> tuple[int, dict[bytes, bytes], dict]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/chat", "raw_path": b"/chat", "query_string": b"",
             "headers": [(b"host", b"example.test"), (b"x-customer", customer.encode())]}
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"], sent
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"] == b"application/json"
    return sent[0]["status"], headers, json.loads(sent[1]["body"])


def next_month_utc(now: datetime) -> datetime:
    return datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)


def assert_retry_after(headers: dict[bytes, bytes], resets_at: datetime, before: datetime, after: datetime):
    """Whole seconds from the moment of the answer to resets_at, rounded up."""
    retry_after = int(headers[b"retry-after"])
    assert math.ceil((resets_at - after).total_seconds()) <= retry_after
    assert retry_after <= math.ceil((resets_at - before).total_seconds())


async def test_a_customer_is_answered_200_until_its_monthly_cap_is_spent_then_429():
    # Each call holds 0.05 and records 0.04: 0.04, 0.08, then 0.08 + 0.05 > 0.10.
    fake = AsyncFakeBudget({"assistant-acme": {"monthly_usd": "0.10"},
                            "assistant-globex": {"monthly_usd": "0.10"}})
    app = await load_app(fake)

    answers = []
    for _ in range(4):
        before = datetime.now(UTC)
        answers.append(await request(app, "acme"))
        after = datetime.now(UTC)
    assert [status for status, _, _ in answers] == [200, 200, 429, 429]
    assert answers[0][2] == {"answer": "..."} and b"retry-after" not in answers[0][1]

    status, headers, body = answers[3]
    resets_at = next_month_utc(before)
    assert body == {
        "error": "monthly AI quota exceeded",
        "scope": "agent:assistant-acme",
        "window": "monthly",
        "remaining_usd": "0.02",  # exact decimal text, not a float's
        "resets_at": resets_at.isoformat(),
    }
    assert isinstance(body["remaining_usd"], str)
    assert_retry_after(headers, resets_at, before, after)

    # A refusal charges nothing; another customer's quota is its own.
    assert str((await fake.status("assistant-acme")).monthly.spent_usd) == "0.08"
    status, _, body = await request(app, "globex")
    assert (status, body) == (200, {"answer": "..."})


async def test_a_cap_pause_answers_429_with_retry_after_until_it_resumes():
    fake = AsyncFakeBudget({"assistant-acme": {"monthly_usd": "0.10"}})
    app = await load_app(fake)
    # A call that cost more than held brings spend to the cap: budgetd pauses the agent.
    async with fake.guard("assistant-acme", estimate_usd="0.05") as call:
        call.record_usd("0.10")

    before = datetime.now(UTC)
    status, headers, body = await request(app, "acme")
    after = datetime.now(UTC)
    resets_at = next_month_utc(before)
    assert status == 429
    assert body == {
        "error": "monthly AI quota exceeded",
        "scope": "agent:assistant-acme",
        "window": "monthly",
        "remaining_usd": None,  # a pause names no amount
        "resets_at": resets_at.isoformat(),
    }
    assert_retry_after(headers, resets_at, before, after)


async def test_a_manual_pause_answers_429_without_retry_after():
    fake = AsyncFakeBudget({"assistant-acme": {"monthly_usd": "10"}})
    app = await load_app(fake)
    assert (await request(app, "acme"))[0] == 200
    await fake.pause("assistant-acme", reason="invoice overdue")

    status, headers, body = await request(app, "acme")
    assert status == 429
    assert b"retry-after" not in headers  # only an operator resumes it: no time to name
    assert body == {"error": "AI access paused", "scope": "agent:assistant-acme", "window": None,
                    "remaining_usd": None, "resets_at": None}
