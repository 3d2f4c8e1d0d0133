"""The I/O-free half of the client, shared by ``Budget`` and ``AsyncBudget``.

Everything here builds requests, reads answers and decides what a guard does
on exit; nothing here sends a byte. The sync and async clients only move the
messages this module makes (and ``_sync.py`` is generated from ``_async.py``).
"""

from __future__ import annotations

import functools
import os
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import grpc

from . import validation
from .errors import AgentPaused, BudgetError, BudgetExceeded, BudgetUnavailable, UnknownAgent
from .money import UsdLike, nanos_to_usd, usd_to_nanos
from .status import (
    AgentStatus,
    ConfigInfo,
    Event,
    GroupStatus,
    ReconciledDay,
    ReconciledModel,
    ReconcileStatus,
    Reconciliation,
    Report,
    ReportRow,
    WindowStatus,
)
from .usage import Usage, UsageEstimate, usage_from_response
from .v1 import budget_pb2 as pb

DEFAULT_ADDRESS = "localhost:50051"
DEFAULT_TIMEOUT_SECONDS = 5.0

# A call that budgetd refused as unavailable (draining, its store down, the
# connection reset) is tried again after a pause that doubles up to a cap,
# until the call's one deadline. A refused connection is not a failure at all:
# calls wait for budgetd (wait_for_ready) within their deadline.
RETRY_FIRST_PAUSE = 0.05
RETRY_MAX_PAUSE = 0.5
# The background retrier's pause between rounds of kept settles (each attempt
# itself waits for budgetd up to the timeout).
KEPT_RETRY_MAX_PAUSE = 2.0
# What a deadline-exceeded call spends asking the channel why (a probe that
# budgetd answers UNIMPLEMENTED, or the channel refuses with its last error).
PROBE_SECONDS = 0.05
PROBE_METHOD = "/budgetd.v1.Budget/__probe__"

WINDOW_NAMES = {pb.WINDOW_DAILY: "daily", pb.WINDOW_MONTHLY: "monthly"}
PAUSE_KIND_NAMES = {pb.PAUSE_KIND_MANUAL: "manual", pb.PAUSE_KIND_CAP: "cap"}
SCOPE_KIND_NAMES = {pb.SCOPE_KIND_AGENT: "agent", pb.SCOPE_KIND_GROUP: "group"}

# Codes after which the same call is tried again (within its deadline): every
# method is safe to repeat (holds and settles carry the client's request id, so
# a retry never holds or counts twice; pause, resume and reads are idempotent).
TRANSIENT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


@dataclass(frozen=True)
class Tls:
    """TLS to budgetd: the CA that signed its certificate (None: the system's)
    and, for mutual TLS, our certificate and key. Files are PEM."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @classmethod
    def from_env(cls) -> Tls | None:
        """BUDGETD_TLS=1, or any of BUDGETD_TLS_CA_FILE / _CERT_FILE / _KEY_FILE."""
        files = {k: os.environ.get(f"BUDGETD_TLS_{k.upper()}") or None for k in ("ca_file", "cert_file", "key_file")}
        return cls(**files) if os.environ.get("BUDGETD_TLS") == "1" or any(files.values()) else None

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path):
            with open(path, "rb") as f:
                return f.read()

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_file) if self.ca_file else None,
            private_key=read(self.key_file) if self.key_file else None,
            certificate_chain=read(self.cert_file) if self.cert_file else None,
        )


# gRPC's own target forms, passed through as they are (a unix socket, an
# explicit resolver); anything else must be host:port.
GRPC_TARGET_SCHEMES = ("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:", "vsock:")
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})")

# What a newcomer needs after "cannot reach": how to start it, how to point at it.
START_HINT = ("is it running? Start it with `make run` (or `budgetd --config budgets.yaml`), "
              "or set BUDGETD_ADDRESS (budgetctl: --address) to where it listens")


def parse_address(address: str, source: str) -> tuple[str, bool | None]:
    """An address as people write it -> (gRPC target, TLS or not).

    Accepted: ``host:port`` (TLS as the client's TLS settings say),
    ``http://host:port`` (plaintext) and ``https://host:port`` (TLS), a
    trailing ``/`` allowed; gRPC's own targets (``unix:/path``, ``dns:///h:p``)
    as they are. The second item is True for https, False for http, None
    otherwise. Anything else is refused with a message that names ``source``
    (where the address came from) and the expected form."""
    text = address.strip()
    if text.startswith(GRPC_TARGET_SCHEMES):
        return text, None
    tls = None
    for scheme, secure in (("http://", False), ("https://", True)):
        if text.lower().startswith(scheme):
            text, tls = text[len(scheme):].rstrip("/"), secure
    match = _HOST_PORT.fullmatch(text)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise ValueError(
            f"{source}: {address!r} is not an address of budgetd: expected host:port (e.g. localhost:50051), "
            "http://host:port (plaintext) or https://host:port (TLS)")
    return text, tls


def unreachable_reason(details: str) -> tuple[str, str]:
    """gRPC's "failed to connect to all addresses; last error: ..." in words
    a newcomer recognises, and what to do about it: (reason, hint). The raw
    text when it is none of the known cases."""
    d = details.lower()
    if "connection refused" in d:
        return "Connection refused: nothing listens there", START_HINT
    if any(w in d for w in ("dns", "name or service not known", "domain name", "resolve", "no address")):
        return "the host name did not resolve", START_HINT
    if any(w in d for w in ("ssl", "tls", "handshake", "certificate")):
        return ("the TLS handshake failed", "does budgetd use TLS (server.tls), and does the client trust its "
                "certificate (BUDGETD_TLS_CA_FILE, or Tls(ca_file=...))?")
    if any(w in d for w in ("socket closed", "connection reset", "end of tcp stream")):
        return ("the connection was closed at once", "a TLS port spoken to in plaintext? Use https://host:port "
                "or BUDGETD_TLS=1")
    if "timeout" in d or "timed out" in d:
        return "the connection attempt timed out", START_HINT
    if "no route" in d or "unreachable" in d:
        return "no route to the host", START_HINT
    return details, START_HINT


def unreachable(details: str) -> str:
    reason, hint = unreachable_reason(details)
    return f"cannot reach it ({reason}); {hint}"


@dataclass(frozen=True)
class Settings:
    address: str
    token: str | None
    timeout: float
    fail_open: bool
    tls: Tls | None = None
    spool_path: str | None = None  # where unacknowledged settles are kept across processes

    @classmethod
    def resolve(cls, address: str | None, token: str | None, timeout: float | None, fail_open: bool,
                tls: Tls | None = None, spool_path: str | os.PathLike | None = None) -> Settings:
        source = "address" if address else "BUDGETD_ADDRESS" if os.environ.get("BUDGETD_ADDRESS") else "default"
        address, wants_tls = parse_address(address or os.environ.get("BUDGETD_ADDRESS") or DEFAULT_ADDRESS, source)
        tls = tls if tls is not None else Tls.from_env()
        if wants_tls is True and tls is None:
            tls = Tls()  # https:// with nothing more said: the system's CAs
        elif wants_tls is False and tls is not None:
            raise ValueError(f"{source}: http:// asks for plaintext, but TLS settings are given (tls= or "
                             "BUDGETD_TLS*): use https://host:port or host:port")
        token = token if token is not None else os.environ.get("BUDGETD_TOKEN") or None
        timeout = DEFAULT_TIMEOUT_SECONDS if timeout is None else float(timeout)
        if not timeout > 0:
            raise ValueError(f"timeout: must be a positive number of seconds, got {timeout}")
        spool = os.environ.get("BUDGETD_SPOOL") if spool_path is None else os.fspath(spool_path)
        return cls(address=address, token=token, timeout=timeout, fail_open=bool(fail_open), tls=tls,
                   spool_path=os.path.abspath(os.path.expanduser(spool)) if spool else None)

    @functools.cached_property  # read on every call; a frozen dataclass allows it (it writes __dict__)
    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        return (("authorization", f"Bearer {self.token}"),) if self.token else None

    @property
    def channel_options(self) -> list[tuple[str, object]]:
        return [
            # A channel of its own: with gRPC's process-wide subchannel pool a
            # new Budget shares the reconnect backoff of every other channel to
            # the address, and after a restart waits out a backoff it never began.
            ("grpc.use_local_subchannel_pool", 1),
            # gRPC's reconnect backoff grows to 120 s by default; after a daemon
            # restart calls would wait for minutes. Try again within 1 s.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            # Also the least time a connection attempt gets (TCP and TLS).
            ("grpc.min_reconnect_backoff_ms", 2000),
        ]


def channel(settings: Settings, module=grpc):
    """A channel to budgetd: ``module`` is ``grpc`` or ``grpc.aio``."""
    if settings.tls is None:
        return module.insecure_channel(settings.address, options=settings.channel_options)
    return module.secure_channel(settings.address, settings.tls.credentials(), options=settings.channel_options)


def is_transient(err: grpc.RpcError) -> bool:
    """A failure after which the same call may be tried again."""
    return (err.code() if hasattr(err, "code") else None) in TRANSIENT_CODES


def translate_rpc_error(err: grpc.RpcError, *, address: str = "", timeout: float | None = None,
                        why: str = "") -> Exception:
    """Map a gRPC failure to what the agent author catches. ``timeout``: the
    call's deadline (the call waited that long); ``why``: what the channel
    said about the connection, when the deadline passed."""
    code = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    where = f"budgetd at {address}" if address else "budgetd"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED or (code in TRANSIENT_CODES and timeout is not None):
        within = f" within {timeout:g}s" if timeout is not None else " in time"
        said = why if code == grpc.StatusCode.DEADLINE_EXCEEDED else details
        if code != grpc.StatusCode.DEADLINE_EXCEEDED and "failed to connect" in said:  # the channel's raw text
            said = unreachable(said)
        return BudgetUnavailable(f"{where} did not answer{within}" + (f": {said}" if said else ""))
    if code is not None and code in TRANSIENT_CODES:
        return BudgetUnavailable(f"{where} unavailable ({code.name}): {details}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return ValueError(details)
    if code == grpc.StatusCode.NOT_FOUND:
        return UnknownAgent(f"budgetd refused the call (NOT_FOUND): {details}")
    name = code.name if code is not None else "UNKNOWN"
    return BudgetError(f"budgetd refused the call ({name}): {details}")


def probe_answer(err: grpc.RpcError | None) -> str:
    """What the probe of a channel whose call timed out says about it."""
    code = err.code() if err is not None else None
    if err is not None and code == grpc.StatusCode.UNAVAILABLE:  # the channel's own last connection error
        return unreachable(err.details() or "")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return "connected, but it did not answer in time (overloaded, or its store is slow)"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"still connecting; {START_HINT}"
    return ""


def _time(ts) -> datetime | None:
    if not ts.seconds and not ts.nanos:
        return None
    return ts.ToDatetime(tzinfo=UTC)


def _scope_name(scope: pb.Scope) -> str:
    if scope.kind == pb.SCOPE_KIND_TAG:  # a budgeted tag's value: "customer:acme"
        return f"{scope.tag}:{scope.name}"
    return f"{SCOPE_KIND_NAMES.get(scope.kind, 'agent')}:{scope.name}"


def raise_for_denial(agent_id: str, resp: pb.AuthorizeResponse) -> None:
    if resp.decision == pb.DECISION_ALLOWED:
        return
    d = resp.denial
    if resp.decision == pb.DECISION_DENIED_PAUSED:
        raise AgentPaused(
            agent_id,
            reason=d.pause_reason,
            kind=PAUSE_KIND_NAMES.get(d.pause_kind, "manual"),
            scope=_scope_name(d.scope),
            window=WINDOW_NAMES.get(d.window),
            resumes_at=_time(d.resets_at),
        )
    if resp.decision == pb.DECISION_DENIED_CAP:
        raise BudgetExceeded(
            agent_id,
            window=WINDOW_NAMES.get(d.window, "unknown"),
            scope=_scope_name(d.scope),
            remaining_usd=nanos_to_usd(d.remaining_nanos),
            cap_usd=nanos_to_usd(d.cap_nanos) if d.HasField("cap_nanos") else None,
            resets_at=_time(d.resets_at),
            waited_ms=d.waited_ms,
        )
    raise BudgetError(f"{agent_id}: budgetd gave an unknown decision {resp.decision}")


def window_status(w: pb.WindowStatus) -> WindowStatus:
    return WindowStatus(
        window=WINDOW_NAMES.get(w.window, "unknown"),
        period=w.period,
        spent_usd=nanos_to_usd(w.spent_nanos),
        reserved_usd=nanos_to_usd(w.reserved_nanos),
        cap_usd=nanos_to_usd(w.cap_nanos) if w.HasField("cap_nanos") else None,
        remaining_usd=nanos_to_usd(w.remaining_nanos) if w.HasField("remaining_nanos") else None,
        # Always sent: every window has its period's bounds.
        starts_at=w.starts_at.ToDatetime(tzinfo=UTC),
        resets_at=w.resets_at.ToDatetime(tzinfo=UTC),
    )


def agent_status(msg: pb.AgentStatus) -> AgentStatus:
    return AgentStatus(
        agent_id=msg.agent_id,
        paused=msg.paused,
        pause_reason=msg.pause_reason if msg.paused else None,
        pause_kind=PAUSE_KIND_NAMES.get(msg.pause_kind) if msg.paused else None,
        paused_by=_scope_name(msg.paused_scope) if msg.paused else None,
        resumes_at=_time(msg.resumes_at),
        daily=window_status(msg.daily),
        monthly=window_status(msg.monthly),
        groups=tuple(
            GroupStatus(name=g.scope.name, daily=window_status(g.daily), monthly=window_status(g.monthly))
            for g in msg.groups
        ),
        budget_source=msg.budget_source,
        scope=_scope_name(msg.scope) if msg.HasField("scope") else f"agent:{msg.agent_id}",
    )


class Call:
    """One guarded model call: what ``with budget.guard(...) as call`` gives.

    It holds no connection; the guard sends what it decides.
    """

    def __init__(
        self,
        agent_id: str,
        estimate_usd: UsdLike | None,
        tags: Mapping[str, str] | None,
        estimate_usage: UsageEstimate | None = None,
    ) -> None:
        self.agent_id = validation.check_agent_id(agent_id)
        self.tags = validation.check_tags(tags)
        self.estimate_nanos = None if estimate_usd is None else usd_to_nanos(estimate_usd, field="estimate_usd")
        if estimate_usage is not None and estimate_usd is not None:
            raise ValueError("give estimate_usd or estimate_usage, not both")
        self.estimate_usage = estimate_usage
        # The model asked for (the usage recorded names the one the provider used).
        self.model_requested = estimate_usage.model if estimate_usage is not None else ""
        self.request_id = str(uuid.uuid4())
        self.held_nanos: int | None = None  # None until the daemon allowed a hold
        self._actual_nanos: int | None = None
        self._usage: Usage | None = None
        self._began: float | None = None  # when the model call began (the guard's block was entered)
        self._latency_ms: int | None = None
        self._error_code = ""

    # -- what the agent author calls inside the block --------------------
    def record_usd(self, amount: UsdLike) -> None:
        """Record what the call really cost, in dollars."""
        self._actual_nanos, self._usage = usd_to_nanos(amount, field="record_usd"), None

    def record_usage(self, model: str, input_tokens: int, output_tokens: int = 0, *,
                     cached_input_tokens: int = 0, **details) -> None:
        """Record token counts as the provider reports them (input includes
        cached tokens, output includes reasoning tokens); the daemon prices them.
        ``details``: reasoning_tokens, cache_write_tokens, cache_write_1h_tokens,
        input_audio_tokens, input_image_tokens, output_audio_tokens, provider,
        service_tier, batch."""
        self._usage = Usage(model=model, input_tokens=input_tokens, output_tokens=output_tokens,
                            cached_input_tokens=cached_input_tokens, **details)
        self._actual_nanos = None

    def record(self, response, *, provider: str | None = None) -> None:
        """Record the usage of a provider response: OpenAI Chat Completions,
        Responses or Embeddings, or Anthropic Messages (objects or dicts)."""
        self._usage, self._actual_nanos = usage_from_response(response, provider=provider), None

    def record_error(self, code: str) -> None:
        """The error code of a failed call (default: the block's exception's
        type and HTTP status): sent with the release, which records the call."""
        self._error_code = str(code)[:200]

    def record_latency_ms(self, ms: int) -> None:
        """The model call's latency, when the guard's block timed more than the call."""
        self._latency_ms = int(ms)

    @property
    def recorded(self) -> bool:
        return self._actual_nanos is not None or self._usage is not None

    # -- what the guard calls ---------------------------------------------
    def authorize_request(self) -> pb.AuthorizeRequest:
        req = pb.AuthorizeRequest(agent_id=self.agent_id, request_id=self.request_id)
        if self.tags:  # an empty map given to the constructor still costs a map
            req.tags.update(self.tags)
        if self.estimate_nanos is not None:
            req.estimate_nanos = self.estimate_nanos
        elif self.estimate_usage is not None:
            req.estimate_usage.CopyFrom(self.estimate_usage.to_proto())
        return req

    def authorized(self, resp: pb.AuthorizeResponse) -> None:
        raise_for_denial(self.agent_id, resp)
        self.held_nanos = resp.held_nanos
        self.began()

    def began(self) -> None:
        """The model call begins now (the guard's block is entered): its latency is timed from here."""
        self._began = time.monotonic()

    def _facts(self, req: pb.CommitRequest | pb.ReleaseRequest) -> None:
        """The model asked for and the latency, on a settle."""
        if self.model_requested:
            req.model_requested = self.model_requested
        latency = self._latency_ms
        if latency is None and self._began is not None:
            latency = round((time.monotonic() - self._began) * 1000)
        if latency is not None:
            req.latency_ms = latency

    def exit_request(self, failed: bool, error: BaseException | None = None) -> pb.CommitRequest | pb.ReleaseRequest:
        """What leaving the block sends.

        Recorded -> commit the recorded cost. An exception and nothing
        recorded -> release. Nothing recorded, no exception -> commit with no
        amount, which settles what was held (conservative: the call may have
        cost money we were not told about).
        """
        if self._actual_nanos is not None:
            req = pb.CommitRequest(request_id=self.request_id, agent_id=self.agent_id, actual_nanos=self._actual_nanos)
        elif self._usage is not None:
            req = pb.CommitRequest(request_id=self.request_id, agent_id=self.agent_id, usage=self._usage.to_proto())
        elif failed:
            release = pb.ReleaseRequest(request_id=self.request_id, agent_id=self.agent_id,
                                        error_code=self._error_code or error_code(error))
            self._facts(release)
            return release
        else:
            req = pb.CommitRequest(request_id=self.request_id, agent_id=self.agent_id)
            if self.held_nanos is None and self.estimate_nanos is not None:
                req.actual_nanos = self.estimate_nanos  # fail-open with no hold: settle our own estimate
        if self.tags:
            req.tags.update(self.tags)
        self._facts(req)
        return req


def error_code(error: BaseException | None) -> str:
    """A failed call's error code: the exception's type, and the HTTP status
    when it has one (``RateLimitError:429``); "error" when there is none."""
    if error is None:
        return "error"
    status = getattr(error, "status_code", None)
    name = type(error).__name__
    return f"{name}:{status}" if isinstance(status, int) else name


TagArg = tuple[str, str] | str


def tag_value(tag: TagArg) -> pb.TagValue:
    """A tag value as ("customer", "acme") or "customer=acme"."""
    if isinstance(tag, str):
        key, sep, value = tag.partition("=")
        if not sep:
            raise ValueError(f"tag: {tag!r} is not KEY=VALUE (e.g. customer=acme)")
    elif isinstance(tag, tuple) and len(tag) == 2:
        key, value = tag
    else:
        raise ValueError(f"tag: expected (key, value) or 'key=value', got {tag!r}")
    validation.check_tags({key: value}, field="tag")
    if not value:
        raise ValueError(f"tag {key!r}: the value must not be empty")
    return pb.TagValue(key=key, value=value)


def _one_of(agent_id: str | None, tag: TagArg | None) -> None:
    if (agent_id is None) == (tag is None):
        raise ValueError("give an agent id or tag=(key, value), not both or neither")


def pause_request(agent_id: str | None, reason: str, tag: TagArg | None = None) -> pb.PauseRequest:
    _one_of(agent_id, tag)
    if tag is not None:
        return pb.PauseRequest(tag=tag_value(tag), reason=validation.check_reason(reason))
    return pb.PauseRequest(agent_id=validation.check_agent_id(agent_id), reason=validation.check_reason(reason))


def resume_request(agent_id: str | None, tag: TagArg | None = None) -> pb.ResumeRequest:
    _one_of(agent_id, tag)
    if tag is not None:
        return pb.ResumeRequest(tag=tag_value(tag))
    return pb.ResumeRequest(agent_id=validation.check_agent_id(agent_id))


def status_request(agent_id: str | None, known_only: bool = False, tag: TagArg | None = None) -> pb.GetStatusRequest:
    """With ``tag``: that tag value's status; ``agent_id`` then only says
    whom the caller acts for (an agent token needs it)."""
    if tag is not None:
        req = pb.GetStatusRequest(tag=tag_value(tag))
        if agent_id is not None:
            req.agent_id = validation.check_agent_id(agent_id)
        return req
    _one_of(agent_id, tag)
    return pb.GetStatusRequest(agent_id=validation.check_agent_id(agent_id), known_only=known_only)


def watch_request(agent_id: str) -> pb.WatchRequest:
    return pb.WatchRequest(agent_id=validation.check_agent_id(agent_id))


def describe_settle(request: pb.CommitRequest | pb.ReleaseRequest) -> str:
    """A settle in a log line: what it would count, for which agent and call."""
    if isinstance(request, pb.ReleaseRequest):
        what = "release"
    elif request.HasField("actual_nanos"):
        what = f"commit of {nanos_to_usd(request.actual_nanos)} USD"
    elif request.HasField("usage"):
        u = request.usage
        what = f"commit of {u.model} usage ({u.input_tokens} in, {u.output_tokens} out)"
    else:
        what = "commit of the amount held"
    return f"{what} for {request.agent_id} (request {request.request_id})"


def reconnected_event(agent_id: str, status: AgentStatus, lost_for: float, cause: str) -> Event:
    """The client's own event: the watch stream was lost and is back."""
    return Event(kind="reconnected", agent_id=agent_id, scope=f"agent:{agent_id}", window="daily",
                 period=status.daily.period, spent_usd=status.daily.spent_usd, cap_usd=status.daily.cap_usd,
                 reason=f"the watch was lost for {lost_for:.1f}s ({cause}); events in that time may have been "
                        "missed: status is the agent's now",
                 at=datetime.now(UTC), status=status)


def event(msg: pb.Event) -> Event:
    return Event(kind=msg.kind, agent_id=msg.agent_id, scope=msg.scope, window=msg.window, period=msg.period,
                 spent_usd=nanos_to_usd(msg.spent_nanos),
                 cap_usd=nanos_to_usd(msg.cap_nanos) if msg.cap_nanos else None, reason=msg.reason, at=_time(msg.at))


def report_row(r: pb.ReportRow) -> ReportRow:
    return ReportRow(r.key, nanos_to_usd(r.cost_nanos), r.calls, nanos_to_usd(r.avg_cost_nanos),
                     Decimal(r.cache_hit_rate) if r.cache_hit_rate else None,
                     r.p95_input_tokens if r.HasField("p95_input_tokens") else None, r.input_tokens,
                     r.cached_input_tokens, r.priced_calls)


def report(by: str, msg: pb.ReportResponse) -> Report:
    rows = tuple(report_row(r) for r in msg.rows)
    total = report_row(msg.total) if msg.HasField("total") else None
    return Report(by=by, since=msg.since, until=msg.until, rows=rows, total_usd=nanos_to_usd(msg.total_nanos),
                  total=total, rows_in_all=msg.rows_in_all or len(rows))


_TOKEN_KINDS = ("input", "cached_input", "cache_write", "output")


def _reconciled_model(r: pb.ReconcileRow) -> ReconciledModel:
    def tokens(t: pb.ReconcileTokens) -> dict[str, int]:
        return {kind: getattr(t, kind) for kind in _TOKEN_KINDS}

    return ReconciledModel(
        r.model, r.classification, r.provider_requests, r.ledger_requests, tokens(r.provider_tokens),
        tokens(r.ledger_tokens), nanos_to_usd(r.provider_cost_nanos), nanos_to_usd(r.ledger_cost_nanos),
        nanos_to_usd(r.drift_nanos), nanos_to_usd(r.estimate_nanos), r.estimate_requests, r.past_tolerance,
        r.explanation, r.suggestion)


def reconciliation(msg: pb.ReconcileResponse) -> Reconciliation:
    days = tuple(ReconciledDay(d.provider, d.day, d.state, d.detail, _time(d.checked_at), _time(d.last_success_at),
                               tuple(_reconciled_model(r) for r in d.rows), tuple(d.passes)) for d in msg.days)
    providers = tuple(ReconcileStatus(p.provider, p.state, p.detail, _time(p.last_attempt_at),
                                      _time(p.last_success_at)) for p in msg.providers)
    return Reconciliation(msg.since, msg.until, days, providers)


def report_request(by: str, since: str, until: str, top: int, month: str) -> pb.ReportRequest:
    """``month`` (YYYY-MM): its first to its last day, instead of since and until."""
    if month:
        if since or until:
            raise ValueError("give month, or since and until, not both")
        since, until = month_days(month)
    if top < 0:
        raise ValueError(f"top must be 0 (every row) or more, got {top}")
    return pb.ReportRequest(by=by, since=since, until=until, top=top)


def month_days(month: str) -> tuple[str, str]:
    """The first and last day of a month given as YYYY-MM: ("2026-11-01", "2026-11-30")."""
    if not re.fullmatch(r"\d{4}-\d{2}", month):
        raise ValueError(f"month must be YYYY-MM, got {month!r}")
    year, number = int(month[:4]), int(month[5:])
    if not 1 <= number <= 12:
        raise ValueError(f"month must be YYYY-MM with a month 01-12, got {month!r}")
    following = date(year + number // 12, number % 12 + 1, 1)
    return f"{month}-01", (following - timedelta(days=1)).isoformat()


def config_info(msg: pb.ConfigInfo) -> ConfigInfo:
    return ConfigInfo(generation=msg.generation, loaded_at=_time(msg.loaded_at), source=msg.source,
                      last_error=msg.last_error, last_error_at=_time(msg.last_error_at))
