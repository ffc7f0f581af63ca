"""Cancellations: void a payment that is not settled yet.

``payment_void`` cancels an authorization waiting for its capture. A card-
on-file charge is authorized and captured at once, and a capture is still
only a request until the acquirer settles it: until the day's settlement
batch (the sandbox, like most acquirers, settles at the end of the UTC day
of the capture) it can be voided, and the cardholder never sees it. After
that, or once a refund was asked, only a refund gives money back.
"""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.utils import timezone

from ..acquirers.base import get_acquirer
from ..db import require_no_transaction
from ..errors import AcquirerFailure, InvalidState, TransactionNotFound
from ..models import Transaction
from ..states import AcquirerOperation, EventType, TransactionStatus
from .acquiring import acquirer_answer
from .payments import _record_operation, payment_void


class AlreadyCancelled(InvalidState):
    code = "already_cancelled"
    default_message = "The payment was already cancelled"


class AlreadySettled(InvalidState):
    """The capture was settled (or partly refunded): refund it instead."""

    code = "already_settled"


def _settled(txn: Transaction, now: datetime) -> bool:
    """Settled at the end of the UTC day of the capture (the last change of a
    captured payment with nothing refunded is its capture)."""
    return txn.updated_at.astimezone(UTC).date() < now.astimezone(UTC).date()


def payment_cancel(*, transaction_id: int, merchant_pk: int) -> Transaction:
    """Cancel a payment: void its authorization, or its capture if not settled yet.

    The claim is a conditional UPDATE (captured, nothing refunded → processing
    a void), so a concurrent refund or a second cancel finds it taken; the
    acquirer is called outside any transaction, on its pool with a deadline;
    the void and ``payment.cancelled`` commit together. A void the acquirer
    refuses leaves the payment captured; one whose answer is lost stays
    processing for the resolver (PaymentOutcomeUnknown), which asks the
    acquirer whether the capture still stands.
    """
    txn = Transaction.objects.filter(pk=transaction_id, merchant_id=merchant_pk).first()
    if txn is None:
        raise TransactionNotFound()
    if txn.status == TransactionStatus.AUTHORIZED:
        return payment_void(transaction_id=transaction_id, merchant_pk=merchant_pk)
    if txn.status == TransactionStatus.VOIDED:
        raise AlreadyCancelled()
    if txn.status in (TransactionStatus.PARTIALLY_REFUNDED, TransactionStatus.REFUNDED):
        raise AlreadySettled("The payment was refunded: it can no longer be cancelled")
    if txn.status != TransactionStatus.CAPTURED:
        raise InvalidState(f"Transaction is {txn.get_status_display().lower()}: nothing to cancel")
    now = timezone.now()
    if _settled(txn, now):
        raise AlreadySettled(
            f"The payment was settled on {txn.updated_at.astimezone(UTC):%Y-%m-%d}: refund it instead"
        )
    claimed = Transaction.objects.filter(
        pk=txn.pk, status=TransactionStatus.CAPTURED, refunded_amount=Decimal("0")
    ).update(status=TransactionStatus.PROCESSING, operation=AcquirerOperation.VOID, updated_at=now)
    if not claimed:
        txn.refresh_from_db()
        if txn.status == TransactionStatus.VOIDED:
            raise AlreadyCancelled()
        raise InvalidState(f"Transaction is {txn.get_status_display().lower()}: it cannot be cancelled now")
    txn.refresh_from_db()
    require_no_transaction("acquirer call")
    result = acquirer_answer(get_acquirer().void, reference=txn.acquirer_reference, transaction_id=txn.pk)
    txn = _record_operation(
        txn, result, approved={"status": TransactionStatus.VOIDED, "captured_amount": Decimal("0")},
        refused={"status": TransactionStatus.CAPTURED}, event=EventType.PAYMENT_CANCELLED,
    )
    if not result.approved:
        raise AcquirerFailure(result.reason or "void failed", transaction_id=txn.pk)
    return txn
