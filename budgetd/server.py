"""The daemon: gRPC server, health, reflection, periodic work, shutdown."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .app import BudgetService, ConfigInForce, NowMs, system_now_ms
from .auth import PermissionDenied, Unauthenticated, identify, may_listen, require
from .config import Config
from .config.schema import ServerConfig
from .dashboard import Dashboard
from .events import EventHub
from .export import EventSink
from .metrics import MAX_AGENT_SERIES, Metrics
from .notices.checks import Checks
from .notices.delivery import Deliverer
from .reconcile.runner import Reconciler
from .reload import Reloader
from .rpc.interceptors import Authorization, Outcomes
from .rpc.registration import SERVICE_NAMES, add_service
from .rpc.servicers import AdminServicer, BudgetServicer
from .store import Store, StoreError, StoreLost, open_store
from .store_loss import StoreLossAlarm
from .windows import Window, current_periods

log = logging.getLogger("budgetd")

# Requests are small (ids, a few tags); anything larger is not ours.
MAX_MESSAGE_BYTES = 64 * 1024
HEALTH_CHECK_SECONDS = 2.0
MAX_CONCURRENT_STREAMS = 1000  # per client connection
# Connections that make no call are closed (connection_options): after
# server.connection_idle_seconds with no call open (GOAWAY; the client
# reconnects when it next calls). A connection must finish its TLS and
# HTTP/2 handshake within this (or the idle time, when shorter): a socket
# that connects and says nothing is closed.
HANDSHAKE_SECONDS = 20.0
# Connections with calls open (a Watch is often quiet) are pinged this often,
# and closed when a ping goes unanswered this long: a peer that vanished
# without closing its socket does not hold a descriptor past that.
KEEPALIVE_SECONDS = 60.0
KEEPALIVE_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class Intervals:
    """How often the periodic work runs, in seconds."""

    deliver: float = 1.0  # notices to Slack
    rollover: float = 5.0  # "resumed" notices for pauses whose period ended
    digest: float = 30.0  # is the daily digest due?
    anomaly: float = 60.0  # hourly spend spikes
    config: float = 1.0  # has budgets.yaml changed?
    gauges: float = 10.0  # per-agent metrics
    retention: float = 3600.0  # trim the ledger
    reconcile: float = 60.0  # is a reconciliation pass due?


class Daemon:
    def __init__(self, config: Config, *, now_ms: NowMs = system_now_ms, store: Store | None = None,
                 intervals: Intervals = Intervals(), config_path: str | None = None) -> None:
        self.config = config  # as started: listen addresses and the store do not reload
        self.intervals = intervals
        self.metrics = Metrics()
        self.store = store or open_store(config.store.url)
        self.service = BudgetService(ConfigInForce.of(config), self.store, now_ms, self.metrics)
        self.events = EventHub(self.service)
        self.deliverer = Deliverer(self.service)
        self.checks = Checks(self.service)
        self.store_loss = StoreLossAlarm(self.service, self.deliverer)
        self.reconciler = Reconciler(self.service, self.metrics)
        self.reloader = Reloader(self, config_path) if config_path else None
        # The cost-event sink (config: export), started with the daemon.
        self.sink = EventSink(config.export.path, config.export.max_bytes, self.metrics) if config.export else None
        self.metrics_port: int | None = None
        self.dashboard: Dashboard | None = None
        self.dashboard_port: int | None = None
        self.health = health.aio.HealthServicer()
        self.scheduler = AsyncIOScheduler(
            timezone=UTC,
            # A busy loop must not silently drop runs (apscheduler's default grace is 1 s).
            job_defaults={"misfire_grace_time": 300, "coalesce": True, "max_instances": 1},
        )
        self.server: grpc.aio.Server | None = None
        self.port: int | None = None
        self._stopping = False
        self._due_checks: list[Callable[[], Awaitable[None]]] = []  # what SIGUSR1 runs

    async def start(self) -> None:
        metrics_listen = self.config.server.metrics_listen
        if metrics_listen and not may_listen(self.config, metrics_listen):  # before anything is opened
            raise OSError(f"server.metrics_listen {metrics_listen}: {REFUSED_WITHOUT_AUTH}")
        dashboard_listen = self.config.server.dashboard_listen
        if dashboard_listen and not may_listen(self.config, dashboard_listen):
            raise OSError(f"server.dashboard_listen {dashboard_listen}: {REFUSED_WITHOUT_AUTH}")
        await self.store.open()
        if self.sink is not None:
            self.sink.start()
            self.service.on_event = self.sink.write
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", 16 * 1024 * 1024),
            ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
            *connection_options(self.config.server),
        ]
        if self.config.store.url.startswith("sqlite://"):
            # gRPC turns SO_REUSEPORT on by default; a second daemon would then
            # bind the same port silently. With SQLite there must be one.
            options.append(("grpc.so_reuseport", 0))
        # Authorization, error mapping and metrics for every method of ours,
        # unary and streams alike, applied as the handlers are registered.
        outcomes = Outcomes(self.metrics, Authorization(lambda: self.service.in_force.config.auth))
        self.server = server = grpc.aio.server(options=options)
        add_service(server, "Budget", BudgetServicer(self.service, self.events), outcomes)
        add_service(server, "Admin", AdminServicer(self.service, self.reloader, self.reconciler), outcomes)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )
        try:
            self.port = self._bind(server)
        except (RuntimeError, OSError) as err:
            await self.store.close()
            raise OSError(f"cannot listen on {self.config.server.listen}: {err}") from None
        await server.start()
        await self.check_health()
        await self.events.start()
        if self.config.server.metrics_listen:
            self.metrics_port = self._serve_metrics(self.config.server.metrics_listen)
        if dashboard_listen:
            self.dashboard = Dashboard(self.service, self.events, self.reloader, self.reconciler)
            try:
                self.dashboard_port = await self.dashboard.start(dashboard_listen, self._dashboard_tls())
            except OSError as err:
                raise OSError(f"cannot serve the dashboard on {dashboard_listen}: {err}") from None
        self.metrics.generation.set(1)
        ttl = self.config.reservation_ttl_seconds
        now = datetime.now(UTC)
        jobs = [
            (self.service.expire_lapsed_holds, max(1, min(30, ttl // 10))),
            (self.check_health, HEALTH_CHECK_SECONDS),
            (self.deliverer.deliver_due, self.intervals.deliver),
            (self.checks.rollover, self.intervals.rollover),
            (self.checks.digest, self.intervals.digest),
            (self.checks.anomalies, self.intervals.anomaly),
            (self.refresh_gauges, self.intervals.gauges),
            (self.service.trim_ledger, self.intervals.retention),
            (self.reconciler.run_due, self.intervals.reconcile),
        ]
        if self.reloader is not None:
            jobs.append((self.reloader.poll, self.intervals.config))
        for job, seconds in jobs:
            run = _logged(job)
            # First run now: a restart catches up on what it missed while down.
            self.scheduler.add_job(run, "interval", seconds=seconds, next_run_time=now, id=job.__name__)
            if job != self.checks.digest:  # the digest keeps its time of day
                self._due_checks.append(run)
        self.scheduler.start()
        log.info("listening", extra={"listen": self.config.server.listen, "port": self.port,
                                     "store": store_shown(self.config.store.url)})

    async def run_due_checks(self) -> None:
        """Every periodic job once, now (SIGUSR1), except the daily digest,
        which is sent by its time of day only: tests and operators need not
        wait for the next tick."""
        for run in self._due_checks:
            await run()
        log.info("due-checks done")

    def _serve_metrics(self, listen: str) -> int:
        try:
            return self.metrics.serve(listen, self.metrics_access)
        except OSError as err:
            raise OSError(f"cannot serve metrics on {listen}: {err}") from None

    def _dashboard_tls(self) -> ssl.SSLContext | None:
        """The gRPC port's certificate for the dashboard too (and its client CA: mutual TLS)."""
        tls = self.config.server.tls
        if tls is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file:
            context.load_verify_locations(tls.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def metrics_access(self, authorization: str | None) -> tuple[int, str] | None:
        """None when a scrape with this Authorization header may read
        /metrics, else (HTTP status, why). Decided by the tokens in force, so
        a reload that changes them applies to the next scrape."""
        config = self.service.in_force.config  # a reload never drops auth from a port off loopback (Reloader)
        try:
            require(identify(config.auth, [("authorization", authorization)] if authorization else []), admin=True)
        except Unauthenticated as err:
            return 401, str(err)
        except PermissionDenied as err:
            return 403, str(err)
        return None

    def _bind(self, grpc_server: grpc.aio.Server) -> int:
        server = self.config.server
        if not may_listen(self.config, server.listen):
            raise OSError(REFUSED_WITHOUT_AUTH)
        if server.tls is None:
            return grpc_server.add_insecure_port(server.listen)
        tls = server.tls
        read = lambda path: Path(path).read_bytes()  # noqa: E731
        credentials = grpc.ssl_server_credentials(
            [(read(tls.key_file), read(tls.cert_file))],
            root_certificates=read(tls.client_ca_file) if tls.client_ca_file else None,
            require_client_auth=tls.client_ca_file is not None,
        )
        return grpc_server.add_secure_port(server.listen, credentials)

    async def check_health(self) -> bool:
        """Serving = the store answers AND we are not shutting down."""
        if self._stopping:
            return False
        try:
            await self.store.ping()
            ok = True
        except StoreLost as err:
            self.store_loss.raise_alarm(err)
            ok = False
        except StoreError as err:
            log.error("store unhealthy", extra={"error": str(err)})
            ok = False
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)
        return ok

    def _gauge_agents(self, seen) -> list[str]:
        """At most MAX_AGENT_SERIES agents: those with spend this period first,
        then configured ones in file order. Never a set or a sort of every
        configured id: at a million agents that held the loop 1.5-2 s."""
        agents = sorted(set(seen))[:MAX_AGENT_SERIES]
        chosen = set(agents)
        for agent_id in self.service.in_force.resolver.exact_agent_ids:
            if len(agents) >= MAX_AGENT_SERIES:
                break
            if agent_id not in chosen:
                agents.append(agent_id)
                chosen.add(agent_id)
        return agents

    async def refresh_gauges(self) -> None:
        service, metrics = self.service, self.metrics
        daily, monthly = current_periods(service.now(), service.in_force.config.zone)
        reports = await service.statuses(self._gauge_agents(await self.store.active_agents(daily.key, monthly.key)))
        metrics.spent.clear()
        metrics.cap.clear()
        for report in reports:
            agent_id = report.plan.agent_id
            for window in (Window.DAILY, Window.MONTHLY):
                limit = report.plan.limit_for(f"agent:{agent_id}", window.value)
                assert limit is not None  # every plan has the agent's own daily and monthly windows
                metrics.spent.labels(agent_id, window.value).set(report.state.balance(limit).spent_nanos / 1e9)
                if limit.cap_nanos is not None:
                    metrics.cap.labels(agent_id, window.value).set(limit.cap_nanos / 1e9)
        metrics.paused.set(sum(report.paused for report in reports))
        metrics.outbox_depth.set(await self.store.outbox_depth())

    async def stop(self) -> None:
        """Drain, then stop. Health goes NOT_SERVING and new holds are
        refused (UNAVAILABLE "draining": clients wait for the restart), open
        Watch streams are ended at once, and the port stays open for the
        settles and releases of holds already granted, until they are all in
        or ``shutdown_grace_seconds`` pass. Only then does the listener close
        and the store with it."""
        if self._stopping:
            return
        self._stopping = True
        grace = self.config.server.shutdown_grace_seconds
        started = asyncio.get_running_loop().time()
        log.info("draining", extra={"grace_seconds": grace, "holds_in_flight": len(self.service.holds_in_flight)})
        self.metrics.draining.set(1)
        await self.health.enter_graceful_shutdown()
        self.events.close_watchers()
        if self.dashboard is not None:
            await self.dashboard.stop()
        left = await self.service.drain(grace)
        if left:
            log.warning("drain ended by its grace with holds still unsettled (the sweeper settles them by "
                        "on_reservation_expiry after a restart)", extra={"holds": left})
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await self.events.stop()
        self.store_loss.stop()
        self.metrics.stop()
        if self.server is not None:
            # Calls still in flight (a status read, a settle just arriving) get what is left of the grace.
            remaining = grace - (asyncio.get_running_loop().time() - started)
            await self.server.stop(max(0.5, remaining))
        await self.store.close()
        if self.sink is not None:
            await asyncio.to_thread(self.sink.stop)  # what is queued is written first
        log.info("stopped")


def _logged(job):
    """A periodic job whose failure is logged (the store may be down) and
    tried again at its next run. One run at a time: a due-checks run waits
    for a scheduled one in progress, then runs it again."""
    one_at_a_time = asyncio.Lock()

    async def run():
        async with one_at_a_time:
            try:
                await job()
            except StoreError as err:
                log.warning("%s: store unavailable: %s", job.__name__, err)
            except Exception:
                log.exception("%s failed", job.__name__)

    run.__name__ = job.__name__
    return run


REFUSED_WITHOUT_AUTH = ("refusing a non-loopback address without an auth section "
                        "(add auth.tokens, or set server.allow_unauthenticated: true)")


def store_shown(url: str) -> str:
    """The store URL fit for a log or a terminal: no query, no password."""
    url = url.split("?")[0]
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{userinfo}{at}{host}"


def connection_options(server: ServerConfig) -> list[tuple[str, int]]:
    """gRPC core settings that close connections nobody uses (see the constants above)."""
    idle = server.connection_idle_seconds
    ms = lambda seconds: max(1, int(seconds * 1000))  # noqa: E731
    return [
        ("grpc.max_connection_idle_ms", ms(idle)),
        ("grpc.server_handshake_timeout_ms", ms(min(HANDSHAKE_SECONDS, idle))),
        ("grpc.keepalive_time_ms", ms(KEEPALIVE_SECONDS)),
        ("grpc.keepalive_timeout_ms", ms(KEEPALIVE_TIMEOUT_SECONDS)),
        # Our pings go out on connections whose calls send nothing for a while (Watch).
        ("grpc.http2.max_pings_without_data", 0),
    ]
