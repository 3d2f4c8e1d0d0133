"""A call's steps on the SQLite store (hold, settle, release, expire): plain
functions of a sqlite3 connection, each run inside one transaction by the
group committer, deciding by the shared rules (rules.py)."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from ...notices import model as notices
from ...plan import Plan
from .. import rules
from ..model import (
    Balance,
    CallFacts,
    CostEvent,
    Counter,
    HoldRequest,
    HoldResult,
    PauseRecord,
    PlanLookup,
    Pricing,
    RequestConflict,
    SettleRequest,
    SettleResult,
    cost_source,
)
from .outbox import notify
from .reads import counters_of


@dataclass(frozen=True)
class PlanStatements:
    """What the store derives from a plan once (see per_plan.py): a hold's
    read, and what a ledger row of the plan's periods records."""

    hold_read_sql: str
    hold_read_params: tuple[str, ...]
    day: str | None
    groups_json: str


def plan_statements(plan: Plan) -> PlanStatements:
    params = (*(part for counter in plan.counters for part in counter), *(s.key for s in plan.scopes))
    day, groups = rules.day_and_groups(plan.agent_id, plan.counters)
    return PlanStatements(_hold_read_sql(len(plan.counters), len(plan.scopes)), params, day, json.dumps(groups))


def _add_spent_sql(rows: int) -> str:
    """One statement for every counter of a step (one row each)."""
    return (
        "INSERT INTO counters (scope, win, period, spent_nanos, reserved_nanos) VALUES "
        + ", ".join(["(?, ?, ?, ?, ?)"] * rows)
        + " ON CONFLICT DO UPDATE SET spent_nanos = spent_nanos + excluded.spent_nanos,"
        " reserved_nanos = reserved_nanos + excluded.reserved_nanos"
        " RETURNING scope, win, period, spent_nanos"
    )


# Statements for up to 16 counters, built once: an agent's 3, 2 per group,
# 2 per budgeted tag value of the call.
_ADD_SPENT = [_add_spent_sql(n) for n in range(17)]


def _add_spent(conn: sqlite3.Connection, counters: Sequence[Counter], spent_delta: int,
               reserved_delta: int) -> dict[Counter, int]:
    """Add the deltas to every counter; their spend after."""
    if not counters:
        return {}
    sql = _ADD_SPENT[len(counters)] if len(counters) < len(_ADD_SPENT) else _add_spent_sql(len(counters))
    rows = conn.execute(sql, [v for c in counters for v in (*c, spent_delta, reserved_delta)]).fetchall()
    return {(scope, win, period): spent for scope, win, period, spent in rows}


@functools.lru_cache(maxsize=64)  # one string per shape of plan, shared by every plan of it
def _hold_read_sql(counters: int, scopes: int) -> str:
    """One read for everything a hold decides on: the call (if its id was
    seen), the balances of its counters and the pauses of its scopes, each
    row tagged by what it is."""
    return (
        f"SELECT 0, c.scope, c.win, c.period, c.spent_nanos, c.reserved_nanos, NULL FROM {counters_of(counters)} "
        "UNION ALL SELECT 1, scope, kind, win, period, reason, since_ms FROM pauses "
        f"WHERE scope IN ({', '.join('?' * scopes)}) "
        "UNION ALL SELECT 2, state, held_nanos, deadline_ms, NULL, NULL, NULL FROM calls "
        "WHERE agent_id = ? AND request_id = ?"
    )


def hold(conn: sqlite3.Connection, req: HoldRequest, statements: PlanStatements) -> HoldResult:
    plan = req.plan
    balances: dict[Counter, Balance] = {}
    pauses: list[PauseRecord] = []
    read = conn.execute(statements.hold_read_sql, (*statements.hold_read_params, req.agent_id, req.request_id))
    for row in read.fetchall():
        if row[0] == 0:
            balances[row[1:4]] = Balance(row[4], row[5])
        elif row[0] == 1:
            pauses.append(PauseRecord(*row[1:]))
        elif row[1] == "held":  # a retry of a hold that went through
            return HoldResult(True, row[2], row[3])
        else:
            raise RequestConflict(f"request_id {req.request_id} was already {row[1]}")
    denial = rules.refuse_hold(plan, balances, pauses, req.amount_nanos)
    if denial is not None:
        return HoldResult(False, denial=denial)
    _add_spent(conn, plan.counters, 0, req.amount_nanos)
    conn.execute(
        "INSERT INTO calls (request_id, agent_id, state, held_nanos, counters, tags, created_ms, deadline_ms) "
        "VALUES (?, ?, 'held', ?, ?, ?, ?, ?)",
        (req.request_id, req.agent_id, req.amount_nanos, plan.counters_json, _tags_json(req.tags),
         req.now_ms, req.deadline_ms),
    )
    return HoldResult(True, req.amount_nanos, req.deadline_ms)


def _tags_json(tags) -> str:
    return json.dumps(dict(tags)) if tags else "{}"


def _charge(conn, plan: Plan | None, counters, spent_delta: int, reserved_delta: int, now_ms: int,
            agent_id: str = "", warn: bool = False) -> tuple[PauseRecord, ...]:
    """Apply the deltas to every counter; warn at each threshold crossed and
    pause each window brought to its cap, with their notices, in this step.
    ``counters`` are tuples (scope, window, period)."""
    spent_after = _add_spent(conn, counters, spent_delta, reserved_delta)
    if plan is None:
        return ()
    started = []
    for counter in counters:
        spent = spent_after[counter]
        reached = rules.cap_reached(plan, counter, spent)
        if reached is None:  # under its cap, uncapped, or a period that is no longer current
            if warn:  # a settle's cost warns; a charged expiry does not
                for fraction in rules.warnings_crossed(plan, counter, spent - spent_delta, spent):
                    notify(conn, notices.warning(agent_id, plan.capped[counter], fraction, spent, now_ms))
            continue
        limit, cap = reached
        scope, window, period = counter
        record = PauseRecord(scope, "cap", window, period, rules.cap_pause_reason(limit), now_ms)
        inserted = conn.execute(
            "INSERT OR IGNORE INTO pauses VALUES (?, ?, ?, ?, ?, ?)",
            (record.scope, record.kind, record.window, record.period, record.reason, record.since_ms),
        ).rowcount
        if inserted:
            started.append(record)
            notify(conn, notices.paused_at_cap(agent_id, record, spent, cap))
    return tuple(started)


def _counters(plan: Plan | None, counters_json: str) -> tuple[Counter, ...]:
    """A call's stored counters as tuples; the plan's own (no parsing) when
    the call was held in the current periods, as nearly every one is."""
    if plan is not None and counters_json == plan.counters_json:
        return plan.counters
    return tuple(tuple(c) for c in json.loads(counters_json))


def _day_and_groups_json(plan: Plan | None, statements: PlanStatements | None, agent_id: str,
                         counters) -> tuple[str | None, str]:
    if plan is not None and statements is not None and counters is plan.counters:
        return statements.day, statements.groups_json
    day, groups = rules.day_and_groups(agent_id, counters)
    return day, json.dumps(groups)


def _ledger(conn, request_id, agent_id, kind, cost, tags_json, held_ms, now_ms, counters,
            pricing: Pricing | None, plan: Plan | None, statements: PlanStatements | None,
            source: str, facts: CallFacts | None = None) -> CostEvent:
    priced = (
        (pricing.model, pricing.provider, pricing.input_tokens, pricing.cached_input_tokens, pricing.output_tokens,
         pricing.reasoning_tokens, pricing.price_version, pricing.cache_write_tokens)
        if pricing is not None else (None,) * 8
    )
    said = (facts.model_requested or None, facts.latency_ms, facts.error_code or None) if facts else (None,) * 3
    day, groups = _day_and_groups_json(plan, statements, agent_id, counters)
    conn.execute(
        "INSERT INTO ledger (request_id, agent_id, kind, cost_nanos, tags, held_ms, settled_ms, model, provider, "
        "input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, price_version, cache_write_tokens, "
        "day, groups, cost_source, model_requested, latency_ms, error_code) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (request_id, agent_id, kind, cost, tags_json, held_ms, now_ms, *priced, day, groups, source, *said),
    )
    return CostEvent.of(request_id, kind, now_ms, held_ms, day, agent_id, json.loads(groups), json.loads(tags_json),
                        cost, source, pricing, facts)


# A settle's tags are added to the hold's (a settle's value wins); ? twice: the
# settle's tags as JSON, or NULL for none.
_MERGED_TAGS = "tags = CASE WHEN ? IS NULL THEN tags ELSE json_patch(tags, ?) END"


def settle(conn: sqlite3.Connection, req: SettleRequest, statements: PlanStatements) -> SettleResult:
    # The common case, a call still held, in one statement: a held call has
    # charged nothing yet, so what it adds to spend is what it now charges.
    tags = json.dumps(dict(req.tags)) if req.tags else None
    row = conn.execute(
        f"UPDATE calls SET state = 'settled', charged_nanos = coalesce(?, held_nanos), ended_ms = ?, {_MERGED_TAGS} "
        "WHERE agent_id = ? AND request_id = ? AND state = 'held' "
        "RETURNING held_nanos, charged_nanos, counters, tags, created_ms",
        (req.actual_nanos, req.now_ms, tags, tags, req.agent_id, req.request_id),
    ).fetchone()
    if row is not None:
        held, amount, counters_json, tags_json, created_ms = row
        counters = _counters(req.plan, counters_json)
        paused = _charge(conn, req.plan, counters, amount, -held, req.now_ms, req.agent_id, warn=True)
        event = _ledger(conn, req.request_id, req.agent_id, "settle", amount, tags_json, created_ms, req.now_ms,
                        counters, req.pricing, req.plan, statements, cost_source(req.actual_nanos, req.pricing),
                        req.facts)
        return SettleResult(amount, paused=paused, event=event)
    return _settle_not_held(conn, req, statements)


def _settle_not_held(conn: sqlite3.Connection, req: SettleRequest, statements: PlanStatements) -> SettleResult:
    """No call, or one that was settled, released or expired."""
    row = conn.execute(
        "SELECT state, held_nanos, charged_nanos, counters, tags, created_ms FROM calls "
        "WHERE agent_id = ? AND request_id = ?",
        (req.agent_id, req.request_id),
    ).fetchone()
    if row is None:  # no hold (fail-open, or a hold this store never saw): charge the current windows
        amount = req.actual_nanos if req.actual_nanos is not None else req.plan.estimate_nanos
        counters = req.plan.counters
        tags = _tags_json(req.tags)
        conn.execute(
            "INSERT INTO calls (request_id, agent_id, state, held_nanos, charged_nanos, counters, tags, created_ms, "
            "deadline_ms, ended_ms) VALUES (?, ?, 'settled', 0, ?, ?, ?, ?, ?, ?)",
            (req.request_id, req.agent_id, amount, req.plan.counters_json, tags, req.now_ms, req.now_ms, req.now_ms),
        )
        paused = _charge(conn, req.plan, counters, amount, 0, req.now_ms, req.agent_id, warn=True)
        event = _ledger(conn, req.request_id, req.agent_id, "settle", amount, tags, None, req.now_ms, counters,
                        req.pricing, req.plan, statements, cost_source(req.actual_nanos, req.pricing), req.facts)
        return SettleResult(amount, paused=paused, event=event)
    state, held, charged, counters_json, _, created_ms = row
    if state == "settled":
        return SettleResult(charged, duplicate=True)
    # released or expired: no reservation is left; the cost comes, less what
    # an expiry already charged (counted once).
    amount = req.actual_nanos if req.actual_nanos is not None else held
    spent_delta = amount - charged
    counters = _counters(req.plan, counters_json)
    paused = _charge(conn, req.plan, counters, spent_delta, 0, req.now_ms, req.agent_id, warn=True)
    new_tags = json.dumps(dict(req.tags)) if req.tags else None
    (tags,) = conn.execute(
        f"UPDATE calls SET state = 'settled', charged_nanos = ?, ended_ms = ?, {_MERGED_TAGS} "
        "WHERE agent_id = ? AND request_id = ? RETURNING tags",
        (amount, req.now_ms, new_tags, new_tags, req.agent_id, req.request_id),
    ).fetchone()
    event = _ledger(conn, req.request_id, req.agent_id, "settle", spent_delta, tags, created_ms, req.now_ms, counters,
                    req.pricing, req.plan, statements, cost_source(req.actual_nanos, req.pricing), req.facts)
    return SettleResult(amount, paused=paused, event=event)


def release(conn: sqlite3.Connection, request_id: str, agent_id: str) -> bool:
    row = conn.execute(
        "SELECT state, held_nanos, counters FROM calls WHERE agent_id = ? AND request_id = ?", (agent_id, request_id)
    ).fetchone()
    if row is None or row[0] != "held":
        return False
    _charge(conn, None, _counters(None, row[2]), 0, -row[1], 0)
    conn.execute("UPDATE calls SET state = 'released' WHERE agent_id = ? AND request_id = ?", (agent_id, request_id))
    return True


def record_failure(conn: sqlite3.Connection, request_id: str, plan: Plan, now_ms: int, facts: CallFacts,
                   statements: PlanStatements) -> CostEvent | None:
    """A release, and a ledger row of cost 0 with the call's error."""
    row = conn.execute(
        "SELECT counters, tags, created_ms FROM calls WHERE agent_id = ? AND request_id = ? AND state = 'held'",
        (plan.agent_id, request_id)).fetchone()
    if row is None or not release(conn, request_id, plan.agent_id):
        return None
    counters_json, tags_json, created_ms = row
    return _ledger(conn, request_id, plan.agent_id, "release", 0, tags_json, created_ms, now_ms,
                   _counters(plan, counters_json), None, plan, statements, "caller", facts)


def expire(conn: sqlite3.Connection, now_ms: int, charge: bool, plan_for: PlanLookup,
           written: list[CostEvent] | None = None) -> int:
    rows = conn.execute(
        "SELECT request_id, agent_id, held_nanos, counters, tags, created_ms FROM calls "
        "WHERE state = 'held' AND deadline_ms <= ? ORDER BY deadline_ms LIMIT 1000",
        (now_ms,),
    ).fetchall()
    for request_id, agent_id, held, counters_json, tags_json, created_ms in rows:
        charged = held if charge else 0
        plan = plan_for(agent_id) if charge else None
        counters = _counters(plan, counters_json)
        _charge(conn, plan, counters, charged, -held, now_ms, agent_id)
        conn.execute(
            "UPDATE calls SET state = 'expired', charged_nanos = ?, ended_ms = ? WHERE agent_id = ? AND request_id = ?",
            (charged, now_ms, agent_id, request_id),
        )
        if charged:
            event = _ledger(conn, request_id, agent_id, "expiry", charged, tags_json, created_ms, now_ms, counters,
                            None, plan, None, "estimate")
            if written is not None:
                written.append(event)
    return len(rows)
