"""What the daemon does when its store forgot acknowledged writes (the
store raises ``StoreLost``): say so once, loudly, in every place an operator
looks — the log, the ``budgetd_store_lost`` metric, health (NOT_SERVING,
from the failing ping) and a Slack notice.

The notice cannot go through the outbox: the outbox lives in the store that
was lost (and a lost store refuses writes). It is sent straight from memory,
retried with backoff through a Slack outage until Slack takes it or the
daemon stops.
"""

from __future__ import annotations

import asyncio
import logging

from .app import BudgetService
from .notices.delivery import Deliverer
from .notices.messages import Context, render
from .notices.model import store_lost
from .notices.slack import DeliveryError
from .store import StoreLost

log = logging.getLogger("budgetd")

FIRST_RETRY_SECONDS = 2.0
MAX_RETRY_SECONDS = 60.0


class StoreLossAlarm:
    def __init__(self, service: BudgetService, deliverer: Deliverer) -> None:
        self.service = service
        self.deliverer = deliverer  # its sender follows the slack settings in force
        self.lost: StoreLost | None = None
        self._task: asyncio.Task | None = None

    def raise_alarm(self, err: StoreLost) -> None:
        """Report a loss; only the first one counts (the store stays lost)."""
        if self.lost is not None:
            return
        self.lost = err
        self.service.metrics.store_lost.set(1)
        log.critical("store lost: %s", err)
        notice = store_lost(str(err), self.service.now_ms())
        self._task = asyncio.get_running_loop().create_task(self._notify(notice))

    async def _notify(self, notice) -> None:
        backoff = FIRST_RETRY_SECONDS
        while True:
            sender = self.deliverer.sender
            if sender is None:
                return  # no slack section: the log, the metric and health say it
            text, blocks = render(notice, Context(timezone=self.service.in_force.config.timezone))
            try:
                await sender.send(text, blocks)
                self.service.metrics.notices.labels("sent").inc()
                return
            except DeliveryError as err:
                if err.permanent:
                    log.error("store-lost notice dropped: %s", err)
                    self.service.metrics.notices.labels("failed").inc()
                    return
                log.warning("store-lost notice delayed %.0fs: %s", backoff, err)
                self.service.metrics.notices.labels("retried").inc()
            await asyncio.sleep(backoff)
            backoff = min(MAX_RETRY_SECONDS, backoff * 2)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
