"""Malformed input, generated: the client raises ValueError, the daemon
answers INVALID_ARGUMENT (or a proper refusal) and stays up."""

from __future__ import annotations

import math
import string
from decimal import Decimal, InvalidOperation
from fractions import Fraction

import grpc
import pytest
from budgetd_client import Budget
from budgetd_client import validation
from budgetd_client.money import MAX_CALL_NANOS, NANOS_PER_USD, usd_to_nanos
from budgetd_client.v1 import budget_pb2 as pb
from budgetd_client.v1 import budget_pb2_grpc as pb_grpc
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from helpers import DaemonProcess

ANSWERS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

amounts = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.decimals(allow_nan=True, allow_infinity=True),
                    st.integers(min_value=-(2**70), max_value=2**70), st.text(max_size=30), st.booleans(),
                    # Amounts a caller means: in range, and spelled as text too.
                    st.decimals(min_value=-1, max_value=MAX_CALL_NANOS // NANOS_PER_USD + 1, places=12),
                    st.decimals(allow_nan=True, allow_infinity=True).map(str),
                    st.from_regex(r"\s?-?\d{0,7}(\.\d{0,13})?([eE][-+]?\d)?\s?", fullmatch=True))


# -- the client's own checks, against an oracle written apart from them ------------


def exact_usd(amount) -> Fraction | None:
    """The exact dollar value an amount spells, or None where it spells none
    (a bool, NaN, an infinity, text that is not a decimal number)."""
    if isinstance(amount, bool):
        return None
    if isinstance(amount, float):
        return Fraction(repr(amount)) if math.isfinite(amount) else None  # as written, not its binary value
    if isinstance(amount, str):
        try:
            amount = Decimal(amount)
        except InvalidOperation:
            return None
    if isinstance(amount, Decimal):
        return Fraction(amount) if amount.is_finite() else None
    return Fraction(amount)


@FUZZ
@given(amounts)
@example(0.1)  # a tenth of a dollar as written, not as the binary float is
@example(0.05)
@example(Decimal("0.0000000001"))  # a tenth of a nanodollar: one, rounded up
@example(1_000_000)  # the per-call limit itself
@example("1000000.000000001")  # a nanodollar over it
@example(-0.0)
@example("-1e-20")
def test_client_amounts_are_nanodollars_or_a_value_error(amount):
    usd = exact_usd(amount)
    expected = None if usd is None or usd < 0 else math.ceil(usd * NANOS_PER_USD)  # rounded up, never down
    if expected is None or expected > MAX_CALL_NANOS:
        with pytest.raises(ValueError, match="^amount: "):
            usd_to_nanos(amount)
        return
    nanos = usd_to_nanos(amount)
    assert type(nanos) is int and nanos == expected


@pytest.mark.parametrize("amount, nanos", [
    ("0.000000001" + "0" * 30 + "1", 2),
    ("999999.999999999" + "0" * 30 + "1", 10**15),  # rounds up to exactly the per-call limit
    ("1000000." + "0" * 40 + "1", None),  # a hair over the per-call limit
])
def test_long_decimals_round_up_exactly(amount, nanos):
    if nanos is None:
        with pytest.raises(ValueError):
            usd_to_nanos(amount)
    else:
        assert usd_to_nanos(amount) == nanos


ID_FIRST = string.ascii_letters + string.digits
ID_REST = ID_FIRST + "._:/@+=-"
TAG_KEY = ID_FIRST + "_.-"


def control(ch: str) -> bool:
    return ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F


def valid_agent_id(agent_id: str) -> bool:
    return 1 <= len(agent_id) <= 128 and agent_id[0] in ID_FIRST and all(c in ID_REST for c in agent_id)


def valid_request_id(request_id: str) -> bool:
    return 1 <= len(request_id) <= 128 and not any(control(c) or c == " " for c in request_id)


def valid_tags(tags: dict) -> bool:
    return len(tags) <= 16 and all(
        1 <= len(k) <= 64 and all(c in TAG_KEY for c in k) and len(v) <= 256 and not any(control(c) for c in v)
        for k, v in tags.items())


def near(alphabet: str, max_size: int):
    """Text mostly of ``alphabet`` (so that valid ones come up), with a few odd characters."""
    return st.one_of(st.text(max_size=max_size),
                     st.text(st.sampled_from(alphabet + " {}*\x00\x1f\x7f\x85é"), max_size=max_size),
                     st.text(st.sampled_from(alphabet), min_size=1, max_size=max_size))


@FUZZ
@example("a{b}", "r id", {f"k{i}": "v" for i in range(17)})
@example("a" * 128, "r" * 128, {f"k{i}": "v" * 256 for i in range(16)})
@example("a" * 129, "r" * 129, {"k" * 65: "v"})
@example("-a", "r\x85", {"k": "v\x7f"})
@example("é", "", {"": "v"})
@example("A1._:/@+=-", "{x}*é", {"k-_.": "é \t"})
@given(near(ID_REST, 140), near(ID_REST + "{} ", 140),
       st.dictionaries(near(TAG_KEY, 70), near(string.printable, 260), max_size=18))
def test_client_ids_and_tags_are_valid_or_a_value_error(agent_id, request_id, tags):
    for check, valid, value in [(validation.check_agent_id, valid_agent_id, agent_id),
                                (validation.check_request_id, valid_request_id, request_id),
                                (validation.check_tags, valid_tags, tags)]:
        if valid(value):
            assert check(value) == value
        else:
            with pytest.raises(ValueError):
                check(value)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = DaemonProcess(tmp_path_factory.mktemp("fuzz"), "defaults: {daily_usd: 100}\n").start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def channel(daemon):
    with grpc.insecure_channel(daemon.address) as c:
        yield c


def _expect_refusal_or_answer(call, answers=ANSWERS):
    try:
        call()
    except grpc.RpcError as err:
        assert err.code() in answers, (err.code(), err.details())


def _expect_a_valid_call_answered(call):
    # An answer, or a refusal of this call (its request id already settled), never INVALID_ARGUMENT.
    _expect_refusal_or_answer(call, ANSWERS - {grpc.StatusCode.INVALID_ARGUMENT})


def _expect_invalid_argument(call):
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.value.code(), err.value.details())


int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@FUZZ
@given(near(ID_REST, 150), near(ID_REST, 150), st.one_of(st.none(), int64, st.integers(0, MAX_CALL_NANOS)),
       st.dictionaries(near(TAG_KEY, 70), st.text(max_size=300), max_size=20))
def test_raw_authorize_and_commit_fields(channel, agent_id, request_id, amount, tags):
    stub = pb_grpc.BudgetStub(channel)
    auth = pb.AuthorizeRequest(agent_id=agent_id, request_id=request_id, tags=tags)
    commit = pb.CommitRequest(agent_id=agent_id, request_id=request_id, tags=tags)
    if amount is not None:
        auth.estimate_nanos = amount
        commit.actual_nanos = amount
    valid = valid_agent_id(agent_id) and valid_request_id(request_id) and valid_tags(tags) and \
        (amount is None or 0 <= amount <= MAX_CALL_NANOS)
    # What the client would refuse with a ValueError, the daemon refuses as INVALID_ARGUMENT.
    check = _expect_a_valid_call_answered if valid else _expect_invalid_argument
    check(lambda: stub.Authorize(auth, timeout=5))
    check(lambda: stub.Commit(commit, timeout=5))


METHODS = ["/budgetd.v1.Budget/Authorize", "/budgetd.v1.Budget/Commit", "/budgetd.v1.Budget/Release",
           "/budgetd.v1.Budget/GetStatus", "/budgetd.v1.Admin/Pause", "/budgetd.v1.Admin/Report"]


@FUZZ
@given(st.sampled_from(METHODS), st.binary(max_size=2000))
def test_raw_protobuf_bytes(channel, method, body):
    _expect_refusal_or_answer(lambda: channel.unary_unary(method)(body, timeout=5))


def test_the_daemon_is_still_up_and_counting_after_the_fuzz(daemon):
    budget = Budget(daemon.address)
    before = budget.status("after-fuzz").daily.spent_usd
    with budget.guard("after-fuzz", estimate_usd="0.01") as call:
        call.record_usd("0.01")
    assert budget.status("after-fuzz").daily.spent_usd == before + Decimal("0.01")
    assert daemon.proc.poll() is None
