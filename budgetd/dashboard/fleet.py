"""The fleet page's rows: every agent (configured by exact id, or seen this
period), group and budgeted tag value, filtered, sorted and served a page at
a time.

At 100,000 agents most are quiet: an agent with no counter this period and
no pause of its own has spent nothing, so its sort keys are known from the
config alone. Only the agents that spent (the store's ``active_agents``)
are read in full for a sort by spend, from a snapshot at most
``SNAPSHOT_SECONDS`` old; the rows of the page shown are always read fresh.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import NamedTuple

from budgetd_client._core import month_days

from ..app import AgentReport, BudgetService
from ..config.schema import GLOB_CHARS
from ..plan import Plan, group_plan, tag_plan
from ..reports import NO_TAG
from ..store import AgentActivity, StoreError
from ..windows import current_periods
from .kept import Kept
from .rows import status_row

log = logging.getLogger("budgetd.dashboard")

KINDS = ("all", "agent", "group", "tag")
STATES = ("all", "paused", "active")
SORTS = ("id", "daily_spent", "daily_percent", "monthly_spent", "monthly_percent", "calls_today", "last_call")
MAX_PAGE_SIZE = 500
READ_CHUNK = 500  # states read in one store call
SNAPSHOT_SECONDS = 2.0  # the least time the row list and the states are kept (kept.py)


@dataclass(frozen=True)
class FleetQuery:
    kind: str = "all"
    q: str = ""
    state: str = "all"
    sort: str = "id"
    order: str = ""  # "asc" or "desc"; "": ascending by id, else descending (biggest first)
    page: int = 1
    page_size: int = 50


class Subject(NamedTuple):
    """Whose row: an agent, a group or a tag value ("customer=acme"). A
    tuple: 100,000 of them are hashed and sorted per request, at C speed."""

    id: str
    kind: str


@dataclass(frozen=True)
class _Snapshot:
    """The rows there are (kept: kept.py, SNAPSHOT_SECONDS)."""

    subjects: list[Subject]  # sorted by id
    activity: dict[str, AgentActivity]  # today's, per agent
    active: set[str]  # agents with spend or holds this period, or a pause (the others are quiet)


@dataclass
class _States:
    """What a sort or a state filter needs: the reports of every row that is
    not quiet, read at once (kept: at 100,000 agents that all spent this
    read takes seconds). The rows of the page shown are always read fresh."""

    subjects: list[Subject]  # the snapshot's, when these were read
    activity: dict[str, AgentActivity]
    reports: dict[Subject, AgentReport]
    ordered: dict[tuple[str, str], list[Subject]] = field(default_factory=dict)  # (sort, order) -> every row


class Fleet:
    def __init__(self, service: BudgetService, clock=time.monotonic) -> None:
        self.service = service
        self._snapshot: Kept[_Snapshot] = Kept(self._build, SNAPSHOT_SECONDS, clock)
        self._states: Kept[_States] = Kept(self._read_states, SNAPSHOT_SECONDS, clock)
        # (resolver, its agents' rows by id, their ids as a set), made once per config.
        self._configured: tuple[object, list[Subject], frozenset[str]] | None = None

    async def warm(self) -> None:
        """Read the row list once (the dashboard's start does, in the
        background): the first page asked for then need not wait for it when
        the read is slow. Left stale, so a quick read is done again for it."""
        try:
            await self._snapshot.get()
            self._snapshot.invalidate()
        except StoreError as err:
            log.warning("dashboard: the fleet was not read at start: %s", err)

    def close(self) -> None:
        self._snapshot.close()
        self._states.close()

    def invalidate(self) -> None:
        """Something changed (a notice: a pause, a resume, a cap reached): read
        the fleet again rather than wait for the snapshots to age."""
        self._snapshot.invalidate()
        self._states.invalidate()

    async def page(self, query: FleetQuery) -> dict:
        snapshot = await self._snapshot.get()
        order = query.order or ("asc" if query.sort == "id" else "desc")
        if query.sort == "id" and query.state == "all":
            subjects = snapshot.subjects[::-1] if order == "desc" else snapshot.subjects
        else:
            states = await self._states.get()
            subjects = await _ordered(states, query.sort, order)
            if query.state == "paused":
                subjects = [s for s in subjects if s in states.reports and states.reports[s].paused]
            elif query.state == "active":
                subjects = [s for s in subjects if s in states.reports and _active(states.reports[s])]
        if query.kind != "all":
            subjects = [s for s in subjects if s.kind == query.kind]
        if query.q:
            needle = query.q.casefold()
            subjects = [s for s in subjects if needle in s.id.casefold()]
        total = len(subjects)
        pages = max(1, -(-total // query.page_size))
        shown = subjects[(query.page - 1) * query.page_size:query.page * query.page_size]
        return {"rows": await self.rows(shown, snapshot.activity), "total": total, "page": query.page,
                "page_size": query.page_size, "pages": pages, "as_of": self.service.now().isoformat()}

    async def rows(self, subjects: Sequence[Subject], activity: dict[str, AgentActivity] | None = None) -> list[dict]:
        """The rows of ``subjects``, read now."""
        reports = await self._read(subjects)
        activity = activity if activity is not None else (await self._snapshot.get()).activity
        return [status_row(s.kind, s.id, reports[s], activity.get(s.id) if s.kind == "agent" else None)
                for s in subjects if s in reports]

    # -- what the rows are ------------------------------------------------------------------
    async def _build(self) -> _Snapshot:
        service = self.service
        resolver = service.in_force.resolver
        daily, monthly = current_periods(service.now(), service.in_force.config.zone)
        store = service.store
        active = set(await store.active_agents(daily.key, monthly.key))
        activity = {a.agent_id: a for a in await store.activity(daily.key, daily.key)}
        seen = active | activity.keys()
        configured, configured_ids = self._configured_rows(resolver)
        extra = sorted(seen - configured_ids)
        others = [Subject(a, "agent") for a in extra]
        others += [Subject(g.name, "group") for g in resolver.group_budgets]
        others += [Subject(f"{key}={value}", "tag") for key, value in await self._tag_values(monthly.key)]
        others.sort()
        subjects = list(heapq.merge(configured, others)) if others else configured
        return _Snapshot(subjects, activity, active)

    def _configured_rows(self, resolver) -> tuple[list[Subject], frozenset[str]]:
        """The rows of the config's exact agent ids, by id, and the ids, made
        once per config: 100,000 rows cost ~150 ms to make, too much per request."""
        if self._configured is None or self._configured[0] is not resolver:
            ids = resolver.exact_agent_ids
            self._configured = (resolver, [Subject(a, "agent") for a in sorted(ids)], frozenset(ids))
        return self._configured[1], self._configured[2]

    async def _tag_values(self, month: str) -> list[tuple[str, str]]:
        """Budgeted tag values: those the config lists, those with spend this month, those paused."""
        config = self.service.in_force.config
        if not config.tag_budgets:
            return []
        found = {(key, value) for key, budget in config.tag_budgets.items()
                 for value in budget.values if not GLOB_CHARS.search(value)}
        first, last = month_days(month)
        for key in config.tag_budgets:
            # A report by the tag lists the calls without it under NO_TAG: not a value.
            found |= {(key, row[0]) for row in await self.service.store.report(key, first, last)
                      if row[0] and row[0] != NO_TAG}
        for scope in await self.service.store.paused_tag_values():
            key, _, value = scope.partition(":")
            if key in config.tag_budgets:
                found.add((key, value))
        return sorted(found)

    # -- reading states ---------------------------------------------------------------------
    def _plan_of(self, subject: Subject) -> tuple[Plan, str] | None:
        service = self.service
        if subject.kind == "agent":
            plan = service.plan_or_none(subject.id)
            return (plan, service.in_force.resolver.source(subject.id)) if plan else None
        if subject.kind == "group":
            group = next((g for g in service.in_force.resolver.group_budgets if g.name == subject.id), None)
            if group is None:
                return None
            return group_plan(group, service.now(), service.in_force.config.zone), "configured"
        key, _, value = subject.id.partition("=")
        budget = service.in_force.resolver.tag_budget(key, value)
        if budget is None:
            return None
        return tag_plan(budget, service.now(), service.in_force.config.zone), budget.source

    async def _read(self, subjects: Sequence[Subject]) -> dict[Subject, AgentReport]:
        """The reports of ``subjects``, READ_CHUNK at a time: the store has one
        connection (SQLite) and the loop one thread, and the agents' holds and
        settles must get their turn between the chunks of a read of 100,000."""
        reports: dict[Subject, AgentReport] = {}
        for start in range(0, len(subjects), READ_CHUNK):
            if start:
                await asyncio.sleep(0)
            chunk = subjects[start:start + READ_CHUNK]
            planned = [(s, p) for s in chunk if (p := self._plan_of(s)) is not None]
            states = await self.service.store.read_many([plan for _, (plan, _) in planned])
            reports.update((s, AgentReport(plan, state, source))
                           for (s, (plan, source)), state in zip(planned, states, strict=True))
        return reports

    async def _read_states(self) -> _States:
        """The reports of groups, tag values and the agents that spent, hold
        or were paused (the rest are known to be quiet)."""
        snapshot = await self._snapshot.latest()
        wanted = [s for s in snapshot.subjects if s.kind != "agent" or s.id in snapshot.active]
        reports = await self._read(wanted)
        # A quiet agent in a paused group is paused too: read those agents' groups' pauses.
        paused_groups = {s.id for s, r in reports.items() if s.kind == "group" and r.paused}
        if paused_groups:
            resolver = self.service.in_force.resolver
            members = [s for s in snapshot.subjects if s.kind == "agent" and s not in reports
                       and (b := resolver.budget(s.id)) and any(g.name in paused_groups for g in b.groups)]
            reports.update(await self._read(members))
        return _States(snapshot.subjects, snapshot.activity, reports)


async def _ordered(states: _States, sort: str, order: str) -> list[Subject]:
    """Every row in the sort's order, worked out once per read of the states,
    in a worker thread: keying 100,000 rows takes a few hundred ms, and the
    loop keeps answering holds meanwhile (the GIL is handed back every few ms)."""
    found = states.ordered.get((sort, order))
    if found is None:
        found = await asyncio.to_thread(_sorted, states, sort, order == "desc")
        states.ordered[(sort, order)] = found
    return found


def _sorted(states: _States, sort: str, desc: bool) -> list[Subject]:
    """Only the rows read (or with calls today) are keyed and sorted; the
    quiet ones all share one value and stay in id order, merged in where
    that value falls: a sort of 100,000 agents of which 1,000 spent sorts 1,000."""
    subjects, reports, activity = states.subjects, states.reports, states.activity
    if sort == "id":
        return subjects[::-1] if desc else subjects
    key = _SORT_KEYS[sort]
    known = [s for s in subjects if s in reports or s.id in activity]
    known_set = set(known)
    quiet = [s for s in subjects if s not in known_set] if len(known) < len(subjects) else []
    quiet_value = key(None, None)
    keyed = [(key(reports.get(s), activity.get(s.id) if s.kind == "agent" else None), s) for s in known]
    # Rows without a value (no cap, no call) go last in either order; ties by id (stable sorts).
    empty = [s for v, s in keyed if v is None]
    valued = sorted(((v, s) for v, s in keyed if v is not None), key=lambda pair: pair[0], reverse=desc)
    if quiet_value is None:
        return [s for _, s in valued] + list(heapq.merge(empty, quiet))
    before = [s for v, s in valued if (v > quiet_value if desc else v < quiet_value)]
    tied = [s for v, s in valued if v == quiet_value]
    after = [s for v, s in valued if (v < quiet_value if desc else v > quiet_value)]
    return before + list(heapq.merge(tied, quiet)) + after + empty


# The sort keys read a balance by the plan's cached counter tuple, not through
# Limit.counter (which builds one): 100,000 rows are keyed at once.
def _spent_nanos(report: AgentReport, index: int) -> int:
    balance = report.state.balances.get(report.plan.counters[index])
    return balance.spent_nanos if balance is not None else 0


def _active(report: AgentReport) -> bool:
    balance = report.state.balances.get(report.plan.counters[0])
    return balance is not None and bool(balance.spent_nanos or balance.reserved_nanos)


def _spent(index: int):
    def key(report: AgentReport | None, _activity) -> int:
        return _spent_nanos(report, index) if report else 0
    return key


def _percent(index: int):
    """spent / cap as a fraction compared exactly (None: no cap)."""

    def key(report: AgentReport | None, _activity) -> Fraction | None:
        if report is None:
            return Fraction(0)  # a quiet agent: nothing spent (its cap is not looked up to sort)
        cap = report.plan.limits[index].cap_nanos
        if not cap:
            return None
        return Fraction(_spent_nanos(report, index), cap)
    return key


_SORT_KEYS = {
    "daily_spent": _spent(0),
    "monthly_spent": _spent(1),
    "daily_percent": _percent(0),
    "monthly_percent": _percent(1),
    "calls_today": lambda report, activity: activity.calls if activity else 0,
    "last_call": lambda report, activity: activity.last_ms if activity else None,
}


