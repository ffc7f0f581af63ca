"""The secure API's resources (docs/secure-api.md, "Resources").

Each handler gets the authenticated caller, the decoded path ids and the
decrypted payload, validates it with a serializer, calls the services
(``merchants.accounts``, which charges through ``payments.services``) and
returns the answer's ``data`` object. ``base.SecureApiView`` does the rest.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema

from merchants import accounts
from merchants.models import Account, StoredCard
from payments.doors.pltoken import ApiCaller
from payments.models import Refund, Transaction
from payments.money import in_currency
from payments.states import CardBrand

from . import codes
from . import serializers as s
from .base import SecureApiView, date_text, operation, validated
from .codes import ApiError, invalid
from .schema import answers

_UUID_PARAMETER = OpenApiParameter(
    "uuid", str, OpenApiParameter.PATH,
    description="The account's uuid, plain or as an envelope of its ASCII text (the spec's step 1).",
)
_PAYMENT_INFO_PARAMETER = OpenApiParameter("payment_info_id", str, OpenApiParameter.PATH,
                                           description="The card's paymentInfoID.")
_TRANSACTION_PARAMETER = OpenApiParameter("transaction_id", str, OpenApiParameter.PATH,
                                          description="The transactionID (digits).")
_BRAND_LABELS = dict(CardBrand.choices)


# --- Answers ----------------------------------------------------------------------------


def _brand(code: str) -> str:
    return _BRAND_LABELS.get(code, code or "Unknown")


def account_data(account: Account) -> dict[str, Any]:
    return {
        "uuid": str(account.uuid), "externalID": account.external_id, "name": account.name,
        "email": account.email, "createdDate": date_text(account.created_at),
    }


def payment_info_data(card: StoredCard) -> dict[str, Any]:
    return {
        "paymentInfoID": str(card.uuid),
        "paymentType": "CreditCard",
        "card": {
            "cardBrand": _brand(card.brand), "cardLastNum": card.card_last4, "expMonth": card.exp_month,
            "expYear": card.exp_year, "holderName": card.holder_name,
        },
        "verified": card.verified,
        "createdDate": date_text(card.created_at),
    }


def _charged_card(txn: Transaction) -> dict[str, Any]:
    return {"paymentType": "creditcard", "card": {"cardBrand": _brand(txn.card_brand), "cardLastNum": txn.card_last4}}


def charge_data(account: Account, card: StoredCard, order_id: str, txn: Transaction) -> dict[str, Any]:
    return {
        "uuid": str(account.uuid), "orderID": order_id, "transactionID": str(txn.pk),
        "amount": in_currency(txn.amount, txn.currency), "currencyCode": txn.currency,
        "paymentDate": date_text(txn.created_at), "paymentInfoID": str(card.uuid),
        "paymentInfo": _charged_card(txn),
    }


def refund_data(refund: Refund, txn: Transaction) -> dict[str, Any]:
    return {
        "refundID": str(refund.pk), "transactionID": str(txn.pk), "amount": in_currency(refund.amount, txn.currency),
        "currencyCode": txn.currency, "status": str(refund.status), "requestDate": date_text(refund.created_at),
    }


def transaction_data(txn: Transaction) -> dict[str, Any]:
    charge = txn.account_charge
    data: dict[str, Any] = {
        "transactionID": str(txn.pk), "orderID": charge.order_id, "uuid": str(charge.account.uuid),
        "paymentInfoID": str(charge.card.uuid), "amount": in_currency(txn.amount, txn.currency),
        "currencyCode": txn.currency, "status": str(txn.status), "paymentDate": date_text(txn.created_at),
        # Read back from scale-2 columns: written with the currency's own decimals (1200 JPY, not 1200.00).
        "refundedAmount": in_currency(txn.refunded_amount, txn.currency),
        "paymentInfo": _charged_card(txn),
    }
    if txn.failure_code or txn.failure_message:
        data["failure"] = {"code": txn.failure_code, "message": txn.failure_message}
    return data


# --- Lookups ----------------------------------------------------------------------------


def _account(caller: ApiCaller, ids: dict[str, object]) -> Account:
    account = accounts.account_get(merchant=caller.merchant, uuid=str(ids["uuid"]))
    if account is None:
        raise ApiError(codes.ACCOUNT_NOT_FOUND, f"uuid: no account {ids['uuid']} for this merchant")
    account.merchant = caller.merchant
    return account


def _card(account: Account, card_id: object, field: str = "paymentInfoID") -> StoredCard:
    card = accounts.stored_card_get(account=account, uuid=str(card_id))
    if card is None:
        raise ApiError(codes.PAYMENT_INFO_NOT_FOUND, f"{field}: no payment info {card_id} for this account")
    card.account = account
    return card


def _transaction(account: Account, ids: dict[str, object]) -> Transaction:
    txn = accounts.account_transaction(account=account, transaction_id=int(ids["transaction_id"]))  # type: ignore[arg-type]
    if txn is None:
        raise ApiError(codes.NO_TRANSACTIONS, f"transactionID: no transaction {ids['transaction_id']} for this account")
    return txn


# --- Resources --------------------------------------------------------------------------


class AccountsView(SecureApiView):
    """Accounts are the merchant's end customers, who keep cards on file."""

    @extend_schema(operation_id="account_create", summary="Create an account", tags=["accounts"],
                   request=s.AccountCreateRequest, responses=answers(s.AccountAnswer, 997))
    def post(self, caller: ApiCaller, ids: dict[str, object], payload: Any) -> dict[str, Any]:
        body = validated(s.AccountCreateRequest, payload)
        account = accounts.account_create(
            merchant=caller.merchant, external_id=body["externalID"], name=body["name"], email=body["email"]
        )
        return account_data(account)


class AccountView(SecureApiView):
    """One of the merchant's accounts."""

    @extend_schema(operation_id="account_get", summary="An account", tags=["accounts"],
                   parameters=[_UUID_PARAMETER], responses=answers(s.AccountAnswer, 901, 997))
    def get(self, caller: ApiCaller, ids: dict[str, object], payload: Any) -> dict[str, Any]:
        return account_data(_account(caller, ids))


class PaymentInfosView(SecureApiView):
    """The cards an account keeps on file."""

    @extend_schema(operation_id="paymentinfo_list", summary="The account's cards on file", tags=["payment info"],
                   parameters=[_UUID_PARAMETER], responses=answers(s.PaymentInfoListAnswer, 901, 997))
    def get(self, caller: ApiCaller, ids: dict[str, object], payload: Any) -> dict[str, Any]:
        account = _account(caller, ids)
        return {"paymentInfos": [payment_info_data(card) for card in accounts.stored_cards(account=account)]}

    @extend_schema(
        operation_id="paymentinfo_create", summary="Store a card (verified with the acquirer)", tags=["payment info"],
        parameters=[_UUID_PARAMETER], request=s.PaymentInfoCreateRequest,
        responses=answers(s.PaymentInfoAnswer, 901, 932, 933, 997, 1701),
        description="The card is verified with a zero-amount authorization (with its CVV when given, which is "
                    "never stored) and kept only if the acquirer approves (932 otherwise).",
    )
    @operation(codes.STORE_CARD)
    def post(self, caller: ApiCaller, ids: dict[str, object], payload: Any) -> dict[str, Any]:
        account = _account(caller, ids)
        body = validated(s.PaymentInfoCreateRequest, payload)
        card = body["card"]
        stored = accounts.stored_card_create(
            account=account, number=card["number"], exp_month=card["expMonth"], exp_year=card["expYear"],
            holder_name=card["holderName"], cvv=card["cvv"],
        )
        return payment_info_data(stored)


class PaymentInfoView(SecureApiView):
    """One card on file."""

    @extend_schema(operation_id="paymentinfo_get", summary="A card on file", tags=["payment info"],
                   parameters=[_UUID_PARAMETER, _PAYMENT_INFO_PARAMETER],
                   responses=answers(s.PaymentInfoAnswer, 901, 903, 997))
    def get(self, caller: ApiCaller, ids: dict[str, object], payload: Any) -> dict[str, Any]:
        return payment_info_data(_card(_account(caller, ids), ids["payment_info_id"]))

    @extend_schema(operation_id="paymentinfo_update", summary="Change a card's expiry or holder", tags=["payment info"],
                   parameters=[_UUID_PARAMETER, _PAYMENT_INFO_PARAMETER], request=s.PaymentInfoUpdateRequest,
                   responses=answers(s.PaymentInfoAnswer, 901, 903, 934, 997),
                   description="A new expiry makes the card unverified until it is reverified.")
    @operation(codes.UPDATE_CARD)
    def put(self, caller: ApiCaller, ids: dict[str, object], payload: Any) -> dict[str, Any]:
        card = _card(_account(caller, ids), ids["payment_info_id"])
        body = validated(s.PaymentInfoUpdateRequest, payload)["card"]
        updated = accounts.stored_card_update(
            card=card, exp_month=body.get("expMonth"), exp_year=body.get("expYear"),
            holder_name=body.get("holderName"),
        )
        return payment_info_data(updated)

    @extend_schema(operation_id="paymentinfo_delete", summary="Delete a card (its number is destroyed)",
                   tags=["payment info"], parameters=[_UUID_PARAMETER, _PAYMENT_INFO_PARAMETER],
                   responses=answers(s.PaymentInfoAnswer, 901, 903, 935, 997))
    @operation(codes.DELETE_CARD)
    def delete(self, caller: ApiCaller, ids: dict[str, object], payload: Any) -> dict[str, Any]:
        card = _card(_account(caller, ids), ids["payment_info_id"])
        return payment_info_data(accounts.stored_card_delete(card=card))


class ReverifyView(SecureApiView):
    """A card verified again with the acquirer (a zero-amount authorization)."""

    @extend_schema(operation_id="paymentinfo_reverify", summary="Verify a card again", tags=["payment info"],
                   parameters=[_UUID_PARAMETER, _PAYMENT_INFO_PARAMETER], request=s.ReverifyRequest,
                   responses=answers(s.PaymentInfoAnswer, 901, 903, 937, 997, 1701))
    @operation(codes.REVERIFY_CARD)
    def post(self, caller: ApiCaller, ids: dict[str, object], payload: Any) -> dict[str, Any]:
        card = _card(_account(caller, ids), ids["payment_info_id"])
        body = validated(s.ReverifyRequest, payload)
        return payment_info_data(accounts.stored_card_reverify(card=card, cvv=body["cvv"]))


class CvvView(SecureApiView):
    """A CVV held for the card's next charge."""

    @extend_schema(operation_id="paymentinfo_cvv", summary="Hold a CVV for the next charge", tags=["payment info"],
                   parameters=[_UUID_PARAMETER, _PAYMENT_INFO_PARAMETER], request=s.CvvRequest,
                   responses=answers(s.CvvAnswer, 901, 903, 997),
                   description="The CVV is kept encrypted, for one charge within 15 minutes, and destroyed by it.")
    def post(self, caller: ApiCaller, ids: dict[str, object], payload: Any) -> dict[str, Any]:
        card = _card(_account(caller, ids), ids["payment_info_id"])
        body = validated(s.CvvRequest, payload)
        return {"cardCVVEncKey": accounts.cvv_hold(card=card, cvv=body["cvv"]),
                "expiresIn": settings.SECURE_API_CVV_TTL_SECONDS}


class ChargeView(SecureApiView):
    """Charges of a card on file."""

    order_field = "orderID"

    @extend_schema(
        operation_id="transaction_create", summary="Charge a stored card", tags=["billing"],
        parameters=[_UUID_PARAMETER], request=s.ChargeRequest,
        responses=answers(s.ChargeAnswer, 901, 903, 936, 938, 997, 1600, 1701, 409),
        description="Authorized and captured at once. orderID is unique per merchant: a repeat with the same "
                    "body replays the first answer (success or error) and charges nothing.",
    )
    @operation(codes.CHARGE)
    def post(self, caller: ApiCaller, ids: dict[str, object], payload: Any) -> dict[str, Any]:
        body = validated(s.ChargeRequest, payload)
        # The card and its account in one query; when there is none, say which is missing.
        card = accounts.stored_card_of(merchant=caller.merchant, account_uuid=str(ids["uuid"]),
                                       card_uuid=str(body["paymentInfoID"]))
        if card is None:
            _card(_account(caller, ids), body["paymentInfoID"])  # raises 901 or 903
        account = card.account  # type: ignore[union-attr]
        account.merchant = caller.merchant
        if body["currencyCode"] != caller.merchant.currency:
            raise invalid("currencyCode", f"must be the merchant's currency, {caller.merchant.currency}")
        cvv_key = ((body.get("paymentInfo") or {}).get("card") or {}).get("cardCVVEncKey", "")
        txn = accounts.account_charge(
            account=account, card=card, order_id=body["orderID"], amount=body["amount"],  # type: ignore[arg-type]
            currency=body["currencyCode"], cvv_key=cvv_key,
        )
        return charge_data(account, card, body["orderID"], txn)


class TransactionsView(SecureApiView):
    """The account's transactions."""

    @extend_schema(
        operation_id="transaction_list", summary="The account's transactions, by page and date", tags=["billing"],
        parameters=[
            _UUID_PARAMETER,
            OpenApiParameter("pageNo", int, description="From 1 (default 1). Sent encrypted: data=<envelope of "
                                                        "pageNo=1&pageSize=10&fromDate=...>"),
            OpenApiParameter("pageSize", int, description="1 to 100 (default 10)."),
            OpenApiParameter("fromDate", {"type": "string", "pattern": "^[0-9]{8}$"},
                             description="YYYYMMDD (UTC), included."),
            OpenApiParameter("toDate", {"type": "string", "pattern": "^[0-9]{8}$"},
                             description="YYYYMMDD (UTC), included."),
        ],
        responses=answers(s.TransactionPageAnswer, 901, 911, 997),
    )
    def get(self, caller: ApiCaller, ids: dict[str, object], payload: Any) -> dict[str, Any]:
        account = _account(caller, ids)
        query = validated(s.TransactionsQuery, payload)
        found = accounts.account_transactions(
            account=account, from_date=query.get("fromDate"), to_date=query.get("toDate")
        )
        total = found.count()
        if total == 0:
            raise ApiError(codes.NO_TRANSACTIONS, "fromDate/toDate: no transactions for this account in that period")
        start = (query["pageNo"] - 1) * query["pageSize"]
        page = list(found[start:start + query["pageSize"]])
        return {"pageNo": query["pageNo"], "pageSize": query["pageSize"], "totalCount": total,
                "transactions": [transaction_data(txn) for txn in page]}


class TransactionView(SecureApiView):
    """One of the account's transactions."""

    @extend_schema(operation_id="transaction_get", summary="A transaction, with its refunds", tags=["billing"],
                   parameters=[_UUID_PARAMETER, _TRANSACTION_PARAMETER],
                   responses=answers(s.TransactionDetailAnswer, 901, 911, 997))
    def get(self, caller: ApiCaller, ids: dict[str, object], payload: Any) -> dict[str, Any]:
        txn = _transaction(_account(caller, ids), ids)
        data = transaction_data(txn)
        data["refunds"] = [refund_data(refund, txn) for refund in txn.refunds.order_by("created_at", "id")]
        return data


class RefundView(SecureApiView):
    """Refunds of a transaction."""

    @extend_schema(
        operation_id="transaction_refund", summary="Refund (part of) a transaction", tags=["billing"],
        parameters=[_UUID_PARAMETER, _TRANSACTION_PARAMETER], request=s.RefundRequest,
        responses=answers(s.RefundAnswer, 901, 911, 943, 997, 409),
        description="Accepted at once (status pending, the amount reserved); the acquirer is asked by a worker. "
                    "With an Idempotency-Key, a repeat returns the same refund.",
    )
    @operation(codes.REFUND)
    def post(self, caller: ApiCaller, ids: dict[str, object], payload: Any) -> dict[str, Any]:
        account = _account(caller, ids)
        txn = _transaction(account, ids)
        body = validated(s.RefundRequest, payload)
        refund = accounts.account_refund(
            account=account, transaction_id=txn.pk, amount=body.get("amount"), reference=self.refund_reference()
        )
        return refund_data(refund, txn)


class CancelView(SecureApiView):
    """Cancellation of a transaction not settled yet."""

    @extend_schema(
        operation_id="transaction_cancel", summary="Cancel a transaction not settled yet", tags=["billing"],
        parameters=[_UUID_PARAMETER, _TRANSACTION_PARAMETER], request=None,
        responses=answers(s.TransactionAnswer, 901, 911, 950, 997, 409),
        description="Voids the payment if it is not settled yet (captured today, UTC, and not refunded); "
                    "otherwise refund it.",
    )
    @operation(codes.CANCEL)
    def post(self, caller: ApiCaller, ids: dict[str, object], payload: Any) -> dict[str, Any]:
        account = _account(caller, ids)
        txn = _transaction(account, ids)
        accounts.account_cancel(account=account, transaction_id=txn.pk)
        return transaction_data(_transaction(account, ids))


class NotFoundView(SecureApiView):
    """Any other path under /account or /billing: 996 (after authentication, encrypted)."""

    def _run(self, request, caller, kwargs):  # type: ignore[no-untyped-def]
        raise ApiError(codes.NO_SUCH_RESOURCE, f"path: no resource {request.path}")
