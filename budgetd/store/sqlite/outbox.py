"""The outbox on SQLite: notices are rows written in the transaction of the
change that caused them, leased to a deliverer and marked when done."""

from __future__ import annotations

import sqlite3

from ...notices.model import Notice
from ..model import Claimed, QueuedNotice
from ..rules import NOTICE_SCAN


def notify(conn: sqlite3.Connection, notice: Notice) -> bool:
    """Write a notice unless its key was written before."""
    return conn.execute(
        "INSERT OR IGNORE INTO outbox (key, payload, created_ms, next_ms) VALUES (?, ?, ?, ?)",
        (notice.key, notice.to_json(), notice.at_ms, notice.at_ms),
    ).rowcount > 0


def claim(conn: sqlite3.Connection, owner: str, now_ms: int, lease_ms: int, limit: int) -> list[Claimed]:
    rows = conn.execute(
        "UPDATE outbox SET lease_owner = ?, lease_until_ms = ?, attempts = attempts + 1 WHERE id IN ("
        "SELECT id FROM outbox WHERE state = 'pending' AND next_ms <= ? AND lease_until_ms <= ? "
        "ORDER BY id LIMIT ?) RETURNING id, payload, attempts",
        (owner, now_ms + lease_ms, now_ms, now_ms, limit),
    ).fetchall()
    return [Claimed(str(i), Notice.from_json(p), a) for i, p, a in sorted(rows)]


def finish(conn: sqlite3.Connection, claimed: Claimed, outcome: str, now_ms: int, error: str) -> None:
    """A success keeps the error of an earlier try: why it took more than one."""
    conn.execute("UPDATE outbox SET state = ?, done_ms = ?, last_error = coalesce(?, last_error), "
                 "lease_until_ms = 0 WHERE id = ?", (outcome, now_ms, error or None, int(claimed.id)))


def retry(conn: sqlite3.Connection, claimed: Claimed, next_ms: int, error: str) -> None:
    conn.execute("UPDATE outbox SET next_ms = ?, last_error = ?, lease_until_ms = 0 WHERE id = ?",
                 (next_ms, error, int(claimed.id)))


def events_after(conn: sqlite3.Connection, cursor: object | None) -> tuple[list[Notice], object]:
    """The cursor is the id of the last row seen."""
    if cursor is None:
        return [], conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0]
    rows = conn.execute("SELECT id, payload FROM outbox WHERE id > ? ORDER BY id LIMIT 1000", (cursor,)).fetchall()
    return [Notice.from_json(p) for _, p in rows], (rows[-1][0] if rows else cursor)


def depth(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0]


# The rows of the newest NOTICE_SCAN ids, by the primary key, newest first
# (no sort), then filtered: a page of the dashboard never reads the whole
# history (ids count up by one a notice, so this is at most NOTICE_SCAN rows).
RECENT_SQL = (
    "SELECT payload, state, attempts, last_error, done_ms FROM outbox "
    "WHERE id > (SELECT coalesce(max(id), 0) FROM outbox) - :scan AND (:state IS NULL OR state = :state) "
    "AND (:scope IS NULL OR json_extract(payload, '$.scope') = :scope OR json_extract(payload, '$.agent_id') = :agent) "
    "ORDER BY id DESC LIMIT :limit")


def recent(conn: sqlite3.Connection, limit: int, state: str | None, scope: str | None) -> list[QueuedNotice]:
    """As rules.notice_in_scope: for "agent:X", the notices of agent X too."""
    agent = scope.partition(":")[2] if scope is not None and scope.startswith("agent:") else None
    rows = conn.execute(RECENT_SQL, {"scan": NOTICE_SCAN, "state": state, "scope": scope, "agent": agent,
                                     "limit": limit}).fetchall()
    return [QueuedNotice(Notice.from_json(payload), state, attempts, error or "", done_ms)
            for payload, state, attempts, error, done_ms in rows]
