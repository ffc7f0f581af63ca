"""The SET gateway's payload: the contract's ASN.1 module ``GatewayPayload``, in DER.

Plain Python (asn1crypto, no Django, no sockets), shared by the gateway and
the merchant client. ``decode`` is strict: the bytes must be exactly one
``GatewayMessage`` in DER — asn1crypto also reads BER (long-form lengths,
a BOOLEAN TRUE as any non-zero byte, a DEFAULT value written out), so a
decoded message is encoded again and must give back the very same bytes.
Bytes that are no such message raise ``PayloadError`` with code 1; a message
that decodes but breaks a constraint of the module (a size, a range, a
character set) raises code 4 naming the field.

The messages are frozen dataclasses; ``encode`` refuses one that breaks the
module's constraints (ValueError), so the gateway never sends what a
conforming merchant could not decode.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import ClassVar, Union

from asn1crypto import core

# --- ErrorMsg codes (the contract) -------------------------------------------------

NOT_DECODABLE = 1
UNKNOWN_TRANS_ID = 2
TRANS_ID_REUSED = 3
INVALID_FIELD = 4
CURRENCY_NOT_ACCEPTED = 5
INTERNAL = 9

# --- The ASN.1 module, as asn1crypto classes -------------------------------------------
# DEFINITIONS EXPLICIT TAGS: every [n] below is an explicit (constructed) tag.


class _CurrencyAmount(core.Sequence):
    _fields = [
        ("currency", core.Integer),
        ("amount", core.Integer),
        ("amtExp10", core.Integer),
    ]


class _Status(core.Enumerated):
    _map = {0: "approved", 1: "declined", 2: "failed"}


class _ProcessState(core.Enumerated):
    _map = {
        0: "notYetStarted",
        1: "inProgress",
        2: "suspended",
        3: "completedOk",
        4: "failed",
        5: "processError",
    }


class _AuthReq(core.Sequence):
    _fields = [
        ("transId", core.UTF8String),
        ("pan", core.NumericString),
        ("cardExpiry", core.NumericString),
        ("amount", _CurrencyAmount),
        ("captureNow", core.Boolean, {"default": False}),
    ]


class _AuthRes(core.Sequence):
    _fields = [
        ("transId", core.UTF8String),
        ("status", _Status),
        ("gatewayTransId", core.UTF8String, {"explicit": 0, "optional": True}),
        ("authCode", core.PrintableString, {"explicit": 1, "optional": True}),
        ("reason", core.UTF8String, {"explicit": 2, "optional": True}),
    ]


class _CapReq(core.Sequence):
    _fields = [("transId", core.UTF8String), ("amount", _CurrencyAmount)]


class _CapRes(core.Sequence):
    _fields = [
        ("transId", core.UTF8String),
        ("status", _Status),
        ("reason", core.UTF8String, {"explicit": 0, "optional": True}),
    ]


class _CredReq(core.Sequence):
    _fields = [("transId", core.UTF8String), ("credId", core.UTF8String), ("amount", _CurrencyAmount)]


class _CredRes(core.Sequence):
    _fields = [
        ("transId", core.UTF8String),
        ("credId", core.UTF8String),
        ("status", _Status),
        ("reason", core.UTF8String, {"explicit": 0, "optional": True}),
    ]


class _RevReq(core.Sequence):
    _fields = [("transId", core.UTF8String)]


class _RevRes(core.Sequence):
    _fields = [
        ("transId", core.UTF8String),
        ("status", _Status),
        ("reason", core.UTF8String, {"explicit": 0, "optional": True}),
    ]


class _InqReq(core.Sequence):
    _fields = [("transId", core.UTF8String)]


class _InqRes(core.Sequence):
    _fields = [
        ("transId", core.UTF8String),
        ("processState", _ProcessState),
        ("authorized", _CurrencyAmount),
        ("captured", _CurrencyAmount),
        ("refunded", _CurrencyAmount),
    ]


class _ErrorMsg(core.Sequence):
    _fields = [
        ("code", core.Integer),
        ("reason", core.UTF8String),
        ("transId", core.UTF8String, {"explicit": 0, "optional": True}),
    ]


class _GatewayMessage(core.Choice):
    _alternatives = [
        ("authReq", _AuthReq, {"explicit": 0}),
        ("authRes", _AuthRes, {"explicit": 1}),
        ("capReq", _CapReq, {"explicit": 2}),
        ("capRes", _CapRes, {"explicit": 3}),
        ("credReq", _CredReq, {"explicit": 4}),
        ("credRes", _CredRes, {"explicit": 5}),
        ("revReq", _RevReq, {"explicit": 6}),
        ("revRes", _RevRes, {"explicit": 7}),
        ("inqReq", _InqReq, {"explicit": 8}),
        ("inqRes", _InqRes, {"explicit": 9}),
        ("error", _ErrorMsg, {"explicit": 10}),
    ]


# --- Errors ----------------------------------------------------------------------------


class PayloadError(Exception):
    """Bytes that are not a valid GatewayMessage: answered with ErrorMsg ``code``."""

    def __init__(self, code: int, reason: str, trans_id: str | None = None) -> None:
        self.code = code
        self.reason = reason
        self.trans_id = trans_id
        super().__init__(reason)


# --- The messages ------------------------------------------------------------------------

_NUMERIC = re.compile(r"[0-9]+\Z")
# PrintableString's alphabet (X.680 §41.4).
_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]*\Z")
EXP10_RANGE = range(-8, 9)


@dataclass(frozen=True)
class CurrencyAmount:
    """``value = amount * 10**exp10`` in ISO 4217 numeric ``currency`` (978 = EUR)."""

    currency: int
    amount: int
    exp10: int

    @property
    def value(self) -> Decimal:
        return Decimal(self.amount).scaleb(self.exp10)

    @classmethod
    def of(cls, value: Decimal, *, currency: int, exponent: int) -> CurrencyAmount:
        """``value`` in minor units of a currency with ``exponent`` decimals (2 for EUR)."""
        minor = value.scaleb(exponent)
        if minor != minor.to_integral_value():
            raise ValueError(f"{value} has more than {exponent} decimals")
        return cls(currency=currency, amount=int(minor), exp10=-exponent)


@dataclass(frozen=True)
class AuthReq:
    KIND: ClassVar[str] = "authReq"
    trans_id: str
    pan: str = field(repr=False)
    card_expiry: str  # YYYYMM
    amount: CurrencyAmount
    capture_now: bool = False


@dataclass(frozen=True)
class AuthRes:
    KIND: ClassVar[str] = "authRes"
    trans_id: str
    status: str  # approved | declined | failed
    gateway_trans_id: str | None = None
    auth_code: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class CapReq:
    KIND: ClassVar[str] = "capReq"
    trans_id: str
    amount: CurrencyAmount


@dataclass(frozen=True)
class CapRes:
    KIND: ClassVar[str] = "capRes"
    trans_id: str
    status: str
    reason: str | None = None


@dataclass(frozen=True)
class CredReq:
    KIND: ClassVar[str] = "credReq"
    trans_id: str
    cred_id: str
    amount: CurrencyAmount


@dataclass(frozen=True)
class CredRes:
    KIND: ClassVar[str] = "credRes"
    trans_id: str
    cred_id: str
    status: str
    reason: str | None = None


@dataclass(frozen=True)
class RevReq:
    KIND: ClassVar[str] = "revReq"
    trans_id: str


@dataclass(frozen=True)
class RevRes:
    KIND: ClassVar[str] = "revRes"
    trans_id: str
    status: str
    reason: str | None = None


@dataclass(frozen=True)
class InqReq:
    KIND: ClassVar[str] = "inqReq"
    trans_id: str


@dataclass(frozen=True)
class InqRes:
    KIND: ClassVar[str] = "inqRes"
    trans_id: str
    process_state: str  # notYetStarted | inProgress | suspended | completedOk | failed | processError
    authorized: CurrencyAmount
    captured: CurrencyAmount
    refunded: CurrencyAmount


@dataclass(frozen=True)
class ErrorMsg:
    KIND: ClassVar[str] = "error"
    code: int
    reason: str
    trans_id: str | None = None


Request = Union[AuthReq, CapReq, CredReq, RevReq, InqReq]
Response = Union[AuthRes, CapRes, CredRes, RevRes, InqRes, ErrorMsg]
Message = Union[Request, Response]

REQUEST_TYPES: tuple[type, ...] = (AuthReq, CapReq, CredReq, RevReq, InqReq)
STATUSES = tuple(_Status._map.values())
PROCESS_STATES = tuple(_ProcessState._map.values())

# (dataclass attribute, ASN.1 field name) per message, in the module's order.
_FIELDS: dict[type, list[tuple[str, str]]] = {
    AuthReq: [("trans_id", "transId"), ("pan", "pan"), ("card_expiry", "cardExpiry"), ("amount", "amount"),
              ("capture_now", "captureNow")],
    AuthRes: [("trans_id", "transId"), ("status", "status"), ("gateway_trans_id", "gatewayTransId"),
              ("auth_code", "authCode"), ("reason", "reason")],
    CapReq: [("trans_id", "transId"), ("amount", "amount")],
    CapRes: [("trans_id", "transId"), ("status", "status"), ("reason", "reason")],
    CredReq: [("trans_id", "transId"), ("cred_id", "credId"), ("amount", "amount")],
    CredRes: [("trans_id", "transId"), ("cred_id", "credId"), ("status", "status"), ("reason", "reason")],
    RevReq: [("trans_id", "transId")],
    RevRes: [("trans_id", "transId"), ("status", "status"), ("reason", "reason")],
    InqReq: [("trans_id", "transId")],
    InqRes: [("trans_id", "transId"), ("process_state", "processState"), ("authorized", "authorized"),
             ("captured", "captured"), ("refunded", "refunded")],
    ErrorMsg: [("code", "code"), ("reason", "reason"), ("trans_id", "transId")],
}
_BY_KIND: dict[str, type] = {cls.KIND: cls for cls in _FIELDS}
_AMOUNT_FIELDS = frozenset({"amount", "authorized", "captured", "refunded"})


# --- Constraints of the module -------------------------------------------------------------


def _check_text(name: str, value: object, *, low: int = 0, high: int | None = None) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string")
    if len(value) < low or (high is not None and len(value) > high):
        bound = f"{low}..{high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name}: size must be {bound} characters, got {len(value)}")
    return value


def _check_amount(name: str, value: object) -> None:
    if not isinstance(value, CurrencyAmount):
        raise ValueError(f"{name}: expected a CurrencyAmount")
    if not 1 <= value.currency <= 999:
        raise ValueError(f"{name}.currency: must be 1..999")
    if value.amount < 0:
        raise ValueError(f"{name}.amount: must be 0 or more")
    if value.exp10 not in EXP10_RANGE:
        raise ValueError(f"{name}.amtExp10: must be -8..8")


def _check(message: Message) -> None:
    """ValueError ``"<field>: <what is wrong>"`` if ``message`` breaks the module's constraints."""
    for attr, name in _FIELDS[type(message)]:
        value = getattr(message, attr)
        if name in ("transId", "credId"):
            if value is None and isinstance(message, ErrorMsg):
                continue
            _check_text(name, value, low=1, high=64)
        elif name == "pan":
            if not _NUMERIC.match(_check_text(name, value, low=12, high=19)):
                raise ValueError("pan: digits only")
        elif name == "cardExpiry":
            if not _NUMERIC.match(_check_text(name, value, low=6, high=6)):
                raise ValueError("cardExpiry: 6 digits (YYYYMM)")
        elif name in _AMOUNT_FIELDS:
            _check_amount(name, value)
        elif name == "status":
            if value not in STATUSES:
                raise ValueError(f"status: one of {', '.join(STATUSES)}")
        elif name == "processState":
            if value not in PROCESS_STATES:
                raise ValueError(f"processState: one of {', '.join(PROCESS_STATES)}")
        elif name == "authCode":
            if value is not None and not _PRINTABLE.match(_check_text(name, value)):
                raise ValueError("authCode: PrintableString characters only")
        elif name in ("gatewayTransId", "reason"):
            if value is not None or (name == "reason" and isinstance(message, ErrorMsg)):
                _check_text(name, value)
        elif name == "captureNow":
            if not isinstance(value, bool):
                raise ValueError("captureNow: expected a boolean")
        elif name == "code":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError("code: expected an integer")


# --- Encoding and decoding -------------------------------------------------------------------


def _to_native(message: Message) -> dict[str, object]:
    native: dict[str, object] = {}
    for attr, name in _FIELDS[type(message)]:
        value = getattr(message, attr)
        if value is None:
            continue
        if isinstance(value, CurrencyAmount):
            value = {"currency": value.currency, "amount": value.amount, "amtExp10": value.exp10}
        elif name == "captureNow" and value is False:
            continue  # DER: a value equal to its DEFAULT is not encoded
        native[name] = value
    return native


def encode(message: Message) -> bytes:
    """The DER of ``message`` as a GatewayMessage (ValueError if it breaks a constraint)."""
    if type(message) not in _FIELDS:
        raise TypeError(f"not a GatewayMessage: {type(message).__name__}")
    _check(message)
    return _GatewayMessage(name=message.KIND, value=_to_native(message)).dump()


def _from_native(cls: type, native: dict[str, object]) -> Message:
    values: dict[str, object] = {}
    for attr, name in _FIELDS[cls]:
        value = native.get(name)
        if name in _AMOUNT_FIELDS and isinstance(value, dict):
            value = CurrencyAmount(currency=value["currency"], amount=value["amount"], exp10=value["amtExp10"])
        if name == "captureNow" and value is None:
            value = False
        values[attr] = value
    return cls(**values)


def decode(data: bytes) -> Message:
    """One GatewayMessage from exactly ``data`` (DER), or PayloadError (code 1 or 4)."""
    try:
        parsed = _GatewayMessage.load(bytes(data), strict=True)
        native = parsed.native  # parses every nested value (lazily parsed until now)
        canonical = parsed.dump(force=True)  # encoded again, from the values
    except Exception:  # asn1crypto raises ValueError, TypeError, KeyError, UnicodeDecodeError...
        raise PayloadError(NOT_DECODABLE, "not a DER GatewayMessage") from None
    if canonical != bytes(data):
        raise PayloadError(NOT_DECODABLE, "not DER (a BER encoding, or a DEFAULT value encoded)")
    cls = _BY_KIND[parsed.name]
    try:
        message = _from_native(cls, native)
    except Exception:
        raise PayloadError(NOT_DECODABLE, "not a DER GatewayMessage") from None
    trans_id = native.get("transId") if isinstance(native.get("transId"), str) else None
    try:
        _check(message)
    except ValueError as exc:
        raise PayloadError(INVALID_FIELD, f"invalid field {exc}", trans_id=_safe_trans_id(trans_id)) from None
    return message


def _safe_trans_id(trans_id: str | None) -> str | None:
    """The transId to echo in an ErrorMsg: only one the module allows."""
    if trans_id is not None and 1 <= len(trans_id) <= 64:
        return trans_id
    return None
