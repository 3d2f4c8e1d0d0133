"""The application: the config in force and the use cases, apart from any wire."""

from .clock import NowMs, system_now_ms, to_ms, utc_of_ms
from .errors import Draining, UnknownAgent
from .service import AgentReport, BudgetService, Report, Settled
from .snapshot import ConfigInForce

__all__ = ["AgentReport", "BudgetService", "ConfigInForce", "Draining", "NowMs", "Report", "Settled",
           "UnknownAgent", "system_now_ms", "to_ms", "utc_of_ms"]
