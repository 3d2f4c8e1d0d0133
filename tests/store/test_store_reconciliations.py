"""Conformance of the Reconciliations contract: the result of each
provider's UTC day kept whole, its passes never undone, and each scheduled
pass leased to one replica at a time (the suite's fixtures and helpers are
in store_suite.py). The days are those of the time base (UTC), never fixed
dates."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, timedelta

import store_suite
from store_suite import T, covers

from budgetd.reconcile.model import ReconcileDay, ReconcileRow, Tokens
from budgetd.store import open_store

# The suite's fixtures, under their names store and time_base.
store_fixture, time_base_fixture = store_suite.store_fixture, store_suite.time_base_fixture

LEASE_MS = 60_000


def day(back: int = 0) -> str:
    """The UTC day ``back`` days before the time base's now."""
    return (T.now.astimezone(UTC).date() - timedelta(days=back)).isoformat()


def row(model: str, provider_nanos: int, ledger_nanos: int, **more) -> ReconcileRow:
    return ReconcileRow(
        model=model, classification="agree" if provider_nanos == ledger_nanos else "untracked",
        provider_requests=12, ledger_requests=11,
        provider_tokens=Tokens(input=1000, cached_input=200, cache_write=30, output=400),
        ledger_tokens=Tokens(input=990, cached_input=200, cache_write=0, output=401),
        provider_cost_nanos=provider_nanos, ledger_cost_nanos=ledger_nanos, **more)


def result(provider: str = "openai", on: str | None = None, passes: tuple[str, ...] = ("first",),
           state: str = "drift", rows: tuple[ReconcileRow, ...] | None = None) -> ReconcileDay:
    return ReconcileDay(
        provider=provider, day=on or day(1), state=state, detail=f"{provider} {state}", checked_ms=T.now_ms,
        rows=rows if rows is not None else (
            row("gpt-4o", 2_500_000_000, 2_400_000_000, estimate_nanos=7, estimate_requests=1,
                near_midnight_requests=2, past_tolerance=True, explanation="calls budgetd never saw",
                suggestion="prices:\n  gpt-4o: {input: 2.5}"),
            row("gpt-4o-mini", 10**15 + 1, 10**15 + 1)),
        passes=passes, last_success_ms=T.now_ms - 5)


@covers("save_reconciliation", "reconciliations")
async def test_a_saved_result_reads_back_whole(store):
    drift = result()
    failed = replace(result("anthropic", state="error", rows=(), passes=("hour-07",)), last_success_ms=None)
    await store.save_reconciliation(drift, "replica-a")
    await store.save_reconciliation(failed, "replica-a")
    found = await store.reconciliations(day(1), day(1))
    assert found == [failed, drift]  # by provider: anthropic first
    back = found[1]
    assert back.rows[0].provider_tokens == Tokens(1000, 200, 30, 400) and back.rows[0].drift_nanos == 100_000_000
    assert back.rows[1].provider_cost_nanos == 10**15 + 1  # nanodollars exactly, past a float's digits
    assert (back.passes, back.last_success_ms, back.checked_ms) == (("first",), T.now_ms - 5, T.now_ms)
    assert found[0].last_success_ms is None and found[0].rows == ()
    assert await store.reconciliations(day(0), day(0)) == []


@covers("save_reconciliation", "reconciliations")
async def test_a_result_saved_again_replaces_the_stored_one_but_keeps_every_pass_done(store):
    await store.save_reconciliation(result(passes=("hour-07", "first")), "replica-a")
    later = result(passes=("second",), state="ok", rows=(row("gpt-4o", 5, 5),))
    await store.save_reconciliation(later, "replica-b")
    assert await store.reconciliations(day(1), day(1)) == [later.with_passes("first", "hour-07")]
    assert (await store.reconciliations(day(1), day(1)))[0].passes == ("first", "hour-07", "second")
    rerun = result(passes=(), state="error", rows=())  # a later run with no pass of its own
    await store.save_reconciliation(rerun, "replica-a")
    [kept] = await store.reconciliations(day(1), day(1))
    assert kept == rerun.with_passes("first", "hour-07", "second") and kept.rows == () and kept.state == "error"


@covers("save_reconciliation", "reconciliations")
async def test_results_are_read_by_day_range_and_provider_sorted_by_provider_then_day(store):
    for back in (0, 3, 1, 2):  # written out of order
        for provider in ("openai", "anthropic"):
            await store.save_reconciliation(result(provider, day(back), passes=(f"p{back}",)), "r")

    def keys(found):
        return [(r.provider, r.day, r.passes) for r in found]

    assert keys(await store.reconciliations(day(2), day(1))) == [
        ("anthropic", day(2), ("p2",)), ("anthropic", day(1), ("p1",)),
        ("openai", day(2), ("p2",)), ("openai", day(1), ("p1",))]
    assert keys(await store.reconciliations(day(3), day(0), "openai")) == [
        ("openai", day(back), (f"p{back}",)) for back in (3, 2, 1, 0)]
    assert keys(await store.reconciliations(day(0), day(0), "anthropic")) == [("anthropic", day(0), ("p0",))]
    assert await store.reconciliations(day(10), day(4)) == []
    assert await store.reconciliations(day(0), day(3)) == []  # since after until: nothing
    assert await store.reconciliations(day(3), day(0), "azure") == []


@covers("claim_reconciliation", "save_reconciliation")
async def test_a_pass_done_is_never_claimed_again(store):
    now = T.now_ms
    assert await store.claim_reconciliation("openai", day(1), "first", "replica-a", now, LEASE_MS)
    await store.save_reconciliation(result(passes=("first",)), "replica-a")
    for owner in ("replica-a", "replica-b"):
        assert not await store.claim_reconciliation("openai", day(1), "first", owner, now + 1, LEASE_MS)
        assert not await store.claim_reconciliation("openai", day(1), "first", owner, now + 10**9, LEASE_MS)
    assert await store.claim_reconciliation("openai", day(1), "second", "replica-b", now + 2, LEASE_MS)
    assert await store.claim_reconciliation("anthropic", day(1), "first", "replica-b", now + 2, LEASE_MS)
    await store.save_reconciliation(result(passes=()), "replica-b")  # a later save never undoes "first"
    assert not await store.claim_reconciliation("openai", day(1), "first", "replica-c", now + 3, LEASE_MS)


@covers("claim_reconciliation")
async def test_a_live_lease_of_another_owner_is_refused_until_it_runs_out(store):
    now = T.now_ms
    assert await store.claim_reconciliation("openai", day(0), "hour-07", "replica-a", now, LEASE_MS)
    assert not await store.claim_reconciliation("openai", day(0), "hour-07", "replica-b", now, LEASE_MS)
    assert not await store.claim_reconciliation("openai", day(0), "hour-07", "replica-b", now + LEASE_MS - 1,
                                                LEASE_MS)
    # Other passes, days and providers are leased apart.
    assert await store.claim_reconciliation("openai", day(0), "hour-08", "replica-b", now, LEASE_MS)
    assert await store.claim_reconciliation("openai", day(1), "hour-07", "replica-b", now, LEASE_MS)
    assert await store.claim_reconciliation("anthropic", day(0), "hour-07", "replica-b", now, LEASE_MS)
    # Run out (now_ms at its end): another owner takes it, and then holds it.
    assert await store.claim_reconciliation("openai", day(0), "hour-07", "replica-b", now + LEASE_MS, LEASE_MS)
    assert not await store.claim_reconciliation("openai", day(0), "hour-07", "replica-a", now + LEASE_MS + 1,
                                                LEASE_MS)


@covers("claim_reconciliation")
async def test_the_owner_claiming_again_renews_its_lease(store):
    now = T.now_ms
    assert await store.claim_reconciliation("openai", day(1), "second", "replica-a", now, LEASE_MS)
    assert await store.claim_reconciliation("openai", day(1), "second", "replica-a", now + 30_000, LEASE_MS)
    # The lease now ends at now + 30 s + LEASE_MS, not at now + LEASE_MS.
    assert not await store.claim_reconciliation("openai", day(1), "second", "replica-b", now + LEASE_MS, LEASE_MS)
    assert not await store.claim_reconciliation("openai", day(1), "second", "replica-b", now + 30_000 + LEASE_MS - 1,
                                                LEASE_MS)
    assert await store.claim_reconciliation("openai", day(1), "second", "replica-b", now + 30_000 + LEASE_MS,
                                            LEASE_MS)


@covers("claim_reconciliation", "save_reconciliation")
async def test_a_save_drops_the_owners_leases_of_that_day_only(store):
    now = T.now_ms
    for pass_name in ("first", "hour-07"):
        assert await store.claim_reconciliation("openai", day(1), pass_name, "replica-a", now, LEASE_MS)
    assert await store.claim_reconciliation("openai", day(2), "first", "replica-a", now, LEASE_MS)
    assert await store.claim_reconciliation("anthropic", day(1), "first", "replica-a", now, LEASE_MS)
    assert await store.claim_reconciliation("openai", day(1), "second", "replica-b", now, LEASE_MS)
    await store.save_reconciliation(result("openai", day(1), passes=("first",)), "replica-a")
    assert await store.claim_reconciliation("openai", day(1), "hour-07", "replica-c", now + 1, LEASE_MS)  # dropped
    assert not await store.claim_reconciliation("openai", day(1), "first", "replica-c", now + 1, LEASE_MS)  # done
    assert not await store.claim_reconciliation("openai", day(1), "second", "replica-c", now + 1, LEASE_MS)  # b's
    assert not await store.claim_reconciliation("openai", day(2), "first", "replica-c", now + 1, LEASE_MS)
    assert not await store.claim_reconciliation("anthropic", day(1), "first", "replica-c", now + 1, LEASE_MS)


@covers("claim_reconciliation")
async def test_of_many_replicas_claiming_one_pass_at_once_one_wins(store):
    """On Redis the claims come from several replicas (stores on the same
    server), each over its own connections; elsewhere, from one store."""
    replicas = [store]
    if store.backend.startswith("redis"):
        for _ in range(3):
            replica = open_store(store.url)
            await replica.open()
            replicas.append(replica)
    try:
        for round_, pass_name in enumerate(("first", "hour-07", "second")):
            now = T.now_ms + round_ * 10 * LEASE_MS
            won = await asyncio.gather(*(
                replicas[i % len(replicas)].claim_reconciliation("openai", day(1), pass_name, f"replica-{i}", now,
                                                                 LEASE_MS)
                for i in range(20)))
            assert sum(won) == 1, won
            winner = f"replica-{won.index(True)}"
            again = await asyncio.gather(*(
                replicas[i % len(replicas)].claim_reconciliation("openai", day(1), pass_name, f"replica-{i}", now + 1,
                                                                 LEASE_MS)
                for i in range(20)))
            assert [f"replica-{i}" for i, ok in enumerate(again) if ok] == [winner]  # its renewal only
    finally:
        for replica in replicas[1:]:
            await replica.close()
