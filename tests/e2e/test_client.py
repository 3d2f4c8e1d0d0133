"""The client on its own: money at the edge, addresses as people write them.
(How a guard behaves is in test_async_client.py, run on a daemon and on FakeBudget.)"""

from __future__ import annotations

from decimal import Decimal

import pytest

from budgetd_client import Budget, BudgetExceeded, Tls, validation
from budgetd_client.money import nanos_to_usd, usd_to_nanos


@pytest.mark.parametrize(
    ("amount", "nanos"),
    [("0.0123", 12_300_000), (0.05, 50_000_000), (Decimal("0.1"), 100_000_000), (0.1 + 0.2, 300_000_001),
     ("0.0000000001", 1), (3, 3_000_000_000), (Decimal("1E-9"), 1), ("0", 0)],
)
def test_dollars_become_nanodollars_exactly_rounded_up(amount, nanos):
    assert usd_to_nanos(amount) == nanos


def test_nanodollars_become_exact_decimal_dollars():
    assert nanos_to_usd(1_000_000_000) == Decimal(1)
    assert nanos_to_usd(150) == Decimal("0.00000015")
    assert str(nanos_to_usd(4_750_000)) == "0.00475"


@pytest.mark.parametrize(("nanos", "text"), [
    (50 * 10**9, "50"), (100 * 10**9, "100"), (10**15, "1000000"), (1, "0.000000001"), (12_300_000, "0.0123"),
    (0, "0"), (1_500_000_000, "1.5"), (10 * 10**9 + 1, "10.000000001"),
])
def test_round_and_tiny_amounts_print_as_plain_decimals_and_still_compare_as_decimals(nanos, text):
    usd = nanos_to_usd(nanos)
    assert str(usd) == f"{usd}" == text and repr(usd) == f"Decimal('{text}')"
    assert usd == Decimal(text) and hash(usd) == hash(Decimal(text)) and usd_to_nanos(usd) == nanos
    assert f"{usd:,.2f}" == f"{Decimal(text):,.2f}"  # an explicit format is Decimal's own


def test_messages_about_money_never_use_exponent_form():
    with pytest.raises(ValueError, match=r"^amount: 1000001 USD is over the limit of 1000000 USD$"):
        usd_to_nanos(Decimal("1.000001E+6"))
    exceeded = BudgetExceeded("a1", window="daily", scope="agent:a1", remaining_usd=Decimal("0E-9"),
                              cap_usd=Decimal("5E+1"), resets_at=None)
    assert "0 USD of 50 USD remains" in str(exceeded)
    with pytest.raises(ValueError, match=r"^actual_nanos: 1000000000000001 nanodollars \(1000000.000000001 USD\) is "
                                         r"over the per-call limit of 1000000000000000 \(1000000 USD\)$"):
        validation.check_nanos(10**15 + 1, field="actual_nanos")


@pytest.mark.parametrize(("given", "target", "tls"), [
    ("localhost:50051", "localhost:50051", None), ("http://localhost:50051", "localhost:50051", None),
    ("http://127.0.0.1:7/", "127.0.0.1:7", None), ("https://budgetd.internal:443", "budgetd.internal:443", Tls()),
    ("[::1]:50051", "[::1]:50051", None), ("unix:/run/budgetd.sock", "unix:/run/budgetd.sock", None),
])
def test_addresses_as_people_write_them(monkeypatch, given, target, tls):
    monkeypatch.delenv("BUDGETD_TLS", raising=False)
    monkeypatch.setenv("BUDGETD_ADDRESS", given)
    settings = Budget().settings
    assert (settings.address, settings.tls) == (target, tls)


@pytest.mark.parametrize("given", ["localhost", "http://localhost", "localhost:99999", "http://h:1/v1", "h:p"])
def test_an_address_that_is_not_host_port_is_refused_naming_where_it_came_from(monkeypatch, given):
    monkeypatch.setenv("BUDGETD_ADDRESS", given)
    with pytest.raises(ValueError, match=r"^BUDGETD_ADDRESS: .* expected host:port \(e.g. localhost:50051\)"):
        Budget()
    with pytest.raises(ValueError, match=r"^address: "):
        Budget(given)


def test_http_with_tls_settings_is_a_contradiction_said_plainly():
    with pytest.raises(ValueError, match="http:// asks for plaintext, but TLS settings are given"):
        Budget("http://localhost:50051", tls=Tls())
