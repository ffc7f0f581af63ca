"""The one exception hierarchy of the payment core.

Services raise these; each door maps them to its own vocabulary (terminal
error codes 10x, esipay HTTP statuses, secure API 9xx, IOTP ErrorCode, SET
ErrorMsg). ``code`` is the core's stable name for the failure, stored on a
declined transaction as ``failure_code``. Messages never contain card data:
card numbers appear masked (first 6 / last 4) at most.
"""
from __future__ import annotations

from decimal import Decimal


class PaymentError(Exception):
    code = "payment_error"
    default_message = "Payment error"

    def __init__(self, message: str | None = None, *, transaction_id: int | None = None) -> None:
        self.message = message or self.default_message
        # Set when the failed attempt was recorded as a transaction.
        self.transaction_id = transaction_id
        super().__init__(self.message)


class InvalidRequest(PaymentError):
    """A parameter is missing, ill-typed or out of its domain."""

    code = "invalid_request"
    default_message = "Invalid request"

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"Invalid request: {detail}")


class NotAuthorized(PaymentError):
    """The caller (terminal, merchant server) is not who may do this."""

    code = "not_authorized"
    default_message = "Not authorized"


class TokenInvalid(PaymentError):
    """Unknown, expired, used, another terminal's, or for another payment type."""

    code = "token_invalid"
    default_message = "Wrong token"


class TokenTriesExhausted(PaymentError):
    code = "token_tries_exhausted"
    default_message = "Max try"


class InvalidCardNumber(PaymentError):
    code = "invalid_card_number"
    default_message = "Invalid card number"

    def __init__(self, masked: str) -> None:
        self.masked = masked
        super().__init__(f"Invalid card number {masked}")


class InvalidCardExpiry(PaymentError):
    code = "invalid_card_expiry"
    default_message = "Invalid card expiry"


class CardExpired(PaymentError):
    code = "card_expired"
    default_message = "Card expired"


class InvalidCheckNumber(PaymentError):
    code = "invalid_check_number"
    default_message = "Invalid check number"


class InvalidPin(PaymentError):
    """PIN malformed or on the banned PIN list (the same answer for both)."""

    code = "invalid_pin"
    default_message = "Invalid pin"


class InvalidAmount(PaymentError):
    code = "invalid_amount"
    default_message = "Invalid amount"


class UnsupportedCurrency(PaymentError):
    """A currency the gateway does not accept (payments.money.CURRENCIES)."""

    code = "unsupported_currency"

    def __init__(self, currency: object) -> None:
        self.currency = currency
        super().__init__(f"Unsupported currency {str(currency)[:8]!r}")


class NotTheMerchantsCurrency(UnsupportedCurrency):
    """A payment in a currency other than the one the merchant is paid in: a merchant
    settles in one currency, and its limits, refunds and reports are in it."""

    def __init__(self, currency: object, merchant_currency: str) -> None:
        self.currency, self.merchant_currency = currency, merchant_currency
        PaymentError.__init__(self, f"Currency {str(currency)[:8]!r} not accepted: this merchant is paid in "
                                    f"{merchant_currency}")


class LimitsNotConfigured(PaymentError):
    """No per-payment limit applies to this payment in its currency: staff must
    configure one (a payment is never unlimited by omission)."""

    code = "limits_not_configured"

    def __init__(self, currency: str, kinds: list[str]) -> None:
        self.currency = currency
        self.kinds = kinds
        super().__init__(f"no card limits configured for {currency} ({', '.join(kinds)})")


class CardBanned(PaymentError):
    code = "card_banned"
    default_message = "Card banned"


class CheckBanned(PaymentError):
    code = "check_banned"
    default_message = "Check banned"


class LimitExceeded(PaymentError):
    code = "limit_exceeded"

    def __init__(self, limit: Decimal, *, contactless: bool, places: int = 2) -> None:
        self.limit = limit
        self.contactless = contactless
        kind = "Contactless" if contactless else "Card"
        # With the currency's decimals (places): "Card max amount 2500.00" EUR, "... 375000" JPY.
        super().__init__(f"{kind} max amount {limit:.{places}f}")


class Declined(PaymentError):
    """The acquirer declined: a business answer, the payment is Failed."""

    code = "declined"
    default_message = "Declined"

    def __init__(self, reason: str, *, decline_code: str = "card_declined", transaction_id: int | None = None) -> None:
        self.reason = reason
        self.decline_code = decline_code
        super().__init__(f"Declined: {reason}", transaction_id=transaction_id)


class AcquirerFailure(PaymentError):
    """The acquirer failed technically: the payment is in ProcessError."""

    code = "acquirer_failure"
    default_message = "Acquirer failure"

    def __init__(self, reason: str, *, transaction_id: int | None = None) -> None:
        self.reason = reason
        super().__init__(f"Acquirer failure: {reason}", transaction_id=transaction_id)


class PaymentOutcomeUnknown(PaymentError):
    """The acquirer's answer was lost: no answer by the deadline, a connector that
    cannot tell, a failure while recording it. The card may have been charged,
    so this is never a decline: the transaction stays ``processing``, holding
    its token and merchant reference, until the resolver
    (``payments.services.reconciliation``) asks the acquirer and settles it."""

    code = "outcome_unknown"
    default_message = "Outcome unknown"

    def __init__(self, reason: str, *, transaction_id: int | None = None) -> None:
        self.reason = reason
        super().__init__(f"Outcome unknown: {reason}", transaction_id=transaction_id)


class TransactionNotFound(PaymentError):
    code = "transaction_not_found"
    default_message = "Unknown transaction"


class InvalidState(PaymentError):
    """The transaction's state forbids the operation (capture a voided one...)."""

    code = "invalid_state"
    default_message = "The transaction's state forbids this operation"


class AmountExceedsRemaining(PaymentError):
    """Capture over the authorized, or refund over the captured-not-refunded amount."""

    code = "amount_exceeds_remaining"

    def __init__(self, remaining: Decimal, *, places: int = 2) -> None:
        self.remaining = remaining
        super().__init__(f"Amount exceeds what remains ({remaining:.{places}f})")


class ConfirmationFailed(PaymentError):
    """The merchant did not confirm an approved payment (esipay's return URL did
    not answer 200): the payment was cancelled."""

    code = "confirmation_failed"

    def __init__(self, reason: str, *, transaction_id: int | None = None) -> None:
        self.reason = reason
        super().__init__(f"Transaction cancelled: {reason}", transaction_id=transaction_id)


class PaymentInProgress(PaymentError):
    """Another request is still paying with the same merchant reference."""

    code = "payment_in_progress"
    default_message = "A payment with this reference is still in progress: retry in a few seconds"
