"""The notice record. Its ``key`` makes it unique: writing the same key twice
writes one notice (one warning per agent, window, period and threshold)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal

from ..plan import Limit
from ..store.base import PauseRecord

KINDS = ("warning", "paused", "resumed", "anomaly", "digest", "config_rejected", "store_lost", "reconcile")


@dataclass(frozen=True)
class Notice:
    key: str
    kind: str
    agent_id: str = ""  # the agent concerned (for a group notice, the one whose call tipped it)
    scope: str = ""  # "agent:NAME" or "group:NAME"
    window: str = ""
    period: str = ""
    spent_nanos: int = 0
    cap_nanos: int = 0
    reason: str = ""
    at_ms: int = 0
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(vars(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Notice:
        data = json.loads(text)
        for name in ("spent_nanos", "cap_nanos", "at_ms"):
            data[name] = int(data.get(name) or 0)
        return cls(**data)


def percent(fraction: Decimal) -> str:
    return f"{fraction * 100:f}".rstrip("0").rstrip(".") + "%"


def warning(agent_id: str, limit: Limit, fraction: Decimal, spent_nanos: int, now_ms: int) -> Notice:
    scope, window, period = limit.counter
    assert limit.cap_nanos is not None  # only a capped window warns
    return Notice(f"warning:{scope}:{window}:{period}:{fraction}", "warning", agent_id, scope, window, period,
                  spent_nanos, limit.cap_nanos, f"{percent(fraction)} of the {window} cap", now_ms,
                  {"threshold": str(fraction)})


def paused_at_cap(agent_id: str, record: PauseRecord, spent_nanos: int, cap_nanos: int,
                  after_config_change: bool = False) -> Notice:
    key = f"paused:{record.scope}:{record.window}:{record.period}"
    if after_config_change:  # a cap lowered below the spend: a new pause, a new notice
        key += f":config:{record.since_ms}"
    return Notice(key, "paused", agent_id, record.scope, record.window, record.period, spent_nanos, cap_nanos,
                  record.reason, record.since_ms, {"by": "cap"})


def paused_by_operator(agent_id: str, reason: str, now_ms: int, scope: str = "") -> Notice:
    """``scope``: whose pause when not the agent's (a tag value: "customer:acme", no agent)."""
    scope = scope or f"agent:{agent_id}"
    return Notice(f"paused:{scope}:manual:{now_ms}", "paused", agent_id, scope,
                  reason=reason, at_ms=now_ms, extra={"by": "operator"})


def resumed(agent_id: str, scope: str, by: str, now_ms: int, window: str = "", period: str = "") -> Notice:
    """``by``: "operator", "rollover" (the window of ``period`` ended) or
    "config" (its cap was raised above the spend)."""
    key = f"resumed:{scope}:{window}:{period}" if by == "rollover" else f"resumed:{scope}:{by}:{now_ms}"
    return Notice(key, "resumed", agent_id, scope, window, period, at_ms=now_ms, extra={"by": by})


def store_lost(what: str, now_ms: int) -> Notice:
    """The store forgot acknowledged writes (``what`` says which and how)."""
    return Notice(f"store_lost:{now_ms}", "store_lost", reason=what, at_ms=now_ms)
