"""Receipts (RFC 3867 §4.5.1, §4.5.2): CheckPaymentReceipt, ExpandPaymentReceipt."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from payments import services

from . import attributes as att
from .context import Context
from .errors import el_missing
from .paying import RECEIPT
from .xmlio import XML_LANG, Call, child, element, packaged

_ATTRIBUTES = ("BrandId", "PaymentInstrumentId", "Amount", "CurrCodeType", "CurrCode", "PayDirection",
               "TimeStamp", "ProtocolId", "ProtocolTransId")
_PROPERTIES = {
    "ProcessState": "Process state when the receipt was issued",
    "CompletionCode": "How the payment completed",
    "StatusDesc": "What happened",
    "AuthorizationCode": "The acquirer's authorization code",
    "PayId": "PaymentHandlerPayId",
    "ConsumerPayId": "ConsumerPayId",
    "MerchantOrgId": "The merchant (uuid)",
}


def _receipt(call: Call, ctx: Context) -> dict[str, object]:
    pay_id = att.pay_id(call)
    contents = [c for c in packaged(call, "PackagedContent", "PaySchemePackagedContent") if c.name == RECEIPT]
    if not contents:
        raise el_missing(call.name, "PackagedContent", f'{call.name} needs the PackagedContent Name="{RECEIPT}"')
    return services.iotp_receipt_check(merchant_pk=ctx.merchant.pk, pay_id=pay_id, receipt=contents[0].text)


def check_payment_receipt(call: Call, ctx: Context) -> ET.Element:
    _receipt(call, ctx)
    return element("CheckPaymentReceiptResponse")


def expand_payment_receipt(call: Call, ctx: Context) -> ET.Element:
    fields = _receipt(call, ctx)
    attributes = {name: str(fields[name]) for name in _ATTRIBUTES if name in fields}
    attributes[XML_LANG] = "en"
    attributes["PaymentHandlerDesc"] = "Payment gateway"
    response = element("ExpandPaymentReceiptResponse", attributes)
    for name, description in _PROPERTIES.items():
        if name in fields:
            child(response, "PaymentProperty", {
                "PropertyType": name, "PropertyValue": str(fields[name]), "PropertyDesc": description,
            })
    return response
