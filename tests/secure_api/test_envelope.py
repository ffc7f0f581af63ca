"""The envelope and the request string, property-based: the client (written from the
contract) and the gateway agree on every input, and any change to an envelope is refused."""
from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients import secure_api as client
from payments.doors.secure_api import envelope

KEYS = st.binary(min_size=32, max_size=32)


@given(key=KEYS, plaintext=st.binary(max_size=2048))
def test_what_the_client_seals_the_gateway_opens_and_back(key: bytes, plaintext: bytes) -> None:
    data_key = base64.b64encode(key).decode()
    sealed = client.encrypt(data_key, plaintext)
    assert sealed == sealed.lower() and len(sealed) == 2 * (26 + len(plaintext) + 16)
    iv = bytes.fromhex(sealed)[:26].decode("ascii")
    assert iv[:14].isdigit() and all(c in "0123456789abcdef" for c in iv[14:])
    assert envelope.open_envelope(key, sealed) == plaintext
    assert client.decrypt(data_key, envelope.seal(key, plaintext)) == plaintext


@settings(max_examples=200)
@given(key=KEYS, plaintext=st.binary(min_size=1, max_size=64), position=st.integers(min_value=0), bit=st.integers(0, 7))
def test_any_flipped_bit_is_refused(key: bytes, plaintext: bytes, position: int, bit: int) -> None:
    raw = bytearray(bytes.fromhex(envelope.seal(key, plaintext)))
    raw[position % len(raw)] ^= 1 << bit
    with pytest.raises(envelope.EnvelopeError):
        envelope.open_envelope(key, raw.hex())


@given(app_id=st.text("0123456789abcdef", min_size=32, max_size=32),
       method=st.sampled_from(["GET", "post", "Put", "DELETE"]),
       uri=st.text(min_size=1, max_size=200), stamp=st.integers(0, 10**10),
       nonce=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64),
       body=st.binary(max_size=300))
def test_the_client_and_the_gateway_build_the_same_request_string(app_id, method, uri, stamp, nonce, body) -> None:  # type: ignore[no-untyped-def]
    from payments.doors import pltoken

    kwargs = {"app_id": app_id, "method": method, "uri": uri, "timestamp": str(stamp), "nonce": nonce, "body": body}
    assert client.request_string(**kwargs) == pltoken.request_string(**kwargs)


@pytest.mark.parametrize(("text", "problem"), [
    ("", "missing"), ("xyz", "not hex"), ("abc", "not hex"), ("00" * 41, "too short"),
])
def test_malformed_envelopes_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(envelope.EnvelopeError, match=problem):
        envelope.open_envelope(b"k" * 32, text)
