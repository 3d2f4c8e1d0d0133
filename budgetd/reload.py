"""Hot reload of budgets.yaml: noticed by polling the file (every second) and
on SIGHUP; validated in full; swapped whole. A rejected edit leaves the
running config in force, is logged and counted, raises a "config rejected"
notice and shows in ``budgetctl status``.

Reading, parsing, validating and building the new config happen in a worker
thread (a million agents take some 30 s), so calls keep being answered; the
swap is one assignment. Only agents whose caps changed are reconciled.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .app import ConfigInForce, utc_of_ms
from .auth import may_listen
from .config import Config, ConfigError, load_config_text
from .config.diff import CapChanges, a_member, diff, diff_agents
from .notices.model import Notice
from .store import StoreError, StoreRefused
from .store.base import CapChange
from .windows import current_periods

if TYPE_CHECKING:  # the daemon owns the reloader
    from .server import Daemon

log = logging.getLogger("budgetd.reload")

NEEDS_RESTART = ("server", "store", "export")
#: A replaced config is taken apart this long after the swap: whatever read
#: it just before (a digest, a check) is done with it by then.
DISMANTLE_AFTER_SECONDS = 30.0
SWITCH_INTERVAL_SECONDS = 0.0005


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Reloader:
    def __init__(self, daemon: Daemon, path: str | Path) -> None:
        self.daemon = daemon
        self.path = Path(path)
        self.generation = 1
        self.loaded_at = datetime.now(UTC)
        self.last_error = ""
        self.last_error_at: datetime | None = None
        self._stat = self._read_stat()
        self._seen = self._read_digest()
        self._lock = asyncio.Lock()  # SIGHUP and the poll: one reload at a time
        # Agents whose reconcile failed (the store did not answer), with their
        # changed windows: the next reload (SIGHUP) tries them again.
        self._unreconciled: dict[str, dict] = {}

    def _read_stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _read_digest(self) -> str | None:
        try:
            return _digest(self.path.read_bytes())
        except OSError:
            return None

    async def poll(self) -> None:
        """The scheduler runs this every second: reload when the content changed.
        The file is read only when its stat changed (a million agents are 50 MB),
        and then off the loop."""
        stat = self._read_stat()
        # Timestamps move in clock ticks: two same-size writes within one tick
        # leave the stat as it was, so a recent one is not trusted.
        settled = stat is not None and time.time_ns() - stat[2] > 2_000_000_000
        if stat == self._stat and settled:
            return
        self._stat = stat
        if await asyncio.to_thread(self._read_digest) != self._seen:
            await self.reload("file changed")

    async def reload(self, why: str) -> bool:
        async with self._lock:
            return await self._reload(why)

    async def _reload(self, why: str) -> bool:
        try:
            data, digest = await asyncio.to_thread(self._read)
        except OSError as err:
            return await self._reject(f"{self.path}: cannot read the file: {err}", _digest(str(err).encode()))
        self._seen = digest
        old = self.daemon.service.in_force
        with _without_gc():
            try:
                new, changes = await asyncio.to_thread(self._prepare, data, old)
            except ConfigError as err:
                return await self._reject(str(err), digest)
            del data
            refusal = self._refuse_unauthenticated(new.config)
            if refusal:
                return await self._reject(f"{self.path}: {refusal}", digest)
            self._swap(new, why)
        await self._reconcile(old, changes)
        if old.config is not self.daemon.config:  # the config started with stays (daemon.config holds it)
            holder = [old]
            del old
            asyncio.get_running_loop().call_later(
                DISMANTLE_AFTER_SECONDS, lambda: asyncio.ensure_future(asyncio.to_thread(_dismantle, holder)))
        return True

    def _read(self) -> tuple[bytes, str]:
        data = self.path.read_bytes()
        return data, _digest(data)

    def _prepare(self, data: bytes, old: ConfigInForce) -> tuple[ConfigInForce, CapChanges]:
        """In the worker thread: the new config in force, and what it changed."""
        config = load_config_text(data.decode("utf-8", errors="replace"), str(self.path))
        new = ConfigInForce.of(config)
        return new, diff(old.resolver, new.resolver)

    def _refuse_unauthenticated(self, config: Config) -> str:
        """Why the edit must not take effect, or "": dropping auth while
        listening off loopback would open the port to anyone (listen
        addresses do not reload: the running daemon's count)."""
        server = self.daemon.config.server
        exposed = [a for a in (server.listen, server.metrics_listen, server.dashboard_listen)
                   if a and not may_listen(config, a)]
        if not exposed:
            return ""
        return (f"the edit has no auth section while budgetd listens on {', '.join(exposed)} (not loopback): "
                "every caller would be trusted. Keep auth.tokens, or set server.allow_unauthenticated: true "
                "if the network is trusted")

    def _swap(self, new: ConfigInForce, why: str) -> None:
        daemon = self.daemon
        old = daemon.service.in_force.config
        for key in NEEDS_RESTART:
            if getattr(new.config, key) != getattr(old, key):
                log.warning("%s changed: it takes effect at the next restart", key)
        daemon.service.in_force = new
        self.generation += 1
        self.loaded_at = datetime.now(UTC)
        daemon.metrics.reloads.labels("applied").inc()
        daemon.metrics.generation.set(self.generation)
        log.info("config reloaded", extra={"why": why, "generation": self.generation})
        daemon.events.reauthorize()  # open Watch streams are checked against the new tokens
        daemon.service.headroom.freed()  # a cap may have risen: holds waiting for room try again

    async def _reconcile(self, old: ConfigInForce, changes: CapChanges) -> None:
        """Agents whose caps changed pause (a cap now at or below the spend) or
        resume (above it, or removed); no other agent is touched, so an
        operator's resume stands through an unrelated edit."""
        service = self.daemon.service
        new = service.in_force
        now_ms = service.now_ms()
        targets = {agent_id: dict(windows) for agent_id, windows in changes.agents.items()}
        for agent_id, windows in self._unreconciled.items():  # failed last time: tried again
            targets.setdefault(agent_id, {}).update({w: c for w, c in windows.items() if w not in targets[agent_id]})
        self._unreconciled = {}
        active: list[str] = []
        if changes.fallback_changed or changes.groups:
            daily, monthly = current_periods(utc_of_ms(now_ms), new.config.zone)
            try:
                active = await service.store.active_agents(daily.key, monthly.key)
            except StoreError as err:
                log.error("config change: could not list the active agents: %s; send SIGHUP to try again", err)
        if changes.fallback_changed and active:
            for agent_id, windows in (await asyncio.to_thread(diff_agents, old.resolver, new.resolver, active)).items():
                targets.setdefault(agent_id, {}).update(windows)
        for group, windows in changes.groups.items():
            member = await asyncio.to_thread(a_member, new.resolver, group, [*targets, *active])
            if member is not None:  # none: no member is budgeted or active, so no spend to reconcile
                targets.setdefault(member, {}).update(windows)
        failed: list[str] = []
        for agent_id in sorted(targets):
            plan = service.plan_or_none(agent_id)
            if plan is None:
                continue
            try:  # one agent the store cannot reconcile must not leave the rest unreconciled
                notices = await service.store.reconcile(plan, now_ms, CapChange(targets[agent_id]))
            except (StoreError, StoreRefused) as err:
                failed.append(agent_id)
                self._unreconciled[agent_id] = targets[agent_id]
                log.error("config change: could not reconcile %s: %s", agent_id, err)
                continue
            for notice in notices:
                log.warning("config change %s %s", notice.kind, notice.scope)
        log.info("config change: reconciled %d agent(s) whose caps changed", len(targets) - len(failed))
        if failed:
            log.error("config change: %d agent(s) not reconciled with the new caps; send SIGHUP to try "
                      "again once the store answers", len(failed), extra={"agents": failed[:20]})

    async def _reject(self, error: str, digest: str) -> bool:
        self.last_error = error
        self.last_error_at = datetime.now(UTC)
        self.daemon.metrics.reloads.labels("rejected").inc()
        log.error("config edit rejected; the running config stays", extra={"error": error})
        notice = Notice(f"config_rejected:{digest}", "config_rejected", reason=error,
                        at_ms=self.daemon.service.now_ms())
        await self.daemon.service.store.add_notice(notice, None)
        return False


@contextlib.contextmanager
def _without_gc():
    """No cyclic garbage collection while a reload builds a config: a full
    collection walks every object of the old config and the new (millions)
    in one call holding the GIL, a second and more in which no call is
    answered. Afterwards everything alive is frozen out of later collections
    (freed by reference counting as ever), so they stay short."""
    was, interval = gc.isenabled(), sys.getswitchinterval()
    gc.disable()
    # The worker thread hands the GIL back to a waiting loop after this long
    # (5 ms by default; a guarded call waits for it several times).
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        gc.freeze()
        if was:
            gc.enable()


def _dismantle(holder: list) -> None:
    """In a worker thread: take the replaced config's big dicts apart one
    entry at a time. Dropped whole, a million agents are freed in one C call
    that holds the GIL for 0.4 s; entry by entry the interpreter hands the
    GIL to the loop every few milliseconds. Left whole when anything but the
    holder still refers to it."""
    old = holder.pop()
    if sys.getrefcount(old) > 2:  # this name and getrefcount's argument
        return
    entries = old.config.agents  # the resolver looks exact ids up in it
    for _ in range(len(entries)):
        entries.popitem()
