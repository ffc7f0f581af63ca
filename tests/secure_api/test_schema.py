"""The OpenAPI schema describes the decrypted bodies and the error object, and a
property-based run from it (schemathesis) goes through the envelope without a
5xx, every answer matching its documented status and schema (issue 8, item 6)."""
from __future__ import annotations

import itertools
from urllib.parse import quote, urlencode

import httpx
import pytest
import schemathesis
import yaml
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from clients.secure_api import authorization, compact_json, encrypt

from .conftest import charge_body

# drf-spectacular's schema of the secure API, as served at /api/schema/.
SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
schema = schemathesis.openapi.from_dict(yaml.safe_load(yaml.safe_dump(SCHEMA)))
# Keep the run short: every operation, positive and negative examples.
schema.config.generation.update(max_examples=25)
_ALTERNATE = itertools.count()
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.django_db
def test_the_schema_and_docs_are_served() -> None:
    client = Client()
    served = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert served.status_code == 200
    document = served.json()
    assert "/billing/{uuid}/transaction" in document["paths"] and "/api/schema/" not in document["paths"]
    assert not any(path.startswith(("/admin", "/cardpay")) for path in document["paths"])
    components = document["components"]["schemas"]
    # The decrypted bodies: the charge as the spec writes it, and the error object.
    assert {"orderID", "amount", "currencyCode", "paymentInfoID", "paymentInfo"} <= set(
        components["ChargeRequest"]["properties"])
    assert set(components["ErrorObject"]["properties"]) == {"code", "message", "detail"}
    charge = document["paths"]["/billing/{uuid}/transaction"]["post"]
    assert {"200", "400", "401", "404", "409", "500"} <= set(charge["responses"])
    assert document["components"]["securitySchemes"]["PLTOKEN"]["name"] == "Authorization"
    assert "PLTOKEN {app_id}:{signature}:{nonce}:{timestamp}" in document["info"]["description"]
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content


@pytest.fixture
def known(api, account, card):  # type: ignore[no-untyped-def]
    """Ids that exist, so that half the cases reach past the 404s: a charge to refund and cancel."""
    paid = api.post(f"/billing/{account['uuid']}/transaction", charge_body(card, order="schema-run", amount=50)).data
    return {"uuid": account["uuid"], "payment_info_id": card["paymentInfoID"], "transaction_id": paid["transactionID"]}


def _on_known(body: dict, known: dict) -> dict:  # type: ignore[type-arg]
    """The generated body with the fields that must name something real made real
    (the card, the merchant's currency, a Luhn-valid number), so that its other
    fields reach the services."""
    fixed = dict(body)
    if "paymentInfoID" in fixed:
        fixed["paymentInfoID"] = known["payment_info_id"]
    if "currencyCode" in fixed:
        fixed["currencyCode"] = "EUR"
    if isinstance(fixed.get("card"), dict) and "number" in fixed["card"]:
        fixed["card"] = {**fixed["card"], "number": "5555555555554444", "expMonth": 12, "expYear": 2099}
    return fixed


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@pytest.mark.django_db
def test_the_api_answers_every_generated_request_as_documented(case, api, known) -> None:  # type: ignore[no-untyped-def]
    path_parameters = dict(case.path_parameters or {})
    body_value = case.body
    if next(_ALTERNATE) % 2 == 0:  # every other case on real resources
        path_parameters.update({name: known[name] for name in path_parameters if name in known})
        if isinstance(body_value, dict):
            body_value = _on_known(body_value, known)
    path = case.path
    for name, value in path_parameters.items():
        path = path.replace("{" + name + "}", quote(str(value), safe=":@&+$,-_.!~*'()"))
    url = api.base_url + path
    if case.query:
        url += "?data=" + encrypt(api.data_key, urlencode(case.query, doseq=True).encode())
    body = b""
    if body_value is not None and not isinstance(body_value, bytes | bytearray):
        try:
            body = b"data=" + encrypt(api.data_key, compact_json(body_value)).encode()
        except (TypeError, ValueError):
            body = b""
    header = authorization(app_id=api.app_id, app_key=api.app_key, method=case.method, uri=url, body=body)
    sent = api.http.request(case.method, url, content=body, headers={
        "Authorization": header, "Content-Type": "application/x-www-form-urlencoded"})
    answer = api.read(sent)  # decrypts (and fails loudly if the answer is no envelope)
    # The decrypted answer, checked against the schema like any JSON API's.
    decrypted = httpx.Response(answer.status, headers={"content-type": "application/json"},
                               content=compact_json(answer.body), request=httpx.Request(case.method, url))
    decrypted.elapsed = sent.elapsed
    case.validate_response(decrypted, checks=CHECKS)


def test_the_generated_run_covers_every_operation() -> None:
    operations = {(op.method.upper(), op.path) for op in (r.ok() for r in schema.get_all_operations())}
    assert ("POST", "/billing/{uuid}/transaction") in operations
    assert ("DELETE", "/account/{uuid}/paymentinfo/{payment_info_id}") in operations
    assert len(operations) == 14
