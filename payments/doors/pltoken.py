"""PLTOKEN: the HMAC request signature of the secure API and the IOTP door.

``Authorization: PLTOKEN {app_id}:{signature}:{nonce}:{timestamp}`` where

    signature     = base64(HMAC-SHA256(base64decode(app_key), UTF-8(request_string)))
    request_string = app_id + METHOD + enc(lower(absolute request URI))
                     + timestamp + nonce + base64(MD5(raw body))   (empty when no body)

and ``enc`` percent-encodes every byte but ``A-Z a-z 0-9 - _ . ~``, with
lower-case hex digits (shared/contracts/secure-api.md, "Authentication").
A request is refused (code 998, HTTP 401) when its header is malformed, its
app_id unknown, its timestamp more than ``API_SIGNATURE_MAX_SKEW_SECONDS``
from now, its signature wrong for every valid key pair of the merchant
(compared in constant time), or its nonce already seen in the window (by any
process: merchants.credentials.api_nonce_remember).

Both sides live here: ``verify`` for the gateway, ``authorization_header``
for clients (the project's own client and the tests use it).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.http import HttpRequest
from django.utils.encoding import escape_uri_path

from merchants.credentials import KeyPair, api_caller_keys, api_nonce_remember
from merchants.models import Merchant

SCHEME = "PLTOKEN"
_APP_ID = re.compile(r"[0-9a-f]{32}\Z")
_TIMESTAMP = re.compile(r"[0-9]{1,12}\Z")
# 1–64 printable ASCII characters, no spaces (a nonce may contain ':' : the
# header is split from both ends).
_NONCE = re.compile(r"[\x21-\x7e]{1,64}\Z")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


class PltokenRefused(Exception):
    """Authentication failed (998). ``merchant`` and ``pair`` are set when the
    app_id named a merchant: its answer can then be encrypted for it."""

    code = 998

    def __init__(self, detail: str, *, merchant: Merchant | None = None, pair: KeyPair | None = None) -> None:
        self.detail = detail
        self.merchant = merchant
        self.pair = pair
        super().__init__(detail)


@dataclass(frozen=True)
class ApiCaller:
    """Who signed a request, and the key pair that signed it (its data_key
    encrypts the answer)."""

    merchant: Merchant
    app_id: str
    pair: KeyPair = field(repr=False)

    @property
    def data_key(self) -> bytes:
        return self.pair.data_key


# --- The request string ---------------------------------------------------------------


def encode_uri(uri: str) -> str:
    """Percent-encode every byte of ``uri`` (UTF-8) that is not unreserved, lower-case hex."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02x}" for b in uri.encode("utf-8"))


def body_digest(body: bytes) -> str:
    """base64(MD5(body)), or '' for an empty body."""
    return base64.b64encode(hashlib.md5(body).digest()).decode() if body else ""  # noqa: S324 - the spec's choice


def request_string(*, app_id: str, method: str, uri: str, timestamp: str, nonce: str, body: bytes) -> str:
    return app_id + method.upper() + encode_uri(uri.lower()) + timestamp + nonce + body_digest(body)


def signature(app_key: bytes, message: str) -> str:
    return base64.b64encode(hmac.new(app_key, message.encode("utf-8"), hashlib.sha256).digest()).decode()


def authorization_header(
    *, app_id: str, app_key: str, method: str, uri: str, body: bytes = b"",
    nonce: str | None = None, timestamp: int | None = None,
) -> str:
    """The ``Authorization`` header value a client sends (``app_key`` as issued, base64)."""
    import uuid

    nonce = nonce or str(uuid.uuid4())
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    message = request_string(app_id=app_id, method=method, uri=uri, timestamp=stamp, nonce=nonce, body=body)
    return f"{SCHEME} {app_id}:{signature(base64.b64decode(app_key), message)}:{nonce}:{stamp}"


# --- The gateway's side -----------------------------------------------------------------


@dataclass(frozen=True)
class _Header:
    app_id: str
    signature: str
    nonce: str
    timestamp: str


def _parse(authorization: str | None) -> _Header:
    if not authorization:
        raise PltokenRefused("missing Authorization header (PLTOKEN app_id:signature:nonce:timestamp)")
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme != SCHEME:
        raise PltokenRefused("the Authorization scheme must be PLTOKEN")
    app_id, _, rest = credentials.strip().partition(":")
    sig, _, rest = rest.partition(":")
    nonce, _, stamp = rest.rpartition(":")
    if not (_APP_ID.match(app_id) and sig and _NONCE.match(nonce) and _TIMESTAMP.match(stamp)):
        raise PltokenRefused("malformed PLTOKEN credentials: expected app_id:signature:nonce:timestamp")
    return _Header(app_id, sig, nonce, stamp)


def absolute_uri(request: HttpRequest) -> str:
    """The request's absolute URI as the client sent it: scheme, host (with its
    port unless the default), path and ``?query`` when there is one.

    The path is the raw one the server received when it tells (gunicorn's
    RAW_URI, REQUEST_URI), else Django's re-encoding of the decoded path
    (the same for the paths this API uses).
    """
    scheme = request.scheme or "http"
    host = request.get_host()
    name, sep, port = host.rpartition(":")
    if sep and (name.endswith("]") or ":" not in name) and port == _DEFAULT_PORTS.get(scheme):
        host = name
    raw = request.META.get("RAW_URI") or request.META.get("REQUEST_URI")
    if raw and raw.startswith("/"):
        target = raw
    else:
        target = escape_uri_path(request.path)
        if query := request.META.get("QUERY_STRING", ""):
            target += "?" + query
    return f"{scheme}://{host}{target}"


def verify(
    *, authorization: str | None, method: str, uri: str, body: bytes, now: float | None = None,
) -> ApiCaller:
    """The caller who signed this request, or PltokenRefused (998)."""
    header = _parse(authorization)
    merchant, pairs = api_caller_keys(app_id=header.app_id)
    if merchant is None:
        raise PltokenRefused("unknown app_id")
    if not pairs:
        raise PltokenRefused("the merchant has no valid API keys", merchant=merchant)
    moment = time.time() if now is None else now
    skew = settings.API_SIGNATURE_MAX_SKEW_SECONDS
    stamp = int(header.timestamp)
    if abs(moment - stamp) > skew:
        raise PltokenRefused(
            f"timestamp {stamp} is more than {skew} s from the gateway's clock ({int(moment)})",
            merchant=merchant, pair=pairs[0],
        )
    message = request_string(
        app_id=header.app_id, method=method, uri=uri, timestamp=header.timestamp, nonce=header.nonce, body=body
    )
    matched = None
    for pair in pairs:  # constant time per comparison; every pair is tried
        if hmac.compare_digest(signature(pair.app_key, message), header.signature) and matched is None:
            matched = pair
    if matched is None:
        raise PltokenRefused("signature does not match the request", merchant=merchant, pair=pairs[0])
    # The nonce is remembered only once the signature is good, so that nobody
    # without the key can use up a merchant's nonces; kept until no request
    # with this timestamp could pass the skew check any more.
    expires = datetime.fromtimestamp(max(stamp, moment) + skew, tz=UTC) + timedelta(seconds=1)
    if not api_nonce_remember(app_id=header.app_id, nonce=header.nonce, expires_at=expires):
        raise PltokenRefused("nonce already used", merchant=merchant, pair=matched)
    return ApiCaller(merchant=merchant, app_id=header.app_id, pair=matched)


def verify_request(request: HttpRequest, *, now: float | None = None) -> ApiCaller:
    """``verify`` for a Django request (raw body, absolute URI as sent)."""
    return verify(
        authorization=request.META.get("HTTP_AUTHORIZATION"),
        method=request.method or "GET",
        uri=absolute_uri(request),
        body=request.body,
        now=now,
    )
