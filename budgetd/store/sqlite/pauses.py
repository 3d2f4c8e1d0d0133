"""Pauses on SQLite: an operator's pause and resume, and the cap pauses a
config change (reconcile) or a new period (lapsed) starts or lifts, each
with its notice in the same transaction."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

from ...notices import model as notices
from ...notices.model import Notice
from ...plan import Plan
from .. import rules
from ..model import Balance, CapChange
from .outbox import notify
from .reads import balances, pauses_of


def pause(conn: sqlite3.Connection, plan: Plan, reason: str, now_ms: int) -> None:
    scope = plan.owner_scope.key
    conn.execute("INSERT OR REPLACE INTO pauses VALUES (?, 'manual', '', '', ?, ?)", (scope, reason, now_ms))
    notify(conn, notices.paused_by_operator(plan.agent_id, reason, now_ms, scope))


def resume(conn: sqlite3.Connection, plan: Plan, now_ms: int) -> bool:
    scope = plan.owner_scope.key
    lifted = conn.execute("DELETE FROM pauses WHERE scope = ?", (scope,)).rowcount > 0
    if lifted:
        notify(conn, notices.resumed(plan.agent_id, scope, "operator", now_ms))
    return lifted


def reconcile(conn: sqlite3.Connection, plan: Plan, now_ms: int, cause: CapChange | None) -> list[Notice]:
    written = []
    spent_of = balances(conn, plan.counters)
    paused = {(p.scope, p.window, p.period) for p in pauses_of(conn, plan) if p.kind == "cap"}
    for limit, change in rules.reconcile_targets(plan, cause):
        spent = spent_of.get(limit.counter, Balance()).spent_nanos
        step = rules.reconcile_step(limit, spent, limit.counter in paused)
        if step is None:
            continue
        reason, pause_notice, resumed_notice = rules.reconcile_notices(plan, limit, change, now_ms)
        if step == "pause":
            conn.execute("INSERT OR IGNORE INTO pauses VALUES (?, 'cap', ?, ?, ?, ?)", (*limit.counter, reason, now_ms))
            notice = replace(pause_notice, spent_nanos=spent)
        else:
            conn.execute("DELETE FROM pauses WHERE scope = ? AND win = ? AND period = ?", limit.counter)
            notice = resumed_notice
        if notify(conn, notice):
            written.append(notice)
    return written


def paused_tag_values(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT DISTINCT scope FROM pauses WHERE scope NOT LIKE 'agent:%' "
                        "AND scope NOT LIKE 'group:%' ORDER BY scope").fetchall()
    return [scope for (scope,) in rows]


def lift_lapsed(conn: sqlite3.Connection, plan: Plan, now_ms: int) -> list[Notice]:
    written = []
    for scope in plan.scopes:
        cap_pauses = conn.execute("SELECT win, period FROM pauses WHERE scope = ? AND kind = 'cap'",
                                  (scope.key,)).fetchall()
        lapsed = rules.lapsed(plan, scope.key, cap_pauses)
        for window, period in lapsed:
            conn.execute("DELETE FROM pauses WHERE scope = ? AND win = ? AND period = ?", (scope.key, window, period))
        if lapsed and not any(p.scope == scope.key for p in pauses_of(conn, plan)):
            notice = rules.rollover_resumed(plan, scope.key, lapsed, now_ms)
            if notify(conn, notice):
                written.append(notice)
    return written
