"""Stores, chosen by URL scheme (the approach of alisaifee/limits): the
contracts in base.py, the values they carry in model.py, one module or
package per backend."""

from __future__ import annotations

from .base import CONTRACTS, Counters, Ledger, Lifecycle, Outbox, Pauses, Reconciliations, Store
from .model import (
    AgentActivity,
    AgentState,
    Balance,
    CallFacts,
    CapChange,
    Claimed,
    CostEvent,
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

__all__ = [
    "CONTRACTS",
    "AgentActivity",
    "AgentState",
    "Balance",
    "CallFacts",
    "CapChange",
    "Claimed",
    "CostEvent",
    "Counters",
    "Denial",
    "HoldRequest",
    "HoldResult",
    "Ledger",
    "Lifecycle",
    "Outbox",
    "PauseRecord",
    "Pauses",
    "PlanLookup",
    "Pricing",
    "QueuedNotice",
    "Reconciliations",
    "RequestConflict",
    "SettleRequest",
    "SettleResult",
    "Store",
    "StoreError",
    "StoreLost",
    "StoreRefused",
    "UsageSum",
    "open_store",
]


def open_store(url: str) -> Store:
    """A store for ``url``, not yet opened (``await store.open()``).

    ``memory://`` is the in-process reference store, for tests and trying
    things out: a daemon on it loses everything when it exits."""
    if url.startswith("sqlite://"):
        from .sqlite import SqliteStore

        return SqliteStore(url)
    if url.startswith(("redis://", "rediss://")):
        from .redis import RedisStore

        return RedisStore(url)
    if url == "memory://":
        from .memory import MemoryStore

        return MemoryStore()
    raise StoreError(f"no store for URL {url!r}")
