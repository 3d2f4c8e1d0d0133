"""What the admin-API readers share: GET a JSON report, retry what is worth
retrying, follow its pages. The GET itself is an ``Attempt``: OpenAI's goes
through its official SDK, Anthropic's (whose SDK does not cover these
reports) through aiohttp (``aiohttp_attempt``).

Failures come out as ``HttpFailure`` (what happened, nothing provider
specific); providers.py turns them into the message an operator reads. JSON
numbers are parsed as ``Decimal``: a provider's dollar amount never passes
through a float.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp

Params = list[tuple[str, str]]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request: ``attempts`` in all (the first included),
    waiting ``base_seconds`` doubled each time (or the answer's Retry-After),
    never more than ``max_seconds``; each attempt gets ``timeout_seconds``."""

    attempts: int = 4
    base_seconds: float = 1.0
    max_seconds: float = 30.0
    timeout_seconds: float = 30

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        wait = retry_after if retry_after is not None else self.base_seconds * 2 ** (attempt - 1)
        return max(0.0, min(wait, self.max_seconds))


DEFAULT_RETRY = RetryPolicy()


class HttpFailure(Exception):
    """A report could not be read. ``kind``: "status" (an HTTP error status),
    "connect" (no connection), "timeout", "not_json" (a body that is not
    JSON), "truncated" (a page missing its data or its next page)."""

    def __init__(self, kind: str, url: str, *, status: int | None = None, attempts: int = 1,
                 provider_message: str | None = None, detail: str = "", page: int | None = None) -> None:
        super().__init__(f"{kind} {status or ''} {url}: {provider_message or detail}".strip())
        self.kind = kind
        self.url = url
        self.status = status
        self.attempts = attempts
        self.provider_message = provider_message
        self.detail = detail
        self.page = page


def parse_json(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def _worth_retrying(status: int) -> bool:
    # Rate limited, or the provider broken: asking again may work. A 4xx
    # (bad request, refused key, no such endpoint) would fail the same way.
    return status == 429 or status >= 500


def retry_after_seconds(value: str | None) -> float | None:
    # Only the seconds form: an HTTP date here is rare, and the backoff covers it.
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _provider_message(text: str) -> str | None:
    """The message in an error body, in both providers' shapes:
    ``{"error": {"message": ...}}`` (OpenAI; Anthropic adds ``"type": "error"``)."""
    try:
        body = parse_json(text)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return None


@dataclass(frozen=True)
class Answer:
    """One GET's answer: its status, its body as text, its Retry-After in seconds."""

    status: int
    text: str
    retry_after: float | None = None


# One GET of a report's page (``page``: the token of the page, None for the
# first); raises HttpFailure("connect" or "timeout") when nothing answered.
Attempt = Callable[[str | None], Awaitable[Answer]]


def aiohttp_attempt(session: aiohttp.ClientSession, url: str, params: Params, headers: dict[str, str],
                    retry: RetryPolicy) -> Attempt:
    """A plain GET of ``url`` on aiohttp (the readers of APIs no official SDK covers)."""
    timeout = aiohttp.ClientTimeout(total=retry.timeout_seconds)

    async def attempt(page: str | None) -> Answer:
        page_params = params + ([("page", page)] if page is not None else [])
        try:
            async with session.get(url, params=page_params, headers=headers, timeout=timeout) as response:
                # Bytes decoded leniently: a mis-encoded body is then "not JSON", not a UnicodeDecodeError.
                text = (await response.read()).decode("utf-8", errors="replace")
                return Answer(response.status, text, retry_after_seconds(response.headers.get("Retry-After")))
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors too
            raise HttpFailure("timeout", url, detail=str(exc) or type(exc).__name__) from exc
        except aiohttp.ClientError as exc:
            raise HttpFailure("connect", url, detail=str(exc) or type(exc).__name__) from exc

    return attempt


async def get_json(attempt: Attempt, url: str, page: str | None, retry: RetryPolicy) -> Any:
    """One page's JSON body, retrying 429s, 5xx, lost connections and
    timeouts under ``retry``; any other error status at once."""
    attempts = max(1, retry.attempts)
    for number in range(1, attempts + 1):
        retry_after: float | None = None
        try:
            answer = await attempt(page)
        except HttpFailure as lost:  # no answer (no connection, no time): worth asking again
            lost.attempts = number
            if number == attempts:
                raise
        else:
            if 200 <= answer.status < 300:
                try:
                    return parse_json(answer.text)
                except ValueError as exc:
                    raise HttpFailure("not_json", url, status=answer.status, attempts=number,
                                      detail=f"the body is not JSON ({exc})") from exc
            failure = HttpFailure("status", url, status=answer.status, attempts=number,
                                  provider_message=_provider_message(answer.text), detail=answer.text[:200])
            if not _worth_retrying(answer.status) or number == attempts:
                raise failure
            retry_after = answer.retry_after
        await asyncio.sleep(retry.delay(number, retry_after))
    raise AssertionError("unreachable")  # the loop returns or raises


async def get_pages(attempt: Attempt, url: str, retry: RetryPolicy) -> list[Any]:
    """Every page's ``data`` items (time buckets), in order, following
    ``has_more`` / ``next_page`` (sent back as ``page``). A page that fails, or
    one that cannot be the whole answer, fails the read: never a partial list."""
    items: list[Any] = []
    next_page: str | None = None
    seen: set[str] = set()
    page_number = 0
    while True:
        page_number += 1
        try:
            body = await get_json(attempt, url, next_page, retry)
        except HttpFailure as failure:
            failure.page = page_number
            raise
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise HttpFailure("truncated", url, attempts=1, page=page_number, detail="the page has no data list")
        items.extend(body["data"])
        if not body.get("has_more"):
            return items
        token = body.get("next_page")
        if not isinstance(token, str) or not token:
            raise HttpFailure("truncated", url, page=page_number, detail="has_more without next_page")
        if token in seen:  # a cursor that goes round would never end
            raise HttpFailure("truncated", url, page=page_number, detail=f"next_page {token!r} came before")
        seen.add(token)
        next_page = token
