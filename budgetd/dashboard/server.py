"""The dashboard's HTTP server: aiohttp on the daemon's own event loop, the
page's static files and the JSON API of docs/dashboard.md.

Every request passes one middleware that decides who is asking (access.py),
turns what the use cases refuse into a 4xx with a message (never a 500 for
bad input), and sets the headers that keep the page to itself (no framing,
no foreign scripts)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
from pathlib import Path

from aiohttp import web

from budgetd_client import _core

from .. import wire
from ..app import AgentReport, BudgetService, UnknownAgent
from ..cli import reconcile_view
from ..events import EventHub
from ..notices.model import Notice
from ..reconcile.answer import answer
from ..reconcile.runner import Reconciler
from ..reload import Reloader
from ..store import StoreError
from ..store.rules import pause_in_force
from ..windows import current_periods
from .access import COOKIE, SESSION_SECONDS, Access, Caller, Refused
from .fleet import Fleet, Subject
from .params import (
    action_body,
    fleet_query,
    notices_query,
    reconcile_query,
    report_query,
    spend_query,
    tag_arg,
)
from .views import Views, notice_json

log = logging.getLogger("budgetd.dashboard")

STATIC = Path(__file__).parent / "static"
MAX_BODY_BYTES = 64 * 1024
HEARTBEAT_SECONDS = 15.0
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
SESSION_PATH = "/api/v1/session"


class Dashboard:
    def __init__(self, service: BudgetService, events: EventHub, reloader: Reloader | None,
                 reconciler: Reconciler) -> None:
        self.service = service
        self.events = events
        self.reloader = reloader
        self.reconciler = reconciler  # the daemon's: its runs take turns
        self.access = Access(lambda: service.in_force.config.auth)
        self.fleet = Fleet(service)
        self.views = Views(service, self.fleet)
        self._runner: web.AppRunner | None = None
        self._streams: set[web.StreamResponse] = set()
        self._watcher: asyncio.Task | None = None
        self._warming: asyncio.Task | None = None
        self.tls = False

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY_BYTES)
        api = "/api/v1"
        app.router.add_get("/", self._index)
        app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
        app.router.add_get(f"{api}/session", self._session)
        app.router.add_post(f"{api}/session", self._sign_in)
        app.router.add_delete(f"{api}/session", self._sign_out)
        app.router.add_get(f"{api}/fleet", self._fleet)
        app.router.add_get(f"{api}/agents/{{agent_id}}", self._agent)
        app.router.add_get(f"{api}/tags/{{key}}/{{value}}", self._tag)
        app.router.add_get(f"{api}/spend", self._spend)
        app.router.add_get(f"{api}/report", self._report)
        app.router.add_get(f"{api}/notices", self._notices)
        app.router.add_get(f"{api}/reconcile", self._reconcile)
        app.router.add_get(f"{api}/events", self._events)
        app.router.add_post(f"{api}/pause", self._pause)
        app.router.add_post(f"{api}/resume", self._resume)
        return app

    async def start(self, listen: str, tls_context: ssl.SSLContext | None) -> int:
        """Listen on HOST:PORT (port 0: a free one); the port bound. The
        socket is bound here, so a port in use fails the start with its error."""
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        self.tls = tls_context is not None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not SO_REUSEPORT: one owner per port
            sock.bind((host, int(port)))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, sock, ssl_context=tls_context).start()
        self._watcher = asyncio.create_task(self._invalidate_on_events())
        self._warming = asyncio.create_task(self.fleet.warm())
        return sock.getsockname()[1]

    async def _invalidate_on_events(self) -> None:
        """Every notice (written by any replica) means the fleet's snapshot is stale."""
        queue = self.events.subscribe_all()
        try:
            while await queue.get() is not EventHub.CLOSED:
                self.fleet.invalidate()
        finally:
            self.events.unsubscribe_all(queue)

    async def stop(self) -> None:
        for task in (self._watcher, self._warming):
            if task is not None:
                task.cancel()
        self.fleet.close()
        for stream in list(self._streams):  # open event streams would hold the shutdown
            with contextlib.suppress(Exception):
                await stream.write_eof()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- every request ---------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler) -> web.StreamResponse:
        try:
            # Reading the session and signing in come before sign-in; every
            # other API request needs a caller, and every action its checks.
            signing_in = request.path == SESSION_PATH and request.method in ("GET", "HEAD", "POST")
            if request.path.startswith("/api/"):
                if request.method not in ("GET", "HEAD"):
                    self._check_origin(request)
                if not signing_in:
                    request["caller"] = self._caller(request)
                    if request.method not in ("GET", "HEAD"):
                        self.access.check_csrf(request["caller"], request.headers.get("X-CSRF-Token"))
            response = await handler(request)
        except Refused as err:
            response = _error(err.status, str(err))
        except UnknownAgent as err:
            response = _error(404, str(err))
        except ValueError as err:
            response = _error(400, str(err))
        except StoreError as err:
            response = _error(503, f"the store is unavailable: {err}")
        except web.HTTPException as err:
            if err.status >= 400:
                response = _error(err.status, err.reason if err.status != 404 else f"no such page: {request.path}")
            else:
                raise
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("dashboard: %s %s failed", request.method, request.path)
            response = _error(500, "budgetd failed to answer this request; its log says why")
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
            if request.path.startswith("/api/"):
                response.headers["Cache-Control"] = "no-store"
        return response

    def _caller(self, request: web.Request) -> Caller:
        return self.access.caller(request.headers.get("Authorization"), request.cookies.get(COOKIE))

    @staticmethod
    def _check_origin(request: web.Request) -> None:
        """A browser says where a request comes from: actions come from our own page."""
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise Refused(403, f"Origin {origin!r} is not this dashboard's: actions come from its own page")

    def _log_action(self, request: web.Request, action: str, target: str, reason: str = "") -> None:
        caller: Caller = request["caller"]
        log.warning("dashboard action", extra={"who": caller.who, "peer": request.remote, "action": action,
                                               "target": target, "reason": reason})

    # -- the page ----------------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    # -- session -------------------------------------------------------------------------------------
    async def _session(self, request: web.Request) -> web.StreamResponse:
        """Who is signed in, with the session's CSRF token. Without auth the
        page gets an anonymous session here (its cookie carries the token)."""
        session = self.access.session_of(request.cookies.get(COOKIE))
        if session is not None:
            return web.json_response(self._session_json(session.who, session.csrf))
        if request.headers.get("Authorization"):  # a script's bearer token: checked, no session made
            return web.json_response(self._session_json(self._caller(request).who, None))
        if self.access.auth_on:
            return web.json_response({"auth": True, "signed_in": False, "currency": "USD"})
        session = self.access.anonymous()
        response = web.json_response(self._session_json(session.who, session.csrf))
        self._set_cookie(response, session.id)
        return response

    async def _sign_in(self, request: web.Request) -> web.StreamResponse:
        body = await _json_object(request)
        session = self.access.sign_in(body.get("token"))
        log.warning("dashboard sign-in", extra={"who": session.who, "peer": request.remote})
        response = web.json_response(self._session_json(session.who, session.csrf))
        self._set_cookie(response, session.id)
        return response

    async def _sign_out(self, request: web.Request) -> web.StreamResponse:
        caller: Caller = request["caller"]
        if caller.session is not None:
            self.access.sign_out(caller.session)
        response = web.json_response({"signed_in": False})
        response.del_cookie(COOKIE, path="/")
        return response

    def _set_cookie(self, response: web.StreamResponse, session_id: str) -> None:
        response.set_cookie(COOKIE, session_id, httponly=True, samesite="Strict", path="/", secure=self.tls,
                            max_age=SESSION_SECONDS)

    def _session_json(self, who: str, csrf: str | None) -> dict:
        service = self.service
        config = service.in_force.config
        daily, monthly = current_periods(service.now(), config.zone)
        return {"auth": config.auth is not None, "signed_in": True, "who": who, "csrf": csrf, "currency": "USD",
                "zone": config.timezone, "today": daily.key, "month": monthly.key,
                "budgeted_tags": list(config.tag_budgets), "config": self._config_json()}

    def _config_json(self) -> dict:
        r = self.reloader
        if r is None:
            return {"generation": 1, "loaded_at": None, "source": "", "last_error": "", "last_error_at": None}
        return {"generation": r.generation, "loaded_at": r.loaded_at.isoformat() if r.loaded_at else None,
                "source": str(r.path), "last_error": r.last_error,
                "last_error_at": r.last_error_at.isoformat() if r.last_error_at else None}

    # -- reads -----------------------------------------------------------------------------------------
    async def _fleet(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(await self.fleet.page(fleet_query(request.query)))

    async def _agent(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(await self.views.agent(request.match_info["agent_id"]))

    async def _tag(self, request: web.Request) -> web.StreamResponse:
        key, value = tag_arg(f"{request.match_info['key']}={request.match_info['value']}")
        return web.json_response(await self.views.tag(key, value))

    async def _spend(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(await self.views.spend(*spend_query(request.query)))

    async def _report(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(await self.views.report(*report_query(request.query)))

    async def _notices(self, request: web.Request) -> web.StreamResponse:
        notices = await self.views.notices(*notices_query(request.query))
        return web.json_response({**notices, "config": self._config_json()})

    async def _reconcile(self, request: web.Request) -> web.StreamResponse:
        """What ``budgetctl reconcile --format json`` prints (one shape for both)."""
        since, until, provider = reconcile_query(request.query)
        found = await answer(self.reconciler, since, until, provider)
        return web.json_response(reconcile_view.as_json(_core.reconciliation(wire.reconcile_response(found))))

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: every notice as it is written, until the client
        goes, the daemon stops, or the caller's access ends (checked at each
        heartbeat, so a revoked token's stream does not go on)."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               **SECURITY_HEADERS})
        await response.prepare(request)
        queue = self.events.subscribe_all()
        self._streams.add(response)
        try:
            await response.write(b": budgetd events\n\n")
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    try:
                        self._caller(request)
                    except Refused:
                        break
                    await response.write(b": still here\n\n")
                    continue
                if item is EventHub.CLOSED:
                    break
                if isinstance(item, Notice):
                    data = json.dumps(notice_json(item))
                    await response.write(f"event: notice\ndata: {data}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.events.unsubscribe_all(queue)
            self._streams.discard(response)
        return response

    # -- actions -----------------------------------------------------------------------------------------
    async def _pause(self, request: web.Request) -> web.StreamResponse:
        agent_id, tag, reason = action_body(await _json_object(request), with_reason=True)
        if tag is not None:
            report = await self.service.pause_tag(*tag, reason)
            subject, target = ("tag", f"{tag[0]}={tag[1]}"), f"tag {tag[0]}={tag[1]}"
        else:
            report = await self.service.pause(agent_id, reason)
            subject, target = ("agent", agent_id), f"agent {agent_id}"
        self._log_action(request, "pause", target, report_reason(report))
        self.fleet.invalidate()
        return web.json_response(await self._row(*subject))

    async def _resume(self, request: web.Request) -> web.StreamResponse:
        agent_id, tag, _ = action_body(await _json_object(request), with_reason=False)
        if tag is not None:
            await self.service.resume_tag(*tag)
            subject, target = ("tag", f"{tag[0]}={tag[1]}"), f"tag {tag[0]}={tag[1]}"
        else:
            await self.service.resume(agent_id)
            subject, target = ("agent", agent_id), f"agent {agent_id}"
        self._log_action(request, "resume", target)
        self.fleet.invalidate()
        return web.json_response(await self._row(*subject))

    async def _row(self, kind: str, row_id: str) -> dict:
        (row,) = await self.fleet.rows([Subject(row_id, kind)])
        return row


def report_reason(report: AgentReport) -> str:
    found = pause_in_force(report.plan, report.state.pauses)
    return found[0].reason if found else ""


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=SECURITY_HEADERS)


async def _json_object(request: web.Request) -> dict:
    if request.content_type != "application/json":
        raise Refused(415, f"send the body as Content-Type: application/json (got {request.content_type!r})")
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"the body is not JSON: {err}") from None
    if not isinstance(body, dict):
        raise ValueError(f"the body must be a JSON object, got {type(body).__name__}")
    return body
