"""The payment core: every rule of a payment, under one roof.

Doors (terminal listener, esipay, secure API, IOTP, SET) parse and
authenticate, then call these keyword-only functions and map the
``payments.errors`` they raise to their own codes. Nothing here knows a
wire format. The modules, by subject:

- ``tokens``: terminal tokens (issue, one try per attempt, which rule refused);
- ``screening``: the gateway's own rules before the acquirer (format, bans,
  PIN, amount, limits), in the terminal contract's order
  (token → tries → number format → ban → PIN → amount → limit → acquirer);
- ``payments``: sales, authorizations, captures, voids, esipay's confirmed payment;
- ``acquiring``: calls to the acquirer connector and what their failures mean;
- ``refunds``: refunds accepted with their money reserved, carried out by Celery;
- ``bans``: the ban list and its CSV import;
- ``reconciliation``: what the periodic sweep settles (payments left half-way);
- ``references``: payments named by the merchant's own reference (SET transId);
- ``resume``: an authorization whose process died at the acquirer, asked again;
- ``sql``: what the hand-written hot-path SQL shares.

Callers import from ``payments.services`` only: the names below are the
public interface.
"""
from __future__ import annotations

from .bans import BanImportError, BanImportResult, BanValueError, ban_add, ban_fields, bans_import
from .payments import (
    ConfirmedPayment,
    payment_authorize,
    payment_capture,
    payment_card_confirmed,
    payment_sale_with_token,
    payment_void,
)
from .reconciliation import payments_void_unconfirmed
from .references import payment_by_reference
from .resume import payment_authorization_resume
from .refunds import refund_execute, refund_request
from .tokens import ClaimedToken, token_issue

__all__ = [
    "BanImportError",
    "BanImportResult",
    "BanValueError",
    "ClaimedToken",
    "ConfirmedPayment",
    "ban_add",
    "ban_fields",
    "bans_import",
    "payment_authorization_resume",
    "payment_authorize",
    "payment_by_reference",
    "payment_capture",
    "payment_card_confirmed",
    "payment_sale_with_token",
    "payment_void",
    "payments_void_unconfirmed",
    "refund_execute",
    "refund_request",
    "token_issue",
]
