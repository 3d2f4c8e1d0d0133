"""The store contracts, small ones in the manner of alisaifee/limits' storage
bases: each names one job, and ``Store``, the contract every backend
implements, is their union. Every backend passes one conformance suite
(tests/store/store_suite.py, with a module of cases per contract), the
memory store first.

Each operation is one atomic step over every counter it touches. Callers
pass a ``Plan`` (which counters, which caps, computed from config and the
clock); the store does not read config or the clock itself, so the same
inputs give the same answer on every backend. The values the operations take
and give are in model.py (importable from here too).
"""

from __future__ import annotations

import abc
import bisect
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from ..reconcile.model import ReconcileDay
from ..reports import ReportPart, TagHourSpend, summarize
from .model import (
    AgentActivity,
    AgentState,
    Balance,
    CallFacts,
    CapChange,
    Claimed,
    CostEvent,
    Counter,
    Denial,
    HoldRequest,
    HoldResult,
    PauseRecord,
    PlanLookup,
    Pricing,
    QueuedNotice,
    RequestConflict,
    SettleRequest,
    SettleResult,
    StoreError,
    StoreLost,
    StoreRefused,
    UsageSum,
)

if TYPE_CHECKING:
    from ..notices.model import Notice
    from ..plan import Plan

__all__ = [
    "CONTRACTS", "AgentActivity", "AgentState", "Balance", "CallFacts", "CapChange", "Claimed", "CostEvent",
    "Counter", "Counters", "Denial", "HoldRequest", "HoldResult", "Ledger", "Lifecycle", "Outbox", "PauseRecord",
    "Pauses", "PlanLookup", "Pricing", "QueuedNotice", "Reconciliations", "RequestConflict", "SettleRequest",
    "SettleResult", "Store", "StoreError", "StoreLost", "StoreRefused", "UsageSum",
]


class Lifecycle(abc.ABC):
    """Connecting to the backend and checking it answers."""

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreError unless the backend answers (StoreLost once it lost
        acknowledged data)."""


class Counters(abc.ABC):
    """The spend counters of every window and the holds on them."""

    @abc.abstractmethod
    async def hold(self, req: HoldRequest) -> HoldResult:
        """Check pauses and every capped window of the plan; hold on all or none.

        Idempotent: a request id already held is allowed again without a
        second hold. Raises RequestConflict for a request id of this agent
        that is settled, released or expired.
        """

    @abc.abstractmethod
    async def settle(self, req: SettleRequest) -> SettleResult:
        """Drop the hold, add the actual cost to every window, record a ledger
        row, pause every window that reached its cap and warn at each
        threshold crossed (with their notices). Idempotent."""

    @abc.abstractmethod
    async def release(self, request_id: str, plan: Plan, now_ms: int) -> bool:
        """Drop a live hold of the plan's agent; False when there is none."""

    @abc.abstractmethod
    async def record_failure(self, request_id: str, plan: Plan, now_ms: int, facts: CallFacts) -> CostEvent | None:
        """``release`` of a call that failed, recorded: the hold is dropped
        and a ledger row of kind "release" with cost 0 and ``facts`` (its
        error code) is written in the same step. None when there was no live
        hold (nothing is written)."""

    @abc.abstractmethod
    async def expire(self, now_ms: int, charge: bool, plan_for: PlanLookup,
                     events: list[CostEvent] | None = None) -> int:
        """Expire holds whose deadline passed: release them, or charge the held
        amount as spent. Returns how many expired. ``events``: the ledger rows
        of the charged expiries are appended to it (for the export)."""

    @abc.abstractmethod
    async def read(self, plan: Plan) -> AgentState:
        """Balances of every counter of the plan and the pauses of its scopes."""

    @abc.abstractmethod
    async def read_many(self, plans: Sequence[Plan]) -> list[AgentState]:
        """``read`` of many agents at once, in the order given: status lists,
        gauges and digests read a page of agents in one go, so a backend
        reads them in a few round trips rather than several per agent."""

    @abc.abstractmethod
    async def spent_in(self, plan: Plan, scope: str, window: str, periods: list[str]) -> dict[str, int]:
        """Spend of one scope's counters in the given periods (absent: none)."""

    @abc.abstractmethod
    async def top_spenders(self, window: str, period: str, plan_for: PlanLookup, limit: int) -> list[tuple[str, int]]:
        """The agents that spent most in the period, biggest first."""

    @abc.abstractmethod
    async def active_agents(self, daily_period: str, monthly_period: str) -> list[str]:
        """Agents with spend or holds in the given periods, or with a pause."""


class Pauses(abc.ABC):
    """Pauses by an operator, and the cap pauses a config change or a new
    period starts or lifts (a settle's cap pauses are part of the settle)."""

    @abc.abstractmethod
    async def pause(self, plan: Plan, reason: str, now_ms: int) -> None:
        """A manual pause of the plan's agent: it never lifts by itself. Writes
        a "paused" notice in the same step."""

    @abc.abstractmethod
    async def resume(self, plan: Plan, now_ms: int) -> bool:
        """Lift every pause of the plan's agent (manual and cap), with a
        "resumed" notice. False if there was none."""

    @abc.abstractmethod
    async def reconcile(self, plan: Plan, now_ms: int, cause: CapChange | None = None) -> list[Notice]:
        """After a config change: pause each current window whose spend is at
        or over its (new) cap, and lift cap pauses whose cap is now above the
        spend (or gone), with their notices. With a ``cause``, only the
        windows it names, and their notices say what changed (extra: cause,
        cap_before_nanos, cap_after_nanos). Returns the notices written."""

    @abc.abstractmethod
    async def lift_lapsed_pauses(self, plan: Plan, now_ms: int) -> list[Notice]:
        """Drop cap pauses of the plan's scopes whose period has ended; a
        "resumed" notice (once per pause) for each scope left with no pause in
        force. Returns the notices written."""

    @abc.abstractmethod
    async def paused_tag_values(self) -> list[str]:
        """The scopes of budgeted tag values ("customer:acme") that have a
        pause, cap or manual: what the rollover check looks at (an agent's
        are found through the agent)."""


class Ledger(abc.ABC):
    """The settled calls, one row per change to spend, for reports."""

    @abc.abstractmethod
    async def report_parts(self, by: str, since_day: str, until_day: str) -> list[ReportPart]:
        """The ledger aggregated in the store, for ``reports.summarize``: for
        ledger rows whose local day is within [since_day, until_day], the
        calls (agent, request id) under each key with one same input-token
        count (None: calls with no token counts), their number, cost and
        cached input tokens, in the order of ``reports.parts_of``. ``by``:
        agent, model, day, group, or a tag (feature, route, customer,
        environment, ...)."""

    async def usage_sums(self, bounds: Sequence[int], since_day: str, until_day: str) -> list[UsageSum]:
        """Ledger rows of local days [since_day, until_day] whose call time
        (when it was held, else when the row was written) is within
        [bounds[0], bounds[-1]), summed per provider, model and slice of
        ``bounds`` (UsageSum), sorted by those three. This reference reads
        every row (``cost_events``); a backend may sum in the store."""
        sums: dict[tuple[str, str, int], dict] = {}
        for event in [e async for e in self.cost_events(since_day, until_day)]:
            when = event.held_ms if event.held_ms is not None else event.at_ms
            zone = bisect.bisect_right(bounds, when) - 1
            if not 0 <= zone < len(bounds) - 1:
                continue
            key = (event.provider, event.model or event.model_requested, zone)
            acc = sums.setdefault(key, {"calls": set(), "estimates": set(), "cost": 0, "estimate": 0,
                                        "tokens": [0, 0, 0, 0]})
            acc["cost"] += event.cost_nanos
            if event.kind == "release":
                continue
            call = (event.agent_id, event.request_id)
            acc["calls"].add(call)
            if event.cost_source == "usage":
                for i, n in enumerate((event.input_tokens, event.cached_input_tokens, event.cache_write_tokens,
                                       event.output_tokens)):
                    acc["tokens"][i] += n
            else:
                acc["estimates"].add(call)
                acc["estimate"] += event.cost_nanos
        return [UsageSum(provider, model, zone, len(a["calls"]), a["cost"], a["tokens"][0], a["tokens"][1],
                         a["tokens"][2], a["tokens"][3], len(a["estimates"]), a["estimate"])
                for (provider, model, zone), a in sorted(sums.items())]

    async def report(self, by: str, since_day: str, until_day: str) -> list[tuple[str, int, int]]:
        """(key, cost nanos, calls) per key, biggest cost first."""
        summary = summarize(await self.report_parts(by, since_day, until_day))
        return [(row.key, row.cost_nanos, row.calls) for row in summary.rows]

    @abc.abstractmethod
    async def tag_spend_by_hour(self, tags: Sequence[str], since_ms: int, until_ms: int) -> list[TagHourSpend]:
        """The cost of ledger rows settled in [since_ms, until_ms) per value of
        each of ``tags`` and per hour counted from ``since_ms`` (for the
        anomaly check), in the order of ``reports.hourly_by_tag``."""

    @abc.abstractmethod
    def cost_events(self, since_day: str, until_day: str) -> AsyncIterator[CostEvent]:
        """Every ledger row whose local day is within [since_day, until_day],
        whole, in the order written (per shard of the store), read in pages
        so a long range is never held in memory at once."""

    @abc.abstractmethod
    async def trim_ledger(self, before_ms: int) -> int:
        """Drop ledger rows settled before ``before_ms`` (retention)."""

    @abc.abstractmethod
    async def top_models(self, plan: Plan, since_ms: int, limit: int) -> list[tuple[str, int]]:
        """The models behind the agent's settled spend since ``since_ms``, biggest first."""

    @abc.abstractmethod
    async def activity(self, since_day: str, until_day: str) -> list[AgentActivity]:
        """Per agent with ledger rows whose local day is within [since_day,
        until_day] (rows of every kind): its calls (distinct request ids) and
        the time of its newest row, sorted by agent id."""

    @abc.abstractmethod
    async def recent_events(self, plan: Plan, limit: int) -> list[CostEvent]:
        """The plan's agent's newest ledger rows as ``cost_events`` gives them,
        newest first (by at_ms, then the order written), at most ``limit``.
        A backend may look at only the newest rows of a shared ledger (Redis:
        see its docstring)."""


class Outbox(abc.ABC):
    """Notices, written in the step that caused them and leased to one
    deliverer at a time."""

    @abc.abstractmethod
    async def add_notice(self, notice: Notice, plan: Plan | None) -> bool:
        """Write a notice unless one with its key exists (then False). ``plan``
        places it next to the agent's data; None for fleet-wide notices."""

    @abc.abstractmethod
    async def claim_notices(self, owner: str, now_ms: int, lease_ms: int, limit: int) -> list[Claimed]:
        """Lease due notices to ``owner``; a lease that runs out frees them again."""

    @abc.abstractmethod
    async def finish_notice(self, claimed: Claimed, outcome: str, now_ms: int, error: str = "") -> None:
        """``outcome``: "sent", "failed" (permanently) or "skipped" (nowhere to send)."""

    @abc.abstractmethod
    async def retry_notice(self, claimed: Claimed, next_ms: int, now_ms: int, error: str) -> None:
        """Deliver again from ``next_ms``."""

    @abc.abstractmethod
    async def events_after(self, cursor: object | None) -> tuple[list[Notice], object]:
        """Notices written after ``cursor`` (None: from now on), and the new cursor."""

    @abc.abstractmethod
    async def outbox_depth(self) -> int:
        """Notices not yet delivered."""

    @abc.abstractmethod
    async def recent_notices(self, limit: int, *, state: str | None = None,
                             scope: str | None = None) -> list[QueuedNotice]:
        """The newest notices (the order written), at most ``limit``, with how
        their delivery went, from among the newest ``rules.NOTICE_SCAN``
        (per outbox). ``state``: only those in that state (NOTICE_STATES).
        ``scope``: only those whose ``notice.scope`` is it, and for
        "agent:X" also those with ``notice.agent_id`` X
        (``rules.notice_in_scope``)."""


class Reconciliations(abc.ABC):
    """Reconciliation results (budgetd/reconcile): one per provider and UTC day."""

    @abc.abstractmethod
    async def claim_reconciliation(self, provider: str, day: str, pass_name: str, owner: str,
                                   now_ms: int, lease_ms: int) -> bool:
        """Lease one scheduled pass (``pass_name``: "first", "second", "hour-07", ...) of a
        provider's day to ``owner``, unless that pass is done (it is in the stored result's
        ``passes``) or leased to another owner whose lease has not run out (now_ms < its end).
        True: the caller runs the pass. Atomic: of many replicas claiming at once, one wins.
        The same owner claiming again while its lease lives gets True (renewal)."""

    @abc.abstractmethod
    async def save_reconciliation(self, result: ReconcileDay, owner: str) -> None:
        """Store ``result`` for (result.provider, result.day), replacing the one stored, with
        ``passes`` the union of the stored result's and the new one's (a pass once done
        stays done, whatever a later run brings), and drop ``owner``'s leases of that day."""

    @abc.abstractmethod
    async def reconciliations(self, since_day: str, until_day: str,
                              provider: str | None = None) -> list[ReconcileDay]:
        """The stored results of UTC days in [since_day, until_day] (YYYY-MM-DD, inclusive),
        of every provider or only ``provider``, sorted by provider then day."""


class Store(Lifecycle, Counters, Pauses, Ledger, Outbox, Reconciliations):
    """The whole contract: what budgetd needs of a backend."""


# The contracts Store joins, for whatever checks each one (the conformance suite).
CONTRACTS: tuple[type[abc.ABC], ...] = (Lifecycle, Counters, Pauses, Ledger, Outbox, Reconciliations)
