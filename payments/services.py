"""The payment core: every rule of a payment, in one place.

Doors (terminal listener, esipay, secure API, IOTP, SET) parse and
authenticate, then call these keyword-only functions and map the
``payments.errors`` they raise to their own codes. Nothing here knows a
wire format.

Shape of a payment (``payment_sale_with_token``, ``payment_authorize``):

1. One database transaction: lock what the payment depends on (the token),
   apply the gateway's rules (format, bans, PIN, amount, limits), and
   record the attempt: a ``processing`` transaction, or a ``declined`` one
   with the reason. A failed attempt still commits (it used a token try).
2. Outside any transaction: ask the acquirer (it may do network I/O).
3. One conditional UPDATE records the acquirer's answer.

The order of checks is the terminal contract's (token → tries → number
format → ban → PIN → amount → limit → acquirer); other doors go through the
same screening so a payment obeys the same rules whatever door it used.
"""
from __future__ import annotations

import csv
import enum
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection
from django.db import transaction as db_transaction
from django.utils import timezone

from merchants.models import Merchant
from terminals.models import Terminal

from . import cards
from . import outbox
from .db import in_transaction
from .acquirers.base import AcquirerResult, AuthorizationRequest, Outcome, get_acquirer
from .errors import (
    AcquirerFailure,
    AmountExceedsRemaining,
    CardBanned,
    ConfirmationFailed,
    CheckBanned,
    Declined,
    InvalidAmount,
    InvalidPin,
    InvalidRequest,
    InvalidState,
    LimitExceeded,
    NotAuthorized,
    PaymentError,
    PaymentInProgress,
    TokenInvalid,
    TokenTriesExhausted,
    TransactionNotFound,
)
from .models import Ban, CardLimit, Refund, Token, Transaction
from .money import parse_amount
from .states import (
    LIVE_STATUSES,
    REFUNDABLE_STATUSES,
    TOKEN_HOLDING_STATUSES,
    BanKind,
    Door,
    EventType,
    LimitKind,
    PaymentMethod,
    RefundStatus,
    TransactionStatus,
)

logger = logging.getLogger(__name__)


# --- Tokens ---------------------------------------------------------------------


# Terminals are the hottest path of the product: its statements are written in
# SQL here, next to the rules they encode, because compiling them with the ORM
# cost ~85% of the listener's CPU (bench/payment_cost.py). Values are always
# parameters; table names come from the models. Valid on PostgreSQL and SQLite.
_TOKEN = Token._meta.db_table
_TXN = Transaction._meta.db_table
_BAN = Ban._meta.db_table
_LIMIT = CardLimit._meta.db_table
_TERMINAL = Terminal._meta.db_table
_MERCHANT = Merchant._meta.db_table
_ACTIVE_TERMINAL = (
    f"SELECT {{col}} FROM {_TERMINAL} t JOIN {_MERCHANT} m ON m.id = t.merchant_id "
    f"WHERE t.id = {{terminal}} AND t.is_active AND m.is_active"
)
_HOLDING = ", ".join(f"'{status}'" for status in TOKEN_HOLDING_STATUSES)

# A token for an active terminal of an active merchant, or no row.
_SQL_TOKEN_ISSUE = (
    f"INSERT INTO {_TOKEN} (value, terminal_id, payment_type, try_count, tries_used, created_at, expires_at) "
    f"{_ACTIVE_TERMINAL.format(col='%s, t.id, %s, %s, 0, %s, %s', terminal='%s')} RETURNING id"
)

# Use one try of a token, if every token rule allows it: this terminal's, of
# this payment type, not expired, tries left, not held by a payment, terminal
# and merchant active. The UPDATE takes the row lock that makes two payments
# with one token take turns. No row: _token_refusal says which rule failed.
_SQL_TOKEN_CLAIM = (
    f"UPDATE {_TOKEN} SET tries_used = tries_used + 1 "
    f"WHERE value = %s AND terminal_id = %s AND payment_type = %s AND expires_at > %s "
    f"AND (try_count = -1 OR tries_used < try_count) "
    f"AND NOT EXISTS (SELECT 1 FROM {_TXN} x WHERE x.token_id = {_TOKEN}.id AND x.status IN ({_HOLDING})) "
    f"AND EXISTS ({_ACTIVE_TERMINAL.format(col='1', terminal=_TOKEN + '.terminal_id')}) "
    f"RETURNING id, ({_ACTIVE_TERMINAL.format(col='m.id', terminal=_TOKEN + '.terminal_id')}), "
    f"({_ACTIVE_TERMINAL.format(col='m.currency', terminal=_TOKEN + '.terminal_id')})"
)

# Is the token held by a payment? Asked again once the lock is held: in
# PostgreSQL's READ COMMITTED, the claim's NOT EXISTS may have been evaluated
# on the snapshot taken before waiting for the lock, missing the payment of the
# transaction that held it.
_SQL_TOKEN_HELD = f"SELECT 1 FROM {_TXN} WHERE token_id = %s AND status IN ({_HOLDING})"


def _adapt_time(moment: datetime) -> object:
    return connection.ops.adapt_datetimefield_value(moment)


def token_issue(*, terminal_pk: int, payment_type: PaymentMethod, try_count: int = 3) -> Token:
    """A fresh single-payment token for an active terminal (one INSERT)."""
    if not isinstance(try_count, int) or isinstance(try_count, bool) or try_count < -1:
        raise InvalidRequest("try_count must be an integer >= -1")
    now = timezone.now()
    token = Token(
        value=secrets.token_hex(32),
        terminal_id=terminal_pk,
        payment_type=payment_type,
        try_count=try_count,
        tries_used=0,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.TERMINAL_TOKEN_TTL_SECONDS),
    )
    with connection.cursor() as cursor:
        cursor.execute(
            _SQL_TOKEN_ISSUE,
            [token.value, str(payment_type), try_count, _adapt_time(now), _adapt_time(token.expires_at), terminal_pk],
        )
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


def _token_claim_try(*, terminal_pk: int, value: object, method: PaymentMethod) -> ClaimedToken:
    """Use one try of the token, or raise 107/108 (or 110). Inside a transaction."""
    row = None
    if isinstance(value, str) and len(value) == 64:
        with connection.cursor() as cursor:
            cursor.execute(_SQL_TOKEN_CLAIM, [value, terminal_pk, str(method), _adapt_time(timezone.now())])
            row = cursor.fetchone()
    if row is None:
        raise _token_refusal(terminal_pk=terminal_pk, value=value, method=method)
    return ClaimedToken(pk=row[0], merchant_pk=row[1], currency=row[2])


def _token_refusal(*, terminal_pk: int, value: object, method: PaymentMethod) -> PaymentError:
    """Which token rule refused the claim, in the contract's order (110, 107, 108)."""
    if not Terminal.objects.filter(pk=terminal_pk, is_active=True, merchant__is_active=True).exists():
        return NotAuthorized("Terminal not authorized")
    token = Token.objects.filter(value=value, terminal_id=terminal_pk).first() if isinstance(value, str) else None
    if token is None or token.expires_at <= timezone.now() or token.payment_type != method or _token_held(token.pk):
        return TokenInvalid()
    if not token.unlimited and token.tries_used >= token.try_count:
        return TokenTriesExhausted()
    return TokenInvalid()  # changed between the claim and this look: treat as used


def _token_held(token_pk: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(_SQL_TOKEN_HELD, [token_pk])
        return cursor.fetchone() is not None


# --- Screening: the gateway's own rules, before the acquirer ------------------------


@dataclass(frozen=True)
class ScreenedCard:
    pan: str
    facts: cards.CardFacts
    brand: str
    amount: Decimal


@dataclass(frozen=True)
class RuleFacts:
    """What the database says about one payment: bans hit, limits, token held."""

    banned: frozenset[str]
    limits: dict[str, Decimal]
    token_held: bool


def _rule_facts(
    *, pan: str = "", pin: str = "", check: str = "", limit_kinds: list[str] | None = None,
    currency: str = "", token_pk: int | None = None,
) -> RuleFacts:
    """Bans (card, BIN, PIN, check), the applicable limits and whether the token
    is held, in one round trip."""
    parts: list[str] = []
    params: list[object] = []
    if token_pk is not None:
        parts.append(f"SELECT 'held', '', CAST(NULL AS NUMERIC) WHERE EXISTS ({_SQL_TOKEN_HELD})")
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
        parts.append(f"SELECT 'ban', kind, CAST(NULL AS NUMERIC) FROM {_BAN} WHERE {' OR '.join(conditions)}")
    if limit_kinds:
        parts.append(
            f"SELECT 'limit', kind, max_amount FROM {_LIMIT} "
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
                    limits[kind] = Decimal(str(amount)).quantize(Decimal("0.01"))
    return RuleFacts(banned=frozenset(banned), limits=limits, token_held=held)


def _limit_kinds(*, brand: str, contactless: bool) -> list[str]:
    kinds = [LimitKind.CONTACTLESS.value] if contactless else []
    if brand:
        kinds.append(str(brand))
    return kinds


def _enforce_limits(*, amount: Decimal, limits: dict[str, Decimal], brand: str, contactless: bool) -> None:
    """The contactless limit, then the brand's: a payment must be within both."""
    contactless_limit = limits.get(LimitKind.CONTACTLESS) if contactless else None
    if contactless_limit is not None and amount > contactless_limit:
        raise LimitExceeded(contactless_limit, contactless=True)
    brand_limit = limits.get(brand)
    if brand_limit is not None and amount > brand_limit:
        raise LimitExceeded(brand_limit, contactless=False)


def _screen_card(
    *,
    card_number: object,
    policy: cards.PanPolicy,
    amount: object,
    currency: str,
    brand: str = "",
    pin: object = None,
    require_pin: bool = False,
    contactless: bool = False,
    token_pk: int | None = None,
) -> ScreenedCard:
    """Number format (104) → ban (101) → PIN (103) → amount (109) → limit (106).

    With ``token_pk``, a token found held by a payment is 107 before all of them.
    """
    try:
        pan = cards.card_validate(card_number, policy)
    except PaymentError:
        if token_pk is not None and _token_held(token_pk):
            raise TokenInvalid() from None
        raise
    pin_ok = ""
    pin_error = False
    if require_pin:
        try:
            pin_ok = cards.pin_validate(pin)
        except InvalidPin:
            pin_error = True
    brand = brand or cards.card_brand(pan)
    facts = _rule_facts(
        pan=pan, pin=pin_ok, limit_kinds=_limit_kinds(brand=brand, contactless=contactless),
        currency=currency, token_pk=token_pk,
    )
    if facts.token_held:
        raise TokenInvalid()
    if BanKind.CARD in facts.banned or BanKind.BIN in facts.banned:
        raise CardBanned()
    if pin_error or BanKind.PIN in facts.banned:
        raise InvalidPin()
    value = parse_amount(amount)
    _enforce_limits(amount=value, limits=facts.limits, brand=brand, contactless=contactless)
    return ScreenedCard(pan=pan, facts=cards.card_facts(pan), brand=brand, amount=value)


def _screen_check(*, check_number: object, amount: object, token_pk: int | None = None) -> tuple[str, Decimal]:
    """Number format (105) → ban (102) → amount (109); a held token is 107 first."""
    try:
        check = cards.check_validate(check_number)
    except PaymentError:
        if token_pk is not None and _token_held(token_pk):
            raise TokenInvalid() from None
        raise
    facts = _rule_facts(check=check, token_pk=token_pk)
    if facts.token_held:
        raise TokenInvalid()
    if BanKind.CHECK in facts.banned:
        raise CheckBanned()
    return check, parse_amount(amount)


def _amount_or_none(raw: object) -> Decimal | None:
    try:
        return parse_amount(raw)
    except InvalidAmount:
        return None


# --- Payments ----------------------------------------------------------------------


def payment_sale_with_token(
    *,
    terminal_pk: int,
    token: object,
    method: PaymentMethod,
    amount: object,
    card_type: str = "",
    card_number: object = None,
    pin: object = None,
    check_number: object = None,
) -> Transaction:
    """A terminal's sale (authorize and capture at once), paid with a token.

    Returns the captured transaction, or raises the first failed rule. An
    attempt that fails after the token checks is committed as a declined
    transaction (when its amount is valid) and uses one try of the token.
    """
    failure: PaymentError | None = None
    pan = ""
    try:
        with db_transaction.atomic():
            claimed = _token_claim_try(terminal_pk=terminal_pk, value=token, method=method)
            txn = Transaction(
                merchant_id=claimed.merchant_pk,
                terminal_id=terminal_pk,
                token_id=claimed.pk,
                door=Door.TERMINAL,
                method=method,
                currency=claimed.currency,
            )
            try:
                if method == PaymentMethod.CHECK:
                    txn.check_number, txn.amount = _screen_check(
                        check_number=check_number, amount=amount, token_pk=claimed.pk
                    )
                else:
                    screened = _screen_card(
                        card_number=card_number,
                        policy=cards.TERMINAL_PAN,
                        amount=amount,
                        currency=claimed.currency,
                        brand=card_type,
                        pin=pin,
                        require_pin=method == PaymentMethod.CARD,
                        contactless=method == PaymentMethod.CONTACTLESS,
                        token_pk=claimed.pk,
                    )
                    pan = screened.pan
                    _fill_card(txn, screened)
                    txn.amount = screened.amount
                txn.status = TransactionStatus.PROCESSING
                _txn_insert(txn)
            except TokenInvalid:
                raise  # not an attempt: rolls back, the try is not used
            except PaymentError as exc:
                failure = exc
                _record_declined(txn, exc, amount=amount, card_number=card_number)
    except IntegrityError as exc:
        # The partial unique index one_payment_per_token caught a race the
        # lock did not (it never should): the token is used.
        if "one_payment_per_token" in str(exc) or "token_id" in str(exc):
            raise TokenInvalid() from None
        raise
    if failure is not None:
        raise failure
    return _authorize_with_acquirer(txn, pan=pan, capture=True)


_TXN_FIELDS = [f for f in Transaction._meta.concrete_fields if not f.primary_key]
_SQL_TXN_INSERT = (
    f"INSERT INTO {_TXN} ({', '.join(f.column for f in _TXN_FIELDS)}) "
    f"VALUES ({', '.join(['%s'] * len(_TXN_FIELDS))}) RETURNING id"
)


def _plain(value: object) -> object:
    """Choices members as their values: drivers may dump an Enum by its name."""
    return value.value if isinstance(value, enum.Enum) else value


def _txn_insert(txn: Transaction) -> None:
    """INSERT a transaction with one precompiled statement (the ORM's own
    field preparation, without its query compiler)."""
    values = [_plain(f.get_db_prep_save(f.pre_save(txn, True), connection)) for f in _TXN_FIELDS]
    with connection.cursor() as cursor:
        cursor.execute(_SQL_TXN_INSERT, values)
        txn.pk = cursor.fetchone()[0]
    txn._state.adding = False


def payment_authorize(
    *,
    merchant_pk: int,
    door: Door,
    card_number: object,
    policy: cards.PanPolicy,
    amount: object,
    capture: bool,
    currency: str | None = None,
    expiry: str = "",
    cvv: str = "",
    merchant_reference: str = "",
) -> Transaction:
    """A card-not-present authorization (captured at once when ``capture``)."""
    merchant = Merchant.objects.filter(pk=merchant_pk, is_active=True).first()
    if merchant is None:
        raise NotAuthorized("Merchant not active")
    currency = currency or merchant.currency
    txn = Transaction(
        merchant=merchant,
        door=door,
        method=PaymentMethod.CARD,
        currency=currency,
        merchant_reference=merchant_reference,
    )
    try:
        screened = _screen_card(card_number=card_number, policy=policy, amount=amount, currency=currency)
    except PaymentError as exc:
        _record_declined(txn, exc, amount=amount, card_number=card_number)
        raise
    _fill_card(txn, screened)
    txn.amount = screened.amount
    txn.status = TransactionStatus.PROCESSING
    _txn_insert(txn)
    return _authorize_with_acquirer(txn, pan=screened.pan, capture=capture, expiry=expiry, cvv=cvv)


def _fill_card(txn: Transaction, screened: ScreenedCard) -> None:
    txn.card_fingerprint = screened.facts.fingerprint
    txn.card_bin = screened.facts.bin
    txn.card_last4 = screened.facts.last4
    txn.card_brand = screened.brand


def _record_declined(txn: Transaction, exc: PaymentError, *, amount: object, card_number: object) -> None:
    """Keep a declined attempt for staff, when there is an amount to show."""
    value = _amount_or_none(amount)
    if value is None:
        return
    txn.amount = value
    if isinstance(card_number, str) and not txn.card_fingerprint:
        try:
            pan = cards.card_validate(card_number, cards.PanPolicy(10, 19, luhn=False))
        except PaymentError:
            pass
        else:
            facts = cards.card_facts(pan)
            txn.card_fingerprint, txn.card_bin, txn.card_last4 = facts.fingerprint, facts.bin, facts.last4
    txn.status = TransactionStatus.DECLINED
    txn.failure_code = exc.code
    txn.failure_message = exc.message[:255]
    with db_transaction.atomic():
        txn.save()
        outbox.event_emit(type=EventType.PAYMENT_FAILED, transaction=txn)
    exc.transaction_id = txn.pk


def _call_acquirer(call, *args, **kwargs) -> AcquirerResult:  # type: ignore[no-untyped-def]
    """An acquirer call; an exception becomes a technical failure, never a crash."""
    try:
        return call(*args, **kwargs)
    except Exception:  # the connector's failure must not lose the transaction
        logger.exception("acquirer call %s failed", getattr(call, "__name__", call))
        return AcquirerResult(Outcome.ERROR, decline_code="acquirer_unavailable", reason="acquirer unavailable")


def _authorize_with_acquirer(
    txn: Transaction, *, pan: str, capture: bool, expiry: str = "", cvv: str = ""
) -> Transaction:
    """Step 2 and 3 of a payment: the acquirer's answer, recorded by one UPDATE."""
    assert not in_transaction(), "no acquirer call inside a transaction"
    result = _call_acquirer(
        get_acquirer().authorize,
        AuthorizationRequest(
            transaction_id=txn.pk,
            amount=txn.amount,
            currency=txn.currency,
            capture=capture,
            pan=pan,
            check_number=txn.check_number,
            expiry=expiry,
            cvv=cvv,
        ),
    )
    now = timezone.now()
    changes: dict[str, object] = {"acquirer_reference": result.reference[:64], "updated_at": now}
    if result.approved:
        changes.update(
            status=TransactionStatus.CAPTURED if capture else TransactionStatus.AUTHORIZED,
            authorized_amount=txn.amount,
            captured_amount=txn.amount if capture else Decimal("0"),
            authorization_code=result.authorization_code[:12],
        )
    else:
        changes.update(
            status=TransactionStatus.DECLINED if result.outcome is Outcome.DECLINED else TransactionStatus.ERROR,
            failure_code=result.decline_code[:32],
            failure_message=result.reason[:255],
        )
    for field, value in changes.items():
        setattr(txn, field, value)
    # The answer and its event commit together (the outbox). An authorization
    # waiting for its capture announces nothing yet: the capture will.
    event = None
    if not result.approved:
        event = EventType.PAYMENT_FAILED
    elif capture:
        event = EventType.PAYMENT_SUCCEEDED
    if event is None:
        _txn_record_outcome(txn.pk, changes)
    else:
        outbox.event_emit_with_change(**_txn_outcome_statement(txn.pk, changes), type=event, transaction=txn)
    if result.outcome is Outcome.DECLINED:
        raise Declined(result.reason or "declined", decline_code=result.decline_code, transaction_id=txn.pk)
    if result.outcome is Outcome.ERROR:
        raise AcquirerFailure(result.reason or "technical error", transaction_id=txn.pk)
    logger.info(
        "payment approved transaction=%s door=%s amount=%s %s card=%s",
        txn.pk, txn.door, txn.amount, txn.currency, txn.masked_card or txn.check_number,
    )
    return txn


def _txn_outcome_statement(pk: int, changes: dict[str, object]) -> dict[str, object]:
    """The acquirer's answer on a processing transaction: one UPDATE, precompiled
    (the ORM's own field preparation, without its query compiler)."""
    fields = [Transaction._meta.get_field(name) for name in changes]
    sql = (
        f"UPDATE {_TXN} SET {', '.join(f'{f.column} = %s' for f in fields)} "
        f"WHERE id = %s AND status = %s"
    )
    values = [_plain(f.get_db_prep_save(changes[f.name], connection)) for f in fields]
    return {"statement": sql, "params": [*values, pk, TransactionStatus.PROCESSING.value]}


def _txn_record_outcome(pk: int, changes: dict[str, object]) -> None:
    update = _txn_outcome_statement(pk, changes)
    with connection.cursor() as cursor:
        cursor.execute(update["statement"], update["params"])


def _claim(*, transaction_id: int, merchant_pk: int, expected: str) -> Transaction:
    """Move a transaction from ``expected`` to processing, or explain why not.

    A conditional UPDATE is the claim: of two concurrent captures (or a
    capture and a void) exactly one matches a row.
    """
    claimed = Transaction.objects.filter(pk=transaction_id, merchant_id=merchant_pk, status=expected).update(
        status=TransactionStatus.PROCESSING, updated_at=timezone.now()
    )
    txn = Transaction.objects.filter(pk=transaction_id, merchant_id=merchant_pk).first()
    if txn is None:
        raise TransactionNotFound()
    if not claimed:
        raise InvalidState(f"Transaction is {txn.get_status_display().lower()}")
    return txn


def payment_capture(*, transaction_id: int, merchant_pk: int, amount: object = None) -> Transaction:
    """Capture an authorization, all of it or less, once."""
    txn = Transaction.objects.filter(pk=transaction_id, merchant_id=merchant_pk).first()
    if txn is None:
        raise TransactionNotFound()
    value = txn.authorized_amount if amount is None else parse_amount(amount)
    if txn.status == TransactionStatus.AUTHORIZED and value > txn.authorized_amount:
        raise AmountExceedsRemaining(txn.authorized_amount)
    txn = _claim(transaction_id=transaction_id, merchant_pk=merchant_pk, expected=TransactionStatus.AUTHORIZED)
    result = _call_acquirer(
        get_acquirer().capture, reference=txn.acquirer_reference, amount=value, currency=txn.currency
    )
    with db_transaction.atomic():
        if result.approved:
            Transaction.objects.filter(pk=txn.pk).update(
                status=TransactionStatus.CAPTURED, captured_amount=value, updated_at=timezone.now()
            )
        else:
            Transaction.objects.filter(pk=txn.pk).update(
                status=TransactionStatus.AUTHORIZED, updated_at=timezone.now()
            )
        txn.refresh_from_db()
        if result.approved:
            outbox.event_emit(type=EventType.PAYMENT_SUCCEEDED, transaction=txn)
    if not result.approved:
        raise AcquirerFailure(result.reason or "capture failed", transaction_id=txn.pk)
    return txn


def payment_void(*, transaction_id: int, merchant_pk: int) -> Transaction:
    """Cancel an authorization that was not captured."""
    txn = _claim(transaction_id=transaction_id, merchant_pk=merchant_pk, expected=TransactionStatus.AUTHORIZED)
    result = _call_acquirer(get_acquirer().void, reference=txn.acquirer_reference)
    status = TransactionStatus.VOIDED if result.approved else TransactionStatus.AUTHORIZED
    with db_transaction.atomic():
        Transaction.objects.filter(pk=txn.pk).update(status=status, updated_at=timezone.now())
        txn.refresh_from_db()
        if result.approved:
            outbox.event_emit(type=EventType.PAYMENT_CANCELLED, transaction=txn)
    if not result.approved:
        raise AcquirerFailure(result.reason or "void failed", transaction_id=txn.pk)
    return txn


# --- Payments confirmed by the merchant (esipay) ----------------------------------------


@dataclass(frozen=True)
class ConfirmedPayment:
    transaction: Transaction
    repeated: bool  # a repeat of an earlier approved request: nothing was charged


def payment_card_confirmed(
    *,
    merchant_pk: int,
    door: Door,
    reference: str,
    card_number: object,
    expiry_month: object,
    expiry_year: object,
    amount: object,
    policy: cards.PanPolicy,
    confirm: Callable[[Transaction], tuple[bool, str]],
) -> ConfirmedPayment:
    """A card-not-present sale that counts only once the merchant confirms it.

    esipay's rule: the payment is authorized, the merchant's return URL is
    called (``confirm``, outside any transaction), and only if it answers
    yes is the payment captured; otherwise the authorization is voided
    (``payment.cancelled``) and ConfirmationFailed raised.

    ``reference`` (esipay's cid) is idempotent: one live payment per
    merchant and reference (a partial unique index). A repeat of an approved
    payment with the same card and amount returns it (``repeated``) and
    charges nothing; with other data it is InvalidRequest. A repeat that
    arrives while the first is in flight waits for its outcome. After a
    declined or cancelled attempt the reference is free: a new attempt.
    """
    pan = cards.card_validate(card_number, policy)
    expiry = cards.expiry_validate(expiry_month, expiry_year, today=timezone.localdate())
    deadline = time.monotonic() + settings.ESIPAY_REPEAT_WAIT_SECONDS
    while True:
        earlier = _live_payment(merchant_pk=merchant_pk, reference=reference)
        if earlier is not None:
            settled = _repeat_of(earlier, pan=pan, amount=amount, deadline=deadline)
            if settled is not None:
                return ConfirmedPayment(settled, repeated=True)
            continue  # the earlier attempt was cancelled or declined meanwhile: a new attempt
        try:
            txn = payment_authorize(
                merchant_pk=merchant_pk, door=door, card_number=pan, policy=policy, amount=amount,
                capture=False, expiry=expiry, merchant_reference=reference,
            )
        except IntegrityError as exc:
            if "one_live_payment_per_reference" in str(exc) or "merchant_reference" in str(exc):
                continue  # a concurrent request with this reference won the race: wait for it
            raise
        break
    confirmed, reason = confirm(txn)
    if not confirmed:
        payment_void(transaction_id=txn.pk, merchant_pk=merchant_pk)
        logger.info("payment %s cancelled: the merchant did not confirm (%s)", txn.pk, reason)
        raise ConfirmationFailed(reason, transaction_id=txn.pk)
    try:
        return ConfirmedPayment(payment_capture(transaction_id=txn.pk, merchant_pk=merchant_pk), repeated=False)
    except AcquirerFailure:
        payment_void(transaction_id=txn.pk, merchant_pk=merchant_pk)
        raise


def payments_void_unconfirmed() -> int:
    """Void esipay authorizations whose confirmation was abandoned.

    A payment is captured only after its return URL said 200; if the request
    that was confirming it died (a restart, a killed worker), or its void
    failed, the authorization would hold the cardholder's money and the
    merchant's cid forever. Run by the periodic sweep; a void that fails is
    tried again at the next one. The deadline is far beyond what one
    request can take, so a live request is never overtaken.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.ESIPAY_UNCONFIRMED_VOID_SECONDS)
    abandoned = Transaction.objects.filter(
        door=Door.ESIPAY, status=TransactionStatus.AUTHORIZED, updated_at__lt=cutoff
    ).values_list("pk", "merchant_id")[:100]
    voided = 0
    for pk, merchant_pk in abandoned:
        try:
            payment_void(transaction_id=pk, merchant_pk=merchant_pk)
        except PaymentError as exc:
            logger.warning("unconfirmed esipay payment %s not voided yet: %s", pk, exc.message)
            continue
        voided += 1
        logger.info("esipay payment %s voided: its confirmation was abandoned", pk)
    return voided


def _live_payment(*, merchant_pk: int, reference: str) -> Transaction | None:
    return Transaction.objects.filter(
        merchant_id=merchant_pk, merchant_reference=reference, status__in=LIVE_STATUSES
    ).first()


def _repeat_of(earlier: Transaction, *, pan: str, amount: object, deadline: float) -> Transaction | None:
    """The earlier payment if this request repeats it, once it has settled.

    None when it ended cancelled or declined (the reference is free again);
    InvalidRequest when the card or amount differ; PaymentInProgress when it
    is still in flight at the deadline.
    """
    value = parse_amount(amount)
    if earlier.card_fingerprint != cards.card_facts(pan).fingerprint or earlier.amount != value:
        raise InvalidRequest(
            f"cid {earlier.merchant_reference!r} was already used for transaction {earlier.pk} "
            "with another card or amount"
        )
    while earlier.status in (TransactionStatus.PROCESSING, TransactionStatus.AUTHORIZED):
        if time.monotonic() >= deadline:
            raise PaymentInProgress(transaction_id=earlier.pk)
        time.sleep(0.1)
        earlier.refresh_from_db()
    return earlier if earlier.status in LIVE_STATUSES else None


# --- Refunds -------------------------------------------------------------------------


def refund_request(
    *, transaction_id: int, merchant_pk: int, amount: object = None, reference: str = ""
) -> Refund:
    """Accept a refund (all that remains, or ``amount``) and reserve its money.

    The transaction row is locked, so concurrent refunds take turns and
    together never exceed the captured amount (the check constraint
    ``txn_refunded_within_captured`` is the backstop). A repeat of a
    ``reference`` with the same amount returns the first refund.
    """
    with db_transaction.atomic():
        txn = Transaction.objects.select_for_update().filter(pk=transaction_id, merchant_id=merchant_pk).first()
        if txn is None:
            raise TransactionNotFound()
        if reference:
            earlier = Refund.objects.filter(transaction=txn, reference=reference).first()
            if earlier is not None:
                if amount is not None and parse_amount(amount) != earlier.amount:
                    raise InvalidRequest(f"refund {reference!r} was already requested with another amount")
                return earlier
        if txn.status not in REFUNDABLE_STATUSES:
            raise InvalidState(f"Transaction is {txn.get_status_display().lower()}")
        remaining = txn.refundable_amount
        value = remaining if amount is None else parse_amount(amount)
        if value <= 0 or value > remaining:
            raise AmountExceedsRemaining(remaining)
        refund = Refund.objects.create(transaction=txn, amount=value, reference=reference)
        txn.refunded_amount += value
        txn.status = (
            TransactionStatus.REFUNDED if txn.refunded_amount == txn.captured_amount
            else TransactionStatus.PARTIALLY_REFUNDED
        )
        txn.save(update_fields=["refunded_amount", "status", "updated_at"])
        # Carried out by a Celery task once this commits (payments.tasks.execute_refund);
        # if the broker is down, the outbox sweep queues it later.
        db_transaction.on_commit(lambda: outbox.enqueue_refunds([refund.pk]))
    return refund


def refund_execute(*, refund_id: int) -> Refund | None:
    """Carry out an accepted refund with the acquirer; safe to run twice, or to
    be killed half-way.

    The refund is claimed with a lease (one worker at a time); the acquirer
    is called outside any transaction with the refund's id as its
    idempotency key, so a retry after a crash never refunds twice. Its
    answer and the ``refund.*`` event commit together, if the lease is
    still this worker's. A refusal is final and gives the reserved amount
    back. A technical failure proves nothing (the bank may have paid): the
    refund stays pending, its amount reserved, and is asked again with
    backoff (at most every 6 h) until the acquirer answers; after 3 days
    each try is logged as an error for staff.
    """
    now = timezone.now()
    lease = outbox.lease_claim(Refund.objects.filter(status=RefundStatus.PENDING), pk=refund_id, now=now)
    refund = Refund.objects.select_related("transaction").filter(pk=refund_id).first()
    if refund is None or lease is None:
        return refund
    txn = refund.transaction
    assert not in_transaction(), "no acquirer call inside a transaction"
    result = _call_acquirer(
        get_acquirer().refund,
        reference=txn.acquirer_reference, amount=refund.amount, currency=txn.currency, refund_id=refund.pk,
    )
    retry_in: float | None = None
    with db_transaction.atomic():
        txn = Transaction.objects.select_for_update().get(pk=txn.pk)
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if refund.status != RefundStatus.PENDING or refund.lease_until != lease:
            logger.warning("refund %s: lease lost before recording the acquirer's answer, dropped", refund_id)
            return refund
        refund.acquirer_reference = result.reference[:64]
        refund.lease_until = None
        if result.approved:
            refund.status = RefundStatus.SUCCEEDED
            refund.completed_at = timezone.now()
        elif result.outcome is Outcome.DECLINED:
            # Give the reserved amount back: it was never returned to the card.
            refund.status = RefundStatus.FAILED
            refund.completed_at = timezone.now()
            refund.failure_message = (result.reason or "refund failed")[:255]
            txn.refunded_amount -= refund.amount
            txn.status = (
                TransactionStatus.CAPTURED if txn.refunded_amount == 0 else TransactionStatus.PARTIALLY_REFUNDED
            )
            txn.save(update_fields=["refunded_amount", "status", "updated_at"])
        else:
            retry_in = outbox.retry_delay(refund.attempts)
            refund.failure_message = (result.reason or "acquirer unavailable")[:255]
            refund.next_attempt_at = timezone.now() + timedelta(seconds=retry_in)
            if (now - refund.created_at).total_seconds() >= settings.WEBHOOK_MAX_AGE_SECONDS:
                logger.error(
                    "refund %s of transaction %s still unanswered by the acquirer after %d tries: %s",
                    refund.pk, txn.pk, refund.attempts, refund.failure_message,
                )
        refund.save()
        if refund.status == RefundStatus.SUCCEEDED:
            outbox.event_emit(type=EventType.REFUND_SUCCEEDED, transaction=txn, refund=refund)
        elif refund.status == RefundStatus.FAILED:
            outbox.event_emit(type=EventType.REFUND_FAILED, transaction=txn, refund=refund)
        elif (countdown := outbox.countdown_for(retry_in or 0)) is not None:
            db_transaction.on_commit(lambda: outbox.enqueue_refunds([refund_id], countdown=countdown))
    logger.info("refund %s of transaction %s: %s", refund.pk, txn.pk, refund.status)
    return refund


# --- Ban list ------------------------------------------------------------------------


class BanValueError(ValueError):
    """A ban value that is not what its kind requires."""


def ban_fields(kind: str, value: str) -> dict[str, str]:
    """What a ban of ``kind`` stores for ``value`` (its lookup key, and BIN and
    last four for a card), or BanValueError. Forms use it to validate input."""
    value = value.strip()
    if kind == BanKind.CARD:
        if not (value.isdigit() and 10 <= len(value) <= 19):
            raise BanValueError("a card number is 10 to 19 digits")
        facts = cards.card_facts(value)
        return {"key": facts.fingerprint, "card_bin": facts.bin, "card_last4": facts.last4}
    if kind == BanKind.BIN:
        if not (value.isdigit() and 6 <= len(value) <= 8):
            raise BanValueError("a BIN is 6 to 8 digits")
        return {"key": value}
    if kind == BanKind.CHECK:
        try:
            return {"key": cards.check_validate(value)}
        except PaymentError:
            raise BanValueError("a check number is 11 letters or digits") from None
    if kind == BanKind.PIN:
        try:
            return {"key": cards.pin_fingerprint(cards.pin_validate(value))}
        except PaymentError:
            raise BanValueError("a PIN is 4 digits") from None
    raise BanValueError(f"unknown kind {kind!r}: use card, bin, check or pin")


def ban_add(*, kind: str, value: str, reason: str = "", created_by_id: int | None = None) -> tuple[Ban, bool]:
    """Put a card, BIN, check or PIN on the ban list; (ban, created)."""
    fields = ban_fields(kind, value)
    try:
        with db_transaction.atomic():
            return Ban.objects.get_or_create(
                kind=kind, key=fields["key"],
                defaults={**fields, "reason": reason[:255], "created_by_id": created_by_id},
            )
    except IntegrityError:  # a concurrent insert of the same ban
        return Ban.objects.get(kind=kind, key=fields["key"]), False


@dataclass(frozen=True)
class BanImportResult:
    imported: int
    skipped: int


class BanImportError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}")


def bans_import(lines: Iterable[str], *, created_by_id: int | None = None) -> BanImportResult:
    """Import a CSV (``kind,value,reason``): the whole file, or nothing.

    Every row is validated before anything is written; a bad row raises
    BanImportError with its line number (the header is line 1).
    """
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header[:3]] != ["kind", "value", "reason"]:
        raise BanImportError(1, "the header must be kind,value,reason")
    rows: list[tuple[str, dict[str, str], str]] = []
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) < 2:
            raise BanImportError(line, "expected kind,value[,reason]")
        kind, value = row[0].strip().lower(), row[1]
        try:
            fields = ban_fields(kind, value)
        except BanValueError as exc:
            raise BanImportError(line, str(exc)) from None
        rows.append((kind, fields, row[2].strip() if len(row) > 2 else ""))
    imported = skipped = 0
    with db_transaction.atomic():
        for kind, fields, reason in rows:
            _, created = Ban.objects.get_or_create(
                kind=kind, key=fields["key"],
                defaults={**fields, "reason": reason[:255], "created_by_id": created_by_id},
            )
            imported += created
            skipped += not created
    return BanImportResult(imported=imported, skipped=skipped)
