"""The id checks' one-match fast path accepts exactly what the detailed
rules accept (the detailed rules only explain a refusal)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from budgetd_client import validation

# Ids near the rules: their characters, a few outside them, lengths around the bound.
ID_CHARS = st.sampled_from(list("aZ09._:/@+=-") + [" ", "\x00", "\x1f", "\x7f", "\x9f", "\xa0", "é", "{", "*", "\n"])
IDS = st.one_of(st.text(ID_CHARS, max_size=4), st.text(ID_CHARS, min_size=120, max_size=135),
                st.text(st.sampled_from("aZ09._-"), min_size=125, max_size=131))


def accepted(check, value: str) -> bool:
    try:
        check(value)
        return True
    except ValueError:
        return False


def by_the_rules(value: str, pattern_ok) -> bool:
    try:
        validation._bounded_string(value, "id")
    except ValueError:
        return False
    return pattern_ok(value)


@settings(max_examples=2000)
@given(IDS)
def test_agent_ids_fast_and_full_agree(value):
    expected = by_the_rules(value, lambda v: bool(validation.AGENT_ID_PATTERN.fullmatch(v)))
    assert bool(validation._VALID_AGENT_ID.fullmatch(value)) is expected
    assert accepted(validation.check_agent_id, value) is expected


@settings(max_examples=2000)
@given(IDS)
def test_request_ids_fast_and_full_agree(value):
    expected = by_the_rules(value, lambda v: not validation._CONTROL.search(v) and " " not in v)
    assert bool(validation._VALID_REQUEST_ID.fullmatch(value)) is expected
    assert accepted(validation.check_request_id, value) is expected
