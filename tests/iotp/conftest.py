from __future__ import annotations

import pytest

from merchants.credentials import api_keys_issue
from tests.factories import MerchantFactory

from .support import IotpClient


@pytest.fixture
def merchant(db, shipped_defaults):  # type: ignore[no-untyped-def]
    return MerchantFactory(name="Demo Books", currency="EUR")


@pytest.fixture
def keys(merchant):  # type: ignore[no-untyped-def]
    return api_keys_issue(merchant=merchant)


@pytest.fixture
def core(keys) -> IotpClient:  # type: ignore[no-untyped-def]
    """The merchant's IOTP application core, calling POST /iotp."""
    return IotpClient(keys)
