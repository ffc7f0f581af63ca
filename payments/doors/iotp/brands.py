"""Brand compilation (RFC 3867 §4.1.1–4.1.3): FindAcceptedPaymentBrand,
FindAcceptedPaymentProtocol, GetPaymentInitializationData."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from decimal import Decimal

from django.urls import reverse
from django.utils import timezone

from payments import services

from . import attributes as att
from .context import Context
from .errors import att_illegal
from .xmlio import XML_LANG, Call, child, element

LOGOS = {"Visa": "visa.svg", "MasterCard": "mastercard.svg", "VisaElectron": "visa-electron.svg"}


def _money(call: Call, ctx: Context) -> tuple[str, Decimal]:
    currency = att.currency(call, ctx.merchant.currency)
    return currency, att.amount(call, currency)


def _accepted(call: Call, ctx: Context, currency: str, amount: Decimal) -> list[str]:
    direction = att.pay_direction(call)
    if direction == "Credit":  # the gateway makes no payouts: no brand for them (an empty list, §4.1.1)
        return []
    return services.iotp_brands_accepted(merchant_pk=ctx.merchant.pk, currency=currency, amount=amount)


def _brand_item(parent: ET.Element, ctx: Context, brand: str) -> None:
    child(parent, "BrandItem", {
        "BrandId": brand,
        XML_LANG: "en",
        "BrandName": services.IOTP_BRANDS[brand][1],
        "BrandLogoNetLocn": ctx.url(reverse("iotp-logo", args=[LOGOS[brand]])),
    })


def find_accepted_payment_brand(call: Call, ctx: Context) -> ET.Element:
    currency, amount = _money(call, ctx)
    att.required(call, "MerchantPayId")
    att.merchant_org_id(call, ctx.merchant.uuid, optional=True)
    response = element("FindAcceptedPaymentBrandResponse")
    for brand in _accepted(call, ctx, currency, amount):
        _brand_item(response, ctx, brand)
    return response


def find_accepted_payment_protocol(call: Call, ctx: Context) -> ET.Element:
    brand = att.brand(call, optional=True)
    currency, amount = _money(call, ctx)
    att.required(call, "MerchantPayId")
    att.merchant_org_id(call, ctx.merchant.uuid, optional=True)
    accepted = _accepted(call, ctx, currency, amount)
    if brand and brand not in accepted:
        raise att_illegal(call.name, "BrandId", f"{brand} is not accepted for {amount} {currency}")
    if not accepted:
        raise att_illegal(call.name, "Amount", f"no brand of this merchant accepts {amount} {currency}")
    response = element("FindAcceptedPaymentProtocolResponse")
    endpoint = ctx.url(reverse("iotp"))
    item = child(response, "ProtocolItem", {
        "ProtocolId": services.IOTP_PROTOCOL_ID,
        XML_LANG: "en",
        "ProtocolName": services.IOTP_PROTOCOL_NAME,
        "PayReqNetLocn" if endpoint.startswith("http:") else "SecPayReqNetLocn": endpoint,
    })
    child(item, "CurrencyAmount", {"CurrCodeType": "ISO4217-A", "CurrCode": currency, "Amount": str(amount)})
    if not brand:
        for accepted_brand in accepted:
            child(item, "Brand", {"BrandId": accepted_brand})
        for accepted_brand in accepted:
            _brand_item(response, ctx, accepted_brand)
    return response


def get_payment_initialization_data(call: Call, ctx: Context) -> ET.Element:
    brand = att.brand(call)
    att.required(call, "MerchantPayId")
    currency, amount = _money(call, ctx)
    att.protocol(call)
    ok_from, ok_to = att.ok_window(call)
    att.merchant_org_id(call, ctx.merchant.uuid, optional=True)
    if ok_to <= timezone.now():
        raise att_illegal(call.name, "OkTo", "is already past")
    if att.pay_direction(call) == "Credit":
        raise att_illegal(call.name, "PayDirection", "the gateway takes payments (Debit) only")
    if brand not in _accepted(call, ctx, currency, amount):
        raise att_illegal(call.name, "BrandId", f"{brand} is not accepted for {amount} {currency}")
    return element("GetPaymentInitializationDataResponse", {"OkFrom": att.zulu(ok_from), "OkTo": att.zulu(ok_to)})
