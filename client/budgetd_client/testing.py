"""``FakeBudget``: budgetd in this process, for unit tests of code that uses
``budget.guard(agent_id)`` or ``budget.wrap(OpenAI())``, with no daemon.

    from decimal import Decimal
    from budgetd_client.testing import FakeBudget

    budget = FakeBudget({"summarizer": {"daily_usd": "1.00"}})
    with budget.guard("summarizer", estimate_usd="0.40") as call:
        call.record_usd("0.40")
    assert budget.status("summarizer").daily.spent_usd == Decimal("0.40")

``FakeBudget`` is a ``Budget`` (``AsyncFakeBudget`` an ``AsyncBudget``): the
client's own code runs unchanged, and only the daemon it talks to is
replaced, by ``FakeDaemon``, which answers the same gRPC messages by budgetd's
rules for what a client sees. Caps per agent, daily and monthly, in the
configured timezone; a guard holds its estimate (``estimate_usd``, token
bounds priced, or the agent's ``estimate_usd``) and is refused with
``BudgetExceeded`` when the hold would take a window over its cap; a settle
counts the recorded amount, or the usage priced by ``prices``, or else what
was held; a window brought to its cap pauses the agent until the period ends
(``AgentPaused``); ``pause``, ``resume``, ``status`` and ``list_status`` are
the admin calls. A shared test runs the same cases against this fake and a
real budgetd, so the two agree.

Not faked: groups and agent patterns, hold expiry, waiting for headroom (a
hold that budgetd would make wait for other holds is refused at once),
warnings and ``watch``,
``report``, the bundled price table (give the prices the code under test
uses), auth. Agents and prices take the keys of ``budgets.yaml``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from . import validation
from ._async import AsyncBudget
from ._sync import Budget
from .money import NANOS_PER_USD, UsdLike, ceil_nanos, nanos_to_usd, to_decimal, usd_to_nanos
from .usage import Usage
from .v1 import budget_pb2 as pb

__all__ = ["AsyncFakeBudget", "FakeBudget", "FakeDaemon"]

# budgetd's defaults for an agent whose config says nothing of them.
DEFAULT_ESTIMATE_USD = "0.05"
DEFAULT_ESTIMATE_OUTPUT_TOKENS = 4096
_MAX_CAP_NANOS = 10**9 * NANOS_PER_USD  # budgetd's largest cap: a billion dollars
_BUDGET_KEYS = {"daily_usd", "monthly_usd", "estimate_usd", "estimate_output_tokens"}
_PRICE_KEYS = {"input_usd_per_mtok", "output_usd_per_mtok", "cached_input_usd_per_mtok", "cache_write_usd_per_mtok"}
_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")  # gpt-4o-2024-08-06 is priced as gpt-4o
_WINDOWS = {"daily": pb.WINDOW_DAILY, "monthly": pb.WINDOW_MONTHLY}


class FakeRpcError(grpc.RpcError):
    """A refusal as budgetd answers it (a status code and its details), so
    the client turns it into the exception it raises for the real one."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@dataclass(frozen=True)
class _AgentBudget:
    daily_nanos: int | None
    monthly_nanos: int | None
    estimate_nanos: int
    estimate_output_tokens: int
    source: str  # "configured" or "defaults", as status says


@dataclass(frozen=True)
class _Window:
    name: str  # "daily" or "monthly"
    period: str  # "2026-11-22" or "2026-11"
    starts_at: datetime
    resets_at: datetime
    cap_nanos: int | None


@dataclass
class _Call:
    state: str  # "held", "settled" or "released"
    held_nanos: int
    counted_nanos: int
    counters: tuple[tuple[str, str, str], ...]  # (agent, window, period) it was held in


def _budget(entry: Mapping, source: str, base: _AgentBudget | None = None) -> _AgentBudget:
    unknown = set(entry) - _BUDGET_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}: an agent takes {sorted(_BUDGET_KEYS)}")

    def cap(key: str) -> int | None:
        value = entry.get(key)
        return None if value is None else usd_to_nanos(value, field=key, limit=_MAX_CAP_NANOS)

    estimate = entry.get("estimate_usd")
    return _AgentBudget(
        daily_nanos=cap("daily_usd"),
        monthly_nanos=cap("monthly_usd"),
        estimate_nanos=(usd_to_nanos(estimate, field="estimate_usd") if estimate is not None
                        else base.estimate_nanos if base else usd_to_nanos(DEFAULT_ESTIMATE_USD)),
        estimate_output_tokens=int(entry.get("estimate_output_tokens") or
                                   (base.estimate_output_tokens if base else DEFAULT_ESTIMATE_OUTPUT_TOKENS)),
        source=source,
    )


def _price(entry: Mapping) -> dict[str, Decimal]:
    unknown = set(entry) - _PRICE_KEYS
    if unknown or not {"input_usd_per_mtok", "output_usd_per_mtok"} <= set(entry):
        raise ValueError(f"a price takes input_usd_per_mtok and output_usd_per_mtok (and optionally "
                         f"cached_input_usd_per_mtok, cache_write_usd_per_mtok); got {sorted(entry)}")
    return {key: to_decimal(value, field=key) for key, value in entry.items()}


def _timestamp(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


class FakeDaemon:
    """budgetd's answers to the client's messages, from state in memory.

    One lock around every call: a ``FakeBudget`` may be shared by threads."""

    def __init__(self, agents: Mapping[str, Mapping[str, UsdLike]] | None = None, *,
                 defaults: Mapping[str, UsdLike] | None = None,
                 prices: Mapping[str, Mapping[str, UsdLike]] | None = None,
                 timezone: str = "UTC", clock: Callable[[], datetime] | None = None) -> None:
        self._defaults = None if defaults is None else _budget(defaults, "defaults")
        self._agents = {validation.check_agent_id(agent_id, field="agents"): _budget(entry, "configured",
                                                                                    self._defaults)
                        for agent_id, entry in (agents or {}).items()}
        self._prices = {model: _price(entry) for model, entry in (prices or {}).items()}
        self._zone = ZoneInfo(timezone)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._spend: dict[tuple[str, str, str], list[int]] = {}  # counter -> [spent, reserved]
        self._pauses: dict[tuple[str, str, str], tuple[str, str]] = {}  # counter, or (agent, "", "") -> kind, reason
        self._calls: dict[tuple[str, str], _Call] = {}  # by (agent, request id)

    # -- the rules --------------------------------------------------------------
    def _budget_of(self, agent_id: str) -> _AgentBudget:
        budget = self._agents.get(agent_id) or self._defaults
        if budget is None:
            raise FakeRpcError(grpc.StatusCode.NOT_FOUND,
                               f"agent {agent_id!r} has no budget (and the config has no defaults)")
        return budget

    def _windows(self, budget: _AgentBudget) -> tuple[_Window, _Window]:
        today = self._clock().astimezone(self._zone).date()
        month = today.replace(day=1)
        next_month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        z = self._zone
        return (_Window("daily", today.isoformat(), _local_midnight(today, z),
                        _local_midnight(today + timedelta(days=1), z), budget.daily_nanos),
                _Window("monthly", f"{month.year:04d}-{month.month:02d}", _local_midnight(month, z),
                        _local_midnight(next_month, z), budget.monthly_nanos))

    def _balance(self, agent_id: str, window: _Window) -> list[int]:
        return self._spend.get((agent_id, window.name, window.period), [0, 0])

    def _remaining(self, agent_id: str, window: _Window) -> int:
        assert window.cap_nanos is not None
        spent, reserved = self._balance(agent_id, window)
        return max(0, window.cap_nanos - spent - reserved)

    def _pause_in_force(self, agent_id: str, windows) -> tuple[tuple[str, str], _Window | None] | None:
        """A manual pause first, then a cap pause of a window in its current period."""
        manual = self._pauses.get((agent_id, "", ""))
        if manual is not None:
            return manual, None
        for window in windows:
            cap_pause = self._pauses.get((agent_id, window.name, window.period))
            if cap_pause is not None:
                return cap_pause, window
        return None

    def _refusal(self, agent_id: str, windows, amount: int) -> pb.AuthorizeResponse | None:
        paused = self._pause_in_force(agent_id, windows)
        if paused is not None:
            (kind, reason), window = paused
            denial = pb.Denial(scope=pb.Scope(kind=pb.SCOPE_KIND_AGENT, name=agent_id),
                               pause_kind=pb.PAUSE_KIND_CAP if kind == "cap" else pb.PAUSE_KIND_MANUAL,
                               pause_reason=reason)
            if window is not None:
                denial.MergeFrom(self._window_denial(agent_id, window))
            return pb.AuthorizeResponse(decision=pb.DECISION_DENIED_PAUSED, denial=denial)
        for window in windows:
            spent, reserved = self._balance(agent_id, window)
            if window.cap_nanos is not None and spent + reserved + amount > window.cap_nanos:
                denial = self._window_denial(agent_id, window)
                denial.scope.CopyFrom(pb.Scope(kind=pb.SCOPE_KIND_AGENT, name=agent_id))
                return pb.AuthorizeResponse(decision=pb.DECISION_DENIED_CAP, denial=denial)
        return None

    def _window_denial(self, agent_id: str, window: _Window) -> pb.Denial:
        assert window.cap_nanos is not None
        return pb.Denial(window=_WINDOWS[window.name], resets_at=_timestamp(window.resets_at),
                         cap_nanos=window.cap_nanos, remaining_nanos=self._remaining(agent_id, window))

    def _priced(self, usage: Usage) -> int | None:
        """The cost of ``usage`` by the ``prices:`` rule of budgetd; None for a model with no price."""
        p = self._prices.get(usage.model) or self._prices.get(_DATE_SUFFIX.sub("", usage.model))
        if p is None:
            return None
        cached = p.get("cached_input_usd_per_mtok", p["input_usd_per_mtok"])
        write = p.get("cache_write_usd_per_mtok", p["input_usd_per_mtok"])
        uncached = usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens
        return ceil_nanos((uncached * p["input_usd_per_mtok"] + usage.cached_input_tokens * cached
                           + usage.cache_write_tokens * write + usage.output_tokens * p["output_usd_per_mtok"])
                          / 1_000_000)

    def _estimate(self, request: pb.AuthorizeRequest, budget: _AgentBudget) -> int:
        which = request.WhichOneof("estimate")
        if which == "estimate_nanos":
            return request.estimate_nanos
        if which != "estimate_usage":
            return budget.estimate_nanos
        e = request.estimate_usage
        usage = Usage(model=e.model, provider=e.provider or "openai", input_tokens=e.input_tokens,
                      output_tokens=e.output_tokens if e.HasField("output_tokens") else budget.estimate_output_tokens)
        nanos = self._priced(usage)
        if nanos is None:
            raise FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"no price for model {e.model!r}: give it in FakeBudget(prices=...)")
        return validation.check_nanos(nanos, field="estimate_usage (priced)")

    def _charge(self, agent_id: str, counters, spent_delta: int, reserved_delta: int) -> bool:
        """Add to the counters; pause each current window this brings to its cap."""
        windows = {(w.name, w.period): w for w in self._windows(self._budget_of(agent_id))}
        paused = False
        for counter in counters:
            balance = self._spend.setdefault(counter, [0, 0])
            balance[0] += spent_delta
            balance[1] += reserved_delta
            window = windows.get(counter[1:])
            if (window is not None and window.cap_nanos is not None and balance[0] >= window.cap_nanos
                    and counter not in self._pauses):
                self._pauses[counter] = ("cap", f"{window.name} cap of {nanos_to_usd(window.cap_nanos)} USD reached")
                paused = True
        return paused

    def _require_known(self, agent_id: str, doing: str) -> None:
        if agent_id in self._agents or agent_id in self._seen():
            return
        raise FakeRpcError(grpc.StatusCode.NOT_FOUND,
                           f"agent {agent_id!r} is not in the config and budgetd has never seen it ({doing})")

    def _seen(self) -> set[str]:
        return {agent_id for agent_id, _, _ in (*self._spend, *self._pauses)}

    def _status(self, agent_id: str) -> pb.AgentStatus:
        budget = self._budget_of(agent_id)
        windows = self._windows(budget)
        msg = pb.AgentStatus(agent_id=agent_id, budget_source=budget.source)
        for window, field in zip(windows, (msg.daily, msg.monthly), strict=True):
            spent, reserved = self._balance(agent_id, window)
            field.CopyFrom(pb.WindowStatus(window=_WINDOWS[window.name], period=window.period, spent_nanos=spent,
                                           reserved_nanos=reserved, starts_at=_timestamp(window.starts_at),
                                           resets_at=_timestamp(window.resets_at)))
            if window.cap_nanos is not None:
                field.cap_nanos, field.remaining_nanos = window.cap_nanos, self._remaining(agent_id, window)
        paused = self._pause_in_force(agent_id, windows)
        if paused is not None:
            (kind, reason), capped = paused
            msg.paused, msg.pause_reason = True, reason
            msg.pause_kind = pb.PAUSE_KIND_CAP if kind == "cap" else pb.PAUSE_KIND_MANUAL
            msg.paused_scope.CopyFrom(pb.Scope(kind=pb.SCOPE_KIND_AGENT, name=agent_id))
            if capped is not None:
                msg.resumes_at.CopyFrom(_timestamp(capped.resets_at))
        return msg

    # -- the RPCs, by name: the messages of budgetd.v1 in and out ----------------------
    def Authorize(self, request: pb.AuthorizeRequest) -> pb.AuthorizeResponse:
        agent_id = request.agent_id
        budget = self._budget_of(agent_id)
        call = self._calls.get((agent_id, request.request_id))
        if call is not None:
            if call.state == "held":  # a retry of a hold that went through
                return pb.AuthorizeResponse(decision=pb.DECISION_ALLOWED, held_nanos=call.held_nanos)
            raise FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"request_id {request.request_id} was already {call.state}")
        amount = self._estimate(request, budget)
        windows = self._windows(budget)
        refused = self._refusal(agent_id, windows, amount)
        if refused is not None:
            return refused
        counters = tuple((agent_id, w.name, w.period) for w in windows)
        self._charge(agent_id, counters, 0, amount)
        self._calls[(agent_id, request.request_id)] = _Call("held", amount, 0, counters)
        return pb.AuthorizeResponse(decision=pb.DECISION_ALLOWED, held_nanos=amount)

    def Commit(self, request: pb.CommitRequest) -> pb.CommitResponse:
        agent_id = request.agent_id
        budget = self._budget_of(agent_id)
        which = request.WhichOneof("actual")
        actual = (request.actual_nanos if which == "actual_nanos"
                  else self._priced(Usage.from_proto(request.usage)) if which == "usage" else None)
        key = (agent_id, request.request_id)
        call = self._calls.get(key)
        if call is None:  # no hold (fail-open): charge the current windows
            amount = actual if actual is not None else budget.estimate_nanos
            call = self._calls[key] = _Call("settled", 0, 0, tuple(
                (agent_id, w.name, w.period) for w in self._windows(budget)))
            reserved_delta = 0
        elif call.state == "settled":
            return pb.CommitResponse(counted_nanos=call.counted_nanos, duplicate=True)
        else:
            amount = actual if actual is not None else call.held_nanos
            reserved_delta = -call.held_nanos if call.state == "held" else 0
        paused = self._charge(agent_id, call.counters, amount - call.counted_nanos, reserved_delta)
        call.state, call.counted_nanos = "settled", amount
        return pb.CommitResponse(counted_nanos=amount, paused=paused)

    def Release(self, request: pb.ReleaseRequest) -> pb.ReleaseResponse:
        self._budget_of(request.agent_id)
        call = self._calls.get((request.agent_id, request.request_id))
        if call is None or call.state != "held":
            return pb.ReleaseResponse(released=False)
        self._charge(request.agent_id, call.counters, 0, -call.held_nanos)
        call.state = "released"
        return pb.ReleaseResponse(released=True)

    @staticmethod
    def _no_tag_budgets(request: pb.GetStatusRequest | pb.PauseRequest | pb.ResumeRequest) -> None:
        if request.HasField("tag"):
            raise FakeRpcError(grpc.StatusCode.UNIMPLEMENTED,
                               "the fake budget has agent caps only, no tag_budgets: test a tag value's status, "
                               "pause and resume against a real budgetd")

    def GetStatus(self, request: pb.GetStatusRequest) -> pb.AgentStatus:
        self._no_tag_budgets(request)
        if request.known_only:
            self._require_known(request.agent_id, "nothing to show")
        return self._status(request.agent_id)

    def Pause(self, request: pb.PauseRequest) -> pb.AgentStatus:
        self._no_tag_budgets(request)
        self._require_known(request.agent_id, "nothing was paused")
        self._pauses[(request.agent_id, "", "")] = ("manual", request.reason or "paused by an operator")
        return self._status(request.agent_id)

    def Resume(self, request: pb.ResumeRequest) -> pb.AgentStatus:
        self._no_tag_budgets(request)
        self._require_known(request.agent_id, "nothing was resumed")
        for key in [key for key in self._pauses if key[0] == request.agent_id]:
            del self._pauses[key]
        return self._status(request.agent_id)

    def ListStatus(self, request: pb.ListStatusRequest) -> pb.ListStatusResponse:
        agent_ids = sorted(set(self._agents) | self._seen())  # an agent is seen only if it has a budget
        return pb.ListStatusResponse(agents=[self._status(agent_id) for agent_id in agent_ids])

    def GetConfig(self, request: pb.GetConfigRequest) -> pb.ConfigInfo:
        return pb.ConfigInfo(generation=1)

    def Report(self, request: pb.ReportRequest) -> pb.ReportResponse:
        raise FakeRpcError(grpc.StatusCode.UNIMPLEMENTED, "FakeBudget keeps no ledger: report() is not faked")

    def Watch(self, request: pb.WatchRequest, **_options):
        raise NotImplementedError("FakeBudget sends no events: watch() is not faked")

    def answer(self, method: str, request):
        """One RPC: the client's stubs call this (under the lock)."""
        with self._lock:
            return getattr(self, method)(request)


_UNARY_METHODS = ("Authorize", "Commit", "Release", "GetStatus", "Pause", "Resume", "ListStatus", "GetConfig",
                  "Report")


class _Stub:
    """Stands where the client's gRPC stubs stand: every method of the
    Budget and Admin services, called as the client calls a stub."""

    def __init__(self, daemon: FakeDaemon, is_async: bool) -> None:
        for method in _UNARY_METHODS:
            setattr(self, method, self._unary(daemon, method, is_async))
        self.Watch = daemon.Watch

    @staticmethod
    def _unary(daemon: FakeDaemon, method: str, is_async: bool):
        def call(request, **_options):  # timeout, metadata, wait_for_ready: nothing to wait for
            return daemon.answer(method, request)

        async def call_async(request, **_options):
            return daemon.answer(method, request)

        return call_async if is_async else call


def _client_settings() -> dict:
    # No token, no TLS, and spool_path="" keeps settles in memory only: a
    # BUDGETD_SPOOL of the environment must not hand a real daemon's settles to a fake.
    return {"address": "fake-budgetd:1", "token": "", "spool_path": ""}


class FakeBudget(Budget):
    """A ``Budget`` answered by a ``FakeDaemon`` in this process.

    ``agents``: agent id -> ``{"daily_usd": ..., "monthly_usd": ...,
    "estimate_usd": ..., "estimate_output_tokens": ...}`` (any may be left
    out: no cap, budgetd's default estimate). ``defaults``: the budget of any
    other agent (without it, a call for an agent not in ``agents`` raises
    ``UnknownAgent``). ``prices``: model -> ``{"input_usd_per_mtok": ...,
    "output_usd_per_mtok": ...}`` (and optionally ``cached_input_usd_per_mtok``,
    ``cache_write_usd_per_mtok``), for usage recorded by ``call.record(...)``
    or ``wrap``. ``timezone`` names where days start; ``clock`` (returning an
    aware datetime) replaces the wall clock, to cross into a new day or month.
    ``daemon`` is the fake's state, to share with another fake client.
    """

    def __init__(self, agents: Mapping[str, Mapping[str, UsdLike]] | None = None, *,
                 defaults: Mapping[str, UsdLike] | None = None,
                 prices: Mapping[str, Mapping[str, UsdLike]] | None = None, timezone: str = "UTC",
                 clock: Callable[[], datetime] | None = None, daemon: FakeDaemon | None = None) -> None:
        super().__init__(**_client_settings())
        self.daemon = daemon or FakeDaemon(agents, defaults=defaults, prices=prices, timezone=timezone, clock=clock)
        self._fake_stub = _Stub(self.daemon, is_async=False)

    def _stubs(self):
        return self._fake_stub, self._fake_stub


class AsyncFakeBudget(AsyncBudget):
    """An ``AsyncBudget`` answered by a ``FakeDaemon``: the arguments of ``FakeBudget``."""

    def __init__(self, agents: Mapping[str, Mapping[str, UsdLike]] | None = None, *,
                 defaults: Mapping[str, UsdLike] | None = None,
                 prices: Mapping[str, Mapping[str, UsdLike]] | None = None, timezone: str = "UTC",
                 clock: Callable[[], datetime] | None = None, daemon: FakeDaemon | None = None) -> None:
        super().__init__(**_client_settings())
        self.daemon = daemon or FakeDaemon(agents, defaults=defaults, prices=prices, timezone=timezone, clock=clock)
        self._fake_stub = _Stub(self.daemon, is_async=True)

    def _stubs(self):
        return self._fake_stub, self._fake_stub
