"""Inquiries (RFC 3867 §4.4, §4.5.3, §4.5.5): InquireProcessState,
InquirePaymentStatus, InquirePendingPayment, RemovePaymentLog,
PaymentInstrumentInquiry."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from payments import services
from payments.money import format_amount

from . import attributes as att
from .context import Context
from .errors import att_illegal, att_missing
from .paying import RECEIPT, receipt_element, state_attributes
from .xmlio import XML_LANG, Call, child, element

# §4.4.2's generic property types (PayAmountn, PayPartyn, PayTimen: n an integer, maybe negative).
_GENERIC = ("Balance", "Limit", "PaymentLimit", "Expiration", "Identifier", "LogEntries")
_NUMBERED = re.compile(r"(PayAmount|PayParty|PayTime)-?[0-9]{1,6}\Z")


def inquire_process_state(call: Call, ctx: Context) -> ET.Element:
    view = services.iotp_payment_get(merchant_pk=ctx.merchant.pk, pay_id=att.pay_id(call))
    attributes = state_attributes(view)
    if view.receipt:
        attributes["PayReceiptNameRefs"] = RECEIPT
    response = element("InquireProcessStateResponse", attributes)
    if view.receipt:
        receipt_element(response, "PackagedContent", view)
    return response


def inquire_payment_status(call: Call, ctx: Context) -> ET.Element:
    pay_id = att.pay_id(call, "PaymentHandlerPayId")
    view = services.iotp_payment_get(merchant_pk=ctx.merchant.pk, pay_id=pay_id)
    response = element("InquirePaymentStatusResponse", {
        "PaymentHandlerPayId": pay_id, **state_attributes(view, percent=False),
    })
    if view.receipt:
        receipt_element(response, "PaySchemePackagedContent", view)
    return response


def inquire_pending_payment(call: Call, ctx: Context) -> ET.Element:
    response = element("InquirePendingPaymentResponse")
    for pay_id in services.iotp_payments_pending(merchant_pk=ctx.merchant.pk):
        child(response, "PaymentId", {"PayId": pay_id})
    return response


def remove_payment_log(call: Call, ctx: Context) -> ET.Element:
    services.iotp_payment_log_remove(merchant_pk=ctx.merchant.pk, pay_id=att.pay_id(call))
    return element("RemovePaymentLogResponse")


def payment_instrument_inquiry(call: Call, ctx: Context) -> ET.Element:
    brand = att.brand(call)
    att.protocol(call)
    raw = call.attr("PropertyTypeList")
    if raw is None:
        raise att_missing(call.name, "PropertyTypeList")
    wanted = raw.split()
    if not wanted:
        raise att_illegal(call.name, "PropertyTypeList", "name at least one property type (or all)")
    if "all" in wanted:
        wanted = list(_GENERIC)
    unknown = [name for name in wanted if name not in _GENERIC and not _NUMBERED.match(name)]
    if unknown:
        raise att_illegal(call.name, "PropertyTypeList", f"unknown property type {unknown[0][:32]!r}")
    limit, currency = services.iotp_payment_limit(merchant_pk=ctx.merchant.pk, brand_id=brand)
    unavailable = [name for name in wanted if name != "PaymentLimit" or limit is None]
    response = element("PaymentInstrumentInquiryResponse", {
        XML_LANG: "en", "UnavailablePropertyList": " ".join(unavailable),
    })
    if "PaymentLimit" in wanted and limit is not None:
        child(response, "PaymentInstrumentProperty", {
            "PropertyType": "PaymentLimit",
            "PropertyValue": f"{format_amount(limit, currency)} {currency}",
            "PropertyDesc": f"The most one {services.IOTP_BRANDS[brand][1]} payment may be: {format_amount(limit, currency)} {currency}",
        })
    return response
