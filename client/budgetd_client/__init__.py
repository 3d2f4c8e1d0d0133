"""budgetd-client: ask budgetd before every model call, tell it the cost after.

    from budgetd_client import Budget
    budget = Budget()
    with budget.guard("summarizer") as call:
        ...
        call.record_usd("0.0123")
"""

from ._async import AsyncBudget, AsyncGuard
from ._core import Call, Tls
from ._sync import Budget, Guard
from .errors import AgentPaused, BudgetError, BudgetExceeded, BudgetUnavailable, UnknownAgent
from .status import AgentStatus, Event, GroupStatus, WindowStatus

__all__ = [
    "AgentPaused",
    "AgentStatus",
    "AsyncBudget",
    "AsyncGuard",
    "Budget",
    "BudgetError",
    "BudgetExceeded",
    "BudgetUnavailable",
    "Call",
    "Event",
    "GroupStatus",
    "Guard",
    "Tls",
    "UnknownAgent",
    "WindowStatus",
]
