"""Payment life cycle: the gateway's states and RFC 3867's six process states.

``TransactionStatus`` is what the core stores (fine-grained, so that money
movements are explicit); ``ProcessState`` is the vocabulary of RFC 3867
§3.3.3 that every door and the back office speak. ``PROCESS_STATE`` maps
one onto the other, here and nowhere else.

    awaiting_card ◄──► suspended        (IOTP: started without card data)
        │ (card data arrives)
    processing ──► authorized ──► captured ──► partially_refunded ──► refunded
        │  │            │                └──────────────────────────────┘
        │  │            └──► voided
        │  └──► declined      (acquirer or gateway rules said no)
        └─────► error         (acquirer technical failure)

A capture or a void is in flight as ``processing`` too (``authorized ──►
processing ──► captured | voided``, or back to ``authorized``); which
acquirer operation is in flight is ``AcquirerOperation``, so that the
resolver knows what to ask about when an answer was lost.
"""
from __future__ import annotations

from django.db import models


class ProcessState(models.TextChoices):
    NOT_YET_STARTED = "NotYetStarted"
    IN_PROGRESS = "InProgress"
    SUSPENDED = "Suspended"
    COMPLETED_OK = "CompletedOk"
    FAILED = "Failed"
    PROCESS_ERROR = "ProcessError"


FINAL_PROCESS_STATES = frozenset({ProcessState.COMPLETED_OK, ProcessState.FAILED, ProcessState.PROCESS_ERROR})


class TransactionStatus(models.TextChoices):
    PENDING = "pending", "Pending (not yet started)"
    # Started without card data (IOTP's StartPaymentPaymentHandler without
    # CardData): waiting for ContinueProcess to bring it. Not "processing":
    # no request is with the acquirer, so neither a second continuation nor a
    # sweep of lost acquirer calls may take it for one.
    AWAITING_CARD = "awaiting_card", "Waiting for card data"
    PROCESSING = "processing", "Processing with the acquirer"
    SUSPENDED = "suspended", "Suspended"
    AUTHORIZED = "authorized", "Authorized (not captured)"
    CAPTURED = "captured", "Captured"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"
    REFUNDED = "refunded", "Refunded"
    VOIDED = "voided", "Voided"
    DECLINED = "declined", "Declined"
    ERROR = "error", "Acquirer error"


PROCESS_STATE: dict[str, ProcessState] = {
    TransactionStatus.PENDING: ProcessState.NOT_YET_STARTED,
    TransactionStatus.AWAITING_CARD: ProcessState.IN_PROGRESS,
    TransactionStatus.PROCESSING: ProcessState.IN_PROGRESS,
    TransactionStatus.SUSPENDED: ProcessState.SUSPENDED,
    # An authorization waiting for its capture is a payment still in progress.
    TransactionStatus.AUTHORIZED: ProcessState.IN_PROGRESS,
    TransactionStatus.CAPTURED: ProcessState.COMPLETED_OK,
    # Refunds are later operations on a payment that completed.
    TransactionStatus.PARTIALLY_REFUNDED: ProcessState.COMPLETED_OK,
    TransactionStatus.REFUNDED: ProcessState.COMPLETED_OK,
    # A voided authorization never became a payment.
    TransactionStatus.VOIDED: ProcessState.FAILED,
    TransactionStatus.DECLINED: ProcessState.FAILED,
    TransactionStatus.ERROR: ProcessState.PROCESS_ERROR,
}

# Statuses in which a transaction holds its token: the token is in use
# (processing) or spent. One token, one payment: enforced by a partial unique
# index on these statuses (see models.Transaction).
TOKEN_HOLDING_STATUSES = (
    TransactionStatus.PROCESSING,
    TransactionStatus.AUTHORIZED,
    TransactionStatus.CAPTURED,
    TransactionStatus.PARTIALLY_REFUNDED,
    TransactionStatus.REFUNDED,
    TransactionStatus.VOIDED,
)

# Statuses of a payment that is going on or went through: a merchant's
# reference (esipay cid) names at most one of them (a partial unique index).
# A declined, failed or cancelled (voided) attempt frees the reference.
LIVE_STATUSES = (
    TransactionStatus.PROCESSING,
    TransactionStatus.AUTHORIZED,
    TransactionStatus.CAPTURED,
    TransactionStatus.PARTIALLY_REFUNDED,
    TransactionStatus.REFUNDED,
)

# Statuses in which money was captured (and so may be refunded).
REFUNDABLE_STATUSES = (TransactionStatus.CAPTURED, TransactionStatus.PARTIALLY_REFUNDED)


def statuses_in(state: ProcessState) -> list[str]:
    """The stored statuses that map onto one process state (for filters)."""
    return [status for status, mapped in PROCESS_STATE.items() if mapped == state]


class AcquirerOperation(models.TextChoices):
    """The acquirer operation in flight while a transaction is ``processing``."""

    AUTHORIZE = "authorize", "Authorization (or sale)"
    CAPTURE = "capture", "Capture"
    VOID = "void", "Void"


class RefundStatus(models.TextChoices):
    PENDING = "pending", "Pending with the acquirer"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Door(models.TextChoices):
    """The front door a transaction came through."""

    TERMINAL = "terminal", "Terminal (TCP)"
    ESIPAY = "esipay", "esipay"
    SECURE_API = "secure_api", "Secure API"
    IOTP = "iotp", "IOTP"
    SET = "set", "SET gateway"


class PaymentMethod(models.TextChoices):
    CARD = "card", "Card (chip and PIN)"
    CONTACTLESS = "contactless", "Contactless card"
    CHECK = "check", "Check"


class CardBrand(models.TextChoices):
    """The brands the gateway derives from a card number (``payments.cards.BIN_RANGES``)."""

    VISA = "VISA", "Visa"
    MASTER = "MASTER", "MasterCard"
    ELECTRON = "ELECTRON", "Visa Electron"
    AMEX = "AMEX", "American Express"


class LimitKind(models.TextChoices):
    """Per-payment limits: one per brand, one for cards of no known network,
    and contactless (on top of the brand's)."""

    VISA = "VISA", "Visa (per payment)"
    MASTER = "MASTER", "MasterCard (per payment)"
    ELECTRON = "ELECTRON", "Visa Electron (per payment)"
    AMEX = "AMEX", "American Express (per payment)"
    OTHER = "OTHER", "Card of no known network (per payment)"
    CONTACTLESS = "CONTACTLESS", "Contactless (per payment, any brand)"


class BanKind(models.TextChoices):
    CARD = "card", "Card number"
    BIN = "bin", "BIN (6–8 leading digits)"
    CHECK = "check", "Check number"
    PIN = "pin", "PIN"


class EventType(models.TextChoices):
    """The webhook events of shared/contracts/esipay.md, for every door."""

    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_CANCELLED = "payment.cancelled"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending (will be tried)"
    SUCCEEDED = "succeeded", "Delivered"
    FAILED = "failed", "Failed (gave up after 3 days)"
