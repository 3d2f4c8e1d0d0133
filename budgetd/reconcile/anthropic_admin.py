"""Anthropic's day, read from its Admin API: the Cost Report (cents, as
decimal strings, per model and token type) and the Messages Usage Report
(tokens per model).

The usage report has no request count: the models' ``requests`` are 0 here,
and a comparison must treat Anthropic's request counts as unknown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiohttp

from budgetd.config.schema import ReconcileProvider
from budgetd.reconcile.http import DEFAULT_RETRY, Params, RetryPolicy, aiohttp_attempt
from budgetd.reconcile.model import ProviderDay, Tokens
from budgetd.reconcile.providers import (
    DaySums,
    api_root,
    as_count,
    as_decimal,
    cents_to_usd,
    day_bounds,
    no_key_error,
    read_reports,
    shape_error,
)

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
PROVIDER = "anthropic"

# A cost result's token_type -> TOKEN_KINDS (both cache writes are cache_write).
_TOKEN_TYPE_KINDS = {
    "uncached_input_tokens": "input",
    "cache_read_input_tokens": "cached_input",
    "cache_creation.ephemeral_5m_input_tokens": "cache_write",
    "cache_creation.ephemeral_1h_input_tokens": "cache_write",
    "output_tokens": "output",
}
UNKNOWN_MODEL = "(unknown model)"


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _common_params(day: str) -> Params:
    start, end = day_bounds(day)
    return [("starting_at", _rfc3339(start)), ("ending_at", _rfc3339(end)), ("bucket_width", "1d")]


def _cost_params(day: str) -> Params:
    # The Cost Report filters by nothing: it is grouped by workspace and the
    # workspaces are picked here. It has no API-key dimension at all.
    return _common_params(day) + [("group_by[]", "workspace_id"), ("group_by[]", "description")]


def _usage_params(settings: ReconcileProvider, day: str) -> Params:
    params = _common_params(day) + [("group_by[]", "model")]
    if settings.workspace_ids:
        params.append(("group_by[]", "workspace_id"))
    if settings.api_key_ids:
        params.append(("group_by[]", "api_key_id"))
    params += [("workspace_ids[]", w) for w in settings.workspace_ids]
    params += [("api_key_ids[]", k) for k in settings.api_key_ids]
    return params


def _results_of_day(buckets: list[Any], day: str) -> list[dict[str, Any]]:
    start, end = day_bounds(day)
    results: list[dict[str, Any]] = []
    for bucket in buckets:
        bucket_start = datetime.fromisoformat(str(bucket["starting_at"]).replace("Z", "+00:00"))
        if start <= bucket_start < end:
            results.extend(bucket["results"])
    return results


def _add_costs(sums: DaySums, results: list[dict[str, Any]], workspace_ids: list[str]) -> None:
    for result in results:
        if workspace_ids and result.get("workspace_id") not in workspace_ids:
            continue
        currency = str(result.get("currency") or "USD").upper()
        if currency != "USD":
            raise ValueError(f"a cost in {currency}, not USD")
        # Cents as a decimal string ("123.45" is $1.2345): moved two places, exactly.
        usd = cents_to_usd(as_decimal(str(result["amount"])))
        token_type = result.get("token_type")
        kind = _TOKEN_TYPE_KINDS.get(token_type, "other") if isinstance(token_type, str) else "other"
        sums.add_cost(result.get("model"), kind, usd)


def _add_usage(sums: DaySums, results: list[dict[str, Any]]) -> None:
    for result in results:
        cache_creation = result.get("cache_creation") or {}
        tokens = Tokens(
            input=as_count(result.get("uncached_input_tokens")),
            cached_input=as_count(result.get("cache_read_input_tokens")),
            cache_write=as_count(cache_creation.get("ephemeral_5m_input_tokens"))
            + as_count(cache_creation.get("ephemeral_1h_input_tokens")),
            output=as_count(result.get("output_tokens")),
        )
        sums.add_usage(result.get("model") or UNKNOWN_MODEL, 0, tokens)


async def fetch_anthropic_day(settings: ReconcileProvider, day: str, now_ms: int, *,
                              retry: RetryPolicy = DEFAULT_RETRY,
                              session: aiohttp.ClientSession | None = None) -> ProviderDay:
    """Anthropic's report of the UTC ``day`` (YYYY-MM-DD) for the workspaces
    and API keys in ``settings`` (none: the whole organization). Costs are
    filtered by workspace only (the Cost Report has no API key)."""
    if not settings.admin_key:
        raise no_key_error(PROVIDER)
    root = api_root(settings.base_url, DEFAULT_BASE_URL)
    headers = {"x-api-key": settings.admin_key, "anthropic-version": API_VERSION}
    own = session is None
    active = session or aiohttp.ClientSession()
    try:
        costs, usage = await read_reports(PROVIDER, [
            (url, aiohttp_attempt(active, url, params, headers, retry)) for url, params in (
                (f"{root}/v1/organizations/cost_report", _cost_params(day)),
                (f"{root}/v1/organizations/usage_report/messages", _usage_params(settings, day)))
        ], retry)
    finally:
        if own:
            await active.close()
    sums = DaySums()
    try:
        _add_costs(sums, _results_of_day(costs, day), settings.workspace_ids)
        _add_usage(sums, _results_of_day(usage, day))
    except Exception as exc:  # a field missing or of another type: the whole day is unreadable
        raise shape_error(PROVIDER, f"{type(exc).__name__}: {exc}") from exc
    return sums.day(PROVIDER, day, now_ms)
