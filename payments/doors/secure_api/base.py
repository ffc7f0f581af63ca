"""The view every secure API resource inherits: authenticate, decrypt, run, answer encrypted.

Order of checks (each failure answers at once, encrypted when the caller
is known):

1. PLTOKEN signature, timestamp, nonce (998; plain JSON if the app_id is unknown);
2. the merchant's API addresses, when it set some (993);
3. the method (995; an unknown path is 996, ``NotFoundView``);
4. path segments: ``{uuid}`` plain or an envelope of one (997 naming it);
5. the payload: ``data=`` decrypted (997: not hex, tampered GCM tag, not JSON);
6. for a POST, its idempotency keys (``Idempotency-Key``, and ``orderID`` for a
   charge): a repeat replays the first answer, 409 while it runs, 997 reused;
7. the resource (``handle_*`` methods of the subclasses), whose payment
   errors are mapped by ``codes.from_payment_error`` for its operation.

Every request, answered or refused, is logged for staff (``calls``).
"""
from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any
from urllib.parse import parse_qsl

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.serializers import Serializer
from rest_framework.views import APIView


from payments.db import atomic_flushed_later
from payments.doors.http import caller_address
from payments.doors.pltoken import ApiCaller
from payments.errors import PaymentError

from . import codes, envelope, idempotency
from .auth import ApiRefused, PltokenAuthentication
from .calls import call_record
from .codes import ApiError, invalid

logger = logging.getLogger(__name__)

_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}\Z")
_TRANSACTION_ID = re.compile(r"[0-9]{1,18}\Z")
_APP_ID = re.compile(r"PLTOKEN\s+([0-9a-f]{32}):")
_RESOURCE_METHODS = ("get", "post", "put", "delete")


class _AnyAccept(BaseContentNegotiation):
    """Answers are always the envelope (text/plain): the Accept header changes nothing."""

    def select_renderer(self, request, renderers, format_suffix=None):  # type: ignore[no-untyped-def]
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):  # type: ignore[no-untyped-def]
        return parsers[0]


def operation(op: codes.Operation) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Which codes the core's errors take in this handler (932 or 937 for a decline...)."""

    def mark(handler: Callable[..., Any]) -> Callable[..., Any]:
        handler.operation = op  # type: ignore[attr-defined]
        return handler

    return mark


def validated(serializer_class: type[Serializer], data: object) -> dict[str, Any]:
    """The serializer's validated data, or 997 naming the first bad field."""
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        raise ApiError(codes.INVALID_REQUEST, _first_error(serializer.errors))
    return dict(serializer.validated_data)


def _first_error(errors: object, prefix: str = "") -> str:
    if isinstance(errors, dict) and errors:
        field, value = next(iter(errors.items()))
        if field == "non_field_errors":
            name = prefix or "data"
        else:
            name = f"{prefix}.{field}" if prefix else field
        return _first_error(value, name)
    if isinstance(errors, list) and errors:
        return _first_error(errors[0], prefix)
    return f"{prefix or 'data'}: {errors}"


@dataclass
class _Answer:
    status: int
    body: bytes
    error_code: int | None = None
    replayed: bool = False
    # Idempotency claims this answer is the first answer of (stored by ``_bookkeep``).
    claims: list[idempotency.Claim] = field(default_factory=list)


def _error_answer(error: ApiError) -> _Answer:
    return _Answer(error.code.status, envelope.compact_json(error.body()), error.code.code)


class SecureApiView(APIView):
    """A resource of the secure API. Subclasses define ``get`` / ``post`` / ``put`` /
    ``delete(caller, ids, payload)`` returning the answer's ``data`` object (they are
    called by ``dispatch`` below, not by DRF's); ``order_field`` names the body
    field that is an idempotency key too."""

    authentication_classes = [PltokenAuthentication]
    permission_classes: list[type] = []
    # For the schema: the decrypted body is JSON, and so is the decrypted answer.
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _AnyAccept
    order_field: str | None = None


    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        started_at, started = timezone.now(), time.monotonic()
        self.args, self.kwargs = args, kwargs
        drf_request = self.initialize_request(request, *args, **kwargs)
        self.request = drf_request
        self.headers = self.default_response_headers
        caller: ApiCaller | None = None
        key: bytes | None = None
        try:
            try:
                self.initial(drf_request, *args, **kwargs)
            except ApiRefused as refused:
                if refused.refusal.pair is not None:
                    key = refused.refusal.pair.data_key
                raise ApiError(codes.AUTHENTICATION, f"Authorization: {refused.refusal.detail}") from None
            caller = drf_request.auth
            key = caller.data_key
            answer = self._run(request, caller, kwargs)
        except ApiError as error:
            answer = _error_answer(error)
        except Exception:  # a bug or a lost database: 999, and the traceback for staff
            logger.exception("secure API %s %s failed", request.method, request.path)
            answer = _error_answer(ApiError(codes.INTERNAL, "unexpected error: nothing was charged, retry later"))
        if key is not None:
            response = HttpResponse(envelope.seal(key, answer.body), status=answer.status, content_type="text/plain")
        else:  # the caller could not be identified: nobody to encrypt for
            response = HttpResponse(answer.body, status=answer.status, content_type="application/json")
        response["Cache-Control"] = "no-store"
        if answer.replayed:
            response["Idempotent-Replayed"] = "true"
        if answer.status == 401:
            response["WWW-Authenticate"] = "PLTOKEN"
        self._bookkeep(request, caller, answer, started_at, started)
        return response

    def _bookkeep(self, request: HttpRequest, caller: ApiCaller | None, answer: _Answer, started_at, started) -> None:  # type: ignore[no-untyped-def]
        """The first answer stored under its idempotency keys, and the call logged, in one
        transaction flushed later (each says why it may be lost with a crash of the database).
        A failure here never fails the answer: the claims then run out their lease."""
        claimed = _APP_ID.match(request.META.get("HTTP_AUTHORIZATION", ""))
        try:
            # One transaction when there are first answers to store, a single statement otherwise.
            with atomic_flushed_later() if answer.claims else nullcontext():
                for held in answer.claims:
                    idempotency.complete(held, status=answer.status, body=answer.body)
                call_record(
                    started=started_at, merchant_pk=caller.merchant.pk if caller else None,
                    app_id=caller.app_id if caller else (claimed.group(1) if claimed else ""),
                    method=request.method or "", path=request.path, status=answer.status,
                    error_code=answer.error_code, replayed=answer.replayed,
                    duration_ms=int((time.monotonic() - started) * 1000),
                    remote_addr=caller_address(request),
                )
        except Exception:  # noqa: BLE001 - the answer matters more than its bookkeeping
            logger.exception("secure API call %s %s %s not recorded", request.method, request.path, answer.status)

    # --- the steps ---------------------------------------------------------------------

    def _run(self, request: HttpRequest, caller: ApiCaller, kwargs: dict[str, str]) -> _Answer:
        self._check_address(request, caller)
        method = (request.method or "").lower()
        name = "get" if method == "head" else method
        handler = getattr(self, name, None) if name in _RESOURCE_METHODS else None
        if handler is None:
            raise ApiError(codes.METHOD_NOT_ALLOWED, f"method: {request.method} is not allowed on this resource")
        ids = {name: self._path_segment(caller, name, value) for name, value in kwargs.items()}
        plaintext = self._plaintext(request, caller, method)
        if method in ("get", "delete", "head"):
            payload: object = self._query(plaintext)
        else:
            payload = self._json(plaintext)
        if method != "post":
            return self._answer(handler, caller, ids, payload)
        return self._idempotent(request, caller, ids, payload, handler)

    def _check_address(self, request: HttpRequest, caller: ApiCaller) -> None:
        allowed = caller.merchant.api_allowed_ips
        if not allowed:
            return
        # The caller behind trusted proxies (TRUSTED_PROXIES), never a forged header.
        address = caller_address(request)
        if address not in allowed:
            raise ApiError(codes.FORBIDDEN, f"address: {address or '?'} is not one of the merchant's API addresses")

    def _path_segment(self, caller: ApiCaller, name: str, raw: str) -> object:
        field = {"uuid": "uuid", "payment_info_id": "paymentInfoID", "transaction_id": "transactionID"}[name]
        if name == "transaction_id":
            if not _TRANSACTION_ID.match(raw):
                raise invalid(field, "Invalid transactionID: expected digits")
            return int(raw)
        text = raw
        if len(raw) > 36:  # not a plain UUID: an envelope of one (the spec's step 1)
            try:
                text = envelope.open_envelope(caller.data_key, raw).decode("ascii")
            except (envelope.EnvelopeError, UnicodeDecodeError):
                raise invalid(field, "Invalid uuid (neither a uuid nor an envelope of one)") from None
        try:
            return uuid.UUID(text)
        except ValueError:
            raise invalid(field, "Invalid uuid") from None

    def _plaintext(self, request: HttpRequest, caller: ApiCaller, method: str) -> bytes:
        """The decrypted ``data=`` (query string for GET/DELETE, form body for POST/PUT)."""
        if method in ("get", "delete", "head"):
            source, fields = "query", _form(request.META.get("QUERY_STRING", ""), "query string")
        else:
            source, fields = "body", _form(request.body.decode("latin-1"), "body")
        extra = sorted(set(fields) - {"data"})
        if extra:
            raise invalid(extra[0], f"send every parameter encrypted, in data= (the {source} has {extra[0]}=)")
        if "data" not in fields:
            return b""
        try:
            return envelope.open_envelope(caller.data_key, fields["data"])
        except envelope.EnvelopeError as exc:
            raise invalid("data", f"the envelope {exc}") from None

    def _json(self, plaintext: bytes) -> dict[str, Any]:
        if not plaintext:
            return {}
        try:
            payload = envelope.parse_json(plaintext)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise invalid("data", "the decrypted body is not JSON") from None
        if not isinstance(payload, dict):
            raise invalid("data", "the decrypted body must be a JSON object")
        return payload

    def _query(self, plaintext: bytes) -> dict[str, str]:
        try:
            return _form(plaintext.decode("utf-8"), "decrypted data")
        except UnicodeDecodeError:
            raise invalid("data", "the decrypted parameters are not UTF-8") from None

    def _answer(self, handler: Callable[..., Any], caller: ApiCaller, ids: dict[str, object],
                payload: object) -> _Answer:
        try:
            data = handler(caller, ids, payload)
        except PaymentError as exc:
            error = codes.from_payment_error(exc, getattr(handler, "operation", codes.ANY))
            return _error_answer(error)
        except ApiError as error:
            return _error_answer(error)
        return _Answer(200, envelope.compact_json({"data": data}))

    def _idempotent(self, request: HttpRequest, caller: ApiCaller, ids: dict[str, object], payload: dict[str, Any],
                    handler: Callable[..., Any]) -> _Answer:
        keys: list[tuple[str, str, str]] = []
        header = request.META.get("HTTP_IDEMPOTENCY_KEY")
        if header is not None:
            if not _IDEMPOTENCY_KEY.match(header):
                raise invalid("Idempotency-Key", "1 to 255 printable ASCII characters, no spaces")
            keys.append((idempotency.Scope.HEADER, header, "Idempotency-Key"))
        if self.order_field:
            order = payload.get(self.order_field)
            if isinstance(order, str) and order and len(order) <= 64:
                keys.append((idempotency.Scope.ORDER, order, self.order_field))
        if not keys:
            return self._answer(handler, caller, ids, payload)
        resource = request.resolver_match.route if request.resolver_match else request.path
        digest = idempotency.request_digest(
            method="POST", resource=f"{resource} {sorted((k, str(v)) for k, v in ids.items())}",
            body=envelope.compact_json_sorted(payload),
        )
        claims: list[idempotency.Claim] = []
        for scope, key, name in keys:
            outcome = idempotency.claim(merchant_pk=caller.merchant.pk, scope=scope, key=key, digest=digest)
            if isinstance(outcome, idempotency.Claim):
                claims.append(outcome)
                continue
            for held in claims:
                idempotency.release(held)
            if isinstance(outcome, idempotency.Replay):
                error_code = _error_code_of(outcome.body)
                return _Answer(outcome.status, outcome.body, error_code, replayed=True)
            if outcome is idempotency.Refusal.REUSED:
                raise invalid(name, f"{key!r} was already used for another request (another body or resource)")
            raise ApiError(codes.IN_PROGRESS, f"{name}: the first request with {key!r} is still being processed: "
                                              "retry when it has been answered")
        self.idempotency_key = header
        try:
            answer = self._answer(handler, caller, ids, payload)
        except BaseException:
            for held in claims:
                idempotency.release(held)
            raise
        answer.claims = claims
        return answer

    def refund_reference(self) -> str:
        """The Idempotency-Key as the core's refund reference (at most 64 characters)."""
        key = getattr(self, "idempotency_key", None) or ""
        if len(key) <= 64:
            return key
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:57]


def _error_code_of(body: bytes) -> int | None:
    if not body.startswith(b'{"error"'):
        return None
    error = envelope.parse_json(body).get("error") or {}  # type: ignore[union-attr]
    return int(error["code"]) if isinstance(error, dict) and "code" in error else None


def _form(text: str, where: str) -> dict[str, str]:
    """``a=1&b=2`` as a dict; a malformed or repeated field is 997."""
    if not text:
        return {}
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, max_num_fields=20)
    except ValueError:
        raise invalid("data", f"the {where} is not a well-formed a=1&b=2 list") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise invalid(name, f"given twice in the {where}")
        fields[name] = value
    return fields


def date_text(moment) -> str:  # type: ignore[no-untyped-def]
    """The spec's dates: ``dd/MM/yyyy HH:mm:ss``, UTC."""
    return moment.astimezone(UTC).strftime("%d/%m/%Y %H:%M:%S")
