"""The reference store: the whole contract in this process's memory, built on
the shared rules (rules.py), for tests and trying budgetd out
(``store.url: memory://``). Everything is lost when the process exits.

It is what the contract means, in the fewest lines: the conformance suite
runs on it first, and a new store can be read against it. Every step runs
without awaiting, so on one event loop each is atomic as the contract asks.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from .. import reports
from ..notices import model as notices
from ..notices.model import Notice
from ..plan import Plan
from ..reconcile.model import ReconcileDay
from ..reports import ReportPart, TagHourSpend
from . import rules
from .base import Store
from .model import (
    AgentActivity,
    AgentState,
    Balance,
    CallFacts,
    CapChange,
    Claimed,
    CostEvent,
    Counter,
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
    cost_source,
)

log = logging.getLogger("budgetd.store.memory")

EXPIRED_PER_SWEEP = 1000  # as SQLite: one sweep expires at most this many holds


@dataclass
class _Call:
    """One request of one agent: its hold and how it ended."""

    state: str  # "held", "settled", "released" or "expired"
    held_nanos: int
    charged_nanos: int  # what this request has added to spent
    counters: tuple[Counter, ...]
    tags: dict[str, str]
    created_ms: int
    deadline_ms: int


@dataclass(frozen=True)
class _LedgerRow:
    request_id: str
    agent_id: str
    cost_nanos: int
    tags: Mapping[str, str]
    settled_ms: int
    model: str | None
    day: str | None  # the local day the cost was charged to
    groups: tuple[str, ...]
    event: CostEvent  # the row whole, for the export
    pricing: Pricing | None = None  # its token counts, when priced from usage


@dataclass
class _Queued:
    """A notice in the outbox, kept as the JSON a store would keep."""

    id: int
    payload: str
    next_ms: int
    state: str = "pending"  # "pending", "sent", "failed" or "skipped"
    attempts: int = 0
    lease_until_ms: int = 0
    last_error: str = ""  # kept when a later delivery succeeds: why it took more than one
    done_ms: int | None = None


@dataclass
class _Data:
    """What the store holds; it outlives a close and an open, as a file would."""

    counters: dict[Counter, Balance] = field(default_factory=dict)
    pauses: dict[Counter, PauseRecord] = field(default_factory=dict)  # (scope, window, period); "" "" for manual
    calls: dict[tuple[str, str], _Call] = field(default_factory=dict)  # by (agent, request id)
    held: dict[tuple[str, str], _Call] = field(default_factory=dict)  # the calls still held: what expiry looks at
    ledger: list[_LedgerRow] = field(default_factory=list)
    outbox: list[_Queued] = field(default_factory=list)  # in the order written
    notice_keys: set[str] = field(default_factory=set)
    # Reconciliation results by (provider, day), kept as the JSON a store would keep,
    # and the leases of their passes by (provider, day, pass): (owner, until_ms).
    reconciled: dict[tuple[str, str], str] = field(default_factory=dict)
    reconcile_leases: dict[tuple[str, str, str], tuple[str, int]] = field(default_factory=dict)


class MemoryStore(Store):
    def __init__(self) -> None:
        self._data = _Data()
        self._open = False

    # -- lifecycle ----------------------------------------------------------------
    async def open(self) -> None:
        log.warning("store %s keeps everything in memory: it is all lost when budgetd exits "
                    "(for tests and trying things out)", "memory://")
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def ping(self) -> None:
        self._opened()

    def _opened(self) -> _Data:
        if not self._open:
            raise StoreError("the store is closed")
        return self._data

    # -- counters and holds -----------------------------------------------------------
    async def hold(self, req: HoldRequest) -> HoldResult:
        data = self._opened()
        call = data.calls.get((req.agent_id, req.request_id))
        if call is not None:
            if call.state == "held":  # a retry of a hold that went through
                return HoldResult(True, call.held_nanos, call.deadline_ms)
            raise RequestConflict(f"request_id {req.request_id} was already {call.state}")
        plan = req.plan
        denial = rules.refuse_hold(plan, data.counters, self._pauses_of(plan), req.amount_nanos)
        if denial is not None:
            return HoldResult(False, denial=denial)
        self._add(plan.counters, 0, req.amount_nanos)
        data.calls[(req.agent_id, req.request_id)] = data.held[(req.agent_id, req.request_id)] = _Call(
            "held", req.amount_nanos, 0, plan.counters, dict(req.tags), req.now_ms, req.deadline_ms)
        return HoldResult(True, req.amount_nanos, req.deadline_ms)

    async def settle(self, req: SettleRequest) -> SettleResult:
        data = self._opened()
        call = data.calls.get((req.agent_id, req.request_id))
        if call is None:  # no hold (fail-open, or a hold this store never saw): charge the current windows
            amount = req.actual_nanos if req.actual_nanos is not None else req.plan.estimate_nanos
            call = data.calls[(req.agent_id, req.request_id)] = _Call(
                "settled", 0, amount, req.plan.counters, dict(req.tags), req.now_ms, req.now_ms)
            paused = self._charge(req.plan, call.counters, amount, 0, req.now_ms, warn=True)
            event = self._write_ledger(req.request_id, req.agent_id, amount, call, req.now_ms, req.pricing,
                                       "settle", cost_source(req.actual_nanos, req.pricing), req.facts, None)
            return SettleResult(amount, paused=paused, event=event)
        if call.state == "settled":
            return SettleResult(call.charged_nanos, duplicate=True)
        # Held: its reservation goes. Released or expired: none is left, and
        # the cost comes less what an expiry already charged (counted once).
        amount = req.actual_nanos if req.actual_nanos is not None else call.held_nanos
        spent_delta = amount - call.charged_nanos
        reserved_delta = -call.held_nanos if call.state == "held" else 0
        paused = self._charge(req.plan, call.counters, spent_delta, reserved_delta, req.now_ms, warn=True)
        self._end((req.agent_id, req.request_id), "settled", amount)
        call.tags.update(req.tags)  # a settle's tags are added to the hold's, and win
        event = self._write_ledger(req.request_id, req.agent_id, spent_delta, call, req.now_ms, req.pricing,
                                   "settle", cost_source(req.actual_nanos, req.pricing), req.facts, call.created_ms)
        return SettleResult(amount, paused=paused, event=event)

    async def release(self, request_id: str, plan: Plan, now_ms: int) -> bool:
        call = self._opened().held.get((plan.agent_id, request_id))
        if call is None:
            return False
        self._add(call.counters, 0, -call.held_nanos)
        self._end((plan.agent_id, request_id), "released", 0)
        return True

    async def record_failure(self, request_id: str, plan: Plan, now_ms: int, facts: CallFacts) -> CostEvent | None:
        call = self._opened().held.get((plan.agent_id, request_id))
        if call is None:
            return None
        await self.release(request_id, plan, now_ms)
        return self._write_ledger(request_id, plan.agent_id, 0, call, now_ms, None, "release", "caller", facts,
                                  call.created_ms)

    async def expire(self, now_ms: int, charge: bool, plan_for: PlanLookup,
                     events: list[CostEvent] | None = None) -> int:
        data = self._opened()
        due = sorted(((key, call) for key, call in data.held.items() if call.deadline_ms <= now_ms),
                     key=lambda item: item[1].deadline_ms)[:EXPIRED_PER_SWEEP]
        for (agent_id, request_id), call in due:
            charged = call.held_nanos if charge else 0
            plan = plan_for(agent_id) if charge else None
            if plan is None:
                self._add(call.counters, charged, -call.held_nanos)
            else:
                self._charge(plan, call.counters, charged, -call.held_nanos, now_ms, warn=False)
            self._end((agent_id, request_id), "expired", charged)
            if charged:
                event = self._write_ledger(request_id, agent_id, charged, call, now_ms, None, "expiry", "estimate",
                                           None, call.created_ms)
                if events is not None:
                    events.append(event)
        return len(due)

    async def read(self, plan: Plan) -> AgentState:
        data = self._opened()
        balances = {c: data.counters[c] for c in plan.counters if c in data.counters}
        return AgentState(balances, self._pauses_of(plan))

    async def read_many(self, plans: Sequence[Plan]) -> list[AgentState]:
        return [await self.read(plan) for plan in plans]

    async def spent_in(self, plan: Plan, scope: str, window: str, periods: list[str]) -> dict[str, int]:
        counters = self._opened().counters
        return {p: counters[(scope, window, p)].spent_nanos for p in periods if (scope, window, p) in counters}

    async def top_spenders(self, window: str, period: str, plan_for: PlanLookup, limit: int) -> list[tuple[str, int]]:
        found = [(scope.split(":", 1)[1], balance.spent_nanos)
                 for (scope, w, p), balance in self._opened().counters.items()
                 if w == window and p == period and scope.startswith("agent:") and balance.spent_nanos > 0]
        return _biggest_first(found)[:limit]

    async def active_agents(self, daily_period: str, monthly_period: str) -> list[str]:
        data = self._opened()
        current = {("daily", daily_period), ("monthly", monthly_period)}
        scopes = {scope for scope, window, period in data.counters if (window, period) in current}
        scopes |= {record.scope for record in data.pauses.values()}
        return sorted(scope.split(":", 1)[1] for scope in scopes if scope.startswith("agent:"))

    # -- pauses -----------------------------------------------------------------------
    async def pause(self, plan: Plan, reason: str, now_ms: int) -> None:
        scope = plan.owner_scope.key
        self._opened().pauses[(scope, "", "")] = PauseRecord(scope, "manual", "", "", reason, now_ms)
        self._notify(notices.paused_by_operator(plan.agent_id, reason, now_ms, scope))

    async def resume(self, plan: Plan, now_ms: int) -> bool:
        data = self._opened()
        scope = plan.owner_scope.key
        lifted = [key for key, record in data.pauses.items() if record.scope == scope]
        for key in lifted:
            del data.pauses[key]
        if lifted:
            self._notify(notices.resumed(plan.agent_id, scope, "operator", now_ms))
        return bool(lifted)

    async def reconcile(self, plan: Plan, now_ms: int, cause: CapChange | None = None) -> list[Notice]:
        data = self._opened()
        written = []
        for limit, change in rules.reconcile_targets(plan, cause):
            spent = data.counters.get(limit.counter, Balance()).spent_nanos
            step = rules.reconcile_step(limit, spent, limit.counter in data.pauses)
            if step is None:
                continue
            reason, pause_notice, resumed_notice = rules.reconcile_notices(plan, limit, change, now_ms)
            if step == "pause":
                scope, window, period = limit.counter
                data.pauses[limit.counter] = PauseRecord(scope, "cap", window, period, reason, now_ms)
                notice = replace(pause_notice, spent_nanos=spent)
            else:
                del data.pauses[limit.counter]
                notice = resumed_notice
            if self._notify(notice):
                written.append(notice)
        return written

    async def paused_tag_values(self) -> list[str]:
        return sorted({record.scope for record in self._opened().pauses.values()
                       if not record.scope.startswith(("agent:", "group:"))})

    async def lift_lapsed_pauses(self, plan: Plan, now_ms: int) -> list[Notice]:
        data = self._opened()
        written = []
        for scope in plan.scopes:
            cap_pauses = [(record.window, record.period) for record in data.pauses.values()
                          if record.scope == scope.key and record.kind == "cap"]
            lapsed = rules.lapsed(plan, scope.key, cap_pauses)
            for window, period in lapsed:
                del data.pauses[(scope.key, window, period)]
            if lapsed and not any(record.scope == scope.key for record in data.pauses.values()):
                notice = rules.rollover_resumed(plan, scope.key, lapsed, now_ms)
                if self._notify(notice):
                    written.append(notice)
        return written

    # -- the ledger ---------------------------------------------------------------------
    async def report_parts(self, by: str, since_day: str, until_day: str) -> list[ReportPart]:
        return reports.parts_of(
            reports.LedgerEntry(_report_keys(by, row), (row.agent_id, row.request_id), row.cost_nanos,
                                row.pricing.input_tokens if row.pricing else None,
                                row.pricing.cached_input_tokens if row.pricing else None)
            for row in self._opened().ledger if row.day is not None and since_day <= row.day <= until_day)

    async def tag_spend_by_hour(self, tags: Sequence[str], since_ms: int, until_ms: int) -> list[TagHourSpend]:
        return reports.hourly_by_tag(((row.tags, row.settled_ms, row.cost_nanos) for row in self._opened().ledger),
                                     tags, since_ms, until_ms)

    async def cost_events(self, since_day: str, until_day: str) -> AsyncIterator[CostEvent]:
        for row in list(self._opened().ledger):
            if row.day is not None and since_day <= row.day <= until_day:
                yield row.event

    async def trim_ledger(self, before_ms: int) -> int:
        data = self._opened()
        kept = [row for row in data.ledger if row.settled_ms >= before_ms]
        dropped, data.ledger = len(data.ledger) - len(kept), kept
        return dropped

    async def top_models(self, plan: Plan, since_ms: int, limit: int) -> list[tuple[str, int]]:
        totals: dict[str, int] = {}
        for row in self._opened().ledger:
            if row.agent_id == plan.agent_id and row.settled_ms >= since_ms and row.model is not None:
                totals[row.model] = totals.get(row.model, 0) + row.cost_nanos
        return _biggest_first(list(totals.items()))[:limit]

    async def activity(self, since_day: str, until_day: str) -> list[AgentActivity]:
        counter = rules.ActivityCounter()
        for row in self._opened().ledger:
            if row.day is not None and since_day <= row.day <= until_day:
                counter.add(row.agent_id, row.request_id, row.settled_ms)
        return counter.result()

    async def recent_events(self, plan: Plan, limit: int) -> list[CostEvent]:
        rows = [(row.settled_ms, i, row.event) for i, row in enumerate(self._opened().ledger)
                if row.agent_id == plan.agent_id]
        return [event for _, _, event in sorted(rows, key=lambda r: (r[0], r[1]), reverse=True)[:limit]]

    # -- the outbox -----------------------------------------------------------------------
    async def add_notice(self, notice: Notice, plan: Plan | None) -> bool:
        self._opened()
        return self._notify(notice)

    async def claim_notices(self, owner: str, now_ms: int, lease_ms: int, limit: int) -> list[Claimed]:
        due = [queued for queued in self._opened().outbox
               if queued.state == "pending" and queued.next_ms <= now_ms and queued.lease_until_ms <= now_ms][:limit]
        for queued in due:
            queued.lease_until_ms, queued.attempts = now_ms + lease_ms, queued.attempts + 1
        return [Claimed(str(queued.id), Notice.from_json(queued.payload), queued.attempts) for queued in due]

    async def finish_notice(self, claimed: Claimed, outcome: str, now_ms: int, error: str = "") -> None:
        queued = self._queued(claimed)
        queued.state, queued.lease_until_ms, queued.done_ms = outcome, 0, now_ms
        queued.last_error = error or queued.last_error

    async def retry_notice(self, claimed: Claimed, next_ms: int, now_ms: int, error: str) -> None:
        queued = self._queued(claimed)
        queued.next_ms, queued.lease_until_ms, queued.last_error = next_ms, 0, error

    async def events_after(self, cursor: object | None) -> tuple[list[Notice], object]:
        outbox = self._opened().outbox
        if cursor is None:
            return [], len(outbox)
        assert isinstance(cursor, int)
        after = outbox[cursor:cursor + 1000]  # ids are positions, from 1
        return [Notice.from_json(queued.payload) for queued in after], cursor + len(after)

    async def outbox_depth(self) -> int:
        return sum(queued.state == "pending" for queued in self._opened().outbox)

    async def recent_notices(self, limit: int, *, state: str | None = None,
                             scope: str | None = None) -> list[QueuedNotice]:
        found: list[QueuedNotice] = []
        for queued in reversed(self._opened().outbox[-rules.NOTICE_SCAN:]):
            if len(found) >= limit:
                break
            notice = Notice.from_json(queued.payload)
            if (state is None or queued.state == state) and (scope is None or rules.notice_in_scope(notice, scope)):
                found.append(QueuedNotice(notice, queued.state, queued.attempts, queued.last_error, queued.done_ms))
        return found

    # -- reconciliation results ---------------------------------------------------------
    async def claim_reconciliation(self, provider: str, day: str, pass_name: str, owner: str,
                                   now_ms: int, lease_ms: int) -> bool:
        data = self._opened()
        stored = self._reconciled(provider, day)
        lease = data.reconcile_leases.get((provider, day, pass_name))
        if not rules.claimable(stored.passes if stored else (), lease, pass_name, owner, now_ms):
            return False
        data.reconcile_leases[(provider, day, pass_name)] = (owner, now_ms + lease_ms)
        return True

    async def save_reconciliation(self, result: ReconcileDay, owner: str) -> None:
        data = self._opened()
        saved = rules.saved_result(result, self._reconciled(result.provider, result.day))
        data.reconciled[(result.provider, result.day)] = saved.to_json()
        for key, (holder, _) in list(data.reconcile_leases.items()):
            if key[:2] == (result.provider, result.day) and holder == owner:
                del data.reconcile_leases[key]

    async def reconciliations(self, since_day: str, until_day: str,
                              provider: str | None = None) -> list[ReconcileDay]:
        found = sorted((key, text) for key, text in self._opened().reconciled.items()
                       if rules.in_range(*key, since_day, until_day, provider))
        return [ReconcileDay.from_json(text) for _, text in found]

    def _reconciled(self, provider: str, day: str) -> ReconcileDay | None:
        text = self._data.reconciled.get((provider, day))
        return ReconcileDay.from_json(text) if text is not None else None

    # -- inside a step ------------------------------------------------------------------
    def _pauses_of(self, plan: Plan) -> list[PauseRecord]:
        keys = {scope.key for scope in plan.scopes}
        return [record for counter, record in sorted(self._data.pauses.items()) if record.scope in keys]

    def _add(self, counters: Sequence[Counter], spent_delta: int, reserved_delta: int) -> None:
        for counter in counters:
            balance = self._data.counters.get(counter, Balance())
            self._data.counters[counter] = Balance(balance.spent_nanos + spent_delta,
                                                   balance.reserved_nanos + reserved_delta)

    def _charge(self, plan: Plan, counters: tuple[Counter, ...], spent_delta: int, reserved_delta: int,
                now_ms: int, warn: bool) -> tuple[PauseRecord, ...]:
        """Apply the deltas; warn at each threshold crossed (a settle's cost
        warns, a charged expiry does not) and pause each window brought to its
        cap, with their notices."""
        self._add(counters, spent_delta, reserved_delta)
        started = []
        for counter in counters:
            spent = self._data.counters[counter].spent_nanos
            reached = rules.cap_reached(plan, counter, spent)
            if reached is None:
                if warn:
                    for fraction in rules.warnings_crossed(plan, counter, spent - spent_delta, spent):
                        self._notify(notices.warning(plan.agent_id, plan.capped[counter], fraction, spent, now_ms))
                continue
            if counter in self._data.pauses:
                continue
            limit, cap = reached
            scope, window, period = counter
            record = PauseRecord(scope, "cap", window, period, rules.cap_pause_reason(limit), now_ms)
            self._data.pauses[counter] = record
            started.append(record)
            self._notify(notices.paused_at_cap(plan.agent_id, record, spent, cap))
        return tuple(started)

    def _end(self, key: tuple[str, str], state: str, charged_nanos: int) -> None:
        """A call ends: settled, released or expired, having charged this much in all."""
        call = self._data.calls[key]
        call.state, call.charged_nanos = state, charged_nanos
        self._data.held.pop(key, None)

    def _write_ledger(self, request_id: str, agent_id: str, cost_nanos: int, call: _Call, now_ms: int,
                      pricing: Pricing | None, kind: str, source: str, facts: CallFacts | None,
                      held_ms: int | None) -> CostEvent:
        day, groups = rules.day_and_groups(agent_id, call.counters)
        event = CostEvent.of(request_id, kind, now_ms, held_ms, day, agent_id, groups, call.tags, cost_nanos, source,
                             pricing, facts)
        self._data.ledger.append(_LedgerRow(request_id, agent_id, cost_nanos, dict(call.tags), now_ms,
                                            pricing.model if pricing is not None else None, day, tuple(groups),
                                            event, pricing))
        return event

    def _notify(self, notice: Notice) -> bool:
        """Write a notice unless its key was written before."""
        data = self._data
        if notice.key in data.notice_keys:
            return False
        data.notice_keys.add(notice.key)
        data.outbox.append(_Queued(len(data.outbox) + 1, notice.to_json(), notice.at_ms))
        return True

    def _queued(self, claimed: Claimed) -> _Queued:
        return self._opened().outbox[int(claimed.id) - 1]


def _biggest_first(items: list[tuple[str, int]]) -> list[tuple[str, int]]:
    return sorted(items, key=lambda item: (-item[1], item[0]))


def _report_keys(by: str, row: _LedgerRow) -> Sequence[str]:
    return reports.report_keys(by, row.agent_id, row.model or "", row.day or "", row.groups, row.tags)
