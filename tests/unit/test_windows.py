"""Calendar windows in the configured zone, with an injected clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from budgetd_client import AsyncBudget, BudgetExceeded

from budgetd.config import load_config_text
from budgetd.server import Daemon
from budgetd.windows import Window, period_of

NY = ZoneInfo("America/New_York")


def ny(*args) -> datetime:
    return datetime(*args, tzinfo=NY)


@pytest.mark.parametrize(
    ("day", "hours"),
    [((2026, 3, 8), 23), ((2026, 11, 1), 25), ((2026, 11, 22), 24), ((2026, 3, 7), 24)],
)
def test_dst_days_are_23_and_25_hours_long(day, hours):
    period = period_of(Window.DAILY, ny(*day, 12), NY)
    assert period.key == "%04d-%02d-%02d" % day
    assert period.starts_at == ny(*day, 0).astimezone(timezone.utc)
    assert period.resets_at - period.starts_at == timedelta(hours=hours)


def test_month_windows_run_from_local_first_to_local_first():
    period = period_of(Window.MONTHLY, ny(2026, 12, 31, 23, 59), NY)
    assert period.key == "2026-12"
    assert period.resets_at == ny(2027, 1, 1).astimezone(timezone.utc)
    # 2027-01-01 03:00 UTC is still December 31st in New York.
    assert period_of(Window.MONTHLY, datetime(2027, 1, 1, 3, tzinfo=timezone.utc), NY).key == "2026-12"


def test_a_zone_that_skips_midnight_starts_its_day_at_the_first_instant():
    # America/Santiago jumps from 2026-09-05 23:59:59 to 2026-09-06 01:00.
    santiago = ZoneInfo("America/Santiago")
    period = period_of(Window.DAILY, datetime(2026, 9, 6, 12, tzinfo=santiago), santiago)
    start_local = period.starts_at.astimezone(santiago)
    assert (start_local.date().isoformat(), start_local.hour) == ("2026-09-06", 1)
    assert period.resets_at - period.starts_at == timedelta(hours=23)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now.astimezone(timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def daemon_at(tmp_path):
    daemons = []

    async def start(clock: FakeClock, body: str) -> AsyncBudget:
        config = load_config_text(
            f'server: {{listen: "127.0.0.1:0"}}\nstore: {{url: "sqlite://{tmp_path}/b.db"}}\n' + body
        )
        daemon = Daemon(config, now_ms=lambda: int(clock().timestamp() * 1000))
        await daemon.start()
        daemons.append(daemon)
        return AsyncBudget(f"127.0.0.1:{daemon.port}")

    yield start
    for daemon in daemons:
        await daemon.stop()


async def test_spends_at_2359_and_0001_new_york_land_in_different_days(daemon_at):
    clock = FakeClock(ny(2026, 11, 22, 23, 59))
    budget = await daemon_at(clock, "timezone: America/New_York\nagents:\n  nightly: {daily_usd: 1.00}\n")

    async with budget.guard("nightly", estimate_usd="0.70") as call:
        call.record_usd("0.70")
    st = await budget.status("nightly")
    assert st.daily.period == "2026-11-22" and st.daily.spent_usd == Decimal("0.70")
    assert st.daily.resets_at == ny(2026, 11, 23).astimezone(timezone.utc)
    with pytest.raises(BudgetExceeded) as err:
        async with budget.guard("nightly", estimate_usd="0.70"):
            pass
    assert err.value.resets_at == ny(2026, 11, 23).astimezone(timezone.utc)

    clock.now = ny(2026, 11, 23, 0, 1).astimezone(timezone.utc)  # 05:01 UTC: same UTC day
    async with budget.guard("nightly", estimate_usd="0.70") as call:
        call.record_usd("0.70")
    st = await budget.status("nightly")
    assert st.daily.period == "2026-11-23" and st.daily.spent_usd == Decimal("0.70")
    assert st.monthly.period == "2026-11" and st.monthly.spent_usd == Decimal("1.40")
    await budget.close()


async def test_a_cap_pause_lifts_when_the_local_day_rolls_over(daemon_at):
    clock = FakeClock(ny(2026, 3, 7, 22, 0))  # the night before spring-forward
    budget = await daemon_at(clock, "timezone: America/New_York\nagents:\n  a1: {daily_usd: 0.50}\n")
    async with budget.guard("a1", estimate_usd="0.50") as call:
        call.record_usd("0.50")
    st = await budget.status("a1")
    assert st.paused and st.resumes_at == ny(2026, 3, 8).astimezone(timezone.utc)

    clock.now = ny(2026, 3, 8, 0, 0, 1).astimezone(timezone.utc)
    st = await budget.status("a1")
    assert not st.paused and st.daily.spent_usd == 0
    assert st.daily.resets_at - st.daily.starts_at == timedelta(hours=23)
    async with budget.guard("a1", estimate_usd="0.10") as call:
        call.record_usd("0.10")
    await budget.close()
