"""The terminal protocol (shared/contracts/terminal.md): requests, responses, codes.

Plain Python, no ORM and no sockets: it turns JSON lines and HTTP requests
into ``Request`` objects with checked parameters, and results or core
errors into the contract's JSON. Amounts are decoded as Decimal, never
float.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import simplejson

from payments import cards, errors
from payments.money import in_currency
from payments.states import PaymentMethod

# --- Vocabulary ------------------------------------------------------------------------

TYPES: dict[str, PaymentMethod] = {
    "CARD": PaymentMethod.CARD,
    "CONTACTLESS": PaymentMethod.CONTACTLESS,
    "CHECK": PaymentMethod.CHECK,
}
TYPE_NAMES = {method: name for name, method in TYPES.items()}
CARD_TYPES = ("VISA", "MASTER", "ELECTRON")

PATH_AUTH = "/auth"
PATH_TOKEN = "/token"
PAYMENT_PATHS: dict[str, PaymentMethod] = {
    "/payment/card": PaymentMethod.CARD,
    "/payment/contactless": PaymentMethod.CONTACTLESS,
    "/payment/check": PaymentMethod.CHECK,
    "/payment/chek": PaymentMethod.CHECK,  # the spec's spelling, kept for its clients
}
KNOWN_PATHS = frozenset({PATH_AUTH, PATH_TOKEN, *PAYMENT_PATHS})

# Parameters each payment path requires (the spec: "All payment REQUIRED all request parameters").
REQUIRED: dict[PaymentMethod, tuple[str, ...]] = {
    PaymentMethod.CARD: ("token", "card_type", "card_number", "pin", "amount"),
    PaymentMethod.CONTACTLESS: ("token", "card_type", "card_number", "amount"),
    PaymentMethod.CHECK: ("token", "check_number", "amount"),
}

E_INVALID_REQUEST = 100
E_NOT_AUTHORIZED = 110


class ProtocolError(Exception):
    """A request that cannot be understood: error 100."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


# --- Requests ---------------------------------------------------------------------------


# Parameters that a repr never shows: the card number masked, the others hidden.
_HIDDEN_PARAMETERS = frozenset({"pin", "cvv", "secret"})


def _shown(name: str, value: Any) -> Any:
    if name == "card_number":
        return cards.mask_untrusted(value)
    if name in _HIDDEN_PARAMETERS:
        return "***"
    return value


@dataclass(repr=False)
class Request:
    path: str
    parameters: dict[str, Any] = field(default_factory=dict)
    id: Any = None
    has_id: bool = False

    def __repr__(self) -> str:
        # Reprs reach tracebacks and debug logs: no card number, PIN or secret.
        parameters = (
            {name: _shown(str(name), value) for name, value in self.parameters.items()}
            if isinstance(self.parameters, dict) else "<not an object>"
        )
        return f"Request(path={self.path!r}, parameters={parameters!r}, id={self.id!r}, has_id={self.has_id!r})"


def decode_json(data: bytes | str) -> Any:
    """JSON with numbers as Decimal/int: 500.000000 stays exact."""
    return simplejson.loads(data, use_decimal=True)


def parse_json_line(line: bytes) -> Request | None:
    """One JSON-lines frame, or None if it is not a JSON object with a string ``path``.

    None means "ignore it" (the spec: a mal-structured packet SHOULD be
    ignored); the listener counts such lines.
    """
    try:
        obj = decode_json(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("path"), str):
        return None
    parameters = obj.get("parameters", {})
    if parameters is None:
        parameters = {}
    request = Request(path=obj["path"], parameters=parameters)
    if "id" in obj:
        request.id, request.has_id = obj["id"], True
    return request


def request_from_http(method: str, target: str, content_type: str, body: bytes) -> Request:
    """An HTTP request (GET query string, POST form or JSON body) as a Request."""
    parts = urlsplit(target)
    parameters: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
    if method == "POST" and body:
        media = content_type.split(";", 1)[0].strip().lower()
        if media == "application/json":
            try:
                decoded = decode_json(body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise ProtocolError("body is not valid JSON") from None
            if not isinstance(decoded, dict):
                raise ProtocolError("JSON body must be an object")
            # Either the JSON-lines shape {"parameters": {...}} or the parameters themselves.
            inner = decoded.get("parameters")
            parameters.update(inner if isinstance(inner, dict) else decoded)
        elif media in ("application/x-www-form-urlencoded", ""):
            try:
                parameters.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                raise ProtocolError("form body is not UTF-8") from None
        else:
            raise ProtocolError(f"unsupported content type {media}")
    return Request(path=parts.path, parameters=parameters)


def basic_credentials(header_value: str) -> tuple[str, str] | None:
    """(terminal_id, secret) of an ``Authorization: Basic`` header, None if malformed."""
    scheme, _, encoded = header_value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    terminal_id, sep, secret = decoded.partition(":")
    return (terminal_id, secret) if sep else None


# --- Checked commands -------------------------------------------------------------------


@dataclass(frozen=True)
class TokenCommand:
    payment_type: PaymentMethod
    try_count: int


@dataclass(frozen=True, repr=False)
class PaymentCommand:
    """A payment request with the presence and types of its parameters checked.

    Values (card number format, PIN, amount...) are checked by the payment
    core, in the contract's order; only what makes a request unreadable is
    error 100 here.
    """

    method: PaymentMethod
    token: str
    amount: Any
    card_type: str = ""
    card_number: str | None = None
    pin: str | None = None
    check_number: str | None = None

    def __repr__(self) -> str:
        card = None if self.card_number is None else cards.mask_untrusted(self.card_number)
        pin = None if self.pin is None else "***"
        return (
            f"PaymentCommand(method={self.method!r}, token={self.token!r}, amount={self.amount!r}, "
            f"card_type={self.card_type!r}, card_number={card!r}, pin={pin!r}, check_number={self.check_number!r})"
        )


@dataclass(frozen=True)
class AuthCommand:
    terminal_id: str
    secret: str = field(repr=False)


def _string(parameters: dict[str, Any], name: str) -> str:
    if name not in parameters:
        raise ProtocolError(f"missing parameter {name}")
    value = parameters[name]
    if not isinstance(value, str):
        raise ProtocolError(f"parameter {name} must be a string")
    return value


INT_MAX = 2**31 - 1  # the database column's range


def _int(value: Any, name: str) -> int:
    """A 32-bit integer parameter, or ProtocolError (100).

    The magnitude is checked before converting: ``int(Decimal("1E+999999999"))``
    would build a billion-digit integer on the event loop (a one-line DoS).
    """
    result: int | None = None
    if isinstance(value, bool):
        result = None
    elif isinstance(value, int):
        result = value
    elif isinstance(value, Decimal):
        if value.is_finite() and value.adjusted() < 12 and value == value.to_integral_value():
            result = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 12:
        result = int(value)
    if result is None or not -INT_MAX - 1 <= result <= INT_MAX:
        raise ProtocolError(f"parameter {name} must be an integer")
    return result


def command_for(request: Request) -> TokenCommand | PaymentCommand | AuthCommand:
    """Check a request's path and parameters; raise ProtocolError (100) if unusable."""
    parameters = request.parameters
    if not isinstance(parameters, dict):
        raise ProtocolError("parameters must be an object")
    path = request.path
    if path == PATH_AUTH:
        return AuthCommand(_string(parameters, "terminal_id"), _string(parameters, "secret"))
    if path == PATH_TOKEN:
        kind = _string(parameters, "type")
        if kind not in TYPES:
            raise ProtocolError(f"type must be one of {', '.join(TYPES)}")
        try_count = _int(parameters["try_count"], "try_count") if "try_count" in parameters else 3
        if try_count < -1:
            raise ProtocolError("try_count must be -1 (unlimited) or more")
        return TokenCommand(TYPES[kind], try_count)
    method = PAYMENT_PATHS.get(path)
    if method is None:
        raise ProtocolError(f"unknown path {path[:64]}")
    for name in REQUIRED[method]:
        if name not in parameters:
            raise ProtocolError(f"missing parameter {name}")
    token = _string(parameters, "token")
    amount = parameters["amount"]
    if not isinstance(amount, (str, int, Decimal)) or isinstance(amount, bool):
        raise ProtocolError("parameter amount must be a number or a numeric string")
    if method == PaymentMethod.CHECK:
        return PaymentCommand(method, token, amount, check_number=_string(parameters, "check_number"))
    card_type = _string(parameters, "card_type")
    if card_type not in CARD_TYPES:
        raise ProtocolError(f"card_type must be one of {', '.join(CARD_TYPES)}")
    return PaymentCommand(
        method,
        token,
        amount,
        card_type=card_type,
        card_number=_string(parameters, "card_number"),
        pin=_string(parameters, "pin") if method == PaymentMethod.CARD else None,
    )


# --- Responses -------------------------------------------------------------------------


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_body(code: int, message: str) -> dict[str, Any]:
    return {"error": message, "error_code": code}


def error_for(exc: errors.PaymentError) -> dict[str, Any]:
    """The contract's error for a core error (codes 100-111)."""
    if isinstance(exc, errors.InvalidRequest):
        return error_body(E_INVALID_REQUEST, exc.message)
    if isinstance(exc, errors.NotAuthorized):
        return error_body(E_NOT_AUTHORIZED, "Terminal not authorized")
    if isinstance(exc, errors.CardBanned):
        return error_body(101, "Card banned")
    if isinstance(exc, errors.CheckBanned):
        return error_body(102, "Check banned")
    if isinstance(exc, errors.InvalidPin):
        return error_body(103, "Invalid pin")
    if isinstance(exc, errors.InvalidCardNumber):
        return error_body(104, f"Invalid card_number {exc.masked}")
    if isinstance(exc, errors.InvalidCheckNumber):
        return error_body(105, "Invalid check_number")
    if isinstance(exc, errors.LimitExceeded):
        return error_body(106, exc.message)
    if isinstance(exc, errors.TokenInvalid):
        return error_body(107, "Wrong token")
    if isinstance(exc, errors.TokenTriesExhausted):
        return error_body(108, "Max try")
    if isinstance(exc, errors.InvalidAmount):
        return error_body(109, "Invalid amount")
    if isinstance(exc, errors.PaymentOutcomeUnknown):
        return outcome_unknown_body(exc.reason, exc.transaction_id)
    if isinstance(exc, (errors.Declined, errors.AcquirerFailure)):
        return error_body(111, f"Declined {exc.reason}")
    if isinstance(exc, (errors.LimitsNotConfigured, errors.UnsupportedCurrency)):
        # The gateway's configuration, not the card: "Declined no card limits configured for USD (VISA)".
        return error_body(111, f"Declined {exc.message}")
    return error_body(111, "Declined internal error")


def outcome_unknown_body(reason: str, transaction: int | None) -> dict[str, Any]:
    """111 for a payment whose outcome is unknown: the card may have been charged,
    so it must not read "Declined" (docs/terminal.md says what the cashier does)."""
    number = f" (transaction {transaction})" if transaction is not None else ""
    return error_body(111, f"Outcome unknown: {reason}{number}; do not pay again, the gateway settles it")


def http_status_for(body: dict[str, Any]) -> int:
    """HTTP status of a response body: as the reference server, 200 but for 100 and 110."""
    code = body.get("error_code")
    if code == E_INVALID_REQUEST:
        return 400
    if code == E_NOT_AUTHORIZED:
        return 401
    return 200


def token_body(*, value: str, payment_type: PaymentMethod, created: datetime, expire: datetime, try_count: int) -> dict[str, Any]:
    return {
        "token": value,
        "type": TYPE_NAMES[payment_type],
        "created": iso_utc(created),
        "expire": iso_utc(expire),
        "try_count": try_count,
    }


def payment_body(
    *,
    token: str,
    method: PaymentMethod,
    transaction: int,
    amount: Decimal,
    currency: str,
    card_type: str = "",
    masked_card: str = "",
    check_number: str = "",
) -> dict[str, Any]:
    body: dict[str, Any] = {"token": token, "type": TYPE_NAMES[method]}
    if method == PaymentMethod.CHECK:
        body["check_number"] = check_number
    else:
        body["card_type"] = card_type
        body["card_number"] = masked_card
    body["transaction"] = transaction
    # A JSON number with the currency's decimals: 500.00 EUR, 1200 JPY.
    body["amount"] = in_currency(amount, currency)
    return body


def encode(body: dict[str, Any]) -> bytes:
    """Compact JSON; Decimal amounts are written as JSON numbers (12.50, not "12.50")."""
    return simplejson.dumps(body, use_decimal=True, separators=(",", ":")).encode()


def encode_line(body: dict[str, Any], request: Request | None = None) -> bytes:
    if request is not None and request.has_id:
        body = {"id": request.id, **body}
    return encode(body) + b"\n"
