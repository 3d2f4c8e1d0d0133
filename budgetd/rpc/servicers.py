"""The gRPC servicers: decode the request, call the use case, encode the
reply (wire.py). Authorization, error mapping and metrics are the
interceptors' (interceptors.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import grpc

from budgetd_client.usage import Usage, UsageEstimate
from budgetd_client.v1 import budget_pb2 as pb
from budgetd_client.v1 import budget_pb2_grpc as pb_grpc

from .. import export, wire
from ..app import BudgetService
from ..auth import PermissionDenied, Unauthenticated, identify, may_act_for
from ..events import EventHub
from ..reconcile import answer
from ..reconcile.runner import Reconciler
from ..reload import Reloader
from ..store import CallFacts


class BudgetServicer(pb_grpc.BudgetServicer):
    def __init__(self, service: BudgetService, events: EventHub) -> None:
        self.service = service
        self.events = events

    async def Authorize(self, request: pb.AuthorizeRequest, context: grpc.aio.ServicerContext) -> pb.AuthorizeResponse:
        which = request.WhichOneof("estimate")
        estimate: int | UsageEstimate | None = None
        if which == "estimate_nanos":
            estimate = request.estimate_nanos
        elif which == "estimate_usage":
            e = request.estimate_usage
            estimate = UsageEstimate(e.model, e.input_tokens, e.output_tokens if e.HasField("output_tokens") else None,
                                     e.provider, e.service_tier, e.batch)
        result = await self.service.hold(request.agent_id, request.request_id, _tags(request), estimate,
                                         wait_ms=_wait_budget_ms(context))
        return wire.authorize_response(result)

    async def Commit(self, request: pb.CommitRequest, context: grpc.aio.ServicerContext) -> pb.CommitResponse:
        which = request.WhichOneof("actual")
        actual: int | Usage | None = None
        if which == "actual_nanos":
            actual = request.actual_nanos
        elif which == "usage":
            actual = Usage.from_proto(request.usage)
        settled = await self.service.settle(request.agent_id, request.request_id, _tags(request), actual,
                                            _facts(request))
        return pb.CommitResponse(counted_nanos=settled.counted_nanos, duplicate=settled.duplicate,
                                 paused=settled.paused, price_version=settled.price_version)

    async def Release(self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext) -> pb.ReleaseResponse:
        return pb.ReleaseResponse(released=await self.service.release(request.agent_id, request.request_id,
                                                                      _facts(request)))

    async def GetStatus(self, request: pb.GetStatusRequest, context: grpc.aio.ServicerContext) -> pb.AgentStatus:
        if request.HasField("tag"):  # the token was checked against agent_id, if any (interceptors.py)
            return wire.agent_status(await self.service.tag_status(request.tag.key, request.tag.value))
        may_see = _visible_to(self.service, context) if request.known_only else None
        return wire.agent_status(await self.service.status(request.agent_id, known_only=request.known_only,
                                                           may_see=may_see))

    async def Watch(self, request: pb.WatchRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.Event]:
        agent_id = self.service.open_watch(request.agent_id)
        # The stream's metadata is kept: a config change that revokes its token ends it.
        queue = self.events.subscribe(agent_id, context.invocation_metadata())
        try:
            while (event := await queue.get()) is not self.events.CLOSED:
                if isinstance(event, (Unauthenticated, PermissionDenied)):
                    raise type(event)(f"the watch of {agent_id!r} ended: after a config change its token is no "
                                      f"longer allowed (revoked, or it lost access): {event}")
                yield wire.event(event)
            # Told at once, so a watch does not hold the drain; the client reconnects.
            await context.abort(grpc.StatusCode.UNAVAILABLE, "budgetd is draining (shutting down): watch again")
        finally:
            self.events.unsubscribe(agent_id, queue)


class AdminServicer(pb_grpc.AdminServicer):
    def __init__(self, service: BudgetService, reloader: Reloader | None, reconciler: Reconciler) -> None:
        self.service = service
        self.reloader = reloader  # None: the config came from no file
        self.reconciler = reconciler  # the daemon's: its runs take turns

    async def Pause(self, request: pb.PauseRequest, context: grpc.aio.ServicerContext) -> pb.AgentStatus:
        if request.HasField("tag"):
            return wire.agent_status(await self.service.pause_tag(request.tag.key, request.tag.value, request.reason))
        return wire.agent_status(await self.service.pause(request.agent_id, request.reason))

    async def Resume(self, request: pb.ResumeRequest, context: grpc.aio.ServicerContext) -> pb.AgentStatus:
        if request.HasField("tag"):
            return wire.agent_status(await self.service.resume_tag(request.tag.key, request.tag.value))
        return wire.agent_status(await self.service.resume(request.agent_id))

    async def ListStatus(self, request: pb.ListStatusRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListStatusResponse:
        return pb.ListStatusResponse(agents=[wire.agent_status(r) for r in await self.service.list_statuses()])

    async def GetConfig(self, request: pb.GetConfigRequest, context: grpc.aio.ServicerContext) -> pb.ConfigInfo:
        r = self.reloader
        if r is None:
            return pb.ConfigInfo(generation=1)
        info = pb.ConfigInfo(generation=r.generation, loaded_at=wire.timestamp(r.loaded_at), source=str(r.path),
                             last_error=r.last_error)
        if r.last_error_at is not None:
            info.last_error_at.CopyFrom(wire.timestamp(r.last_error_at))
        return info

    async def Report(self, request: pb.ReportRequest, context: grpc.aio.ServicerContext) -> pb.ReportResponse:
        return wire.report_response(await self.service.report(request.by, request.since, request.until, request.top))

    async def Export(self, request: pb.ExportRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.CostEvent]:
        _, _, events = self.service.export(request.since, request.until)
        async for event in events:
            yield export.to_proto(event)

    async def Reconcile(self, request: pb.ReconcileRequest,
                        context: grpc.aio.ServicerContext) -> pb.ReconcileResponse:
        found = await answer.answer(self.reconciler, request.since, request.until, request.provider,
                                    run=request.run)
        return wire.reconcile_response(found)


def _facts(request: pb.CommitRequest | pb.ReleaseRequest) -> CallFacts | None:
    """What a settle says of the call besides its cost (None: nothing, as most old clients)."""
    latency = request.latency_ms if request.HasField("latency_ms") else None
    error = request.error_code if isinstance(request, pb.ReleaseRequest) else ""
    if latency is None and not request.model_requested and not error:
        return None
    return CallFacts(request.model_requested, latency, error)


def _tags(request: pb.AuthorizeRequest | pb.CommitRequest) -> dict[str, str]:
    return dict(request.tags) if request.tags else {}  # most calls have none: no dict made


def _visible_to(service: BudgetService, context: grpc.aio.ServicerContext) -> Callable[[str], bool] | None:
    """Which agent ids the caller's token may be told of (None: all)."""
    who = identify(service.in_force.config.auth, context.invocation_metadata())
    if who is None or who.role == "admin":
        return None
    return lambda agent_id: may_act_for(who, agent_id)


def _wait_budget_ms(context: grpc.aio.ServicerContext) -> int | None:
    """How long a hold may wait for headroom and still answer before the
    caller's deadline (None: no deadline). A tenth of the time left, at least
    50 ms, is kept for the answer to travel back: a refusal the caller sees
    says more than its own DEADLINE_EXCEEDED."""
    left = context.time_remaining()
    if left is None:
        return None
    left_ms = int(left * 1000)
    return max(0, left_ms - max(50, left_ms // 10))
