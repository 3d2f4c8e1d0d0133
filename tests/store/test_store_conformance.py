"""The conformance suite of the store contracts (budgetd.store.CONTRACTS):
every store in store_suite.STORES, the memory store first, passes the cases
of SUITE_MODULES, a module per contract. Here: the Lifecycle contract, and
the checks of the suite itself (every contract method has a case; the time
bases are what they say). ``pytest tests/store -m memory`` runs one backend
(or sqlite, redis, cluster); the fixtures and helpers are in store_suite.py."""

from __future__ import annotations

import importlib
import inspect
from datetime import date, datetime, timedelta, timezone

import pytest
import store_suite
from store_suite import CONTRACT, SUITE_MODULES, TIME_BASES, balances, covers, dst_base, month_end_base, settle

from budgetd.store import CONTRACTS, Store, StoreError

# The suite's fixtures, under their names store and time_base.
store_fixture, time_base_fixture = store_suite.store_fixture, store_suite.time_base_fixture


def _conformance_tests():
    return {name: fn for module in SUITE_MODULES for name, fn in vars(importlib.import_module(module)).items()
            if name.startswith("test_") and inspect.isfunction(fn)}


def test_the_time_bases_are_ahead_of_the_clock_and_cross_what_they_say():
    real = datetime.now(timezone.utc) - timedelta(seconds=5)
    for make in TIME_BASES.values():
        base = make()
        assert base.now >= real and base.next_day > base.now, base
        assert base.next_day_key == (date.fromisoformat(base.day) + timedelta(days=1)).isoformat(), base
        assert all(t >= base.now for t in base.days_in_one_month(4)), base
    month_end = month_end_base()
    assert month_end.next_day_key.endswith("-01") and month_end.next_day_key[:7] != month_end.month
    dst = dst_base()
    assert dst.now.astimezone(dst.zone).utcoffset() != dst.next_day.astimezone(dst.zone).utcoffset()


def test_every_store_method_has_a_conformance_case():
    tests = _conformance_tests()
    on_store = {name: fn for name, fn in tests.items() if "store" in inspect.signature(fn).parameters}
    undeclared = sorted(name for name, fn in on_store.items() if not getattr(fn, "covers", None))
    assert not undeclared, f"tests that declare no Store methods with @covers: {undeclared}"
    declared_off_store = sorted(name for name, fn in tests.items() if getattr(fn, "covers", None) and name not in on_store)
    assert not declared_off_store, f"@covers on tests that do not run on the store fixture: {declared_off_store}"
    covered = frozenset().union(*(fn.covers for fn in on_store.values()))
    missing = {contract.__name__: sorted(contract.__abstractmethods__ - covered) for contract in CONTRACTS}
    assert not any(missing.values()), f"contract methods no conformance test calls: {missing}"


def test_the_store_contract_is_the_union_of_the_contracts():
    """So that covering every contract covers the whole Store."""
    assert Store.__abstractmethods__ == CONTRACT
    assert all(issubclass(Store, contract) for contract in CONTRACTS)


@covers("ping", "open", "close", "settle", "read")
async def test_ping_answers_and_what_was_written_outlives_a_close_and_open(store):
    await store.ping()
    await store.settle(settle("a1", "r1", 300))
    await store.close()
    with pytest.raises(StoreError):
        await store.ping()  # closed: no answer
    await store.open()
    await store.ping()
    assert (await balances(store, "a1"))[("agent:a1", "daily")] == (300, 0)
    assert (await store.settle(settle("a1", "r1", 300))).duplicate
