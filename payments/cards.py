"""Card and check numbers: validation, brand, masks, fingerprints.

Which card numbers a door accepts is a rule of the payment, so each door's
policy is named here (``PanPolicy``) rather than written in the door.
"""
from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date

from . import keys
from .errors import CardExpired, InvalidCardExpiry, InvalidCardNumber, InvalidCheckNumber, InvalidPin
from .states import CardBrand

_DIGITS = re.compile(r"[0-9]+\Z")
_CHECK = re.compile(r"[A-Za-z0-9]{11}\Z")
_PIN = re.compile(r"[0-9]{4}\Z")
_ASCII_DIGITS = frozenset("0123456789")


@dataclass(frozen=True)
class PanPolicy:
    min_length: int
    max_length: int
    luhn: bool


# terminal.md: "card_number 16 digits" (0000000000000000 must reach the ban list, so no Luhn).
TERMINAL_PAN = PanPolicy(16, 16, luhn=False)
# esipay.md: 10-19 digits (merchants in the wild send 10- and 12-digit numbers).
ESIPAY_PAN = PanPolicy(10, 19, luhn=False)
# secure-api.md and SET: 12-19 digits with a valid Luhn check digit.
LUHN_PAN = PanPolicy(12, 19, luhn=True)


@dataclass(frozen=True)
class CardFacts:
    """What the gateway may keep of a card: never the number itself."""

    fingerprint: str
    bin: str
    last4: str
    masked: str


def luhn_valid(pan: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(pan)):
        digit = ord(char) - 48
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def mask_pan(pan: str) -> str:
    """First 6 and last 4 digits kept (PCI DSS 3.3), the rest ``*``."""
    if len(pan) <= 10:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


def mask_untrusted(raw: object) -> str:
    """A mask of whatever a client sent as a card number, safe for messages and logs.

    Only digits survive at the ends, at most 6 + 4 of them, and only when
    the value is long enough that this reveals no more than PCI allows.
    """
    text = raw if isinstance(raw, str) else str(raw)
    if len(text) <= 10:
        return "*" * len(text)
    # The tail is the value's own last 4 (not those of a truncated copy, which
    # would be digits from the middle); only the echo's length is capped.
    head = "".join(c if c in _ASCII_DIGITS else "*" for c in text[:6])
    tail = "".join(c if c in _ASCII_DIGITS else "*" for c in text[-4:])
    return head + "*" * (min(len(text), 32) - 10) + tail


def card_validate(raw: object, policy: PanPolicy) -> str:
    """The card number as digits, or InvalidCardNumber with a masked echo."""
    if not isinstance(raw, str) or not _DIGITS.match(raw):
        raise InvalidCardNumber(mask_untrusted(raw))
    if not policy.min_length <= len(raw) <= policy.max_length or (policy.luhn and not luhn_valid(raw)):
        raise InvalidCardNumber(mask_untrusted(raw))
    return raw


def card_facts(pan: str) -> CardFacts:
    """What may be kept of a card: exactly the digits ``mask_pan`` shows, so that
    a short number (esipay takes 10 digits) is never stored whole as BIN + last four."""
    masked = mask_pan(pan)
    shows_digits = masked[:1].isdigit()
    return CardFacts(
        fingerprint=keys.fingerprint("card", pan),
        bin=pan[:6] if shows_digits else "",
        last4=pan[-4:] if shows_digits else "",
        masked=masked,
    )


def bin_prefixes(pan: str) -> list[str]:
    """The 6-, 7- and 8-digit prefixes a BIN ban may name."""
    return [pan[:n] for n in (6, 7, 8) if len(pan) >= n]


_ELECTRON_PREFIXES = ("4026", "417500", "4405", "4508", "4844", "4913", "4917")


def card_brand(pan: str) -> str:
    """The brand a card number belongs to, '' when it is none we accept."""
    if pan.startswith(_ELECTRON_PREFIXES):
        return CardBrand.ELECTRON
    if pan.startswith("4"):
        return CardBrand.VISA
    prefix2, prefix4 = int(pan[:2]), int(pan[:4])
    if 51 <= prefix2 <= 55 or 2221 <= prefix4 <= 2720:
        return CardBrand.MASTER
    return ""


def check_validate(raw: object) -> str:
    if not isinstance(raw, str) or not _CHECK.match(raw):
        raise InvalidCheckNumber()
    return raw.upper()


def pin_validate(raw: object) -> str:
    if not isinstance(raw, str) or not _PIN.match(raw):
        raise InvalidPin()
    return raw


def pin_fingerprint(pin: str) -> str:
    return keys.fingerprint("pin", pin)


_MONTH = re.compile(r"[0-9]{1,2}\Z")
_YEAR = re.compile(r"[0-9]{4}\Z")


def expiry_validate(month: object, year: object, *, today: date) -> str:
    """A card's expiry as ``YYYYMM``: month 1–12, year 4 digits, and not past.

    A card is valid through the last day of its expiry month.
    """
    if not isinstance(month, str) or not _MONTH.match(month) or not 1 <= int(month) <= 12:
        raise InvalidCardExpiry("Invalid card expiry month: expected 1 to 12")
    if not isinstance(year, str) or not _YEAR.match(year):
        raise InvalidCardExpiry("Invalid card expiry year: expected 4 digits")
    y, m = int(year), int(month)
    if y < 1900:
        raise InvalidCardExpiry("Invalid card expiry year: expected 4 digits")
    if date(y, m, calendar.monthrange(y, m)[1]) < today:
        raise CardExpired(f"Card expired (end of {y:04d}-{m:02d})")
    return f"{y:04d}{m:02d}"
