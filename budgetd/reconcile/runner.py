"""Running reconciliations: the scheduled passes (claimed in the store so
that one replica runs each), a run on request, and what follows a result
(the store, the metrics, a notice when a closed day is past tolerance)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from decimal import Decimal

from budgetd_client.usage import Usage

from ..app import BudgetService
from ..config.schema import ReconcileConfig, ReconcileProvider
from ..notices.messages import usd
from ..notices.model import Notice
from ..pricing import PriceTable, UnknownModel
from ..store import StoreError
from .compare import Tolerance, compare_day
from .http import RetryPolicy
from .ledger_side import read_ledger_day
from .model import ProviderDay, ReconcileDay, provider_name
from .providers import AdminApiError, fetch_day
from .schedule import FIRST, SECOND, DuePass, due_passes, utc_day

log = logging.getLogger("budgetd.reconcile")

LEASE_MS = 15 * 60_000  # longer than a pass takes with every retry
FIRST_RETRY_MS = 60_000  # after a failed pass; doubles up to MAX_RETRY_MS
MAX_RETRY_MS = 3_600_000
_MTOK = 1_000_000

Fetch = Callable[..., Awaitable[ProviderDay]]


@dataclass(frozen=True)
class Failure:
    """Why a pass failed, as its result and the status say it."""

    message: str
    needs_operator: bool = False  # a key missing or refused: retrying will not mend it

    @classmethod
    def of(cls, provider: str, exc: Exception) -> Failure:
        if isinstance(exc, AdminApiError):
            return cls(str(exc), exc.needs_operator)
        name = provider_name(provider)
        if isinstance(exc, StoreError):
            return cls(f"{name}: budgetd's store failed during the comparison: {exc}")
        log.exception("reconcile: the comparison failed", extra={"provider": provider})
        return cls(f"{name}: the comparison failed ({type(exc).__name__}: {exc}); see budgetd's log")


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Reconciler:
    def __init__(self, service: BudgetService, metrics=None, *, fetch: Fetch = fetch_day,
                 retry: RetryPolicy | None = None) -> None:
        self.service = service
        self.metrics = metrics
        self.fetch = fetch
        self.retry = retry or RetryPolicy()
        # The store's lease tells replicas apart; within this one, runs take turns
        # (a lease renews for its own owner, so two at once would both run a pass).
        self.owner = owner_id()
        self._one_at_a_time = asyncio.Lock()
        self._retry_at: dict[str, tuple[int, int]] = {}  # provider -> (failures in a row, next try ms)

    @property
    def config(self) -> ReconcileConfig | None:
        return self.service.in_force.config.reconcile

    async def run_due(self) -> list[ReconcileDay]:
        """Each due pass not yet done, of each provider: what the scheduler runs every minute."""
        async with self._one_at_a_time:
            return await self._run_due()

    async def _run_due(self) -> list[ReconcileDay]:
        config = self.config
        if config is None:
            return []
        now = self.service.now_ms()
        done = []
        store = self.service.store
        for provider, settings in config.providers().items():
            if now < self._retry_at.get(provider, (0, 0))[1]:
                continue
            failed: Failure | None = None
            for due in due_passes(now, config.at, config.today_every_minutes):
                try:
                    if not await store.claim_reconciliation(provider, due.day, due.name, self.owner, now, LEASE_MS):
                        continue
                    if failed is None:
                        done.append(await self._run(provider, settings, due.day, due))
                        continue
                except Exception as exc:  # one pass fails, said in its result; the others go on
                    failed = Failure.of(provider, exc)
                    self._note_failure(provider, now)
                # The same provider's other due days say so too, unread (the same key, the same outage).
                saved = await self._save_failure(provider, due.day, now, failed, due)
                if saved is not None:
                    done.append(saved)
        if self.metrics is not None:
            try:
                await export_metrics(self.service, self.metrics)
            except StoreError as err:  # the gauges wait for the next run
                log.warning("reconcile: metrics not refreshed: %s", err)
        return done

    async def run_now(self, provider: str, day: str) -> ReconcileDay:
        """A run asked for (budgetctl reconcile --run): no claim, no pass marked."""
        config = self.config
        if config is None or provider not in config.providers():
            raise ValueError(f"{provider!r} is not configured under reconcile:")
        async with self._one_at_a_time:
            now = self.service.now_ms()
            try:
                return await self._run(provider, config.providers()[provider], day, None)
            except Exception as exc:  # the answer says it failed, and why
                saved = await self._save_failure(provider, day, now, Failure.of(provider, exc), None)
                if saved is None:
                    raise
                return saved

    async def _run(self, provider: str, settings: ReconcileProvider, day: str, due: DuePass | None) -> ReconcileDay:
        config = self.config
        assert config is not None
        store, now = self.service.store, self.service.now_ms()
        provider_day = await self.fetch(provider, settings, day, now, retry=self.retry)  # failures: the caller's
        self._retry_at.pop(provider, None)
        today = due is not None and not due.closed
        result = await self._compared(provider_day, config, now, today=today)
        if due is not None:
            result = result.with_passes(due.name, *due.also_done)
        if today:
            # A partial pass finishing after a closed one (another replica's, at
            # a midnight `at`) keeps the closed comparison: it only counts as run.
            closed = [r for r in await store.reconciliations(day, day, provider) if {FIRST, SECOND} & set(r.passes)]
            if closed:
                await store.save_reconciliation(closed[0].with_passes(*result.passes), self.owner)
                return closed[0]
        if result.state == "drift":
            await store.add_notice(_notice(result, now), None)  # first: a crash before the save repeats none
        await store.save_reconciliation(result, self.owner)
        log.info("reconciled", extra={"provider": provider, "day": day, "state": result.state,
                                      "drift_nanos": result.drift_nanos})
        return result

    async def _compared(self, provider_day: ProviderDay, config: ReconcileConfig, now: int, *,
                        today: bool) -> ReconcileDay:
        service = self.service
        in_force = service.in_force
        ledger = await read_ledger_day(service.store, provider_day.day, in_force.config.zone,
                                       tuple(config.providers()), config.near_midnight_minutes * 60_000)
        prices = PriceTable(in_force.config)
        rows = compare_day(provider_day, ledger.of(provider_day.provider),
                           Tolerance(config.tolerance_percent, config.tolerance_usd),
                           lambda model, kind: _price_per_mtok(prices, provider_day.provider, model, kind),
                           requests_known=provider_day.provider != "anthropic")
        result = ReconcileDay(provider_day.provider, provider_day.day, "ok", "", now, tuple(rows),
                              last_success_ms=now)
        if today or not provider_day.complete:
            state = "partial"
        else:
            state = "drift" if any(row.past_tolerance for row in rows) else "ok"
        detail = (f"{len(rows)} model{'s' if len(rows) != 1 else ''}: {usd(result.provider_cost_nanos)} billed, "
                  f"{usd(result.ledger_cost_nanos)} in budgetd, difference {usd(result.drift_nanos)}")
        if state == "partial":
            detail += " (the day is not over: compared again once it is)"
        if ledger.unattributed_nanos:
            detail += f"; {usd(ledger.unattributed_nanos)} of the ledger names no provider"
        return replace(result, state=state, detail=detail)

    async def _save_failure(self, provider: str, day: str, now: int, failure: Failure,
                            due: DuePass | None) -> ReconcileDay | None:
        """An error result: the rows of the last run that read the provider in
        full stay (shown as of then), no pass is marked done, and this
        replica keeps the pass's lease until its next try (so another does not
        retry it sooner). A key missing or refused also writes a notice (once
        per provider and day). None when even that could not be written (the
        store is down: logged, tried again at the next run)."""
        store = self.service.store
        log.warning("reconcile failed", extra={"provider": provider, "day": day, "error": failure.message})
        try:
            if failure.needs_operator and due is not None and due.closed:
                await store.add_notice(_failure_notice(provider, day, failure.message, now), None)
            stored = await store.reconciliations(day, day, provider)
            if stored:
                result = replace(stored[0], state="error", detail=failure.message, checked_ms=now)
            else:
                result = ReconcileDay(provider, day, "error", failure.message, now)
            await store.save_reconciliation(result, self.owner)
            next_try = self._retry_at.get(provider, (0, 0))[1]
            if due is not None and next_try > now:
                await store.claim_reconciliation(provider, day, due.name, self.owner, now, next_try - now)
        except Exception:
            log.exception("reconcile: the failure could not be recorded", extra={"provider": provider, "day": day})
            return None
        return result

    def _note_failure(self, provider: str, now: int) -> None:
        failures = self._retry_at.get(provider, (0, 0))[0] + 1
        self._retry_at[provider] = (failures, now + min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** (failures - 1)))


def _price_per_mtok(prices: PriceTable, provider: str, model: str, kind: str) -> Decimal | None:
    """budgetd's price of a million tokens of one kind, in dollars (None: it has none)."""
    usage = {"input": Usage(model, input_tokens=_MTOK),
             "cached_input": Usage(model, input_tokens=_MTOK, cached_input_tokens=_MTOK),
             "cache_write": Usage(model, input_tokens=_MTOK, cache_write_tokens=_MTOK),
             "output": Usage(model, output_tokens=_MTOK)}[kind]
    try:
        price = prices.price(replace(usage, provider=provider))
    except (UnknownModel, ValueError, LookupError):
        return None
    return Decimal(price.nanos) / 1_000_000_000


def _failure_notice(provider: str, day: str, error: str, now: int) -> Notice:
    """A key missing or refused (once per provider and day): no comparison
    happens until an operator fixes it, so silence would read as all clear."""
    return Notice(f"reconcile:{provider}:{day}:failed", "reconcile", period=day, reason=error, at_ms=now,
                  extra={"provider": provider, "day": day, "failed": True})


def _notice(result: ReconcileDay, now: int) -> Notice:
    """One per provider and day (its key): the rows past tolerance, each with its classification."""
    rows = [{"model": r.model, "classification": r.classification, "drift_nanos": r.drift_nanos,
             "provider_cost_nanos": r.provider_cost_nanos, "ledger_cost_nanos": r.ledger_cost_nanos,
             "explanation": r.explanation, "suggestion": r.suggestion}
            for r in result.rows if r.past_tolerance]
    name = provider_name(result.provider)
    return Notice(f"reconcile:{result.provider}:{result.day}", "reconcile", period=result.day,
                  spent_nanos=result.ledger_cost_nanos, reason=f"{name}'s bill differs from budgetd's ledger",
                  at_ms=now, extra={"provider": result.provider, "day": result.day, "rows": rows,
                                    "provider_cost_nanos": result.provider_cost_nanos,
                                    "drift_nanos": result.drift_nanos})


async def export_metrics(service: BudgetService, metrics) -> None:
    """The gauges from the results stored (by any replica, before a restart
    too): per provider its newest closed day's drift per model, its last
    full read, and whether its newest run failed."""
    config = service.in_force.config.reconcile
    if config is None:
        return
    now = service.now_ms()
    today = utc_day(now)
    stored = await service.store.reconciliations(utc_day(now, 7), today)
    metrics.reconcile_drift.clear()
    for provider in config.providers():
        mine = [r for r in stored if r.provider == provider]
        if not mine:
            continue
        newest = max(mine, key=lambda r: (r.checked_ms, r.day))  # one run may do two days at one time
        metrics.reconcile_up.labels(provider).set(0 if newest.state == "error" else 1)
        successes = [r.last_success_ms for r in mine if r.last_success_ms is not None]
        if successes:
            metrics.reconcile_last_success.labels(provider).set(max(successes) / 1000)
        closed = [r for r in mine if r.last_success_ms is not None and {"first", "second"} & set(r.passes)]
        if closed:
            for row in max(closed, key=lambda r: r.day).rows:
                metrics.reconcile_drift.labels(provider, row.model).set(row.drift_nanos / 1e9)
