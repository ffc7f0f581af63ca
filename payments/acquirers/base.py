"""The acquirer connector interface: what the core asks of a bank.

Connectors are called outside any database transaction (they may do
network I/O), on the acquirer pool of ``payments.services.acquiring``,
which gives every call a deadline. They receive the card number in memory
only; a connector must not log it or persist it.

Every operation carries our transaction id: it is the idempotency key of
the authorization (what an ISO 8583 switch calls the STAN/RRN of the
original), so that when an answer is lost the core can ask what became of
it (``inquire``) and undo it (``reverse``).

How a connector reports a failure decides what the core does with the
payment, so it must be precise:

- an answer (``AcquirerResult``): approved, declined (a business "no"),
  error (a definite technical refusal: the acquirer says it did nothing),
  or unknown (the acquirer itself cannot tell);
- ``AcquirerUnavailable``: the request certainly never reached the acquirer
  (connection refused, DNS failure): nothing happened, like an error;
- ``AcquirerTimeout`` or any other ``AcquirerError``: the request may have
  been processed; the outcome is unknown and the core settles it later by
  inquiry.

Anything else a connector raises is a bug: the core never takes it for an
answer (the payment is left for the resolver, the caller hears "unknown").
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache

from django.conf import settings
from django.utils.module_loading import import_string


class AcquirerError(Exception):
    """A connector's own failure: the outcome of the request is unknown."""


class AcquirerTimeout(AcquirerError):
    """No answer within the deadline: the request may have been processed."""


class AcquirerUnavailable(AcquirerError):
    """The request never reached the acquirer: nothing happened."""


class Outcome(enum.Enum):
    APPROVED = "approved"
    DECLINED = "declined"  # a business "no": the payment is Failed
    ERROR = "error"  # a definite technical failure: the payment is in ProcessError
    UNKNOWN = "unknown"  # nobody can tell yet: the resolver settles it by inquiry


@dataclass(frozen=True, repr=False)
class AuthorizationRequest:
    transaction_id: int  # the idempotency key of the authorization
    amount: Decimal
    currency: str
    capture: bool
    # Never in a repr (tracebacks, logs): the card number, the CVV.
    pan: str = field(default="", repr=False)  # empty for checks
    check_number: str = ""
    expiry: str = ""  # YYYYMM when the door has it
    cvv: str = field(default="", repr=False)

    def __repr__(self) -> str:
        # A repr reaches tracebacks and debug logs: the card masked, the CVV never.
        from ..cards import mask_pan

        return (
            f"AuthorizationRequest(transaction_id={self.transaction_id!r}, amount={self.amount!r}, "
            f"currency={self.currency!r}, capture={self.capture!r}, pan={mask_pan(self.pan)!r}, "
            f"check_number={self.check_number!r}, expiry={self.expiry!r}, cvv={'***' if self.cvv else ''!r})"
        )


@dataclass(frozen=True)
class AcquirerResult:
    outcome: Outcome
    reference: str = ""
    authorization_code: str = ""
    decline_code: str = ""  # card_declined, insufficient_funds, expired_card, ...
    reason: str = ""  # for people: "card declined", "insufficient funds"

    @property
    def approved(self) -> bool:
        return self.outcome is Outcome.APPROVED


class AcquirerState(enum.Enum):
    """What the acquirer knows of one of our transactions (the answer to an inquiry)."""

    NOT_FOUND = "not_found"  # it never received the authorization
    DECLINED = "declined"
    ERROR = "error"  # it received it and failed it technically: nothing was authorized
    AUTHORIZED = "authorized"  # approved, not captured
    CAPTURED = "captured"  # approved and captured (a sale, or a capture done)
    VOIDED = "voided"  # approved, then voided or reversed: nothing is charged


@dataclass(frozen=True)
class Inquiry:
    state: AcquirerState
    reference: str = ""
    authorization_code: str = ""
    captured_amount: Decimal = Decimal("0")
    decline_code: str = ""
    reason: str = ""


class Acquirer:
    """Subclass and name it in ``PAYMENTS_ACQUIRER``."""

    def authorize(self, request: AuthorizationRequest) -> AcquirerResult:
        raise NotImplementedError

    def capture(self, *, reference: str, amount: Decimal, currency: str, transaction_id: int) -> AcquirerResult:
        raise NotImplementedError

    def void(self, *, reference: str, transaction_id: int) -> AcquirerResult:
        raise NotImplementedError

    def refund(self, *, reference: str, amount: Decimal, currency: str, refund_id: int) -> AcquirerResult:
        raise NotImplementedError

    def inquire(self, *, transaction_id: int) -> Inquiry:
        """What became of our transaction ``transaction_id`` (its authorization,
        and any capture or void of it). Raises AcquirerError when it cannot say."""
        raise NotImplementedError

    def reverse(self, *, transaction_id: int) -> AcquirerResult:
        """Undo the authorization sent as ``transaction_id`` (an ISO 8583 0400):
        approved when nothing of it is charged any more, including when it was
        never received. Safe to repeat."""
        raise NotImplementedError


@lru_cache(maxsize=4)
def _load(path: str) -> Acquirer:
    return import_string(path)()


def get_acquirer() -> Acquirer:
    return _load(settings.PAYMENTS_ACQUIRER)
