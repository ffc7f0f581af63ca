"""Card and check numbers: validation, brand, masks, fingerprints.

Which card numbers a door accepts is a rule of the payment, so each door's
policy is named here (``PanPolicy``) rather than written in the door.

What a mask may show depends on the number's length (PCI DSS 3.4.1: at most
the BIN and the last four digits, and only where that leaves enough unknown):

- 15 to 19 digits: the first six and the last four;
- 10 to 14 digits: the last four only. The first six and last four of a
  12-digit number leave two digits unknown, and the Luhn check digit gives
  one of them back: ten guesses would rebuild the card;
- fewer than 10: nothing (no door accepts such a number).

What is stored of a card (``card_facts``) is exactly what its mask shows.
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


# terminal.md: "card_number 16 digits" with a valid Luhn check digit (104 otherwise;
# the banned 0000000000000000 is Luhn-valid, so it still reaches the ban list).
TERMINAL_PAN = PanPolicy(16, 16, luhn=True)
# esipay.md: 10-19 digits (merchants in the wild send 10- and 12-digit numbers), Luhn-valid.
ESIPAY_PAN = PanPolicy(10, 19, luhn=True)
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


# Lengths from which a mask may show the first six digits, and the last four.
FIRST_SIX_FROM = 15
LAST_FOUR_FROM = 10


def mask_pan(pan: str) -> str:
    """The number with only what PCI DSS lets people see (see the module's docstring)."""
    shown_head = 6 if len(pan) >= FIRST_SIX_FROM else 0
    shown_tail = 4 if len(pan) >= LAST_FOUR_FROM else 0
    return pan[:shown_head] + "*" * (len(pan) - shown_head - shown_tail) + pan[len(pan) - shown_tail:]


def mask_untrusted(raw: object) -> str:
    """A mask of whatever a client sent as a card number, safe for messages and logs.

    The same rule as ``mask_pan`` on the value's length; only digits survive
    at the ends (anything else is ``*``), and the echo is at most 32 characters.
    """
    text = raw if isinstance(raw, str) else str(raw)
    shown_head = 6 if len(text) >= FIRST_SIX_FROM else 0
    shown_tail = 4 if len(text) >= LAST_FOUR_FROM else 0
    # The tail is the value's own last 4 (not those of a truncated copy, which
    # would be digits from the middle); only the echo's length is capped.
    head = "".join(c if c in _ASCII_DIGITS else "*" for c in text[:shown_head])
    tail = "".join(c if c in _ASCII_DIGITS else "*" for c in text[len(text) - shown_tail:])
    return head + "*" * (min(len(text), 32) - shown_head - shown_tail) + tail


def card_validate(raw: object, policy: PanPolicy) -> str:
    """The card number as digits, or InvalidCardNumber with a masked echo."""
    if not isinstance(raw, str) or not _DIGITS.match(raw):
        raise InvalidCardNumber(mask_untrusted(raw))
    if not policy.min_length <= len(raw) <= policy.max_length or (policy.luhn and not luhn_valid(raw)):
        raise InvalidCardNumber(mask_untrusted(raw))
    return raw


def card_facts(pan: str) -> CardFacts:
    """What may be kept of a card: exactly the digits ``mask_pan`` shows, so that
    a short number (esipay takes 10 digits) is never stored whole, or within
    a Luhn guess of whole, as BIN + last four."""
    return CardFacts(
        fingerprint=keys.fingerprint("card", pan),
        bin=pan[:6] if len(pan) >= FIRST_SIX_FROM else "",
        last4=pan[-4:] if len(pan) >= LAST_FOUR_FROM else "",
        masked=mask_pan(pan),
    )


def bin_prefixes(pan: str) -> list[str]:
    """The 6-, 7- and 8-digit prefixes a BIN ban may name."""
    return [pan[:n] for n in (6, 7, 8) if len(pan) >= n]


@dataclass(frozen=True)
class BinRange:
    """Card numbers of one brand: leading digits from ``low`` to ``high`` (as many
    digits as ``low`` has), and the lengths the brand issues."""

    brand: CardBrand
    low: str
    high: str
    lengths: frozenset[int]

    def matches(self, pan: str) -> bool:
        prefix = pan[: len(self.low)]
        return len(pan) in self.lengths and len(prefix) == len(self.low) and self.low <= prefix <= self.high


def _ranges(brand: CardBrand, lengths: set[int], *spans: str) -> list[BinRange]:
    result = []
    for span in spans:
        low, _, high = span.partition("-")
        result.append(BinRange(brand, low, high or low, frozenset(lengths)))
    return result


# The networks the gateway knows, most specific first (Visa Electron is a
# range inside Visa's 4). Lengths as the networks issue them; a number of
# another length or prefix is of no known network (card_brand gives ""): it is
# accepted where the door's policy accepts it, under the OTHER card limit.
BIN_RANGES: tuple[BinRange, ...] = (
    *_ranges(CardBrand.ELECTRON, {16}, "4026", "417500", "4405", "4508", "4844", "4913", "4917"),
    *_ranges(CardBrand.VISA, {13, 16, 19}, "4"),
    *_ranges(CardBrand.MASTER, {16}, "51-55", "2221-2720"),
    *_ranges(CardBrand.AMEX, {15}, "34", "37"),
)

# The network of each brand: a terminal's card_type names a network, and
# VISA and ELECTRON are both Visa's (terminal.md).
NETWORK: dict[str, str] = {
    CardBrand.VISA: "Visa",
    CardBrand.ELECTRON: "Visa",
    CardBrand.MASTER: "Mastercard",
    CardBrand.AMEX: "American Express",
}


def card_brand(pan: str) -> str:
    """The brand a card number belongs to by its BIN range and length, '' when none we know."""
    for bin_range in BIN_RANGES:
        if bin_range.matches(pan):
            return bin_range.brand
    return ""


def network_matches(claimed: str, pan: str) -> bool:
    """Whether a claimed card type is of the number's network. A number of no
    known network contradicts no claim (terminal.md: 0000000000000000)."""
    brand = card_brand(pan)
    return not brand or NETWORK.get(claimed) == NETWORK[brand]


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
