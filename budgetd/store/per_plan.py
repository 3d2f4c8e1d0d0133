"""What a store derives from a plan (statements, keys, arguments), kept by the
store rather than on the plan: a plan is a domain value, the same for every
store."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from ..plan import Plan

T = TypeVar("T")

# As many plans as a PlanCache keeps (one per agent): past that the map starts
# afresh rather than grow; the plans of a new period replace the old anyway.
MAX_PLANS = 200_000


class PerPlan(Generic[T]):
    """``derive(plan)``, computed once per plan object.

    Plans are cached per agent (and per agent and budgeted tag values) and
    passed on every call, so an entry is found by the plan's identity:
    hashing a plan by value would hash every limit on every call. An entry
    lives as long as its plan: a weak reference drops it when the plan cache
    lets the plan go (a plan per agent and customer comes and goes), and no
    other plan can take its id while it is there.
    """

    def __init__(self, derive: Callable[[Plan], T], max_plans: int = MAX_PLANS) -> None:
        self._derive = derive
        self._max_plans = max_plans
        self._by_id: dict[int, tuple[weakref.ref[Plan], T]] = {}

    def __call__(self, plan: Plan) -> T:
        found = self._by_id.get(id(plan))
        if found is not None:
            return found[1]
        if len(self._by_id) >= self._max_plans:
            self._by_id.clear()
        derived = self._derive(plan)
        key, entries = id(plan), self._by_id

        def forget(_: weakref.ref, key: int = key) -> None:
            entry = entries.get(key)
            if entry is not None and entry[0]() is None:  # not a newer plan's entry under a reused id
                del entries[key]

        self._by_id[key] = (weakref.ref(plan, forget), derived)
        return derived
