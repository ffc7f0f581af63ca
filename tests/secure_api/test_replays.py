"""Replays and tampering fail (issue 8, item 3): a reused nonce, a timestamp 301 s
off, a changed byte of the body or the URI, a tampered envelope. Across
processes: tests/secure_api/test_gunicorn.py sends one request to two servers."""
from __future__ import annotations

import time

import pytest
import simplejson

from clients.secure_api import authorization, compact_json, encrypt
from merchants.models import Account

pytestmark = pytest.mark.django_db


class Raw:
    """A request built by hand from the client's primitives, to be sent as is or changed."""

    def __init__(self, api, method: str, path: str, body: dict | None = None, *, timestamp: int | None = None,
                 nonce: str | None = None) -> None:  # type: ignore[no-untyped-def]
        self.api, self.method = api, method
        self.uri = api.base_url + path
        self.body = b"data=" + encrypt(api.data_key, compact_json(body)).encode() if body is not None else b""
        self.header = authorization(app_id=api.app_id, app_key=api.app_key, method=method, uri=self.uri,
                                    body=self.body, timestamp=timestamp, nonce=nonce)

    def send(self, *, uri: str | None = None, body: bytes | None = None, header: str | None = None):  # type: ignore[no-untyped-def]
        response = self.api.http.request(
            self.method, uri or self.uri, content=self.body if body is None else body,
            headers={"Authorization": self.header if header is None else header,
                     "Content-Type": "application/x-www-form-urlencoded"},
        )
        return self.api.read(response)


def refused(answer, reason: str) -> None:  # type: ignore[no-untyped-def]
    assert answer.status == 401 and answer.code == 998, answer.body
    assert answer.error["detail"].startswith("Authorization: ") and reason in answer.error["detail"], answer.body


def test_a_reused_nonce_is_refused_and_nothing_is_done_twice(api) -> None:  # type: ignore[no-untyped-def]
    request = Raw(api, "POST", "/account", {"name": "once"})
    assert request.send().status == 200
    refused(request.send(), "nonce already used")
    # A new request may reuse nothing but its body: a new nonce passes.
    assert Raw(api, "POST", "/account", {"name": "once"}).send().status == 200
    assert Account.objects.filter(name="once").count() == 2


@pytest.mark.parametrize("offset", [-301, 301])
def test_a_timestamp_more_than_300_seconds_off_is_refused(api, offset) -> None:  # type: ignore[no-untyped-def]
    refused(Raw(api, "POST", "/account", {}, timestamp=int(time.time()) + offset).send(), "timestamp")


@pytest.mark.parametrize("offset", [-290, 290])
def test_a_timestamp_within_300_seconds_passes(api, offset) -> None:  # type: ignore[no-untyped-def]
    assert Raw(api, "POST", "/account", {}, timestamp=int(time.time()) + offset).send().status == 200


def test_a_changed_byte_of_the_body_is_refused(api) -> None:  # type: ignore[no-untyped-def]
    request = Raw(api, "POST", "/account", {"name": "Ada"})
    last = request.body[-1:]
    changed = request.body[:-1] + (b"0" if last != b"0" else b"1")
    refused(request.send(body=changed), "signature")
    assert not Account.objects.exists()
    assert request.send().status == 200  # the refused copy did not use up the nonce


def test_a_changed_uri_is_refused(api, account) -> None:  # type: ignore[no-untyped-def]
    request = Raw(api, "GET", f"/account/{account['uuid']}")
    other = api.post("/account", {}).data
    refused(request.send(uri=f"{api.base_url}/account/{other['uuid']}"), "signature")
    refused(request.send(uri=request.uri + "?data=00"), "signature")
    listing = Raw(api, "GET", f"/billing/{account['uuid']}/transactions?data=" + encrypt(api.data_key, b"pageNo=1"))
    refused(listing.send(uri=listing.uri.replace("?data=", "?data=0")), "signature")
    assert request.send().status == 200


def test_a_tampered_envelope_is_refused_even_when_signed(api) -> None:  # type: ignore[no-untyped-def]
    """An envelope whose GCM tag does not match (a byte flipped, or another key) is refused
    even if whoever sent it could sign it."""
    envelope = encrypt(api.data_key, compact_json({"name": "Mallory"}))
    flipped = envelope[:-2] + ("00" if envelope[-2:] != "00" else "01")
    for tampered in (flipped, envelope[:60] + ("0" if envelope[60] != "0" else "1") + envelope[61:],
                     encrypt("A" * 43 + "=", compact_json({"name": "Mallory"}))):
        body = f"data={tampered}".encode()
        header = authorization(app_id=api.app_id, app_key=api.app_key, method="POST",
                               uri=api.base_url + "/account", body=body)
        answer = Raw(api, "POST", "/account").send(body=body, header=header)
        assert answer.status == 400 and answer.code == 997
        assert answer.error["detail"].startswith("data: the envelope does not decrypt")
    assert not Account.objects.exists()


def test_an_unknown_app_id_is_told_in_plain_json(api) -> None:  # type: ignore[no-untyped-def]
    request = Raw(api, "POST", "/account", {})
    response = api.http.request("POST", request.uri, content=request.body,
                                headers={"Authorization": request.header.replace(api.app_id, "0" * 32)})
    assert response.status_code == 401 and response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"] == "PLTOKEN"
    assert simplejson.loads(response.text)["error"]["code"] == 998


def test_a_known_caller_gets_its_refusal_encrypted(api) -> None:  # type: ignore[no-untyped-def]
    request = Raw(api, "POST", "/account", {})
    response = api.http.request("POST", request.uri, content=b"data=00" + request.body,
                                headers={"Authorization": request.header})
    assert response.status_code == 401 and response.headers["content-type"] == "text/plain"
    refused(api.read(response), "signature")


def test_a_missing_header_is_998(api) -> None:  # type: ignore[no-untyped-def]
    response = api.http.post(api.base_url + "/account", content=b"")
    assert response.status_code == 401 and simplejson.loads(response.text)["error"]["code"] == 998
