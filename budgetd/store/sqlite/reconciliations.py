"""Reconciliation results on SQLite: one row per provider and UTC day (the
ReconcileDay as its JSON), and the leases of its scheduled passes, a row
per (provider, day, pass). Each function runs inside one transaction of the
group committer, so a claim reads and writes its lease atomically."""

from __future__ import annotations

import json
import sqlite3

from ...reconcile.model import ReconcileDay
from .. import rules


def _stored(conn: sqlite3.Connection, provider: str, day: str) -> str | None:
    row = conn.execute("SELECT result FROM reconcile_days WHERE provider = ? AND day = ?", (provider, day)).fetchone()
    return row[0] if row else None


def claim(conn: sqlite3.Connection, provider: str, day: str, pass_name: str, owner: str, now_ms: int,
          lease_ms: int) -> bool:
    stored = _stored(conn, provider, day)
    done = json.loads(stored)["passes"] if stored is not None else ()
    lease = conn.execute("SELECT owner, until_ms FROM reconcile_leases WHERE provider = ? AND day = ? AND pass = ?",
                         (provider, day, pass_name)).fetchone()
    if not rules.claimable(done, tuple(lease) if lease else None, pass_name, owner, now_ms):
        return False
    conn.execute("INSERT OR REPLACE INTO reconcile_leases (provider, day, pass, owner, until_ms) "
                 "VALUES (?, ?, ?, ?, ?)", (provider, day, pass_name, owner, now_ms + lease_ms))
    return True


def save(conn: sqlite3.Connection, result: ReconcileDay, owner: str) -> None:
    stored = _stored(conn, result.provider, result.day)
    saved = rules.saved_result(result, ReconcileDay.from_json(stored) if stored is not None else None)
    conn.execute("INSERT OR REPLACE INTO reconcile_days (provider, day, result) VALUES (?, ?, ?)",
                 (result.provider, result.day, saved.to_json()))
    conn.execute("DELETE FROM reconcile_leases WHERE provider = ? AND day = ? AND owner = ?",
                 (result.provider, result.day, owner))


def reconciliations(conn: sqlite3.Connection, since_day: str, until_day: str,
                    provider: str | None) -> list[ReconcileDay]:
    rows = conn.execute(
        "SELECT result FROM reconcile_days WHERE day BETWEEN ? AND ? AND (? IS NULL OR provider = ?) "
        "ORDER BY provider, day", (since_day, until_day, provider, provider)).fetchall()
    return [ReconcileDay.from_json(text) for (text,) in rows]
