"""ManagePaymentSoftware (RFC 3867 §4.6.1): the gateway keeps no wallets nor
payment instruments, so the call reports its authentication algorithms; an
Action (New, Update, Delete) is refused as unsupported (AttValIllegal Action)."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from payments import services

from . import attributes as att
from .context import Context
from .errors import att_illegal, att_missing
from .xmlio import Call, element


def manage_payment_software(call: Call, ctx: Context) -> ET.Element:
    action = call.attr("Action")
    if action is not None:
        att.one_of(call, "Action", ("New", "Update", "Delete"))
        for needed in ("BrandId", "ProtocolId"):  # §4.6.1: with an Action, both are set
            if call.attr(needed) is None:
                raise att_missing(call.name, needed)
        att.brand(call)
        att.protocol(call)
        raise att_illegal(call.name, "Action", "the gateway keeps no wallets or payment instruments to manage")
    if call.attr("BrandId") is not None:
        att.brand(call)
    if call.attr("ProtocolId") is not None:
        att.protocol(call)
    return element("ManagePaymentSoftwareResponse", {"AuthNames": services.IOTP_AUTH_ALGORITHM})
