"""PLTOKEN as a DRF authentication: ``payments.doors.pltoken`` does the checking.

``authenticate`` answers ``(None, ApiCaller)``: there is no Django user, the
caller is a merchant's application; the view reads ``request.auth``. A
refusal is an ``ApiRefused`` carrying the key pair when the app_id was known,
so that the 998 answer is encrypted for it (plain JSON otherwise).
"""
from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import APIException

from payments.doors import pltoken


class ApiRefused(APIException):
    status_code = 401

    def __init__(self, refusal: pltoken.PltokenRefused) -> None:
        self.refusal = refusal
        super().__init__(refusal.detail)


class PltokenAuthentication(BaseAuthentication):
    def authenticate(self, request):  # type: ignore[no-untyped-def]
        try:
            caller = pltoken.verify_request(request._request)
        except pltoken.PltokenRefused as refusal:
            raise ApiRefused(refusal) from None
        except RequestDataTooBig:
            raise ApiRefused(pltoken.PltokenRefused("the request body is too large")) from None
        return (None, caller)

    def authenticate_header(self, request) -> str:  # type: ignore[no-untyped-def]
        return pltoken.SCHEME
