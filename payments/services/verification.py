"""Card verification: is this card good to keep on file?

The gateway's own rules first (number format, expiry, bans: the same
screening every payment gets), then a zero-amount authorization with the
acquirer (Visa/Mastercard "account verification"), carrying the CVV when
the merchant has one. Nothing is recorded as a transaction: no money moves
(a zero-amount authorization holds nothing and needs no void), and a
transaction's amount is positive by constraint.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.utils import timezone

from .. import cards
from ..acquirers.base import AuthorizationRequest, Outcome, get_acquirer
from ..db import require_no_transaction
from ..errors import AcquirerFailure, CardBanned, Declined
from ..states import BanKind
from .acquiring import acquirer_answer
from .screening import rule_facts

# A zero-amount authorization checks that the account exists and is open;
# funds are checked by each charge. Issuers that still answer "insufficient
# funds" to one have said the account is there.
_VERIFIED_DECLINE_CODES = frozenset({"insufficient_funds"})


@dataclass(frozen=True)
class CardVerification:
    pan: str
    facts: cards.CardFacts
    brand: str
    expiry: str  # YYYYMM
    acquirer_reference: str


def card_verify(
    *, card_number: object, policy: cards.PanPolicy, expiry_month: object, expiry_year: object,
    currency: str, cvv: str = "",
) -> CardVerification:
    """The card, verified; or InvalidCardNumber, InvalidCardExpiry, CardExpired,
    CardBanned, Declined (the acquirer said no) or AcquirerFailure."""
    pan = cards.card_validate(card_number, policy)
    expiry = cards.expiry_validate(expiry_month, expiry_year, today=timezone.now().date())
    banned = rule_facts(pan=pan).banned
    if BanKind.CARD in banned or BanKind.BIN in banned:
        raise CardBanned()
    require_no_transaction("acquirer call")
    result = acquirer_answer(
        get_acquirer().authorize,
        AuthorizationRequest(
            transaction_id=0, amount=Decimal("0"), currency=currency, capture=False, pan=pan, expiry=expiry, cvv=cvv
        ),
    )
    if result.outcome is Outcome.DECLINED and result.decline_code not in _VERIFIED_DECLINE_CODES:
        raise Declined(result.reason or "declined", decline_code=result.decline_code)
    if result.outcome is Outcome.ERROR:
        raise AcquirerFailure(result.reason or "technical error")
    if result.outcome is Outcome.UNKNOWN:
        # A zero-amount authorization holds nothing: an unanswered one is simply
        # not a verification (the card is not kept; the merchant may try again).
        raise AcquirerFailure(result.reason or "no answer from the acquirer")
    return CardVerification(
        pan=pan, facts=cards.card_facts(pan), brand=cards.card_brand(pan), expiry=expiry,
        acquirer_reference=result.reference,
    )
