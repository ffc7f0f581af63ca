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
