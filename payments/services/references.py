"""Payments named by the merchant's own reference (SET transId, esipay cid...)."""
from __future__ import annotations

from django.db.models import Case, IntegerField, Value, When

from ..models import Transaction
from ..states import LIVE_STATUSES, Door


def payment_by_reference(*, merchant_pk: int, door: Door, reference: str) -> Transaction | None:
    """The payment a merchant's reference names through one door: its live one
    (at most one: ``one_live_payment_per_reference``), else its latest attempt
    (declined, voided, failed)."""
    if not reference:
        return None
    return (
        Transaction.objects.filter(merchant_id=merchant_pk, door=door, merchant_reference=reference)
        .annotate(live=Case(When(status__in=LIVE_STATUSES, then=Value(0)), default=Value(1),
                            output_field=IntegerField()))
        .order_by("live", "-created_at", "-id")
        .first()
    )
