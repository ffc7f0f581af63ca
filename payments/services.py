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
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError
from django.db import transaction as db_transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from terminals.models import Terminal

from . import cards
from .acquirers.base import AcquirerResult, AuthorizationRequest, Outcome, get_acquirer
from .errors import (
    AcquirerFailure,
    AmountExceedsRemaining,
    CardBanned,
    CheckBanned,
    Declined,
    InvalidAmount,
    InvalidPin,
    InvalidRequest,
    InvalidState,
    LimitExceeded,
    NotAuthorized,
    PaymentError,
    TokenInvalid,
    TokenTriesExhausted,
    TransactionNotFound,
)
from .models import Ban, CardLimit, Refund, Token, Transaction
from .money import parse_amount
from .states import (
    REFUNDABLE_STATUSES,
    TOKEN_HOLDING_STATUSES,
    BanKind,
    Door,
    LimitKind,
    PaymentMethod,
    RefundStatus,
    TransactionStatus,
)

logger = logging.getLogger(__name__)


# --- Tokens ---------------------------------------------------------------------


def token_issue(*, terminal_pk: int, payment_type: PaymentMethod, try_count: int = 3) -> Token:
    """A fresh single-payment token for an active terminal."""
    if not isinstance(try_count, int) or isinstance(try_count, bool) or try_count < -1:
        raise InvalidRequest("try_count must be an integer >= -1")
    if not Terminal.objects.filter(pk=terminal_pk, is_active=True, merchant__is_active=True).exists():
        raise NotAuthorized("Terminal not authorized")
    now = timezone.now()
    return Token.objects.create(
        value=secrets.token_hex(32),
        terminal_id=terminal_pk,
        payment_type=payment_type,
        try_count=try_count,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.TERMINAL_TOKEN_TTL_SECONDS),
    )


def _token_lock_for_attempt(*, terminal_pk: int, value: object, method: PaymentMethod) -> Token:
    """Lock the token row and use one of its tries, or raise 107/108 (or 110).

    Must run inside a transaction: the row lock is what makes two payments
    racing on one token take turns (the partial unique index on transactions
    is the backstop).
    """
    token = None
    if isinstance(value, str) and len(value) == 64:
        token = (
            Token.objects.select_for_update(of=("self",))
            .select_related("terminal__merchant")
            .annotate(
                held=Exists(
                    Transaction.objects.filter(token=OuterRef("pk"), status__in=TOKEN_HOLDING_STATUSES)
                )
            )
            .filter(value=value)
            .first()
        )
    if token is None or token.terminal_id != terminal_pk:
        if not Terminal.objects.filter(pk=terminal_pk, is_active=True, merchant__is_active=True).exists():
            raise NotAuthorized("Terminal not authorized")
        raise TokenInvalid()
    if not (token.terminal.is_active and token.terminal.merchant.is_active):
        raise NotAuthorized("Terminal not authorized")
    if token.expires_at <= timezone.now() or token.payment_type != method or token.held:
        raise TokenInvalid()
    if not token.unlimited and token.tries_used >= token.try_count:
        raise TokenTriesExhausted()
    token.tries_used += 1
    token.save(update_fields=["tries_used"])
    return token


# --- Screening: the gateway's own rules, before the acquirer ------------------------


@dataclass(frozen=True)
class ScreenedCard:
    pan: str
    facts: cards.CardFacts
    brand: str
    amount: Decimal


def _banned_kinds(*, pan: str = "", pin: str = "", check: str = "") -> set[str]:
    """Which ban lists the card (or its BIN), PIN or check is on: one query."""
    condition = Q()
    if pan:
        condition |= Q(kind=BanKind.CARD, key=cards.card_facts(pan).fingerprint)
        condition |= Q(kind=BanKind.BIN, key__in=cards.bin_prefixes(pan))
    if pin:
        condition |= Q(kind=BanKind.PIN, key=cards.pin_fingerprint(pin))
    if check:
        condition |= Q(kind=BanKind.CHECK, key=check)
    if not condition:
        return set()
    return set(Ban.objects.filter(condition).values_list("kind", flat=True))


def _enforce_limits(*, amount: Decimal, currency: str, brand: str, contactless: bool) -> None:
    kinds = [LimitKind.CONTACTLESS] if contactless else []
    if brand:
        kinds.append(brand)
    if not kinds:
        return
    limits = dict(CardLimit.objects.filter(kind__in=kinds, currency=currency).values_list("kind", "max_amount"))
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
) -> ScreenedCard:
    """Number format (104) → ban (101) → PIN (103) → amount (109) → limit (106)."""
    pan = cards.card_validate(card_number, policy)
    pin_ok = ""
    pin_error = False
    if require_pin:
        try:
            pin_ok = cards.pin_validate(pin)
        except InvalidPin:
            pin_error = True
    banned = _banned_kinds(pan=pan, pin=pin_ok)
    if BanKind.CARD in banned or BanKind.BIN in banned:
        raise CardBanned()
    if pin_error or BanKind.PIN in banned:
        raise InvalidPin()
    value = parse_amount(amount)
    brand = brand or cards.card_brand(pan)
    _enforce_limits(amount=value, currency=currency, brand=brand, contactless=contactless)
    return ScreenedCard(pan=pan, facts=cards.card_facts(pan), brand=brand, amount=value)


def _screen_check(*, check_number: object, amount: object) -> tuple[str, Decimal]:
    """Number format (105) → ban (102) → amount (109)."""
    check = cards.check_validate(check_number)
    if BanKind.CHECK in _banned_kinds(check=check):
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
    with db_transaction.atomic():
        locked = _token_lock_for_attempt(terminal_pk=terminal_pk, value=token, method=method)
        merchant = locked.terminal.merchant
        txn = Transaction(
            merchant=merchant,
            terminal_id=terminal_pk,
            token=locked,
            door=Door.TERMINAL,
            method=method,
            currency=merchant.currency,
        )
        try:
            if method == PaymentMethod.CHECK:
                txn.check_number, txn.amount = _screen_check(check_number=check_number, amount=amount)
            else:
                screened = _screen_card(
                    card_number=card_number,
                    policy=cards.TERMINAL_PAN,
                    amount=amount,
                    currency=merchant.currency,
                    brand=card_type,
                    pin=pin,
                    require_pin=method == PaymentMethod.CARD,
                    contactless=method == PaymentMethod.CONTACTLESS,
                )
                pan = screened.pan
                _fill_card(txn, screened)
                txn.amount = screened.amount
            txn.status = TransactionStatus.PROCESSING
            txn.save()
        except PaymentError as exc:
            failure = exc
            _record_declined(txn, exc, amount=amount, card_number=card_number)
    if failure is not None:
        raise failure
    return _authorize_with_acquirer(txn, pan=pan, capture=True)


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
    from merchants.models import Merchant

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
    txn.save()
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
    txn.save()
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
    assert not db_transaction.get_connection().in_atomic_block, "no acquirer call inside a transaction"
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
    Transaction.objects.filter(pk=txn.pk, status=TransactionStatus.PROCESSING).update(**changes)
    for field, value in changes.items():
        setattr(txn, field, value)
    if result.outcome is Outcome.DECLINED:
        raise Declined(result.reason or "declined", decline_code=result.decline_code, transaction_id=txn.pk)
    if result.outcome is Outcome.ERROR:
        raise AcquirerFailure(result.reason or "technical error", transaction_id=txn.pk)
    logger.info(
        "payment approved transaction=%s door=%s amount=%s %s card=%s",
        txn.pk, txn.door, txn.amount, txn.currency, txn.masked_card or txn.check_number,
    )
    return txn


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
    if result.approved:
        Transaction.objects.filter(pk=txn.pk).update(
            status=TransactionStatus.CAPTURED, captured_amount=value, updated_at=timezone.now()
        )
    else:
        Transaction.objects.filter(pk=txn.pk).update(status=TransactionStatus.AUTHORIZED, updated_at=timezone.now())
    txn.refresh_from_db()
    if not result.approved:
        raise AcquirerFailure(result.reason or "capture failed", transaction_id=txn.pk)
    return txn


def payment_void(*, transaction_id: int, merchant_pk: int) -> Transaction:
    """Cancel an authorization that was not captured."""
    txn = _claim(transaction_id=transaction_id, merchant_pk=merchant_pk, expected=TransactionStatus.AUTHORIZED)
    result = _call_acquirer(get_acquirer().void, reference=txn.acquirer_reference)
    status = TransactionStatus.VOIDED if result.approved else TransactionStatus.AUTHORIZED
    Transaction.objects.filter(pk=txn.pk).update(status=status, updated_at=timezone.now())
    txn.refresh_from_db()
    if not result.approved:
        raise AcquirerFailure(result.reason or "void failed", transaction_id=txn.pk)
    return txn


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
    return refund


def refund_execute(*, refund_id: int) -> Refund:
    """Carry out an accepted refund with the acquirer; safe to call twice."""
    refund = Refund.objects.select_related("transaction").get(pk=refund_id)
    if refund.status != RefundStatus.PENDING:
        return refund
    txn = refund.transaction
    result = _call_acquirer(
        get_acquirer().refund,
        reference=txn.acquirer_reference, amount=refund.amount, currency=txn.currency, refund_id=refund.pk,
    )
    with db_transaction.atomic():
        txn = Transaction.objects.select_for_update().get(pk=txn.pk)
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if refund.status != RefundStatus.PENDING:
            return refund
        refund.completed_at = timezone.now()
        refund.acquirer_reference = result.reference[:64]
        if result.approved:
            refund.status = RefundStatus.SUCCEEDED
        else:
            # Give the reserved amount back: it was never returned to the card.
            refund.status = RefundStatus.FAILED
            refund.failure_message = (result.reason or "refund failed")[:255]
            txn.refunded_amount -= refund.amount
            txn.status = (
                TransactionStatus.CAPTURED if txn.refunded_amount == 0 else TransactionStatus.PARTIALLY_REFUNDED
            )
            txn.save(update_fields=["refunded_amount", "status", "updated_at"])
        refund.save()
    return refund


# --- Ban list ------------------------------------------------------------------------


class BanValueError(ValueError):
    """A ban value that is not what its kind requires."""


def _ban_fields(kind: str, value: str) -> dict[str, str]:
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
    fields = _ban_fields(kind, value)
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
            fields = _ban_fields(kind, value)
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
