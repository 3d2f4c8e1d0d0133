"""The Python ↔ Lua interface of the Redis store, in one place: each script's
KEYS and ARGV by name, the encoder of its arguments, and the tags of its
replies.

A script reads its keys and arguments by name (``KEYS[K_CALL]``,
``ARGV[A_AMOUNT]``): the prelude that opens it is generated here from its
``Script`` (``local K_CALL = 1`` ...), so the Lua and the encoder cannot
disagree on an offset. The last name of ``keys`` or ``args`` may start a
section of variable length, whose count is an argument (the S pause hashes
then the L counter keys; per counter, the ``per_counter`` fields).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from ...notices import model as notices
from ...plan import Limit, Plan, threshold_nanos
from ...reconcile.model import ReconcileDay
from .. import rules
from ..model import Counter

DAY_MS = 86_400_000
CALL_RETENTION_MS = 7 * DAY_MS  # settles stay idempotent this long after the hold
COUNTER_RETENTION_MS = {"daily": 35 * DAY_MS, "monthly": 400 * DAY_MS, "hourly": 8 * DAY_MS}
NOTICE_MARKER_MS = 40 * DAY_MS  # job notices (resumed, digest, anomaly) are written once within this
LEDGER_MAXLEN = 1_000_000  # entries per tag, approximately (XADD MAXLEN ~)
RECONCILE_LEASE_KEEP_MS = 3_600_000  # a day's lease hash outlives its longest lease by this (Redis's clock)

# Reply tags.
HELD_IN_OTHER_PERIODS = "held_in_other_periods"  # the hold's counters differ from the plan's: retry with those


@dataclass(frozen=True, eq=False)  # one object per script: compared by identity
class Script:
    name: str
    keys: tuple[str, ...]
    args: tuple[str, ...]
    per_counter: tuple[str, ...] = ()  # the fields of one counter in the ``per_counter`` section
    # The Lua loaded before the script's own: common.lua, and notices.lua
    # for the scripts that build notices (every script runs all of its source).
    parts: tuple[str, ...] = ("common",)

    def key(self, name: str) -> int:
        """The 1-based index of the key ``name`` (K_NAME in the Lua)."""
        return self.keys.index(name) + 1

    def arg(self, name: str) -> int:
        """The 1-based index of the argument ``name`` (A_NAME in the Lua)."""
        return self.args.index(name) + 1

    def names(self) -> dict[str, int]:
        """Every name the prelude defines, with its value."""
        named = {f"K_{k.upper()}": i for i, k in enumerate(self.keys, start=1)}
        named |= {f"A_{a.upper()}": i for i, a in enumerate(self.args, start=1)}
        if self.per_counter:
            named |= {f"C_{f.upper()}": i for i, f in enumerate(self.per_counter)}  # offsets in a counter's fields
            named["C_FIELDS"] = len(self.per_counter)
        return named

    @functools.cached_property
    def source(self) -> str:
        prelude = "".join(f"local {name} = {value}\n" for name, value in self.names().items())
        lua = resources.files(__package__).joinpath("lua")
        return prelude + "".join(lua.joinpath(f"{part}.lua").read_text() for part in (*self.parts, self.name))


HOLD = Script(
    "hold",
    keys=("call", "holds", "pauses"),
    args=("agent", "request_id", "amount", "now_ms", "deadline_ms", "tags", "counters_json", "call_ttl_ms",
          "pause_count", "counter_count", "per_counter"),
    per_counter=("cap", "expiry"),
)
SETTLE = Script(
    "settle",
    keys=("call", "holds", "ledger", "outbox", "pauses"),
    args=("agent", "request_id", "actual", "now_ms", "tags", "counters_json", "estimate", "call_ttl_ms", "pricing",
          "event", "ledger_maxlen", "pause_count", "counter_count", "day", "groups", "threshold_count", "per_counter"),
    per_counter=("cap", "expiry"),  # then threshold_count warning thresholds
    parts=("common", "notices"),
)
RELEASE = Script(
    "release",
    keys=("call", "holds", "ledger", "counters"),
    # record: "" (drop the hold only) or the JSON of the failed call's ledger
    # entry (its pricing, event, day and groups fields)
    args=("agent", "request_id", "counters_json", "now_ms", "record", "ledger_maxlen", "counter_count"),
)
EXPIRE = Script(
    "expire",
    keys=("call", "holds", "ledger", "outbox", "pauses"),
    args=("agent", "request_id", "now_ms", "charge", "counters_json", "pause_count", "counter_count",
          "ledger_maxlen", "day", "groups", "limits"),
    parts=("common", "notices"),
)
PAUSE = Script("pause", keys=("pauses", "outbox"), args=("action", "value", "notice", "notice_key"))
LIFT = Script("lift", keys=("pauses", "marker", "outbox"), args=("notice", "notice_key", "marker_ttl_ms", "fields"))
NOTIFY = Script("notify", keys=("marker", "outbox"), args=("notice", "notice_key", "marker_ttl_ms"))
# A claimed notice finished ("sent", "failed", "skipped") or retried ("pending").
OUTCOME = Script("outcome", keys=("outbox", "outcomes"),
                 args=("group", "entry_id", "state", "attempts", "done_ms", "idle_ms", "error"))
RECONCILE = Script("reconcile", keys=("outbox", "pauses"), args=("now_ms", "pause_count", "agent", "windows"),
                   parts=("common", "notices"))
# Reconciliation results (budgetd/reconcile; not the pause reconcile above): a
# pass of a provider's day leased, a result saved, the results of a range of
# days read. ``field``: the day's field in the results' hashes (provider|day).
RECONCILE_CLAIM = Script("reconcile_claim", keys=("passes", "leases"),
                         args=("field", "pass", "owner", "now_ms", "lease_ms", "keep_ms"))
RECONCILE_SAVE = Script("reconcile_save", keys=("days", "passes", "leases"),
                        args=("field", "result", "passes", "owner"))
# ``provider`` only when one provider's results are asked for.
RECONCILE_READ = Script("reconcile_read", keys=("days", "passes"), args=("since_day", "until_day", "provider"))

SCRIPTS = (HOLD, SETTLE, RELEASE, EXPIRE, PAUSE, LIFT, NOTIFY, RECONCILE, OUTCOME, RECONCILE_CLAIM, RECONCILE_SAVE,
           RECONCILE_READ)


# -- the limits of a plan's counters -------------------------------------------------------------


def _ms(when) -> int:
    return int(when.timestamp() * 1000)


@dataclass(frozen=True)
class CounterLimits:
    """What the scripts know of the counters they change: for each, its cap
    (-1: unchecked) and key expiry as plain arguments, and the limits JSON
    (common.lua) with the fields of the notices a change may write."""

    caps: tuple[int, ...]
    expiries: tuple[int, ...]
    thresholds: tuple[tuple[int, ...], ...]  # per counter, one per warn_at fraction (-1: no warning)
    limits_json: str  # common.lua
    # What a hold reads of the limits (only when a scope has a pause): per
    # counter, its scope index and the field of its cap pause (window:period).
    pause_fields_json: str

    @property
    def threshold_count(self) -> int:
        return len(self.thresholds[0]) if self.thresholds else 0


def counter_limits(plan: Plan, counters: Sequence[Counter], now_ms: int, check_caps: bool = True) -> CounterLimits:
    """Caps only for counters in a current period of the plan (and not at
    all without ``check_caps``: an expiry that only releases). Keys outlive
    their period by a retention; a counter of a past period gets one from
    ``now_ms``, which nothing else here depends on."""
    scope_index = {s.key: i for i, s in enumerate(plan.scopes, start=1)}
    caps, expiries, thresholds, entries = [], [], [], []
    for scope, window, period in counters:
        limit = plan.limit_for(scope, window)
        current = limit if limit is not None and limit.period.key == period else None
        cap = current.cap_nanos if check_caps and current and current.cap_nanos is not None else -1
        expiry = (_ms(current.period.resets_at) if current else now_ms) + COUNTER_RETENTION_MS[window]
        warnings = _warnings(plan, current) if cap >= 0 and current else []
        caps.append(cap)
        expiries.append(expiry)
        thresholds.append(tuple(int(w["threshold"]) for w in warnings) or (-1,) * len(plan.warn_at))
        entries.append({
            "scope_index": scope_index.get(scope, 1), "scope": scope, "window": window, "period": period,
            "cap": str(cap), "expiry": str(expiry),
            "pause_reason": rules.cap_pause_reason(current) if cap >= 0 and current else "",
            "warnings": warnings,
        })
    pause_fields = [[entry["scope_index"], f"{entry['window']}:{entry['period']}"] for entry in entries]
    return CounterLimits(tuple(caps), tuple(expiries), tuple(thresholds), json.dumps(entries), json.dumps(pause_fields))


def _warnings(plan: Plan, limit: Limit) -> list[dict[str, str]]:
    assert limit.cap_nanos is not None
    return [{"threshold": str(threshold_nanos(limit.cap_nanos, f)), "fraction": str(f),
             "reason": notices.warning(plan.agent_id, limit, f, 0, 0).reason} for f in plan.warn_at]


# -- the encoders: each returns the script's ARGV in its order ----------------------------------


def hold_tail(pause_count: int, limits: CounterLimits) -> tuple:
    """A hold's arguments from ``pause_count`` on, the same for every hold of a plan."""
    per_counter = [v for cap, expiry in zip(limits.caps, limits.expiries, strict=True) for v in (cap, expiry)]
    return (pause_count, len(limits.caps), *per_counter, limits.pause_fields_json)


def hold_args(agent: str, request_id: str, amount: int, now_ms: int, deadline_ms: int, tags: str,
              counters_json: str, call_ttl_ms: int, tail: tuple) -> tuple:
    return (agent, request_id, amount, now_ms, deadline_ms, tags, counters_json, call_ttl_ms, *tail)


def settle_tail(pause_count: int, day: str, groups: str, limits: CounterLimits, ledger: bool = True) -> tuple:
    """A settle's arguments from ``ledger_maxlen`` on, the same for every
    settle of a plan's counters. Without ``ledger`` (a tag value's part of a
    call on Cluster) the script writes no ledger entry."""
    per_counter = [v for cap, expiry, thresholds in zip(limits.caps, limits.expiries, limits.thresholds, strict=True)
                   for v in (cap, expiry, *thresholds)]
    return (LEDGER_MAXLEN if ledger else 0, pause_count, len(limits.caps), day, groups, limits.threshold_count,
            *per_counter,
            limits.limits_json)


def settle_args(agent: str, request_id: str, actual: int, now_ms: int, tags: str, counters_json: str,
                estimate: int, call_ttl_ms: int, pricing: str, tail: tuple, event: str = "") -> tuple:
    """``event``: the JSON of the cost event's fields the caller gave (source, model_requested, latency_ms)."""
    return (agent, request_id, actual, now_ms, tags, counters_json, estimate, call_ttl_ms, pricing, event, *tail)


def release_args(agent: str, request_id: str, counters_json: str, now_ms: int, counter_count: int,
                 record: str = "") -> tuple:
    return (agent, request_id, counters_json, now_ms, record, LEDGER_MAXLEN, counter_count)


def expire_args(agent: str, request_id: str, now_ms: int, charge: bool, counters_json: str, pause_count: int,
                day: str, groups: str, limits: CounterLimits, ledger: bool = True) -> tuple:
    return (agent, request_id, now_ms, 1 if charge else 0, counters_json, pause_count, len(limits.caps),
            LEDGER_MAXLEN if ledger else 0, day, groups, limits.limits_json)


def pause_args(action: str, value: str, notice: notices.Notice) -> tuple:
    """``action``: "pause" (manual, ``value`` since|reason) or "resume" (every pause of the scope)."""
    return (action, value, notice.to_json(), notice.key)


def lift_args(notice: notices.Notice, fields: Sequence[str]) -> tuple:
    return (notice.to_json(), notice.key, NOTICE_MARKER_MS, *fields)


def notify_args(notice: notices.Notice) -> tuple:
    return (notice.to_json(), notice.key, NOTICE_MARKER_MS)


def outcome_args(group: str, entry_id: str, state: str, attempts: int, done_ms: int | None, idle_ms: int,
                 error: str) -> tuple:
    """``done_ms`` None (a retry: still pending) is written as ""."""
    return (group, entry_id, state, attempts, "" if done_ms is None else done_ms, idle_ms, error)


def reconcile_args(plan: Plan, targets: Sequence[tuple[Limit, tuple | None]], now_ms: int) -> tuple:
    """One object per window (reconcile.lua), with the fields of its two
    notices that the window does not give; the notices are the rules'."""
    scope_index = {s.key: i for i, s in enumerate(plan.scopes, start=1)}
    windows = []
    for limit, change in targets:
        scope, window, period = limit.counter
        reason, paused, resumed = rules.reconcile_notices(plan, limit, change, now_ms)
        windows.append({
            "scope_index": scope_index[scope], "scope": scope, "window": window, "period": period,
            "cap": str(-1 if limit.cap_nanos is None else limit.cap_nanos), "pause_value": f"{now_ms}|{reason}",
            "paused": {"key": paused.key, "reason": paused.reason, "extra": _extra_json(paused),
                       "cap_nanos": str(paused.cap_nanos)},
            "resumed": {"key": resumed.key, "extra": _extra_json(resumed), "cap_nanos": str(resumed.cap_nanos)},
        })
    return (now_ms, len(plan.scopes), plan.agent_id, json.dumps(windows))


def reconcile_claim_args(field: str, pass_name: str, owner: str, now_ms: int, lease_ms: int) -> tuple:
    return (field, pass_name, owner, now_ms, lease_ms, RECONCILE_LEASE_KEEP_MS)


def reconcile_save_args(field: str, result: ReconcileDay, owner: str) -> tuple:
    """The result's JSON as stored, and its passes (JSON) for the script's union."""
    return (field, result.to_json(), json.dumps(list(result.passes)), owner)


def reconcile_read_args(since_day: str, until_day: str, provider: str | None) -> tuple:
    return (since_day, until_day) if provider is None else (since_day, until_day, provider)


def _extra_json(notice: notices.Notice) -> str:
    """As Notice.to_json writes the extra field."""
    return json.dumps(notice.extra, sort_keys=True)


def day_and_groups(agent_id: str, counters: Sequence[Counter]) -> tuple[str, str]:
    """The ledger entry's day and groups (JSON)."""
    day, groups = rules.day_and_groups(agent_id, counters)
    return day or "", json.dumps(groups)
