"""The one HTTP client the admin-API readers share: GET a JSON report, retry
what is worth retrying, follow its pages.

Failures come out as ``HttpFailure`` (what happened, nothing provider
specific); providers.py turns them into the message an operator reads. JSON
numbers are parsed as ``Decimal``: a provider's dollar amount never passes
through a float.
"""

from __future__ import annotations

import asyncio
import json
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


def _retry_after_seconds(value: str | None) -> float | None:
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


async def get_json(session: aiohttp.ClientSession, url: str, params: Params, headers: dict[str, str],
                   retry: RetryPolicy) -> Any:
    """GET ``url`` and return its JSON body, retrying 429s, 5xx, lost
    connections and timeouts under ``retry``; any other error status at once."""
    timeout = aiohttp.ClientTimeout(total=retry.timeout_seconds)
    attempts = max(1, retry.attempts)
    for attempt in range(1, attempts + 1):
        retry_after: float | None = None
        try:
            async with session.get(url, params=params, headers=headers, timeout=timeout) as response:
                # Bytes decoded leniently: a mis-encoded body is then "not JSON", not a UnicodeDecodeError.
                text = (await response.read()).decode("utf-8", errors="replace")
                status = response.status
                retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors too
            failure = HttpFailure("timeout", url, attempts=attempt, detail=str(exc) or type(exc).__name__)
        except aiohttp.ClientError as exc:
            failure = HttpFailure("connect", url, attempts=attempt, detail=str(exc) or type(exc).__name__)
        else:
            if 200 <= status < 300:
                try:
                    return parse_json(text)
                except ValueError as exc:
                    raise HttpFailure("not_json", url, status=status, attempts=attempt,
                                      detail=f"the body is not JSON ({exc})") from exc
            failure = HttpFailure("status", url, status=status, attempts=attempt,
                                  provider_message=_provider_message(text), detail=text[:200])
            if not _worth_retrying(status):
                raise failure
        if attempt == attempts:
            raise failure
        await asyncio.sleep(retry.delay(attempt, retry_after))
    raise AssertionError("unreachable")  # the loop returns or raises


async def get_pages(session: aiohttp.ClientSession, url: str, params: Params, headers: dict[str, str],
                    retry: RetryPolicy) -> list[Any]:
    """Every page's ``data`` items (time buckets), in order, following
    ``has_more`` / ``next_page`` (sent back as ``page``). A page that fails, or
    one that cannot be the whole answer, fails the read: never a partial list."""
    items: list[Any] = []
    next_page: str | None = None
    page_number = 0
    while True:
        page_number += 1
        page_params = params + ([("page", next_page)] if next_page is not None else [])
        try:
            body = await get_json(session, url, page_params, headers, retry)
        except HttpFailure as failure:
            failure.page = page_number
            raise
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise HttpFailure("truncated", url, attempts=1, page=page_number, detail="the page has no data list")
        items.extend(body["data"])
        if not body.get("has_more"):
            return items
        next_page = body.get("next_page")
        if not isinstance(next_page, str) or not next_page:
            raise HttpFailure("truncated", url, page=page_number, detail="has_more without next_page")
