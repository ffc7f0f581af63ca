"""Every resource of the secure API, through the real client (signed, encrypted):
accounts, cards on file, CVV keys, charges, listing by page and date, refunds,
cancellations (issue 8, item 2)."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from merchants.models import AccountCharge, StoredCard
from payments.models import Event, Refund, Transaction
from payments.states import Door, EventType, TransactionStatus

from .conftest import card_body, charge_body

pytestmark = pytest.mark.django_db


def test_an_account_is_created_and_read_back(api) -> None:  # type: ignore[no-untyped-def]
    created = api.post("/account", {"externalID": "cust-9", "name": "Grace Hopper", "email": "grace@example.com"})
    assert created.status == 200
    data = created.data
    assert data["externalID"] == "cust-9" and data["name"] == "Grace Hopper" and data["email"] == "grace@example.com"
    read = api.get(f"/account/{data['uuid']}")
    assert read.status == 200 and read.data == data
    # The spec writes uuids in upper case: they are the same account.
    assert api.get(f"/account/{data['uuid'].upper()}").data["uuid"] == data["uuid"]


def test_a_uuid_may_be_sent_as_an_envelope_of_itself(api, account) -> None:  # type: ignore[no-untyped-def]
    encrypted = api.envelope(account["uuid"])
    answer = api.get(f"/account/{encrypted}/paymentinfo")
    assert answer.status == 200 and answer.data == {"paymentInfos": []}


def test_a_card_is_verified_stored_listed_updated_and_deleted(api, account) -> None:  # type: ignore[no-untyped-def]
    base = f"/account/{account['uuid']}/paymentinfo"
    stored = api.post(base, card_body(cvv="123"))
    assert stored.status == 200
    card = stored.data
    year = timezone.now().year + 3
    assert card["paymentType"] == "CreditCard" and card["verified"] is True
    assert card["card"] == {"cardBrand": "Visa", "cardLastNum": "4242", "expMonth": 12, "expYear": year,
                            "holderName": "Ada Lovelace"}
    assert api.get(base).data == {"paymentInfos": [card]}
    assert api.get(f"{base}/{card['paymentInfoID']}").data == card

    updated = api.put(f"{base}/{card['paymentInfoID']}", {"card": {"expMonth": "01", "expYear": str(year + 1)}})
    assert updated.status == 200
    assert updated.data["card"]["expMonth"] == 1 and updated.data["card"]["expYear"] == year + 1
    assert updated.data["verified"] is False  # a new expiry is verified again before it is trusted
    reverified = api.post(f"{base}/{card['paymentInfoID']}/reverify", {})
    assert reverified.status == 200 and reverified.data["verified"] is True
    renamed = api.put(f"{base}/{card['paymentInfoID']}", {"card": {"holderName": "A. Lovelace"}})
    assert renamed.data["card"]["holderName"] == "A. Lovelace" and renamed.data["verified"] is True

    deleted = api.delete(f"{base}/{card['paymentInfoID']}")
    assert deleted.status == 200
    assert api.get(base).data == {"paymentInfos": []}
    assert api.get(f"{base}/{card['paymentInfoID']}").code == 903
    row = StoredCard.objects.get(uuid=card["paymentInfoID"])
    assert row.pan_sealed == "" and row.deleted_at is not None  # the number is destroyed


def test_a_mastercard_is_named_so(api, account) -> None:  # type: ignore[no-untyped-def]
    card = api.post(f"/account/{account['uuid']}/paymentinfo", card_body("5555555555554444")).data
    assert card["card"]["cardBrand"] == "MasterCard" and card["card"]["cardLastNum"] == "4444"


def test_a_charge_with_a_held_cvv_is_the_specs_success_case(api, account, card) -> None:  # type: ignore[no-untyped-def]
    key = api.post(f"/account/{account['uuid']}/paymentinfo/{card['paymentInfoID']}/cvv", {"cvv": "123"}).data
    assert len(key["cardCVVEncKey"]) == 32 and int(key["cardCVVEncKey"], 16) >= 0 and key["expiresIn"] == 900
    body = charge_body(card, order="83C2A1E7-BF50-440C-AB94-DF24E0533145", amount=10,
                       paymentInfo={"paymentType": "CreditCard", "card": {"cardCVVEncKey": key["cardCVVEncKey"]}})
    paid = api.post(f"/billing/{account['uuid']}/transaction", body)
    assert paid.status == 200, paid.body
    data = paid.data
    txn = Transaction.objects.get(pk=int(data["transactionID"]))
    assert data == {
        "uuid": account["uuid"], "orderID": "83C2A1E7-BF50-440C-AB94-DF24E0533145",
        "transactionID": str(txn.pk), "amount": Decimal("10.00"), "currencyCode": "EUR",
        "paymentDate": txn.created_at.strftime("%d/%m/%Y %H:%M:%S"), "paymentInfoID": card["paymentInfoID"],
        "paymentInfo": {"paymentType": "creditcard", "card": {"cardBrand": "Visa", "cardLastNum": "4242"}},
    }
    # A payment of the core like any other: captured, through the secure API's door, announced.
    assert txn.status == TransactionStatus.CAPTURED and txn.door == Door.SECURE_API
    assert txn.captured_amount == Decimal("10.00") and txn.merchant_reference == body["orderID"]
    assert Event.objects.filter(transaction=txn, type=EventType.PAYMENT_SUCCEEDED).exists()
    assert AccountCharge.objects.get(transaction=txn).card.uuid.hex == card["paymentInfoID"].replace("-", "")


def test_amounts_are_decimal_as_numbers_or_strings(api, account, card) -> None:  # type: ignore[no-untyped-def]
    paid = api.post(f"/billing/{account['uuid']}/transaction", charge_body(card, order="o-dec", amount=Decimal("12.34")))
    assert paid.data["amount"] == Decimal("12.34")
    as_text = api.post(f"/billing/{account['uuid']}/transaction", charge_body(card, order="o-str", amount="0.10"))
    assert as_text.data["amount"] == Decimal("0.10")
    assert Transaction.objects.get(pk=as_text.data["transactionID"]).amount == Decimal("0.10")


def _charge(api, account, card, order: str, amount: object = 10):  # type: ignore[no-untyped-def]
    answer = api.post(f"/billing/{account['uuid']}/transaction", charge_body(card, order=order, amount=amount))
    assert answer.status == 200, answer.body
    return answer.data


def test_transactions_are_listed_by_page_and_date(api, account, card) -> None:  # type: ignore[no-untyped-def]
    charges = [_charge(api, account, card, f"page-{n}", amount=n + 1) for n in range(5)]
    # Two of them on earlier days (UTC).
    today = timezone.now()
    for charge, days in ((charges[0], 10), (charges[1], 3)):
        Transaction.objects.filter(pk=charge["transactionID"]).update(created_at=today - timedelta(days=days))
    billing = f"/billing/{account['uuid']}/transactions"

    first = api.get(billing, {"pageNo": 1, "pageSize": 2}).data
    assert first["pageNo"] == 1 and first["pageSize"] == 2 and first["totalCount"] == 5
    newest = [t["orderID"] for t in first["transactions"]]
    assert newest == ["page-4", "page-3"]
    second = api.get(billing, {"pageNo": 2, "pageSize": 2}).data
    assert [t["orderID"] for t in second["transactions"]] == ["page-2", "page-1"]
    third = api.get(billing, {"pageNo": 3, "pageSize": 2}).data
    assert [t["orderID"] for t in third["transactions"]] == ["page-0"]

    day = (today - timedelta(days=3)).strftime("%Y%m%d")
    only = api.get(billing, f"pageNo=1&pageSize=10&fromDate={day}&toDate={day}").data
    assert only["totalCount"] == 1 and only["transactions"][0]["orderID"] == "page-1"
    recent = api.get(billing, {"fromDate": (today - timedelta(days=5)).strftime("%Y%m%d"),
                               "toDate": today.strftime("%Y%m%d")}).data
    assert recent["totalCount"] == 4 and recent["pageNo"] == 1 and recent["pageSize"] == 10
    listed = recent["transactions"][0]
    assert listed["status"] == "captured" and listed["amount"] == Decimal("5.00")
    assert listed["refundedAmount"] == Decimal("0.00") and listed["paymentInfoID"] == card["paymentInfoID"]

    nothing = api.get(billing, {"fromDate": "20150101", "toDate": "20150831"})
    assert nothing.status == 404 and nothing.code == 911


def test_part_of_a_charge_is_refunded_then_the_rest(api, account, card) -> None:  # type: ignore[no-untyped-def]
    charge = _charge(api, account, card, "refund-me", amount="30.00")
    path = f"/billing/{account['uuid']}/transaction/{charge['transactionID']}"
    part = api.post(f"{path}/refund", {"amount": Decimal("12.50")})
    assert part.status == 200
    assert part.data["amount"] == Decimal("12.50") and part.data["status"] == "pending"
    assert part.data["transactionID"] == charge["transactionID"] and part.data["currencyCode"] == "EUR"
    over = api.post(f"{path}/refund", {"amount": 20})
    assert over.status == 400 and over.code == 943
    assert over.error["detail"] == "amount: Amount exceeds what remains (17.50)"
    rest = api.post(f"{path}/refund", {})
    assert rest.data["amount"] == Decimal("17.50")
    detail = api.get(path).data
    assert detail["status"] == "refunded" and detail["refundedAmount"] == Decimal("30.00")
    assert [r["refundID"] for r in detail["refunds"]] == [part.data["refundID"], rest.data["refundID"]]
    assert Refund.objects.filter(transaction_id=charge["transactionID"]).count() == 2
    more = api.post(f"{path}/refund", {"amount": 1})
    assert more.status == 400 and more.code == 943 and more.error["detail"] == "transactionID: Transaction is refunded"


def test_a_charge_of_the_day_is_cancelled_once(api, account, card) -> None:  # type: ignore[no-untyped-def]
    charge = _charge(api, account, card, "cancel-me")
    path = f"/billing/{account['uuid']}/transaction/{charge['transactionID']}"
    cancelled = api.post(f"{path}/cancel")
    assert cancelled.status == 200 and cancelled.data["status"] == "voided"
    txn = Transaction.objects.get(pk=charge["transactionID"])
    assert txn.status == TransactionStatus.VOIDED and txn.captured_amount == 0
    assert Event.objects.filter(transaction=txn, type=EventType.PAYMENT_CANCELLED).exists()
    again = api.post(f"{path}/cancel")
    assert again.status == 400 and again.code == 950
    refund = api.post(f"{path}/refund", {})
    assert refund.code == 943  # nothing was captured any more


def test_a_settled_or_refunded_charge_is_not_cancelled(api, account, card) -> None:  # type: ignore[no-untyped-def]
    settled = _charge(api, account, card, "settled")
    Transaction.objects.filter(pk=settled["transactionID"]).update(updated_at=timezone.now() - timedelta(days=1))
    answer = api.post(f"/billing/{account['uuid']}/transaction/{settled['transactionID']}/cancel")
    assert answer.status == 400 and answer.code == 997
    assert answer.error["detail"].startswith("transactionID: The payment was settled") and "refund" in answer.error[
        "detail"]
    refunded = _charge(api, account, card, "refunded")
    api.post(f"/billing/{account['uuid']}/transaction/{refunded['transactionID']}/refund", {"amount": 1})
    answer = api.post(f"/billing/{account['uuid']}/transaction/{refunded['transactionID']}/cancel")
    assert answer.code == 997 and "refunded" in answer.error["detail"]
    assert Transaction.objects.get(pk=settled["transactionID"]).status == TransactionStatus.CAPTURED


def test_another_accounts_transaction_is_not_found(api, account, card) -> None:  # type: ignore[no-untyped-def]
    charge = _charge(api, account, card, "mine")
    other = api.post("/account", {}).data
    for path in (f"/billing/{other['uuid']}/transaction/{charge['transactionID']}",):
        assert api.get(path).code == 911
        assert api.post(f"{path}/refund", {}).code == 911
        assert api.post(f"{path}/cancel").code == 911
    assert api.get(f"/billing/{other['uuid']}/transactions").code == 911
