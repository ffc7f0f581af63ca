"""Fixtures of the SET gateway's tests: merchants with SET settings, and requests."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from setgateway import payload
from setgateway.credentials import set_settings_create
from setgateway.payload import CurrencyAmount
from tests.factories import MerchantFactory

HAPPY_VISA = "4242424242424242"
HAPPY_MASTER = "5555555555554444"
DECLINED_CARD = "4000000000000002"
ACQUIRER_ERROR_CARD = "4000000000000119"
EXPIRY = "203012"


def eur(value: str) -> CurrencyAmount:
    return CurrencyAmount.of(Decimal(value), currency=978, exponent=2)


class SetMerchant:
    """A merchant with SET enabled; ``secret`` is its shared secret in clear."""

    def __init__(self, **settings: Any) -> None:
        addresses = settings.pop("allowed_ips", [])
        name = settings.pop("name", None)
        self.merchant = MerchantFactory(allowed_ips=addresses, **({"name": name} if name else {}))
        self.settings, issued = set_settings_create(merchant=self.merchant, **settings)
        self.transport_id = issued.transport_id
        self.secret = issued.secret

    @property
    def pk(self) -> int:
        return self.merchant.pk


@pytest.fixture
def set_merchant(db, shipped_defaults) -> SetMerchant:  # type: ignore[no-untyped-def]
    return SetMerchant(name="Corner Bookshop")


def handle(merchant: SetMerchant, message: payload.Message) -> payload.Message:
    from setgateway.services import set_request_handle

    return payload.decode(set_request_handle(merchant_pk=merchant.pk, body=payload.encode(message)))
