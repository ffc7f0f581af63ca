"""Hypothesis against the parser and the whole door: whatever the bytes, the
answer is an IotpPaymentApiResponse (or a call's answer), never an exception."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payments.doors.iotp.errors import IotpError
from payments.doors.iotp.xmlio import parse

from .support import NS, fixture

CALLS = [
    "FindAcceptedPaymentBrand", "StartPaymentPaymentHandler", "ContinueProcess", "ChangeProcessState",
    "InquireProcessState", "CheckPaymentReceipt", "PaymentInstrumentInquiry", "CheckAuthResponse",
    "StartPaymentConsumer", "Nonsense",
]
ATTRIBUTES = ["PayId", "PaymentHandlerPayId", "Amount", "CurrCode", "BrandId", "PayDirection", "ProtocolId",
              "OkFrom", "OkTo", "MerchantOrgId", "ProcessState", "PropertyTypeList", "AuthenticationId", "Transform"]
SEEDS = [fixture(f"exchanges/{name}.request.xml").encode() for name in (
    "06-StartPaymentPaymentHandler", "11-ContinueProcess", "14-CheckPaymentReceipt", "05-CheckAuthResponse")]

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@st.composite
def documents(draw) -> bytes:  # type: ignore[no-untyped-def]
    """Near-valid requests: the right root, a call, attributes and children of any value."""
    root = ET.Element(f"{{{NS}}}IotpPaymentApiRequest" if draw(st.booleans()) else draw(
        st.sampled_from(["IotpPaymentApiRequest", "Other"])))
    for _ in range(draw(st.integers(0, 2))):
        call = ET.SubElement(root, f"{{{NS}}}{draw(st.sampled_from(CALLS))}")
        for name in draw(st.lists(st.sampled_from(ATTRIBUTES), max_size=6, unique=True)):
            call.set(name, draw(text.filter(lambda s: all(ord(c) >= 32 or c in "\t\n\r" for c in s))))
        for _ in range(draw(st.integers(0, 2))):
            tag = draw(st.sampled_from(["PaySchemePackagedContent", "PackagedContent", "Algorithm",
                                        "AuthReqPackagedContent", "AuthResPackagedContent"]))
            child = ET.SubElement(call, f"{{{NS}}}{tag}", {"Name": draw(st.sampled_from(["CardData", "Receipt", "x"])),
                                                          "Transform": draw(st.sampled_from(["BASE64", "NONE", "?"]))})
            child.text = draw(st.one_of(st.just("eyJwYW4iOiI0MjQyNDI0MjQyNDI0MjQyIiwiZXhwaXJ5IjoiMjAzMDEyIn0="),
                                        text.filter(lambda s: all(ord(c) >= 32 for c in s))))
    return ET.tostring(root)


@st.composite
def mutations(draw) -> bytes:  # type: ignore[no-untyped-def]
    """A real request with bytes flipped, cut or inserted."""
    body = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(body) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            body[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del body[at: at + draw(st.integers(1, 40))]
        else:
            body[at:at] = draw(st.sampled_from([b"<!DOCTYPE x [<!ENTITY a 'b'>]>", b"&a;", b"<", b"]]>", b"\x00",
                                                b"<x:y/>", b"\xc3", b'"', b"<!--", b"<?pi?>"]))
        if not body:
            break
    return bytes(body)


@given(st.one_of(st.binary(max_size=300), documents(), mutations()))
@settings(max_examples=400, deadline=None)
def test_the_parser_answers_every_input_with_a_call_or_an_iotp_error(body: bytes) -> None:
    try:
        call = parse(body)
    except IotpError as error:
        assert error.code in {"XmlNotWellFrmd", "XmlNotValid"}
        assert error.desc
    else:
        assert call.name and call.element is not None


@pytest.mark.django_db
@given(body=st.one_of(documents(), mutations()))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_door_never_answers_500(core, merchant, body: bytes) -> None:  # type: ignore[no-untyped-def]
    answer = core.post(body)
    assert answer.status == 200, answer.text
    root = answer.root
    assert root.tag == f"{{{NS}}}IotpPaymentApiResponse"
    error = answer.error
    if error is not None:
        assert error.get("ErrorCode") != "UnknownError", answer.text  # every input has a named refusal
        assert error.get("Severity") in {"Warning", "TransientError", "HardError"}
