"""The OpenAPI description of the secure API (drf-spectacular): ``/api/schema/``, ``/api/docs/``.

It describes the *decrypted* bodies: what a request carries in ``data=``
once decrypted (a JSON object, or for GET the query parameters), and what
an answer decrypts to (``{"data": ...}`` or the error object). The wire
format around them (the PLTOKEN header and the envelope) is the same for
every operation and is told once, in the description.
"""
from __future__ import annotations

from functools import cache
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from . import codes
from .serializers import ErrorAnswer

DESCRIPTION = """
A card-on-file API: accounts (your customers), their stored cards ("payment info"),
charges, refunds and cancellations. Every request is signed, every payload encrypted.
The bodies below are the **decrypted** ones.

**Signing.** `Authorization: PLTOKEN {app_id}:{signature}:{nonce}:{timestamp}` where
`signature = base64(HMAC-SHA256(base64decode(app_key), RequestString))` and
`RequestString = app_id + METHOD + enc(lower(absolute URI)) + timestamp + nonce + base64(MD5(raw body))`
(the last part empty for an empty body; `enc` percent-encodes every byte but `A-Z a-z 0-9 - _ . ~`,
lower-case hex). The timestamp must be within 300 s of the gateway's clock, the nonce new for 300 s.

**Encryption.** An envelope is lower-case hex of `IV || AES-256-GCM(data_key, plaintext) || tag`, the
IV 26 ASCII bytes (UTC `YYYYMMDDHHMMSS` + 12 random hex). Requests carry `data=<envelope>`: in the
query string for GET and DELETE (plaintext: the query parameters, `pageNo=1&pageSize=10`), as an
`application/x-www-form-urlencoded` body for POST and PUT (plaintext: the compact JSON body). A `{uuid}`
may be the plain uuid or an envelope of it. Answers are `text/plain` envelopes of the JSON shown here;
when the caller cannot be identified (unknown app_id) the error is plain JSON.

**Idempotency.** `orderID` (charges) and the `Idempotency-Key` header (any POST) replay the first
answer, whatever it was; another body under the same key is 997; a repeat while the first is running
is 409.

**Errors** are `{"error": {"code", "message", "detail"}}`; `detail` names the field:

| code | status | meaning |
|---|---|---|
""" + "\n".join(
    f"| {code.code} | {code.status} | {code.message} |" for code in codes.TABLE
) + "\n\nThe worked example (fixed keys, nonce, timestamp and IV with the exact signature and envelope) " \
    "is in docs/secure-api.md."


class PltokenScheme(OpenApiAuthenticationExtension):
    target_class = "payments.doors.secure_api.auth.PltokenAuthentication"
    name = "PLTOKEN"

    def get_security_definition(self, auto_schema):  # type: ignore[no-untyped-def]
        return {
            "type": "apiKey", "in": "header", "name": "Authorization",
            "description": "PLTOKEN {app_id}:{signature}:{nonce}:{timestamp} (see the description)",
        }


@cache
def _data_of(serializer: type[serializers.Serializer]) -> type[serializers.Serializer]:
    name = serializer.__name__.removesuffix("Answer") + "Data"
    return type(name, (serializers.Serializer,), {"data": serializer(), "__module__": __name__})


def answers(serializer: type[serializers.Serializer], *error_codes: int) -> dict[int, Any]:
    """The answers of an operation: 200 ``{"data": serializer}``, and the error object
    for each status its error codes (and authentication, 998; internal, 999) take."""
    by_status: dict[int, list[codes.Code]] = {}
    table = {(code.code, code.status): code for code in codes.TABLE}
    wanted = [*error_codes, 998, 999]
    for value in wanted:
        if value == 409:
            by_status.setdefault(409, []).append(codes.IN_PROGRESS)
            continue
        match = next(code for (number, status), code in table.items() if number == value and status != 409)
        by_status.setdefault(match.status, []).append(match)
    result: dict[int, Any] = {200: OpenApiResponse(_data_of(serializer), description='Success: {"data": ...}')}
    for status, listed in sorted(by_status.items()):
        text = "; ".join(f"{code.code}: {code.message}" for code in listed)
        result[status] = OpenApiResponse(ErrorAnswer, description=text)
    return result


def only_the_secure_api(endpoints):  # type: ignore[no-untyped-def]
    """The schema covers the secure API's resources (not the admin, esipay, or the 996 catch-all)."""
    from .base import SecureApiView
    from .views import NotFoundView

    kept = []
    for path, path_regex, method, callback in endpoints:
        view = getattr(callback, "cls", None)
        if view is not None and issubclass(view, SecureApiView) and not issubclass(view, NotFoundView):
            kept.append((path, path_regex, method, callback))
    return kept


def describe(result, generator, request, public):  # type: ignore[no-untyped-def]
    result.setdefault("info", {})["description"] = DESCRIPTION
    return result
