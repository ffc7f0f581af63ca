"""The secure API through its real client (clients/secure_api.py): in-process over
WSGI (httpx's WSGITransport: the whole Django stack, no socket), or over real
sockets against the live server or gunicorn where a test says so."""
from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from clients.secure_api import SecureApiClient
from merchants.credentials import IssuedKeys, api_keys_issue
from tests.factories import MerchantFactory

HAPPY_CARD = "4242424242424242"


def wsgi_client(keys: IssuedKeys, base_url: str = "http://testserver") -> SecureApiClient:
    """The client over WSGI in this process (Django's own handler, as gunicorn runs it)."""
    from django.core.wsgi import get_wsgi_application

    transport = httpx.WSGITransport(app=get_wsgi_application())
    return SecureApiClient(base_url, app_id=keys.app_id, app_key=keys.app_key, data_key=keys.data_key,
                           http=httpx.Client(transport=transport, timeout=30))


@pytest.fixture(autouse=True)
def _keep_the_test_connection(keep_the_test_connection: None) -> None:
    """Every secure API test (tests/conftest.py's fixture)."""


@pytest.fixture
def merchant(db, shipped_defaults):  # type: ignore[no-untyped-def]
    return MerchantFactory(currency="EUR", allowed_ips=[])


@pytest.fixture
def keys(merchant) -> IssuedKeys:  # type: ignore[no-untyped-def]
    return api_keys_issue(merchant=merchant)


@pytest.fixture
def api(keys) -> Iterator[SecureApiClient]:  # type: ignore[no-untyped-def]
    client = wsgi_client(keys)
    yield client
    client.close()


def card_body(number: str = HAPPY_CARD, **extra):  # type: ignore[no-untyped-def]
    from django.utils import timezone

    card = {"number": number, "expMonth": 12, "expYear": timezone.now().year + 3, "holderName": "Ada Lovelace"}
    card.update(extra)
    return {"paymentType": "CreditCard", "card": card}


@pytest.fixture
def account(api):  # type: ignore[no-untyped-def]
    return api.post("/account", {"externalID": "cust-1", "name": "Ada", "email": "ada@example.com"}).data


@pytest.fixture
def card(api, account):  # type: ignore[no-untyped-def]
    return api.post(f"/account/{account['uuid']}/paymentinfo", card_body()).data


def charge_body(card, order: str = "order-1", amount: object = 10, **extra):  # type: ignore[no-untyped-def]
    body = {"orderID": order, "applicationId": "ABC", "amount": amount, "currencyCode": "EUR",
            "ipAddr": "1.1.1.1", "paymentInfoID": card["paymentInfoID"]}
    body.update(extra)
    return body
