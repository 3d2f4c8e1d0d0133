"""The API's query parameters and bodies, checked: anything out of range or
of the wrong type is a ValueError naming the parameter (a 400), before
anything is read or changed."""

from __future__ import annotations

from collections.abc import Mapping

from budgetd_client import validation

from .fleet import KINDS, MAX_PAGE_SIZE, SORTS, STATES, FleetQuery
from .views import MAX_SERIES, NOTICES_SHOWN

NOTICE_STATES = ("all", "pending", "sent", "failed", "skipped")
MAX_NOTICES = 500
MAX_QUERY_CHARS = 256
MAX_PAGE = 10**7


def _choice(query: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = query.get(name, default) or default
    if value not in choices:
        raise ValueError(f"{name}: {value[:64]!r} is not one of {', '.join(choices)}")
    return value


def _int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name, "")
    if not text:
        return default
    if len(text) > 12 or not text.lstrip("-").isdigit():
        raise ValueError(f"{name}: {text[:32]!r} is not a whole number")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{name}: {value} is out of range (give {low} to {high})")
    return value


def _text(query: Mapping[str, str], name: str) -> str:
    text = query.get(name, "")
    if len(text) > MAX_QUERY_CHARS:
        raise ValueError(f"{name}: at most {MAX_QUERY_CHARS} characters")
    return text


def fleet_query(query: Mapping[str, str]) -> FleetQuery:
    sort = _choice(query, "sort", SORTS, "id")
    return FleetQuery(
        kind=_choice(query, "kind", KINDS, "all"),
        q=_text(query, "q"),
        state=_choice(query, "state", STATES, "all"),
        sort=sort,
        order=_choice(query, "order", ("asc", "desc"), "asc" if sort == "id" else "desc"),
        page=_int(query, "page", 1, 1, MAX_PAGE),
        page_size=_int(query, "page_size", 50, 1, MAX_PAGE_SIZE),
    )


def spend_query(query: Mapping[str, str]) -> tuple[str, str, str, int]:
    return _text(query, "by"), _text(query, "since"), _text(query, "until"), _int(query, "top", 8, 1, MAX_SERIES)


def report_query(query: Mapping[str, str]) -> tuple[str, str, str, int]:
    return _text(query, "by"), _text(query, "since"), _text(query, "until"), _int(query, "top", 0, 0, 10_000)


def notices_query(query: Mapping[str, str]) -> tuple[int, str]:
    return _int(query, "limit", NOTICES_SHOWN, 1, MAX_NOTICES), _choice(query, "state", NOTICE_STATES, "all")


def reconcile_query(query: Mapping[str, str]) -> tuple[str, str, str]:
    """since, until (UTC days; checked by the answer), provider."""
    return _text(query, "since"), _text(query, "until"), _choice(query, "provider", ("", "openai", "anthropic"), "")


def tag_arg(text: str) -> tuple[str, str]:
    """``customer=acme`` -> ("customer", "acme"), checked as the client checks tags."""
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise ValueError(f"tag: expected KEY=VALUE (e.g. customer=acme), got {text[:64]!r}")
    validation.check_tags({key: value}, field="tag")
    return key, value


def action_body(body: Mapping[str, object], *, with_reason: bool) -> tuple[str, tuple[str, str] | None, str]:
    """(agent id, tag or None, reason) of a pause or resume body."""
    allowed = {"agent", "tag", "reason"} if with_reason else {"agent", "tag"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValueError(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                         f"(give {' or '.join(sorted(allowed))})")
    agent, tag, reason = body.get("agent"), body.get("tag"), body.get("reason", "")
    if (agent is None) == (tag is None):
        raise ValueError('give one of "agent" (an agent id) or "tag" ("KEY=VALUE")')
    for name, value in (("agent", agent), ("tag", tag), ("reason", reason)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name}: expected a string, got {type(value).__name__}")
    assert isinstance(reason, str)
    if tag is not None:
        assert isinstance(tag, str)
        return "", tag_arg(tag), reason
    assert isinstance(agent, str)
    return validation.check_agent_id(agent), None, reason
