"""Secrets are shown once after a redirect: a reload (F5) creates, rotates and shows nothing again.

The browser tests press F5 on the page that follows "Add terminal", "Rotate
the secret", "Add webhook endpoint" and "Rotate the signing secret"; the
others check backoffice.shown_once directly: sealed while it waits, bound to
its staff member and session, gone once read or expired.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory
from django.utils import timezone
from playwright.sync_api import expect

from backoffice import shown_once
from backoffice.models import AuditEntry, ShownOnceSecret
from payments import outbox
from payments.errors import NotAuthorized
from payments.models import WebhookEndpoint
from terminals.models import Terminal
from terminals.services import terminal_authenticate
from tests.factories import MerchantFactory, TerminalFactory

from .helpers import post_action

GONE = "These secrets were shown once and are not kept"


def _assert_reload_shows_nothing(page, secret: str) -> None:  # type: ignore[no-untyped-def]
    """F5 on the one-time page: a GET (not a re-POST), 410, no secret, no cache."""
    with page.expect_response(lambda response: "/shown-once/" in response.url) as reloaded:
        page.reload()
    assert reloaded.value.request.method == "GET"
    assert reloaded.value.status == 410
    assert "no-store" in reloaded.value.headers["cache-control"]
    expect(page.locator(".shown-once-gone")).to_contain_text(GONE)
    assert secret not in page.content()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_reloading_after_adding_a_terminal_creates_no_second_one_and_hides_the_secret(staff_page):  # type: ignore[no-untyped-def]
    page = staff_page
    merchant = MerchantFactory(name="Corner Bakery")
    page.goto(f"/admin/terminals/terminal/add/?merchant={merchant.pk}")
    page.locator("#id_label").fill("Till 1")
    page.get_by_role("button", name="Save", exact=True).click()
    secret = page.locator(".terminal-credentials-message .terminal-secret").inner_text()
    terminal = Terminal.objects.get(merchant=merchant)
    assert not ShownOnceSecret.objects.exists()  # deleted as it was shown

    _assert_reload_shows_nothing(page, secret)
    assert Terminal.objects.filter(merchant=merchant).count() == 1
    assert terminal_authenticate(terminal_id=terminal.terminal_id, secret=secret, peer_ip="127.0.0.1")
    # The audit log has the addition (never the secret nor its digest).
    entry = AuditEntry.objects.get(action="add", object_type="terminals.terminal")
    assert entry.object_id == str(terminal.pk) and entry.actor_username == "staff"
    terminal.refresh_from_db()
    for text in (secret, terminal.secret_digest):
        assert text not in str(entry.changes) and text not in entry.message


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_reloading_after_rotating_a_terminal_secret_does_not_rotate_it_again(staff_page):  # type: ignore[no-untyped-def]
    page = staff_page
    terminal = TerminalFactory()
    page.goto("/admin/terminals/terminal/")
    page.locator(f"input.action-select[value='{terminal.pk}']").check()
    page.locator("select[name=action]").select_option("rotate_secret")
    with page.expect_response(lambda response: response.request.method == "POST") as posted:
        page.get_by_role("button", name="Go").click()
    assert posted.value.status == 302
    new_secret = page.locator(".terminal-credentials-message .terminal-secret").inner_text()

    _assert_reload_shows_nothing(page, new_secret)
    # Still the secret just copied: the reload rotated nothing.
    assert terminal_authenticate(terminal_id=terminal.terminal_id, secret=new_secret, peer_ip="127.0.0.1")
    with pytest.raises(NotAuthorized):
        terminal_authenticate(terminal_id=terminal.terminal_id, secret=terminal.secret, peer_ip="127.0.0.1")
    assert AuditEntry.objects.filter(action="rotate_secret", object_id=str(terminal.pk)).count() == 1
    assert all(new_secret not in cookie["value"] for cookie in page.context.cookies())

    # Back to the list: the browser's history holds the GET, not the POST.
    page.go_back()
    assert terminal_authenticate(terminal_id=terminal.terminal_id, secret=new_secret, peer_ip="127.0.0.1")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_reloading_after_adding_or_rotating_a_webhook_endpoint_changes_nothing(staff_page):  # type: ignore[no-untyped-def]
    page = staff_page
    merchant = MerchantFactory()
    page.goto(f"/admin/payments/webhookendpoint/add/?merchant={merchant.pk}")
    page.locator("#id_url").fill("https://bakery.example/hooks")
    page.get_by_role("button", name="Save", exact=True).click()
    secret = page.locator(".webhook-secret-message .webhook-secret").inner_text()
    _assert_reload_shows_nothing(page, secret)
    endpoint = WebhookEndpoint.objects.get()
    assert outbox.endpoint_secret(endpoint) == secret

    page.goto("/admin/payments/webhookendpoint/")
    page.locator(f"input.action-select[value='{endpoint.pk}']").check()
    page.locator("select[name=action]").select_option("rotate_secret")
    page.get_by_role("button", name="Go").click()
    rotated = page.locator(".webhook-secret-message .webhook-secret").inner_text()
    assert rotated != secret
    _assert_reload_shows_nothing(page, rotated)
    endpoint.refresh_from_db()
    assert outbox.endpoint_secret(endpoint) == rotated
    assert WebhookEndpoint.objects.count() == 1


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_another_staff_member_cannot_open_the_one_time_page(staff_page, browser, live_server):  # type: ignore[no-untyped-def]
    from .conftest import ROLE_PASSWORD, log_in

    get_user_model().objects.create_superuser("second", "second@example.com", ROLE_PASSWORD)
    page = staff_page
    terminal = TerminalFactory()
    # The action's POST without following its redirect: the one-time page is not opened yet.
    posted = post_action(page, "/admin/terminals/terminal/", "rotate_secret", [terminal.pk])
    assert posted.status == 302
    url = posted.headers["location"]
    assert "/shown-once/" in url and ShownOnceSecret.objects.count() == 1

    other = browser.new_context(base_url=live_server.url)
    try:
        other_page = other.new_page()
        log_in(other_page, "second", ROLE_PASSWORD)
        other_page.wait_for_url("**/admin/")
        response = other_page.goto(url)
        assert response.status == 410
        assert "terminal-secret" not in other_page.content()
    finally:
        other.close()
    assert ShownOnceSecret.objects.count() == 1  # still waiting for its owner

    response = page.goto(url)
    assert response.status == 200
    secret = page.locator(".terminal-credentials-message .terminal-secret").inner_text()
    assert terminal_authenticate(terminal_id=terminal.terminal_id, secret=secret, peer_ip="127.0.0.1")


# --- backoffice.shown_once without a browser ---------------------------------------------


def _request(user, session_key: str | None = None):  # type: ignore[no-untyped-def]
    request = RequestFactory().get("/")
    request.user = user
    request.session = SessionStore(session_key)
    if session_key is None:
        request.session.create()
    return request


@pytest.mark.django_db
def test_a_stashed_secret_is_sealed_bound_to_its_owner_and_session_and_read_once():  # type: ignore[no-untyped-def]
    owner = get_user_model().objects.create_user("owner", is_staff=True)
    stranger = get_user_model().objects.create_user("stranger", is_staff=True)
    request = _request(owner)
    secret = "tsec_" + "Zq9" * 10
    handle = shown_once.stash(request, purpose="terminals.terminal", payload={"items": [{"secret": secret}]})

    row = ShownOnceSecret.objects.get(pk=handle)
    assert secret not in row.sealed and row.sealed.startswith("v1:")
    assert request.session.session_key not in row.session_digest
    assert timedelta(seconds=1) < row.expires_at - timezone.now() <= timedelta(seconds=300)

    assert shown_once.take(_request(stranger), purpose="terminals.terminal", handle=handle) is None
    assert shown_once.take(_request(owner), purpose="terminals.terminal", handle=handle) is None  # another session
    same_session = _request(owner, request.session.session_key)
    assert shown_once.take(same_session, purpose="payments.webhookendpoint", handle=handle) is None  # another page
    assert shown_once.take(same_session, purpose="terminals.terminal", handle="not-a-uuid") is None

    assert shown_once.take(same_session, purpose="terminals.terminal", handle=handle) == {"items": [{"secret": secret}]}
    assert shown_once.take(same_session, purpose="terminals.terminal", handle=handle) is None
    assert not ShownOnceSecret.objects.exists()


@pytest.mark.django_db
def test_an_expired_secret_is_never_shown_and_is_purged():  # type: ignore[no-untyped-def]
    owner = get_user_model().objects.create_user("owner", is_staff=True)
    request = _request(owner)
    handle = shown_once.stash(request, purpose="terminals.terminal", payload={"secret": "x" * 32})
    ShownOnceSecret.objects.filter(pk=handle).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert shown_once.take(request, purpose="terminals.terminal", handle=handle) is None
    assert not ShownOnceSecret.objects.exists()

    # An abandoned one (never viewed) goes with the next stash once expired.
    ShownOnceSecret.objects.all().delete()
    first = shown_once.stash(request, purpose="terminals.terminal", payload={})
    ShownOnceSecret.objects.filter(pk=first).update(expires_at=timezone.now() - timedelta(seconds=1))
    second = shown_once.stash(request, purpose="terminals.terminal", payload={})
    assert list(ShownOnceSecret.objects.values_list("pk", flat=True)) == [second]


@pytest.mark.django_db
def test_a_sealed_value_moved_to_another_row_does_not_open():  # type: ignore[no-untyped-def]
    owner = get_user_model().objects.create_user("owner", is_staff=True)
    request = _request(owner)
    first = shown_once.stash(request, purpose="terminals.terminal", payload={"secret": "first"})
    second = shown_once.stash(request, purpose="terminals.terminal", payload={"secret": "second"})
    ShownOnceSecret.objects.filter(pk=second).update(sealed=ShownOnceSecret.objects.get(pk=first).sealed)
    from payments.vault import VaultError

    with pytest.raises(VaultError):
        shown_once.take(request, purpose="terminals.terminal", handle=second)


@pytest.mark.django_db
def test_a_value_that_does_not_open_is_reported_as_gone_not_as_an_error(caplog):  # type: ignore[no-untyped-def]
    from django.contrib import admin

    owner = get_user_model().objects.create_superuser("owner", "owner@example.com", "x")
    request = _request(owner)
    handle = shown_once.stash(request, purpose="terminals.terminal", payload={"title": "t", "items": []})
    ShownOnceSecret.objects.filter(pk=handle).update(sealed="v1:00000000:AAAA")
    response = admin.site._registry[Terminal].shown_once_view(request, handle)
    response.render()
    assert response.status_code == 410 and GONE in response.content.decode()
    assert "could not be opened" in caplog.text
    assert not ShownOnceSecret.objects.exists()
