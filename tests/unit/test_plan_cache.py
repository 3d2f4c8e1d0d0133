"""The plan cache hands out one plan per agent while no period changes, and
a new one from the first millisecond of the next day or hour (in the
configured zone; hours are UTC hours), whether asked with a datetime or
unix milliseconds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from budgetd.config import Resolver, load_config_text
from budgetd.plan import PlanCache

NY = ZoneInfo("America/New_York")
CONFIG = load_config_text('timezone: America/New_York\nagents:\n  a1: {daily_usd: 1}\n')


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def periods(plan) -> tuple[str, ...]:
    return tuple(limit.period.key for limit in plan.limits)


def test_one_plan_within_the_hour_and_a_new_one_at_local_midnight():
    cache = PlanCache(Resolver(CONFIG).budget, CONFIG.zone)
    last_ms_of_day = ms(datetime(2026, 11, 22, 23, 59, 59, 999_000, tzinfo=NY))
    evening = cache.get_at_ms("a1", last_ms_of_day - 3_000_000)
    assert cache.get_at_ms("a1", last_ms_of_day) is evening
    assert cache.get("a1", datetime(2026, 11, 22, 23, 30, tzinfo=NY)) is evening
    assert periods(evening) == ("2026-11-22", "2026-11", "2026-11-23T04")

    midnight = cache.get_at_ms("a1", last_ms_of_day + 1)
    assert periods(midnight) == ("2026-11-23", "2026-11", "2026-11-23T05")
    # The same instant asked as a datetime in another zone.
    assert cache.get("a1", datetime(2026, 11, 23, 5, 0, tzinfo=timezone.utc)) is midnight
    # Back in time (a clock set back) gives that time's plan again.
    assert periods(cache.get_at_ms("a1", last_ms_of_day)) == periods(evening)


def test_the_hour_turns_the_plan_and_unknown_agents_have_none():
    cache = PlanCache(Resolver(CONFIG).budget, CONFIG.zone)
    start = datetime(2026, 11, 23, 10, 0, tzinfo=NY)
    at_ten = cache.get("a1", start)
    assert cache.get("a1", start + timedelta(minutes=59, seconds=59)) is at_ten
    assert periods(cache.get("a1", start + timedelta(hours=1)))[2] == "2026-11-23T16"
    assert cache.get_at_ms("nobody", ms(start)) is None  # no defaults in this config
