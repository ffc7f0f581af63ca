"""Reconciliation: payments left half-way are settled by the periodic sweep.

Run by Celery beat (``payments.tasks.sweep_outbox``); safe to run twice.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from ..errors import PaymentError
from ..models import Transaction
from ..states import Door, TransactionStatus
from .payments import payment_void

logger = logging.getLogger(__name__)


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


