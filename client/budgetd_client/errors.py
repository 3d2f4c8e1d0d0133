"""The exceptions an agent author catches. All are ``BudgetError``."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from .money import plain


class BudgetError(Exception):
    """Base of every budgetd refusal or failure."""


class BudgetExceeded(BudgetError):
    """Holding the estimate would take a window over its cap."""

    def __init__(
        self,
        agent_id: str,
        *,
        window: str,
        scope: str,
        remaining_usd: Decimal,
        cap_usd: Decimal | None,
        resets_at: datetime | None,
        waited_ms: int = 0,
    ) -> None:
        self.agent_id = agent_id
        self.window = window  # "daily" or "monthly"
        self.scope = scope  # "agent:NAME" or "group:NAME"
        self.remaining_usd = remaining_usd
        self.cap_usd = cap_usd
        self.resets_at = resets_at
        # > 0: the cap had room but other calls' holds filled it; budgetd
        # waited this long for them to settle before refusing.
        self.waited_ms = waited_ms
        owner = "" if scope == f"agent:{agent_id}" else f" (via {scope})"
        waited = (f"; waited {waited_ms} ms for other calls' holds to settle and free room, "
                  "until the call's deadline or budgetd's max_wait_ms" if waited_ms else "")
        super().__init__(
            f"{agent_id}: {window} budget{owner} exceeded: {plain(remaining_usd)} USD of "
            f"{'no cap' if cap_usd is None else plain(cap_usd) + ' USD'} remains; "
            f"resets at {resets_at.isoformat() if resets_at else 'never'}{waited}"
        )


class AgentPaused(BudgetError):
    """The agent (or a group it belongs to) is paused."""

    def __init__(
        self,
        agent_id: str,
        *,
        reason: str,
        kind: str,
        scope: str,
        window: str | None,
        resumes_at: datetime | None,
    ) -> None:
        self.agent_id = agent_id
        self.reason = reason
        self.kind = kind  # "manual" or "cap"
        self.scope = scope
        self.window = window
        self.resumes_at = resumes_at  # None: only an operator resumes it
        when = f"resumes at {resumes_at.isoformat()}" if resumes_at else "until an operator resumes it"
        super().__init__(f"{agent_id}: paused ({reason}); {when}")


class BudgetUnavailable(BudgetError):
    """budgetd could not be reached or did not answer in time (fail closed)."""


class UnknownAgent(BudgetError):
    """budgetd has no such agent (NOT_FOUND): a call for an agent with no
    budget when the config has no ``defaults``, or an operator command
    (pause, resume, ``status(..., known_only=True)``) for an agent neither in
    the config nor ever seen: a typo, most likely, and the message suggests
    the closest known ids. Nothing was changed."""
