"""Periodic checks that write notices: rollover resumes, the daily digest,
spend anomalies. Each is a due-check against the clock, run every few
seconds, and each notice has a key, so a check that runs twice (or on two
replicas, or after a restart that missed its time) writes it once. Pauses
themselves lift by their period, not by these checks: a missed check delays
a notice, never an agent."""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta
from decimal import Decimal

from budgetd_client.money import NANOS_PER_USD

from ..app import BudgetService, to_ms
from ..reports import MS_PER_HOUR, spikes
from ..windows import Window, current_periods, period_of
from .model import Notice

log = logging.getLogger("budgetd.notices")

HISTORY_HOURS = 7 * 24


def _previous(window: Window, now: datetime, zone) -> str:
    current = period_of(window, now, zone)
    return period_of(window, current.starts_at - timedelta(milliseconds=1), zone).key


class Checks:
    def __init__(self, service: BudgetService) -> None:
        self.service = service

    async def run_due(self) -> int:
        """Every check once, against the clock now: what the scheduler runs
        every few seconds. Returns how many notices they wrote."""
        return await self.rollover() + int(await self.digest()) + await self.anomalies()

    async def _agents(self, daily: str, monthly: str) -> list[str]:
        return await self.service.store.active_agents(daily, monthly)

    async def rollover(self) -> int:
        """Agents (and groups) whose cap pause belonged to a period that ended:
        lift the pause and say they run again."""
        now = self.service.now()
        zone = self.service.in_force.config.zone
        agents = set(await self._agents(_previous(Window.DAILY, now, zone), _previous(Window.MONTHLY, now, zone)))
        written = 0
        for agent_id in sorted(agents):
            plan = self.service.plan_or_none(agent_id)
            if plan is not None:
                written += len(await self.service.store.lift_lapsed_pauses(plan, to_ms(now)))
        for scope in await self.service.store.paused_tag_values():  # budgeted tag values (tag_budgets)
            key, _, value = scope.partition(":")
            if key in self.service.in_force.resolver.budgeted_tags:
                tag, _ = self.service.tag_plan(key, value)
                written += len(await self.service.store.lift_lapsed_pauses(tag, to_ms(now)))
        return written

    async def digest(self) -> bool:
        """Once a day at ``digest.at`` local time: yesterday's top spenders,
        the change from the day before, the agents paused now."""
        config = self.service.in_force.config
        if config.digest is None:
            return False
        now = self.service.now()
        local = now.astimezone(config.zone)
        if local.time() < time.fromisoformat(config.digest.at):
            return False
        yesterday = period_of(Window.DAILY, now - timedelta(days=1), config.zone).key
        day_before = period_of(Window.DAILY, now - timedelta(days=2), config.zone).key
        store, plan_for = self.service.store, self.service.plan_or_none
        top = await store.top_spenders("daily", yesterday, plan_for, 10_000)
        before = await store.top_spenders("daily", day_before, plan_for, 10_000)
        total, previous = sum(s for _, s in top), sum(s for _, s in before)
        change = f" ({(total - previous) / previous:+.0%} on {day_before})" if previous else ""
        daily, monthly = current_periods(now, config.zone)
        # Agents no longer budgeted are left out by statuses.
        reports = await self.service.statuses(await self._agents(daily.key, monthly.key))
        paused = [report.plan.agent_id for report in reports if report.paused]
        notice = Notice(f"digest:{local.date().isoformat()}", "digest", period=yesterday, spent_nanos=total,
                        at_ms=to_ms(now), extra={"top": top[: config.digest.top], "paused": paused,
                                                 "change": change, "previous_nanos": previous})
        return await store.add_notice(notice, None)

    async def anomalies(self) -> int:
        """An agent whose spend in the current hour is above ``anomaly.factor``
        x its trailing 7-day hourly average, and above ``anomaly.floor_usd``."""
        config = self.service.in_force.config
        now = self.service.now()
        hour = period_of(Window.HOURLY, now, config.zone)
        history = [period_of(Window.HOURLY, hour.starts_at - timedelta(hours=h), config.zone).key
                   for h in range(1, HISTORY_HOURS + 1)]
        floor = int(config.anomaly.floor_usd * NANOS_PER_USD)
        daily, monthly = current_periods(now, config.zone)
        written = 0
        for agent_id in await self._agents(daily.key, monthly.key):
            plan = self.service.plan_or_none(agent_id)
            if plan is None:
                continue
            spent = await self.service.store.spent_in(plan, f"agent:{agent_id}", "hourly", [hour.key, *history])
            current = spent.get(hour.key, 0)
            average = Decimal(sum(spent.get(h, 0) for h in history)) / HISTORY_HOURS
            if current <= floor or current <= config.anomaly.factor * average:
                continue
            ratio = f"{current / average:.1f}" if average else "∞"
            notice = Notice(f"anomaly:{agent_id}:{hour.key}", "anomaly", agent_id, f"agent:{agent_id}", "hourly",
                            hour.key, current, 0, "spend spike", to_ms(now),
                            {"average_nanos": int(average), "ratio": ratio})
            if await self.service.store.add_notice(notice, plan):
                log.warning("anomaly", extra={"agent": agent_id, "hour": hour.key, "ratio": ratio})
                written += 1
        return written + await self.tag_anomalies()

    async def tag_anomalies(self) -> int:
        """Per value of each tag in ``anomaly.tags``: its spend in the current
        hour above ``anomaly.factor`` x its average over the 168 hours before
        (7 days), and above ``anomaly.floor_usd``. Read from the ledger in one
        store call; one notice per tag value and hour (its key says which)."""
        config = self.service.in_force.config
        if not config.anomaly.tags:
            return 0
        now = self.service.now()
        hour = period_of(Window.HOURLY, now, config.zone)
        since_ms = to_ms(hour.starts_at) - HISTORY_HOURS * MS_PER_HOUR
        spend = await self.service.store.tag_spend_by_hour(config.anomaly.tags, since_ms, to_ms(now) + 1)
        floor = int(config.anomaly.floor_usd * NANOS_PER_USD)
        written = 0
        for spike in spikes(spend, HISTORY_HOURS, config.anomaly.factor, floor):
            notice = Notice(f"anomaly:tag:{spike.tag}={spike.value}:{hour.key}", "anomaly", "",
                            f"tag:{spike.tag}={spike.value}", "hourly", hour.key, spike.spent_nanos, 0, "spend spike",
                            to_ms(now), {"tag": spike.tag, "value": spike.value,
                                         "average_nanos": round(spike.average_nanos), "ratio": spike.ratio})
            if await self.service.store.add_notice(notice, None):
                log.warning("anomaly", extra={"tag": spike.tag, "value": spike.value, "hour": hour.key,
                                              "ratio": spike.ratio})
                written += 1
        return written
