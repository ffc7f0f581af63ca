"""``create_merchant`` prints app_id, app_key and data_key once (operations.md), and they work."""
from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from merchants.models import ApiKeyPair, Merchant

from .conftest import wsgi_client

pytestmark = pytest.mark.django_db


def test_create_merchant_prints_api_keys_that_work() -> None:
    out = io.StringIO()
    call_command("create_merchant", "--name", "Keyed Shop", "--currency", "gbp", stdout=out)
    printed = json.loads(out.getvalue())  # one JSON object, nothing else
    assert set(printed) == {"uuid", "name", "app_id", "app_key", "data_key", "set_transport_id", "set_secret"}
    merchant = Merchant.objects.get(uuid=printed["uuid"])
    assert merchant.app_id == printed["app_id"] and merchant.currency == "GBP"
    pair = ApiKeyPair.objects.get(merchant=merchant)
    assert printed["app_key"] not in pair.app_key_sealed and printed["data_key"] not in pair.data_key_sealed

    from merchants.credentials import IssuedKeys

    api = wsgi_client(IssuedKeys(printed["app_id"], printed["app_key"], printed["data_key"]))
    assert api.post("/account", {"name": "first customer"}).status == 200
