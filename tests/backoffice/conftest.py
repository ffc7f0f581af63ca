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


def _transactional(request) -> bool:  # type: ignore[no-untyped-def]
    marker = request.node.get_closest_marker("django_db")
    if marker is not None and marker.kwargs.get("transaction"):
        return True
    return bool({"transactional_db", "live_server"} & set(request.fixturenames))


@pytest.fixture(autouse=True)
def _audit_log_emptied_between_tests(request):  # type: ignore[no-untyped-def]
    """The audit log's triggers refuse DELETE, which is how a transactional
    test's database is emptied on SQLite (PostgreSQL's TRUNCATE does not fire
    them): drop them around the emptying, then guard the table again. Set
    up after the database fixture, so this runs before its flush."""
    if not _transactional(request):
        yield
        return
    request.getfixturevalue("transactional_db")
    yield
    from django.db import connection

    from backoffice import append_only

    if connection.vendor == "sqlite":
        append_only.uninstall(connection)
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {append_only.TABLE}")
        finally:
            append_only.install(connection)


@pytest.fixture
def roles(transactional_db):  # type: ignore[no-untyped-def]
    """The three role groups as their migration makes them (a transactional
    test's flush removed them): re-run the migration's own code."""
    from django.apps import apps
    from django.contrib.auth.models import Group

    from backoffice.roles import ROLE_NAMES, roles_sync

    roles_sync(apps)
    return {group.name: group for group in Group.objects.filter(name__in=ROLE_NAMES)}


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
