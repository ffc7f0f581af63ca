"""Each staff role, in the browser: every page and action is allowed or refused
as docs/backoffice.md's table says, by direct URLs and crafted POSTs too
(not only hidden buttons), and no page shows more of a card than its mask."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from backoffice.models import AuditEntry, ShownOnceSecret
from merchants.models import Merchant
from payments import outbox
from payments.models import Ban, CardLimit, Event, Refund, Transaction, WebhookEndpoint
from payments.states import TransactionStatus
from terminals.models import Terminal
from terminals.services import terminal_authenticate

from .conftest import ROLE_PASSWORD, log_in, make_staff
from .helpers import post_action, post_form

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

GATEWAY_LISTS = {
    "/admin/merchants/merchant/", "/admin/terminals/terminal/", "/admin/payments/transaction/",
    "/admin/payments/token/", "/admin/payments/refund/", "/admin/payments/ban/", "/admin/payments/cardlimit/",
    "/admin/payments/webhookendpoint/", "/admin/payments/event/", "/admin/backoffice/auditentry/",
    "/admin/iotp/iotppayment/", "/admin/iotp/iotpmerchantbrands/",
    "/admin/secure_api/merchantapiaccess/", "/admin/secure_api/apicall/",
    "/admin/setgateway/setsettings/", "/admin/setgateway/liveconnection/", "/admin/setgateway/diagnosticlog/",
    "/admin/setgateway/setexchange/",
}
STAFF_LISTS = {"/admin/auth/user/", "/admin/auth/group/"}
_MASK = re.compile(r"(\d*)\*+(\d*)")
_DIGITS = re.compile(r"\d{7,}")


def assert_no_card_beyond_the_mask(text: str, data) -> None:  # type: ignore[no-untyped-def]
    """No full number, no 7 digits of one in a row, no mask with more than
    6 + 4 digits, and none of the hidden values (fingerprints, digests, secrets)."""
    for pan in data.pans:
        assert pan not in text
    # Numbers with a long run of one digit (4000000000000002) would match any
    # zeros on a page: the run check uses the others, the full-number check all.
    distinctive = [pan for pan in data.pans if not re.search(r"(\d)\1{4}", pan)]
    for match in _DIGITS.finditer(text):
        context = text[max(0, match.start() - 60):match.end() + 20]
        assert not any(match.group() in pan for pan in distinctive), f"part of a card number: {context!r}"
    for head, tail in _MASK.findall(text):
        assert len(head) <= 6 and len(tail) <= 4, f"mask {head}…{tail} shows too much"
    for value in data.hidden:
        assert value not in text, "a fingerprint, digest or secret is on the page"


def log_in_as(page, username: str) -> None:  # type: ignore[no-untyped-def]
    log_in(page, username, ROLE_PASSWORD)
    page.wait_for_url("**/admin/")


def index_lists(page) -> set[str]:  # type: ignore[no-untyped-def]
    page.goto("/admin/")
    hrefs = page.locator("#content-main a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    return {href for href in hrefs if re.fullmatch(r"/admin/\w+/\w+/", href or "")}


def crawl(page, data) -> list[str]:  # type: ignore[no-untyped-def]
    """Every list the index offers and up to three objects of each: all open
    (200), none shows card data beyond the mask. Returns the pages seen."""
    seen = []
    for changelist in sorted(index_lists(page)):
        response = page.goto(changelist)
        assert response.status == 200, changelist
        assert_no_card_beyond_the_mask(page.content(), data)
        seen.append(changelist)
        links = page.locator("#result_list tbody tr th a, #result_list tbody tr td.field-id a")
        hrefs = links.evaluate_all("links => links.map(a => a.getAttribute('href'))")[:3]
        for href in hrefs:
            response = page.goto(href)
            assert response.status == 200, href
            assert_no_card_beyond_the_mask(page.content(), data)
            seen.append(href)
    return seen


def status_of(page, url: str) -> int:  # type: ignore[no-untyped-def]
    return page.request.get(url, max_redirects=0).status


def _pk_path(model, pk: int, suffix: str = "change") -> str:  # type: ignore[no-untyped-def]
    return f"/admin/{model._meta.app_label}/{model._meta.model_name}/{pk}/{suffix}/"


# --- viewer ------------------------------------------------------------------------------


def test_a_viewer_reads_every_page_and_can_change_nothing(page, gateway_data):  # type: ignore[no-untyped-def]
    data = gateway_data
    make_staff("vera", role="viewer")
    log_in_as(page, "vera")

    assert index_lists(page) == GATEWAY_LISTS  # everything of the gateway, not staff accounts
    seen = crawl(page, data)
    assert len(seen) > len(GATEWAY_LISTS) + 10
    for changelist in GATEWAY_LISTS:
        page.goto(changelist)
        expect(page.locator(".object-tools .addlink")).to_have_count(0)
        expect(page.locator("select[name=action]")).to_have_count(0)  # no action at all
    for obj in (data.merchant, data.terminal, data.endpoint, data.captured, data.authorized, data.card_ban):
        page.goto(_pk_path(type(obj), obj.pk))
        expect(page.locator("input[type=submit][name=_save]")).to_have_count(0)
        expect(page.locator("a.deletelink")).to_have_count(0)
        expect(page.locator(".refund-link, .void-link, .resend-event-button")).to_have_count(0)

    # Direct URLs: adding, deleting, staff accounts, refund and void pages.
    for url in ("/admin/merchants/merchant/add/", "/admin/terminals/terminal/add/", "/admin/payments/ban/add/",
                "/admin/payments/webhookendpoint/add/", "/admin/payments/cardlimit/add/", "/admin/auth/user/",
                "/admin/auth/group/", _pk_path(Ban, data.card_ban.pk, "delete"),
                _pk_path(Transaction, data.captured.pk, "refund"), _pk_path(Transaction, data.authorized.pk, "void")):
        assert status_of(page, url) == 403, url

    # Crafted POSTs: every one refused, nothing changed.
    terminal, endpoint = data.terminal, data.endpoint
    assert post_form(page, _pk_path(Merchant, data.merchant.pk), {"name": "Hacked", "currency": "EUR"}).status == 403
    assert post_form(page, _pk_path(Terminal, terminal.pk), {"label": "Hacked", "is_active": "on"}).status == 403
    assert post_form(page, _pk_path(Ban, data.card_ban.pk, "delete"), {"post": "yes"}).status == 403
    assert post_form(page, _pk_path(Transaction, data.captured.pk, "refund"), {"amount": "1.00"}).status == 403
    assert post_form(page, _pk_path(Transaction, data.authorized.pk, "void"), {}).status == 403
    event = Event.objects.filter(transaction=data.captured).first()
    assert post_form(page, _pk_path(Event, event.pk, "resend"), {}).status == 403
    limit = CardLimit.objects.get(kind="VISA", currency="EUR")
    assert post_form(page, "/admin/payments/cardlimit/", {
        "form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "form-0-id": str(limit.pk),
        "form-0-max_amount": "1.00", "_save": "Save",
    }).status == 403
    for action in ("rotate_secret", "disable", "enable"):
        post_action(page, "/admin/terminals/terminal/", action, [terminal.pk])
    post_action(page, "/admin/payments/webhookendpoint/", "rotate_secret", [endpoint.pk])
    post_action(page, "/admin/payments/transaction/", "refund", [data.captured.pk])

    terminal.refresh_from_db()
    assert terminal.is_active and terminal.label == "Till 1"
    assert terminal_authenticate(terminal_id=terminal.terminal_id, secret=data.terminal.secret, peer_ip="127.0.0.1")
    endpoint.refresh_from_db()
    assert outbox.endpoint_secret(endpoint) == data.endpoint_secret
    assert Merchant.objects.get(pk=data.merchant.pk).name == "Corner Bakery"
    assert Ban.objects.filter(pk=data.card_ban.pk).exists()
    assert CardLimit.objects.get(kind="VISA", currency="EUR").max_amount == Decimal("2500.00")
    assert Refund.objects.count() == 1 and Transaction.objects.get(pk=data.authorized.pk).status == "authorized"
    assert not ShownOnceSecret.objects.exists() and not AuditEntry.objects.exists()


# --- operator ----------------------------------------------------------------------------


def test_an_operator_refunds_a_part_then_the_rest_and_a_repeat_refunds_nothing(page, gateway_data):  # type: ignore[no-untyped-def]
    data = gateway_data
    make_staff("olga", role="operator")
    log_in_as(page, "olga")
    txn = data.captured
    page.goto(_pk_path(Transaction, txn.pk))
    page.locator(".refund-link").click()
    expect(page.locator(".refundable-amount")).to_have_text("40.00 EUR")
    expect(page.locator(".summary-card")).to_have_text("424242******4242")

    # An amount over what remains: the core's error, as a message; nothing refunded.
    page.locator("#id_amount").fill("40.01")
    page.get_by_role("button", name="Refund").click()
    expect(page.locator(".messagelist .error")).to_have_text("Refund refused: Amount exceeds what remains (40.00).")
    page.locator("#id_amount").fill("12.505")
    page.get_by_role("button", name="Refund").click()
    expect(page.locator(".messagelist .error")).to_contain_text("Refund refused:")
    assert not Refund.objects.filter(transaction=txn).exists()

    page.locator("#id_amount").fill("15.00")
    reference = page.locator("input[name=reference]").get_attribute("value")
    with page.expect_response(lambda response: response.request.method == "POST") as posted:
        page.get_by_role("button", name="Refund").click()
    assert posted.value.status == 302  # post/redirect/get: back to the transaction
    expect(page.locator(".messagelist .success")).to_contain_text("of 15.00 EUR accepted")
    page.reload()  # F5 on the transaction's page: a GET, refunds nothing
    # The same form posted again (a double click, a resubmission): the same refund.
    post_form(page, _pk_path(Transaction, txn.pk, "refund"), {"amount": "15.00", "reference": reference})
    txn.refresh_from_db()
    assert (txn.status, txn.refunded_amount) == (TransactionStatus.PARTIALLY_REFUNDED, Decimal("15.00"))
    assert Refund.objects.filter(transaction=txn).count() == 1

    page.goto(_pk_path(Transaction, txn.pk, "refund"))
    expect(page.locator(".refundable-amount")).to_have_text("25.00 EUR")
    page.get_by_role("button", name="Refund").click()  # empty amount: all that remains
    expect(page.locator(".messagelist .success")).to_contain_text("of 25.00 EUR accepted")
    txn.refresh_from_db()
    assert (txn.status, txn.refunded_amount) == (TransactionStatus.REFUNDED, Decimal("40.00"))
    expect(page.locator(".refund-link")).to_have_count(0)  # nothing left to refund

    entries = AuditEntry.objects.filter(action="refund", object_id=str(txn.pk)).order_by("at", "id")
    assert [entry.actor_username for entry in entries] == ["olga", "olga"]
    assert entries[0].changes == [
        {"field": "status", "before": "captured", "after": "partially_refunded"},
        {"field": "refunded_amount", "before": "0.00", "after": "15.00"},
    ]


def test_an_operator_voids_an_authorization_and_a_second_void_is_refused(page, gateway_data):  # type: ignore[no-untyped-def]
    data = gateway_data
    make_staff("olga", role="operator")
    log_in_as(page, "olga")
    page.goto(_pk_path(Transaction, data.captured.pk))
    expect(page.locator(".void-link")).to_have_count(0)  # captured: nothing to void
    page.goto("/admin/payments/transaction/")
    page.locator(f"input.action-select[value='{data.authorized.pk}']").check()
    page.locator("select[name=action]").select_option("void")
    page.get_by_role("button", name="Go").click()
    expect(page.locator(".summary-status")).to_have_text("Authorized (not captured)")
    page.get_by_role("button", name="Void the authorization").click()
    expect(page.locator(".messagelist .success")).to_contain_text("voided")
    assert Transaction.objects.get(pk=data.authorized.pk).status == TransactionStatus.VOIDED
    assert Event.objects.filter(transaction=data.authorized, type="payment.cancelled").count() == 1

    response = post_form(page, _pk_path(Transaction, data.authorized.pk, "void"), {})
    assert response.status == 302
    page.goto(response.headers["location"])
    expect(page.locator(".messagelist .error")).to_have_text("Void refused: Transaction is voided.")
    assert Event.objects.filter(transaction=data.authorized, type="payment.cancelled").count() == 1
    outcomes = list(AuditEntry.objects.filter(action="void").order_by("id").values_list("message", flat=True))
    assert outcomes == ["authorization voided", "void failed: Transaction is voided"]


def test_an_operator_resends_events_and_switches_terminals_but_touches_no_credential(page, gateway_data):  # type: ignore[no-untyped-def]
    data = gateway_data
    terminal, endpoint = data.terminal, data.endpoint
    make_staff("olga", role="operator")
    log_in_as(page, "olga")
    assert index_lists(page) == GATEWAY_LISTS

    event = Event.objects.filter(transaction=data.captured).first()
    page.goto(_pk_path(Event, event.pk))
    page.get_by_role("button", name="Resend").click()
    expect(page.locator(".messagelist .success")).to_contain_text("queued for 1 endpoint(s)")

    page.goto("/admin/terminals/terminal/")
    options = page.locator("select[name=action] option").evaluate_all("options => options.map(o => o.value)")
    assert set(options) == {"", "enable", "disable"}  # no rotation, no deletion
    page.locator(f"input.action-select[value='{terminal.pk}']").check()
    page.locator("select[name=action]").select_option("disable")
    page.get_by_role("button", name="Go").click()
    expect(page.locator(".messagelist .info")).to_contain_text("1 terminal(s) disabled")
    assert not Terminal.objects.get(pk=terminal.pk).is_active
    post_action(page, "/admin/terminals/terminal/", "enable", [terminal.pk])
    assert Terminal.objects.get(pk=terminal.pk).is_active

    # Credentials and configuration: refused by URL and by POST.
    post_action(page, "/admin/terminals/terminal/", "rotate_secret", [terminal.pk])
    post_action(page, "/admin/payments/webhookendpoint/", "rotate_secret", [endpoint.pk])
    assert terminal_authenticate(terminal_id=terminal.terminal_id, secret=terminal.secret, peer_ip="127.0.0.1")
    endpoint.refresh_from_db()
    assert outbox.endpoint_secret(endpoint) == data.endpoint_secret
    assert not ShownOnceSecret.objects.exists()
    for url in ("/admin/terminals/terminal/add/", "/admin/payments/webhookendpoint/add/", "/admin/payments/ban/add/",
                "/admin/merchants/merchant/add/", "/admin/auth/user/", "/admin/auth/group/"):
        assert status_of(page, url) == 403, url
    assert post_form(page, _pk_path(Terminal, terminal.pk), {"label": "x", "is_active": "on"}).status == 403
    assert post_form(page, _pk_path(Merchant, data.merchant.pk), {"name": "x", "currency": "EUR"}).status == 403
    assert post_form(page, _pk_path(WebhookEndpoint, endpoint.pk), {"url": "https://evil.example/"}).status == 403
    page.goto(_pk_path(Terminal, terminal.pk))
    expect(page.locator("input[type=submit][name=_save]")).to_have_count(0)

    assert set(AuditEntry.objects.values_list("action", flat=True)) == {"resend", "disable", "enable"}
    crawl(page, data)


# --- administrator -----------------------------------------------------------------------


def test_an_administrator_manages_credentials_merchants_bans_limits_and_staff(page, gateway_data):  # type: ignore[no-untyped-def]
    data = gateway_data
    make_staff("ada", role="administrator")
    vera = make_staff("vera", role="viewer")
    root = make_staff("root", superuser=True)
    log_in_as(page, "ada")
    assert index_lists(page) == GATEWAY_LISTS | STAFF_LISTS

    page.goto("/admin/terminals/terminal/")
    options = page.locator("select[name=action] option").evaluate_all("options => options.map(o => o.value)")
    assert set(options) == {"", "enable", "disable", "rotate_secret"}
    page.locator(f"input.action-select[value='{data.terminal.pk}']").check()
    page.locator("select[name=action]").select_option("rotate_secret")
    page.get_by_role("button", name="Go").click()
    secret = page.locator(".terminal-secret").inner_text()
    assert terminal_authenticate(terminal_id=data.terminal.terminal_id, secret=secret, peer_ip="127.0.0.1")

    page.goto(f"/admin/terminals/terminal/add/?merchant={data.merchant.pk}")
    page.locator("#id_label").fill("Till 2")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".terminal-secret")).to_be_visible()
    page.goto("/admin/payments/ban/add/")
    page.locator("#id_kind").select_option("bin")
    page.locator("#id_value").fill("510510")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist .success")).to_contain_text("510510")
    page.goto(_pk_path(CardLimit, CardLimit.objects.get(kind="VISA", currency="EUR").pk))
    page.locator("#id_max_amount").fill("2000.00")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist .success")).to_be_visible()
    assert CardLimit.objects.get(kind="VISA", currency="EUR").max_amount == Decimal("2000.00")

    # A role change: the viewer becomes an operator.
    page.goto(_pk_path(get_user_model(), vera.pk))
    page.locator("#id_groups_to option", has_text="viewer").dblclick()
    page.locator("#id_groups_from option", has_text="operator").dblclick()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist .success")).to_be_visible()
    assert list(vera.groups.values_list("name", flat=True)) == ["operator"]
    role_change = AuditEntry.objects.get(action="change", object_type="auth.user", object_id=str(vera.pk))
    assert role_change.actor_username == "ada"
    assert {"field": "groups", "before": ["viewer"], "after": ["operator"]} in role_change.changes

    # The roles themselves, superusers, and the audit log are beyond an administrator.
    operator = Group.objects.get(name="operator")
    page.goto(_pk_path(Group, operator.pk))
    expect(page.locator("input[type=submit][name=_save]")).to_have_count(0)
    assert post_form(page, _pk_path(Group, operator.pk), {"name": "operator", "permissions": "1"}).status == 403
    assert post_form(page, _pk_path(Group, operator.pk, "delete"), {"post": "yes"}).status == 403
    assert post_form(page, _pk_path(get_user_model(), root.pk), {"username": "root2"}).status == 403
    page.goto(_pk_path(get_user_model(), vera.pk))
    expect(page.locator("#id_is_superuser")).to_have_count(0)  # shown, not editable
    entry = AuditEntry.objects.first()
    assert status_of(page, "/admin/backoffice/auditentry/add/") == 403
    assert post_form(page, _pk_path(AuditEntry, entry.pk), {"message": "x"}).status == 403
    assert post_form(page, _pk_path(AuditEntry, entry.pk, "delete"), {"post": "yes"}).status == 403
    assert AuditEntry.objects.get(pk=entry.pk).message == entry.message
    assert operator.permissions.count() > 0 and get_user_model().objects.get(pk=root.pk).username == "root"
    crawl(page, data)


def test_a_user_without_a_role_sees_nothing(page, gateway_data):  # type: ignore[no-untyped-def]
    make_staff("nobody")
    log_in_as(page, "nobody")
    assert index_lists(page) == set()
    for url in GATEWAY_LISTS | STAFF_LISTS:
        assert status_of(page, url) == 403, url
