"""The acquirer connector interface: what the core asks of a bank.

Connectors are called outside any database transaction (they may do
network I/O). They receive the card number in memory only; a connector must
not log it or persist it.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from django.conf import settings
from django.utils.module_loading import import_string


class Outcome(enum.Enum):
    APPROVED = "approved"
    DECLINED = "declined"  # a business "no": the payment is Failed
    ERROR = "error"  # a technical failure: the payment is in ProcessError


@dataclass(frozen=True, repr=False)
class AuthorizationRequest:
    transaction_id: int
    amount: Decimal
    currency: str
    capture: bool
    pan: str = ""  # empty for checks
    check_number: str = ""
    expiry: str = ""  # YYYYMM when the door has it
    cvv: str = ""

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


class Acquirer:
    """Subclass and name it in ``PAYMENTS_ACQUIRER``."""

    def authorize(self, request: AuthorizationRequest) -> AcquirerResult:
        raise NotImplementedError

    def capture(self, *, reference: str, amount: Decimal, currency: str) -> AcquirerResult:
        raise NotImplementedError

    def void(self, *, reference: str) -> AcquirerResult:
        raise NotImplementedError

    def refund(self, *, reference: str, amount: Decimal, currency: str, refund_id: int) -> AcquirerResult:
        raise NotImplementedError


@lru_cache(maxsize=4)
def _load(path: str) -> Acquirer:
    return import_string(path)()


def get_acquirer() -> Acquirer:
    return _load(settings.PAYMENTS_ACQUIRER)
