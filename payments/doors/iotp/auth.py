"""Authentication (RFC 3867 §4.1.4, §4.1.6): InquireAuthChallenge and
CheckAuthResponse, a real challenge-response (payments.services.iotp says
which secret answers it)."""
from __future__ import annotations

import binascii
import base64
import xml.etree.ElementTree as ET

from payments import services

from . import attributes as att
from .context import Context
from .errors import IotpError, bus_error, el_missing
from .xmlio import Call, child, element, packaged, packaged_element


def _algorithm_names(call: Call) -> list[str]:
    return [algorithm.get("Name", "") for algorithm in call.children("Algorithm")]


def inquire_auth_challenge(call: Call, ctx: Context) -> ET.Element:
    authentication_id = att.identifier(call, "AuthenticationId")
    proposed = _algorithm_names(call)
    if proposed and services.IOTP_AUTH_ALGORITHM not in proposed:
        # §4.1.4: no (more) algorithm to offer is a business error.
        raise bus_error(call.name, f"The gateway offers {services.IOTP_AUTH_ALGORITHM} only", attribute="")
    challenge = services.iotp_auth_challenge_issue(merchant_pk=ctx.merchant.pk, authentication_id=authentication_id)
    response = element("InquireAuthChallengeResponse")
    packaged_element(response, "AuthReqPackagedContent", name="Challenge", text=challenge)
    child(response, "Algorithm", {"Name": services.IOTP_AUTH_ALGORITHM})
    return response


def _one(call: Call, tag: str, name: str) -> str:
    contents = packaged(call, tag)
    chosen = [c for c in contents if c.name == name] or contents
    if not chosen:
        raise el_missing(call.name, tag, f"{call.name} needs its {tag} ({name})")
    return chosen[0].text.strip() if chosen[0].transform == "NONE" else chosen[0].data().decode("latin-1")


def check_auth_response(call: Call, ctx: Context) -> ET.Element:
    authentication_id = att.identifier(call, "AuthenticationId")
    names = _algorithm_names(call)
    if not names:
        raise el_missing(call.name, "Algorithm", "CheckAuthResponse needs the Algorithm of the challenge")
    if names[0] != services.IOTP_AUTH_ALGORITHM:
        raise IotpError("ElContIllegal", f"Algorithm must be {services.IOTP_AUTH_ALGORITHM}", element="Algorithm")
    challenge = _one(call, "AuthReqPackagedContent", "Challenge")
    responses = [c for c in packaged(call, "AuthResPackagedContent")]
    if not responses:
        raise el_missing(call.name, "AuthResPackagedContent", "CheckAuthResponse needs the AuthResPackagedContent")
    try:
        answer = base64.b64decode("".join(responses[0].text.split()), validate=True)
    except (binascii.Error, ValueError):
        answer = b""
    ok, why = services.iotp_auth_response_check(
        merchant_pk=ctx.merchant.pk, authentication_id=authentication_id, challenge=challenge, response=answer,
    )
    if ok:
        return element("CheckAuthResponseResponse", {"ProcessState": "CompletedOk"})
    return element("CheckAuthResponseResponse", {
        "ProcessState": "Failed", "CompletionCode": "AuthError", "StatusDesc": why,
    })
