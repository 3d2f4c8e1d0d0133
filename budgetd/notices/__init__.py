"""Notices: what happened (warned, paused, resumed, anomaly, digest, config
rejected), written to the store's outbox in the same step as the change that
caused it, delivered to Slack by a worker, and streamed to watchers."""

from .model import Notice

__all__ = ["Notice"]
