"""Delivering the outbox: lease due notices, post each to Slack, mark it
sent (once). A Slack outage delays notices; it never loses or repeats them:
a notice is marked only after Slack accepted it, and a lease that runs out
(a replica died mid-send) frees it for another replica."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import timedelta

from ..app import BudgetService, to_ms
from ..store import Claimed
from ..windows import Window, period_of
from .messages import Context, render
from .slack import DeliveryError, SlackSender

log = logging.getLogger("budgetd.notices")

LEASE_MS = 60_000
BATCH = 20
FIRST_RETRY_SECONDS = 2.0


class Deliverer:
    def __init__(self, service: BudgetService) -> None:
        self.service = service
        self.owner = f"{socket.gethostname()}-{os.getpid()}"
        self._sender: tuple[object, SlackSender | None] = (None, None)

    def _slack(self):
        return self.service.in_force.config.slack

    @property
    def sender(self) -> SlackSender | None:
        """A sender for the slack settings in force (rebuilt when a reload changes them)."""
        settings, sender = self._sender
        if settings != self._slack():
            sender = SlackSender(self._slack()) if self._slack() else None
            self._sender = (self._slack(), sender)
        return sender

    async def deliver_due(self) -> int:
        """One pass; the scheduler runs it every second."""
        store = self.service.store
        claimed = await store.claim_notices(self.owner, self.service.now_ms(), LEASE_MS, BATCH)
        sent = 0
        sender = self.sender
        for i, item in enumerate(claimed):
            if sender is None:  # nowhere to send: events only
                await store.finish_notice(item, "skipped", self.service.now_ms())
                continue
            if i and self._slack().min_interval_seconds:
                await asyncio.sleep(self._slack().min_interval_seconds)
            sent += await self._deliver(item, sender)
        return sent

    async def _deliver(self, item: Claimed, sender: SlackSender) -> int:
        text, blocks = render(item.notice, await self._context(item))
        now_ms = self.service.now_ms()
        try:
            await sender.send(text, blocks)
        except DeliveryError as err:
            if err.permanent:
                log.error("notice dropped: %s", err, extra={"notice": item.notice.key})
                await self.service.store.finish_notice(item, "failed", now_ms, str(err))
                self._count("failed")
            else:
                backoff = min(self._slack().retry_max_seconds, FIRST_RETRY_SECONDS * 2 ** (item.attempts - 1))
                log.warning("notice delayed %.0fs: %s", backoff, err, extra={"notice": item.notice.key})
                await self.service.store.retry_notice(item, now_ms + int(backoff * 1000), now_ms, str(err))
                self._count("retried")
            return 0
        await self.service.store.finish_notice(item, "sent", now_ms)
        self._count("sent")
        return 1

    def _count(self, outcome: str) -> None:
        self.service.metrics.notices.labels(outcome).inc()

    async def _context(self, item: Claimed) -> Context:
        n = item.notice
        config = self.service.in_force.config
        ctx = Context(timezone=config.timezone)
        plan = self.service.plan_or_none(n.agent_id) if n.agent_id else None
        if plan is None or n.kind not in ("paused", "warning", "anomaly"):
            return ctx
        resumes_at = None
        now = self.service.now()
        if n.window in ("daily", "monthly") and n.period:
            # The window's period now (a tag value's windows are not in the agent's plan).
            current = period_of(Window(n.window), now, config.zone)
            if current.key == n.period:
                resumes_at = current.resets_at
        since = period_of(Window.DAILY, now, config.zone).starts_at
        if n.window == "monthly":
            since = period_of(Window.MONTHLY, now, config.zone).starts_at
        elif n.kind == "anomaly":
            since = now - timedelta(hours=1)
        try:
            top = await self.service.store.top_models(plan, to_ms(since), 3)
        except Exception:  # the message goes out without them
            top = []
        return Context(timezone=config.timezone, resumes_at=resumes_at, top_models=top)
