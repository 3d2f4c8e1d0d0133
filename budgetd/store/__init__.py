"""Stores, chosen by URL scheme (the approach of alisaifee/limits)."""

from __future__ import annotations

from .base import (
    Balance,
    Claimed,
    Denial,
    HoldRequest,
    HoldResult,
    PauseRecord,
    Pricing,
    AgentState,
    RequestConflict,
    SettleRequest,
    SettleResult,
    Store,
    StoreError,
    StoreLost,
    StoreRefused,
)

__all__ = [
    "Balance",
    "Claimed",
    "Denial",
    "HoldRequest",
    "HoldResult",
    "PauseRecord",
    "Pricing",
    "AgentState",
    "RequestConflict",
    "SettleRequest",
    "SettleResult",
    "Store",
    "StoreError",
    "StoreLost",
    "StoreRefused",
    "open_store",
]


def open_store(url: str) -> Store:
    """A store for ``url``, not yet opened (``await store.open()``)."""
    if url.startswith("sqlite://"):
        from .sqlite import SqliteStore

        return SqliteStore(url)
    if url.startswith(("redis://", "rediss://")):
        from .redis import RedisStore

        return RedisStore(url)
    raise StoreError(f"no store for URL {url!r}")
