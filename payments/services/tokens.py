"""Terminal tokens: issue one, use one try of it, and say which rule refused it.

A token is issued to one terminal for one payment type and allows
``try_count`` attempts until it expires; it is held (used) while a
transaction in a holding status points at it (``payments.states``).
"""
from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from terminals.models import Terminal

from ..errors import InvalidRequest, NotAuthorized, PaymentError, TokenInvalid, TokenTriesExhausted
from ..models import Token
from ..states import PaymentMethod
from .sql import HOLDING, MERCHANT, TERMINAL, TOKEN, TXN, adapt_time

_ACTIVE_TERMINAL = (
    f"SELECT {{col}} FROM {TERMINAL} t JOIN {MERCHANT} m ON m.id = t.merchant_id "
    f"WHERE t.id = {{terminal}} AND t.is_active AND m.is_active"
)

# A token for an active terminal of an active merchant, or no row.
_SQL_TOKEN_ISSUE = (
    f"INSERT INTO {TOKEN} (value, terminal_id, payment_type, try_count, tries_used, created_at, expires_at) "
    f"{_ACTIVE_TERMINAL.format(col='%s, t.id, %s, %s, 0, %s, %s', terminal='%s')} RETURNING id"
)

# Use one try of a token, if every token rule allows it: this terminal's, of
# this payment type, not expired, tries left, not held by a payment, terminal
# and merchant active. The UPDATE takes the row lock that makes two payments
# with one token take turns. No row: _token_refusal says which rule failed.
SQL_TOKEN_CLAIM = (
    f"UPDATE {TOKEN} SET tries_used = tries_used + 1 "
    f"WHERE value = %s AND terminal_id = %s AND payment_type = %s AND expires_at > %s "
    f"AND (try_count = -1 OR tries_used < try_count) "
    f"AND NOT EXISTS (SELECT 1 FROM {TXN} x WHERE x.token_id = {TOKEN}.id AND x.status IN ({HOLDING})) "
    f"AND EXISTS ({_ACTIVE_TERMINAL.format(col='1', terminal=TOKEN + '.terminal_id')}) "
    f"RETURNING id, ({_ACTIVE_TERMINAL.format(col='m.id', terminal=TOKEN + '.terminal_id')}), "
    f"({_ACTIVE_TERMINAL.format(col='m.currency', terminal=TOKEN + '.terminal_id')})"
)

# Is the token held by a payment? Asked again once the lock is held: in
# PostgreSQL's READ COMMITTED, the claim's NOT EXISTS may have been evaluated
# on the snapshot taken before waiting for the lock, missing the payment of the
# transaction that held it.
SQL_TOKEN_HELD = f"SELECT 1 FROM {TXN} WHERE token_id = %s AND status IN ({HOLDING})"


def token_draft(*, terminal_pk: int, payment_type: PaymentMethod, try_count: int = 3) -> Token:
    """A new token's values (not saved), or 100 for a bad ``try_count``."""
    if not isinstance(try_count, int) or isinstance(try_count, bool) or try_count < -1:
        raise InvalidRequest("try_count must be an integer >= -1")
    now = timezone.now()
    return Token(
        value=secrets.token_hex(32),
        terminal_id=terminal_pk,
        payment_type=payment_type,
        try_count=try_count,
        tries_used=0,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.TERMINAL_TOKEN_TTL_SECONDS),
    )


def token_issue_statement(token: Token, adapt: Callable[[datetime], object] = lambda moment: moment) -> tuple[str, list[object]]:
    """The INSERT of ``token`` for an active terminal of an active merchant (no row: 110)."""
    return _SQL_TOKEN_ISSUE, [
        token.value, str(token.payment_type), token.try_count, adapt(token.created_at), adapt(token.expires_at),
        token.terminal_id,
    ]


def token_issue(*, terminal_pk: int, payment_type: PaymentMethod, try_count: int = 3) -> Token:
    """A fresh single-payment token for an active terminal (one INSERT)."""
    token = token_draft(terminal_pk=terminal_pk, payment_type=payment_type, try_count=try_count)
    with connection.cursor() as cursor:
        cursor.execute(*token_issue_statement(token, adapt_time))
        row = cursor.fetchone()
    if row is None:
        raise NotAuthorized("Terminal not authorized")
    token.pk = row[0]
    return token


@dataclass(frozen=True)
class ClaimedToken:
    pk: int
    merchant_pk: int
    currency: str


def token_claim_try(*, terminal_pk: int, value: object, method: PaymentMethod) -> ClaimedToken:
    """Use one try of the token, or raise 107/108 (or 110). Inside a transaction."""
    row = None
    if isinstance(value, str) and len(value) == 64:
        with connection.cursor() as cursor:
            cursor.execute(SQL_TOKEN_CLAIM, [value, terminal_pk, str(method), adapt_time(timezone.now())])
            row = cursor.fetchone()
    if row is None:
        raise _token_refusal(terminal_pk=terminal_pk, value=value, method=method)
    return ClaimedToken(pk=row[0], merchant_pk=row[1], currency=row[2])


@dataclass(frozen=True)
class TokenFacts:
    """A token row as the refusal rules read it."""

    payment_type: str
    expires_at: datetime
    tries_used: int
    try_count: int
    held: bool


def token_refusal(*, terminal_active: bool, token: TokenFacts | None, method: PaymentMethod, now: datetime) -> PaymentError | None:
    """Which token rule refuses a payment, in the contract's order (110, 107, 108),
    or None when every rule allows it. Both database paths decide here."""
    if not terminal_active:
        return NotAuthorized("Terminal not authorized")
    if token is None or token.expires_at <= now or token.payment_type != method or token.held:
        return TokenInvalid()
    if token.try_count != -1 and token.tries_used >= token.try_count:
        return TokenTriesExhausted()
    return None


def _token_refusal(*, terminal_pk: int, value: object, method: PaymentMethod) -> PaymentError:
    """Why the claim found no row (the threaded path reads the facts with the ORM)."""
    active = Terminal.objects.filter(pk=terminal_pk, is_active=True, merchant__is_active=True).exists()
    token = Token.objects.filter(value=value, terminal_id=terminal_pk).first() if isinstance(value, str) else None
    facts = None if token is None else TokenFacts(
        payment_type=token.payment_type, expires_at=token.expires_at, tries_used=token.tries_used,
        try_count=token.try_count, held=token_held(token.pk),
    )
    # Every rule allowing it now: it changed between the claim and this look; treat as used.
    return token_refusal(terminal_active=active, token=facts, method=method, now=timezone.now()) or TokenInvalid()


def token_held(token_pk: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(SQL_TOKEN_HELD, [token_pk])
        return cursor.fetchone() is not None

