from __future__ import annotations

import pytest

from tests.factories import MerchantFactory
from tests.support.http_servers import merchant_server


@pytest.fixture
def return_url():  # type: ignore[no-untyped-def]
    """The merchant's return URL: a local server answering 200 unless told otherwise."""
    yield from merchant_server()


@pytest.fixture
def merchant(db, return_url, shipped_defaults):  # type: ignore[no-untyped-def]
    return MerchantFactory(allowed_ips=["127.0.0.1"], callback_url=return_url.url + "esipay/return")
