"""What a store derives from a plan (statements, keys, arguments), kept by the
store rather than on the plan: a plan is a domain value, the same for every
store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from ..plan import Plan

T = TypeVar("T")

# As many plans as a PlanCache keeps (one per agent): past that the map starts
# afresh rather than grow; the plans of a new period replace the old anyway.
MAX_PLANS = 200_000


class PerPlan(Generic[T]):
    """``derive(plan)``, computed once per plan object.

    Plans are cached per agent and passed on every call, so an entry is
    found by the plan's identity: hashing a plan by value would hash every
    limit on every call. Each entry keeps its plan alive, so no other plan
    can take its id while the entry is there.
    """

    def __init__(self, derive: Callable[[Plan], T], max_plans: int = MAX_PLANS) -> None:
        self._derive = derive
        self._max_plans = max_plans
        self._by_id: dict[int, tuple[Plan, T]] = {}

    def __call__(self, plan: Plan) -> T:
        found = self._by_id.get(id(plan))
        if found is not None:
            return found[1]
        if len(self._by_id) >= self._max_plans:
            self._by_id.clear()
        derived = self._derive(plan)
        self._by_id[id(plan)] = (plan, derived)
        return derived
