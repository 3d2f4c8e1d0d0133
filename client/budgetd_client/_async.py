"""The async client. ``_sync.py`` is generated from this file by
``scripts/generate_sync.py``; edit here, then run ``make generate``."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from typing import Literal

import grpc
import grpc.aio

from . import _core, _spool
from ._core import Call
from .errors import BudgetError, BudgetUnavailable
from .money import UsdLike
from .status import AgentStatus, ConfigInfo, Reconciliation, Report
from .usage import UsageEstimate
from .v1 import budget_pb2 as pb
from .v1 import budget_pb2_grpc as pb_grpc

# Apart: in the generated _sync.py this is _sync_wrap, which would sort elsewhere.
from ._async_wrap import wrap_openai  # isort: skip

log = logging.getLogger("budgetd_client")


class AsyncBudget:
    """A connection to budgetd. One per process; safe to share between tasks.

    ``address`` defaults to ``$BUDGETD_ADDRESS`` (else ``localhost:50051``):
    ``host:port``, ``http://host:port`` (plaintext) or ``https://host:port``
    (TLS, with the system's CAs unless ``tls`` says more); anything else
    raises ValueError naming where the address came from. ``token``
    defaults to ``$BUDGETD_TOKEN``. ``timeout`` bounds every call, in
    seconds: a call waits for budgetd (through a restart, a drain, a refused
    connection) and tries again until then, and only then raises
    ``BudgetUnavailable``. ``fail_open=True`` lets calls proceed when budgetd
    did not answer in time (the default refuses them with ``BudgetUnavailable``).
    ``tls=Tls(ca_file=..., cert_file=..., key_file=...)`` (or the
    ``BUDGETD_TLS_*`` variables) connects with TLS, mutual when a
    certificate is given.

    A settle (the Commit or Release on leaving a guard) that budgetd did not
    take in time is kept and sent again in the background until it is
    acknowledged; ``spool_path`` (or ``$BUDGETD_SPOOL``) names a directory
    where kept settles also go to disk, so they outlive the process: a later
    Budget with the same path delivers them. ``close()`` makes one bounded
    try to deliver what is kept; so does the interpreter's exit.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        token: str | None = None,
        timeout: float | None = None,
        fail_open: bool = False,
        tls: _core.Tls | None = None,
        spool_path: str | None = None,
    ) -> None:
        self.settings = _core.Settings.resolve(address, token, timeout, fail_open, tls, spool_path)
        self._lock = threading.Lock()
        self._channel = None
        self._stub_pair: tuple[pb_grpc.BudgetStub, pb_grpc.AdminStub] | None = None  # once the channel is made
        self._closed = False
        # Settles budgetd has not acknowledged, and what sends them again.
        self._kept = _spool.Spool(self.settings)
        self._retrier = self._kept.retrier = _spool.TaskRetrier()
        if self._kept.pending:  # left by an earlier process
            self._retrier.start(self._retry_kept)

    def _stubs(self):
        # The channel is made on first use, so a Budget built before a fork
        # (or outside an event loop) connects in the process that uses it.
        stubs = self._stub_pair
        if stubs is not None:  # made already: no lock on every call
            return stubs
        with self._lock:
            if self._stub_pair is None:
                self._channel = _core.channel(self.settings, grpc.aio)
                self._stub_pair = (pb_grpc.BudgetStub(self._channel), pb_grpc.AdminStub(self._channel))
                self._closed = False
            stubs = self._stub_pair
        if self._kept.pending:
            self._retrier.start(self._retry_kept)
        return stubs

    async def _rpc(self, method, request, seconds: float | None = None):
        """One call within one deadline: it waits for budgetd to be ready,
        and what budgetd refuses as unavailable (draining, a reset
        connection) is tried again after a short pause, until the deadline."""
        started = time.monotonic()
        timeout = seconds or self.settings.timeout
        try:
            return await method(request, timeout=timeout, metadata=self.settings.metadata, wait_for_ready=True)
        except grpc.RpcError as err:
            failure = err
        return await self._rpc_again(method, request, started, timeout, failure)

    async def _rpc_again(self, method, request, started: float, seconds: float, err: grpc.RpcError):
        """The rest of ``_rpc`` after its first attempt failed (off the hot path)."""
        pause = _core.RETRY_FIRST_PAUSE
        while True:
            if self._closed:
                raise BudgetUnavailable("the Budget was closed while the call was under way") from None
            left = seconds - (time.monotonic() - started)
            if not (_core.is_transient(err) and left > 0.01):
                break
            await asyncio.sleep(min(pause, left - 0.005))
            pause = min(pause * 2, _core.RETRY_MAX_PAUSE)
            try:
                left = max(0.001, seconds - (time.monotonic() - started))
                return await method(request, timeout=left, metadata=self.settings.metadata, wait_for_ready=True)
            except grpc.RpcError as again:
                err = again
        code = err.code()
        why = await self._why_no_answer() if code == grpc.StatusCode.DEADLINE_EXCEEDED else ""
        final = _core.is_transient(err) or code == grpc.StatusCode.DEADLINE_EXCEEDED
        raise _core.translate_rpc_error(err, address=self.settings.address, timeout=seconds if final else None,
                                        why=why) from None

    async def _why_no_answer(self) -> str:
        """After a deadline: ask the channel, without waiting, why (its last
        connection error, or that budgetd is connected but slow)."""
        channel = self._channel
        if channel is None:
            return ""
        try:
            await channel.unary_unary(_core.PROBE_METHOD)(b"", timeout=_core.PROBE_SECONDS)
        except grpc.RpcError as err:
            return _core.probe_answer(err)
        except Exception:
            return ""
        return ""

    def guard(
        self,
        agent_id: str,
        *,
        estimate_usd: UsdLike | None = None,
        tags: Mapping[str, str] | None = None,
        estimate_usage: UsageEstimate | None = None,
    ) -> AsyncGuard:
        """Hold an estimate for one model call; settle or release on exit.

        The hold is ``estimate_usd``, or ``estimate_usage`` (token bounds the
        daemon prices), or else the agent's configured ``estimate_usd``.
        Raises ``BudgetExceeded`` or ``AgentPaused`` on entry, before the
        block runs. Leaving the block never raises because budgetd is late:
        a settle it did not take in time is kept and sent again (logged).
        """
        return AsyncGuard(self, Call(agent_id, estimate_usd, tags, estimate_usage))

    def wrap(self, client, agent_id: str, *, tags: Mapping[str, str] | None = None):
        """An OpenAI client whose chat.completions.create, responses.create and
        embeddings.create are guarded (streams too); all else passes through."""
        return wrap_openai(self, client, agent_id, tags)

    async def status(self, agent_id: str | None = None, *, known_only: bool = False,
                     tag: _core.TagArg | None = None) -> AgentStatus:
        """The agent's spend, holds, caps and pause. ``known_only=True`` (what
        operators want) raises ``UnknownAgent`` for an agent neither in the
        config nor ever seen, naming the closest known ids, where the default
        answers with the ``defaults`` budget an agent of that id would get.

        ``tag=("customer", "acme")`` (or ``"customer=acme"``): that tag
        value's windows and pause (tag_budgets) instead; an agent token also
        names an agent it acts for."""
        budget, _ = self._stubs()
        request = _core.status_request(agent_id, known_only, tag)
        return _core.agent_status(await self._rpc(budget.GetStatus, request))

    async def watch(self, agent_id: str):
        """Events about the agent as they happen: paused, resumed, warning,
        anomaly (also for a group it belongs to). Iterate over it; stop
        iterating (or close it) to unsubscribe. It runs until then.

        Opening it waits for budgetd up to the timeout (then
        ``BudgetUnavailable``). Once open it rides through restarts: when the
        stream is lost (budgetd restarting or draining, the connection
        broken) it logs a warning, reconnects with backoff for as long as it
        takes, logs again, and yields ``Event(kind="reconnected")`` whose
        ``status`` is the agent's status read on reconnecting: events in the
        gap may have been missed, so check it (is the agent paused now?). A
        refusal (permission denied, unknown agent, a bad id) raises, and so
        does a token that is revoked or loses access while the stream is
        open (budgetd ends it UNAUTHENTICATED or PERMISSION_DENIED): it is
        not reconnected.
        ``close()`` on the Budget ends the iteration.
        """
        request = _core.watch_request(agent_id)
        call, _ = await self._open_watch(request, agent_id, time.monotonic() + self.settings.timeout)
        try:
            while True:
                try:
                    async for message in call:
                        yield _core.event(message)
                    cause = "the stream ended"
                except grpc.RpcError as err:
                    if not _core.is_transient(err):
                        raise _core.translate_rpc_error(err) from None
                    cause = f"{err.code().name}: {err.details()}"
                call.cancel()
                if self._closed:
                    return
                lost_at = time.monotonic()
                log.warning("budgetd: the watch of %s was lost (%s); reconnecting", agent_id, cause)
                call, status = await self._open_watch(request, agent_id, None)
                if call is None:
                    return
                lost_for = time.monotonic() - lost_at
                log.warning("budgetd: the watch of %s is back after %.1fs; events in that time may have been "
                            "missed", agent_id, lost_for)
                yield _core.reconnected_event(agent_id, status, lost_for, cause)
        finally:
            if call is not None:
                call.cancel()

    async def _open_watch(self, request, agent_id: str, deadline: float | None):
        """Open a Watch stream and read the agent's status behind it (so the
        stream is known to be served, and a refusal says why). Tried again
        with backoff until ``deadline`` (None: until it works, or close())."""
        pause = _core.RETRY_FIRST_PAUSE
        while True:
            budget, _ = self._stubs()
            call = budget.Watch(request, metadata=self.settings.metadata, wait_for_ready=True)
            try:
                left = self.settings.timeout if deadline is None else max(0.01, deadline - time.monotonic())
                status = _core.agent_status(await self._rpc(budget.GetStatus, _core.status_request(agent_id), left))
                if not call.done():
                    return call, status
                code = await call.code()
                if code not in _core.TRANSIENT_CODES:  # refused: let the stream say why
                    return call, status
                failure = f"{code.name}: {await call.details()}"
            except BudgetUnavailable as err:
                call.cancel()
                if deadline is not None:
                    raise
                failure = str(err)
            except BaseException:
                call.cancel()
                raise
            call.cancel()
            if self._closed:
                return None, None
            if deadline is not None and time.monotonic() + pause >= deadline:
                raise BudgetUnavailable(f"budgetd at {self.settings.address} would not open a watch within "
                                        f"{self.settings.timeout:g}s: {failure}")
            log.debug("budgetd: watch of %s not open yet (%s)", agent_id, failure)
            await asyncio.sleep(pause)
            pause = min(pause * 2, _core.KEPT_RETRY_MAX_PAUSE)

    async def list_status(self) -> list[AgentStatus]:
        _, admin = self._stubs()
        resp = await self._rpc(admin.ListStatus, pb.ListStatusRequest())
        return [_core.agent_status(a) for a in resp.agents]

    async def pause(self, agent_id: str | None = None, reason: str = "", *,
                    tag: _core.TagArg | None = None) -> AgentStatus:
        """Pause an agent by hand (admin), or with ``tag=("customer", "acme")``
        every call carrying that tag value. It stays paused until resumed."""
        _, admin = self._stubs()
        return _core.agent_status(await self._rpc(admin.Pause, _core.pause_request(agent_id, reason, tag)))

    async def resume(self, agent_id: str | None = None, *, tag: _core.TagArg | None = None) -> AgentStatus:
        """Lift every pause of the agent, or of the tag value (admin)."""
        _, admin = self._stubs()
        return _core.agent_status(await self._rpc(admin.Resume, _core.resume_request(agent_id, tag)))

    async def report(self, by: str = "agent", since: str = "", until: str = "", *, top: int = 0,
                     month: str = "") -> Report:
        """Spend from the ledger grouped by agent, model, day, group or a tag,
        over local days ``since``..``until`` (YYYY-MM-DD; default today), or
        over a ``month`` (YYYY-MM), per row with requests, average cost,
        cache-hit rate and p95 input tokens, biggest spend first: the ``top``
        rows (0: all) and a total of every row (admin)."""
        _, admin = self._stubs()
        resp = await self._rpc(admin.Report, _core.report_request(by, since, until, top, month))
        return _core.report(by, resp)

    async def reconcile(self, since: str = "", until: str = "", *, provider: str = "",
                        run: bool = False) -> Reconciliation:
        """The ledger compared with the providers' cost reports, per UTC day
        ``since``..``until`` (YYYY-MM-DD; default yesterday and today),
        provider and model, with each provider's status (admin). ``run``:
        compare again now (at most 31 days) before answering."""
        _, admin = self._stubs()
        request = pb.ReconcileRequest(since=since, until=until, provider=provider, run=run)
        # A run reads each provider's report (with retries): give it time.
        return _core.reconciliation(await self._rpc(admin.Reconcile, request, 300.0 if run else None))

    async def export(self, since: str = "", until: str = ""):
        """The cost events of local days ``since``..``until`` (YYYY-MM-DD;
        default today), oldest first, as they stream in (admin): each a
        ``budgetd_client.v1.budget_pb2.CostEvent`` (docs/export.md). No
        deadline: a long range takes as long as it takes."""
        _, admin = self._stubs()
        call = admin.Export(pb.ExportRequest(since=since, until=until), metadata=self.settings.metadata)
        try:
            async for message in call:  # noqa: RUF100, UP028 (the generated sync loop)
                yield message
        except grpc.RpcError as err:
            raise _core.translate_rpc_error(err, address=self.settings.address) from None
        finally:
            call.cancel()

    async def config(self) -> ConfigInfo:
        """The config in force: generation, when loaded, the last rejected edit (admin)."""
        _, admin = self._stubs()
        return _core.config_info(await self._rpc(admin.GetConfig, pb.GetConfigRequest()))

    def _keep(self, request, why: str) -> None:
        """Keep a settle budgetd did not take, and have it sent again."""
        where = self._kept.keep(request)
        log.warning("budgetd: the %s was not acknowledged (%s); kept %s and sent again until budgetd takes it",
                    _core.describe_settle(request), why, where)
        self._retrier.start(self._retry_kept)

    async def _deliver_kept(self, name: str, request, seconds: float) -> bool:
        """Send one kept settle; False when budgetd did not answer in time."""
        budget, _ = self._stubs()
        method = budget.Release if isinstance(request, pb.ReleaseRequest) else budget.Commit
        try:
            await self._rpc(method, request, seconds)
        except BudgetUnavailable:
            return False
        except (BudgetError, ValueError) as err:
            self._kept.refused(name, err)
            return True
        self._kept.delivered(name)
        return True

    async def _retry_kept(self) -> None:
        """The retrier's loop: send the kept settles, oldest first, until none
        is left (each attempt waits for budgetd up to the timeout; between
        rounds a pause that doubles up to a cap)."""
        pause = _core.RETRY_FIRST_PAUSE
        while not self._retrier.stopping and not self._closed:
            batch = self._kept.batch()
            if not batch:
                return
            for name, request in batch:
                if self._retrier.stopping or self._closed:
                    return
                if not await self._deliver_kept(name, request, self.settings.timeout):
                    break
            else:
                pause = _core.RETRY_FIRST_PAUSE
                continue
            await self._retrier.sleep(pause)
            pause = min(pause * 2, _core.KEPT_RETRY_MAX_PAUSE)

    async def _flush_kept(self, seconds: float) -> None:
        """Send the kept settles within ``seconds`` overall."""
        deadline = time.monotonic() + seconds
        for name, request in self._kept.batch():
            left = deadline - time.monotonic()
            if left <= 0.01 or not await self._deliver_kept(name, request, left):
                return

    async def close(self) -> None:
        """Stop the retrier, try once more (up to min(timeout, 5 s)) to
        deliver the kept settles, and close the connection."""
        await self._retrier.stop()
        if self._kept.pending and self._channel is not None:
            await self._flush_kept(min(self.settings.timeout, _spool.EXIT_FLUSH_SECONDS))
            self._kept.report_left("at close")
        with self._lock:
            channel, self._channel, self._stub_pair = self._channel, None, None
            self._closed = True
        if channel is not None:
            await channel.close()

    async def __aenter__(self) -> AsyncBudget:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()


class AsyncGuard:
    """The context manager ``AsyncBudget.guard`` returns."""

    def __init__(self, budget: AsyncBudget, call: Call) -> None:
        self._budget = budget
        self._call = call

    async def __aenter__(self) -> Call:
        stub, _ = self._budget._stubs()
        try:
            resp = await self._budget._rpc(stub.Authorize, self._call.authorize_request())
        except BudgetUnavailable:
            if not self._budget.settings.fail_open:
                raise
            log.warning("budgetd did not answer; %s proceeds unguarded (fail_open)", self._call.agent_id)
            self._call.began()
            return self._call
        self._call.authorized(resp)
        return self._call

    async def __aexit__(self, exc_type, exc, tb) -> Literal[False]:  # never swallows the block's exception
        budget = self._budget
        request = self._call.exit_request(failed=exc_type is not None, error=exc)
        if self._call.held_nanos is None:
            # fail_open, and budgetd did not answer a moment ago: keep the settle
            # (the retrier sends it when budgetd is back) rather than wait again.
            budget._keep(request, "fail_open: budgetd did not answer the hold")
            return False
        stub, _ = budget._stubs()
        method = stub.Release if isinstance(request, pb.ReleaseRequest) else stub.Commit
        try:
            await budget._rpc(method, request)
        except BudgetUnavailable as err:
            budget._keep(request, str(err))  # late is not lost: never raise for it
        except (BudgetError, ValueError) as err:
            # Refused. Never hide the block's own exception behind ours.
            if exc_type is None:
                raise
            log.warning("budgetd: could not settle %s for %s: %s", self._call.request_id, self._call.agent_id, err)
        return False
