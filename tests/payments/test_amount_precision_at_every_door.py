"""Issue 7, item 9, at the doors the terminal and esipay tests do not cover: IOTP,
the secure REST API and the SET gateway. Amounts follow the currency's ISO 4217
exponent (JPY 0, EUR 2):

- ``12.50`` JPY, from a JPY merchant, is refused with each door's own
  invalid-amount answer (IOTP ``AttValIllegal`` on ``Amount``; the secure API's
  997 naming ``amount``; SET ``ErrorMsg`` 4 naming ``amount``), and nothing is
  kept: no transaction, no event, no webhook delivery, no IOTP session, SET
  exchange or account charge (the secure API keeps only the orderID's first
  answer, this refusal, to replay it), and the card never reaches the acquirer
  (nor, at the secure API, changes on file);
- ``1200`` JPY is approved, stored as ``Decimal("1200")`` in JPY, sent to the
  acquirer as such, and written with 0 decimals in the door's answer (IOTP's
  signed receipt and status, the secure API's JSON number, SET's InqRes
  ``CurrencyAmount``) and in the webhook's body: never ``1200.00``.

Each door is driven the way its own tests drive it (tests/iotp, tests/secure_api,
tests/setgateway): IOTP as a signed XML document, the secure API through its real
client (signed, encrypted, over WSGI), SET as a DER message handed to the door's
request handler.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.forms.models import model_to_dict

from clients.secure_api import SecureApiClient
from merchants.credentials import api_keys_issue
from merchants.models import AccountCharge, Merchant, StoredCard
from payments.iotp.models import IotpPayment
from payments.models import Event, Transaction, WebhookDelivery, WebhookEndpoint
from payments.outbox import envelope, seal_secret
from payments.states import Door, EventType, TransactionStatus
from setgateway import payload
from setgateway.credentials import set_settings_create
from setgateway.models import SetExchange
from setgateway.payload import AuthReq, AuthRes, CurrencyAmount, ErrorMsg, InqReq, InqRes
from setgateway.services import set_request_handle
from tests.factories import MerchantFactory
from tests.iotp.support import Answer, IotpClient, q, receipt_fields
from tests.iotp.test_errors import refused, start
from tests.secure_api.acquirers import RecordingAcquirer
from tests.secure_api.conftest import card_body, charge_body, wsgi_client
from tests.setgateway.conftest import EXPIRY, HAPPY_VISA

pytestmark = pytest.mark.django_db

JPY_NUMERIC = 392  # ISO 4217 numeric code of the yen (exponent 0)


# --- A JPY merchant, and what "nothing stored" looks at ------------------------------------------


@pytest.fixture
def yen_merchant(db, shipped_defaults) -> Merchant:  # type: ignore[no-untyped-def]
    """A merchant paid in yen. The shipped defaults carry JPY card limits (VISA 375000),
    so 1200 JPY is within them and nothing but the amount's precision can refuse it.
    A webhook endpoint, so that an event would also leave a delivery behind."""
    merchant = MerchantFactory(name="Tokyo Shop", currency="JPY", allowed_ips=[])
    WebhookEndpoint.objects.create(merchant=merchant, url="https://hooks.example.com/tokyo",
                                   secret_sealed=seal_secret("whsec"))
    return merchant


@pytest.fixture
def acquirer(settings) -> type[RecordingAcquirer]:  # type: ignore[no-untyped-def]
    """The sandbox, remembering what it was asked: a refused amount must never get that far."""
    settings.PAYMENTS_ACQUIRER = "tests.secure_api.acquirers.RecordingAcquirer"
    RecordingAcquirer.seen = []
    return RecordingAcquirer


def ledger() -> dict[str, int]:
    """Every row a payment attempt could leave behind, at any door."""
    return {
        "transactions": Transaction.objects.count(),
        "events": Event.objects.count(),
        "deliveries": WebhookDelivery.objects.count(),
        "iotp_payments": IotpPayment.objects.count(),
        "set_exchanges": SetExchange.objects.count(),
        "account_charges": AccountCharge.objects.count(),
    }


NOTHING = {"transactions": 0, "events": 0, "deliveries": 0, "iotp_payments": 0, "set_exchanges": 0,
           "account_charges": 0}


def only_event_of(txn: Transaction) -> Event:
    (event,) = Event.objects.filter(transaction=txn)
    assert event.type == EventType.PAYMENT_SUCCEEDED
    assert WebhookDelivery.objects.filter(event=event).count() == 1
    return event


def assert_announced_in_yen(event: Event) -> None:
    """The webhook's body (the very bytes sent) writes the amounts with JPY's 0 decimals."""
    assert (event.data["amount"], event.data["captured_amount"], event.data["currency"]) == ("1200", "1200", "JPY")
    body = envelope(event)
    assert b'"amount":"1200"' in body and b"1200.00" not in body, body


def assert_stored_in_yen(txn: Transaction, acquirer: type[RecordingAcquirer]) -> None:
    txn.refresh_from_db()
    assert (txn.currency, txn.amount, txn.status) == ("JPY", Decimal("1200"), TransactionStatus.CAPTURED)
    # The bank was asked for 1200 yen, once, written with the yen's 0 decimals (compared as text:
    # Decimal("1200.00") == Decimal("1200"); a row read back from the scale-2 column holds 1200.00).
    (asked,) = acquirer.seen
    assert (asked.currency, str(asked.amount), asked.capture) == ("JPY", "1200", True)


# --- IOTP (RFC 3867): StartPaymentPaymentHandler ----------------------------------------------------


@pytest.fixture
def core(yen_merchant: Merchant) -> IotpClient:
    """The yen merchant's IOTP application core (PLTOKEN-signed POST /iotp)."""
    return IotpClient(api_keys_issue(merchant=yen_merchant))


def start_in_yen(core: IotpClient, merchant: Merchant, amount: str) -> Answer:
    # Fixture 06 is a EUR 12.50 payment with card data: the same document, in yen.
    return start(core, merchant, **{'CurrCode="EUR"': 'CurrCode="JPY"', 'Amount="12.50"': f'Amount="{amount}"'})


@pytest.mark.parametrize("amount", ["12.50", "12.5", "1200.01"])
def test_iotp_refuses_yen_with_a_fraction_as_att_val_illegal_amount(
    core: IotpClient, yen_merchant: Merchant, acquirer: type[RecordingAcquirer], amount: str
) -> None:
    answer = refused(start_in_yen(core, yen_merchant, amount), "AttValIllegal", attribute="Amount")
    assert answer.location == {"ElementRef": "StartPaymentPaymentHandler", "AttName": "Amount"}
    # The door's own check (payments/doors/iotp/attributes.py), before the core is asked: the
    # core's later "Invalid amount" would be the same code with another description.
    assert answer.error.get("ErrorDesc") == "Amount: JPY has 0 decimals"
    assert ledger() == NOTHING
    assert acquirer.seen == []


def test_iotp_pays_1200_yen_and_writes_it_without_decimals(
    core: IotpClient, yen_merchant: Merchant, acquirer: type[RecordingAcquirer]
) -> None:
    answer = start_in_yen(core, yen_merchant, "1200")
    assert answer.error is None, answer.text
    node = answer.response("StartPaymentPaymentHandlerResponse")
    assert node.get("ContStatus") == "End", answer.text
    [content] = node.findall(q("PaySchemePackagedContent"))
    receipt = receipt_fields(content.text or "")
    # The signed receipt is the door's statement of the amount.
    assert (receipt["Amount"], receipt["CurrCode"], receipt["ProcessState"]) == ("1200", "JPY", "CompletedOk")
    assert receipt["StatusDesc"].startswith("Paid 1200 JPY with Visa "), receipt["StatusDesc"]
    assert "1200.00" not in json.dumps(receipt)
    session = IotpPayment.objects.get(merchant=yen_merchant, pay_id="PH-0001")
    assert (session.currency, session.amount) == ("JPY", Decimal("1200"))
    txn = session.transaction
    assert txn.door == Door.IOTP
    assert_stored_in_yen(txn, acquirer)
    assert_announced_in_yen(only_event_of(txn))


# --- The secure REST API: POST /billing/{uuid}/transaction --------------------------------------------


@pytest.fixture
def api(yen_merchant: Merchant, keep_the_test_connection: None) -> Iterator[SecureApiClient]:
    client = wsgi_client(api_keys_issue(merchant=yen_merchant))
    yield client
    client.close()


@pytest.fixture
def card_on_file(api: SecureApiClient, acquirer: type[RecordingAcquirer]) -> tuple[str, dict[str, Any]]:
    """An account of the yen merchant with a verified card (a zero-amount authorization in
    JPY); the acquirer's memory starts empty after it."""
    account = api.post("/account", {"externalID": "tokyo-1", "name": "Hanako"}).data
    card = api.post(f"/account/{account['uuid']}/paymentinfo", card_body()).data
    assert card["verified"] is True
    acquirer.seen.clear()
    return account["uuid"], card


def yen_charge(card: dict[str, Any], amount: object, order: str = "jpy-1") -> dict[str, Any]:
    return charge_body(card, order=order, amount=amount, currencyCode="JPY")


@pytest.mark.parametrize("amount", ["12.50", Decimal("12.50"), "12.5", Decimal("1200.01")])
def test_secure_api_refuses_yen_with_a_fraction_as_997_amount(
    api: SecureApiClient, card_on_file: tuple[str, dict[str, Any]], acquirer: type[RecordingAcquirer],
    amount: object,
) -> None:
    account_uuid, card = card_on_file
    stored = StoredCard.objects.get(uuid=card["paymentInfoID"])
    before = model_to_dict(stored)
    answer = api.post(f"/billing/{account_uuid}/transaction", yen_charge(card, amount))
    # The serializer lets 12.50 through (its shape is that of an amount of some currency); the
    # core refuses it against the merchant's yen, and the door says so in its error table.
    assert answer.status == 400, answer.body
    assert answer.body == {"error": {
        "code": 997, "message": "The request is invalid.",
        "detail": "amount: Invalid amount: a positive amount with the currency's decimals",
    }}
    assert ledger() == NOTHING
    assert acquirer.seen == []
    stored.refresh_from_db()
    assert model_to_dict(stored) == before  # the card on file is as it was (still verified)
    # The refusal is the orderID's first answer (a repeat replays it): still nothing charged.
    again = api.post(f"/billing/{account_uuid}/transaction", yen_charge(card, amount))
    assert again.replayed and again.body == answer.body
    assert ledger() == NOTHING


def test_secure_api_keeps_the_held_cvv_when_the_amount_is_refused(
    api: SecureApiClient, card_on_file: tuple[str, dict[str, Any]], acquirer: type[RecordingAcquirer]
) -> None:
    """A malformed amount is the request's fault, not a use of the card: the CVV held for the
    charge is still there, and the corrected charge (another orderID) uses it."""
    account_uuid, card = card_on_file
    key = api.post(f"/account/{account_uuid}/paymentinfo/{card['paymentInfoID']}/cvv", {"cvv": "123"}
                   ).data["cardCVVEncKey"]
    with_key = {"paymentInfo": {"paymentType": "CreditCard", "card": {"cardCVVEncKey": key}}}
    refused = api.post(f"/billing/{account_uuid}/transaction", {**yen_charge(card, "12.50"), **with_key})
    assert refused.status == 400 and refused.body["error"]["code"] == 997, refused.body
    paid = api.post(f"/billing/{account_uuid}/transaction", {**yen_charge(card, 1200, order="jpy-2"), **with_key})
    assert paid.status == 200, paid.body
    assert [(seen.amount, seen.cvv) for seen in acquirer.seen] == [(Decimal("1200"), "123")]


def test_secure_api_charges_1200_yen_and_answers_a_whole_number(
    api: SecureApiClient, card_on_file: tuple[str, dict[str, Any]], acquirer: type[RecordingAcquirer]
) -> None:
    account_uuid, card = card_on_file
    paid = api.post(f"/billing/{account_uuid}/transaction", yen_charge(card, 1200))
    assert paid.status == 200, paid.body
    # The client reads JSON numbers as Decimal keeping their digits: Decimal("1200.00") would
    # equal Decimal("1200"), so the text is compared, not the value.
    assert (str(paid.data["amount"]), paid.data["currencyCode"]) == ("1200", "JPY")
    txn = Transaction.objects.get(pk=int(paid.data["transactionID"]))
    assert txn.door == Door.SECURE_API
    assert_stored_in_yen(txn, acquirer)
    assert_announced_in_yen(only_event_of(txn))


def test_secure_api_reads_1200_yen_back_without_decimals(
    api: SecureApiClient, card_on_file: tuple[str, dict[str, Any]]
) -> None:
    """The charge's own answer writes the amount the core parsed; these answers write it as read
    back from the database's numeric(12, 2) columns, which must not make 1200 JPY "1200.00"."""
    account_uuid, card = card_on_file
    transaction_id = api.post(f"/billing/{account_uuid}/transaction", yen_charge(card, 1200)).data["transactionID"]
    one = api.get(f"/billing/{account_uuid}/transaction/{transaction_id}").data
    [listed] = api.get(f"/billing/{account_uuid}/transactions").data["transactions"]
    for read in (one, listed):
        assert (str(read["amount"]), str(read["refundedAmount"]), read["currencyCode"]) == ("1200", "0", "JPY")


# --- The SET gateway: AuthReq (captureNow) and InqReq ------------------------------------------------


@pytest.fixture
def set_yen_merchant(yen_merchant: Merchant) -> Merchant:
    """The yen merchant with SET enabled. The door caches merchants' currencies for a few
    seconds per process, by primary key (reused between tests): forget any cached one."""
    from setgateway import services

    set_settings_create(merchant=yen_merchant)
    services._CURRENCY_CACHE.clear()
    return yen_merchant


def set_answer(merchant: Merchant, message: payload.Message) -> payload.Message:
    """One DER request through the door's handler, its DER answer decoded (as the listener does)."""
    return payload.decode(set_request_handle(merchant_pk=merchant.pk, body=payload.encode(message)))


@pytest.mark.parametrize("amount", [
    CurrencyAmount(JPY_NUMERIC, 1250, -2),  # 12.50
    CurrencyAmount(JPY_NUMERIC, 125, -1),  # 12.5, the same value written otherwise
    CurrencyAmount(JPY_NUMERIC, 120001, -2),  # 1200.01
])
def test_set_refuses_yen_with_a_fraction_as_error_msg_4_amount(
    set_yen_merchant: Merchant, acquirer: type[RecordingAcquirer], amount: CurrencyAmount
) -> None:
    answer = set_answer(set_yen_merchant, AuthReq("jpy-1", HAPPY_VISA, EXPIRY, amount, capture_now=True))
    # An ErrorMsg, not an AuthRes "declined": no payment was made to decline.
    assert answer == ErrorMsg(payload.INVALID_FIELD, "invalid field amount: Invalid amount", "jpy-1")
    # The transId stays free (its record forgotten): nothing to replay, nothing kept.
    assert ledger() == NOTHING
    assert acquirer.seen == []
    assert set_answer(set_yen_merchant, InqReq("jpy-1")) == ErrorMsg(
        payload.UNKNOWN_TRANS_ID, "unknown transId 'jpy-1'", "jpy-1")


@pytest.mark.parametrize("amount", [
    CurrencyAmount(JPY_NUMERIC, 1200, 0),
    CurrencyAmount(JPY_NUMERIC, 120000, -2),  # 1200.00: trailing zeros are no decimals
])
def test_set_authorizes_1200_yen_and_reports_it_with_exponent_0(
    set_yen_merchant: Merchant, acquirer: type[RecordingAcquirer], amount: CurrencyAmount
) -> None:
    answer = set_answer(set_yen_merchant, AuthReq("jpy-1", HAPPY_VISA, EXPIRY, amount, capture_now=True))
    assert isinstance(answer, AuthRes) and answer.status == "approved", answer
    txn = Transaction.objects.get(pk=int(answer.gateway_trans_id or 0))
    assert txn.door == Door.SET
    assert_stored_in_yen(txn, acquirer)
    assert_announced_in_yen(only_event_of(txn))
    # AuthRes carries no amount; InqRes does, in JPY's minor unit (the yen itself: exp10 0).
    yen = CurrencyAmount(JPY_NUMERIC, 1200, 0)
    assert set_answer(set_yen_merchant, InqReq("jpy-1")) == InqRes(
        "jpy-1", "completedOk", authorized=yen, captured=yen, refunded=CurrencyAmount(JPY_NUMERIC, 0, 0))
