"""Prometheus metrics, served on ``server.metrics_listen`` (/metrics), behind
the same bearer tokens as the gRPC port when there are any.

Counters and histograms are updated on the hot path (a few microseconds);
the per-agent gauges are refreshed by a periodic job from the store."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

MAX_AGENT_SERIES = 1000  # spend/cap gauges for at most this many agents (cardinality)
MAX_MODEL_SERIES = 200  # held-to-actual series for at most this many models


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.holds = Counter("budgetd_holds", "Authorize outcomes", ["result", "reason"], registry=r)
        self.rpc_latency = Histogram("budgetd_rpc_latency_seconds", "Time to answer an RPC", ["method"],
                                     buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
                                     registry=r)
        self.rpc_errors = Counter("budgetd_rpc_errors", "RPCs answered with an error", ["method", "code"],
                                  registry=r)
        self.store_errors = Counter("budgetd_store_errors", "Store calls that failed", registry=r)
        self.spent = Gauge("budgetd_spent_usd", "Spend in the current window", ["agent", "window"], registry=r)
        self.cap = Gauge("budgetd_cap_usd", "Cap of the current window (absent: no cap)", ["agent", "window"],
                         registry=r)
        self.paused = Gauge("budgetd_paused_agents", "Agents paused now", registry=r)
        self.store_lost = Gauge("budgetd_store_lost", "1 once the store lost acknowledged writes (restart to adopt it)",
                                registry=r)
        self.draining = Gauge("budgetd_draining", "1 while the daemon drains before it stops", registry=r)
        self.outbox_depth = Gauge("budgetd_outbox_depth", "Notices not yet delivered", registry=r)
        self.notices = Counter("budgetd_notices", "Notice deliveries by outcome", ["outcome"], registry=r)
        self.reloads = Counter("budgetd_config_reloads", "Config reloads by outcome", ["outcome"], registry=r)
        self.hold_waits = Counter("budgetd_hold_waits", "Holds that waited for headroom, by how the wait ended "
                                  "(allowed, refused, timeout, draining)", ["outcome"], registry=r)
        self.holds_waiting = Gauge("budgetd_holds_waiting", "Holds waiting for headroom now", registry=r)
        self.hold_wait_seconds = Histogram("budgetd_hold_wait_seconds", "How long a hold waited for headroom",
                                           buckets=(0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.held_to_actual = Histogram("budgetd_held_to_actual_ratio", "Nanos held / nanos settled per call, "
                                        "by model (usage-priced settles of holds granted by this replica)",
                                        ["model"], buckets=(1, 1.05, 1.1, 1.25, 1.5, 2, 3, 4, 6, 10, 100),
                                        registry=r)
        self.export_lines = Counter("budgetd_export_lines", "Cost events written to the export sink", registry=r)
        self.export_errors = Counter("budgetd_export_errors", "Cost events the export sink could not write "
                                     "(logged; the settle itself went through)", registry=r)
        self.generation = Gauge("budgetd_config_generation", "Generation of the config in force", registry=r)
        # Reconciliation (docs/reconciliation.md): the newest closed UTC day compared, per provider.
        self.reconcile_drift = Gauge("budgetd_reconcile_drift_usd", "Provider's cost minus budgetd's for the newest "
                                     "closed UTC day compared, per model", ["provider", "model"], registry=r)
        self.reconcile_last_success = Gauge("budgetd_reconcile_last_success_timestamp_seconds",
                                            "When the provider's report was last read in full", ["provider"],
                                            registry=r)
        self.reconcile_up = Gauge("budgetd_reconcile_up", "1 when the provider's last reconciliation read its "
                                  "report, 0 when it failed", ["provider"], registry=r)
        self._server: _Server | None = None
        # labels() takes a lock and validates on every call: the hot path
        # keeps the children it uses.
        self.holds_allowed = self.holds.labels("allowed", "")
        self._latency_of: dict[str, object] = {}
        self._held_to_actual_of: dict[str, Histogram] = {}

    def held_to_actual_of(self, model: str):
        """The ratio's series of a model; past MAX_MODEL_SERIES models, one
        "other" series (model names come from callers: cardinality)."""
        child = self._held_to_actual_of.get(model)
        if child is None:
            if len(self._held_to_actual_of) >= MAX_MODEL_SERIES:
                model = "other"
            child = self._held_to_actual_of.get(model) or self.held_to_actual.labels(model)
            self._held_to_actual_of[model] = child
        return child

    def rpc_latency_of(self, method: str):
        child = self._latency_of.get(method)
        if child is None:
            child = self._latency_of[method] = self.rpc_latency.labels(method)
        return child

    def serve(self, listen: str, access: Access) -> int:
        """Serve /metrics on ``listen`` (HOST:PORT) from a thread; returns the port."""
        host, port = listen.rsplit(":", 1)
        host = host.strip("[]")

        class Server(_Server):
            address_family = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0][0]

        server = make_server(host, int(port), _guarded(make_wsgi_app(self.registry), access),
                             server_class=Server, handler_class=_QuietHandler)
        self._server = server
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        return server.server_port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# access(Authorization header or None) -> None to serve, or (HTTP status, why) to refuse.
Access = Callable[[str | None], "tuple[int, str] | None"]
_REASONS = {401: "401 Unauthorized", 403: "403 Forbidden"}


def _guarded(app, access: Access):
    def guarded(environ, start_response):
        refused = access(environ.get("HTTP_AUTHORIZATION"))
        if refused is None:
            return app(environ, start_response)
        status, why = refused
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        if status == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="budgetd metrics"'))
        start_response(_REASONS[status], headers)
        return [f"{why}\n".encode()]

    return guarded


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per scrape, so a slow scraper does not hold up another."""

    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # every scrape on stderr would drown the JSON log
        pass
