"""The decisions of the store's steps, as pure functions of what the store
read: a hold's refusal, a settle's warnings and cap pauses, what a reconcile
or a new period does to a pause. The memory and SQLite stores call these
inside their step; the Redis store's Lua scripts follow the same rules, and
the conformance suite holds every store to them."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from decimal import Decimal

from budgetd_client.money import nanos_to_usd

from ..notices import model as notices
from ..notices.model import Notice
from ..plan import Limit, Plan, Scope
from ..reconcile.model import ReconcileDay
from .model import AgentActivity, Balance, CapChange, Counter, Denial, PauseRecord

# recent_notices looks at this many of the newest notices (per outbox): the
# dashboard's page of notices, filtered, not a search of all history.
NOTICE_SCAN = 10_000


def pause_in_force(plan: Plan, pauses: Iterable[PauseRecord]) -> tuple[PauseRecord, Limit | None] | None:
    """The pause that refuses this plan, if any: a manual pause of any of its
    scopes first, then a cap pause of a window in its current period."""
    scope_keys = {s.key for s in plan.scopes}
    pauses = [p for p in pauses if p.scope in scope_keys]
    for p in pauses:
        if p.kind == "manual":
            return p, None
    for limit in plan.limits:
        for p in pauses:
            if p.kind == "cap" and (p.scope, p.window, p.period) == limit.counter:
                return p, limit
    return None


def remaining(limit: Limit, balance: Balance) -> int:
    assert limit.cap_nanos is not None
    return max(0, limit.cap_nanos - balance.spent_nanos - balance.reserved_nanos)


def refuse_hold(
    plan: Plan, balances: Mapping[Counter, Balance], pauses: Iterable[PauseRecord], amount_nanos: int
) -> Denial | None:
    """None to allow; otherwise why not. Windows are checked in plan order
    (the agent's daily, monthly, then each group's), the first refusal named;
    a cap refusal is ``waitable`` when no window's spend alone refuses."""
    paused = pause_in_force(plan, pauses)
    if paused is not None:
        record, limit = paused
        left = remaining(limit, balances.get(limit.counter, Balance())) if limit and limit.cap_nanos is not None else 0
        return Denial("paused", Scope.parse(record.scope), limit, left, record)
    for limit in plan.limits:
        if limit.cap_nanos is None:
            continue
        balance = balances.get(limit.counter, Balance())
        if balance.spent_nanos + balance.reserved_nanos + amount_nanos > limit.cap_nanos:
            return Denial("cap", limit.scope, limit, remaining(limit, balance),
                          waitable=fits_with_no_reservations(plan, balances, amount_nanos))
    return None


def fits_with_no_reservations(plan: Plan, balances: Mapping[Counter, Balance], amount_nanos: int) -> bool:
    """Whether the amount would fit every capped window were every other
    call's reservation released: spent + amount <= cap for each."""
    return all(limit.cap_nanos is None
               or balances.get(limit.counter, Balance()).spent_nanos + amount_nanos <= limit.cap_nanos
               for limit in plan.limits)


def cap_reached(plan: Plan, counter: Counter, spent_nanos: int) -> tuple[Limit, int] | None:
    """The limit whose cap this counter's spend has reached, and that cap, if
    the counter is in a current period of the plan and capped."""
    limit = plan.capped.get(counter)
    if limit is None or limit.cap_nanos is None or spent_nanos < limit.cap_nanos:
        return None
    return limit, limit.cap_nanos


def warnings_crossed(plan: Plan, counter: Counter, spent_before: int, spent_after: int) -> list[Decimal]:
    """The plan's warn_at fractions this change of spend crossed, for a capped
    counter in a current period. None when the cap itself was reached: the
    pause notice says more than the warnings would."""
    limit = plan.capped.get(counter)
    if limit is None or limit.cap_nanos is None or spent_after >= limit.cap_nanos:
        return []
    return [f for f, threshold in plan.warning_thresholds[counter] if spent_before < threshold <= spent_after]


def cap_pause_reason(limit: Limit) -> str:
    assert limit.cap_nanos is not None, "a cap pause is of a capped window"
    who = "" if limit.scope.kind == "agent" else f"{limit.scope.kind} {limit.scope.name} "
    return f"{who}{limit.window.value} cap of {nanos_to_usd(limit.cap_nanos)} USD reached"


def day_and_groups(agent_id: str, counters) -> tuple[str | None, list[str]]:
    """For a ledger row: the daily period its cost was charged to (what a
    report by day groups on, matching status) and the groups charged."""
    day = next((period for scope, window, period in counters
                if window == "daily" and scope == f"agent:{agent_id}"), None)
    groups = sorted({scope.split(":", 1)[1] for scope, _, _ in counters if scope.startswith("group:")})
    return day, groups


def reconcile_targets(plan: Plan, cause: CapChange | None) -> list[tuple[Limit, tuple | None]]:
    """The windows a reconcile looks at, with their change: every capped one
    without a cause; with one, the windows it names (an uncapped one too: its
    cap was removed, so a cap pause of it lifts)."""
    if cause is None:
        return [(limit, None) for limit in plan.limits if limit.cap_nanos is not None]
    return [(limit, change) for limit in plan.limits if (change := cause.of(limit)) is not None]


def reconcile_step(limit: Limit, spent_nanos: int, cap_paused: bool) -> str | None:
    """What a reconcile does to one window: "pause" one at or over its cap
    that is not paused yet, "resume" a cap pause whose cap is now above the
    spend (or gone), otherwise nothing (None)."""
    over = limit.cap_nanos is not None and spent_nanos >= limit.cap_nanos
    if over and not cap_paused:
        return "pause"
    if not over and cap_paused:
        return "resume"
    return None


def lapsed(plan: Plan, scope_key: str, cap_pauses: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (window, period) of a scope's cap pauses whose period is no longer
    the plan's current one (or whose window the plan no longer has)."""
    return [(window, period) for window, period in cap_pauses
            if (limit := plan.limit_for(scope_key, window)) is None or limit.period.key != period]


def rollover_resumed(plan: Plan, scope_key: str, lapsed_pauses: list[tuple[str, str]], now_ms: int) -> Notice:
    """The "resumed" notice of a scope whose lapsed cap pauses were lifted,
    leaving none: named by the last of them (window, period), so it is
    written once per pause."""
    window, period = lapsed_pauses[-1]
    return notices.resumed(plan.agent_id, scope_key, "rollover", now_ms, window, period)


def reconcile_notices(plan: Plan, limit: Limit, change: tuple | None, now_ms: int) -> tuple[str, Notice, Notice]:
    """The pause reason and the two notices a reconcile may write for one
    window (the same on every store): both say the config changed the cap,
    and with a cause, from what to what."""
    scope, window, period = limit.counter
    cap = limit.cap_nanos
    # Uncapped now: the reason is never written (nothing is paused), only the "resumed" notice.
    reason = f"{cap_pause_reason(limit)} (the cap was changed in the config)" if cap is not None else ""
    record = PauseRecord(scope, "cap", window, period, reason, now_ms)
    paused = notices.paused_at_cap(plan.agent_id, record, 0, cap or 0, True)
    resumed = notices.resumed(plan.agent_id, scope, "config", now_ms, window, period)
    if change is not None:
        extra = {"cause": "config", "cap_before_nanos": change[0], "cap_after_nanos": change[1]}
        paused = replace(paused, extra={**paused.extra, **extra})
        resumed = replace(resumed, cap_nanos=cap or 0, extra={**resumed.extra, **extra})
    return reason, paused, resumed


def notice_in_scope(notice: Notice, scope: str) -> bool:
    """Whether recent_notices(scope=...) keeps the notice: its scope is the
    one asked for, or an agent's scope is asked for and the notice is about
    that agent (a group's pause that the agent's call tipped)."""
    if notice.scope == scope:
        return True
    kind, _, name = scope.partition(":")
    return kind == "agent" and notice.agent_id == name


class ActivityCounter:
    """Ledger rows added one at a time, as ``activity`` answers them: the
    distinct request ids and the newest row of each agent."""

    def __init__(self) -> None:
        self._calls: dict[str, set[str]] = {}
        self._last: dict[str, int] = {}

    def add(self, agent_id: str, request_id: str, at_ms: int) -> None:
        self._calls.setdefault(agent_id, set()).add(request_id)
        self._last[agent_id] = max(self._last.get(agent_id, at_ms), at_ms)

    def result(self) -> list[AgentActivity]:
        return [AgentActivity(agent, len(self._calls[agent]), self._last[agent]) for agent in sorted(self._calls)]


# -- reconciliation results (the Reconciliations contract) ------------------------------------


def claimable(done: Collection[str], lease: tuple[str, int] | None, pass_name: str, owner: str, now_ms: int) -> bool:
    """Whether ``owner`` may lease ``pass_name``: not done, and not leased to
    another owner whose lease (``lease``: its owner and end) still runs."""
    if pass_name in done:
        return False
    return lease is None or lease[0] == owner or now_ms >= lease[1]


def saved_result(result: ReconcileDay, stored: ReconcileDay | None) -> ReconcileDay:
    """What a save keeps: the new result, with the passes of both (sorted,
    each once); a pass once done stays done."""
    return result.with_passes(*(stored.passes if stored is not None else ()))


def in_range(provider: str, day: str, since_day: str, until_day: str, wanted: str | None) -> bool:
    """A stored result of ``provider``'s ``day`` is among those asked for."""
    return since_day <= day <= until_day and (wanted is None or provider == wanted)
