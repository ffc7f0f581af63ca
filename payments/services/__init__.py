"""The payment core: every rule of a payment, under one roof.

Doors (terminal listener, esipay, secure API, IOTP, SET) parse and
authenticate, then call these keyword-only functions and map the
``payments.errors`` they raise to their own codes. Nothing here knows a
wire format. The modules, by subject:

- ``tokens``: terminal tokens (issue, one try per attempt, which rule refused);
- ``screening``: the gateway's own rules before the acquirer (format and
  Luhn, network, bans, PIN, amount, limits), in the terminal contract's order
  (token → tries → number format and Luhn → network matches card_type → ban
  → PIN → amount → limit → acquirer);
- ``payments``: sales, authorizations, captures, voids, esipay's confirmed
  payment; a sale also in its three phases (database, acquirer, recording)
  for callers that must not hold a database thread while the acquirer answers;
- ``acquiring``: calls to the acquirer connector on their own bounded pool
  with a deadline, and what their failures mean;
- ``refunds``: refunds accepted with their money reserved, carried out by Celery;
- ``bans``: the ban list and its CSV import;
- ``reconciliation``: what periodic tasks settle: lost acquirer answers
  (inquiry, reversal), abandoned esipay confirmations;
- ``lifecycle``: payments opened without card data and continued later,
  suspended, resumed, cancelled;
- ``iotp``: IOTP's Payment Handler rules (PayIds, repeats, signed receipts,
  challenge-response), on top of ``lifecycle``;
- ``verification``: a card checked before it is kept on file (zero-amount authorization);
- ``cancellations``: voiding a payment that is not settled yet (captures of the day too);
- ``references``: payments named by the merchant's own reference (SET transId);
- ``sql``: what the hand-written hot-path SQL shares.

Callers import from ``payments.services`` only: the names below are the
public interface.
"""
from __future__ import annotations

from .bans import BanImportError, BanImportResult, BanValueError, ban_add, ban_fields, bans_import
from .payments import (
    AuthorizationStep,
    ConfirmedPayment,
    payment_authorization_record,
    payment_authorization_send,
    payment_authorization_send_async,
    payment_authorize,
    payment_capture,
    payment_card_confirmed,
    payment_sale_start,
    payment_sale_with_token,
    payment_void,
)
from .iotp import (
    BRANDS as IOTP_BRANDS,
    AUTH_ALGORITHM as IOTP_AUTH_ALGORITHM,
    PROTOCOL_ID as IOTP_PROTOCOL_ID,
    PROTOCOL_NAME as IOTP_PROTOCOL_NAME,
    BrandMismatch,
    BrandNotAccepted,
    CardData,
    IotpPaymentView,
    IotpRefused,
    PayIdReused,
    PayIdUnknown,
    PaymentBeingProcessed,
    ReceiptInvalid,
    StartRequest,
    iotp_auth_challenge_issue,
    iotp_auth_response,
    iotp_auth_response_check,
    iotp_brands_accepted,
    iotp_brands_enabled,
    iotp_payment_change_state,
    iotp_payment_continue,
    iotp_payment_get,
    iotp_payment_limit,
    iotp_payment_log_remove,
    iotp_payment_resume,
    iotp_payment_start,
    iotp_payments_pending,
    iotp_receipt_check,
)
from .lifecycle import payment_cancel_open, payment_continue, payment_fail, payment_open, payment_resume, payment_suspend
from .reconciliation import payments_resolve_unknown, payments_void_unconfirmed, transaction_resolve
from .references import payment_by_reference
from .refunds import refund_execute, refund_request
from .tokens import ClaimedToken, token_issue
from .cancellations import AlreadyCancelled, AlreadySettled, payment_cancel
from .verification import CardVerification, card_verify

__all__ = [
    "IOTP_AUTH_ALGORITHM",
    "IOTP_BRANDS",
    "IOTP_PROTOCOL_ID",
    "IOTP_PROTOCOL_NAME",
    "BrandMismatch",
    "BrandNotAccepted",
    "CardData",
    "IotpPaymentView",
    "IotpRefused",
    "PayIdReused",
    "PayIdUnknown",
    "PaymentBeingProcessed",
    "ReceiptInvalid",
    "StartRequest",
    "iotp_auth_challenge_issue",
    "iotp_auth_response",
    "iotp_auth_response_check",
    "iotp_brands_accepted",
    "iotp_brands_enabled",
    "iotp_payment_change_state",
    "iotp_payment_continue",
    "iotp_payment_get",
    "iotp_payment_limit",
    "iotp_payment_log_remove",
    "iotp_payment_resume",
    "iotp_payment_start",
    "iotp_payments_pending",
    "iotp_receipt_check",
    "payment_cancel_open",
    "payment_continue",
    "payment_fail",
    "payment_open",
    "payment_resume",
    "payment_suspend",
    "AlreadyCancelled",
    "AlreadySettled",
    "CardVerification",
    "card_verify",
    "payment_cancel",
    "BanImportError",
    "BanImportResult",
    "AuthorizationStep",
    "BanValueError",
    "ClaimedToken",
    "ConfirmedPayment",
    "ban_add",
    "ban_fields",
    "bans_import",
    "payment_authorization_record",
    "payment_authorization_send",
    "payment_authorization_send_async",
    "payment_authorize",
    "payment_by_reference",
    "payment_capture",
    "payment_card_confirmed",
    "payment_sale_start",
    "payment_sale_with_token",
    "payment_void",
    "payments_resolve_unknown",
    "payments_void_unconfirmed",
    "refund_execute",
    "refund_request",
    "token_issue",
    "transaction_resolve",
]
