"""Hot reload of budgets.yaml: noticed by polling the file's content (every
second) and on SIGHUP; validated in full; swapped whole. A rejected edit
leaves the running config in force, is logged and counted, raises a
"config rejected" notice and shows in ``budgetctl status``."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timezone
from pathlib import Path

from .config import Config, ConfigError, load_config_text
from .notices.model import Notice
from .service import Active, to_ms
from .store import StoreError, StoreRefused
from .windows import current_periods

log = logging.getLogger("budgetd.reload")

NEEDS_RESTART = ("server", "store")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Reloader:
    def __init__(self, daemon, path: str | Path) -> None:
        self.daemon = daemon
        self.path = Path(path)
        self.generation = 1
        self.loaded_at = datetime.now(timezone.utc)
        self.last_error = ""
        self.last_error_at: datetime | None = None
        self._seen = self._read_digest()

    def _read_digest(self) -> str | None:
        try:
            return _digest(self.path.read_bytes())
        except OSError:
            return None

    async def poll(self) -> None:
        """The scheduler runs this every second: reload when the content changed."""
        if self._read_digest() != self._seen:
            await self.reload("file changed")

    async def reload(self, why: str) -> bool:
        try:
            data = self.path.read_bytes()
        except OSError as err:
            return await self._reject(f"{self.path}: cannot read the file: {err}", _digest(str(err).encode()))
        digest = _digest(data)
        self._seen = digest
        try:
            config = load_config_text(data.decode("utf-8", errors="replace"), str(self.path))
        except ConfigError as err:
            return await self._reject(str(err), digest)
        await self._apply(config, why)
        return True

    async def _apply(self, config: Config, why: str) -> None:
        daemon = self.daemon
        old = daemon.core.active.config
        for key in NEEDS_RESTART:
            if getattr(config, key) != getattr(old, key):
                log.warning("%s changed: it takes effect at the next restart", key)
        daemon.core.active = Active.of(config)
        self.generation += 1
        self.loaded_at = datetime.now(timezone.utc)
        daemon.metrics.reloads.labels("applied").inc()
        daemon.metrics.generation.set(self.generation)
        log.info("config reloaded", extra={"why": why, "generation": self.generation})
        await self._reconcile()

    async def _reconcile(self) -> None:
        """Caps lowered to or below spend pause; caps raised above it resume."""
        core = self.daemon.core
        now = core.clock()
        daily, monthly = current_periods(now, core.active.config.zone)
        agents = set(await core.store.active_agents(daily.key, monthly.key)) | set(core.active.resolver.exact_agent_ids)
        failed: list[str] = []
        for agent_id in sorted(agents):
            plan = core.plan_or_none(agent_id)
            if plan is None:
                continue
            try:  # one agent the store cannot reconcile must not leave the rest unreconciled
                notices = await core.store.reconcile(plan, to_ms(now))
            except (StoreError, StoreRefused) as err:
                failed.append(agent_id)
                log.error("config change: could not reconcile %s: %s", agent_id, err)
                continue
            for notice in notices:
                log.warning("config change %s %s", notice.kind, notice.scope)
        if failed:
            log.error("config change: %d agent(s) not reconciled with the new caps; send SIGHUP to try "
                      "again once the store answers", len(failed), extra={"agents": failed[:20]})

    async def _reject(self, error: str, digest: str) -> bool:
        self.last_error = error
        self.last_error_at = datetime.now(timezone.utc)
        self.daemon.metrics.reloads.labels("rejected").inc()
        log.error("config edit rejected; the running config stays", extra={"error": error})
        notice = Notice(f"config_rejected:{digest}", "config_rejected", reason=error,
                        at_ms=to_ms(self.daemon.core.clock()))
        await self.daemon.core.store.add_notice(notice, None)
        return False
