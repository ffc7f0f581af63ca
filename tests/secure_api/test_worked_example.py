"""The worked example of docs/secure-api.md is exact: every value printed there is
recomputed with the gateway's code and with the client's, and the documented
request, sent as printed, is accepted by the gateway."""
from __future__ import annotations

import base64
import re
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import simplejson

from clients import secure_api as client
from merchants.models import Account, ApiKeyPair
from payments import vault
from payments.doors import pltoken
from payments.doors.secure_api import envelope
from tests.factories import MerchantFactory

DOC = Path(__file__).resolve().parents[2] / "docs" / "secure-api.md"


def example() -> dict[str, str]:
    block = re.search(r"<!-- worked-example -->\s*```text\n(.*?)```", DOC.read_text(), re.S)
    assert block, "no worked example in docs/secure-api.md"
    values = {}
    for line in block.group(1).splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition(":")
            values[name.strip()] = value.strip()
    return values


EX = example()
KEY = base64.b64decode(EX["data_key"])


def test_the_body_envelope_and_the_signature() -> None:
    plaintext = EX["body plaintext"].encode()
    assert envelope.compact_json(simplejson.loads(plaintext)) == plaintext  # compact JSON, fields in order
    for seal in (lambda: envelope.seal(KEY, plaintext, iv=EX["IV"].encode()),
                 lambda: client.encrypt(EX["data_key"], plaintext, iv=EX["IV"].encode())):
        assert seal() == EX["body envelope"]
    assert EX["raw body"] == "data=" + EX["body envelope"]
    body = EX["raw body"].encode()
    assert pltoken.body_digest(body) == EX["base64(MD5(body))"]
    kwargs = {"app_id": EX["app_id"], "method": "POST", "uri": "https://gateway.example.com/account",
              "timestamp": EX["timestamp"], "nonce": EX["nonce"], "body": body}
    assert pltoken.request_string(**kwargs) == client.request_string(**kwargs) == EX["RequestString"]
    assert pltoken.signature(base64.b64decode(EX["app_key"]), EX["RequestString"]) == EX["signature"]
    header = client.authorization(app_id=EX["app_id"], app_key=EX["app_key"], method="POST",
                                  uri="https://gateway.example.com/account", body=body, nonce=EX["nonce"],
                                  timestamp=int(EX["timestamp"]))
    assert header == EX["Authorization"] == pltoken.authorization_header(
        app_id=EX["app_id"], app_key=EX["app_key"], method="POST", uri="https://gateway.example.com/account",
        body=body, nonce=EX["nonce"], timestamp=int(EX["timestamp"]))


def test_the_answer_envelope() -> None:
    plaintext = EX["answer plaintext"].encode()
    assert envelope.seal(KEY, plaintext, iv=EX["answer IV"].encode()) == EX["answer envelope"]
    assert envelope.open_envelope(KEY, EX["answer envelope"]) == plaintext
    assert client.decrypt(EX["data_key"], EX["answer envelope"]) == plaintext
    assert bytes.fromhex(EX["answer envelope"])[:26] == EX["answer IV"].encode()


def test_the_get_with_encrypted_parameters() -> None:
    query = EX["query plaintext"].encode()
    assert envelope.seal(KEY, query, iv=EX["query IV"].encode()) == EX["query envelope"]
    uri = ("https://gateway.example.com/billing/187b2be8-24fb-4892-b16a-7d84d1d0fe83/transactions?data="
           + EX["query envelope"])
    kwargs = {"app_id": EX["app_id"], "method": "GET", "uri": uri, "timestamp": EX["get timestamp"],
              "nonce": EX["get nonce"], "body": b""}
    assert pltoken.request_string(**kwargs) == client.request_string(**kwargs) == EX["get RequestString"]
    assert pltoken.signature(base64.b64decode(EX["app_key"]), EX["get RequestString"]) == EX["get signature"]


@pytest.mark.django_db
def test_the_documented_request_is_accepted_as_printed(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from django.core.signals import request_finished, request_started
    from django.core.wsgi import get_wsgi_application
    from django.db import close_old_connections

    settings.ALLOWED_HOSTS = ["gateway.example.com"]
    merchant = MerchantFactory(allowed_ips=[])
    merchant.app_id = EX["app_id"]
    merchant.save()
    # The example's keys, sealed as merchants.credentials seals issued ones.
    ApiKeyPair.objects.create(merchant=merchant, app_key_sealed=vault.seal(EX["app_key"], purpose="api-app-key"),
                              data_key_sealed=vault.seal(EX["data_key"], purpose="api-data-key"))
    # The gateway's clock at the example's time (one second later).
    monkeypatch.setattr(pltoken, "time", SimpleNamespace(time=lambda: int(EX["timestamp"]) + 1.0))
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        with httpx.Client(transport=httpx.WSGITransport(app=get_wsgi_application())) as http:
            response = http.post("https://gateway.example.com/account", content=EX["raw body"].encode(), headers={
                "Authorization": EX["Authorization"], "Content-Type": "application/x-www-form-urlencoded"})
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    assert response.status_code == 200, response.text
    answer = simplejson.loads(client.decrypt(EX["data_key"], response.text))["data"]
    assert (answer["externalID"], answer["name"], answer["email"]) == ("cust-42", "Ada Lovelace", "ada@example.com")
    assert Account.objects.get(uuid=answer["uuid"]).merchant == merchant
