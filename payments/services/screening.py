"""Screening: the gateway's own rules of a card or check payment, before the acquirer.

Number format and Luhn (104/105) → network matches the claimed card type
(100) → ban (101/102) → PIN (103) → amount (109) → limit (106), in the
terminal contract's order; every door screens through here, so a payment
obeys the same rules whatever door it used. Bans, limits and whether the
token is held are read in one round trip (``rule_facts``).

The brand is always derived from the number (``cards.card_brand``), never
taken from the caller: limits apply to the real brand, a card of no known
network to the OTHER limit, and a payment with no limit row for its
currency is refused (LimitsNotConfigured), never unlimited.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection

from .. import cards
from ..errors import (
    CardBanned,
    CheckBanned,
    InvalidAmount,
    InvalidPin,
    InvalidRequest,
    LimitExceeded,
    LimitsNotConfigured,
    PaymentError,
    TokenInvalid,
)
from ..money import exponent, in_currency, parse_amount
from ..states import BanKind, LimitKind
from .sql import BAN, LIMIT
from .tokens import SQL_TOKEN_HELD, token_held

@dataclass(frozen=True)
class ScreenedCard:
    pan: str = field(repr=False)  # never in a repr (tracebacks, debug logs)
    facts: cards.CardFacts
    brand: str
    amount: Decimal


@dataclass(frozen=True)
class RuleFacts:
    """What the database says about one payment: bans hit, limits, token held."""

    banned: frozenset[str]
    limits: dict[str, Decimal]
    token_held: bool


def rule_facts(
    *, pan: str = "", pin: str = "", check: str = "", limit_kinds: list[str] | None = None,
    currency: str = "", token_pk: int | None = None,
) -> RuleFacts:
    """Bans (card, BIN, PIN, check), the applicable limits and whether the token
    is held, in one round trip."""
    parts: list[str] = []
    params: list[object] = []
    if token_pk is not None:
        parts.append(f"SELECT 'held', '', CAST(NULL AS NUMERIC) WHERE EXISTS ({SQL_TOKEN_HELD})")
        params.append(token_pk)
    conditions: list[str] = []
    if pan:
        prefixes = cards.bin_prefixes(pan)
        conditions.append("(kind = %s AND key = %s)")
        params += [BanKind.CARD.value, cards.card_facts(pan).fingerprint]
        conditions.append(f"(kind = %s AND key IN ({', '.join(['%s'] * len(prefixes))}))")
        params += [BanKind.BIN.value, *prefixes]
    if pin:
        conditions.append("(kind = %s AND key = %s)")
        params += [BanKind.PIN.value, cards.pin_fingerprint(pin)]
    if check:
        conditions.append("(kind = %s AND key = %s)")
        params += [BanKind.CHECK.value, check]
    if conditions:
        parts.append(f"SELECT 'ban', kind, CAST(NULL AS NUMERIC) FROM {BAN} WHERE {' OR '.join(conditions)}")
    if limit_kinds:
        parts.append(
            f"SELECT 'limit', kind, max_amount FROM {LIMIT} "
            f"WHERE currency = %s AND kind IN ({', '.join(['%s'] * len(limit_kinds))})"
        )
        params += [currency, *limit_kinds]
    banned: set[str] = set()
    limits: dict[str, Decimal] = {}
    held = False
    if parts:
        with connection.cursor() as cursor:
            cursor.execute(" UNION ALL ".join(parts), params)
            for what, kind, amount in cursor.fetchall():
                if what == "held":
                    held = True
                elif what == "ban":
                    banned.add(kind)
                else:
                    # SQLite hands numerics back as float or int: go through str.
                    limits[kind] = in_currency(Decimal(str(amount)), currency)
    return RuleFacts(banned=frozenset(banned), limits=limits, token_held=held)


def _limit_kinds(*, brand: str, contactless: bool) -> list[str]:
    """The limits a payment must be within: its brand's (OTHER for no known
    network), and the contactless one for a contactless payment."""
    kinds = [LimitKind.CONTACTLESS.value] if contactless else []
    kinds.append(str(brand) if brand else LimitKind.OTHER.value)
    return kinds


def _enforce_limits(
    *, amount: Decimal, limits: dict[str, Decimal], kinds: list[str], currency: str, contactless: bool
) -> None:
    """Every applicable limit must be configured; then the contactless limit,
    then the brand's: a payment must be within both."""
    missing = [kind for kind in kinds if kind not in limits]
    if missing:
        raise LimitsNotConfigured(currency, missing)
    places = exponent(currency)
    if contactless and amount > limits[LimitKind.CONTACTLESS]:
        raise LimitExceeded(limits[LimitKind.CONTACTLESS], contactless=True, places=places)
    brand_limit = limits[kinds[-1]]
    if amount > brand_limit:
        raise LimitExceeded(brand_limit, contactless=False, places=places)


def screen_card(
    *,
    card_number: object,
    policy: cards.PanPolicy,
    amount: object,
    currency: str,
    card_type: str = "",
    pin: object = None,
    require_pin: bool = False,
    contactless: bool = False,
    token_pk: int | None = None,
) -> ScreenedCard:
    """Number format and Luhn (104) → network matches ``card_type`` (100) → ban
    (101) → PIN (103) → amount (109) → limit (106).

    ``card_type`` is what a terminal says the card is (VISA, MASTER,
    ELECTRON); it must be of the number's network, and is otherwise not used:
    the brand is the number's. With ``token_pk``, a token found held by a
    payment is 107 before all of them.
    """
    try:
        pan = cards.card_validate(card_number, policy)
        brand = cards.card_brand(pan)
        if card_type and not cards.network_matches(card_type, pan):
            raise InvalidRequest(
                f"card_type {card_type} is not the card number's network ({cards.NETWORK[brand]})"
            )
    except PaymentError:
        if token_pk is not None and token_held(token_pk):
            raise TokenInvalid() from None
        raise
    pin_ok = ""
    pin_error = False
    if require_pin:
        try:
            pin_ok = cards.pin_validate(pin)
        except InvalidPin:
            pin_error = True
    kinds = _limit_kinds(brand=brand, contactless=contactless)
    facts = rule_facts(pan=pan, pin=pin_ok, limit_kinds=kinds, currency=currency, token_pk=token_pk)
    if facts.token_held:
        raise TokenInvalid()
    if BanKind.CARD in facts.banned or BanKind.BIN in facts.banned:
        raise CardBanned()
    if pin_error or BanKind.PIN in facts.banned:
        raise InvalidPin()
    value = parse_amount(amount, currency=currency)
    _enforce_limits(amount=value, limits=facts.limits, kinds=kinds, currency=currency, contactless=contactless)
    return ScreenedCard(pan=pan, facts=cards.card_facts(pan), brand=brand, amount=value)


def screen_check(
    *, check_number: object, amount: object, currency: str, token_pk: int | None = None
) -> tuple[str, Decimal]:
    """Number format (105) → ban (102) → amount (109); a held token is 107 first."""
    try:
        check = cards.check_validate(check_number)
    except PaymentError:
        if token_pk is not None and token_held(token_pk):
            raise TokenInvalid() from None
        raise
    facts = rule_facts(check=check, token_pk=token_pk)
    if facts.token_held:
        raise TokenInvalid()
    if BanKind.CHECK in facts.banned:
        raise CheckBanned()
    return check, parse_amount(amount, currency=currency)


def amount_or_none(raw: object, *, currency: str) -> Decimal | None:
    try:
        return parse_amount(raw, currency=currency)
    except InvalidAmount:
        return None

