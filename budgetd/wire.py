"""Daemon-side conversions between store results and wire messages."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from budgetd_client.v1 import budget_pb2 as pb

from .app import AgentReport, Report
from .plan import Limit, Scope
from .reconcile.answer import ReconcileAnswer
from .reconcile.model import ReconcileDay, ReconcileRow, Tokens
from .reports import ReportLine
from .store import AgentState, Denial, HoldResult
from .store.rules import pause_in_force, remaining
from .windows import Window

WINDOWS = {Window.DAILY: pb.WINDOW_DAILY, Window.MONTHLY: pb.WINDOW_MONTHLY,
           "daily": pb.WINDOW_DAILY, "monthly": pb.WINDOW_MONTHLY}
PAUSE_KINDS = {"manual": pb.PAUSE_KIND_MANUAL, "cap": pb.PAUSE_KIND_CAP}
SCOPE_KINDS = {"agent": pb.SCOPE_KIND_AGENT, "group": pb.SCOPE_KIND_GROUP}


def timestamp(when: datetime | None = None, *, ms: int | None = None) -> Timestamp:
    if ms is not None and when is None:  # every allowed hold: built in C, not by FromMilliseconds
        seconds, millis = divmod(ms, 1000)
        return Timestamp(seconds=seconds, nanos=millis * 1_000_000)
    ts = Timestamp()
    if when is not None:
        ts.FromDatetime(when)
    return ts


def scope(s: Scope) -> pb.Scope:
    kind = SCOPE_KINDS.get(s.kind)
    if kind is None:  # a budgeted tag's value: the kind is the tag's key
        return pb.Scope(kind=pb.SCOPE_KIND_TAG, tag=s.kind, name=s.name)
    return pb.Scope(kind=kind, name=s.name)


def denial(d: Denial) -> pb.Denial:
    msg = pb.Denial(scope=scope(d.scope), remaining_nanos=d.remaining_nanos)
    if d.limit is not None:
        msg.window = WINDOWS[d.limit.window]
        msg.resets_at.CopyFrom(timestamp(d.limit.period.resets_at))
        if d.limit.cap_nanos is not None:
            msg.cap_nanos = d.limit.cap_nanos
    if d.pause is not None:
        msg.pause_kind = PAUSE_KINDS[d.pause.kind]
        msg.pause_reason = d.pause.reason
        if d.pause.kind == "manual":
            msg.ClearField("resets_at")  # a manual pause never lifts by itself
    return msg


def window_status(limit: Limit, state: AgentState) -> pb.WindowStatus:
    balance = state.balance(limit)
    msg = pb.WindowStatus(
        window=WINDOWS[limit.window],
        period=limit.period.key,
        spent_nanos=balance.spent_nanos,
        reserved_nanos=balance.reserved_nanos,
        starts_at=timestamp(limit.period.starts_at),
        resets_at=timestamp(limit.period.resets_at),
    )
    if limit.cap_nanos is not None:
        msg.cap_nanos = limit.cap_nanos
        msg.remaining_nanos = remaining(limit, balance)
    return msg


def authorize_response(result: HoldResult) -> pb.AuthorizeResponse:
    if result.allowed:
        return pb.AuthorizeResponse(decision=pb.DECISION_ALLOWED, held_nanos=result.held_nanos,
                                    hold_expires_at=timestamp(ms=result.deadline_ms))
    d = result.denial
    assert d is not None  # a hold refused says why
    decision = pb.DECISION_DENIED_PAUSED if d.kind == "paused" else pb.DECISION_DENIED_CAP
    refused = denial(d)
    if result.waited_ms:
        refused.waited_ms = result.waited_ms
    return pb.AuthorizeResponse(decision=decision, denial=refused)


def agent_status(report: AgentReport) -> pb.AgentStatus:
    plan, state = report.plan, report.state
    by_scope: dict[Scope, dict[Window, Limit]] = {}
    for limit in plan.limits:
        by_scope.setdefault(limit.scope, {})[limit.window] = limit
    owner, *group_scopes = by_scope
    own = by_scope[owner]
    msg = pb.AgentStatus(
        agent_id=plan.agent_id,
        scope=scope(owner),
        daily=window_status(own[Window.DAILY], state),
        monthly=window_status(own[Window.MONTHLY], state),
        groups=[
            pb.ScopeStatus(
                scope=scope(s),
                daily=window_status(by_scope[s][Window.DAILY], state),
                monthly=window_status(by_scope[s][Window.MONTHLY], state),
            )
            for s in group_scopes
        ],
    )
    paused = pause_in_force(plan, state.pauses)
    if paused is not None:
        record, capped = paused
        msg.paused = True
        msg.pause_kind = PAUSE_KINDS[record.kind]
        msg.pause_reason = record.reason
        msg.paused_scope.CopyFrom(scope(Scope.parse(record.scope)))
        if capped is not None:
            msg.resumes_at.CopyFrom(timestamp(capped.period.resets_at))
    msg.budget_source = report.budget_source
    return msg


def event(notice) -> pb.Event:
    return pb.Event(kind=notice.kind, agent_id=notice.agent_id, scope=notice.scope, window=notice.window,
                    period=notice.period, spent_nanos=notice.spent_nanos, cap_nanos=notice.cap_nanos,
                    reason=notice.reason, at=timestamp(ms=notice.at_ms))


def report_response(report: Report) -> pb.ReportResponse:
    summary = report.summary
    return pb.ReportResponse(rows=[report_row(row) for row in summary.rows], total_nanos=summary.total.cost_nanos,
                             since=report.since, until=report.until, total=report_row(summary.total),
                             rows_in_all=summary.rows_in_all)


def report_row(row: ReportLine) -> pb.ReportRow:
    rate = row.cache_hit_rate
    return pb.ReportRow(key=row.key or "", cost_nanos=row.cost_nanos, calls=row.calls,
                        avg_cost_nanos=row.avg_cost_nanos, priced_calls=row.priced_calls,
                        input_tokens=row.input_tokens, cached_input_tokens=row.cached_input_tokens,
                        cache_hit_rate="" if rate is None else str(rate), p95_input_tokens=row.p95_input_tokens)


def reconcile_response(found: ReconcileAnswer) -> pb.ReconcileResponse:
    msg = pb.ReconcileResponse(since=found.since, until=found.until, days=[reconcile_day(d) for d in found.days])
    for status in found.providers:
        one = msg.providers.add(provider=status.provider, state=status.state, detail=status.detail)
        if status.last_attempt_ms is not None:
            one.last_attempt_at.CopyFrom(timestamp(ms=status.last_attempt_ms))
        if status.last_success_ms is not None:
            one.last_success_at.CopyFrom(timestamp(ms=status.last_success_ms))
    return msg


def reconcile_day(day: ReconcileDay) -> pb.ReconcileDay:
    msg = pb.ReconcileDay(provider=day.provider, day=day.day, state=day.state, detail=day.detail,
                          checked_at=timestamp(ms=day.checked_ms), rows=[_reconcile_row(r) for r in day.rows],
                          passes=list(day.passes))
    if day.last_success_ms is not None:
        msg.last_success_at.CopyFrom(timestamp(ms=day.last_success_ms))
    return msg


def _tokens(t: Tokens) -> pb.ReconcileTokens:
    return pb.ReconcileTokens(input=t.input, cached_input=t.cached_input, cache_write=t.cache_write, output=t.output)


def _reconcile_row(r: ReconcileRow) -> pb.ReconcileRow:
    return pb.ReconcileRow(
        model=r.model, classification=r.classification, provider_requests=r.provider_requests,
        ledger_requests=r.ledger_requests, provider_tokens=_tokens(r.provider_tokens),
        ledger_tokens=_tokens(r.ledger_tokens), provider_cost_nanos=r.provider_cost_nanos,
        ledger_cost_nanos=r.ledger_cost_nanos, drift_nanos=r.drift_nanos, estimate_nanos=r.estimate_nanos,
        estimate_requests=r.estimate_requests, near_midnight_requests=r.near_midnight_requests,
        near_midnight_nanos=r.near_midnight_nanos, past_tolerance=r.past_tolerance, explanation=r.explanation,
        suggestion=r.suggestion)
