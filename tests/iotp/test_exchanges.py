"""Every implemented call of RFC 3867 through POST /iotp, with the documents of
tests/iotp/fixtures/exchanges: one IOTP payment with card data, one started
without and continued after a suspension, the brand list before them and
the inquiries, receipts and log removal after. Each answer must be exactly
its ``.response.xml`` (run-dependent values put back as ${placeholders});
docs/iotp.md shows the same documents (test_docs.py)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from decimal import Decimal

import pytest

from payments.iotp.models import IotpPayment
from payments.models import Event, Transaction
from payments.states import Door, TransactionStatus

from .support import FIXTURES, card_data, normalized, q, receipt_fields, window

pytestmark = pytest.mark.django_db

# IOTP_FIXTURES_RECORD=1 writes the answers as the expected ones (and fails: review them, then commit).
RECORD = os.environ.get("IOTP_FIXTURES_RECORD") == "1"
EXCHANGES = sorted(p.name.removesuffix(".request.xml") for p in (FIXTURES / "exchanges").glob("*.request.xml"))


def expect(name: str, answer_text: str, dynamic: dict[str, str], recorded: list[str]) -> None:
    path = FIXTURES / "exchanges" / f"{name}.response.xml"
    got = normalized(answer_text, dynamic)
    if RECORD:
        path.write_text(got)
        recorded.append(name)
        return
    assert got == path.read_text(), f"{name}: the answer differs from {path.name}"


def auth_response(app_key: str, authentication_id: str, challenge: str) -> str:
    """The genuine party's answer, computed here as docs/iotp.md tells it."""
    message = f"IOTP-AUTH-1\n{authentication_id}\n{challenge}".encode()
    return base64.b64encode(hmac.new(base64.b64decode(app_key), message, hashlib.sha256).digest()).decode()


def test_every_call_as_documented(core, merchant, keys) -> None:  # type: ignore[no-untyped-def]
    times = window()
    values = {"merchant": str(merchant.uuid), **times, "card_data": card_data()}
    dynamic = {str(merchant.uuid): "merchant", times["ok_from"]: "ok_from", times["ok_to"]: "ok_to"}
    recorded: list[str] = []
    answers = {}

    def run(name: str, **extra: str):  # type: ignore[no-untyped-def]
        answer = core.call(f"exchanges/{name}.request.xml", **{**values, **extra})
        assert answer.error is None, answer.text
        answers[name] = answer
        return answer

    run("01-FindAcceptedPaymentBrand")
    run("02-FindAcceptedPaymentProtocol")
    run("03-GetPaymentInitializationData")
    challenge = run("04-InquireAuthChallenge").response("InquireAuthChallengeResponse").find(
        q("AuthReqPackagedContent")).text
    dynamic[challenge] = "challenge"
    response = auth_response(keys.app_key, "auth-0001", challenge)
    dynamic[response] = "auth_response"
    checked = run("05-CheckAuthResponse", challenge=challenge, auth_response=response)
    assert checked.response("CheckAuthResponseResponse").get("ProcessState") == "CompletedOk"

    started = run("06-StartPaymentPaymentHandler")
    receipt = started.response("StartPaymentPaymentHandlerResponse").find(q("PaySchemePackagedContent")).text
    dynamic[receipt] = "receipt"
    paid = Transaction.objects.get(merchant_reference="iotp:PH-0001")
    assert paid.door == Door.IOTP and paid.status == TransactionStatus.CAPTURED
    assert paid.captured_amount == Decimal("12.50") and paid.card_last4 == "4242"
    fields = receipt_fields(receipt)
    assert fields["ProcessState"] == "CompletedOk" and fields["ProtocolTransId"] == str(paid.pk)
    assert fields["Amount"] == "12.50" and fields["PaymentInstrumentId"] == "424242******4242"

    run("07-StartPaymentPaymentHandler-without-card")
    waiting = Transaction.objects.get(merchant_reference="iotp:PH-0002")
    assert waiting.status == TransactionStatus.AWAITING_CARD and waiting.process_state == "InProgress"
    assert waiting.card_last4 == "" and waiting.captured_amount == 0
    run("08-ChangeProcessState")
    waiting.refresh_from_db()
    assert waiting.status == TransactionStatus.SUSPENDED
    pending = run("09-InquirePendingPayment").response("InquirePendingPaymentResponse")
    assert [p.get("PayId") for p in pending] == ["PH-0002"]
    run("10-ResumePaymentPaymentHandler")
    waiting.refresh_from_db()
    assert waiting.status == TransactionStatus.AWAITING_CARD
    continued = run("11-ContinueProcess", card_data=card_data("5555555555554444"))
    receipt_2 = continued.response("ContinueProcessResponse").find(q("PaySchemePackagedContent")).text
    dynamic[receipt_2] = "receipt_2"
    waiting.refresh_from_db()
    assert waiting.status == TransactionStatus.CAPTURED and waiting.card_brand == "MASTER"
    assert list(Event.objects.filter(transaction=waiting).values_list("type", flat=True)) == ["payment.succeeded"]

    inquiry = run("12-InquireProcessState").response("InquireProcessStateResponse")
    assert inquiry.get("ProcessState") == "CompletedOk" and inquiry.get("PayReceiptNameRefs") == "Receipt"
    assert inquiry.find(q("PackagedContent")).text == receipt  # the same receipt, kept in the payment log
    run("13-InquirePaymentStatus")
    run("14-CheckPaymentReceipt", receipt=receipt)
    expanded = run("15-ExpandPaymentReceipt", receipt=receipt).response("ExpandPaymentReceiptResponse")
    assert expanded.get("ProtocolTransId") == str(paid.pk) and expanded.get("Amount") == "12.50"
    run("16-RemovePaymentLog")
    forgotten = IotpPayment.objects.get(pay_id="PH-0001")
    assert forgotten.removed_at is not None and forgotten.receipt == "" and forgotten.brand_id == ""
    assert Transaction.objects.get(pk=paid.pk).status == TransactionStatus.CAPTURED  # the ledger row stays
    limit = run("17-PaymentInstrumentInquiry").response("PaymentInstrumentInquiryResponse")
    assert limit.get("UnavailablePropertyList") == "Balance"
    assert limit.find(q("PaymentInstrumentProperty")).get("PropertyValue") == "2500.00 EUR"
    run("18-ManagePaymentSoftware")

    dynamic[f'ProtocolTransId="{paid.pk}"'] = "transaction"
    dynamic[f'TimeStamp="{fields["TimeStamp"]}"'] = "timestamp"
    dynamic[f'PropertyValue="{paid.authorization_code}"'] = "authorization_code"
    assert sorted(answers) == EXCHANGES, "every fixture of exchanges/ is run"
    for name, answer in answers.items():
        expect(name, answer.text, dynamic, recorded)
    if RECORD:
        pytest.fail(f"recorded {len(recorded)} expected answers: review them, then run again without IOTP_FIXTURES_RECORD")
