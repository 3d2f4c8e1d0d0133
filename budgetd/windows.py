"""Calendar windows in the configured timezone.

A window's period is named by the local date (or month) of an instant, so
rollover needs no job: a new day is a new counter key. Boundaries are local
midnights, so a daily window is 23 or 25 hours long on DST days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from zoneinfo import ZoneInfo


# Not StrEnum: that would change how a window formats in an f-string.
class Window(str, Enum):  # noqa: UP042
    DAILY = "daily"
    MONTHLY = "monthly"
    # Uncapped; counted for the anomaly check. UTC clock hours ("2026-11-22T15").
    HOURLY = "hourly"


@dataclass(frozen=True)
class Period:
    window: Window
    key: str  # "2026-11-22" or "2026-11"
    starts_at: datetime  # aware, UTC
    resets_at: datetime  # aware, UTC: the start of the next period


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant whose local date is ``day``, in UTC.

    Where a zone skips midnight (clocks jump from 23:59:59 to 01:00), the
    naive midnight does not exist; zoneinfo reads it with the offset in force
    before the jump, which lands on the first instant after it. That is the
    start of the day we want.
    """
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def period_of(window: Window, instant: datetime, zone: ZoneInfo) -> Period:
    if window is Window.HOURLY:
        start = instant.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return Period(window, start.strftime("%Y-%m-%dT%H"), start, start + timedelta(hours=1))
    local_day = instant.astimezone(zone).date()
    if window is Window.DAILY:
        first, following = local_day, local_day + timedelta(days=1)
        key = first.isoformat()
    else:
        first = local_day.replace(day=1)
        following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        key = f"{first.year:04d}-{first.month:02d}"
    return Period(window, key, local_midnight(first, zone), local_midnight(following, zone))


def current_periods(instant: datetime, zone: ZoneInfo) -> tuple[Period, Period]:
    return period_of(Window.DAILY, instant, zone), period_of(Window.MONTHLY, instant, zone)
