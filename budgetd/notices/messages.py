"""What a notice says in Slack: a plain text (what notifications show) and
Block Kit blocks. Every message names the agent, the window, spent / cap
and, for pauses, when it resumes by itself and how to resume it now."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from budgetd_client.money import nanos_to_usd

from ..reconcile.model import provider_name
from .model import Notice


@dataclass(frozen=True)
class Context:
    """What the message adds to the notice, looked up at delivery."""

    timezone: str = "UTC"
    resumes_at: datetime | None = None
    top_models: list[tuple[str, int]] = field(default_factory=list)


def usd(nanos: int) -> str:
    """Cents when the amount has none smaller; otherwise every digit, plain
    (a normalized Decimal would print 1.5E-8)."""
    return f"${nanos_to_usd(nanos):,.2f}" if nanos % 10_000_000 == 0 else f"${nanos_to_usd(nanos):,f}"


def _cap_change(n: Notice) -> str:
    """What the config did to the window's cap (a reconcile's notice)."""
    before, after = n.extra.get("cap_before_nanos"), n.extra.get("cap_after_nanos")
    if after is None:
        return f"its {n.window} cap of {usd(before)} was removed in the config" if before is not None else \
            f"its {n.window} cap was removed in the config"
    if before is None:
        return f"a {n.window} cap of {usd(after)} was set in the config"
    if after > before:
        return f"its {n.window} cap was raised from {usd(before)} to {usd(after)} in the config"
    return f"its {n.window} cap was lowered from {usd(before)} to {usd(after)} in the config"


def _resumed_because(n: Notice) -> str:
    by = n.extra.get("by")
    if by == "rollover":
        return f"its {n.window} window rolled over"
    if by == "config":
        return _cap_change(n) if n.extra.get("cause") == "config" else "its cap was changed in the config"
    return "an operator resumed it"


def _who(n: Notice) -> str:
    kind, _, name = n.scope.partition(":")
    if kind in ("agent", ""):
        return f"*{n.agent_id}*"
    via = f" (via *{n.agent_id}*)" if n.agent_id else ""
    return f"group *{name}*{via}" if kind == "group" else f"{kind} *{name}*{via}"  # a budgeted tag value


def _resume_command(n: Notice) -> str:
    kind, _, name = n.scope.partition(":")
    return f"budgetctl resume --tag {kind}={name}" if kind not in ("agent", "group", "") else \
        f"budgetctl resume {n.agent_id}"


def _spend(n: Notice) -> str:
    left = max(0, n.cap_nanos - n.spent_nanos)
    return f"{n.window} {n.period}: spent {usd(n.spent_nanos)} of {usd(n.cap_nanos)}, {usd(left)} remaining"


def _when(ctx: Context) -> str:
    if ctx.resumes_at is None:
        return ""
    return f"{ctx.resumes_at.astimezone(ZoneInfo(ctx.timezone)):%Y-%m-%d %H:%M} {ctx.timezone}"


# What a reconciliation's classification is called in a message.
CLASSIFIED = {"untracked": "untracked spend", "stale_price": "stale price", "estimates": "estimates settled as cost",
              "timing": "timing", "not_at_provider": "not at the provider", "unexplained": "unexplained"}


def _reconcile(n: Notice) -> tuple[str, list[str]]:
    """A provider's day whose bill and ledger differ past tolerance: each row's class, why, what to do."""
    name = provider_name(str(n.extra.get("provider", "")))
    if n.extra.get("failed"):
        return (f":warning: budgetd could not compare {name}'s bill for {n.period} (UTC) with its ledger: {n.reason}",
                [f"Until this is fixed nothing is reconciled for {name}. Status: `budgetctl reconcile`"])
    drift = int(n.extra.get("drift_nanos", 0))
    billed = int(n.extra.get("provider_cost_nanos", 0))
    sign = "more" if drift > 0 else "less"
    text = (f":mag: {name} billed {usd(billed)} for {n.period} (UTC), {usd(abs(drift))} {sign} than budgetd's "
            f"ledger ({usd(n.spent_nanos)}).")
    lines = []
    for row in n.extra.get("rows", []):
        what = CLASSIFIED.get(row["classification"], row["classification"])
        lines.append(f"*{row['model']}*: {what}, {usd(abs(int(row['drift_nanos'])))} "
                     f"{'more' if int(row['drift_nanos']) > 0 else 'less'} at {name}: {row['explanation']}.")
        if row.get("suggestion"):
            lines.append(f"  To do: {row['suggestion']}")
    lines.append(f"Details: `budgetctl reconcile --day {n.period}`")
    return text, lines


def render(n: Notice, ctx: Context) -> tuple[str, list[dict]]:
    lines: list[str] = []
    if n.kind == "paused" and n.extra.get("by") == "cap":
        if n.extra.get("cause") == "config":
            text = (f":octagonal_sign: {_who(n)} is paused because {_cap_change(n)}, "
                    f"at or below its spend of {usd(n.spent_nanos)}.")
        else:
            text = f":octagonal_sign: {_who(n)} is paused: {n.reason}."
        lines = [_spend(n), f"Resumes by itself at {_when(ctx)}." if ctx.resumes_at else "",
                 f"To resume now: `{_resume_command(n)}`"]
    elif n.kind == "paused":
        text = f":octagonal_sign: {_who(n)} was paused by an operator: {n.reason}."
        lines = ["It stays paused until resumed.", f"To resume: `{_resume_command(n)}`"]
    elif n.kind == "warning":
        text = f":warning: {_who(n)} has spent {n.reason}."
        lines = [_spend(n), f"The window resets at {_when(ctx)}." if ctx.resumes_at else ""]
    elif n.kind == "resumed":
        text = f":white_check_mark: {_who(n)} is running again because {_resumed_because(n)}."
    elif n.kind == "anomaly" and "tag" in n.extra:
        tag, value = n.extra["tag"], n.extra.get("value", "")
        average = usd(int(n.extra.get("average_nanos", 0)))
        text = (f":rotating_light: Calls tagged {tag}=*{value}* spent {usd(n.spent_nanos)} in the hour "
                f"from {n.period.replace('T', ' ')}:00 UTC, {n.extra.get('ratio', '?')}x their 7-day hourly average of "
                f"{average}.")
        lines = [f"Today's spend by {tag}: `budgetctl report --by {tag} --top 10`"]
    elif n.kind == "anomaly":
        average = usd(int(n.extra.get("average_nanos", 0)))
        text = (f":rotating_light: *{n.agent_id}* spent {usd(n.spent_nanos)} in the last hour, "
                f"{n.extra.get('ratio', '?')}x its 7-day hourly average of {average}.")
        lines = [f"If this is a runaway loop: `budgetctl pause {n.agent_id} --reason \"runaway\"`"]
    elif n.kind == "digest":
        text = f":bar_chart: Spend digest for {n.period}: {usd(n.spent_nanos)} in total{n.extra.get('change', '')}."
        lines = [f"{i}. *{agent}* {usd(int(spent))}" for i, (agent, spent) in enumerate(n.extra.get("top", []), 1)]
        paused = n.extra.get("paused", [])
        lines.append(f"Paused now: {', '.join(paused)}" if paused else "No agent is paused.")
    elif n.kind == "config_rejected":
        text = f":x: A budgets.yaml edit was rejected; the running config stays in force. {n.reason}"
    elif n.kind == "store_lost":
        text = f":rotating_light: budgetd's store lost data: {n.reason}"
        lines = ["Writes are refused until budgetd is restarted; spend and caps counted before the loss "
                 "may be gone. Check the store, then restart budgetd."]
    elif n.kind == "reconcile":
        text, lines = _reconcile(n)
    else:
        text = f"{n.kind}: {n.agent_id} {n.reason}"
    if ctx.top_models:
        lines.append("Top models: " + ", ".join(f"{model} {usd(spent)}" for model, spent in ctx.top_models))
    lines = [line for line in lines if line]
    blocks: list[dict] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if lines:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "\n".join(lines)}]})
    return "\n".join([text, *lines]), blocks
