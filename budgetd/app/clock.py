"""The daemon's one time form: unix milliseconds, from an injected source.

Holds and settles read the time as an int; a datetime is made only where a
calendar is needed (periods in the configured zone, a digest's hour)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

NowMs = Callable[[], int]


def system_now_ms() -> int:
    return time.time_ns() // 1_000_000


def to_ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def utc_of_ms(ms: int) -> datetime:
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000)
