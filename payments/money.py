"""Money: Decimal amounts with an ISO 4217 currency, never float.

An amount has at most as many decimals as its currency's minor unit
(ISO 4217 exponent: EUR 2, JPY 0): ``12.50 JPY`` is not an amount. Amounts
are stored in columns of scale 2 (numeric(12, 2)), which hold every
accepted currency exactly; they are announced (responses, webhooks, the back
office) with their currency's own number of decimals (``format_amount``).

Currencies with 3 decimals (KWD, BHD, JOD, OMR, TND...) are not accepted:
their amounts would not fit the columns' scale, and every amount column,
check constraint and the hand-written hot-path SQL would change with it
(docs/decisions.md).
"""
from __future__ import annotations

import re
from decimal import Context, Decimal, InvalidOperation

from .errors import InvalidAmount, UnsupportedCurrency

# ISO 4217 alpha code -> (numeric code, minor unit exponent).
CURRENCIES: dict[str, tuple[int, int]] = {
    "EUR": (978, 2),
    "USD": (840, 2),
    "GBP": (826, 2),
    "CHF": (756, 2),
    "CAD": (124, 2),
    "AUD": (36, 2),
    "SEK": (752, 2),
    "NOK": (578, 2),
    "DKK": (208, 2),
    "PLN": (985, 2),
    "CZK": (203, 2),
    "JPY": (392, 0),
}

# The scale of every amount column (payments.models.AMOUNT): no currency may
# have more decimals than this.
STORED_PLACES = 2
CENT = Decimal("0.01")
MAX_INTEGER_DIGITS = 10
# Enough precision for any amount we accept (10 integer digits + 2 decimals).
_EXACT = Context(prec=MAX_INTEGER_DIGITS + STORED_PLACES + 1)
_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?\Z")

if any(exp > STORED_PLACES for _, exp in CURRENCIES.values()):  # a definition-time check, kept under -O
    raise RuntimeError("a currency has more decimals than the amount columns store")


def exponent(currency: str) -> int:
    """The currency's number of decimals (ISO 4217 minor unit), or UnsupportedCurrency."""
    try:
        return CURRENCIES[currency][1]
    except (KeyError, TypeError):
        raise UnsupportedCurrency(currency) from None


def quantum(currency: str) -> Decimal:
    """The smallest amount of the currency: 0.01 EUR, 1 JPY."""
    return Decimal(1).scaleb(-exponent(currency))


def parse_amount(raw: object, *, currency: str, allow_json_number: bool = True) -> Decimal:
    """A positive amount in ``currency``: at most its decimals, at most 10 integer digits.

    ``raw`` is a Decimal or int (a JSON number decoded without floats) or a
    string in plain decimal notation with ``.``. Trailing zeros do not count
    as decimals (terminals send ``500.000000``). Floats are refused: they
    cannot represent cents exactly. The result has exactly the currency's
    number of decimals (``12.50`` EUR, ``1200`` JPY).
    """
    unit = quantum(currency)
    if isinstance(raw, bool) or isinstance(raw, float):
        raise InvalidAmount()
    if isinstance(raw, int) and allow_json_number:
        value = Decimal(raw)
    elif isinstance(raw, Decimal) and allow_json_number:
        value = raw
    elif isinstance(raw, str) and _PLAIN_DECIMAL.match(raw):
        try:
            value = Decimal(raw)
        except InvalidOperation:  # pragma: no cover - the regex admits only valid literals
            raise InvalidAmount() from None
    else:
        raise InvalidAmount()
    if not value.is_finite() or value <= 0:
        raise InvalidAmount()
    if value.adjusted() + 1 > MAX_INTEGER_DIGITS:
        raise InvalidAmount()
    # Exact, whatever the input's length: normalize() and the default context
    # round to 28 digits, which let "1.0000000000000000000000000000001" pass.
    exact = value.quantize(unit, context=_EXACT)
    if exact != value:
        raise InvalidAmount()
    return exact


def in_currency(value: Decimal, currency: str) -> Decimal:
    """A stored amount (scale 2) with its currency's decimals: 1200.00 JPY -> 1200.

    Never rounds money away: a value with more decimals than its currency
    allows (which no door lets in) keeps them, so that a display is never wrong.
    """
    unit = quantum(currency)
    exact = value.quantize(unit, context=_EXACT)
    return exact if exact == value else value.quantize(CENT, context=_EXACT)


def format_amount(value: Decimal, currency: str) -> str:
    """An amount as text with its currency's decimals: ``12.50`` EUR, ``1200`` JPY."""
    return f"{in_currency(value, currency):f}"


def validate_currency(code: str) -> str:
    if code not in CURRENCIES:
        raise ValueError(f"unsupported currency {code!r}; supported: {', '.join(sorted(CURRENCIES))}")
    return code
