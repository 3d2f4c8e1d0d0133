"""The daemon: gRPC server, health, reflection, periodic work, shutdown."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import grpc
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from budgetd_client.v1 import budget_pb2 as pb
from budgetd_client.v1 import budget_pb2_grpc as pb_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .config import Config, Resolver
from .service import Active, AdminService, BudgetService, Clock, Core
from .store import Store, StoreError, open_store

log = logging.getLogger("budgetd")

SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["Budget"].full_name,
    pb.DESCRIPTOR.services_by_name["Admin"].full_name,
)
# Requests are small (ids, a few tags); anything larger is not ours.
MAX_MESSAGE_BYTES = 64 * 1024
HEALTH_CHECK_SECONDS = 2.0


def system_clock() -> datetime:
    return datetime.now(timezone.utc)


class Daemon:
    def __init__(self, config: Config, *, clock: Clock = system_clock, store: Store | None = None) -> None:
        self.config = config
        self.clock = clock
        self.store = store or open_store(config.store.url)
        self.core = Core(Active(config, Resolver(config)), self.store, clock)
        self.health = health.aio.HealthServicer()
        self.scheduler = AsyncIOScheduler(
            timezone=timezone.utc,
            # A busy loop must not silently drop runs (apscheduler's default grace is 1 s).
            job_defaults={"misfire_grace_time": 300, "coalesce": True, "max_instances": 1},
        )
        self.server: grpc.aio.Server | None = None
        self.port: int | None = None
        self._stopping = False

    async def start(self) -> None:
        await self.store.open()
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", 16 * 1024 * 1024),
        ]
        if self.config.store.url.startswith("sqlite://"):
            # gRPC turns SO_REUSEPORT on by default; a second daemon would then
            # bind the same port silently. With SQLite there must be one.
            options.append(("grpc.so_reuseport", 0))
        self.server = grpc.aio.server(options=options)
        pb_grpc.add_BudgetServicer_to_server(BudgetService(self.core), self.server)
        pb_grpc.add_AdminServicer_to_server(AdminService(self.core), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server,
        )
        try:
            self.port = self.server.add_insecure_port(self.config.server.listen)
        except RuntimeError as err:
            await self.store.close()
            raise OSError(f"cannot listen on {self.config.server.listen}: {err}") from None
        await self.server.start()
        await self.check_health()
        ttl = self.config.reservation_ttl_seconds
        self.scheduler.add_job(self.core.sweep, "interval", seconds=max(1, min(30, ttl // 10)), id="sweep")
        self.scheduler.add_job(self.check_health, "interval", seconds=HEALTH_CHECK_SECONDS, id="health")
        self.scheduler.start()
        log.info("listening", extra={"listen": self.config.server.listen, "port": self.port,
                                     "store": self.config.store.url.split("?")[0]})

    async def check_health(self) -> bool:
        """Serving = the store answers AND we are not shutting down."""
        if self._stopping:
            return False
        try:
            await self.store.ping()
            ok = True
        except StoreError as err:
            log.error("store unhealthy", extra={"error": str(err)})
            ok = False
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)
        return ok

    async def stop(self) -> None:
        """Health goes NOT_SERVING, new calls are refused, in-flight calls get
        the grace period, then the store is closed."""
        if self._stopping:
            return
        self._stopping = True
        log.info("shutting down", extra={"grace_seconds": self.config.server.shutdown_grace_seconds})
        await self.health.enter_graceful_shutdown()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.server is not None:
            await self.server.stop(self.config.server.shutdown_grace_seconds)
        await self.store.close()
        log.info("stopped")
