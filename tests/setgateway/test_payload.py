"""The DER payload: every GatewayMessage choice both ways, strict DER, the
module's constraints, and garbage that only ever raises PayloadError."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from setgateway import payload
from setgateway.payload import (
    AuthReq,
    AuthRes,
    CapReq,
    CapRes,
    CredReq,
    CredRes,
    CurrencyAmount,
    ErrorMsg,
    InqReq,
    InqRes,
    PayloadError,
    RevReq,
    RevRes,
)

EUR = CurrencyAmount(978, 1250, -2)

EVERY_CHOICE = [
    AuthReq("order-1", "4242424242424242", "203012", EUR),
    AuthReq("order-2", "5555555555554444", "203101", EUR, capture_now=True),
    AuthRes("order-1", "approved", gateway_trans_id="17", auth_code="123456"),
    AuthRes("order-1", "declined", reason="Card banned"),
    AuthRes("order-1", "failed"),
    CapReq("order-1", CurrencyAmount(978, 5, 0)),
    CapRes("order-1", "approved"),
    CapRes("order-1", "declined", reason="Transaction is voided"),
    CredReq("order-1", "refund-1", EUR),
    CredRes("order-1", "refund-1", "approved"),
    CredRes("order-1", "refund-1", "declined", reason="Amount exceeds what remains (0.00)"),
    RevReq("order-1"),
    RevRes("order-1", "approved"),
    RevRes("order-1", "failed", reason="acquirer unavailable"),
    InqReq("ordér-ü"),
    InqRes("order-1", "completedOk", EUR, EUR, CurrencyAmount(978, 0, -2)),
    ErrorMsg(1, "not a DER GatewayMessage"),
    ErrorMsg(3, "transId reused", trans_id="order-1"),
]


@pytest.mark.parametrize("message", EVERY_CHOICE, ids=lambda m: m.KIND)
def test_every_choice_round_trips(message: payload.Message) -> None:
    data = payload.encode(message)
    assert payload.decode(data) == message


def test_the_choice_is_an_explicit_context_tag() -> None:
    # GatewayPayload DEFINITIONS EXPLICIT TAGS: [0] AuthReq is A0 (constructed) around a SEQUENCE.
    assert payload.encode(AuthReq("t", "4242424242424242", "203012", EUR))[0] == 0xA0
    assert payload.encode(ErrorMsg(9, "x"))[0] == 0xAA
    res = payload.encode(AuthRes("t", "approved", gateway_trans_id="9"))
    assert bytes.fromhex("a0030c0139") in res  # gatewayTransId [0] EXPLICIT UTF8String "9"


def test_capture_now_false_is_not_encoded_and_true_is() -> None:
    plain = payload.encode(AuthReq("t", "4242424242424242", "203012", EUR))
    captured = payload.encode(AuthReq("t", "4242424242424242", "203012", EUR, capture_now=True))
    assert not plain.endswith(b"\x01\x01\x00") and captured.endswith(b"\x01\x01\xff")


def test_a_default_value_written_out_is_not_der() -> None:
    """captureNow FALSE encoded explicitly is valid BER, not DER: ErrorMsg code 1."""
    inner = payload.encode(AuthReq("t", "4242424242424242", "203012", EUR))
    seq = inner[2:]  # A0 len | 30 len ...
    body = seq[2:] + b"\x01\x01\x00"
    ber = bytes([0xA0, len(body) + 2, 0x30, len(body)]) + body
    with pytest.raises(PayloadError) as caught:
        payload.decode(ber)
    assert caught.value.code == payload.NOT_DECODABLE


def test_long_form_length_is_not_der() -> None:
    data = payload.encode(RevReq("order-1"))
    ber = bytes([data[0], 0x81, data[1]]) + data[2:]
    with pytest.raises(PayloadError) as caught:
        payload.decode(ber)
    assert caught.value.code == payload.NOT_DECODABLE


def test_a_boolean_true_that_is_not_ff_is_not_der() -> None:
    data = bytearray(payload.encode(AuthReq("t", "4242424242424242", "203012", EUR, capture_now=True)))
    data[-1] = 0x01
    with pytest.raises(PayloadError) as caught:
        payload.decode(bytes(data))
    assert caught.value.code == payload.NOT_DECODABLE


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x30\x00", b"\xa0\x00", b"\xab\x02\x30\x00",
                                  b"hello", payload.encode(RevReq("x")) + b"\x00", payload.encode(RevReq("x"))[:-1]])
def test_not_a_gateway_message_is_code_1(data: bytes) -> None:
    with pytest.raises(PayloadError) as caught:
        payload.decode(data)
    assert caught.value.code == payload.NOT_DECODABLE


def _der(name: str, value: dict) -> bytes:
    return payload._GatewayMessage(name=name, value=value).dump()


@pytest.mark.parametrize(("name", "value", "field"), [
    ("revReq", {"transId": ""}, "transId"),
    ("revReq", {"transId": "x" * 65}, "transId"),
    ("authReq", {"transId": "t", "pan": "42424242424", "cardExpiry": "203012",
                 "amount": {"currency": 978, "amount": 1, "amtExp10": 0}}, "pan"),
    ("authReq", {"transId": "t", "pan": "4242 4242 4242 4242", "cardExpiry": "203012",
                 "amount": {"currency": 978, "amount": 1, "amtExp10": 0}}, "pan"),
    ("authReq", {"transId": "t", "pan": "4242424242424242", "cardExpiry": "20301",
                 "amount": {"currency": 978, "amount": 1, "amtExp10": 0}}, "cardExpiry"),
    ("capReq", {"transId": "t", "amount": {"currency": 0, "amount": 1, "amtExp10": 0}}, "amount.currency"),
    ("capReq", {"transId": "t", "amount": {"currency": 1000, "amount": 1, "amtExp10": 0}}, "amount.currency"),
    ("capReq", {"transId": "t", "amount": {"currency": 978, "amount": -1, "amtExp10": 0}}, "amount.amount"),
    ("capReq", {"transId": "t", "amount": {"currency": 978, "amount": 1, "amtExp10": 9}}, "amount.amtExp10"),
    ("credReq", {"transId": "t", "credId": "", "amount": {"currency": 978, "amount": 1, "amtExp10": 0}}, "credId"),
])
def test_a_broken_constraint_is_code_4_naming_the_field(name: str, value: dict, field: str) -> None:
    with pytest.raises(PayloadError) as caught:
        payload.decode(_der(name, value))
    assert caught.value.code == payload.INVALID_FIELD
    assert caught.value.reason.startswith(f"invalid field {field}:")
    assert caught.value.trans_id == (value["transId"] if 1 <= len(value["transId"]) <= 64 else None)


def test_encode_refuses_what_breaks_the_module() -> None:
    with pytest.raises(ValueError, match="pan"):
        payload.encode(AuthReq("t", "12", "203012", EUR))
    with pytest.raises(ValueError, match="authCode"):
        payload.encode(AuthRes("t", "approved", auth_code="ok!"))
    with pytest.raises(ValueError, match="status"):
        payload.encode(CapRes("t", "maybe"))


def test_amount_values() -> None:
    assert CurrencyAmount(978, 1250, -2).value == Decimal("12.50")
    assert CurrencyAmount(978, 5, 2).value == Decimal("500")
    assert CurrencyAmount.of(Decimal("12.50"), currency=978, exponent=2) == CurrencyAmount(978, 1250, -2)
    assert CurrencyAmount.of(Decimal("100"), currency=392, exponent=0) == CurrencyAmount(392, 100, 0)
    with pytest.raises(ValueError):
        CurrencyAmount.of(Decimal("0.001"), currency=978, exponent=2)


def test_the_card_number_is_not_in_the_repr() -> None:
    assert "4242424242424242" not in repr(AuthReq("t", "4242424242424242", "203012", EUR))


# --- Fuzzing ------------------------------------------------------------------------------------

text64 = st.text(min_size=1, max_size=64)
amounts = st.builds(CurrencyAmount, st.integers(1, 999), st.integers(0, 10**20), st.integers(-8, 8))
statuses = st.sampled_from(payload.STATUSES)
optional_text = st.none() | st.text(max_size=40)
messages = st.one_of(
    st.builds(AuthReq, text64, st.text("0123456789", min_size=12, max_size=19),
              st.text("0123456789", min_size=6, max_size=6), amounts, st.booleans()),
    st.builds(AuthRes, text64, statuses, optional_text,
              st.none() | st.text("ABCXYZ0189 '()+,-./:=?", max_size=12), optional_text),
    st.builds(CapReq, text64, amounts),
    st.builds(CapRes, text64, statuses, optional_text),
    st.builds(CredReq, text64, text64, amounts),
    st.builds(CredRes, text64, text64, statuses, optional_text),
    st.builds(RevReq, text64),
    st.builds(RevRes, text64, statuses, optional_text),
    st.builds(InqReq, text64),
    st.builds(InqRes, text64, st.sampled_from(payload.PROCESS_STATES), amounts, amounts, amounts),
    st.builds(ErrorMsg, st.integers(-(2**70), 2**70), st.text(max_size=40), st.none() | text64),
)


@given(messages)
@settings(max_examples=300)
def test_any_valid_message_round_trips(message: payload.Message) -> None:
    assert payload.decode(payload.encode(message)) == message


@given(st.binary(max_size=300))
@settings(max_examples=1000)
def test_garbage_raises_only_payload_errors(data: bytes) -> None:
    try:
        payload.decode(data)
    except PayloadError as exc:
        assert exc.code in (payload.NOT_DECODABLE, payload.INVALID_FIELD)


@given(messages, st.data())
@settings(max_examples=300)
def test_a_damaged_message_raises_only_payload_errors_and_decodes_to_der(message: payload.Message, data) -> None:
    raw = bytearray(payload.encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        index = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if action == "flip" and raw:
            raw[index] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del raw[index:index + data.draw(st.integers(1, 8))]
        else:
            raw[index:index] = data.draw(st.binary(min_size=1, max_size=4))
    try:
        decoded = payload.decode(bytes(raw))
    except PayloadError:
        return
    # Whatever still decodes is canonical DER: encoding it gives the same bytes.
    assert payload.encode(decoded) == bytes(raw)

