"""esipay's paths: whatever arrives under /cardpay/, the door answers in its own vocabulary.

Three shapes exist (``/cardpay/<uuid>/<cid>/<cardnumber>/<cardmonth>/<cardyear>/<amount>``,
``/cardpay/<uuid>/<transaction>``, ``/cardpay/<uuid>/<transaction>/<amount>``).
A segment may be empty: the view then refuses that value with its own 400
(``/cardpay/<uuid>/<transaction>/`` is a refund of an empty amount, refused,
never a refund of everything). Every other path under /cardpay/ (a trailing
slash after a payment, a missing or extra segment) is a JSON 404
``unknown_path``, and a method other than GET or POST a JSON 405
``method_not_allowed``: never Django's HTML pages, which in DEBUG list the
URL patterns and echo the path.

An esipay path carries a card number. The lines these answers write use
``path_for_log``, which keeps the merchant's uuid and hides every other
segment, so no log line of a refused path holds card digits whatever shape
the path had.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.log import log_response
from django.views.decorators.csrf import csrf_exempt

PREFIX = "/cardpay"
METHODS = ("GET", "POST")
SHAPES = (
    "/cardpay/<uuid>/<cid>/<cardnumber>/<cardmonth>/<cardyear>/<amount> to pay, "
    "/cardpay/<uuid>/<transaction> or /cardpay/<uuid>/<transaction>/<amount> to refund"
)


class Segment:
    """One path segment, possibly empty (the view judges its value)."""

    regex = "[^/]*"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


def path_for_log(path: str) -> str:
    """An esipay path fit for a log line: the uuid kept, every other segment ``*``.

    ``/cardpay/<uuid>/order-1/4242424242424242/12/2029/1.00/`` becomes
    ``/cardpay/<uuid>/*/*/*/*/*/``: the shape stays readable (how many
    segments, a trailing slash) and nothing of the card does. A first segment
    that is not a uuid is hidden too (it may be a card in the wrong place).
    """
    start = path.find(PREFIX)
    if start < 0:
        return "*"
    head, rest = path[: start + len(PREFIX)], path[start + len(PREFIX):]
    if rest and not rest.startswith("/"):
        return head + "*"
    segments = rest.split("/")[1:]
    shown: list[str] = []
    for index, segment in enumerate(segments):
        if not segment:
            shown.append("")
        elif index == 0 and _is_uuid(segment):
            shown.append(segment)
        else:
            shown.append("*")
    return head + "".join("/" + s for s in shown)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) <= 36


def _answer(request: HttpRequest, status: int, code: str, message: str) -> JsonResponse:
    response = JsonResponse({"error": message, "code": code}, status=status)
    # Django's own "Not Found: <path>" warning would carry the whole path; this
    # one carries its shape only (and marks the response as logged).
    log_response("%s: %s", response.reason_phrase, path_for_log(request.path), response=response, request=request)
    return response


@csrf_exempt
def unknown_path(request: HttpRequest, **_: object) -> JsonResponse:
    return _answer(request, 404, "unknown_path",
                   f"Unknown esipay path: use {SHAPES}, with no trailing slash")


def door(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """``view`` for GET and POST; any other method gets esipay's JSON 405."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if request.method not in METHODS:
            response = _answer(request, 405, "method_not_allowed", "Use GET or POST")
            response["Allow"] = ", ".join(METHODS)
            return response
        return view(request, *args, **kwargs)

    return csrf_exempt(wrapped)
