"""What recent_notices tells of an outbox entry on Redis, from what Redis
keeps: the stream entry (the notice), the consumer group (its pending
entries and their delivery counts, and the last id it delivered) and the
outcomes hash that finish_notice and retry_notice write (outcome.lua)."""

from __future__ import annotations

from ...notices.model import Notice
from ..model import QueuedNotice

# The outcomes hash is pruned to the entries still in the stream once it
# holds more than this: above the outbox's length (XADD MAXLEN ~ 100000).
OUTCOMES_LIMIT = 110_000


def stream_id(entry_id: str) -> tuple[int, int]:
    """An entry id ("<ms>-<seq>") as it orders."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def queued(notice: Notice, entry_id: str, recorded: str | None, times_delivered: int | None,
           last_delivered: tuple[int, int]) -> QueuedNotice:
    """``recorded``: the outcomes hash's value ("state|attempts|done_ms|error");
    ``times_delivered``: XPENDING's count when the entry is in the group's
    pending list (leased, or waiting for its retry), else None."""
    state, attempts, done, error = "", 0, "", ""
    if recorded:
        state, attempts_text, done, error = recorded.split("|", 3)
        attempts = int(attempts_text)
    if times_delivered is not None:
        return QueuedNotice(notice, "pending", times_delivered, error, None)
    if state and state != "pending":
        return QueuedNotice(notice, state, attempts, error, int(done) if done else None)
    if stream_id(entry_id) > last_delivered:  # not yet delivered to anyone
        return QueuedNotice(notice, "pending", 0, "", None)
    # Delivered and acknowledged with no outcome kept: finished by a budgetd
    # that did not record outcomes. Most likely sent; when is not known, so
    # the time it was written stands in.
    return QueuedNotice(notice, "sent", max(attempts, 1), error, stream_id(entry_id)[0])
