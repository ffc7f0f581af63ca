"""parse_amount: what a terminal or a merchant may send as an amount (terminal.md), in
its currency's precision (ISO 4217 exponent: EUR 2, JPY 0)."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from payments.errors import InvalidAmount, UnsupportedCurrency
from payments.money import CURRENCIES, exponent, format_amount, in_currency, parse_amount, validate_currency


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("500.000000", Decimal("500.00")),  # the reference Qt client's format
        ("500", Decimal("500.00")),
        ("0.01", Decimal("0.01")),
        ("12.5", Decimal("12.50")),
        ("12.50", Decimal("12.50")),
        ("12.340", Decimal("12.34")),
        ("007.10", Decimal("7.10")),
        ("9999999999.99", Decimal("9999999999.99")),  # 10 integer digits
        (42, Decimal("42.00")),
        (Decimal("19.99"), Decimal("19.99")),
        (Decimal("1E+2"), Decimal("100.00")),
        (Decimal("5.000"), Decimal("5.00")),
    ],
)
def test_accepted_amounts(raw: object, expected: Decimal) -> None:
    value = parse_amount(raw, currency="EUR")
    assert type(value) is Decimal
    assert value == expected
    assert value.as_tuple().exponent == -2  # always stored with exactly 2 decimals


@pytest.mark.parametrize(
    "raw",
    [
        "0", "0.00", "0.000000", "-1", "-0.01", 0, -5, Decimal("0"), Decimal("-1"), Decimal("-0"),
        "0.001", "1.001", "12.345", Decimal("1.005"),
        # More decimals than the default Decimal context's 28 digits of precision:
        # must be refused, not rounded to 1.00.
        "1.0000000000000000000000000000001", Decimal("1.0000000000000000000000000000001"),
        "10000000000", "10000000000.00", 10**10, Decimal("1E+10"), "99999999999.5",
        "NaN", "nan", "Infinity", "inf", Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"),
        True, False, 1.5, 500.0, float("nan"),
        "", " ", " 5", "5 ", "5,00", "1e3", "1E3", "+5", ".5", "5.", "0x10", "١٢", "5\n",
        None, [5], {"amount": 5}, b"5",
    ],
)
def test_refused_amounts(raw: object) -> None:
    with pytest.raises(InvalidAmount) as info:
        parse_amount(raw, currency="EUR")
    assert info.value.message == "Invalid amount"


def test_json_numbers_refused_when_the_door_wants_strings() -> None:
    assert parse_amount("5", currency="EUR") == Decimal("5.00")
    with pytest.raises(InvalidAmount):
        parse_amount(5, allow_json_number=False, currency="EUR")
    with pytest.raises(InvalidAmount):
        parse_amount(Decimal("5"), allow_json_number=False, currency="EUR")


valid_amounts = st.decimals(
    min_value=Decimal("0.01"), max_value=Decimal("9999999999.99"), places=2, allow_nan=False, allow_infinity=False
)


@given(valid_amounts)
@example(Decimal("0.01"))
@example(Decimal("9999999999.99"))
def test_valid_amounts_round_trip(value: Decimal) -> None:
    """Any amount with at most 2 decimals comes back equal, whatever form it was sent in."""
    assert parse_amount(value, currency="EUR") == value
    assert parse_amount(str(value), currency="EUR") == value
    assert parse_amount(f"{value:f}", currency="EUR") == value
    assert parse_amount(f"{value:f}" + ("" if "." in f"{value:f}" else ".") + "0000", currency="EUR") == value


@given(valid_amounts, st.integers(min_value=1, max_value=40))
def test_trailing_zeros_do_not_count_as_decimals(value: Decimal, zeros: int) -> None:
    text = f"{value:.2f}" + "0" * zeros
    assert parse_amount(text, currency="EUR") == value


@given(valid_amounts, st.integers(min_value=1, max_value=9), st.integers(min_value=0, max_value=40))
def test_a_significant_third_decimal_is_refused(value: Decimal, digit: int, zeros: int) -> None:
    text = f"{value:.2f}" + "0" * zeros + str(digit)
    with pytest.raises(InvalidAmount):
        parse_amount(text, currency="EUR")
    with pytest.raises(InvalidAmount):
        parse_amount(Decimal(text), currency="EUR")


@given(st.integers(min_value=10**10, max_value=10**30))
def test_more_than_ten_integer_digits_refused(value: int) -> None:
    for raw in (value, str(value), f"{value}.00", Decimal(value)):
        with pytest.raises(InvalidAmount):
            parse_amount(raw, currency="EUR")


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_floats_always_refused(value: float) -> None:
    with pytest.raises(InvalidAmount):
        parse_amount(value, currency="EUR")


@given(st.text(max_size=30))
def test_arbitrary_text_is_an_amount_or_invalid_amount(text: str) -> None:
    try:
        value = parse_amount(text, currency="EUR")
    except InvalidAmount:
        return
    assert type(value) is Decimal and value > 0 and value == value.quantize(Decimal("0.01"))


def test_currencies() -> None:
    assert validate_currency("EUR") == "EUR"
    assert CURRENCIES["EUR"] == (978, 2)
    with pytest.raises(ValueError, match="unsupported currency 'XXX'"):
        validate_currency("XXX")
    with pytest.raises(ValueError):
        validate_currency("eur")


# --- The currency's own precision ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1200", Decimal("1200")), ("500.000000", Decimal("500")), (42, Decimal("42")), (Decimal("7.00"), Decimal("7")),
     ("9999999999", Decimal("9999999999"))],
)
def test_yen_amounts_have_no_decimals(raw: object, expected: Decimal) -> None:
    value = parse_amount(raw, currency="JPY")
    assert value == expected and value.as_tuple().exponent == 0


@pytest.mark.parametrize("raw", ["12.50", "12.5", "0.50", "1.01", Decimal("12.5"), "10000000000"])
def test_yen_amounts_with_a_fraction_are_refused(raw: object) -> None:
    with pytest.raises(InvalidAmount):
        parse_amount(raw, currency="JPY")


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999999.99"), places=2), st.sampled_from(sorted(CURRENCIES)))
def test_an_amount_is_valid_exactly_when_it_has_at_most_the_currencys_decimals(value: Decimal, currency: str) -> None:
    fits = value == value.quantize(Decimal(1).scaleb(-CURRENCIES[currency][1]))
    try:
        parsed = parse_amount(str(value), currency=currency)
    except InvalidAmount:
        assert not fits
    else:
        assert fits and parsed == value and parsed.as_tuple().exponent == -CURRENCIES[currency][1]


def test_every_accepted_currency_fits_the_amount_columns() -> None:
    """Amounts are stored with 2 decimals: a 3-decimal currency (KWD) is not accepted."""
    from payments.models import Transaction

    assert all(exponent(code) <= Transaction._meta.get_field("amount").decimal_places for code in CURRENCIES)
    assert "KWD" not in CURRENCIES and "BHD" not in CURRENCIES


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(UnsupportedCurrency):
        parse_amount("5", currency="KWD")
    with pytest.raises(UnsupportedCurrency):
        exponent("XXX")


def test_amounts_are_announced_in_the_currencys_precision() -> None:
    assert format_amount(Decimal("1200.00"), "JPY") == "1200"
    assert format_amount(Decimal("12.5"), "EUR") == "12.50"
    assert format_amount(Decimal("12"), "EUR") == "12.00"
    assert in_currency(Decimal("375000.00"), "JPY") == Decimal("375000")
    # Never rounds money away: a value the currency cannot hold is shown as it is.
    assert format_amount(Decimal("12.50"), "JPY") == "12.50"
