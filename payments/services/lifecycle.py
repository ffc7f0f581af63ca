"""Payments that do not happen in one request: opened without card data,
continued later, suspended, resumed, cancelled.

IOTP's Payment Handler starts a payment before the consumer's card data has
arrived (StartPaymentPaymentHandler answering ``Continue``) and may suspend
it; the card data comes with a later call (ContinueProcess). The ledger row
exists from the start, so the back office and every inquiry see the payment
and its process state all along:

    payment_open ──► awaiting_card ◄──► suspended        (payment_suspend / payment_resume)
                          │  │
                          │  └──► voided (payment_cancel_open) / error (payment_fail)
                          └──► processing ──► captured / declined / error   (payment_continue)

Every move is one conditional UPDATE on the expected status, so of two
concurrent continuations (or a continuation and a cancel) exactly one wins;
a move that announces something (cancelled, failed) writes its event in the
same database transaction. A continuation then follows the same steps as
``payment_authorize`` (screening, the acquirer outside any transaction, its
answer and event recorded by one statement): it uses that module's own
steps, so a change to them applies to both.
"""
from __future__ import annotations

import logging

from django.db import transaction as db_transaction
from django.utils import timezone

from merchants.models import Merchant

from .. import cards, outbox
from ..errors import InvalidCardExpiry, InvalidState, NotAuthorized, PaymentError, TransactionNotFound
from ..models import Transaction
from ..money import parse_amount
from ..states import AcquirerOperation, Door, EventType, PaymentMethod, TransactionStatus
from .payments import (
    _fill_card,
    _record_declined,
    _step,
    payment_authorization_record,
    payment_authorization_send,
    payment_currency,
)
from .screening import screen_card

logger = logging.getLogger(__name__)

OPEN_STATUSES = (TransactionStatus.AWAITING_CARD, TransactionStatus.SUSPENDED)


def payment_open(
    *, merchant_pk: int, door: Door, amount: object, currency: str | None = None, merchant_reference: str = ""
) -> Transaction:
    """A card payment started without card data: ``awaiting_card`` (InProgress).

    Nothing is screened or charged yet: the card's rules apply when
    ``payment_continue`` brings it. May run inside the caller's transaction
    (IOTP records its session in the same commit).
    """
    merchant = Merchant.objects.filter(pk=merchant_pk, is_active=True).first()
    if merchant is None:
        raise NotAuthorized("Merchant not active")
    currency = payment_currency(merchant, currency)
    txn = Transaction(
        merchant=merchant,
        door=door,
        method=PaymentMethod.CARD,
        status=TransactionStatus.AWAITING_CARD,
        amount=parse_amount(amount, currency=currency),
        currency=currency,
        merchant_reference=merchant_reference,
    )
    txn.save()
    return txn


def _move(
    *, transaction_id: int, merchant_pk: int, sources: tuple[str, ...], target: str,
    event: EventType | None = None, **changes: object,
) -> Transaction:
    """Move a transaction from one of ``sources`` to ``target``, or say why not."""
    with db_transaction.atomic():
        moved = Transaction.objects.filter(pk=transaction_id, merchant_id=merchant_pk, status__in=sources).update(
            status=target, updated_at=timezone.now(), **changes
        )
        txn = Transaction.objects.filter(pk=transaction_id, merchant_id=merchant_pk).first()
        if txn is None:
            raise TransactionNotFound()
        if not moved:
            raise InvalidState(f"Transaction is {txn.get_status_display().lower()}")
        if event is not None:
            outbox.event_emit(type=event, transaction=txn)
    return txn


def payment_suspend(*, transaction_id: int, merchant_pk: int) -> Transaction:
    """Suspend a payment waiting for its card data (it can be resumed)."""
    return _move(
        transaction_id=transaction_id, merchant_pk=merchant_pk,
        sources=(TransactionStatus.AWAITING_CARD,), target=TransactionStatus.SUSPENDED,
    )


def payment_resume(*, transaction_id: int, merchant_pk: int) -> Transaction:
    """Resume a suspended payment: it waits for its card data again."""
    return _move(
        transaction_id=transaction_id, merchant_pk=merchant_pk,
        sources=(TransactionStatus.SUSPENDED,), target=TransactionStatus.AWAITING_CARD,
    )


def payment_cancel_open(*, transaction_id: int, merchant_pk: int, reason: str = "cancelled") -> Transaction:
    """Cancel a payment that has no card data yet (Failed; ``payment.cancelled``).

    Nothing was authorized, so there is nothing to void with the acquirer.
    """
    return _move(
        transaction_id=transaction_id, merchant_pk=merchant_pk, sources=OPEN_STATUSES,
        target=TransactionStatus.VOIDED, event=EventType.PAYMENT_CANCELLED,
        failure_code="cancelled", failure_message=reason[:255],
    )


def payment_fail(*, transaction_id: int, merchant_pk: int, reason: str) -> Transaction:
    """End a payment that has no card data yet with a technical error
    (ProcessError; ``payment.failed``)."""
    return _move(
        transaction_id=transaction_id, merchant_pk=merchant_pk, sources=OPEN_STATUSES,
        target=TransactionStatus.ERROR, event=EventType.PAYMENT_FAILED,
        failure_code="process_error", failure_message=reason[:255],
    )


def _expiry_check(expiry: str) -> None:
    """``YYYYMM`` (or empty: the door had none) and not past."""
    if not expiry:
        return
    if len(expiry) != 6 or not expiry.isdigit():
        raise InvalidCardExpiry("Invalid card expiry: expected YYYYMM")
    cards.expiry_validate(expiry[4:], expiry[:4], today=timezone.localdate())


def payment_continue(
    *, transaction_id: int, merchant_pk: int, card_number: object, policy: cards.PanPolicy,
    expiry: str = "", cvv: str = "",
) -> Transaction:
    """The card data of a payment opened without it: screen, authorize and capture.

    Raises InvalidState when the payment is not waiting for card data (a
    concurrent continuation won, or it was suspended, cancelled, finished);
    otherwise as ``payment_authorize``: Declined, AcquirerFailure or the rule
    that refused, each recorded on this transaction (``transaction_id``).
    """
    txn = _move(
        transaction_id=transaction_id, merchant_pk=merchant_pk,
        sources=(TransactionStatus.AWAITING_CARD,), target=TransactionStatus.PROCESSING,
        operation=AcquirerOperation.AUTHORIZE,
    )
    try:
        _expiry_check(expiry)
        screened = screen_card(card_number=card_number, policy=policy, amount=txn.amount, currency=txn.currency)
    except PaymentError as exc:
        # The row is ours (processing): record the refusal on it, with its event.
        txn.operation = ""  # nothing is in flight with the acquirer
        _record_declined(txn, exc, amount=txn.amount, card_number=card_number)
        raise
    _fill_card(txn, screened)
    # The acquirer's answer records only the outcome: the card facts first.
    Transaction.objects.filter(pk=txn.pk, status=TransactionStatus.PROCESSING).update(
        card_fingerprint=txn.card_fingerprint, card_bin=txn.card_bin, card_last4=txn.card_last4,
        card_brand=txn.card_brand,
    )
    step = _step(txn, pan=screened.pan, capture=True, expiry=expiry, cvv=cvv)
    return payment_authorization_record(step, payment_authorization_send(step))
