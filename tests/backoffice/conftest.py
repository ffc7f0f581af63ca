"""The back office driven in a real headless Chromium (Playwright's sync API).

Browser tests skip only when Debian's ``chromium`` is not installed and
``GATEWAY_REQUIRE_BROWSER`` is not ``1``; with ``GATEWAY_REQUIRE_BROWSER=1``
(CI) a missing browser is a failure, never a silent skip.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
STAFF_USERNAME = "staff"
STAFF_PASSWORD = "correct-horse-battery-staple-42"

# Playwright's sync API runs an asyncio event loop in the test thread, so
# Django would refuse the tests' own (synchronous) database access with
# SynchronousOnlyOperation. The tests do want that access.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)"
    if os.environ.get("GATEWAY_REQUIRE_BROWSER") == "1":
        pytest.fail(f"GATEWAY_REQUIRE_BROWSER=1 but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless Chromium per test module."""
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, live_server) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A fresh browser context (no cookies) and page; ``page.base_url`` is the live server."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def roles(transactional_db):  # type: ignore[no-untyped-def]
    """The three role groups (made by their migration; after a transactional
    test's flush, again by the post_migrate sync the flush triggers)."""
    from django.contrib.auth.models import Group

    from backoffice.roles import ROLE_NAMES

    groups = {group.name: group for group in Group.objects.filter(name__in=ROLE_NAMES)}
    assert set(groups) == set(ROLE_NAMES)
    return groups


ROLE_PASSWORD = "role-password-not-for-production-7"


def make_staff(username: str, *, role: str | None = None, superuser: bool = False):  # type: ignore[no-untyped-def]
    """A staff account with one role (a group made by the roles migration), or a superuser."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    model = get_user_model()
    if superuser:
        return model.objects.create_superuser(username, f"{username}@example.com", ROLE_PASSWORD)
    user = model.objects.create_user(username, f"{username}@example.com", ROLE_PASSWORD, is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def staff_user(transactional_db):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser(STAFF_USERNAME, "staff@example.com", STAFF_PASSWORD)


def log_in(page, username: str = STAFF_USERNAME, password: str = STAFF_PASSWORD) -> None:  # type: ignore[no-untyped-def]
    page.goto("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


@pytest.fixture
def staff_page(page, staff_user):  # type: ignore[no-untyped-def]
    """A page logged into the back office as a staff superuser."""
    log_in(page)
    page.wait_for_url("**/admin/")
    return page


@pytest.fixture
def gateway_data(transactional_db, roles):  # type: ignore[no-untyped-def]
    """One of everything the back office shows, made through the real services:
    a merchant with a terminal and a webhook endpoint, a captured and a
    declined sale, an authorization, a refund, events with deliveries, bans
    (a card, a BIN) and limits. ``pans`` are the full card numbers used, and
    ``hidden`` every value no page may show (fingerprints, digests, sealed
    and clear secrets)."""
    from decimal import Decimal
    from types import SimpleNamespace

    from payments import outbox, services
    from payments.errors import Declined
    from payments.models import Ban, Transaction
    from payments.states import BanKind, TransactionStatus
    from tests.factories import CapturedTransactionFactory, CardLimitFactory, TerminalFactory

    from .helpers import sale

    CardLimitFactory(kind="VISA", currency="EUR", max_amount=Decimal("2500.00"))
    CardLimitFactory(kind="MASTER", currency="EUR", max_amount=Decimal("3000.00"))
    terminal = TerminalFactory(merchant__name="Corner Bakery", label="Till 1", terminal_id="T7F3A91C2B4E")
    merchant = terminal.merchant
    endpoint, endpoint_secret = outbox.webhook_endpoint_create(merchant_pk=merchant.pk, url="https://bakery.example/h")
    captured = sale(terminal, card_number="4242424242424242", pin="4821", amount="40.00")
    refunded = sale(terminal, card_number="5105105105105100", pin="4821", amount="30.00")
    services.refund_request(transaction_id=refunded.pk, merchant_pk=merchant.pk, amount="10.00")
    with pytest.raises(Declined) as declined:
        sale(terminal, card_number="4000000000000002", pin="4821", amount="12.00")
    authorized = CapturedTransactionFactory(
        merchant=merchant, status=TransactionStatus.AUTHORIZED, captured_amount=Decimal("0"), amount=Decimal("25.00"),
        authorized_amount=Decimal("25.00"), card_bin="400000", card_last4="9995", card_fingerprint="f" * 64,
        acquirer_reference="sbx_auth",
    )
    card_ban, _ = services.ban_add(kind=BanKind.CARD, value="4000056655665556", reason="stolen")
    services.ban_add(kind=BanKind.BIN, value="411111", reason="compromised range")
    pans = ["4242424242424242", "5105105105105100", "4000000000000002", "4000056655665556"]
    fingerprints = [t.card_fingerprint for t in Transaction.objects.exclude(card_fingerprint="")]
    hidden = [
        terminal.secret, terminal.secret_digest, endpoint_secret, endpoint.secret_sealed, card_ban.key,
        *fingerprints, *Ban.objects.filter(kind=BanKind.PIN).values_list("key", flat=True),
    ]
    return SimpleNamespace(
        merchant=merchant, terminal=terminal, endpoint=endpoint, endpoint_secret=endpoint_secret,
        captured=captured, refunded=refunded, declined=Transaction.objects.get(pk=declined.value.transaction_id),
        authorized=authorized, card_ban=card_ban, pans=pans, hidden=[value for value in hidden if value],
    )
