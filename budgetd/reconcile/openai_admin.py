"""OpenAI's day, read from its admin API: the Costs report (dollars per line
item) and the Usage reports (tokens and requests per model) for completions
and embeddings.

The costs come as line items named like ``"gpt-4o-2024-08-06, input"``,
``"gpt-4o-2024-08-06, cached input"``, ``"gpt-4o-2024-08-06, output"``;
lines that name no model (``"web search tool calls"``) are unattributed.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from budgetd.config.schema import ReconcileProvider
from budgetd.reconcile.http import DEFAULT_RETRY, Params, RetryPolicy
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
    kind_text = rest.split(",", 1)[0].strip().lower()
    return words[0], _LINE_ITEM_KINDS.get(kind_text, "other")


def _common_params(day: str) -> Params:
    start, end = day_bounds(day)
    return [("start_time", str(int(start.timestamp()))), ("end_time", str(int(end.timestamp()))),
            ("bucket_width", "1d")]


def _usage_params(settings: ReconcileProvider, day: str) -> Params:
    params = _common_params(day) + [("group_by", "model")]
    if settings.project_ids:
        params.append(("group_by", "project_id"))
    if settings.api_key_ids:
        params.append(("group_by", "api_key_id"))
    params += [("project_ids", p) for p in settings.project_ids]
    params += [("api_key_ids", k) for k in settings.api_key_ids]
    return params


def _cost_params(settings: ReconcileProvider, day: str) -> Params:
    # The Costs report has no API-key filter: with api_key_ids set, the costs
    # are those of the projects named (or the organization), all keys.
    params = _common_params(day) + [("group_by", "line_item")]
    if settings.project_ids:
        params.append(("group_by", "project_id"))
    return params + [("project_ids", p) for p in settings.project_ids]


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
                           retry: RetryPolicy = DEFAULT_RETRY,
                           session: aiohttp.ClientSession | None = None) -> ProviderDay:
    """OpenAI's report of the UTC ``day`` (YYYY-MM-DD) for the projects and
    API keys in ``settings`` (none: the whole organization)."""
    if not settings.admin_key:
        raise no_key_error(PROVIDER)
    root = api_root(settings.base_url, DEFAULT_BASE_URL)
    headers = {"Authorization": f"Bearer {settings.admin_key}"}
    costs, completions, embeddings = await read_reports(PROVIDER, [
        (f"{root}/v1/organization/costs", _cost_params(settings, day)),
        (f"{root}/v1/organization/usage/completions", _usage_params(settings, day)),
        (f"{root}/v1/organization/usage/embeddings", _usage_params(settings, day)),
    ], headers, retry, session)
    sums = DaySums()
    try:
        _add_costs(sums, _results_of_day(costs, day))
        _add_completions(sums, _results_of_day(completions, day))
        _add_embeddings(sums, _results_of_day(embeddings, day))
    except Exception as exc:  # a field missing or of another type: the whole day is unreadable
        raise shape_error(PROVIDER, f"{type(exc).__name__}: {exc}") from exc
    return sums.day(PROVIDER, day, now_ms)
