"""Refunds: accepted at once with their money reserved, carried out by a Celery task."""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError
from django.db import transaction as db_transaction
from django.utils import timezone

from .. import outbox
from ..acquirers.base import AcquirerError, AcquirerResult, Outcome, get_acquirer
from ..errors import AmountExceedsRemaining, InvalidRequest, InvalidState, TransactionNotFound
from ..models import Refund, Transaction
from ..money import exponent, parse_amount
from ..states import REFUNDABLE_STATUSES, EventType, RefundStatus, TransactionStatus
from .acquiring import acquirer_run

logger = logging.getLogger(__name__)


def refund_request(
    *, transaction_id: int, merchant_pk: int, amount: object = None, reference: str = ""
) -> Refund:
    """Accept a refund (all that remains, or ``amount``) and reserve its money.

    The transaction row is locked, so concurrent refunds take turns and
    together never exceed the captured amount (the check constraint
    ``txn_refunded_within_captured`` is the backstop). ``reference`` is the
    merchant's id of the refund: a repeat on the same transaction returns
    the first refund and refunds nothing more (with another amount it is
    InvalidRequest); concurrent repeats take turns on the lock, and the
    unique constraint ``refund_reference_unique`` is the backstop.
    """
    try:
        return _refund_accept(transaction_id=transaction_id, merchant_pk=merchant_pk, amount=amount, reference=reference)
    except IntegrityError as exc:
        # A concurrent first request with this reference committed between our
        # look-up and our insert (a database without row locks): it is the refund.
        if not reference or "reference" not in str(exc):
            raise
        return _refund_accept(transaction_id=transaction_id, merchant_pk=merchant_pk, amount=amount, reference=reference)


def _refund_accept(*, transaction_id: int, merchant_pk: int, amount: object, reference: str) -> Refund:
    with db_transaction.atomic():
        txn = Transaction.objects.select_for_update().filter(pk=transaction_id, merchant_id=merchant_pk).first()
        if txn is None:
            raise TransactionNotFound()
        if reference:
            earlier = Refund.objects.filter(transaction=txn, reference=reference).first()
            if earlier is not None:
                if amount is not None and parse_amount(amount, currency=txn.currency) != earlier.amount:
                    raise InvalidRequest(f"refund {reference!r} was already requested with another amount")
                return earlier
        if txn.status not in REFUNDABLE_STATUSES:
            raise InvalidState(f"Transaction is {txn.get_status_display().lower()}")
        remaining = txn.refundable_amount
        value = remaining if amount is None else parse_amount(amount, currency=txn.currency)
        if value <= 0 or value > remaining:
            raise AmountExceedsRemaining(remaining, places=exponent(txn.currency))
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
    each try is logged as an error for staff. Anything that is not the
    connector's own failure (a bug, a Celery time limit) propagates: the
    refund keeps its lease until it runs out, then the sweep queues it again.
    """
    now = timezone.now()
    lease = outbox.lease_claim(Refund.objects.filter(status=RefundStatus.PENDING), pk=refund_id, now=now)
    refund = Refund.objects.select_related("transaction").filter(pk=refund_id).first()
    if refund is None or lease is None:
        return refund
    txn = refund.transaction
    try:
        result = acquirer_run(
            get_acquirer().refund,
            reference=txn.acquirer_reference, amount=refund.amount, currency=txn.currency, refund_id=refund.pk,
        )
    except AcquirerError as exc:  # a timeout proves nothing: asked again later
        result = AcquirerResult(Outcome.UNKNOWN, reason=str(exc) or type(exc).__name__)
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


