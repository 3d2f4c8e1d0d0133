"""Refusals of the use cases that are not input errors (those are ValueError)."""

from __future__ import annotations


class UnknownAgent(Exception):
    pass


class Draining(Exception):
    """The daemon is shutting down: new holds are refused (UNAVAILABLE, so
    clients wait for the restart or another replica), settles still land."""

    def __init__(self, what: str = "new holds") -> None:
        super().__init__(f"budgetd is draining (shutting down): {what} are refused; "
                         "settles of holds already granted are still taken")
