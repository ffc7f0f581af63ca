"""The RFC 3867 attributes every call shares, checked as the contract says:
a missing #REQUIRED one is AttMissing, a value out of its domain AttValIllegal,
both naming the attribute (ErrorLocation AttName)."""
from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from payments import money, services

from .errors import IotpError, att_illegal, att_missing
from .xmlio import Call, packaged

_PAY_ID = re.compile(r"[A-Za-z0-9._:-]{1,50}\Z")
_ID = re.compile(r"[\x21-\x7e]{1,64}\Z")
_AMOUNT = re.compile(r"[0-9]{1,10}(\.[0-9]+)?\Z")
_NMTOKEN = re.compile(r"[A-Za-z0-9._:-]{1,14}\Z")
_PAN = re.compile(r"[0-9]{1,19}\Z")
_EXPIRY = re.compile(r"[0-9]{6}\Z")
_CVV = re.compile(r"[0-9]{3,4}\Z")
CURRENCY_CODE_TYPES = ("ISO4217-A", "ISO-4217-A")


def required(call: Call, name: str) -> str:
    value = call.attr(name)
    if value is None:
        raise att_missing(call.name, name)
    return value


def one_of(call: Call, name: str, allowed: tuple[str, ...], *, default: str | None = None) -> str:
    value = call.attr(name)
    if value is None:
        if default is None:
            raise att_missing(call.name, name)
        return default
    if value not in allowed:
        raise att_illegal(call.name, name, f"must be one of {', '.join(allowed)}, not {value[:40]!r}")
    return value


def pay_id(call: Call, name: str = "PayId") -> str:
    value = required(call, name)
    if not _PAY_ID.match(value):
        raise att_illegal(call.name, name, "1 to 50 of A-Z a-z 0-9 . _ : -")
    return value


def identifier(call: Call, name: str, *, optional: bool = False) -> str:
    value = call.attr(name)
    if value is None:
        if optional:
            return ""
        raise att_missing(call.name, name)
    if not _ID.match(value):
        raise att_illegal(call.name, name, "1 to 64 printable ASCII characters without spaces")
    return value


def currency(call: Call, merchant_currency: str) -> str:
    """The call's CurrCode: a currency of the gateway, and the merchant's own (a merchant is
    paid in one currency: the core refuses any other, and the door says so first)."""
    one_of(call, "CurrCodeType", CURRENCY_CODE_TYPES, default="ISO4217-A")
    code = required(call, "CurrCode")
    if code not in money.CURRENCIES:
        raise att_illegal(call.name, "CurrCode", f"unsupported currency; supported: {', '.join(sorted(money.CURRENCIES))}")
    if code != merchant_currency:
        raise att_illegal(call.name, "CurrCode", f"this merchant is paid in {merchant_currency}")
    return code


def amount(call: Call, currency_code: str) -> Decimal:
    """A positive amount with no more decimals than the currency has."""
    raw = required(call, "Amount")
    exponent = money.CURRENCIES[currency_code][1]
    try:
        value = Decimal(raw) if _AMOUNT.match(raw) else None
    except InvalidOperation:  # pragma: no cover - the regex admits only valid literals
        value = None
    if value is None or value <= 0:
        raise att_illegal(call.name, "Amount", "a positive decimal with '.' (at most 10 integer digits)")
    if value != value.quantize(Decimal(1).scaleb(-exponent)):
        raise att_illegal(call.name, "Amount", f"{currency_code} has {exponent} decimals")
    return value.quantize(Decimal(1).scaleb(-exponent))


def brand(call: Call, *, optional: bool = False) -> str:
    value = call.attr("BrandId")
    if value is None:
        if optional:
            return ""
        raise att_missing(call.name, "BrandId")
    if value not in services.IOTP_BRANDS:
        raise att_illegal(call.name, "BrandId", f"unknown brand; the gateway's are {', '.join(services.IOTP_BRANDS)}")
    return value


def protocol(call: Call) -> str:
    value = required(call, "ProtocolId")
    if value != services.IOTP_PROTOCOL_ID:
        raise att_illegal(call.name, "ProtocolId", f"the gateway speaks {services.IOTP_PROTOCOL_ID} only")
    return value


def pay_direction(call: Call) -> str:
    return one_of(call, "PayDirection", ("Debit", "Credit"))


def timestamp(call: Call, name: str) -> datetime:
    """An ISO 8601 time with its offset (UTC format: ``2026-12-01T10:00:00Z``)."""
    raw = required(call, name)
    try:
        moment = datetime.fromisoformat(raw) if 8 <= len(raw) <= 40 else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise att_illegal(call.name, name, "an ISO 8601 time with its UTC offset, as 2026-12-01T10:00:00Z")
    return moment.astimezone(UTC)


def ok_window(call: Call) -> tuple[datetime, datetime]:
    ok_from, ok_to = timestamp(call, "OkFrom"), timestamp(call, "OkTo")
    if ok_to <= ok_from:
        raise att_illegal(call.name, "OkTo", "must be later than OkFrom")
    return ok_from, ok_to


def merchant_org_id(call: Call, merchant_uuid: uuid.UUID, *, optional: bool) -> None:
    value = call.attr("MerchantOrgId")
    if value is None:
        if optional:
            return
        raise att_missing(call.name, "MerchantOrgId")
    try:
        named = uuid.UUID(value)
    except ValueError:
        named = None
    if named != merchant_uuid:
        raise att_illegal(call.name, "MerchantOrgId", "must be the calling merchant's uuid")


def zulu(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- Card data ------------------------------------------------------------------------------

PAY_SCHEME = ("PaySchemePackagedContent", "PackagedContent")


def card_data(call: Call) -> services.CardData | None:
    """The CardData packaged content, if any: base64 of JSON
    ``{"pan", "expiry": "YYYYMM", "cvv"?}``. A malformed one is EncapProtErr
    (never echoing what it held)."""
    contents = [c for c in packaged(call, *PAY_SCHEME) if c.name == "CardData"]
    if not contents:
        return None
    if len(contents) > 1:
        raise IotpError("ElUnexpected", "One CardData packaged content only", element=contents[1].element)
    content = contents[0]
    if content.transform != "BASE64":
        raise IotpError("AttValIllegal", "CardData must be Transform=\"BASE64\"", element=content.element,
                        attribute="Transform")
    try:
        data = json.loads(content.data())
    except (ValueError, RecursionError):
        data = None
    problem = _card_problem(data)
    if problem:
        raise IotpError("EncapProtErr", f"CardData: {problem}", element=content.element)
    return services.CardData(pan=data["pan"], expiry=data["expiry"], cvv=data.get("cvv", ""))


def _card_problem(data: object) -> str:
    if not isinstance(data, dict):
        return 'expected base64 of a JSON object {"pan", "expiry", "cvv"?}'
    if not isinstance(data.get("pan"), str) or not _PAN.match(data["pan"]):
        return "pan must be a string of digits"
    if not isinstance(data.get("expiry"), str) or not _EXPIRY.match(data["expiry"]):
        return "expiry must be YYYYMM"
    if "cvv" in data and (not isinstance(data["cvv"], str) or not _CVV.match(data["cvv"])):
        return "cvv must be 3 or 4 digits"
    return ""


def nmtoken(call: Call, name: str) -> str:
    value = call.attr(name)
    if value is None:
        return ""
    if not _NMTOKEN.match(value):
        raise att_illegal(call.name, name, "an NMTOKEN of at most 14 characters")
    return value
