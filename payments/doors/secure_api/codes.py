"""The secure API's error table (shared/contracts/secure-api.md, "Errors"), and the
payment core's errors (``payments.errors``) translated onto it.

Every answer that is not a success is ``{"error": {"code", "message",
"detail"}}`` with the status of the table; ``message`` is the spec's text for
the code, ``detail`` says what was wrong and, where a field was, starts with
its name (``amount: ...``, ``card.number: ...``).
"""
from __future__ import annotations

from dataclasses import dataclass

from merchants import accounts
from payments import errors, services


@dataclass(frozen=True)
class Code:
    code: int
    status: int
    message: str


ACCOUNT_NOT_FOUND = Code(901, 404, "This account does not exist.")
PAYMENT_INFO_NOT_FOUND = Code(903, 404, "This account's payment information does not exist.")
NO_TRANSACTIONS = Code(911, 404, "This account does not have transactions.")
VERIFICATION_FAILED = Code(932, 400, "PSP verification processing failed.")
PAYMENT_INFO_CREATE_FAILED = Code(933, 400, "Failed to create payment information.")
PAYMENT_INFO_UPDATE_FAILED = Code(934, 400, "Failed to update payment information.")
PAYMENT_INFO_DELETE_FAILED = Code(935, 400, "Failed to delete payment information.")
PAYMENT_NOT_CREATED = Code(936, 400, "Failed to create payments.")
PAYMENT_INFO_REVERIFY_FAILED = Code(937, 400, "Failed to re-verify payment information.")
DECLINED = Code(938, 400, "PSP payment processing failed.")
REFUND_FAILED = Code(943, 400, "Failed to refund payments")
ALREADY_CANCELLED = Code(950, 400, "Request is canceled by the mobile client.")
FORBIDDEN = Code(993, 403, "You do not have authorization.")
METHOD_NOT_ALLOWED = Code(995, 405, "Requested method is not allowed.")
NO_SUCH_RESOURCE = Code(996, 404, "Cannot find resource. Please check resource.")
INVALID_REQUEST = Code(997, 400, "The request is invalid.")
# A repeat of an Idempotency-Key or orderID whose first request is still running:
# HTTP 409 (the contract), with the table's "invalid request" code.
IN_PROGRESS = Code(997, 409, "The request is invalid.")
AUTHENTICATION = Code(998, 401, "Authentication token is missing or incorrect.")
INTERNAL = Code(999, 500, "Internal Error.")
CVV_KEY = Code(1600, 400, "SAKA error - Get CVV")
RISK = Code(1701, 400, "Sphonic error")

TABLE = [
    ACCOUNT_NOT_FOUND, PAYMENT_INFO_NOT_FOUND, NO_TRANSACTIONS, VERIFICATION_FAILED, PAYMENT_INFO_CREATE_FAILED,
    PAYMENT_INFO_UPDATE_FAILED, PAYMENT_INFO_DELETE_FAILED, PAYMENT_NOT_CREATED, PAYMENT_INFO_REVERIFY_FAILED,
    DECLINED, REFUND_FAILED, ALREADY_CANCELLED, FORBIDDEN, METHOD_NOT_ALLOWED, NO_SUCH_RESOURCE, INVALID_REQUEST,
    IN_PROGRESS, AUTHENTICATION, INTERNAL, CVV_KEY, RISK,
]


class ApiError(Exception):
    """An answer from the error table."""

    def __init__(self, code: Code, detail: str | None = None) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code.code} {detail or code.message}")

    def body(self) -> dict[str, object]:
        return {"error": {"code": self.code.code, "message": self.code.message, "detail": self.detail}}


def invalid(field: str, problem: str) -> ApiError:
    return ApiError(INVALID_REQUEST, f"{field}: {problem}")


@dataclass(frozen=True)
class Operation:
    """What a core error means for one operation: a declined verification is
    932 when storing a card and 937 when reverifying; a rule failing is 933
    (store), 934 (update), 936 (charge)..."""

    declined: Code
    failed: Code


STORE_CARD = Operation(declined=VERIFICATION_FAILED, failed=PAYMENT_INFO_CREATE_FAILED)
UPDATE_CARD = Operation(declined=PAYMENT_INFO_UPDATE_FAILED, failed=PAYMENT_INFO_UPDATE_FAILED)
DELETE_CARD = Operation(declined=PAYMENT_INFO_DELETE_FAILED, failed=PAYMENT_INFO_DELETE_FAILED)
REVERIFY_CARD = Operation(declined=PAYMENT_INFO_REVERIFY_FAILED, failed=PAYMENT_INFO_REVERIFY_FAILED)
CHARGE = Operation(declined=DECLINED, failed=PAYMENT_NOT_CREATED)
REFUND = Operation(declined=REFUND_FAILED, failed=REFUND_FAILED)
CANCEL = Operation(declined=PAYMENT_NOT_CREATED, failed=INVALID_REQUEST)
ANY = Operation(declined=INVALID_REQUEST, failed=INVALID_REQUEST)


def from_payment_error(exc: errors.PaymentError, operation: Operation) -> ApiError:
    """The table's answer to a core error raised during ``operation``."""
    if isinstance(exc, errors.InvalidRequest):
        return ApiError(INVALID_REQUEST, exc.detail)
    if isinstance(exc, errors.InvalidAmount):
        return invalid("amount", f"{exc.message}: a positive amount with the currency's decimals")
    if isinstance(exc, errors.InvalidCardNumber):
        return invalid("card.number", f"{exc.message}: 12 to 19 digits with a valid Luhn check digit")
    if isinstance(exc, errors.InvalidCardExpiry):
        return invalid("card.expMonth/expYear", exc.message)
    if isinstance(exc, errors.CardExpired):
        return ApiError(operation.failed, f"card.expMonth/expYear: {exc.message}")
    if isinstance(exc, (errors.CardBanned, errors.CheckBanned)):
        return ApiError(RISK, "card: this card or its BIN is on the gateway's ban list")
    if isinstance(exc, errors.LimitExceeded):
        return ApiError(operation.failed, f"amount: {exc.message}")
    if isinstance(exc, errors.Declined):
        suffix = f" (transactionID {exc.transaction_id})" if exc.transaction_id else ""
        return ApiError(operation.declined, f"declined by the acquirer: {exc.reason}{suffix}")
    if isinstance(exc, errors.PaymentOutcomeUnknown):
        # The card may have been charged: never "declined". The gateway settles
        # it (inquiry, reversal of an approval nobody was told about).
        suffix = f" (transactionID {exc.transaction_id})" if exc.transaction_id else ""
        return ApiError(INTERNAL, f"outcome unknown: {exc.reason}{suffix}; do not charge again: the gateway "
                        "settles it within minutes, look the transaction up")
    if isinstance(exc, errors.AcquirerFailure):
        suffix = f" (transactionID {exc.transaction_id})" if exc.transaction_id else ""
        return ApiError(operation.declined, f"the acquirer failed: {exc.reason}{suffix}")
    if isinstance(exc, errors.NotAuthorized):
        return ApiError(FORBIDDEN, exc.message)
    if isinstance(exc, errors.TransactionNotFound):
        return ApiError(NO_TRANSACTIONS, "transactionID: no such transaction for this account")
    if isinstance(exc, errors.AmountExceedsRemaining):
        return ApiError(REFUND_FAILED, f"amount: {exc.message}")
    if isinstance(exc, services.AlreadyCancelled):
        return ApiError(ALREADY_CANCELLED, "transactionID: the payment was already cancelled")
    if isinstance(exc, errors.InvalidState):
        return ApiError(operation.failed, f"transactionID: {exc.message}")
    if isinstance(exc, errors.PaymentInProgress):
        return ApiError(IN_PROGRESS, "orderID: a payment with this orderID is still being processed: retry later")
    if isinstance(exc, accounts.CvvKeyInvalid):
        return ApiError(CVV_KEY, f"paymentInfo.card.cardCVVEncKey: {exc.message}")
    if isinstance(exc, accounts.CardAlreadyOnFile):
        return ApiError(PAYMENT_INFO_CREATE_FAILED, f"card.number: {exc.message}")
    if isinstance(exc, accounts.CardInUse):
        return ApiError(PAYMENT_INFO_DELETE_FAILED, f"paymentInfoID: {exc.message}")
    return ApiError(operation.failed, exc.message)
