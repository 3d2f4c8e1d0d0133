"""Input rules shared by the client (raises ValueError before sending) and the
daemon (answers INVALID_ARGUMENT). One definition, so both refuse the same."""

from __future__ import annotations

import re
from collections.abc import Mapping

from .money import MAX_CALL_NANOS, MAX_CALL_USD, nanos_to_usd

MAX_ID_LENGTH = 128
MAX_TAGS = 16
MAX_TAG_KEY_LENGTH = 64
MAX_TAG_VALUE_LENGTH = 256
MAX_REASON_LENGTH = 512

# Letters, digits and a few separators; no spaces, braces (they are Redis
# hash-tag delimiters), glob characters or control characters.
AGENT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+=-]*")
TAG_KEY_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _bounded_string(value: object, field: str, max_length: int = MAX_ID_LENGTH) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field}: expected a string, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{field}: must not be empty")
    if len(value) > max_length:
        raise ValueError(f"{field}: {len(value)} characters, at most {max_length} allowed")
    return value


# The whole rule in one match, for the common case (every RPC checks an agent
# id and a request id); a mismatch goes through the checks that say what is wrong.
_VALID_AGENT_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:/@+=-]{{0,{MAX_ID_LENGTH - 1}}}")
_VALID_REQUEST_ID = re.compile(rf"[^\x00-\x20\x7f-\x9f]{{1,{MAX_ID_LENGTH}}}")


def check_agent_id(agent_id: object, *, field: str = "agent_id") -> str:
    if type(agent_id) is str and _VALID_AGENT_ID.fullmatch(agent_id):
        return agent_id
    agent_id = _bounded_string(agent_id, field)
    if not AGENT_ID_PATTERN.fullmatch(agent_id):
        raise ValueError(
            f"{field}: {agent_id!r} must start with a letter or digit and contain only "
            "letters, digits and . _ : / @ + = -"
        )
    return agent_id


def check_request_id(request_id: object, *, field: str = "request_id") -> str:
    if type(request_id) is str and _VALID_REQUEST_ID.fullmatch(request_id):
        return request_id
    request_id = _bounded_string(request_id, field)
    if _CONTROL.search(request_id) or " " in request_id:
        raise ValueError(f"{field}: must not contain spaces or control characters")
    return request_id


def check_tags(tags: Mapping[str, str] | None, *, field: str = "tags") -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise ValueError(f"{field}: expected a mapping of strings, got {type(tags).__name__}")
    if len(tags) > MAX_TAGS:
        raise ValueError(f"{field}: {len(tags)} tags, at most {MAX_TAGS} allowed")
    checked = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not TAG_KEY_PATTERN.fullmatch(key) or len(key) > MAX_TAG_KEY_LENGTH:
            raise ValueError(
                f"{field}: key {key!r} must be 1-{MAX_TAG_KEY_LENGTH} letters, digits, '_', '.' or '-'"
            )
        if not isinstance(value, str):
            raise ValueError(f"{field}[{key}]: expected a string, got {type(value).__name__}")
        if len(value) > MAX_TAG_VALUE_LENGTH:
            raise ValueError(f"{field}[{key}]: {len(value)} characters, at most {MAX_TAG_VALUE_LENGTH} allowed")
        if _CONTROL.search(value):
            raise ValueError(f"{field}[{key}]: must not contain control characters")
        checked[key] = value
    return checked


def check_reason(reason: object, *, field: str = "reason") -> str:
    if not isinstance(reason, str):
        raise ValueError(f"{field}: expected a string, got {type(reason).__name__}")
    if len(reason) > MAX_REASON_LENGTH:
        raise ValueError(f"{field}: {len(reason)} characters, at most {MAX_REASON_LENGTH} allowed")
    if _CONTROL.search(reason):
        raise ValueError(f"{field}: must not contain control characters")
    return reason


def check_nanos(nanos: object, *, field: str) -> int:
    """For amounts that arrive as nanodollars (the wire)."""
    if isinstance(nanos, bool) or not isinstance(nanos, int):
        raise ValueError(f"{field}: expected integer nanodollars")
    if nanos < 0:
        raise ValueError(f"{field}: must not be negative, got {nanos}")
    if nanos > MAX_CALL_NANOS:
        raise ValueError(f"{field}: {nanos} nanodollars ({nanos_to_usd(nanos)} USD) is over the per-call limit "
                         f"of {MAX_CALL_NANOS} ({MAX_CALL_USD} USD)")
    return nanos
