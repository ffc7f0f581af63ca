"""esipay behind a reverse proxy: the merchant's registered address is checked against
the caller's real address (TRUSTED_PROXIES, X-Forwarded-For read from the right only
when the direct peer is a trusted proxy); a forged header changes nothing."""
from __future__ import annotations

import pytest
from django.test import Client

from payments.models import Refund, Transaction
from tests.factories import MerchantFactory

from .test_cardpay import FUTURE

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.5"
MERCHANT_SERVER = "203.0.113.7"
SOMEONE_ELSE = "198.51.100.9"


@pytest.fixture
def shop(db, return_url, shipped_defaults):  # type: ignore[no-untyped-def]
    return MerchantFactory(allowed_ips=[MERCHANT_SERVER], callback_url=return_url.url + "esipay/return")


def pay(shop, *, peer: str, forwarded: str | None = None, cid: str = "order-1", method: str = "get"):  # type: ignore[no-untyped-def]
    headers = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded
    url = f"/cardpay/{shop.uuid}/{cid}/4242424242424242/12/{FUTURE}/12.50"
    return getattr(Client(), method)(url, **headers)


def test_without_trusted_proxies_a_forwarded_header_is_ignored(shop, settings, return_url) -> None:  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXIES = []
    response = pay(shop, peer=SOMEONE_ELSE, forwarded=MERCHANT_SERVER)
    assert response.status_code == 403 and response.json()["code"] == "forbidden_address"
    assert not Transaction.objects.exists() and not return_url.received
    assert pay(shop, peer=MERCHANT_SERVER, forwarded=SOMEONE_ELSE).status_code == 200  # nor does it lock one out


@pytest.mark.parametrize("method", ["get", "post"])
def test_through_a_trusted_proxy_the_forwarded_address_is_checked(shop, settings, method) -> None:  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXIES = [PROXY]
    response = pay(shop, peer=PROXY, forwarded=MERCHANT_SERVER, method=method)
    assert response.status_code == 200, response.json()
    assert Transaction.objects.get(pk=response.json()["transaction"]).merchant_reference == "order-1"


def test_through_a_chain_of_trusted_proxies(shop, settings) -> None:  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXIES = ["10.0.0.0/24", "192.168.0.0/16"]
    response = pay(shop, peer=PROXY, forwarded=f"{MERCHANT_SERVER}, 192.168.4.4, 10.0.0.9")
    assert response.status_code == 200, response.json()


def test_a_caller_cannot_forge_the_merchants_address_through_the_proxy(shop, settings, return_url) -> None:  # type: ignore[no-untyped-def]
    """The proxy appends the real peer after whatever the caller sent."""
    settings.TRUSTED_PROXIES = [PROXY]
    response = pay(shop, peer=PROXY, forwarded=f"{MERCHANT_SERVER}, {SOMEONE_ELSE}")
    assert response.status_code == 403 and response.json()["code"] == "forbidden_address"
    assert not Transaction.objects.exists() and not return_url.received


def test_an_untrusted_peer_with_the_header_changes_nothing(shop, settings) -> None:  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXIES = [PROXY]
    assert pay(shop, peer=SOMEONE_ELSE, forwarded=MERCHANT_SERVER).status_code == 403
    assert pay(shop, peer=MERCHANT_SERVER, forwarded=SOMEONE_ELSE, cid="direct").status_code == 200


def test_the_proxys_own_address_opens_nothing(db, return_url, shipped_defaults, settings) -> None:  # type: ignore[no-untyped-def]
    """A merchant registered with the proxy's address is not reachable by everyone behind it."""
    settings.TRUSTED_PROXIES = [PROXY]
    shop = MerchantFactory(allowed_ips=[PROXY], callback_url=return_url.url + "esipay/return")
    assert pay(shop, peer=PROXY, forwarded=SOMEONE_ELSE).status_code == 403


def test_a_malformed_forwarded_entry_is_refused_not_guessed(shop, settings) -> None:  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXIES = [PROXY]
    assert pay(shop, peer=PROXY, forwarded=f"{MERCHANT_SERVER}, unknown").status_code == 403


def test_refunds_through_a_trusted_proxy(shop, settings) -> None:  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXIES = [PROXY]
    paid = pay(shop, peer=PROXY, forwarded=MERCHANT_SERVER).json()["transaction"]
    forged = Client().get(f"/cardpay/{shop.uuid}/{paid}/2.50", REMOTE_ADDR=SOMEONE_ELSE,
                          HTTP_X_FORWARDED_FOR=MERCHANT_SERVER)
    assert forged.status_code == 403 and not Refund.objects.exists()
    accepted = Client().get(f"/cardpay/{shop.uuid}/{paid}/2.50", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=MERCHANT_SERVER)
    assert accepted.status_code == 200 and accepted.json()["status"] == "pending"
