"""When each reconciliation pass is due. Pure: the clock comes in as an
argument, so a restart, a clock moved ahead and a test all get the same
answer.

A UTC day D is compared in two passes: "first" at ``at`` (HH:MM UTC) on
D+1, once its usage is in the providers' reports, and "second" at ``at`` on
D+2, for usage the providers report late. Today's usage so far is compared
every ``today_every_minutes`` (a pass "today-N" per slot). A pass is done
once, by whichever replica claims it (the store's lease); a daemon that was
down catches up on the passes of the last two days when it starts, not on
every day it missed (a day further back is compared when asked:
``budgetctl reconcile --run``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

FIRST, SECOND = "first", "second"
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class DuePass:
    day: str  # UTC YYYY-MM-DD
    name: str  # "first", "second", "today-N"
    also_done: tuple[str, ...] = ()  # passes this one stands in for (a missed first, run as the second)

    @property
    def closed(self) -> bool:
        """A pass over a day that has ended (not today's usage so far)."""
        return not self.name.startswith("today-")


def _minutes(at: str) -> int:
    hours, minutes = at.split(":")
    return int(hours) * 60 + int(minutes)


def utc_day(now_ms: int, days_back: int = 0) -> str:
    return (datetime.fromtimestamp(now_ms // 1000, UTC).date() - timedelta(days=days_back)).isoformat()


def due_passes(now_ms: int, at: str, today_every_minutes: int) -> list[DuePass]:
    """The passes whose time has come, oldest day first (a pass already done
    is the caller's to skip: the store knows)."""
    minute_of_day = (now_ms % _DAY_MS) // 60_000
    past_at = minute_of_day >= _minutes(at)
    due = []
    day_before, yesterday = utc_day(now_ms, 2), utc_day(now_ms, 1)
    if past_at:
        # D-2's second pass (its first, if missed, is done by it), then yesterday's first.
        due.append(DuePass(day_before, SECOND, also_done=(FIRST,)))
        due.append(DuePass(yesterday, FIRST))
    else:
        # Before today's time: yesterday is not compared yet; the day before's
        # first pass is due since yesterday's time (a daemon down then catches up).
        due.append(DuePass(day_before, FIRST))
    if today_every_minutes:
        due.append(DuePass(utc_day(now_ms), f"today-{minute_of_day // today_every_minutes}"))
    return due


def first_pass_due_ms(day: str, at: str) -> int:
    """When the first pass of a UTC day falls due: ``at`` on the day after."""
    start = datetime.combine(datetime.fromisoformat(day).date(), datetime.min.time(), UTC)
    return int(start.timestamp()) * 1000 + _DAY_MS + _minutes(at) * 60_000
