"""IOTP payments over POST /iotp: declines and technical failures are End
answers (not errors), cancellation, suspension, the OkTo deadline, repeats
that charge nothing (also concurrent ones), signed receipts and their
tampering, log removal, the challenge-response, brands, limits and logos."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from payments.iotp.models import IotpAuthChallenge, IotpMerchantBrands, IotpPayment
from payments.models import Event, Transaction
from payments.states import TransactionStatus

from .support import card_data, fixture, q, receipt_fields, render, window
from .test_errors import refused, start

pytestmark = pytest.mark.django_db


def receipt_of(answer, response="StartPaymentPaymentHandlerResponse") -> str:  # type: ignore[no-untyped-def]
    node = answer.response(response)
    assert node.get("ContStatus") == "End", answer.text
    [content] = node.findall(q("PaySchemePackagedContent"))
    assert content.get("Name") == "Receipt"
    return content.text


def inquire(core, pay_id="PH-0001"):  # type: ignore[no-untyped-def]
    body = fixture("exchanges/12-InquireProcessState.request.xml").encode().replace(b"PH-0001", pay_id.encode())
    return core.post(body).response("InquireProcessStateResponse")


def change(core, state, pay_id="PH-0002", extra=""):  # type: ignore[no-untyped-def]
    body = fixture("exchanges/08-ChangeProcessState.request.xml").replace("PH-0002", pay_id)
    body = body.replace('ProcessState="Suspended"', f'ProcessState="{state}"{extra}')
    return core.post(body.encode()).response("ChangeProcessStateResponse")


@pytest.mark.parametrize(("card", "state", "code", "status"), [
    ("4000000000000002", "Failed", "CardDeclined", TransactionStatus.DECLINED),
    ("4000000000009995", "Failed", "InsuffFunds", TransactionStatus.DECLINED),
    ("4000000000000069", "Failed", "CardExpired", TransactionStatus.DECLINED),
    ("4000000000000119", "ProcessError", "TechError", TransactionStatus.ERROR),
    ("4242424242424241", "Failed", "InvalidCard", TransactionStatus.DECLINED),  # Luhn
])
def test_a_declined_payment_ends_failed_with_why(core, merchant, card, state, code, status) -> None:  # type: ignore[no-untyped-def]
    answer = start(core, merchant, card=card_data(card))
    assert answer.error is None, answer.text
    fields = receipt_fields(receipt_of(answer))
    assert fields["ProcessState"] == state and fields["CompletionCode"] == code
    txn = Transaction.objects.get(merchant_reference="iotp:PH-0001")
    assert txn.status == status and txn.captured_amount == 0
    inquiry = inquire(core)
    assert inquiry.get("ProcessState") == state and inquiry.get("CompletionCode") == code
    assert inquiry.get("StatusDesc") and card not in inquiry.get("StatusDesc")
    assert list(Event.objects.filter(transaction=txn).values_list("type", flat=True)) == ["payment.failed"]


def test_the_gateways_rules_decline_too(core, merchant) -> None:  # type: ignore[no-untyped-def]
    banned = start(core, merchant, card=card_data("0000000000000000"))
    # 0000… belongs to no network: the core's ban decides, not the brand check.
    assert receipt_fields(receipt_of(banned))["CompletionCode"] == "CardBanned"
    over = start(core, merchant, pay_id="PH-0002", **{'Amount="12.50"': 'Amount="2500.01"'})
    assert receipt_fields(receipt_of(over))["CompletionCode"] == "LimitExceeded"
    expired = start(core, merchant, pay_id="PH-0003", card=card_data(expiry="202001"))
    assert receipt_fields(receipt_of(expired))["CompletionCode"] == "CardExpired"
    assert set(Transaction.objects.values_list("status", flat=True)) == {TransactionStatus.DECLINED}


def test_a_payment_without_card_data_is_cancelled(core, merchant) -> None:  # type: ignore[no-untyped-def]
    assert start(core, merchant, pay_id="PH-0002", card=False).error is None
    cancelled = change(core, "Failed", extra=' CompletionCode="ConsCancelled"')
    assert cancelled.get("ProcessState") == "Failed" and cancelled.get("CompletionCode") == "ConsCancelled"
    txn = Transaction.objects.get(merchant_reference="iotp:PH-0002")
    assert txn.status == TransactionStatus.VOIDED and txn.process_state == "Failed"
    assert list(Event.objects.filter(transaction=txn).values_list("type", flat=True)) == ["payment.cancelled"]
    # Final: asking for anything else reports the old state, not an error.
    for state in ("CompletedOk", "InProgress", "Suspended", "ProcessError"):
        assert change(core, state).get("ProcessState") == "Failed"
    # The receipt of a cancelled payment says so.
    assert receipt_fields(inquire(core, "PH-0002").find(q("PackagedContent")).text)["ProcessState"] == "Failed"


def test_suspended_payments_can_be_cancelled_or_marked_process_error(core, merchant) -> None:  # type: ignore[no-untyped-def]
    assert start(core, merchant, pay_id="PH-0002", card=False).error is None
    assert change(core, "Suspended").get("ProcessState") == "Suspended"
    assert change(core, "ProcessError").get("ProcessState") == "ProcessError"
    assert Transaction.objects.get().status == TransactionStatus.ERROR


def test_moves_a_payment_cannot_make_leave_it_as_it_was(core, merchant) -> None:  # type: ignore[no-untyped-def]
    assert start(core, merchant, pay_id="PH-0002", card=False).error is None
    assert change(core, "CompletedOk").get("ProcessState") == "InProgress"  # no card data: cannot complete
    assert change(core, "NotYetStarted").get("ProcessState") == "InProgress"
    assert start(core, merchant).error is None  # PH-0001 CompletedOk
    assert change(core, "Failed", pay_id="PH-0001").get("ProcessState") == "CompletedOk"
    assert Transaction.objects.get(merchant_reference="iotp:PH-0001").status == TransactionStatus.CAPTURED


def test_resume_may_bring_the_card_data(core, merchant) -> None:  # type: ignore[no-untyped-def]
    assert start(core, merchant, pay_id="PH-0002", card=False, **{'BrandId="MasterCard"': 'BrandId="Visa"'}).error is None
    change(core, "Suspended")
    body = fixture("exchanges/10-ResumePaymentPaymentHandler.request.xml").replace(
        '<ResumePaymentPaymentHandler PaymentHandlerPayId="PH-0002"/>',
        '<ResumePaymentPaymentHandler PaymentHandlerPayId="PH-0002"><PaySchemePackagedContent Name="CardData" '
        f'Transform="BASE64">{card_data()}</PaySchemePackagedContent></ResumePaymentPaymentHandler>')
    answer = core.post(body.encode())
    assert receipt_fields(receipt_of(answer, "ResumePaymentPaymentHandlerResponse"))["ProcessState"] == "CompletedOk"


def test_continuing_after_ok_to_fails_the_payment(core, merchant) -> None:  # type: ignore[no-untyped-def]
    assert start(core, merchant, pay_id="PH-0002", card=False).error is None
    IotpPayment.objects.update(ok_to=timezone.now() - timedelta(seconds=1))
    body = render("exchanges/11-ContinueProcess.request.xml", card_data=card_data("5555555555554444"))
    fields = receipt_fields(receipt_of(core.post(body), "ContinueProcessResponse"))
    assert fields["ProcessState"] == "Failed" and fields["CompletionCode"] == "OkToPassed"
    assert Transaction.objects.get().status == TransactionStatus.VOIDED


def test_inquire_pending_lists_only_payments_not_final(core, merchant) -> None:  # type: ignore[no-untyped-def]
    start(core, merchant)  # CompletedOk
    start(core, merchant, pay_id="PH-0002", card=False)
    start(core, merchant, pay_id="PH-0003", card=False)
    change(core, "Suspended", pay_id="PH-0003")
    start(core, merchant, pay_id="PH-0004", card=False)
    change(core, "Failed", pay_id="PH-0004")
    answer = core.post(fixture("exchanges/09-InquirePendingPayment.request.xml").encode())
    assert [p.get("PayId") for p in answer.response("InquirePendingPaymentResponse")] == ["PH-0002", "PH-0003"]


# --- Receipts -------------------------------------------------------------------------------


def check(core, receipt: str, pay_id="PH-0001", call="14-CheckPaymentReceipt"):  # type: ignore[no-untyped-def]
    body = render(f"exchanges/{call}.request.xml", receipt=receipt).replace(b"PH-0001", pay_id.encode())
    return core.post(body)


def reencode(receipt: str, change) -> str:  # type: ignore[no-untyped-def]
    document = json.loads(base64.b64decode(receipt))
    change(document)
    return base64.b64encode(json.dumps(document).encode()).decode()


def test_a_tampered_receipt_is_bus_error(core, merchant) -> None:  # type: ignore[no-untyped-def]
    receipt = receipt_of(start(core, merchant))
    assert start(core, merchant, pay_id="PH-0002").error is None
    assert check(core, receipt).error is None
    assert check(core, reencode(receipt, lambda d: None)).error is None  # re-serialized, same content: genuine

    def amount(d):  # type: ignore[no-untyped-def]
        d["receipt"]["Amount"] = "1250.00"

    def state(d):  # type: ignore[no-untyped-def]
        d["receipt"]["ProcessState"] = "Failed"

    def signature(d):  # type: ignore[no-untyped-def]
        sig = base64.b64decode(d["sig"])
        d["sig"] = base64.b64encode(bytes([sig[0] ^ 1]) + sig[1:]).decode()

    def unsigned(d):  # type: ignore[no-untyped-def]
        d.pop("sig")

    def forged(d):  # type: ignore[no-untyped-def]  # a MAC under a key that is not the gateway's
        fields = dict(d["receipt"], Amount="0.01")
        raw = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
        d["receipt"], d["sig"] = fields, base64.b64encode(hmac.new(b"guess", raw, hashlib.sha256).digest()).decode()

    for tamper in (amount, state, signature, unsigned, forged):
        for call in ("14-CheckPaymentReceipt", "15-ExpandPaymentReceipt"):
            refused(check(core, reencode(receipt, tamper), call=call), "BusError", attribute="PayId")
    refused(check(core, receipt, pay_id="PH-0002"), "BusError", attribute="PayId")  # another payment's
    refused(check(core, "bm90IGEgcmVjZWlwdA=="), "BusError", attribute="PayId")
    refused(check(core, "%%%"), "BusError", attribute="PayId")
    refused(check(core, receipt, pay_id="PH-0404"), "AttValIllegal", attribute="PayId")


def test_receipts_of_another_merchant_are_refused(core, merchant) -> None:  # type: ignore[no-untyped-def]
    from merchants.credentials import api_keys_issue
    from tests.factories import MerchantFactory

    from .support import IotpClient

    other = MerchantFactory()
    other_core = IotpClient(api_keys_issue(merchant=other))
    theirs = receipt_of(start(other_core, other))
    assert start(core, merchant).error is None
    refused(check(core, theirs), "BusError", attribute="PayId")


def test_removed_log_forgets_the_session_but_not_the_ledger(core, merchant) -> None:  # type: ignore[no-untyped-def]
    receipt = receipt_of(start(core, merchant))
    assert core.post(fixture("exchanges/16-RemovePaymentLog.request.xml").encode()).error is None
    refused(core.post(fixture("exchanges/12-InquireProcessState.request.xml").encode()), "AttValIllegal",
            attribute="PayId")
    refused(core.post(fixture("exchanges/16-RemovePaymentLog.request.xml").encode()), "AttValIllegal",
            attribute="PayId")
    assert check(core, receipt).error is None  # a genuine receipt stays checkable
    refused(start(core, merchant), "AttValIllegal", attribute="PaymentHandlerPayId")  # the PayId is spent
    assert Transaction.objects.get().status == TransactionStatus.CAPTURED


# --- Repeats ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_repeats_of_a_start_charge_once(core, merchant, settings, require_postgres) -> None:  # type: ignore[no-untyped-def]
    from tests.support.threads import run_at_once

    from . import acquirers

    settings.PAYMENTS_ACQUIRER = "tests.iotp.acquirers.CountingAcquirer"
    acquirers.calls.clear()
    body = render("exchanges/06-StartPaymentPaymentHandler.request.xml", merchant=str(merchant.uuid),
                  card_data=card_data(), **window())
    from .support import IotpClient

    answers = run_at_once([lambda: IotpClient(core.keys).post(body) for _ in range(4)])
    assert all(a.error is None for a in answers), [a.text for a in answers]
    receipts = {receipt_of(a) for a in answers}
    assert len(receipts) == 1 and len(acquirers.calls) == 1
    assert Transaction.objects.get().status == TransactionStatus.CAPTURED


@pytest.mark.django_db(transaction=True)
def test_concurrent_continuations_charge_once(core, merchant, settings, require_postgres) -> None:  # type: ignore[no-untyped-def]
    from tests.support.threads import run_at_once

    from . import acquirers
    from .support import IotpClient

    settings.PAYMENTS_ACQUIRER = "tests.iotp.acquirers.CountingAcquirer"
    acquirers.calls.clear()
    assert start(core, merchant, pay_id="PH-0002", card=False).error is None
    body = render("exchanges/11-ContinueProcess.request.xml", card_data=card_data("5555555555554444"))
    answers = run_at_once([lambda: IotpClient(core.keys).post(body) for _ in range(4)])
    # One continuation pays; the others are told it is being processed (come
    # back) or, once it is final, that there is nothing left to continue.
    paid = [a for a in answers if a.error is None]
    assert len(paid) == 1, [a.text for a in answers]
    assert receipt_fields(receipt_of(paid[0], "ContinueProcessResponse"))["ProcessState"] == "CompletedOk"
    assert {a.error_code for a in answers if a.error is not None} <= {"MsgBeingProc", "BusError"}
    assert len(acquirers.calls) == 1
    assert Transaction.objects.get().status == TransactionStatus.CAPTURED


def test_a_repeat_finishes_a_start_that_died_before_paying(core, merchant) -> None:  # type: ignore[no-untyped-def]
    """The first request committed its payment and died before the acquirer:
    the repeat (same card) pays it, once."""
    from payments import services
    from payments.states import Door

    same_as_06 = {'BrandId="MasterCard"': 'BrandId="Visa"', "cons-0002": "cons-0001", 'Amount="40.00"': 'Amount="12.50"'}
    assert start(core, merchant, card=False, **same_as_06).error is None
    session = IotpPayment.objects.get()
    # What the dead request left: its fingerprint with card data, the payment waiting.
    first = services.StartRequest(
        pay_id="PH-0001", brand_id="Visa", currency="EUR", amount=session.amount, pay_direction="Debit",
        protocol_id="GatewayCard-1.0", ok_from=session.ok_from, ok_to=session.ok_to, consumer_pay_id="cons-0001",
    )
    from payments.services.iotp import _fingerprint

    data = json.loads(base64.b64decode(card_data()))
    IotpPayment.objects.update(card_given=True, request_fingerprint=_fingerprint(
        first, services.CardData(pan=data["pan"], expiry=data["expiry"])))
    text = render("exchanges/06-StartPaymentPaymentHandler.request.xml", merchant=str(merchant.uuid),
                  card_data=card_data(), ok_from=session.ok_from.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  ok_to=session.ok_to.strftime("%Y-%m-%dT%H:%M:%SZ"))
    answer = core.post(text)
    assert receipt_fields(receipt_of(answer))["ProcessState"] == "CompletedOk", answer.text
    assert Transaction.objects.get().door == Door.IOTP


# --- Challenge-response --------------------------------------------------------------------------


def challenge_for(core, authentication_id="auth-0001") -> str:  # type: ignore[no-untyped-def]
    body = fixture("exchanges/04-InquireAuthChallenge.request.xml").replace("auth-0001", authentication_id)
    return core.post(body.encode()).response("InquireAuthChallengeResponse").find(q("AuthReqPackagedContent")).text


def answer_with(app_key: str, challenge: str, authentication_id="auth-0001") -> str:  # type: ignore[no-untyped-def]
    message = f"IOTP-AUTH-1\n{authentication_id}\n{challenge}".encode()
    return base64.b64encode(hmac.new(base64.b64decode(app_key), message, hashlib.sha256).digest()).decode()


def check_auth(core, challenge: str, response: str, authentication_id="auth-0001"):  # type: ignore[no-untyped-def]
    body = render("exchanges/05-CheckAuthResponse.request.xml", challenge=challenge, auth_response=response)
    return core.post(body.replace(b"auth-0001", authentication_id.encode())).response("CheckAuthResponseResponse")


def test_challenges_are_fresh_and_answered_only_with_the_merchants_key(core, keys, settings) -> None:  # type: ignore[no-untyped-def]
    first, second = challenge_for(core), challenge_for(core)
    assert first != second and re.fullmatch(r"[0-9a-f]{64}", first)
    wrong = check_auth(core, first, answer_with(base64.b64encode(b"k" * 32).decode(), first))
    assert wrong.get("ProcessState") == "Failed" and wrong.get("CompletionCode") == "AuthError"
    # The challenge was used up by the wrong answer: the right one comes too late.
    assert check_auth(core, first, answer_with(keys.app_key, first)).get("ProcessState") == "Failed"
    assert check_auth(core, second, answer_with(keys.app_key, second)).get("ProcessState") == "CompletedOk"
    assert check_auth(core, second, answer_with(keys.app_key, second)).get("ProcessState") == "Failed"  # replay
    third = challenge_for(core)
    assert check_auth(core, third, answer_with(keys.app_key, third, "auth-0002"), "auth-0002").get(
        "ProcessState") == "Failed"  # another AuthenticationId's
    expired = challenge_for(core)
    IotpAuthChallenge.objects.filter(challenge=expired).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert check_auth(core, expired, answer_with(keys.app_key, expired)).get("ProcessState") == "Failed"
    made_up = "ab" * 32
    assert check_auth(core, made_up, answer_with(keys.app_key, made_up)).get("ProcessState") == "Failed"
    garbage = challenge_for(core)
    assert check_auth(core, garbage, "not base64!").get("ProcessState") == "Failed"


def test_a_rotated_key_still_answers_during_its_grace(core, merchant, keys) -> None:  # type: ignore[no-untyped-def]
    from merchants.credentials import api_keys_issue

    from .support import IotpClient

    rotated = IotpClient(api_keys_issue(merchant=merchant))
    challenge = challenge_for(rotated)
    assert check_auth(rotated, challenge, answer_with(keys.app_key, challenge)).get("ProcessState") == "CompletedOk"


def test_algorithms_other_than_hmac_sha256(core) -> None:  # type: ignore[no-untyped-def]
    body = fixture("exchanges/04-InquireAuthChallenge.request.xml").replace("HMAC-SHA256", "MD5")
    refused(core.post(body.encode()), "BusError")
    challenge = challenge_for(core)
    body = render("exchanges/05-CheckAuthResponse.request.xml", challenge=challenge, auth_response="eA==")
    answer = refused(core.post(body.replace(b'<Algorithm Name="HMAC-SHA256"/>', b'<Algorithm Name="MD5"/>')),
                     "ElContIllegal")
    assert answer.location == {"ElementRef": "Algorithm"}
    refused(core.post(body.replace(b'<Algorithm Name="HMAC-SHA256"/>', b"")), "ElMissing")
    refused(core.post(re.sub(rb"<AuthRes.*?</AuthResPackagedContent>", b"", body, flags=re.S)), "ElMissing")


# --- Brands, limits, logos, software --------------------------------------------------------------


def brands(core, merchant, amount="12.50", direction="Debit", currency="EUR"):  # type: ignore[no-untyped-def]
    body = render("exchanges/01-FindAcceptedPaymentBrand.request.xml", merchant=str(merchant.uuid)).decode()
    body = body.replace('Amount="12.50"', f'Amount="{amount}"').replace('"Debit"', f'"{direction}"')
    body = body.replace('CurrCode="EUR"', f'CurrCode="{currency}"')
    answer = core.post(body.encode())
    return [item.get("BrandId") for item in answer.response("FindAcceptedPaymentBrandResponse")]


def test_brands_follow_amount_limits_direction_and_the_merchants_choice(core, merchant) -> None:  # type: ignore[no-untyped-def]
    assert brands(core, merchant) == ["Visa", "MasterCard", "VisaElectron"]
    assert brands(core, merchant, amount="2000.00") == ["Visa", "MasterCard"]  # Electron's limit is 1700.00
    assert brands(core, merchant, amount="2800.00") == ["MasterCard"]
    assert brands(core, merchant, amount="3000.01") == []
    assert brands(core, merchant, direction="Credit") == []
    IotpMerchantBrands.objects.create(merchant=merchant, brands=["VisaElectron", "Visa"])
    assert brands(core, merchant) == ["Visa", "VisaElectron"]
    protocol = render("exchanges/02-FindAcceptedPaymentProtocol.request.xml", merchant=str(merchant.uuid))
    refused(core.post(protocol.replace(b'Amount="12.50"', b'Amount="5000.00"')), "AttValIllegal", attribute="Amount")
    refused(core.post(protocol.replace(b"<FindAcceptedPaymentProtocol ", b'<FindAcceptedPaymentProtocol BrandId="MasterCard" ')),
            "AttValIllegal", attribute="BrandId")


def test_a_currency_other_than_the_merchants_has_no_brands_but_an_error(core, merchant) -> None:  # type: ignore[no-untyped-def]
    """The merchant is paid in EUR: USD (a currency of the gateway, with limits) is refused
    by name, at the inquiry as at the payment, never answered as if it were payable."""
    body = render("exchanges/01-FindAcceptedPaymentBrand.request.xml", merchant=str(merchant.uuid))
    answer = refused(core.post(body.replace(b'CurrCode="EUR"', b'CurrCode="USD"')), "AttValIllegal",
                     attribute="CurrCode")
    assert answer.error.get("ErrorDesc") == "CurrCode: this merchant is paid in EUR", answer.text


def test_logos_are_served_by_the_gateway(core, merchant) -> None:  # type: ignore[no-untyped-def]
    body = render("exchanges/01-FindAcceptedPaymentBrand.request.xml", merchant=str(merchant.uuid))
    items = core.post(body).response("FindAcceptedPaymentBrandResponse")
    for item in items:
        url = item.get("BrandLogoNetLocn")
        assert url.startswith("http://testserver/iotp/logos/")
        response = core.client.get(url.removeprefix("http://testserver"))
        assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
        svg = b"".join(response.streaming_content)
        assert svg.startswith(b"<svg") and item.get("BrandName").encode() in svg
    assert core.client.get("/iotp/logos/..%2Fsettings.py").status_code == 404
    assert core.client.get("/iotp/logos/amex.svg").status_code == 404


def test_payment_instrument_inquiry_reports_the_limit_only(core, merchant) -> None:  # type: ignore[no-untyped-def]
    body = fixture("exchanges/17-PaymentInstrumentInquiry.request.xml")
    answer = core.post(body.replace("PaymentLimit Balance", "all").replace('"Visa"', '"VisaElectron"').encode())
    node = answer.response("PaymentInstrumentInquiryResponse")
    assert node.get("UnavailablePropertyList") == "Balance Limit Expiration Identifier LogEntries"
    assert node.find(q("PaymentInstrumentProperty")).get("PropertyValue") == "1700.00 EUR"
    refused(core.post(body.replace("PaymentLimit Balance", "PaymentLimit FavouriteColour").encode()),
            "AttValIllegal", attribute="PropertyTypeList")
    assert core.post(body.replace("PaymentLimit Balance", "PayAmount-3").encode()).error is None


def test_manage_payment_software_refuses_actions(core) -> None:  # type: ignore[no-untyped-def]
    body = fixture("exchanges/18-ManagePaymentSoftware.request.xml")
    with_action = body.replace("<ManagePaymentSoftware/>",
                               '<ManagePaymentSoftware Action="New" BrandId="Visa" ProtocolId="GatewayCard-1.0"/>')
    refused(core.post(with_action.encode()), "AttValIllegal", attribute="Action")
    refused(core.post(body.replace("<ManagePaymentSoftware/>", '<ManagePaymentSoftware Action="New"/>').encode()),
            "AttMissing", attribute="BrandId")
    refused(core.post(body.replace("<ManagePaymentSoftware/>", '<ManagePaymentSoftware Action="Wipe"/>').encode()),
            "AttValIllegal", attribute="Action")
