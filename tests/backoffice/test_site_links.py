"""No dead ends: no "View site" link to a 404, and no Delete button where a
deletion can never succeed (merchants, terminals, webhook endpoints are
deactivated instead)."""
from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from backoffice.models import AuditEntry
from merchants.models import Merchant
from payments.errors import NotAuthorized
from terminals.models import Terminal
from terminals.services import terminal_authenticate

from .helpers import post_action, post_form

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_no_view_site_link_and_every_header_link_leads_somewhere(staff_page):  # type: ignore[no-untyped-def]
    page = staff_page
    page.goto("/admin/")
    expect(page.get_by_role("link", name="View site")).to_have_count(0)
    hrefs = page.locator("#header a, .breadcrumbs a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert hrefs  # the site name, "Change password" (logging out is a form)
    for href in hrefs:
        assert page.request.get(href).status == 200, href


def test_a_merchant_is_deactivated_not_deleted(staff_page, gateway_data):  # type: ignore[no-untyped-def]
    page, data = staff_page, gateway_data
    merchant, terminal = data.merchant, data.terminal
    page.goto(f"/admin/merchants/merchant/{merchant.pk}/change/")
    expect(page.locator("a.deletelink")).to_have_count(0)
    assert post_form(page, f"/admin/merchants/merchant/{merchant.pk}/delete/", {"post": "yes"}).status == 403
    page.goto("/admin/merchants/merchant/")
    options = page.locator("select[name=action] option").evaluate_all("options => options.map(o => o.value)")
    assert "delete_selected" not in options
    post_action(page, "/admin/merchants/merchant/", "delete_selected", [merchant.pk])
    assert Merchant.objects.filter(pk=merchant.pk).exists()

    page.locator(f"input.action-select[value='{merchant.pk}']").check()
    page.locator("select[name=action]").select_option("deactivate")
    page.get_by_role("button", name="Go").click()
    expect(page.locator(".messagelist .info")).to_contain_text("1 merchant(s) deactivated")
    assert not Merchant.objects.get(pk=merchant.pk).is_active
    with pytest.raises(NotAuthorized):  # its terminals are refused too
        terminal_authenticate(terminal_id=terminal.terminal_id, secret=terminal.secret, peer_ip="127.0.0.1")
    page.locator("#changelist-filter").get_by_role("link", name="No", exact=True).click()
    expect(page.locator("#result_list tbody tr")).to_have_count(1)

    page.locator(f"input.action-select[value='{merchant.pk}']").check()
    page.locator("select[name=action]").select_option("activate")
    page.get_by_role("button", name="Go").click()
    assert Merchant.objects.get(pk=merchant.pk).is_active
    assert terminal_authenticate(terminal_id=terminal.terminal_id, secret=terminal.secret, peer_ip="127.0.0.1")
    assert list(AuditEntry.objects.filter(object_type="merchants.merchant").order_by("id")
                .values_list("action", flat=True)) == ["deactivate", "activate"]


def test_terminals_and_webhook_endpoints_have_no_delete(staff_page, gateway_data):  # type: ignore[no-untyped-def]
    page, data = staff_page, gateway_data
    for obj, changelist in ((data.terminal, "/admin/terminals/terminal/"),
                            (data.endpoint, "/admin/payments/webhookendpoint/")):
        page.goto(f"{changelist}{obj.pk}/change/")
        expect(page.locator("a.deletelink")).to_have_count(0)
        assert post_form(page, f"{changelist}{obj.pk}/delete/", {"post": "yes"}).status == 403
        post_action(page, changelist, "delete_selected", [obj.pk])
        assert type(obj).objects.filter(pk=obj.pk).exists()
    assert Terminal.objects.get(pk=data.terminal.pk).is_active


def test_wherever_a_delete_button_is_shown_the_deletion_can_succeed(staff_page, gateway_data):  # type: ignore[no-untyped-def]
    """Every object page of the back office (as a superuser, who sees the most):
    a Delete link leads to a confirmation that can be given, never to
    "Cannot delete" (objects protecting it)."""
    page = staff_page
    Group.objects.create(name="auditors")
    get_user_model().objects.create_user("temp", is_staff=True)
    page.goto("/admin/")
    lists = {href for href in page.locator("#content-main a").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))") if re.fullmatch(r"/admin/\w+/\w+/", href or "")}
    checked = 0
    for changelist in sorted(lists):
        page.goto(changelist)
        hrefs = page.locator("#result_list tbody tr th a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
        for href in hrefs[:5]:
            page.goto(href)
            delete = page.locator("a.deletelink")
            if delete.count():
                page.goto(delete.get_attribute("href"))
                expect(page.locator("#content h1")).not_to_contain_text("Cannot delete")
                expect(page.get_by_role("button", name="Yes, I’m sure")).to_be_visible()
                checked += 1
    assert checked >= 3  # bans, card limits, users and groups can be deleted
