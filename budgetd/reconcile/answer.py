"""What ``budgetctl reconcile`` and the dashboard are told: the stored
results of a range of UTC days, and each provider's status (is its report
being read, and what did the newest run find)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from .model import ReconcileDay, provider_name
from .runner import Reconciler
from .schedule import first_pass_due_ms, utc_day

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
    stored = {(d.provider, d.day): d for d in await store.reconciliations(first, last) if d.provider in providers}
    days = _with_overdue(stored, providers, first, last, now, config.at)
    recent = await store.reconciliations(utc_day(now, STATUS_DAYS), utc_day(now))
    return ReconcileAnswer(first, last, days, [_status(name, recent + list(stored.values())) for name in providers])


def _with_overdue(stored: dict[tuple[str, str], ReconcileDay], providers: list[str], first: str, last: str,
                  now: int, at: str) -> list[ReconcileDay]:
    """The days stored, and each day whose first pass is overdue with no
    comparison of it closed (nothing stored, or only today's partial runs):
    state "missing", never taken for all clear."""
    days = []
    for name in providers:
        day = date.fromisoformat(first)
        while day.isoformat() <= last:
            key = (name, day.isoformat())
            found = stored.get(key)
            due_ms = first_pass_due_ms(key[1], at)
            if now >= due_ms and (found is None or found.state == "partial"):
                due = datetime.fromtimestamp(due_ms / 1000, UTC)
                detail = (f"{provider_name(name)}: {key[1]} has not been compared since it closed (its "
                          f"first pass was due at {due:%Y-%m-%d %H:%M}Z); see budgetd's log, or run "
                          f"budgetctl reconcile --run --day {key[1]}")
                found = ReconcileDay(name, key[1], "missing", detail, now, found.rows if found else (),
                                     found.passes if found else (), found.last_success_ms if found else None)
            if found is not None:
                days.append(found)
            day += timedelta(days=1)
    return days


def _status(provider: str, results: list[ReconcileDay]) -> ProviderStatus:
    mine = [r for r in results if r.provider == provider]
    if not mine:
        return ProviderStatus(provider, "not run", "nothing compared yet", None, None)
    newest = max(mine, key=lambda r: (r.checked_ms, r.day))  # one run may do two days at one time
    successes = [r.last_success_ms for r in mine if r.last_success_ms is not None]
    detail = newest.detail if newest.state == "error" else f"{newest.day}: {newest.detail}"
    return ProviderStatus(provider, newest.state, detail, newest.checked_ms, max(successes) if successes else None)
