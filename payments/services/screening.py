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

from collections.abc import Iterable
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


class Expr(str):
    """A SQL expression standing for a value in ``facts_statement`` (the async
    path's lateral ``term.currency``, ``tok.id``), where a plain value is a parameter."""


def _value(value: object, params: list[object]) -> str:
    if isinstance(value, Expr):
        return str(value)
    params.append(value)
    return "%s"


def facts_statement(
    *, pan: str = "", pin: str = "", check: str = "", limit_kinds: list[str] | None = None,
    currency: object = "", token: object = None,
) -> tuple[str, list[object]] | None:
    """The one statement that reads what the rules need of the database: bans hit
    (card, BIN, PIN, check), the applicable limits, whether the token is held.

    Rows of (what, kind, amount); None when there is nothing to ask. Both
    database paths run it (the threaded one as is, the async one inside its
    facts statement, with ``Expr`` for values it reads in the same statement).
    """
    parts: list[str] = []
    params: list[object] = []
    if token is not None:
        parts.append(
            "SELECT 'held', '', CAST(NULL AS NUMERIC) WHERE EXISTS ("
            + SQL_TOKEN_HELD.replace("%s", _value(token, params)) + ")"
        )
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
        where = _value(currency, params)
        parts.append(
            f"SELECT 'limit', kind, max_amount FROM {LIMIT} "
            f"WHERE currency = {where} AND kind IN ({', '.join(['%s'] * len(limit_kinds))})"
        )
        params += list(limit_kinds)
    if not parts:
        return None
    return " UNION ALL ".join(parts), params


def facts_from_rows(rows: Iterable[tuple[str, str, object]], *, currency: str) -> RuleFacts:
    banned: set[str] = set()
    limits: dict[str, Decimal] = {}
    held = False
    for what, kind, amount in rows:
        if what == "held":
            held = True
        elif what == "ban":
            banned.add(kind)
        else:
            # SQLite hands numerics back as float or int: go through str.
            limits[kind] = in_currency(Decimal(str(amount)), currency)
    return RuleFacts(banned=frozenset(banned), limits=limits, token_held=held)


def rule_facts(
    *, pan: str = "", pin: str = "", check: str = "", limit_kinds: list[str] | None = None,
    currency: str = "", token_pk: int | None = None,
) -> RuleFacts:
    """Bans (card, BIN, PIN, check), the applicable limits and whether the token
    is held, in one round trip (Django's connection)."""
    statement = facts_statement(
        pan=pan, pin=pin, check=check, limit_kinds=limit_kinds, currency=currency, token=token_pk
    )
    if statement is None:
        return RuleFacts(banned=frozenset(), limits={}, token_held=False)
    with connection.cursor() as cursor:
        cursor.execute(*statement)
        return facts_from_rows(cursor.fetchall(), currency=currency)


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


@dataclass(frozen=True)
class CardDraft:
    """What the rules know of a card payment before the database's facts."""

    pan: str = field(repr=False)
    brand: str
    pin: str = field(repr=False)  # a well-formed PIN, or ""
    pin_error: bool
    limit_kinds: list[str]
    contactless: bool


def card_draft(
    *,
    card_number: object,
    policy: cards.PanPolicy,
    card_type: str = "",
    pin: object = None,
    require_pin: bool = False,
    contactless: bool = False,
) -> CardDraft:
    """The rules that need no database: number format and Luhn (104), network
    matches ``card_type`` (100); the PIN's format is noted, refused later (103)."""
    pan = cards.card_validate(card_number, policy)
    brand = cards.card_brand(pan)
    if card_type and not cards.network_matches(card_type, pan):
        raise InvalidRequest(f"card_type {card_type} is not the card number's network ({cards.NETWORK[brand]})")
    pin_ok = ""
    pin_error = False
    if require_pin:
        try:
            pin_ok = cards.pin_validate(pin)
        except InvalidPin:
            pin_error = True
    return CardDraft(
        pan=pan, brand=brand, pin=pin_ok, pin_error=pin_error,
        limit_kinds=_limit_kinds(brand=brand, contactless=contactless), contactless=contactless,
    )


def card_decide(draft: CardDraft, facts: RuleFacts, *, amount: object, currency: str) -> ScreenedCard:
    """The rules on the database's facts, in the contract's order: token held
    (107) → ban (101) → PIN (103) → amount (109) → limit (106)."""
    if facts.token_held:
        raise TokenInvalid()
    if BanKind.CARD in facts.banned or BanKind.BIN in facts.banned:
        raise CardBanned()
    if draft.pin_error or BanKind.PIN in facts.banned:
        raise InvalidPin()
    value = parse_amount(amount, currency=currency)
    _enforce_limits(
        amount=value, limits=facts.limits, kinds=draft.limit_kinds, currency=currency, contactless=draft.contactless
    )
    return ScreenedCard(pan=draft.pan, facts=cards.card_facts(draft.pan), brand=draft.brand, amount=value)


def card_facts_wanted(draft: CardDraft) -> dict[str, object]:
    """``facts_statement``'s arguments for a card payment."""
    return {"pan": draft.pan, "pin": draft.pin, "limit_kinds": draft.limit_kinds}


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
        draft = card_draft(
            card_number=card_number, policy=policy, card_type=card_type, pin=pin, require_pin=require_pin,
            contactless=contactless,
        )
    except PaymentError:
        if token_pk is not None and token_held(token_pk):
            raise TokenInvalid() from None
        raise
    facts = rule_facts(**card_facts_wanted(draft), currency=currency, token_pk=token_pk)
    return card_decide(draft, facts, amount=amount, currency=currency)


def check_decide(check: str, facts: RuleFacts, *, amount: object, currency: str) -> tuple[str, Decimal]:
    """A check's rules on the database's facts: token held (107) → ban (102) → amount (109)."""
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

