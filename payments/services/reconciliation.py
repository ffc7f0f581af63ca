"""Reconciliation: payments left half-way are settled by periodic tasks.

- ``payments_resolve_unknown`` (Celery beat: ``payments.tasks.resolve_unknown_outcomes``)
  settles every transaction whose acquirer answer was lost: asks the acquirer
  what became of it (an inquiry by our transaction id) and records that,
  reversing an approval nobody was told about;
- ``payments_void_unconfirmed`` (``payments.tasks.sweep_outbox``) voids esipay
  authorizations whose confirmation was abandoned.

Both are safe to run twice and concurrently.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction as db_transaction
from django.db.models import Q
from django.utils import timezone

from .. import outbox
from ..acquirers.base import AcquirerError, AcquirerState, Inquiry, get_acquirer
from ..errors import PaymentError
from ..models import Transaction
from ..states import AcquirerOperation, Door, EventType, TransactionStatus
from .acquiring import acquirer_run
from .payments import payment_void

logger = logging.getLogger(__name__)

# failure_code of a resolved authorization (payments/models.py's overview).
NO_RECORD = "acquirer_no_record"
REVERSED = "reversed_unknown_outcome"


def _lost(now: datetime) -> Q:
    """Rows whose answer is lost: processing for longer than the resolver waits, and free."""
    cutoff = now - timedelta(seconds=settings.PAYMENTS_RESOLVE_AFTER_SECONDS)
    return Q(status=TransactionStatus.PROCESSING, updated_at__lt=cutoff) & (
        Q(resolver_lease_until__isnull=True) | Q(resolver_lease_until__lt=now)
    )


def payments_resolve_unknown(*, budget_seconds: float | None = None) -> dict[str, int]:
    """Settle transactions left ``processing`` longer than ``PAYMENTS_RESOLVE_AFTER_SECONDS``.

    Oldest first, at most ``PAYMENTS_RESOLVE_BATCH`` a run, and no new row
    once ``budget_seconds`` have passed (one at least) (a run stays under its Celery time
    limit even when the acquirer is slow). Returns counts by outcome.
    """
    if budget_seconds is None:
        budget_seconds = max(1.0, settings.CELERY_TASK_SOFT_TIME_LIMIT - 2 * settings.ACQUIRER_TIMEOUT_SECONDS - 5)
    started = time.monotonic()
    ids = list(
        Transaction.objects.filter(_lost(timezone.now())).order_by("updated_at")
        .values_list("pk", flat=True)[: settings.PAYMENTS_RESOLVE_BATCH]
    )
    counts: dict[str, int] = {}
    for pk in ids:
        outcome = transaction_resolve(transaction_id=pk)
        counts[outcome] = counts.get(outcome, 0) + 1
        if time.monotonic() - started >= budget_seconds:
            break  # the rest at the next run (one row at least per run)
    if counts:
        logger.info("unknown outcomes: %s", counts)
    return counts


def transaction_resolve(*, transaction_id: int) -> str:
    """Settle one lost answer; what happened: ``skipped`` (not lost, or another
    resolver holds it), ``unanswered`` (the acquirer could not say or reverse:
    asked again once the lease runs out), or the status recorded.

    The row is claimed with a lease by one conditional UPDATE (of two resolvers
    exactly one proceeds), the acquirer is asked outside any transaction, and
    the outcome is recorded only while the row still carries this lease. A
    connector's bug or a Celery time limit propagates (the lease runs out, the
    next run asks again).
    """
    now = timezone.now()
    lease = now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    claimed = Transaction.objects.filter(_lost(now), pk=transaction_id).update(resolver_lease_until=lease)
    if not claimed:
        return "skipped"
    txn = Transaction.objects.get(pk=transaction_id)
    acquirer = get_acquirer()
    try:
        inquiry = acquirer_run(acquirer.inquire, transaction_id=txn.pk)
        if not isinstance(inquiry, Inquiry):
            raise TypeError(f"inquire returned {type(inquiry).__name__}, not an Inquiry")
        if txn.operation == AcquirerOperation.AUTHORIZE and inquiry.state in (
            AcquirerState.NOT_FOUND, AcquirerState.AUTHORIZED, AcquirerState.CAPTURED
        ):
            # Nobody was told of an approval: undo it. Reverse a "never received"
            # too, so that an authorization arriving late is refused (ISO 8583).
            reversal = acquirer_run(acquirer.reverse, transaction_id=txn.pk)
            if not reversal.approved:
                logger.error(
                    "transaction %s approved by the acquirer and nobody told, but its reversal was refused "
                    "(%s): asked again at the next run; staff may refund it", txn.pk, reversal.reason,
                )
                return "unanswered"
    except AcquirerError as exc:
        logger.warning("transaction %s: the acquirer could not settle its lost answer yet (%s)", txn.pk, exc)
        return "unanswered"
    changes, event = _resolution(txn, inquiry)
    operation = txn.operation
    with db_transaction.atomic():
        applied = Transaction.objects.filter(
            pk=txn.pk, status=TransactionStatus.PROCESSING, resolver_lease_until=lease
        ).update(**changes, operation="", resolver_lease_until=None, updated_at=timezone.now())
        if not applied:
            logger.warning("transaction %s: resolver lease lost before recording, result dropped", txn.pk)
            return "skipped"
        txn.refresh_from_db()
        if event is not None:
            outbox.event_emit(type=event, transaction=txn)
    logger.info(
        "transaction %s: lost %s settled by inquiry (acquirer: %s) -> %s %s",
        txn.pk, operation, inquiry.state.value, txn.status, txn.failure_code,
    )
    return str(txn.status)


def _resolution(txn: Transaction, inquiry: Inquiry) -> tuple[dict[str, object], EventType | None]:
    """The row's changes and event for what the acquirer says (models.py's overview)."""
    state = inquiry.state
    kept = {"acquirer_reference": (inquiry.reference or txn.acquirer_reference)[:64]}
    if txn.operation == AcquirerOperation.AUTHORIZE:
        if state is AcquirerState.NOT_FOUND:
            return {
                "status": TransactionStatus.DECLINED, "failure_code": NO_RECORD,
                "failure_message": "the acquirer never received the authorization (settled by inquiry)",
            }, EventType.PAYMENT_FAILED
        if state is AcquirerState.DECLINED:
            return {
                **kept, "status": TransactionStatus.DECLINED,
                "failure_code": (inquiry.decline_code or "card_declined")[:32],
                "failure_message": (inquiry.reason or "declined")[:255],
            }, EventType.PAYMENT_FAILED
        if state is AcquirerState.ERROR:
            return {
                **kept, "status": TransactionStatus.ERROR,
                "failure_code": (inquiry.decline_code or "acquirer_error")[:32],
                "failure_message": (inquiry.reason or "acquirer error")[:255],
            }, EventType.PAYMENT_FAILED
        # Approved (and now reversed) or reversed already: nothing is charged.
        return {
            **kept, "status": TransactionStatus.VOIDED, "authorized_amount": txn.amount,
            "captured_amount": Decimal("0"), "authorization_code": inquiry.authorization_code[:12],
            "failure_code": REVERSED,
            "failure_message": "approved by the acquirer, but the answer was lost: reversed, nothing is charged",
        }, EventType.PAYMENT_CANCELLED
    # A capture or a void in flight: the authorization itself was approved.
    if txn.operation == AcquirerOperation.VOID and txn.captured_amount > 0:
        # A same-day cancellation of a capture (payments.services.cancellations):
        # voided, or the capture stands (already announced: no new event).
        if state is AcquirerState.VOIDED:
            return {"status": TransactionStatus.VOIDED, "captured_amount": Decimal("0")}, EventType.PAYMENT_CANCELLED
        return {"status": TransactionStatus.CAPTURED}, None
    if state is AcquirerState.CAPTURED:
        captured = min(inquiry.captured_amount or txn.authorized_amount, txn.authorized_amount)
        return {"status": TransactionStatus.CAPTURED, "captured_amount": captured}, EventType.PAYMENT_SUCCEEDED
    if state is AcquirerState.VOIDED:
        return {"status": TransactionStatus.VOIDED}, EventType.PAYMENT_CANCELLED
    if state is not AcquirerState.AUTHORIZED:
        logger.error("transaction %s: %s in flight, but the acquirer says %s; kept as authorized",
                     txn.pk, txn.operation, state.value)
    # Not done: the authorization stands, as a refused capture or void leaves it.
    return {"status": TransactionStatus.AUTHORIZED}, None


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
