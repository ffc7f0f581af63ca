"""The AES-GCM envelope of every secure API payload (the spec's "PCNG Encrypt Function").

``envelope = lower-case hex(IV || ciphertext || tag)`` where IV is 26 ASCII
bytes (UTC ``YYYYMMDDHHMMSS`` + 12 random lower-case hex characters: the
spec's ``3230313530393233...`` is ``20150923103304f068eb1da742``), the
cipher AES-256-GCM under the merchant's ``data_key`` with no associated
data, and the tag 16 bytes. Plain Python, no Django: the worked example of
docs/secure-api.md and its test use it directly.
"""
from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

import simplejson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

IV_BYTES = 26
TAG_BYTES = 16
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+\Z")
# An envelope larger than this is refused before decoding (a request body is
# at most DATA_UPLOAD_MAX_MEMORY_SIZE anyway; this keeps paths and queries small too).
MAX_ENVELOPE_CHARS = 2 * 1024 * 1024


class EnvelopeError(ValueError):
    """Not an envelope, or one that does not decrypt under this key (tampered, other key)."""


def new_iv(now: datetime | None = None) -> bytes:
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return (moment.strftime("%Y%m%d%H%M%S") + secrets.token_hex(6)).encode("ascii")


def seal(key: bytes, plaintext: bytes, *, iv: bytes | None = None) -> str:
    iv = new_iv() if iv is None else iv
    if len(iv) != IV_BYTES:
        raise ValueError(f"the IV must be {IV_BYTES} bytes")
    return (iv + AESGCM(key).encrypt(iv, plaintext, None)).hex()


def open_envelope(key: bytes, envelope: object) -> bytes:
    """The plaintext of ``envelope``, or EnvelopeError saying what is wrong with it."""
    if not isinstance(envelope, str) or not envelope:
        raise EnvelopeError("missing")
    if len(envelope) > MAX_ENVELOPE_CHARS:
        raise EnvelopeError("too long")
    if not _HEX.match(envelope):
        raise EnvelopeError("not hex (IV || ciphertext || tag, lower-case hex)")
    raw = bytes.fromhex(envelope)
    if len(raw) < IV_BYTES + TAG_BYTES:
        raise EnvelopeError(f"too short: at least {IV_BYTES}-byte IV and {TAG_BYTES}-byte tag")
    try:
        return AESGCM(key).decrypt(raw[:IV_BYTES], raw[IV_BYTES:], None)
    except InvalidTag:
        raise EnvelopeError("does not decrypt with the data_key (tampered, or encrypted with another key)") from None


def compact_json(value: object) -> bytes:
    """Compact JSON, Decimal amounts as JSON numbers (never through float)."""
    return simplejson.dumps(value, use_decimal=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def compact_json_sorted(value: object) -> bytes:
    """Compact JSON with sorted keys: one text per body, whatever order its fields came in."""
    return simplejson.dumps(value, use_decimal=True, separators=(",", ":"), ensure_ascii=False,
                            sort_keys=True).encode("utf-8")


def parse_json(raw: bytes) -> object:
    """JSON with numbers as Decimal/int (never float): ValueError when it is not JSON."""
    return simplejson.loads(raw.decode("utf-8"), use_decimal=True)
