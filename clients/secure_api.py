"""A small client of the secure API: signs every request (PLTOKEN) and encrypts every
payload (the AES-GCM envelope), then decrypts the answer.

Needs only ``httpx``, ``cryptography`` and ``simplejson``; no Django. It is
written from the contract (docs/secure-api.md), independently of the
gateway's own code, so that the tests that use it check two implementations
against each other, as a merchant's would be::

    api = SecureApiClient("https://gateway.example.com", app_id=..., app_key=..., data_key=...)
    account = api.post("/account", {"externalID": "cust-42"}).data
    card = api.post(f"/account/{account['uuid']}/paymentinfo",
                    {"paymentType": "CreditCard",
                     "card": {"number": "4242424242424242", "expMonth": 12, "expYear": 2030}}).data
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import simplejson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


# --- The two primitives, as the contract states them ----------------------------------------


def request_string(*, app_id: str, method: str, uri: str, timestamp: int | str, nonce: str, body: bytes) -> str:
    encoded = "".join(chr(b) if b in _UNRESERVED else f"%{b:02x}" for b in uri.lower().encode("utf-8"))
    digest = base64.b64encode(hashlib.md5(body).digest()).decode() if body else ""  # noqa: S324 - the spec's
    return f"{app_id}{method.upper()}{encoded}{timestamp}{nonce}{digest}"


def authorization(*, app_id: str, app_key: str, method: str, uri: str, body: bytes = b"",
                  nonce: str | None = None, timestamp: int | None = None) -> str:
    """The ``Authorization`` header: ``PLTOKEN app_id:signature:nonce:timestamp``."""
    nonce = nonce or str(uuid.uuid4())
    stamp = int(time.time()) if timestamp is None else timestamp
    message = request_string(app_id=app_id, method=method, uri=uri, timestamp=stamp, nonce=nonce, body=body)
    sig = base64.b64encode(hmac.new(base64.b64decode(app_key), message.encode("utf-8"), hashlib.sha256).digest())
    return f"PLTOKEN {app_id}:{sig.decode()}:{nonce}:{stamp}"


def encrypt(data_key: str, plaintext: bytes, *, iv: bytes | None = None) -> str:
    """hex(IV || AES-256-GCM ciphertext || tag); IV = UTC YYYYMMDDHHMMSS + 12 random hex (26 bytes)."""
    if iv is None:
        iv = (datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(6)).encode("ascii")
    return (iv + AESGCM(base64.b64decode(data_key)).encrypt(iv, plaintext, None)).hex()


def decrypt(data_key: str, envelope: str) -> bytes:
    raw = bytes.fromhex(envelope)
    return AESGCM(base64.b64decode(data_key)).decrypt(raw[:26], raw[26:], None)


def compact_json(value: object) -> bytes:
    return simplejson.dumps(value, use_decimal=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- The client -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A decrypted answer: ``status``, and ``data`` or ``error`` (amounts are Decimal)."""

    status: int
    body: dict[str, Any]
    replayed: bool = False

    @property
    def data(self) -> dict[str, Any]:
        if "data" not in self.body:
            raise SecureApiError(self)
        return self.body["data"]

    @property
    def error(self) -> dict[str, Any] | None:
        return self.body.get("error")

    @property
    def code(self) -> int | None:
        return self.error["code"] if self.error else None


class SecureApiError(Exception):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        super().__init__(f"{answer.status} {answer.error}")


class SecureApiClient:
    def __init__(self, base_url: str, *, app_id: str, app_key: str, data_key: str,
                 http: httpx.Client | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.app_id, self.app_key, self.data_key = app_id, app_key, data_key
        self.http = http or httpx.Client(timeout=timeout)

    def envelope(self, text: str) -> str:
        """An envelope of ``text`` (to send a ``{uuid}`` path segment encrypted, say)."""
        return encrypt(self.data_key, text.encode("utf-8"))

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *,
                params: dict[str, Any] | str | None = None, idempotency_key: str | None = None,
                headers: dict[str, str] | None = None) -> Answer:
        method = method.upper()
        url = self.base_url + path
        content = b""
        sent = {**(headers or {})}
        if params:
            query = params if isinstance(params, str) else urlencode(params)
            url += "?data=" + encrypt(self.data_key, query.encode("utf-8"))
        if body is not None:
            content = b"data=" + encrypt(self.data_key, compact_json(body)).encode("ascii")
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        if idempotency_key is not None:
            sent["Idempotency-Key"] = idempotency_key
        sent["Authorization"] = authorization(
            app_id=self.app_id, app_key=self.app_key, method=method, uri=url, body=content
        )
        response = self.http.request(method, url, content=content, headers=sent)
        return self.read(response)

    def read(self, response: httpx.Response) -> Answer:
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        if response.headers.get("content-type", "").startswith("application/json"):
            return Answer(response.status_code, simplejson.loads(response.text, use_decimal=True), replayed)
        plaintext = decrypt(self.data_key, response.text)
        return Answer(response.status_code, simplejson.loads(plaintext.decode("utf-8"), use_decimal=True), replayed)

    def get(self, path: str, params: dict[str, Any] | str | None = None) -> Answer:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any] | None = None, *, idempotency_key: str | None = None) -> Answer:
        return self.request("POST", path, body, idempotency_key=idempotency_key)

    def put(self, path: str, body: dict[str, Any]) -> Answer:
        return self.request("PUT", path, body)

    def delete(self, path: str) -> Answer:
        return self.request("DELETE", path)

    def close(self) -> None:
        self.http.close()
