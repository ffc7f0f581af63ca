"""Money: Decimal amounts with an ISO 4217 currency, never float."""
from __future__ import annotations

import re
from decimal import Context, Decimal, InvalidOperation

from .errors import InvalidAmount

# ISO 4217 alpha code -> (numeric code, minor unit exponent). Only currencies
# with at most 2 decimals: amounts are stored with 2 decimal places.
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

CENT = Decimal("0.01")
MAX_INTEGER_DIGITS = 10
# Enough precision for any amount we accept (10 integer digits + 2 decimals).
_EXACT = Context(prec=MAX_INTEGER_DIGITS + 2 + 1)
_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?\Z")


def parse_amount(raw: object, *, allow_json_number: bool = True) -> Decimal:
    """A positive amount with at most 2 decimals and 10 integer digits.

    ``raw`` is a Decimal or int (a JSON number decoded without floats) or a
    string in plain decimal notation with ``.``. Trailing zeros do not count
    as decimals (terminals send ``500.000000``). Floats are refused: they
    cannot represent cents exactly.
    """
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
    cents = value.quantize(CENT, context=_EXACT)
    if cents != value:
        raise InvalidAmount()
    return cents


def validate_currency(code: str) -> str:
    if code not in CURRENCIES:
        raise ValueError(f"unsupported currency {code!r}; supported: {', '.join(sorted(CURRENCIES))}")
    return code
