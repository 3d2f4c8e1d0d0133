"""The server interceptors, driven without a server: each wraps a method's
handler once, and maps our exceptions to the status codes and messages
clients see, for unary methods and streams alike."""

from __future__ import annotations

import grpc
import pytest

from budgetd.app import Draining, UnknownAgent
from budgetd.auth import sha256_hex
from budgetd.config import load_config_text
from budgetd.metrics import Metrics
from budgetd.rpc.interceptors import Authorization, Outcomes
from budgetd.rpc.registration import Malformed
from budgetd.store import StoreError
from budgetd_client.v1 import budget_pb2 as pb

AUTHORIZE = "/budgetd.v1.Budget/Authorize"
WATCH = "/budgetd.v1.Budget/Watch"
PAUSE = "/budgetd.v1.Admin/Pause"
HEALTH = "/grpc.health.v1.Health/Check"


class Aborted(grpc.aio.AbortError):
    pass


class Context:
    def __init__(self, token: str | None = None) -> None:
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def invocation_metadata(self):
        return self.metadata

    async def abort(self, code: grpc.StatusCode, details: str):
        self.code, self.details = code, details
        raise Aborted()


class Details:
    def __init__(self, method: str) -> None:
        self.method = method


def unary(behaviour) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(behaviour)


def stream(behaviour) -> grpc.RpcMethodHandler:
    return grpc.unary_stream_rpc_method_handler(behaviour)


async def through(interceptor, method: str, handler):
    async def continuation(details):
        return handler

    return await interceptor.intercept_service(continuation, Details(method))


async def answer(interceptor, method: str, handler, request, context):
    wrapped = await through(interceptor, method, handler)
    try:
        if wrapped.unary_unary is not None:
            return await wrapped.unary_unary(request, context)
        return [message async for message in wrapped.unary_stream(request, context)]
    except Aborted:
        return None


def raising(err: Exception):
    async def behaviour(request, context):
        raise err

    return behaviour


@pytest.mark.parametrize(("err", "code", "details"), [
    (ValueError("agent_id: bad"), grpc.StatusCode.INVALID_ARGUMENT, "agent_id: bad"),
    (UnknownAgent("agent 'x' has no budget"), grpc.StatusCode.NOT_FOUND, "agent 'x' has no budget"),
    (Draining(), grpc.StatusCode.UNAVAILABLE, str(Draining())),
    (StoreError("down"), grpc.StatusCode.UNAVAILABLE, "store unavailable: down"),
    (RuntimeError("bug"), grpc.StatusCode.INTERNAL, "internal error in Authorize; see the daemon's log"),
])
async def test_our_exceptions_become_status_codes_with_messages_and_are_counted(err, code, details):
    metrics = Metrics()
    context = Context()
    await answer(Outcomes(metrics), AUTHORIZE, unary(raising(err)), pb.AuthorizeRequest(), context)
    assert (context.code, context.details) == (code, details)
    assert metrics.rpc_errors.labels("Authorize", code.name)._value.get() == 1


async def test_a_stream_gets_the_same_mapping():
    context = Context()

    async def watch(request, context):
        yield pb.Event(kind="paused")
        raise UnknownAgent("agent 'x' has no budget")

    await answer(Outcomes(Metrics()), WATCH, stream(watch), pb.WatchRequest(), context)
    assert (context.code, context.details) == (grpc.StatusCode.NOT_FOUND, "agent 'x' has no budget")


async def test_a_body_that_did_not_parse_is_refused_before_the_method_runs():
    context = Context()
    ran = []

    async def authorize(request, context):
        ran.append(request)

    await answer(Outcomes(Metrics()), AUTHORIZE, unary(authorize), Malformed("malformed AuthorizeRequest: x"), context)
    assert (context.code, context.details) == (grpc.StatusCode.INVALID_ARGUMENT, "malformed AuthorizeRequest: x")
    assert ran == []


async def test_a_handler_is_wrapped_once_and_health_passes_through():
    interceptor = Outcomes(Metrics())

    async def authorize(request, context):
        return pb.AuthorizeResponse()

    handler, health = unary(authorize), unary(authorize)
    first = await through(interceptor, AUTHORIZE, handler)
    assert first is not handler and await through(interceptor, AUTHORIZE, handler) is first
    assert await through(interceptor, HEALTH, health) is health


def auth_config(*tokens: str):
    body = "".join(tokens)
    return load_config_text(f'server: {{listen: "127.0.0.1:0"}}\nstore: {{url: "memory://"}}\nauth:\n  tokens:\n{body}'
                            "agents:\n  a1: {daily_usd: 1}\n").auth


ADMIN = f'    - {{name: ops, sha256: "{sha256_hex("admin-token")}", role: admin}}\n'
SCOPED = f'    - {{name: bots, sha256: "{sha256_hex("agent-token")}", agents: ["a*"]}}\n'


async def ok(request, context):
    return pb.AgentStatus()


async def test_admin_methods_need_an_admin_token_and_the_others_one_scoped_to_the_agent():
    auth = auth_config(ADMIN, SCOPED)
    guard = Outcomes(Metrics(), Authorization(lambda: auth))

    async def call(method: str, request, token: str | None) -> Context:
        context = Context(token)
        await answer(guard, method, unary(ok), request, context)
        return context

    assert (await call(AUTHORIZE, pb.AuthorizeRequest(agent_id="a1"), "agent-token")).code is None
    refused = await call(AUTHORIZE, pb.AuthorizeRequest(agent_id="b1"), "agent-token")
    assert (refused.code, refused.details) == (grpc.StatusCode.PERMISSION_DENIED,
                                               "token 'bots' may not act for agent 'b1'")
    refused = await call(PAUSE, pb.PauseRequest(agent_id="a1"), "agent-token")
    assert (refused.code, refused.details) == (grpc.StatusCode.PERMISSION_DENIED, "token 'bots' is not an admin token")
    assert (await call(PAUSE, pb.PauseRequest(agent_id="a1"), "admin-token")).code is None
    missing = await call(AUTHORIZE, pb.AuthorizeRequest(agent_id="a1"), None)
    assert missing.code is grpc.StatusCode.UNAUTHENTICATED


async def test_without_an_auth_section_every_caller_is_trusted():
    context = Context()
    guard = Outcomes(Metrics(), Authorization(lambda: None))
    assert await answer(guard, PAUSE, unary(ok), pb.PauseRequest(agent_id="a1"), context) == pb.AgentStatus()


async def test_a_stream_is_authorized_like_a_unary_call():
    guard = Outcomes(Metrics(), Authorization(lambda: auth_config(SCOPED)))

    async def watch(request, context):
        yield pb.Event()

    allowed, refused = Context("agent-token"), Context("agent-token")
    assert await answer(guard, WATCH, stream(watch), pb.WatchRequest(agent_id="a1"), allowed) == [pb.Event()]
    assert await answer(guard, WATCH, stream(watch), pb.WatchRequest(agent_id="b1"), refused) is None
    assert (refused.code, refused.details) == (grpc.StatusCode.PERMISSION_DENIED,
                                               "token 'bots' may not act for agent 'b1'")
