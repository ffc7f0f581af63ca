"""Merchants' SET settings: transport ids, the secret shown once and kept sealed,
the greeting each address gets, and what an Authentication message proves."""
from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from payments import vault
from setgateway import framing
from setgateway.credentials import (
    default_transport_id,
    set_authenticate,
    set_greeting_decision,
    set_secret,
    set_secret_rotate,
)
from setgateway.models import Authentication, SetSettings
from setgateway.session import CHALLENGE, REFUSE, GreetingDecision

from .conftest import SetMerchant

pytestmark = pytest.mark.django_db

GREETING = "+OK|gw SET gateway ready, connection c1|challenge123"


def respond(merchant: SetMerchant, greeting: str = GREETING, secret: str | None = None) -> str:
    return framing.authentication_response(greeting=greeting, transport_id=merchant.transport_id,
                                           secret=secret or merchant.secret)


def test_create_merchant_prints_the_set_credentials_once_and_seals_the_secret() -> None:
    out = StringIO()
    call_command("create_merchant", "--name", "Café Zürich & Co", stdout=out)
    data = json.loads(out.getvalue())
    assert data["set_transport_id"] == "cafe-zurich-co"
    row = SetSettings.objects.get(transport_id="cafe-zurich-co")
    assert row.enabled and row.authentication == Authentication.CHALLENGE
    assert set_secret(row) == data["set_secret"] and len(data["set_secret"]) >= 40
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_sealed FROM setgateway_setsettings")
        (stored,) = cursor.fetchone()
    assert data["set_secret"] not in stored and stored.startswith("v1:")


def test_transport_ids_are_unique_slugs() -> None:
    first = SetMerchant(name="Book Shop")
    second = SetMerchant(name="Book  Shop!")
    assert (first.transport_id, second.transport_id) == ("book-shop", "book-shop-2")
    assert default_transport_id("!!!") == "merchant"


def test_a_rotated_secret_replaces_the_old_one(db) -> None:  # type: ignore[no-untyped-def]
    merchant = SetMerchant(name="Rotating")
    old = merchant.secret
    issued = set_secret_rotate(settings_pk=merchant.settings.pk)
    assert issued.secret != old and issued.transport_id == merchant.transport_id
    assert set_authenticate(transport_id=merchant.transport_id, response=respond(merchant, secret=old),
                            greeting=GREETING, peer_ip="127.0.0.1") is None
    assert set_authenticate(transport_id=merchant.transport_id, response=respond(merchant, secret=issued.secret),
                            greeting=GREETING, peer_ip="127.0.0.1") is not None


def test_greetings_by_address(settings) -> None:  # type: ignore[no-untyped-def]
    address_only = SetMerchant(name="By Address", allowed_ips=["10.0.0.1"], authentication=Authentication.ADDRESS)
    SetMerchant(name="By Challenge", allowed_ips=["10.0.0.2"])
    SetMerchant(name="Shared A", allowed_ips=["10.0.0.3"], authentication=Authentication.ADDRESS)
    SetMerchant(name="Shared B", allowed_ips=["10.0.0.3"], authentication=Authentication.ADDRESS)
    SetMerchant(name="Disabled", allowed_ips=["10.0.0.4"], authentication=Authentication.ADDRESS, enabled=False)
    assert set_greeting_decision(peer_ip="10.0.0.1") == GreetingDecision(merchant_pk=address_only.pk, challenge=False)
    assert set_greeting_decision(peer_ip="::ffff:10.0.0.1").merchant_pk == address_only.pk
    assert set_greeting_decision(peer_ip="10.0.0.2") == CHALLENGE
    assert set_greeting_decision(peer_ip="10.0.0.3") == CHALLENGE  # two merchants: the challenge says which
    assert set_greeting_decision(peer_ip="10.0.0.4") == REFUSE
    assert set_greeting_decision(peer_ip="10.9.9.9") == REFUSE
    settings.SET_ACCEPT_UNKNOWN_ADDRESSES = True
    assert set_greeting_decision(peer_ip="10.9.9.9") == CHALLENGE


def test_a_merchant_that_is_not_active_is_refused() -> None:
    merchant = SetMerchant(name="Closed", allowed_ips=["10.0.0.1"], authentication=Authentication.ADDRESS)
    merchant.merchant.is_active = False
    merchant.merchant.save()
    assert set_greeting_decision(peer_ip="10.0.0.1") == REFUSE
    assert set_authenticate(transport_id=merchant.transport_id, response=respond(merchant), greeting=GREETING,
                            peer_ip="10.0.0.1") is None


def test_challenge_authentication() -> None:
    merchant = SetMerchant(name="Shop")
    ok = set_authenticate(transport_id="shop", response=respond(merchant), greeting=GREETING, peer_ip="192.0.2.7")
    assert ok is not None and (ok.merchant_pk, ok.transport_id) == (merchant.pk, "shop")
    for transport_id, response, greeting in [
        ("shop", respond(merchant, greeting=GREETING + "x"), GREETING),  # another greeting
        ("shop", respond(merchant, secret="guess"), GREETING),
        ("nobody", respond(merchant), GREETING),
        ("shop", "", GREETING),
    ]:
        assert set_authenticate(transport_id=transport_id, response=response, greeting=greeting,
                                peer_ip="192.0.2.7") is None


def test_registered_addresses_are_required_when_there_are_some() -> None:
    merchant = SetMerchant(name="Fixed", allowed_ips=["10.0.0.1"])
    assert set_authenticate(transport_id="fixed", response=respond(merchant), greeting=GREETING,
                            peer_ip="10.0.0.1") is not None
    assert set_authenticate(transport_id="fixed", response=respond(merchant), greeting=GREETING,
                            peer_ip="10.0.0.2") is None


def test_both_requires_addresses() -> None:
    merchant = SetMerchant(name="Both", authentication=Authentication.BOTH)
    assert set_authenticate(transport_id="both", response=respond(merchant), greeting=GREETING,
                            peer_ip="10.0.0.1") is None
    merchant.merchant.allowed_ips = ["10.0.0.1"]
    merchant.merchant.save()
    assert set_authenticate(transport_id="both", response=respond(merchant), greeting=GREETING,
                            peer_ip="10.0.0.1") is not None


def test_a_secret_sealed_under_another_key_fails_closed(settings) -> None:  # type: ignore[no-untyped-def]
    merchant = SetMerchant(name="Old Key")
    response = respond(merchant)
    settings.PAYMENTS_MASTER_KEY = "another-master-key-0123456789-0123456789"
    with pytest.raises(vault.VaultError):
        set_secret(SetSettings.objects.get(pk=merchant.settings.pk))
    assert set_authenticate(transport_id="old-key", response=response, greeting=GREETING,
                            peer_ip="127.0.0.1") is None
