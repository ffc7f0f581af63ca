"""The sandbox acquirer: approves what the gateway's rules let through,
except the test cards of ``shared/contracts/operations.md`` (as Stripe's)."""
from __future__ import annotations

import secrets
from decimal import Decimal

from .base import Acquirer, AcquirerResult, AuthorizationRequest, Outcome

# card number -> (outcome, decline code, reason)
TEST_CARDS: dict[str, tuple[Outcome, str, str]] = {
    "4000000000000002": (Outcome.DECLINED, "card_declined", "card declined"),
    "4000000000009995": (Outcome.DECLINED, "insufficient_funds", "insufficient funds"),
    "4000000000000069": (Outcome.DECLINED, "expired_card", "expired card"),
    "4000000000000119": (Outcome.ERROR, "processing_error", "acquirer processing error"),
}
HAPPY_CARDS = ("4242424242424242", "5555555555554444")


def _reference() -> str:
    return "sbx_" + secrets.token_hex(12)


class SandboxAcquirer(Acquirer):
    def authorize(self, request: AuthorizationRequest) -> AcquirerResult:
        special = TEST_CARDS.get(request.pan)
        if special:
            outcome, code, reason = special
            return AcquirerResult(outcome, reference=_reference(), decline_code=code, reason=reason)
        return AcquirerResult(
            Outcome.APPROVED, reference=_reference(), authorization_code=f"{secrets.randbelow(10**6):06d}"
        )

    def capture(self, *, reference: str, amount: Decimal, currency: str) -> AcquirerResult:
        return AcquirerResult(Outcome.APPROVED, reference=reference)

    def void(self, *, reference: str) -> AcquirerResult:
        return AcquirerResult(Outcome.APPROVED, reference=reference)

    def refund(self, *, reference: str, amount: Decimal, currency: str, refund_id: int) -> AcquirerResult:
        return AcquirerResult(Outcome.APPROVED, reference=_reference())
