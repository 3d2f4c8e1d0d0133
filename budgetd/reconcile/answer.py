"""What ``budgetctl reconcile`` and the dashboard are told: the stored
results of a range of UTC days, and each provider's status (is its report
being read, and what did the newest run find)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from .model import PROVIDER_NAMES, ReconcileDay
from .runner import Reconciler
from .schedule import utc_day

MAX_DAYS = 366  # a range shown
MAX_RUN_DAYS = 31  # a range compared on request (each day reads every provider's report)
STATUS_DAYS = 7  # how far back a provider's newest run is looked for


@dataclass(frozen=True)
class ProviderStatus:
    provider: str
    state: str  # a ReconcileDay state, or "not run"
    detail: str
    last_attempt_ms: int | None
    last_success_ms: int | None

    @property
    def line(self) -> str:
        """``OpenAI: 403 — the key is not an admin key`` (the detail names the provider when it failed)."""
        name = PROVIDER_NAMES.get(self.provider, self.provider)
        if self.state == "error":
            return self.detail if self.detail.startswith(f"{name}:") else f"{name}: {self.detail}"
        return f"{name}: {self.state} — {self.detail}"


@dataclass(frozen=True)
class ReconcileAnswer:
    since: str
    until: str
    days: list[ReconcileDay]
    providers: list[ProviderStatus]


def _day(text: str, field: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not a date (YYYY-MM-DD)") from None


def day_range(since: str, until: str, now_ms: int, *, run: bool) -> tuple[str, str]:
    """UTC days; empty: yesterday and today."""
    first = _day(since, "since") if since else utc_day(now_ms, 1)
    last = _day(until, "until") if until else (first if since and run else utc_day(now_ms))
    if first > last:
        raise ValueError(f"since {first} is after until {last}: the range is empty; give since on or before until")
    days = (date.fromisoformat(last) - date.fromisoformat(first)).days + 1
    limit = MAX_RUN_DAYS if run else MAX_DAYS
    if days > limit:
        raise ValueError(f"{first} .. {until or last} is {days} days: at most {limit}" +
                         (" are compared in one run" if run else " are shown at once"))
    return first, last


async def answer(reconciler: Reconciler, since: str, until: str, provider: str = "", *,
                 run: bool = False) -> ReconcileAnswer:
    config = reconciler.config
    if config is None:
        raise ValueError("reconciliation is not configured: add a reconcile: section to budgets.yaml "
                         "(docs/reconciliation.md)")
    configured = list(config.providers())
    if provider and provider not in configured:
        raise ValueError(f"provider {provider!r} is not under reconcile: (configured: {', '.join(configured)})")
    providers = [provider] if provider else configured
    now = reconciler.service.now_ms()
    first, last = day_range(since, until, now, run=run)
    if run:
        day = date.fromisoformat(first)
        while day.isoformat() <= last:
            for name in providers:
                await reconciler.run_now(name, day.isoformat())
            day += timedelta(days=1)
    store = reconciler.service.store
    days = [d for d in await store.reconciliations(first, last) if d.provider in providers]
    recent = await store.reconciliations(utc_day(now, STATUS_DAYS), utc_day(now))
    return ReconcileAnswer(first, last, days, [_status(name, recent + days) for name in providers])


def _status(provider: str, results: list[ReconcileDay]) -> ProviderStatus:
    mine = [r for r in results if r.provider == provider]
    if not mine:
        return ProviderStatus(provider, "not run", "nothing compared yet", None, None)
    newest = max(mine, key=lambda r: (r.checked_ms, r.day))  # one run may do two days at one time
    successes = [r.last_success_ms for r in mine if r.last_success_ms is not None]
    detail = newest.detail if newest.state == "error" else f"{newest.day}: {newest.detail}"
    return ProviderStatus(provider, newest.state, detail, newest.checked_ms, max(successes) if successes else None)
