"""What every call of ours goes through, unary or stream alike: the
caller's authorization, our exceptions as status codes, error counts and
latency.

``Outcomes`` is a grpc.aio server interceptor, and budgetd's server applies
its ``wrap_handler`` to each handler as it registers it (see there why).
Either way a handler is wrapped once, not per call; health and reflection
pass through untouched."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from ..app import Draining, UnknownAgent
from ..auth import PermissionDenied, Unauthenticated, identify, require
from ..config.schema import AuthConfig
from ..metrics import Metrics
from ..pricing import UnknownModel
from ..store import RequestConflict, StoreError, StoreRefused
from .registration import ADMIN_SERVICE, SERVICE_NAMES, Malformed

log = logging.getLogger("budgetd.service")

Behaviour = Callable[[Any, grpc.aio.ServicerContext], Any]

STATUS_OF = (
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownAgent, grpc.StatusCode.NOT_FOUND),
    (Draining, grpc.StatusCode.UNAVAILABLE),
    ((RequestConflict, UnknownModel, StoreRefused), grpc.StatusCode.FAILED_PRECONDITION),
    (StoreError, grpc.StatusCode.UNAVAILABLE),
)


def status_of(err: Exception) -> grpc.StatusCode:
    return next((code for kind, code in STATUS_OF if isinstance(err, kind)), grpc.StatusCode.INTERNAL)


class _WrapOnce(grpc.aio.ServerInterceptor):
    """Wraps the behaviour of each of our methods once (``wrap``)."""

    def __init__(self) -> None:
        # method -> (the handler given, the handler wrapped around it)
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return self.wrap_handler(handler_call_details.method, handler)

    def wrap_handler(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """The handler of ``method`` ("/package.Service/Method") wrapped, once.

        budgetd's server applies this when it registers its services rather
        than through grpc's interceptor chain: the chain is awaited on every
        call, and on the 1-thread guarded call (two RPCs) it showed in `make
        bench` as a p50 ratio worse than before (a loopback echo measured
        25-40 microseconds more per RPC with the interceptor installed)."""
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        service, _, name = method.lstrip("/").partition("/")
        if service not in SERVICE_NAMES:  # health, reflection
            self._wrapped[method] = (handler, handler)
            return handler
        if handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(
                self.wrap(handler.unary_unary, service, name), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        else:
            wrapped = grpc.unary_stream_rpc_method_handler(
                self.wrap_stream(handler.unary_stream, service, name),
                request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def wrap(self, behaviour: Behaviour, service: str, name: str) -> Behaviour:
        raise NotImplementedError

    def wrap_stream(self, behaviour: Behaviour, service: str, name: str) -> Behaviour:
        raise NotImplementedError


class Outcomes(_WrapOnce):
    """Check the caller (``authorization``, when given), turn our exceptions
    into status codes with messages that say what, count the errors by code,
    and time each unary call. Streams are not timed: a Watch lasts as long as
    its watcher wants.

    Authorization is checked inside this wrapper rather than by a second
    one: every wrapper is one more coroutine around every call."""

    def __init__(self, metrics: Metrics, authorization: Authorization | None = None) -> None:
        super().__init__()
        self.metrics = metrics
        self.authorize = authorization.check if authorization is not None else None

    async def _refuse(self, err: Exception, name: str, context: grpc.aio.ServicerContext) -> None:
        code = status_of(err)
        self.metrics.rpc_errors.labels(name, code.name).inc()
        if code is grpc.StatusCode.INTERNAL:
            log.exception("internal error in %s", name)
            await context.abort(code, f"internal error in {name}; see the daemon's log")
        if code is grpc.StatusCode.UNAVAILABLE and not isinstance(err, Draining):
            self.metrics.store_errors.inc()
            log.error("store error in %s: %s", name, err)
            await context.abort(code, f"store unavailable: {err}")
        await context.abort(code, str(err))

    def wrap(self, behaviour: Behaviour, service: str, name: str) -> Behaviour:
        latency = self.metrics.rpc_latency_of(name)
        admin, authorize = service == ADMIN_SERVICE, self.authorize

        async def answered(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if request.__class__ is Malformed:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            started = time.perf_counter()
            try:
                if authorize is not None:
                    authorize(admin, request, context)
                return await behaviour(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as err:
                await self._refuse(err, name, context)
            finally:
                latency.observe(time.perf_counter() - started)

        return answered

    def wrap_stream(self, behaviour: Behaviour, service: str, name: str) -> Behaviour:
        admin, authorize = service == ADMIN_SERVICE, self.authorize

        async def streamed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if request.__class__ is Malformed:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            try:
                if authorize is not None:
                    authorize(admin, request, context)
                async for message in behaviour(request, context):
                    yield message
            except grpc.aio.AbortError:
                raise
            except Exception as err:
                await self._refuse(err, name, context)

        return streamed


class Authorization:
    """Check the caller's bearer token against the tokens in force: Admin
    methods need an admin token, the others one scoped to the request's
    agent. Without an auth section every caller is trusted."""

    def __init__(self, auth_in_force: Callable[[], AuthConfig | None]) -> None:
        self.auth_in_force = auth_in_force  # read per call: a reload may change the tokens

    def check(self, admin: bool, request: Any, context: grpc.aio.ServicerContext) -> None:
        auth = self.auth_in_force()
        if auth is not None:
            require(identify(auth, context.invocation_metadata()), agent_id=None if admin else request.agent_id,
                    admin=admin)
