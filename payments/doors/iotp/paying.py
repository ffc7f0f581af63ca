"""Payment transactions (RFC 3867 §4.3, Payment Handler side):
StartPaymentPaymentHandler, ResumePaymentPaymentHandler, ContinueProcess,
ChangeProcessState."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from payments import services
from payments.states import ProcessState

from . import attributes as att
from .context import Context
from .errors import IotpError, att_illegal, el_missing
from .xmlio import XML_LANG, Call, element, packaged_element

RECEIPT = "Receipt"
RECEIPT_CONTENT = "GatewayReceipt-1"


def receipt_element(parent: ET.Element, tag: str, view: services.IotpPaymentView) -> None:
    packaged_element(parent, tag, name=RECEIPT, content=RECEIPT_CONTENT, transform="BASE64", text=view.receipt)


def continuation(name: str, view: services.IotpPaymentView) -> ET.Element:
    """``…Response ContStatus``: End with the signed receipt once the payment is
    final; Continue with what the consumer must send next otherwise."""
    if view.final:
        response = element(name, {"ContStatus": "End"})
        receipt_element(response, "PaySchemePackagedContent", view)
        return response
    response = element(name, {"ContStatus": "Continue"})
    packaged_element(
        response, "PaySchemePackagedContent", name="CardDataRequest",
        text=json.dumps({"PaymentHandlerPayId": view.pay_id, "ProcessState": view.process_state.value,
                         "send": "CardData"}, sort_keys=True),
    )
    return response


def start_payment_payment_handler(call: Call, ctx: Context) -> ET.Element:
    brand = att.brand(call)
    currency = att.currency(call, ctx.merchant.currency)
    amount = att.amount(call, currency)
    if att.pay_direction(call) == "Credit":
        raise att_illegal(call.name, "PayDirection", "the gateway takes payments (Debit) only")
    protocol = att.protocol(call)
    ok_from, ok_to = att.ok_window(call)
    now = timezone.now()
    if ok_from > now + timedelta(seconds=settings.API_SIGNATURE_MAX_SKEW_SECONDS):
        raise att_illegal(call.name, "OkFrom", "the payment may not be accepted yet")
    if ok_to < now:
        raise att_illegal(call.name, "OkTo", "the time to accept this payment is over")
    pay_id = att.pay_id(call, "PaymentHandlerPayId")
    att.merchant_org_id(call, ctx.merchant.uuid, optional=False)
    consumer_pay_id = att.identifier(call, "ConsumerPayId", optional=True)
    card = att.card_data(call)
    view = services.iotp_payment_start(
        merchant_pk=ctx.merchant.pk,
        request=services.StartRequest(
            pay_id=pay_id, brand_id=brand, currency=currency, amount=amount, pay_direction="Debit",
            protocol_id=protocol, ok_from=ok_from, ok_to=ok_to, consumer_pay_id=consumer_pay_id,
        ),
        card=card,
    )
    return continuation("StartPaymentPaymentHandlerResponse", view)


def resume_payment_payment_handler(call: Call, ctx: Context) -> ET.Element:
    pay_id = att.pay_id(call, "PaymentHandlerPayId")
    card = att.card_data(call)
    view = services.iotp_payment_resume(merchant_pk=ctx.merchant.pk, pay_id=pay_id, card=card)
    return continuation("ResumePaymentPaymentHandlerResponse", view)


def continue_process(call: Call, ctx: Context) -> ET.Element:
    pay_id = att.pay_id(call)
    if att.one_of(call, "ProcessType", ("Payment", "Inquiry"), default="Payment") == "Inquiry":
        raise att_illegal(call.name, "ProcessType", "inquiries need no continuation here (InquirePaymentStatus)")
    card = att.card_data(call)
    if card is None:
        raise el_missing(call.name, "PaySchemePackagedContent",
                         'ContinueProcess needs a PaySchemePackagedContent Name="CardData"')
    view = services.iotp_payment_continue(merchant_pk=ctx.merchant.pk, pay_id=pay_id, card=card)
    return continuation("ContinueProcessResponse", view)


def state_attributes(view: services.IotpPaymentView, *, percent: bool = True) -> dict[str, str]:
    attributes = {"ProcessState": view.process_state.value}
    if percent:
        attributes["PercentComplete"] = str(view.percent_complete)
    attributes.update({"CompletionCode": view.completion_code, XML_LANG: "en", "StatusDesc": view.status_desc})
    return attributes


def change_process_state(call: Call, ctx: Context) -> ET.Element:
    pay_id = att.pay_id(call)
    state = ProcessState(att.one_of(call, "ProcessState", tuple(ProcessState.values)))
    completion_code = att.nmtoken(call, "CompletionCode")
    if att.one_of(call, "ProcessType", ("Payment", "Inquiry"), default="Payment") == "Inquiry":
        raise IotpError("AttValIllegal", "ProcessType Inquiry: the gateway's inquiries have no state to change",
                        element=call.name, attribute="ProcessType")
    view = services.iotp_payment_change_state(
        merchant_pk=ctx.merchant.pk, pay_id=pay_id, state=state, completion_code=completion_code,
    )
    return element("ChangeProcessStateResponse", state_attributes(view))
