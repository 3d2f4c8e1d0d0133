"""Reading a provider's day: the dispatch by name, the one error type every
failed read becomes, and what the two readers share (the day's bounds, the
sums per model).

A read either returns the whole ``ProviderDay`` or raises ``AdminApiError``
with a message that says what went wrong and what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from budgetd.config.schema import ReconcileProvider
from budgetd.reconcile.http import DEFAULT_RETRY, Attempt, HttpFailure, RetryPolicy, get_pages
from budgetd.reconcile.model import TOKEN_KINDS, ProviderDay, ProviderModelDay, Tokens, provider_name

# What each error status means for an admin-API read, and what to do.
_STATUS_MEANING = {
    400: "the provider refused the request as malformed (its admin API may have changed)",
    401: "the admin key was refused (revoked or mistyped? check reconcile.{provider}.admin_key)",
    404: "no such endpoint (check reconcile.{provider}.base_url)",
}
_NOT_ADMIN_KEY = {
    "openai": "the key is not an admin key (an Admin API key from the organization settings is needed)",
    "anthropic": "the key is not an admin key (an Admin API key, sk-ant-admin..., from the Console is needed)",
}


class AdminApiError(Exception):
    """A provider's report could not be read (in full). ``status``: the HTTP
    status that stopped it, None when there was none (no key, no connection,
    a cut-off report)."""

    def __init__(self, provider: str, status: int | None, message: str, *, no_key: bool = False) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.message = message
        # A key missing or refused does not heal by retrying: an operator must act.
        self.needs_operator = no_key or status in (401, 403)



def no_key_error(provider: str) -> AdminApiError:
    name = provider_name(provider)
    return AdminApiError(provider, None, f"{name}: no admin key set (reconcile.{provider}.admin_key)", no_key=True)


def shape_error(provider: str, what: str) -> AdminApiError:
    return AdminApiError(provider, None, f"{provider_name(provider)}: the report had an unexpected shape ({what})")


def admin_api_error(provider: str, failure: HttpFailure) -> AdminApiError:
    """The operator's message for a failed read."""
    name = provider_name(provider)
    tries = f"gave up after {failure.attempts} attempt{'s' if failure.attempts != 1 else ''}"
    if failure.kind == "connect":
        message = f"{name}: cannot connect to {failure.url}: {failure.detail} ({tries})"
    elif failure.kind == "timeout":
        message = f"{name}: no answer from {failure.url} in time ({tries})"
    elif failure.kind == "truncated":
        message = f"{name}: the report was cut off at page {failure.page} ({failure.detail})"
    elif failure.kind == "not_json":
        message = f"{name}: the report at {failure.url} was not JSON (a proxy in the way? check base_url)"
    else:
        status = failure.status or 0
        if status == 403:
            meaning = _NOT_ADMIN_KEY.get(provider, "the key may not read the organization's reports")
        elif status == 429:
            meaning = f"rate limited, {tries}"
        elif status >= 500:
            meaning = f"the provider failed (server error), {tries}"
        else:
            meaning = _STATUS_MEANING.get(status, "the request was refused").format(provider=provider)
        message = f"{name}: {status} — {meaning}"
        if failure.provider_message:
            message += f'; {name} said: "{failure.provider_message}"'
    return AdminApiError(provider, failure.status, message)


# -- what both readers share ---------------------------------------------------

def day_bounds(day: str) -> tuple[datetime, datetime]:
    """[day 00:00, next day 00:00) in UTC."""
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def is_complete(day: str, now_ms: int) -> bool:
    """The day has ended (the caller allows the provider its own lag)."""
    return now_ms >= int(day_bounds(day)[1].timestamp() * 1000)


def api_root(base_url: str | None, default: str) -> str:
    """The API's root, without a trailing slash or ``/v1`` (the readers add
    the paths, ``/v1`` included, and a base copied with it still works)."""
    root = (base_url or default).rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


async def read_reports(provider: str, reads: list[tuple[str, Attempt]], retry: RetryPolicy) -> list[list[Any]]:
    """Each report (its url, and the GET of one of its pages) read in full,
    in order; the first failure stops them all as an AdminApiError."""
    try:
        return [await get_pages(attempt, url, retry) for url, attempt in reads]
    except HttpFailure as failure:
        raise admin_api_error(provider, failure) from failure
    except AdminApiError:
        raise
    except Exception as exc:
        # Whatever else the HTTP layer raises (a URL it cannot use, say): the
        # caller handles one error type, and a read is never half a result.
        raise AdminApiError(provider, None, f"{provider_name(provider)}: the read failed: {exc!r}") from exc


def as_decimal(value: Any) -> Decimal:
    """A JSON number (already a Decimal or an int) or a decimal string, exactly."""
    if isinstance(value, (bool, float)) or value is None:
        raise ValueError(f"not an exact amount: {value!r}")
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    if not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    return amount


def cents_to_usd(cents: Decimal) -> Decimal:
    """Cents as dollars, by moving the exponent: exact whatever the digits
    (a division would round past the context's 28 digits)."""
    sign, digits, exponent = cents.as_tuple()
    assert isinstance(exponent, int)  # finite: as_decimal checked
    return Decimal((sign, digits, exponent - 2))


def as_count(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"not a token count: {value!r}")
    return value


@dataclass
class _ModelSums:
    requests: int = 0
    tokens: Tokens = Tokens()
    cost_by_kind: dict[str, Decimal] = field(default_factory=dict)


@dataclass
class DaySums:
    """A day's report summed as its rows arrive: one model may come in many
    rows (per project, workspace, key, page) and they add up."""

    models: dict[str, _ModelSums] = field(default_factory=dict)
    unattributed_usd: Decimal = Decimal(0)

    def add_usage(self, model: str, requests: int, tokens: Tokens) -> None:
        sums = self.models.setdefault(model, _ModelSums())
        sums.requests += requests
        sums.tokens = sums.tokens + tokens

    def add_cost(self, model: str | None, kind: str, usd: Decimal) -> None:
        if not model:
            self.unattributed_usd += usd
            return
        if kind not in TOKEN_KINDS:
            kind = "other"
        by_kind = self.models.setdefault(model, _ModelSums()).cost_by_kind
        by_kind[kind] = by_kind.get(kind, Decimal(0)) + usd

    def day(self, provider: str, day: str, now_ms: int) -> ProviderDay:
        models = {
            model: ProviderModelDay(model=model, requests=s.requests, tokens=s.tokens,
                                    cost_usd=sum(s.cost_by_kind.values(), Decimal(0)),
                                    cost_by_kind_usd=dict(s.cost_by_kind))
            for model, s in sorted(self.models.items())
        }
        return ProviderDay(provider=provider, day=day, models=models, complete=is_complete(day, now_ms),
                           unattributed_cost_usd=self.unattributed_usd)


async def fetch_day(provider: str, settings: ReconcileProvider, day: str, now_ms: int, *,
                    retry: RetryPolicy = DEFAULT_RETRY) -> ProviderDay:
    """``provider``'s report of the UTC ``day`` (YYYY-MM-DD), after the
    filters in ``settings`` (a ReconcileProvider)."""
    # Imported here: the readers import AdminApiError and the helpers above.
    from budgetd.reconcile.anthropic_admin import fetch_anthropic_day
    from budgetd.reconcile.openai_admin import fetch_openai_day

    if provider == "openai":
        return await fetch_openai_day(settings, day, now_ms, retry=retry)
    if provider == "anthropic":
        return await fetch_anthropic_day(settings, day, now_ms, retry=retry)
    raise AdminApiError(provider, None, f"{provider}: not a provider budgetd reconciles (openai, anthropic)")
