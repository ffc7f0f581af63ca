"""``POST /iotp``: one IotpPaymentApiRequest in, one IotpPaymentApiResponse out.

Order of checks, each answered in RFC 3867's vocabulary (status 200, XML)
except authentication (401, no XML, as the contract says):

1. capacity: more than ``IOTP_MAX_CONCURRENT_REQUESTS`` in this process → SystemBusy;
2. size: a body over 1 MiB → MsgTooLarge, refused before it is read (a
   signature check would have to read it all);
3. PLTOKEN (payments.doors.pltoken) → 401;
4. Content-Type application/xml or text/xml → else ReqRefused;
5. XML (defusedxml, DTDs refused) → XmlNotWellFrmd / XmlNotValid;
6. the call element: implemented → its module; consumer-side → ReqNotSupp;
   anything else → ElNotSupp.

Nothing reaches the caller as a 500: the core's errors become their IOTP
codes here, a database that is unavailable SystemBusy, anything else
UnknownError (logged).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import OperationalError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from payments import errors as core_errors
from payments import services
from payments.doors import pltoken

from . import auth, brands, inquiries, paying, receipts, software
from .context import Context
from .errors import HARD, TRANSIENT, IotpError, bus_error
from .xmlio import Call, document, error_element, parse

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
CONTENT_TYPES = ("application/xml", "text/xml")
LOGO_DIR = Path(settings.BASE_DIR) / "static" / "iotp"

Handler = Callable[[Call, Context], object]

CALLS: dict[str, Handler] = {
    "FindAcceptedPaymentBrand": brands.find_accepted_payment_brand,
    "FindAcceptedPaymentProtocol": brands.find_accepted_payment_protocol,
    "GetPaymentInitializationData": brands.get_payment_initialization_data,
    "InquireAuthChallenge": auth.inquire_auth_challenge,
    "CheckAuthResponse": auth.check_auth_response,
    "StartPaymentPaymentHandler": paying.start_payment_payment_handler,
    "ResumePaymentPaymentHandler": paying.resume_payment_payment_handler,
    "ContinueProcess": paying.continue_process,
    "ChangeProcessState": paying.change_process_state,
    "InquireProcessState": inquiries.inquire_process_state,
    "InquirePaymentStatus": inquiries.inquire_payment_status,
    "InquirePendingPayment": inquiries.inquire_pending_payment,
    "RemovePaymentLog": inquiries.remove_payment_log,
    "PaymentInstrumentInquiry": inquiries.payment_instrument_inquiry,
    "CheckPaymentReceipt": receipts.check_payment_receipt,
    "ExpandPaymentReceipt": receipts.expand_payment_receipt,
    "ManagePaymentSoftware": software.manage_payment_software,
}
# The Consumer's calls (and the RFC's own spelling of one of them), and CallBack.
NOT_SUPPORTED = frozenset({
    "FindPaymentInstrument", "CheckPaymentPossibility", "CheckPaymentPossiblity", "StartPaymentConsumer",
    "ResumePaymentConsumer", "Authenticate", "StartPaymentInquiry", "CallBack",
})
# The attribute that names the payment, per call (for "unknown PayId" and business errors).
_PAY_ID_ATTRIBUTE = {
    "StartPaymentPaymentHandler": "PaymentHandlerPayId",
    "ResumePaymentPaymentHandler": "PaymentHandlerPayId",
    "InquirePaymentStatus": "PaymentHandlerPayId",
}


class _Admission:
    """At most N requests at once in this process; one more is told to come back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active = 0

    def enter(self) -> bool:
        with self._lock:
            if self.active >= settings.IOTP_MAX_CONCURRENT_REQUESTS:
                return False
            self.active += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.active -= 1


admission = _Admission()
# The answer of last resort, rendered once: used if even an error cannot be rendered.
_LAST_RESORT = document(error_element(IotpError(
    "UnknownError", "Internal error of the gateway: retry later", element="IotpPaymentApiRequest",
)))


def _xml(body: bytes) -> HttpResponse:
    return HttpResponse(body, content_type="application/xml; charset=utf-8")


def _error(error: IotpError) -> HttpResponse:
    return _xml(document(error_element(error)))


def _busy(why: str) -> IotpError:
    return IotpError("SystemBusy", why, severity=TRANSIENT, element="IotpPaymentApiRequest",
                     min_retry_secs=settings.IOTP_BUSY_RETRY_SECONDS)


def _core_error(exc: core_errors.PaymentError, call: Call) -> IotpError:
    """The core's refusals in RFC 3867's words."""
    pay_id = _PAY_ID_ATTRIBUTE.get(call.name, "PayId")
    if isinstance(exc, services.PaymentBeingProcessed):
        return IotpError("MsgBeingProc", exc.message, severity=TRANSIENT, element=call.name, attribute=pay_id,
                         min_retry_secs=2)
    if isinstance(exc, services.PayIdUnknown):
        return IotpError("AttValIllegal", exc.message, element=call.name, attribute=pay_id)
    if isinstance(exc, services.BrandMismatch):
        return IotpError("ElInconsistent", exc.message, element="PaySchemePackagedContent", attribute="BrandId")
    if isinstance(exc, services.ReceiptInvalid):
        return bus_error(call.name, exc.message, attribute="PayId")
    if isinstance(exc, services.IotpRefused):
        return IotpError("AttValIllegal", exc.message, element=call.name, attribute=exc.attribute)
    if isinstance(exc, (core_errors.InvalidState, core_errors.TransactionNotFound)):
        return bus_error(call.name, exc.message, attribute=pay_id)
    if isinstance(exc, core_errors.InvalidAmount):
        return IotpError("AttValIllegal", exc.message, element=call.name, attribute="Amount")
    return IotpError("ReqRefused", exc.message, element=call.name)


def _dispatch(body: bytes, ctx: Context) -> HttpResponse:
    call = parse(body)
    if call.name in NOT_SUPPORTED:
        raise IotpError("ReqNotSupp", f"{call.name} is a call of the Consumer's side; the gateway plays the "
                        "Merchant and the Payment Handler", element=call.name)
    handler = CALLS.get(call.name)
    if handler is None:
        raise IotpError("ElNotSupp", f"{call.name[:64]} is not an RFC 3867 call the gateway supports",
                        element=call.name[:64])
    try:
        answer = handler(call, ctx)
    except core_errors.PaymentError as exc:
        raise _core_error(exc, call) from None
    return _xml(document(answer))  # type: ignore[arg-type]


def _content_type_ok(request: HttpRequest) -> bool:
    # No Content-Type at all (an empty body) is left to the XML parser to refuse.
    media = (request.content_type or "").split(";")[0].strip().lower()
    return media in ("", *CONTENT_TYPES)


@csrf_exempt
@require_POST
def iotp(request: HttpRequest) -> HttpResponse:
    if not admission.enter():
        return _error(_busy("The gateway is serving as many IOTP requests as it may: retry shortly"))
    try:
        return _serve(request)
    except Exception:  # never a 500
        logger.exception("IOTP answer could not be rendered")
        return _xml(_LAST_RESORT)
    finally:
        admission.leave()


def _serve(request: HttpRequest) -> HttpResponse:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        return _error(IotpError("MsgTooLarge", f"The body is over {MAX_BODY_BYTES} bytes ({length})",
                                element="IotpPaymentApiRequest"))
    try:
        caller = pltoken.verify_request(request)
    except pltoken.PltokenRefused as exc:
        response = HttpResponse(f"PLTOKEN authentication failed: {exc.detail}\n", status=401,
                                content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = pltoken.SCHEME
        return response
    except OperationalError:
        logger.warning("IOTP: database unavailable while authenticating", exc_info=True)
        return _error(_busy("The gateway's database is unavailable: retry shortly"))
    if not _content_type_ok(request):
        return _error(IotpError("ReqRefused", "Content-Type must be application/xml or text/xml",
                                element="IotpPaymentApiRequest"))
    ctx = Context(merchant=caller.merchant, request=request)
    try:
        return _dispatch(request.body, ctx)
    except IotpError as error:
        return _error(error)
    except OperationalError:
        logger.warning("IOTP: database unavailable", exc_info=True)
        return _error(_busy("The gateway's database is unavailable: retry shortly"))
    except Exception:  # our own failure: never a 500, never card data
        logger.exception("IOTP request failed")
        return _error(IotpError("UnknownError", "Internal error of the gateway: nothing was left half-done, "
                                "retry later", severity=HARD, element="IotpPaymentApiRequest"))


@require_GET
def logo(request: HttpRequest, name: str) -> FileResponse:
    """The brand logos of BrandLogoNetLocn (static files, served by the gateway itself)."""
    if name not in brands.LOGOS.values():
        raise Http404("no such logo")
    response = FileResponse((LOGO_DIR / name).open("rb"), content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=86400"
    return response
