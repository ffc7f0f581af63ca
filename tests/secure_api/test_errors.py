"""Every error of the contract's table, with its status, the spec's message and a
detail that names the field (issue 8, item 2). 998 (authentication) is in
test_replays.py, 409 (in progress) in test_idempotency.py."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from merchants.credentials import api_keys_issue
from merchants.models import AccountCharge, StoredCard
from payments import services
from payments.doors.secure_api import codes
from payments.models import Transaction
from payments.states import AcquirerOperation, BanKind, Door, TransactionStatus
from tests.factories import CapturedTransactionFactory, MerchantFactory

from .conftest import card_body, charge_body, wsgi_client

pytestmark = pytest.mark.django_db
MESSAGES = {code.code: code.message for code in codes.TABLE if code.status != 409}


def assert_error(answer, code: int, status: int, field: str | None = None) -> str:  # type: ignore[no-untyped-def]
    assert answer.status == status, answer.body
    assert set(answer.body) == {"error"} and set(answer.error) == {"code", "message", "detail"}
    assert answer.code == code and answer.error["message"] == MESSAGES[code], answer.body
    detail = answer.error["detail"]
    if field is not None:
        assert detail.startswith(f"{field}: "), detail
    return detail


def test_901_an_unknown_account_and_another_merchants(api, account) -> None:  # type: ignore[no-untyped-def]
    assert_error(api.get(f"/account/{uuid.uuid4()}"), 901, 404, "uuid")
    other = wsgi_client(api_keys_issue(merchant=MerchantFactory()))
    theirs = other.post("/account", {}).data
    # Another merchant's account does not exist for this one (not 993: nothing is revealed).
    assert_error(api.get(f"/account/{theirs['uuid']}"), 901, 404, "uuid")
    assert_error(api.post(f"/billing/{theirs['uuid']}/transaction", charge_body({"paymentInfoID": str(uuid.uuid4())})),
                 901, 404, "uuid")


def test_903_an_unknown_or_deleted_card(api, account, card) -> None:  # type: ignore[no-untyped-def]
    base = f"/account/{account['uuid']}/paymentinfo"
    assert_error(api.get(f"{base}/{uuid.uuid4()}"), 903, 404, "paymentInfoID")
    unknown = charge_body({"paymentInfoID": str(uuid.uuid4())}, order="unknown-card")
    assert_error(api.post(f"/billing/{account['uuid']}/transaction", unknown), 903, 404, "paymentInfoID")
    api.delete(f"{base}/{card['paymentInfoID']}")
    deleted = charge_body(card, order="deleted-card")
    assert_error(api.post(f"/billing/{account['uuid']}/transaction", deleted), 903, 404, "paymentInfoID")


def test_911_no_transactions(api, account) -> None:  # type: ignore[no-untyped-def]
    assert_error(api.get(f"/billing/{account['uuid']}/transactions"), 911, 404, "fromDate/toDate")
    assert_error(api.get(f"/billing/{account['uuid']}/transaction/123"), 911, 404, "transactionID")


@pytest.mark.parametrize(("number", "reason"), [
    ("4000000000000002", "card declined"),
    ("4000000000000069", "expired card"),
    ("4000000000000119", "the acquirer failed"),
])
def test_932_a_card_the_acquirer_does_not_verify_is_not_kept(api, account, number, reason) -> None:  # type: ignore[no-untyped-def]
    answer = api.post(f"/account/{account['uuid']}/paymentinfo", card_body(number, cvv="123"))
    detail = assert_error(answer, 932, 400)
    assert reason in detail
    assert not StoredCard.objects.exists()


def test_933_a_card_already_on_file_or_expired(api, account, card) -> None:  # type: ignore[no-untyped-def]
    base = f"/account/{account['uuid']}/paymentinfo"
    detail = assert_error(api.post(base, card_body()), 933, 400, "card.number")
    assert card["paymentInfoID"] in detail
    last_year = timezone.now().year - 1
    assert_error(api.post(base, card_body("5555555555554444", expYear=last_year)), 933, 400, "card.expMonth/expYear")
    assert StoredCard.objects.count() == 1


def test_934_an_update_to_a_past_expiry(api, account, card) -> None:  # type: ignore[no-untyped-def]
    path = f"/account/{account['uuid']}/paymentinfo/{card['paymentInfoID']}"
    answer = api.put(path, {"card": {"expMonth": 1, "expYear": timezone.now().year - 1}})
    assert_error(answer, 934, 400, "card.expMonth/expYear")
    assert api.get(path).data["card"]["expYear"] == card["card"]["expYear"]


def test_935_a_card_whose_charge_is_still_with_the_acquirer(api, account, card, merchant) -> None:  # type: ignore[no-untyped-def]
    stored = StoredCard.objects.get(uuid=card["paymentInfoID"])
    in_flight = CapturedTransactionFactory(merchant=merchant, door=Door.SECURE_API, status=TransactionStatus.PROCESSING,
                                           operation=AcquirerOperation.AUTHORIZE, merchant_reference="slow-order")
    AccountCharge.objects.create(merchant=merchant, account=stored.account, card=stored, order_id="slow-order",
                                 transaction=in_flight)
    path = f"/account/{account['uuid']}/paymentinfo/{card['paymentInfoID']}"
    assert_error(api.delete(path), 935, 400, "paymentInfoID")
    assert api.get(path).status == 200  # still on file


def test_936_a_charge_over_the_card_limit_or_on_an_expired_card(api, account, card) -> None:  # type: ignore[no-untyped-def]
    billing = f"/billing/{account['uuid']}/transaction"
    detail = assert_error(api.post(billing, charge_body(card, order="big", amount=2600)), 936, 400, "amount")
    assert "2500.00" in detail
    StoredCard.objects.filter(uuid=card["paymentInfoID"]).update(exp_year=timezone.now().year - 1)
    assert_error(api.post(billing, charge_body(card, order="old")), 936, 400, "card.expMonth/expYear")


def test_937_a_reverification_the_acquirer_refuses(api, account, card, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PAYMENTS_ACQUIRER = "tests.secure_api.acquirers.DecliningVerifications"
    path = f"/account/{account['uuid']}/paymentinfo/{card['paymentInfoID']}"
    assert "do not honour" in assert_error(api.post(f"{path}/reverify", {"cvv": "123"}), 937, 400)
    assert api.get(path).data["verified"] is False


def test_938_a_charge_the_acquirer_declines(api, account) -> None:  # type: ignore[no-untyped-def]
    # A zero-amount verification does not check funds: the card is kept, its charge declined.
    poor = api.post(f"/account/{account['uuid']}/paymentinfo", card_body("4000000000009995")).data
    assert poor["verified"] is True
    answer = api.post(f"/billing/{account['uuid']}/transaction", charge_body(poor, order="poor"))
    detail = assert_error(answer, 938, 400)
    txn = Transaction.objects.get(merchant_reference="poor")
    assert detail == f"declined by the acquirer: insufficient funds (transactionID {txn.pk})"
    assert txn.status == TransactionStatus.DECLINED
    listed = api.get(f"/billing/{account['uuid']}/transactions").data["transactions"]
    assert listed[0]["status"] == "declined" and listed[0]["failure"]["message"] == "insufficient funds"


def test_943_950_refund_and_cancel_refusals(api, account, card) -> None:  # type: ignore[no-untyped-def]
    paid = api.post(f"/billing/{account['uuid']}/transaction", charge_body(card, amount=5)).data
    path = f"/billing/{account['uuid']}/transaction/{paid['transactionID']}"
    assert_error(api.post(f"{path}/refund", {"amount": "5.01"}), 943, 400, "amount")
    assert api.post(f"{path}/cancel").status == 200
    assert_error(api.post(f"{path}/cancel"), 950, 400, "transactionID")
    assert_error(api.post(f"{path}/refund", {}), 943, 400, "transactionID")


def test_993_a_call_from_outside_the_merchants_api_addresses(api, account, merchant) -> None:  # type: ignore[no-untyped-def]
    merchant.api_allowed_ips = ["203.0.113.7"]
    merchant.save()
    assert_error(api.get(f"/account/{account['uuid']}"), 993, 403, "address")  # httpx's WSGI caller is 127.0.0.1
    merchant.api_allowed_ips = ["203.0.113.7", "127.0.0.1"]
    merchant.save()
    assert api.get(f"/account/{account['uuid']}").status == 200


def test_995_a_method_the_resource_does_not_have(api, account) -> None:  # type: ignore[no-untyped-def]
    assert_error(api.request("PATCH", f"/account/{account['uuid']}", {}), 995, 405, "method")
    assert_error(api.delete(f"/account/{account['uuid']}"), 995, 405, "method")
    assert_error(api.get("/account"), 995, 405, "method")


def test_996_no_such_resource(api, account) -> None:  # type: ignore[no-untyped-def]
    assert_error(api.get(f"/account/{account['uuid']}/loyalty"), 996, 404, "path")
    assert_error(api.post("/billing", {}), 996, 404, "path")


@pytest.mark.parametrize(("change", "field"), [
    ({"amount": "ten"}, "amount"),
    ({"amount": 10.001}, "amount"),
    ({"amount": -5}, "amount"),
    ({"amount": 0}, "amount"),
    ({"currencyCode": "GBP"}, "currencyCode"),
    ({"currencyCode": "euro"}, "currencyCode"),
    ({"orderID": ""}, "orderID"),
    ({"orderID": "has space"}, "orderID"),
    ({"paymentInfoID": "not-a-uuid"}, "paymentInfoID"),
    ({"ipAddr": "999.1.1.1"}, "ipAddr"),
    ({"paymentInfo": {"card": {"cardCVVEncKey": ["x"]}}}, "paymentInfo.card.cardCVVEncKey"),
])
def test_997_names_the_bad_field_of_a_charge(api, account, card, change, field) -> None:  # type: ignore[no-untyped-def]
    body = {**charge_body(card, order="bad-field"), **change}
    assert_error(api.post(f"/billing/{account['uuid']}/transaction", body), 997, 400, field)
    assert not Transaction.objects.exists()


def test_997_a_missing_field_and_bad_cards(api, account) -> None:  # type: ignore[no-untyped-def]
    base = f"/account/{account['uuid']}/paymentinfo"
    body = card_body()
    del body["card"]["number"]
    assert "required" in assert_error(api.post(base, body), 997, 400, "card.number")
    assert_error(api.post(base, card_body("4242424242424241")), 997, 400, "card.number")  # Luhn
    assert_error(api.post(base, card_body("42424242424")), 997, 400, "card.number")  # 11 digits
    assert_error(api.post(base, card_body(expMonth=13)), 997, 400, "card.expMonth/expYear")
    assert_error(api.post(base, card_body(cvv="12")), 997, 400, "cvv")
    assert_error(api.post(base, {"paymentType": "Cash", "card": body["card"]}), 997, 400, "paymentType")
    assert_error(api.post("/account", {"email": "not an address"}), 997, 400, "email")
    assert not StoredCard.objects.exists()


def test_997_for_the_wire_format(api, account) -> None:  # type: ignore[no-untyped-def]
    http, url = api.http, f"{api.base_url}/account"
    from clients.secure_api import authorization, encrypt

    def send(body: bytes, uri: str = url, method: str = "POST"):  # type: ignore[no-untyped-def]
        header = authorization(app_id=api.app_id, app_key=api.app_key, method=method, uri=uri, body=body)
        return api.read(http.request(method, uri, content=body, headers={"Authorization": header}))

    assert_error(send(b"data=zz"), 997, 400, "data")
    assert_error(send(b"data=" + encrypt(api.data_key, b"[1, 2]").encode()), 997, 400, "data")
    assert_error(send(b"data=" + encrypt(api.data_key, b"{not json").encode()), 997, 400, "data")
    assert_error(send(b'{"externalID": "x"}'), 997, 400, "data")
    assert_error(send(b"data=" + encrypt(api.data_key, b"{}").encode() + b"&name=x"), 997, 400, "name")
    assert_error(send(b"", uri=f"{api.base_url}/account/{account['uuid']}?name=x", method="GET"), 997, 400, "name")
    assert_error(api.get("/account/12345"), 997, 400, "uuid")
    assert_error(api.get(f"/billing/{account['uuid']}/transaction/12ab"), 997, 400, "transactionID")
    assert_error(api.get(f"/billing/{account['uuid']}/transactions", {"pageSize": 101}), 997, 400, "pageSize")
    assert_error(api.get(f"/billing/{account['uuid']}/transactions", {"fromDate": "2015-01-01"}), 997, 400,
                 "fromDate")
    assert_error(api.post("/account", {}, idempotency_key="has space"), 997, 400, "Idempotency-Key")


def test_999_an_internal_failure_is_encrypted_and_logged(api, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    def broken(**kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("the database went away")

    monkeypatch.setattr("merchants.accounts.account_create", broken)
    answer = api.post("/account", {"name": "x"})
    assert answer.status == 500 and answer.code == 999 and answer.error["message"] == "Internal Error."
    assert "database" not in answer.error["detail"]  # nothing internal leaks to the caller
    assert "the database went away" in caplog.text  # the traceback is for staff


def test_1600_a_cvv_key_unknown_used_expired_or_another_cards(api, account, card) -> None:  # type: ignore[no-untyped-def]
    base = f"/account/{account['uuid']}/paymentinfo"
    billing = f"/billing/{account['uuid']}/transaction"

    def with_key(key: str, order: str):  # type: ignore[no-untyped-def]
        return api.post(billing, charge_body(card, order=order, paymentInfo={
            "paymentType": "CreditCard", "card": {"cardCVVEncKey": key}}))

    assert_error(with_key("0" * 32, "cvv-unknown"), 1600, 400, "paymentInfo.card.cardCVVEncKey")
    key = api.post(f"{base}/{card['paymentInfoID']}/cvv", {"cvv": "123"}).data["cardCVVEncKey"]
    assert with_key(key, "cvv-first").status == 200
    assert_error(with_key(key, "cvv-again"), 1600, 400, "paymentInfo.card.cardCVVEncKey")  # single use
    late = api.post(f"{base}/{card['paymentInfoID']}/cvv", {"cvv": "123"}).data["cardCVVEncKey"]
    from merchants.models import HeldCvv

    HeldCvv.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_error(with_key(late, "cvv-late"), 1600, 400, "paymentInfo.card.cardCVVEncKey")
    other = api.post(base, card_body("5555555555554444")).data
    theirs = api.post(f"{base}/{other['paymentInfoID']}/cvv", {"cvv": "321"}).data["cardCVVEncKey"]
    assert_error(with_key(theirs, "cvv-other-card"), 1600, 400, "paymentInfo.card.cardCVVEncKey")


def test_1701_a_banned_bin_or_card(api, account, card) -> None:  # type: ignore[no-untyped-def]
    services.ban_add(kind=BanKind.BIN, value="555555", reason="test")
    assert_error(api.post(f"/account/{account['uuid']}/paymentinfo", card_body("5555555555554444")), 1701, 400, "card")
    services.ban_add(kind=BanKind.CARD, value="4242424242424242", reason="test")
    assert_error(api.post(f"/billing/{account['uuid']}/transaction", charge_body(card, order="banned")), 1701, 400,
                 "card")
    declined = Transaction.objects.get(merchant_reference="banned")
    assert declined.status == TransactionStatus.DECLINED and declined.failure_code == "card_banned"


def test_every_code_of_the_contract_is_in_the_table() -> None:
    listed = {code.code for code in codes.TABLE}
    contract = {901, 903, 911, 932, 933, 934, 935, 936, 937, 938, 943, 950, 993, 995, 996, 997, 998, 999, 1600, 1701}
    assert listed == contract
