"""esipay's door: HTTP path in, HTTP status out (shared/contracts/esipay.md).

Clients in the wild read only the status code; the JSON body is for people
and logs. This module parses the path, checks the caller's address, calls
``payments.services`` and maps ``payments.errors`` to 400 / 403 / 500. The
return-URL call is made here (it is this door's confirmation) through
``payments.outbound``, which refuses private destinations and pins DNS.
"""
from __future__ import annotations

import logging
import re
import uuid

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from merchants.models import Merchant
from payments import cards, errors, outbound, services
from payments.db import require_no_transaction
from payments.doors.http import caller_address
from payments.money import format_amount
from payments.models import Transaction
from payments.states import Door

logger = logging.getLogger(__name__)

_CID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
# The merchant's refund id (``?ref=``): the same alphabet as a cid.
_REF = _CID
_TRANSACTION_ID = re.compile(r"[0-9]{1,18}\Z")
# esipay.md: "a positive decimal with `.` and at most 2 decimals", written so:
# "12.500" is refused here, even though the core's parser would read it. The
# currency's own decimals (JPY: none, so "12.50" is refused) are the core's rule.
_AMOUNT = re.compile(r"[0-9]+(\.[0-9]{1,2})?\Z")


def _amount(raw: str) -> str:
    if not _AMOUNT.match(raw):
        raise errors.InvalidAmount()
    return raw

_STATUS: dict[type[errors.PaymentError], int] = {
    errors.NotAuthorized: 403,
    errors.AcquirerFailure: 500,
    errors.ConfirmationFailed: 500,
    errors.PaymentInProgress: 500,
    # The card may have been charged: never a 400 "declined". A repeat of the
    # cid answers the outcome once the gateway has settled it.
    errors.PaymentOutcomeUnknown: 500,
    # Our configuration, not the merchant's request: staff must set limits or a currency.
    errors.LimitsNotConfigured: 500,
    errors.UnsupportedCurrency: 500,
}


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message
        super().__init__(message)


def _error(status: int, code: str, message: str, transaction: int | None = None) -> JsonResponse:
    body: dict[str, object] = {"error": message, "code": code}
    if transaction is not None:
        body["transaction"] = transaction
    return JsonResponse(body, status=status)


def _payment_error(exc: errors.PaymentError) -> JsonResponse:
    status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 400)
    return _error(status, exc.code, exc.message, exc.transaction_id)


def _merchant_for(request: HttpRequest, raw_uuid: str) -> Merchant:
    """The merchant named by the path, if the caller calls from one of its addresses."""
    try:
        merchant_uuid = uuid.UUID(raw_uuid)
    except ValueError:
        raise _Refused(400, "unknown_merchant", "Unknown merchant uuid") from None
    merchant = Merchant.objects.filter(uuid=merchant_uuid).first()
    if merchant is None:
        raise _Refused(400, "unknown_merchant", "Unknown merchant uuid")
    caller = caller_address(request)  # REMOTE_ADDR, or X-Forwarded-For from a trusted proxy
    if not merchant.is_active or caller not in merchant.allowed_ips:
        logger.warning("esipay: merchant %s called from unregistered address %s", merchant.uuid, caller or "?")
        raise _Refused(403, "forbidden_address", "This address is not registered for the merchant")
    return merchant


def _return_url_confirms(merchant: Merchant, cid: str):  # type: ignore[no-untyped-def]
    """esipay's confirmation: a form POST to the return URL must answer 200."""

    def confirm(txn: Transaction) -> tuple[bool, str]:
        require_no_transaction("return-URL call")
        response = outbound.post(
            merchant.callback_url,
            data={
                "type": "card", "amount": format_amount(txn.amount, txn.currency), "transaction": str(txn.pk),
                "cid": cid,
            },
        )
        if response.ok:
            return True, ""
        return False, response.error or f"the return URL answered {response.status}"

    return confirm


@csrf_exempt
@require_http_methods(["GET", "POST"])
def card_payment(
    request: HttpRequest, merchant: str, cid: str, cardnumber: str, cardmonth: str, cardyear: str, amount: str
) -> JsonResponse:
    try:
        payee = _merchant_for(request, merchant)
        if not _CID.match(cid):
            raise _Refused(400, "invalid_cid", "cid must be 1 to 64 letters, digits, '.', '_' or '-'")
        if not payee.callback_url:
            raise _Refused(500, "no_return_url", "The merchant has no return URL registered: nothing was charged")
        result = services.payment_card_confirmed(
            merchant_pk=payee.pk,
            door=Door.ESIPAY,
            reference=cid,
            card_number=cardnumber,
            expiry_month=cardmonth,
            expiry_year=cardyear,
            amount=_amount(amount),
            policy=cards.ESIPAY_PAN,
            confirm=_return_url_confirms(payee, cid),
        )
    except _Refused as exc:
        return _error(exc.status, exc.code, exc.message)
    except errors.PaymentError as exc:
        return _payment_error(exc)
    except Exception:  # our own failure: an authorization it left unconfirmed is voided by the sweep
        logger.exception("esipay card payment failed")
        return _error(500, "internal_error", "Internal error: retry later")
    txn = result.transaction
    return JsonResponse(
        {"transaction": txn.pk, "amount": format_amount(txn.amount, txn.currency), "status": str(txn.status),
         "cid": cid, "repeated": result.repeated}
    )


def _refund_reference(request: HttpRequest) -> str:
    """The merchant's refund id from ``?ref=``: '' when absent, 400 when malformed.

    Only the query string counts (GET or POST alike); given twice, it is refused
    rather than one of the two silently chosen.
    """
    values = request.GET.getlist("ref")
    if not values:
        return ""
    if len(values) > 1 or not _REF.match(values[0]):
        raise _Refused(400, "invalid_ref", "ref must be given once, 1 to 64 letters, digits, '.', '_' or '-'")
    return values[0]


@csrf_exempt
@require_http_methods(["GET", "POST"])
def refund(request: HttpRequest, merchant: str, transaction: str, amount: str | None = None) -> JsonResponse:
    try:
        payee = _merchant_for(request, merchant)
        if not _TRANSACTION_ID.match(transaction):
            raise errors.TransactionNotFound()
        reference = _refund_reference(request)
        accepted = services.refund_request(
            transaction_id=int(transaction), merchant_pk=payee.pk,
            amount=None if amount is None else _amount(amount), reference=reference,
        )
    except _Refused as exc:
        return _error(exc.status, exc.code, exc.message)
    except errors.PaymentError as exc:
        return _payment_error(exc)
    except Exception:
        logger.exception("esipay refund failed")
        return _error(500, "internal_error", "Internal error: retry later")
    currency = accepted.transaction.currency
    return JsonResponse(
        {"transaction": accepted.transaction_id, "refund": accepted.pk, "ref": accepted.reference or None,
         "amount": format_amount(accepted.amount, currency), "status": str(accepted.status)}
    )
