"""The demo merchant's own server, for ``make run`` only (DEBUG): an esipay
return URL that answers 200, and a webhook endpoint that checks signatures.

A real merchant runs these on its own servers; here they let a fresh clone
show a whole esipay payment, its refund and the webhooks without anything
else running. Mounted by config/urls.py when DEBUG is on.
"""
from __future__ import annotations

import json
import logging

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments import outbox
from payments.models import WebhookEndpoint

logger = logging.getLogger("demo.merchant")


@csrf_exempt
@require_POST
def esipay_return(request: HttpRequest) -> HttpResponse:
    logger.info(
        "demo merchant: esipay return for cid=%s transaction=%s amount=%s",
        request.POST.get("cid"), request.POST.get("transaction"), request.POST.get("amount"),
    )
    return HttpResponse("ok")


@csrf_exempt
@require_POST
def webhooks(request: HttpRequest) -> HttpResponse:
    header = request.headers.get(outbox.SIGNATURE_HEADER, "")
    timestamp, _, mac = header.partition(",v1=")
    endpoints = WebhookEndpoint.objects.filter(url=request.build_absolute_uri(request.path))
    valid = any(
        outbox.signature_header(outbox.endpoint_secret(e), request.body, timestamp=int(timestamp[2:] or 0)) == header
        for e in endpoints if timestamp.startswith("t=") and timestamp[2:].isdigit() and mac
    )
    event = json.loads(request.body or b"{}")
    logger.info("demo merchant: webhook %s %s, signature %s", event.get("type"), event.get("id"),
                "ok" if valid else "INVALID")
    return HttpResponse("ok" if valid else "bad signature", status=200 if valid else 400)
