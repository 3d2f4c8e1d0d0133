"""budgetd: per-agent spend enforcement for LLM calls."""

__version__ = "0.1.0"
