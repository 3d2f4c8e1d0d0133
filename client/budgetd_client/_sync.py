"""Generated from the async file by scripts/generate_sync.py: do not edit; change the
async file and run `make generate`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

import grpc

from . import _core
from ._core import Call
from .errors import BudgetError, BudgetUnavailable
from .money import UsdLike
from .status import AgentStatus, ConfigInfo, Report
from .usage import UsageEstimate
from ._sync_wrap import wrap_openai
from .v1 import budget_pb2 as pb
from .v1 import budget_pb2_grpc as pb_grpc

log = logging.getLogger("budgetd_client")


class Budget:
    """A connection to budgetd. One per process; safe to share between threads.

    ``address`` defaults to ``$BUDGETD_ADDRESS`` (else ``localhost:50051``),
    ``token`` to ``$BUDGETD_TOKEN``. ``timeout`` bounds every call, in
    seconds. ``fail_open=True`` lets calls proceed when budgetd cannot be
    reached (the default refuses them with ``BudgetUnavailable``).
    ``tls=Tls(ca_file=..., cert_file=..., key_file=...)`` (or the
    ``BUDGETD_TLS_*`` variables) connects with TLS, mutual when a
    certificate is given.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        token: str | None = None,
        timeout: float | None = None,
        fail_open: bool = False,
        tls: _core.Tls | None = None,
    ) -> None:
        self.settings = _core.Settings.resolve(address, token, timeout, fail_open, tls)
        self._lock = threading.Lock()
        self._channel = None
        self._budget_stub = None
        self._admin_stub = None
        self._stub_pair = None  # (budget, admin) once the channel is made
        # fail_open: settles budgetd could not take, sent again once it answers.
        self._spool: list = []

    def _stubs(self):
        # The channel is made on first use, so a Budget built before a fork
        # (or outside an event loop) connects in the process that uses it.
        stubs = self._stub_pair
        if stubs is not None:  # made already: no lock on every call
            return stubs
        with self._lock:
            if self._channel is None:
                if self.settings.tls is None:
                    self._channel = grpc.insecure_channel(
                        self.settings.address, options=self.settings.channel_options
                    )
                else:
                    self._channel = grpc.secure_channel(
                        self.settings.address, self.settings.tls.credentials(), options=self.settings.channel_options
                    )
                self._budget_stub = pb_grpc.BudgetStub(self._channel)
                self._admin_stub = pb_grpc.AdminStub(self._channel)
                self._stub_pair = (self._budget_stub, self._admin_stub)
            return self._budget_stub, self._admin_stub

    def _rpc(self, method, request):
        try:
            return method(request, timeout=self.settings.timeout, metadata=self.settings.metadata)
        except grpc.RpcError as err:
            raise _core.translate_rpc_error(err) from None

    def guard(
        self,
        agent_id: str,
        *,
        estimate_usd: UsdLike | None = None,
        tags: Mapping[str, str] | None = None,
        estimate_usage: UsageEstimate | None = None,
    ) -> Guard:
        """Hold an estimate for one model call; settle or release on exit.

        The hold is ``estimate_usd``, or ``estimate_usage`` (token bounds the
        daemon prices), or else the agent's configured ``estimate_usd``.
        Raises ``BudgetExceeded`` or ``AgentPaused`` on entry, before the
        block runs.
        """
        return Guard(self, Call(agent_id, estimate_usd, tags, estimate_usage))

    def wrap(self, client, agent_id: str, *, tags: Mapping[str, str] | None = None):
        """An OpenAI client whose chat.completions.create, responses.create and
        embeddings.create are guarded (streams too); all else passes through."""
        return wrap_openai(self, client, agent_id, tags)

    def status(self, agent_id: str) -> AgentStatus:
        budget, _ = self._stubs()
        return _core.agent_status(self._rpc(budget.GetStatus, _core.status_request(agent_id)))

    def watch(self, agent_id: str):
        """Events about the agent as they happen: paused, resumed, warning,
        anomaly (also for a group it belongs to). Iterate over it; stop
        iterating (or close it) to unsubscribe. No timeout: it runs until then."""
        budget, _ = self._stubs()
        call = budget.Watch(_core.watch_request(agent_id), metadata=self.settings.metadata)
        try:
            for message in call:
                yield _core.event(message)
        except grpc.RpcError as err:
            raise _core.translate_rpc_error(err) from None
        finally:
            call.cancel()

    def list_status(self) -> list[AgentStatus]:
        _, admin = self._stubs()
        resp = self._rpc(admin.ListStatus, pb.ListStatusRequest())
        return [_core.agent_status(a) for a in resp.agents]

    def pause(self, agent_id: str, reason: str = "") -> AgentStatus:
        """Pause an agent by hand (admin). It stays paused until resumed."""
        _, admin = self._stubs()
        return _core.agent_status(self._rpc(admin.Pause, _core.pause_request(agent_id, reason)))

    def resume(self, agent_id: str) -> AgentStatus:
        """Lift every pause of the agent (admin)."""
        _, admin = self._stubs()
        return _core.agent_status(self._rpc(admin.Resume, _core.resume_request(agent_id)))

    def report(self, by: str = "agent", since: str = "", until: str = "") -> Report:
        """Spend from the ledger grouped by agent, model, day, group or a tag,
        over local days ``since``..``until`` (YYYY-MM-DD; default today) (admin)."""
        _, admin = self._stubs()
        resp = self._rpc(admin.Report, pb.ReportRequest(by=by, since=since, until=until))
        return _core.report(by, resp)

    def config(self) -> ConfigInfo:
        """The config in force: generation, when loaded, the last rejected edit (admin)."""
        _, admin = self._stubs()
        return _core.config_info(self._rpc(admin.GetConfig, pb.GetConfigRequest()))

    def _keep_for_later(self, request) -> None:
        with self._lock:
            if len(self._spool) >= _core.SPOOL_LIMIT:
                log.error("budgetd: fail-open spool full; dropping the settle of %s", self._spool[0].request_id)
                self._spool.pop(0)
            self._spool.append(request)

    def _flush_spool(self) -> None:
        """Send the settles kept while budgetd was unreachable (each carries
        its request id: one that had landed is not counted twice)."""
        with self._lock:
            pending, self._spool = self._spool, []
        stub, _ = self._stubs()
        for i, request in enumerate(pending):
            try:
                self._rpc(stub.Commit, request)
            except BudgetUnavailable:
                with self._lock:
                    self._spool = pending[i:] + self._spool
                return
            except BudgetError as err:
                log.error("budgetd: a kept settle was refused: %s", err)

    def close(self) -> None:
        with self._lock:
            channel, self._channel, self._stub_pair = self._channel, None, None
        if channel is not None:
            channel.close()

    def __enter__(self) -> Budget:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class Guard:
    """The context manager ``Budget.guard`` returns."""

    def __init__(self, budget: Budget, call: Call) -> None:
        self._budget = budget
        self._call = call

    def __enter__(self) -> Call:
        stub, _ = self._budget._stubs()
        try:
            resp = self._budget._rpc(stub.Authorize, self._call.authorize_request())
        except BudgetUnavailable:
            if not self._budget.settings.fail_open:
                raise
            log.warning("budgetd unreachable; %s proceeds unguarded (fail_open)", self._call.agent_id)
            return self._call
        self._call.authorized(resp)
        if self._budget._spool:
            self._budget._flush_spool()
        return self._call

    def __exit__(self, exc_type, exc, tb) -> bool:
        request = self._call.exit_request(failed=exc_type is not None)
        stub, _ = self._budget._stubs()
        method = stub.Release if isinstance(request, pb.ReleaseRequest) else stub.Commit
        try:
            self._budget._rpc(method, request)
        except BudgetError as err:
            # Never hide the block's own exception behind ours; under
            # fail_open an unreachable daemon must not fail a finished call.
            fail_open = self._budget.settings.fail_open and isinstance(err, BudgetUnavailable)
            if fail_open and isinstance(request, pb.CommitRequest):
                self._budget._keep_for_later(request)
            elif exc_type is None and not fail_open:
                raise
            log.warning("budgetd: could not settle %s for %s: %s", self._call.request_id, self._call.agent_id, err)
        return False
