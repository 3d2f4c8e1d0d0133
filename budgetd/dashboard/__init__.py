"""The fleet dashboard: a web page and its JSON API, served by the daemon
(docs/dashboard.md)."""

from .server import Dashboard

__all__ = ["Dashboard"]
