"""Dollars at the edges, integer nanodollars inside.

Every amount that crosses the wire or touches storage is an int of
nanodollars (1e-9 USD). Dollars come in as ``Decimal`` (or anything that
spells a decimal number) and are converted exactly once, here.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

NANOS_PER_USD = 10**9
#: The largest amount one call may hold or settle. Anything bigger is a bug in
#: the caller (a unit mix-up, an overflow), not a model call.
MAX_CALL_USD = Decimal(1_000_000)
MAX_CALL_NANOS = int(MAX_CALL_USD) * NANOS_PER_USD

UsdLike = Decimal | int | float | str


def to_decimal(amount: UsdLike, *, field: str) -> Decimal:
    """Read a dollar amount exactly; floats go through their shortest repr,
    so ``0.05`` is five cents, not 0.05000000000000000277."""
    if isinstance(amount, bool):
        raise ValueError(f"{field}: expected a dollar amount, got a bool")
    if isinstance(amount, float):
        if not math.isfinite(amount):
            raise ValueError(f"{field}: must be a finite number, got {amount!r}")
        amount = repr(amount)
    if isinstance(amount, (int, str)):
        try:
            amount = Decimal(amount)
        except InvalidOperation:
            raise ValueError(f"{field}: {amount!r} is not a decimal number") from None
    if not isinstance(amount, Decimal):
        raise ValueError(f"{field}: expected a dollar amount, got {type(amount).__name__}")
    if not amount.is_finite():
        raise ValueError(f"{field}: must be a finite number, got {amount}")
    return amount


def usd_to_nanos(amount: UsdLike, *, field: str = "amount", limit: int = MAX_CALL_NANOS) -> int:
    """Dollars -> nanodollars, rounded up (a cost is never rounded in the
    caller's favour). Refuses negative, non-finite and oversized amounts."""
    usd = to_decimal(amount, field=field)
    if usd < 0:
        raise ValueError(f"{field}: must not be negative, got {plain(usd)}")
    if usd > Decimal(limit) / NANOS_PER_USD:  # compared exactly, before any arithmetic that could round
        raise ValueError(f"{field}: {plain(usd)} USD is over the limit of {nanos_to_usd(limit)} USD")
    return ceil_nanos(usd)


def ceil_nanos(usd: Decimal) -> int:
    """``ceil(usd * 1e9)`` of a finite, non-negative amount, in integers:
    Decimal arithmetic would round to its context's 28 digits first, and a
    longer amount could come out short."""
    if usd.is_signed() and usd:
        raise ValueError(f"a cost cannot be negative, got {plain(usd)}")
    if not usd:
        return 0
    if usd.adjusted() < -9:  # under one nanodollar (and positive): one, rounded up
        return 1
    _, digits, exponent = usd.as_tuple()
    assert isinstance(exponent, int)  # a finite amount (a special value's exponent is a letter)
    coefficient, shift = int("".join(map(str, digits))), exponent + 9
    return coefficient * 10**shift if shift >= 0 else -(-coefficient // 10**-shift)


class Dollars(Decimal):
    """A Decimal that prints as a plain decimal: ``50``, ``0.000000001``.

    A plain Decimal prints round and tiny amounts in exponent form (``5E+1``,
    ``1E-9``), which reads as a bug in a status line or a JSON field. Only
    printing differs: it compares, hashes and computes as the Decimal it is
    (arithmetic on it gives plain Decimals)."""

    __slots__ = ()

    def __str__(self) -> str:
        return format(self, "f")

    def __repr__(self) -> str:
        return f"Decimal('{self}')"

    def __format__(self, spec: str, *context) -> str:  # Decimal's own optional argument passed on
        # No presentation type (``{d}``, ``{d:>10}``, ``{d:,}``): Decimal would
        # choose exponent form for the same amounts; fixed-point instead.
        if not spec or (spec[-1] not in "eEfFgGn%" and "." not in spec):
            spec += "f"
        return super().__format__(spec, *context)


def plain(amount: Decimal) -> str:
    """Any Decimal amount as text without an exponent or trailing zeros (for
    messages). Textual, not normalize(): that rounds to the context's 28
    digits, and a 40-digit amount over a limit must not read as the limit."""
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def nanos_to_usd(nanos: int) -> Dollars:
    """Nanodollars -> exact Decimal dollars with no trailing-zero noise,
    printing plainly (``50``, not ``5E+1``)."""
    if not nanos:
        return Dollars(0)
    usd = (Decimal(nanos) / NANOS_PER_USD).normalize()
    # normalize() makes 50 into 5E+1 (exponent 1): back to exponent 0.
    exponent = usd.as_tuple().exponent  # an int: the amount is finite
    return Dollars(usd.quantize(1) if isinstance(exponent, int) and exponent > 0 else usd)
