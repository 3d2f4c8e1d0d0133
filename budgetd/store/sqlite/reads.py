"""Reads of counters and pauses on SQLite: an agent's state, a page of agents
in a few statements (not a few per agent), and the listings."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from ...plan import Plan
from ..model import AgentState, Balance, Counter, PauseRecord

# Rows named per statement: three parameters a counter, well under SQLite's
# limit on the parameters of one statement.
CHUNK = 500


def counters_of(count: int) -> str:
    """The FROM clause of a read of ``count`` counters (three parameters each)
    as ``c``: a primary-key lookup per counter. Written as a join from the
    list, not ``(scope, win, period) IN (VALUES ...)``, which SQLite runs as
    a scan of the whole table: 20 ms a hold at 100,000 counters."""
    return (f"(VALUES {', '.join(['(?, ?, ?)'] * count)}) AS wanted CROSS JOIN counters AS c "
            "ON c.scope = wanted.column1 AND c.win = wanted.column2 AND c.period = wanted.column3")


def balances(conn: sqlite3.Connection, counters: Sequence[Counter]) -> dict[Counter, Balance]:
    """The counters that exist among ``counters`` (absent: nothing spent or held)."""
    found: dict[Counter, Balance] = {}
    for start in range(0, len(counters), CHUNK):
        chunk = counters[start:start + CHUNK]
        rows = conn.execute(
            f"SELECT c.scope, c.win, c.period, c.spent_nanos, c.reserved_nanos FROM {counters_of(len(chunk))}",
            [part for counter in chunk for part in counter],
        ).fetchall()
        found.update(((s, w, p), Balance(spent, reserved)) for s, w, p, spent, reserved in rows)
    return found


def pauses(conn: sqlite3.Connection, scope_keys: Sequence[str]) -> list[PauseRecord]:
    """The pauses of the scopes, by scope, window and period."""
    found: list[PauseRecord] = []
    for start in range(0, len(scope_keys), CHUNK):
        chunk = scope_keys[start:start + CHUNK]
        rows = conn.execute(
            "SELECT scope, kind, win, period, reason, since_ms FROM pauses "
            f"WHERE scope IN ({', '.join('?' * len(chunk))})", chunk).fetchall()
        found += [PauseRecord(*row) for row in rows]
    return sorted(found, key=lambda p: (p.scope, p.window, p.period))


def pauses_of(conn: sqlite3.Connection, plan: Plan) -> list[PauseRecord]:
    return pauses(conn, [s.key for s in plan.scopes])


def read(conn: sqlite3.Connection, plan: Plan) -> AgentState:
    return AgentState(balances(conn, plan.counters), pauses_of(conn, plan))


def read_many(conn: sqlite3.Connection, plans: Sequence[Plan]) -> list[AgentState]:
    """``read`` of every plan, with one statement for all their counters and
    one for all their pauses (per CHUNK rows); agents of one group share its rows."""
    found = balances(conn, list(dict.fromkeys(c for plan in plans for c in plan.counters)))
    by_scope: dict[str, list[PauseRecord]] = {}
    for record in pauses(conn, list(dict.fromkeys(s.key for plan in plans for s in plan.scopes))):
        by_scope.setdefault(record.scope, []).append(record)
    return [AgentState({c: found[c] for c in plan.counters if c in found},
                       [record for key in sorted(s.key for s in plan.scopes) for record in by_scope.get(key, ())])
            for plan in plans]


def spent_in(conn: sqlite3.Connection, scope: str, window: str, periods: list[str]) -> dict[str, int]:
    return dict(conn.execute(
        f"SELECT period, spent_nanos FROM counters WHERE scope = ? AND win = ? AND period IN "
        f"({', '.join('?' * len(periods))})", (scope, window, *periods)).fetchall())


def top_spenders(conn: sqlite3.Connection, window: str, period: str, limit: int) -> list[tuple[str, int]]:
    return [(scope.split(":", 1)[1], spent) for scope, spent in conn.execute(
        "SELECT scope, spent_nanos FROM counters WHERE win = ? AND period = ? AND scope LIKE 'agent:%' "
        "AND spent_nanos > 0 ORDER BY spent_nanos DESC, scope LIMIT ?", (window, period, limit)).fetchall()]


def active_agents(conn: sqlite3.Connection, daily_period: str, monthly_period: str) -> list[str]:
    rows = conn.execute(
        "SELECT DISTINCT scope FROM counters WHERE scope LIKE 'agent:%' AND "
        "((win = 'daily' AND period = ?) OR (win = 'monthly' AND period = ?)) "
        "UNION SELECT DISTINCT scope FROM pauses WHERE scope LIKE 'agent:%'",
        (daily_period, monthly_period),
    ).fetchall()
    return sorted(scope.split(":", 1)[1] for (scope,) in rows)
