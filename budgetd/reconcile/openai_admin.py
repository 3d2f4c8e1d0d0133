"""OpenAI's day, read from its admin API through the official SDK
(``client.admin.organization.usage``, authenticated with ``admin_api_key``):
the Costs report (dollars per line item) and the Usage reports (tokens and
requests per model) for completions and embeddings. The SDK's raw answers
are parsed here, so that dollar amounts become Decimals without passing
through the float its typed models hold; retries follow budgetd's
RetryPolicy (the SDK's own are off), as they do for Anthropic.

The costs come as line items named like ``"gpt-4o-2024-08-06, input"``,
``"gpt-4o-2024-08-06, cached input"``, ``"gpt-4o-2024-08-06, output"``;
lines that name no model (``"web search tool calls"``) are unattributed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import openai

from budgetd.config.schema import ReconcileProvider
from budgetd.reconcile.http import DEFAULT_RETRY, Answer, Attempt, HttpFailure, RetryPolicy, retry_after_seconds
from budgetd.reconcile.model import ProviderDay, Tokens
from budgetd.reconcile.providers import (
    DaySums,
    api_root,
    as_count,
    as_decimal,
    day_bounds,
    no_key_error,
    read_reports,
    shape_error,
)

DEFAULT_BASE_URL = "https://api.openai.com"
PROVIDER = "openai"

# The kind part of a line item (after the model and a comma) -> TOKEN_KINDS.
_LINE_ITEM_KINDS = {
    "input": "input",
    "cached input": "cached_input",
    "cache read": "cached_input",
    "cache write": "cache_write",
    "cache writes": "cache_write",
    "output": "output",
}
# Usage rows grouped by model should always name one; a row that does not is
# kept (its tokens still count) under this name rather than dropped.
UNKNOWN_MODEL = "(unknown model)"


def parse_line_item(line_item: str | None) -> tuple[str | None, str]:
    """(model, kind) of a cost line item; (None, "other") for a line naming no model.

    Seen shapes: ``"gpt-4o-2024-08-06, input"``, ``"priority | gpt-5, output"``
    (a service tier before the model), ``"gpt-audio-mini-2025-12-15 audio, input"``
    (a modality after it), ``"gpt-5, output, long context"``, ``"whisper-1, audio"``.
    """
    if not line_item:
        return None, "other"
    head, comma, rest = line_item.partition(",")
    if not comma:
        return None, "other"
    head = head.rsplit("|", 1)[-1].strip()
    words = head.split()
    if not words:
        return None, "other"
    # "cached input", "cached_input_tokens" (the SDK's example: "gpt-6.2-astra, input_tokens"): one kind.
    kind_text = rest.split(",", 1)[0].strip().lower().replace("_", " ").removesuffix(" tokens")
    return words[0], _LINE_ITEM_KINDS.get(kind_text, "other")


Query = dict[str, Any]  # the SDK method's keyword arguments


def _common_query(day: str) -> Query:
    start, end = day_bounds(day)
    return {"start_time": int(start.timestamp()), "end_time": int(end.timestamp()), "bucket_width": "1d"}


def _filtered(query: Query, settings: ReconcileProvider, group_by: list[str]) -> Query:
    """The projects' and keys' filters, each grouped by too (the rows of the
    other projects and keys of a model are summed back by DaySums)."""
    if settings.project_ids:
        group_by.append("project_id")
        query["project_ids"] = list(settings.project_ids)
    if settings.api_key_ids:
        group_by.append("api_key_id")
        query["api_key_ids"] = list(settings.api_key_ids)
    return {**query, "group_by": group_by}


def _usage_query(settings: ReconcileProvider, day: str) -> Query:
    return _filtered(_common_query(day), settings, ["model"])


def _cost_query(settings: ReconcileProvider, day: str) -> Query:
    return _filtered(_common_query(day), settings, ["line_item"])


def _sdk_attempt(read: Callable[..., Awaitable[Any]], url: str, query: Query) -> Attempt:
    """One GET of a report's page through the SDK, its answer raw (status, text)."""
    async def attempt(page: str | None) -> Answer:
        try:
            raw = await read(**query, **({"page": page} if page is not None else {}))
        except openai.APITimeoutError as exc:
            raise HttpFailure("timeout", url, detail=str(exc)) from exc
        except openai.APIConnectionError as exc:
            raise HttpFailure("connect", url, detail=str(exc.__cause__ or exc)) from exc
        except openai.APIStatusError as exc:
            response = exc.response
            return Answer(response.status_code, response.content.decode("utf-8", errors="replace"),
                          retry_after_seconds(response.headers.get("Retry-After")))
        response = raw.http_response
        return Answer(response.status_code, response.content.decode("utf-8", errors="replace"))

    return attempt


def _results_of_day(buckets: list[Any], day: str) -> list[dict[str, Any]]:
    """The results of the buckets inside the day (the same bucket may come on
    several pages; each page's part counts once)."""
    start, end = (int(t.timestamp()) for t in day_bounds(day))
    results: list[dict[str, Any]] = []
    for bucket in buckets:
        if start <= int(bucket["start_time"]) < end:
            results.extend(bucket["results"])
    return results


def _add_costs(sums: DaySums, results: list[dict[str, Any]]) -> None:
    for result in results:
        amount = result["amount"]
        currency = str(amount.get("currency") or "usd").lower()
        if currency != "usd":
            raise ValueError(f"a cost in {currency}, not usd")
        model, kind = parse_line_item(result.get("line_item"))
        sums.add_cost(model, kind, as_decimal(amount["value"]))


def _add_completions(sums: DaySums, results: list[dict[str, Any]]) -> None:
    for result in results:
        # input_tokens counts the cached input too; output_tokens the reasoning.
        total_input = as_count(result.get("input_tokens"))
        cached = as_count(result.get("input_cached_tokens"))
        tokens = Tokens(input=total_input - cached, cached_input=cached, output=as_count(result.get("output_tokens")))
        sums.add_usage(result.get("model") or UNKNOWN_MODEL, as_count(result.get("num_model_requests")), tokens)


def _add_embeddings(sums: DaySums, results: list[dict[str, Any]]) -> None:
    for result in results:
        tokens = Tokens(input=as_count(result.get("input_tokens")))
        sums.add_usage(result.get("model") or UNKNOWN_MODEL, as_count(result.get("num_model_requests")), tokens)


async def fetch_openai_day(settings: ReconcileProvider, day: str, now_ms: int, *,
                           retry: RetryPolicy = DEFAULT_RETRY) -> ProviderDay:
    """OpenAI's report of the UTC ``day`` (YYYY-MM-DD) for the projects and
    API keys in ``settings`` (none: the whole organization)."""
    if not settings.admin_key:
        raise no_key_error(PROVIDER)
    root = f"{api_root(settings.base_url, DEFAULT_BASE_URL)}/v1"
    client = openai.AsyncOpenAI(admin_api_key=settings.admin_key, base_url=root, max_retries=0,
                                timeout=retry.timeout_seconds)
    usage = client.admin.organization.usage.with_raw_response
    try:
        costs, completions, embeddings = await read_reports(PROVIDER, [
            (url, _sdk_attempt(read, url, query)) for url, read, query in (
                (f"{root}/organization/costs", usage.costs, _cost_query(settings, day)),
                (f"{root}/organization/usage/completions", usage.completions, _usage_query(settings, day)),
                (f"{root}/organization/usage/embeddings", usage.embeddings, _usage_query(settings, day)))
        ], retry)
    finally:
        await client.close()
    sums = DaySums()
    try:
        _add_costs(sums, _results_of_day(costs, day))
        _add_completions(sums, _results_of_day(completions, day))
        _add_embeddings(sums, _results_of_day(embeddings, day))
    except Exception as exc:  # a field missing or of another type: the whole day is unreadable
        raise shape_error(PROVIDER, f"{type(exc).__name__}: {exc}") from exc
    return sums.day(PROVIDER, day, now_ms)
