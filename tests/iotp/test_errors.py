"""Every malformed or hostile request gets RFC 3867's error (status 200, an
ErrorResponse with its ErrorCode, Severity and ErrorLocation), never a 500;
failed authentication is 401 without XML. Documents: tests/iotp/fixtures."""
from __future__ import annotations

import pytest

from payments.doors.iotp import views
from payments.iotp.models import IotpPayment
from payments.models import Transaction
from payments.states import TransactionStatus

from .support import URI, card_data, fixture, render, window

pytestmark = pytest.mark.django_db


def refused(answer, code: str, *, severity: str = "HardError", attribute: str | None = None):  # type: ignore[no-untyped-def]
    assert answer.status == 200, answer.text
    assert answer.content_type.startswith("application/xml")
    assert answer.error_code == code, answer.text
    assert answer.error.get("Severity") == severity
    assert answer.error.get("ErrorDesc")
    if attribute is not None:
        assert answer.location.get("AttName") == attribute, answer.text
    # Nothing but the ErrorResponse: no half answer.
    assert [child.tag.split("}")[1] for child in answer.root] == ["ErrorResponse"]
    return answer


def start(core, merchant, pay_id="PH-0001", card=None, times=None, **changes):  # type: ignore[no-untyped-def]
    """StartPaymentPaymentHandler (fixture 06, or 07 without card data when card is False).

    `times` fixes OkFrom/OkTo: a retry resends the same document, and a window built anew on each call
    differs from the first whenever the clock crosses a second between them.
    """
    name = "07-StartPaymentPaymentHandler-without-card" if card is False else "06-StartPaymentPaymentHandler"
    text = render(f"exchanges/{name}.request.xml", merchant=str(merchant.uuid), card_data=card or card_data(),
                  **(times or window())).decode()
    text = text.replace('"PH-0001"', f'"{pay_id}"').replace('"PH-0002"', f'"{pay_id}"')
    for old, new in changes.items():
        text = text.replace(old, new)
    return core.post(text.encode())


# --- Not XML, bombs, entities, DTDs, roots ------------------------------------------------


@pytest.mark.parametrize(("document", "code"), [
    ("hostile/not-xml.txt", "XmlNotWellFrmd"),
    ("hostile/undeclared-prefix.xml", "XmlNotWellFrmd"),
    ("hostile/billion-laughs.xml", "XmlNotValid"),
    ("hostile/external-entity.xml", "XmlNotValid"),
    ("hostile/external-dtd.xml", "XmlNotValid"),
    ("hostile/dtd.xml", "XmlNotValid"),
    ("hostile/wrong-root.xml", "XmlNotValid"),
    ("hostile/wrong-namespace.xml", "XmlNotValid"),
    ("hostile/two-calls.xml", "XmlNotValid"),
    ("hostile/no-call.xml", "XmlNotValid"),
])
def test_documents_that_are_not_one_iotp_request(core, document, code) -> None:  # type: ignore[no-untyped-def]
    answer = refused(core.post(fixture(document).encode()), code)
    assert answer.location == {"ElementRef": "IotpPaymentApiRequest"}
    assert "lol" not in answer.text and "root:" not in answer.text  # nothing expanded, nothing read


@pytest.mark.parametrize("body", [b"", b"\xff\xfe<\x00a\x00", b"<a>\xc3\x28</a>", b"<" * 10_000])
def test_bytes_that_are_not_xml(core, body) -> None:  # type: ignore[no-untyped-def]
    refused(core.post(body), "XmlNotWellFrmd")


def test_a_deeply_nested_document_is_refused_not_crashed(core) -> None:  # type: ignore[no-untyped-def]
    depth = 100_000
    body = (b'<IotpPaymentApiRequest xmlns="http://www.iotp.org/2000/08/PaymentAPI"><InquirePendingPayment>'
            + b"<a>" * depth + b"</a>" * depth + b"</InquirePendingPayment></IotpPaymentApiRequest>")
    answer = core.post(body)
    assert answer.status == 200 and answer.error_code in (None, "XmlNotWellFrmd"), answer.text[:500]


def test_a_body_over_one_mebibyte_is_msg_too_large_before_anything_else(core) -> None:  # type: ignore[no-untyped-def]
    padding = b" " * (1024 * 1024)
    body = fixture("exchanges/09-InquirePendingPayment.request.xml").encode().replace(b"<InquirePendingPayment/>",
                                                                                   b"<InquirePendingPayment/>" + padding)
    refused(core.post(body), "MsgTooLarge")
    # Refused before reading: even unsigned.
    refused(core.post(body, authorization="PLTOKEN nobody"), "MsgTooLarge")
    # One byte under the limit is read.
    assert core.post(body[: 1024 * 1024]).status == 200


# --- Calls ------------------------------------------------------------------------------------


def test_an_unknown_call_is_el_not_supp(core) -> None:  # type: ignore[no-untyped-def]
    answer = refused(core.post(fixture("hostile/unknown-call.xml").encode()), "ElNotSupp")
    assert answer.location == {"ElementRef": "TransferAllTheMoney"}


@pytest.mark.parametrize("call", [
    "FindPaymentInstrument", "CheckPaymentPossibility", "CheckPaymentPossiblity", "StartPaymentConsumer",
    "ResumePaymentConsumer", "Authenticate", "StartPaymentInquiry", "CallBack",
])
def test_consumer_side_calls_and_callback_are_req_not_supp(core, call) -> None:  # type: ignore[no-untyped-def]
    answer = refused(core.post(render("hostile/consumer-call.xml", call=call)), "ReqNotSupp")
    assert answer.location == {"ElementRef": call}


# --- Attributes ---------------------------------------------------------------------------


@pytest.mark.parametrize("attribute", [
    "BrandId", "CurrCode", "Amount", "PayDirection", "ProtocolId", "OkFrom", "OkTo", "PaymentHandlerPayId",
    "MerchantOrgId",
])
def test_a_missing_required_attribute_is_att_missing(core, merchant, attribute) -> None:  # type: ignore[no-untyped-def]
    text = render("exchanges/06-StartPaymentPaymentHandler.request.xml", merchant=str(merchant.uuid),
                  card_data=card_data(), **window()).decode()
    import re

    text = re.sub(rf'\s{attribute}="[^"]*"', "", text)
    answer = refused(core.post(text.encode()), "AttMissing", attribute=attribute)
    assert answer.location["ElementRef"] == "StartPaymentPaymentHandler"
    assert not Transaction.objects.exists() and not IotpPayment.objects.exists()


@pytest.mark.parametrize(("old", "new", "attribute"), [
    ('Amount="12.50"', 'Amount="12.505"', "Amount"),
    ('Amount="12.50"', 'Amount="-1"', "Amount"),
    ('Amount="12.50"', 'Amount="0"', "Amount"),
    ('Amount="12.50"', 'Amount="1e3"', "Amount"),
    ('Amount="12.50"', 'Amount="12345678901.00"', "Amount"),
    ('CurrCode="EUR"', 'CurrCode="XXX"', "CurrCode"),
    ('CurrCode="EUR"', 'CurrCode="eur"', "CurrCode"),
    ('CurrCode="EUR"', 'CurrCode="USD"', "CurrCode"),  # the gateway's, not this merchant's (EUR)
    ('CurrCodeType="ISO4217-A"', 'CurrCodeType="IOTP"', "CurrCodeType"),
    ('BrandId="Visa"', 'BrandId="Amex"', "BrandId"),
    ('PayDirection="Debit"', 'PayDirection="Sideways"', "PayDirection"),
    ('PayDirection="Debit"', 'PayDirection="Credit"', "PayDirection"),
    ('ProtocolId="GatewayCard-1.0"', 'ProtocolId="SETv1.0"', "ProtocolId"),
    ('PaymentHandlerPayId="PH-0001"', 'PaymentHandlerPayId="has space"', "PaymentHandlerPayId"),
    ('PaymentHandlerPayId="PH-0001"', 'PaymentHandlerPayId="' + "x" * 51 + '"', "PaymentHandlerPayId"),
    ('MerchantOrgId="', 'MerchantOrgId="6f9619ff-8b86-4d11-b42d-00c04fc964ff" Old="', "MerchantOrgId"),
])
def test_an_illegal_attribute_value_is_att_val_illegal(core, merchant, old, new, attribute) -> None:  # type: ignore[no-untyped-def]
    answer = refused(start(core, merchant, **{old: new}), "AttValIllegal", attribute=attribute)
    assert answer.location["ElementRef"] == "StartPaymentPaymentHandler"
    assert not Transaction.objects.exists()


@pytest.mark.parametrize(("which", "value"), [
    ("OkFrom", "yesterday"), ("OkFrom", "2026-12-01T10:00:00"),  # no offset
    ("OkFrom", "2999-01-01T00:00:00Z"),  # not yet
    ("OkTo", "2001-01-01T00:00:00Z"),  # over (and before OkFrom)
])
def test_an_illegal_time_window(core, merchant, which, value) -> None:  # type: ignore[no-untyped-def]
    import re

    text = render("exchanges/06-StartPaymentPaymentHandler.request.xml", merchant=str(merchant.uuid),
                  card_data=card_data(), **window()).decode()
    text = re.sub(rf'{which}="[^"]*"', f'{which}="{value}"', text)
    if which == "OkFrom" and value.startswith("2999"):
        text = re.sub(r'OkTo="[^"]*"', 'OkTo="2999-01-02T00:00:00Z"', text)
    refused(core.post(text.encode()), "AttValIllegal", attribute=which)


@pytest.mark.parametrize(("payload", "code"), [
    ("not base64!", "EncapProtErr"),
    ("bm90IGpzb24=", "EncapProtErr"),  # "not json"
    ("eyJwYW4iOiA0MjQyfQ==", "EncapProtErr"),  # {"pan": 4242}
    ("eyJwYW4iOiAiNDI0MiJ9", "EncapProtErr"),  # no expiry
])
def test_malformed_card_data_is_encap_prot_err_and_records_nothing(core, merchant, payload, code) -> None:  # type: ignore[no-untyped-def]
    answer = refused(start(core, merchant, card=payload), code)
    assert answer.location == {"ElementRef": "PaySchemePackagedContent"}
    assert "4242" not in answer.text
    assert not Transaction.objects.exists()


def test_card_data_must_be_base64_transformed(core, merchant) -> None:  # type: ignore[no-untyped-def]
    answer = start(core, merchant, **{'Transform="BASE64"': 'Transform="NONE"'})
    refused(answer, "AttValIllegal", attribute="Transform")


def test_a_card_of_another_brand_is_el_inconsistent(core, merchant) -> None:  # type: ignore[no-untyped-def]
    refused(start(core, merchant, card=card_data("5555555555554444")), "ElInconsistent", attribute="BrandId")
    assert not Transaction.objects.exists()


def test_a_brand_the_merchant_does_not_accept(core, merchant) -> None:  # type: ignore[no-untyped-def]
    from payments.iotp.models import IotpMerchantBrands

    IotpMerchantBrands.objects.create(merchant=merchant, brands=["MasterCard"])
    refused(start(core, merchant), "AttValIllegal", attribute="BrandId")


# --- PayIds and states ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "attribute"), [
    ("08-ChangeProcessState", "PayId"), ("10-ResumePaymentPaymentHandler", "PaymentHandlerPayId"),
    ("11-ContinueProcess", "PayId"), ("12-InquireProcessState", "PayId"),
    ("13-InquirePaymentStatus", "PaymentHandlerPayId"), ("14-CheckPaymentReceipt", "PayId"),
    ("16-RemovePaymentLog", "PayId"),
])
def test_an_unknown_pay_id_is_att_val_illegal(core, merchant, name, attribute) -> None:  # type: ignore[no-untyped-def]
    text = render(f"exchanges/{name}.request.xml", card_data=card_data(), receipt="eA==").decode()
    text = text.replace("PH-0001", "PH-9999").replace("PH-0002", "PH-9999")
    refused(core.post(text.encode()), "AttValIllegal", attribute=attribute)


def test_another_merchants_pay_id_is_unknown(core, merchant, db) -> None:  # type: ignore[no-untyped-def]
    from merchants.credentials import api_keys_issue
    from tests.factories import MerchantFactory

    from .support import IotpClient

    other = MerchantFactory()
    other_core = IotpClient(api_keys_issue(merchant=other))
    assert start(other_core, other).error is None
    refused(core.post(fixture("exchanges/12-InquireProcessState.request.xml").encode()), "AttValIllegal",
            attribute="PayId")


def test_a_pay_id_repeated_with_other_data_is_refused_and_charges_nothing(core, merchant) -> None:  # type: ignore[no-untyped-def]
    times = window()
    first = start(core, merchant, times=times)
    assert first.error is None
    again = start(core, merchant, times=times)  # the same request: the same answer, nothing charged
    assert again.error is None and again.text == first.text
    assert Transaction.objects.count() == 1
    other = start(core, merchant, times=times, **{'Amount="12.50"': 'Amount="99.00"'})
    refused(other, "AttValIllegal", attribute="PaymentHandlerPayId")
    other_card = start(core, merchant, times=times, card=card_data("4000000000000002"))
    refused(other_card, "AttValIllegal", attribute="PaymentHandlerPayId")
    assert Transaction.objects.count() == 1


def test_calls_the_state_forbids_are_bus_error(core, merchant) -> None:  # type: ignore[no-untyped-def]
    assert start(core, merchant).error is None  # PH-0001 is CompletedOk
    body = render("exchanges/11-ContinueProcess.request.xml", card_data=card_data()).replace(b"PH-0002", b"PH-0001")
    refused(core.post(body), "BusError", attribute="PayId")  # nothing to continue
    refused(core.post(fixture("exchanges/10-ResumePaymentPaymentHandler.request.xml").encode()
                      .replace(b"PH-0002", b"PH-0001")), "BusError", attribute="PaymentHandlerPayId")
    assert start(core, merchant, pay_id="PH-0002", card=False).error is None  # InProgress
    refused(core.post(fixture("exchanges/16-RemovePaymentLog.request.xml").encode().replace(b"PH-0001", b"PH-0002")),
            "BusError", attribute="PayId")
    refused(core.post(fixture("exchanges/10-ResumePaymentPaymentHandler.request.xml").encode()),
            "BusError", attribute="PaymentHandlerPayId")  # not suspended
    assert Transaction.objects.get(merchant_reference="iotp:PH-0002").status == TransactionStatus.AWAITING_CARD


def test_continue_process_without_card_data_is_el_missing(core, merchant) -> None:  # type: ignore[no-untyped-def]
    assert start(core, merchant, pay_id="PH-0002", card=False).error is None
    body = render("exchanges/11-ContinueProcess.request.xml", card_data=card_data()).replace(b'Name="CardData"',
                                                                                           b'Name="Other"')
    answer = refused(core.post(body), "ElMissing")
    assert answer.location == {"ElementRef": "PaySchemePackagedContent"}


def test_change_process_state_to_an_unknown_state(core, merchant) -> None:  # type: ignore[no-untyped-def]
    body = fixture("exchanges/08-ChangeProcessState.request.xml").encode().replace(b"Suspended", b"Asleep")
    refused(core.post(body), "AttValIllegal", attribute="ProcessState")


# --- Transport ------------------------------------------------------------------------------


def test_failed_authentication_is_401_without_xml(core, keys) -> None:  # type: ignore[no-untyped-def]
    body = fixture("exchanges/09-InquirePendingPayment.request.xml").encode()
    from payments.doors import pltoken

    for authorization in ["", "Basic abc", pltoken.authorization_header(
            app_id=keys.app_id, app_key=keys.app_key, method="POST", uri=URI, body=body + b" ")]:
        answer = core.post(body, authorization=authorization)
        assert answer.status == 401 and b"<" not in answer.body
        assert answer.content_type.startswith("text/plain")


def test_the_content_type_must_be_xml(core) -> None:  # type: ignore[no-untyped-def]
    body = fixture("exchanges/09-InquirePendingPayment.request.xml").encode()
    refused(core.post(body, content_type="application/json"), "ReqRefused")
    assert core.post(body, content_type="text/xml; charset=utf-8").error is None


def test_other_methods_are_405(core) -> None:  # type: ignore[no-untyped-def]
    assert core.client.get("/iotp").status_code == 405


def test_overload_is_system_busy_with_min_retry_secs(core, settings) -> None:  # type: ignore[no-untyped-def]
    settings.IOTP_MAX_CONCURRENT_REQUESTS = 2
    body = fixture("exchanges/09-InquirePendingPayment.request.xml").encode()
    assert views.admission.enter() and views.admission.enter()  # two requests in flight in this process
    try:
        answer = refused(core.post(body), "SystemBusy", severity="TransientError")
        assert answer.error.get("MinRetrySecs") == "5"
    finally:
        views.admission.leave()
        views.admission.leave()
    assert core.post(body).error is None


def test_a_packaged_content_over_64_kib_is_el_too_large(core, merchant) -> None:  # type: ignore[no-untyped-def]
    answer = refused(start(core, merchant, card="A" * (64 * 1024 + 4)), "ElTooLarge")
    assert answer.location == {"ElementRef": "PaySchemePackagedContent"}


def test_no_card_number_nor_cvv_is_kept_or_logged(core, merchant, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    from django.db import connection

    caplog.set_level(logging.DEBUG)
    pan, cvv = "5555555555554444", "987"
    assert start(core, merchant, card=card_data(pan, cvv=cvv), **{'BrandId="Visa"': 'BrandId="MasterCard"'}).error is None
    assert start(core, merchant, pay_id="PH-0002", card=card_data("4000000000000002", cvv=cvv)).error is None
    with connection.cursor() as cursor:
        for table in ("payments_transaction", "iotp_iotppayment", "payments_event"):
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - our own table names
            dump = repr(cursor.fetchall())
            assert pan not in dump and "4000000000000002" not in dump, table
            assert f"'{cvv}'" not in dump and f'"{cvv}"' not in dump, table
    assert pan not in caplog.text and "4000000000000002" not in caplog.text
