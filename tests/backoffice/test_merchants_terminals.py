"""Staff log in, create merchants, add terminals (secret shown once), disable them."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from merchants.models import Merchant
from payments.errors import NotAuthorized
from terminals.models import Terminal
from terminals.services import terminal_authenticate
from tests.factories import MerchantFactory, TerminalFactory

from .conftest import STAFF_PASSWORD, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_staff_logs_in_and_a_wrong_password_is_refused(page, staff_user):  # type: ignore[no-untyped-def]
    log_in(page, password="not-" + STAFF_PASSWORD)
    expect(page.locator(".errornote")).to_contain_text("Please enter the correct username and password")

    log_in(page)
    page.wait_for_url("**/admin/")
    expect(page.locator("#site-name")).to_have_text("Payment gateway back office")
    expect(page.get_by_role("heading", name="Operations")).to_be_visible()
    for model in ("merchants/merchant", "terminals/terminal", "payments/transaction", "payments/token",
                  "payments/ban", "payments/cardlimit"):
        expect(page.locator(f"#content-main th a[href='/admin/{model}/']")).to_be_visible()


def test_staff_creates_a_merchant_with_server_addresses_one_per_line(staff_page):  # type: ignore[no-untyped-def]
    page = staff_page
    page.goto("/admin/merchants/merchant/add/")
    page.locator("#id_name").fill("Corner Bakery")
    page.locator("#id_currency").select_option("EUR")
    # One per line; an IPv4-mapped IPv6 address is stored as the IPv4 it maps.
    page.locator("#id_allowed_ips").fill("203.0.113.5\n2001:db8::1\n::ffff:198.51.100.7")
    page.locator("#id_callback_url").fill("https://bakery.example/payments/return")
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.locator(".messagelist .success")).to_contain_text("Corner Bakery")
    merchant = Merchant.objects.get(name="Corner Bakery")
    assert merchant.allowed_ips == ["203.0.113.5", "2001:db8::1", "198.51.100.7"]
    assert merchant.callback_url == "https://bakery.example/payments/return"
    assert merchant.currency == "EUR" and merchant.is_active

    page.goto(f"/admin/merchants/merchant/{merchant.pk}/change/")
    expect(page.locator("#id_allowed_ips")).to_have_value("203.0.113.5\n2001:db8::1\n198.51.100.7")
    expect(page.locator(".readonly").first).to_contain_text(str(merchant.uuid))


def test_a_bad_server_address_is_refused_with_a_message(staff_page):  # type: ignore[no-untyped-def]
    page = staff_page
    page.goto("/admin/merchants/merchant/add/")
    page.locator("#id_name").fill("Typo Shop")
    page.locator("#id_allowed_ips").fill("203.0.113.5\n203.0.113.300")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".errorlist")).to_contain_text("'203.0.113.300' is not an IP address.")
    assert not Merchant.objects.filter(name="Typo Shop").exists()


def test_staff_adds_a_terminal_and_sees_its_secret_once(staff_page):  # type: ignore[no-untyped-def]
    page = staff_page
    merchant = MerchantFactory(name="Corner Bakery")
    page.goto(f"/admin/merchants/merchant/{merchant.pk}/change/")
    page.get_by_role("link", name="Add a terminal").click()
    expect(page.locator("#id_merchant")).to_have_value(str(merchant.pk))  # preset from the merchant page
    page.locator("#id_label").fill("Till 1")
    with page.expect_response(lambda response: "/shown-once/" in response.url) as shown, \
            page.expect_response(lambda response: response.request.method == "POST") as posted:
        page.get_by_role("button", name="Save", exact=True).click()
    # Post/redirect/get: the POST answers a redirect, the page it leads to shows
    # the secret and is kept out of caches (tests/backoffice/test_shown_once.py: a reload).
    assert posted.value.status == 302
    assert shown.value.status == 200
    assert "no-store" in shown.value.headers["cache-control"]

    message = page.locator(".messagelist .warning")
    expect(message).to_contain_text("shown only once")
    terminal_id = page.locator(".terminal-credentials-message .terminal-id").inner_text()
    secret = page.locator(".terminal-credentials-message .terminal-secret").inner_text()
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", secret)
    terminal = Terminal.objects.get(terminal_id=terminal_id)
    assert terminal.merchant == merchant and terminal.label == "Till 1" and terminal.is_active
    assert secret not in terminal.secret_digest

    # The secret authenticates the terminal (and the terminal is now seen).
    identity = terminal_authenticate(terminal_id=terminal_id, secret=secret, peer_ip="127.0.0.1")
    assert identity.pk == terminal.pk and identity.merchant_name == "Corner Bakery"
    with pytest.raises(NotAuthorized):
        terminal_authenticate(terminal_id=terminal_id, secret=secret[:-1] + "!", peer_ip="127.0.0.1")

    # Never again: not on the terminal's page, not in the list, not left in a cookie.
    page.get_by_role("link", name=f"Terminal {terminal_id}").click()
    expect(page.locator(".field-terminal_id")).to_contain_text(terminal_id)
    expect(page.locator(".field-last_seen")).not_to_contain_text("never")
    expect(page.locator(".field-merchant .readonly")).to_have_text("Corner Bakery")  # never moves
    assert secret not in page.content()
    page.locator("#id_label").fill("Till 1 (by the door)")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist .success")).to_contain_text("Till 1 (by the door)")
    assert secret not in page.content()
    terminal.refresh_from_db()
    assert terminal.label == "Till 1 (by the door)" and terminal.merchant == merchant
    page.goto("/admin/terminals/terminal/")
    expect(page.locator("#result_list")).to_contain_text(terminal_id)
    assert secret not in page.content()
    assert all(secret not in cookie["value"] for cookie in page.context.cookies())


def test_staff_disables_a_terminal_with_the_action(staff_page):  # type: ignore[no-untyped-def]
    page = staff_page
    terminal = TerminalFactory(label="Till 7")
    other = TerminalFactory(label="Till 8")
    assert terminal_authenticate(terminal_id=terminal.terminal_id, secret=terminal.secret, peer_ip="127.0.0.1")

    page.goto("/admin/terminals/terminal/")
    page.locator(f"input.action-select[value='{terminal.pk}']").check()
    page.locator("select[name=action]").select_option("disable")
    page.get_by_role("button", name="Go").click()

    expect(page.locator(".messagelist .info")).to_contain_text("1 terminal(s) disabled")
    terminal.refresh_from_db()
    other.refresh_from_db()
    assert not terminal.is_active and other.is_active
    with pytest.raises(NotAuthorized):
        terminal_authenticate(terminal_id=terminal.terminal_id, secret=terminal.secret, peer_ip="127.0.0.1")

    # The list says so, and the "enabled" filter finds it.
    page.get_by_role("link", name="No", exact=True).click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(terminal.terminal_id)
    expect(rows.first.locator(".field-last_seen")).not_to_have_text("never")  # it was seen above


def test_rotating_a_secret_shows_the_new_one_once_and_the_old_one_stops_working(staff_page):  # type: ignore[no-untyped-def]
    page = staff_page
    terminal = TerminalFactory()
    page.goto("/admin/terminals/terminal/")
    row = page.locator("#result_list tbody tr", has=page.locator(f"input.action-select[value='{terminal.pk}']"))
    expect(row.locator(".field-last_seen")).to_have_text("never")
    row.locator("input.action-select").check()
    page.locator("select[name=action]").select_option("rotate_secret")
    page.get_by_role("button", name="Go").click()

    new_secret = page.locator(".terminal-credentials-message .terminal-secret").inner_text()
    assert new_secret != terminal.secret
    with pytest.raises(NotAuthorized):
        terminal_authenticate(terminal_id=terminal.terminal_id, secret=terminal.secret, peer_ip="127.0.0.1")
    assert terminal_authenticate(terminal_id=terminal.terminal_id, secret=new_secret, peer_ip="127.0.0.1")
    page.goto(f"/admin/terminals/terminal/{terminal.pk}/change/")
    assert new_secret not in page.content()
