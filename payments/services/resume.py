"""Authorizations whose process died while the acquirer was being asked.

A payment is recorded ``processing`` before the acquirer is called (its
first transaction commits), so a process killed during that call leaves a
visible ``processing`` row and nobody knows the acquirer's answer. When the
merchant repeats the very request (same card, same amount: a door checks
that it is the same), the acquirer is asked again with the same
``AuthorizationRequest`` — the transaction id is its idempotency key, as a
refund's id is for refunds — and its answer is recorded as the first one
would have been (one conditional UPDATE on ``processing``, with its event).
"""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from .. import cards
from ..errors import InvalidRequest, InvalidState, PaymentInProgress, TransactionNotFound
from ..models import Transaction
from ..states import TransactionStatus
from .payments import _authorize_with_acquirer


def payment_authorization_resume(
    *, transaction_id: int, merchant_pk: int, card_number: str, capture: bool, expiry: str = "",
    untouched_for: timedelta,
) -> Transaction:
    """Ask the acquirer again for an authorization left ``processing``.

    ``untouched_for``: how long the row must have been left alone, so that a
    live first attempt is never doubled (PaymentInProgress before). The card
    must be the transaction's. Returns the transaction with its outcome, or
    raises Declined / AcquirerFailure as ``payment_authorize`` does.
    """
    txn = Transaction.objects.filter(pk=transaction_id, merchant_id=merchant_pk).first()
    if txn is None:
        raise TransactionNotFound()
    if txn.status != TransactionStatus.PROCESSING:
        raise InvalidState(f"Transaction is {txn.get_status_display().lower()}")
    if txn.updated_at > timezone.now() - untouched_for:
        raise PaymentInProgress(transaction_id=txn.pk)
    pan = cards.card_validate(card_number, cards.PanPolicy(10, 19, luhn=False))
    if cards.card_facts(pan).fingerprint != txn.card_fingerprint:
        raise InvalidRequest("another card than the transaction's")
    _authorize_with_acquirer(txn, pan=pan, capture=capture, expiry=expiry)
    txn.refresh_from_db()  # what is stored (the UPDATE records only on a row still processing)
    return txn
