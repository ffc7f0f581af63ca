"""Staff enable SET for a merchant, choose its authentication, see its transport
id, rotate its secret (shown once), see its live connections and the
diagnostic log journal — in a real headless Chromium."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from setgateway import framing
from setgateway.credentials import set_authenticate
from setgateway.journal import LiveSnapshot, diagnostic_record, live_connections_publish
from setgateway.models import Authentication, LiveConnection, SetSettings
from tests.backoffice.conftest import browser, page, staff_page, staff_user  # noqa: F401 - fixtures
from tests.factories import MerchantFactory

from .conftest import SetMerchant

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

GREETING = "+OK|gw ready|challenge"


def proves(transport_id: str, secret: str, peer_ip: str = "203.0.113.5") -> bool:
    response = framing.authentication_response(greeting=GREETING, transport_id=transport_id, secret=secret)
    return set_authenticate(transport_id=transport_id, response=response, greeting=GREETING,
                            peer_ip=peer_ip) is not None


def test_staff_enable_set_and_see_the_secret_once(staff_page) -> None:  # type: ignore[no-untyped-def]
    page = staff_page
    merchant = MerchantFactory(name="Corner Bookshop", allowed_ips=["203.0.113.5"])
    page.goto("/admin/setgateway/setsettings/add/")
    page.locator("#id_merchant").select_option(str(merchant.pk))
    page.locator("#id_authentication").select_option(Authentication.BOTH)
    with page.expect_response(lambda response: "/shown-once/" in response.url) as shown, \
            page.expect_response(lambda response: response.request.method == "POST") as posted:
        page.get_by_role("button", name="Save", exact=True).click()
    # Post/redirect/get: the POST answers a redirect, the page it leads to shows the secret once.
    assert posted.value.status == 302
    assert shown.value.status == 200 and "no-store" in shown.value.headers["cache-control"]
    expect(page.locator(".set-secret-message")).to_contain_text("shown only once")
    transport_id = page.locator(".set-secret-message .set-transport-id").inner_text()
    secret = page.locator(".set-secret-message .set-secret").inner_text()
    assert transport_id == "corner-bookshop"
    row = SetSettings.objects.get(merchant=merchant)
    assert row.enabled and row.authentication == Authentication.BOTH
    assert proves(transport_id, secret) and not proves(transport_id, secret, peer_ip="198.51.100.1")
    page.reload()  # a reload neither enables again nor shows the secret again
    expect(page.locator(".shown-once-gone")).to_be_visible()
    assert secret not in page.content() and SetSettings.objects.filter(merchant=merchant).count() == 1

    page.goto(f"/admin/setgateway/setsettings/{row.pk}/change/")
    expect(page.locator("#id_transport_id")).to_have_value("corner-bookshop")
    expect(page.locator(".field-registered_addresses")).to_contain_text("203.0.113.5")
    assert secret not in page.content()

    # Rotate: a new secret, shown once; the old one stops working.
    page.goto("/admin/setgateway/setsettings/")
    page.locator(f"input[name='_selected_action'][value='{row.pk}']").check()
    page.locator("select[name='action']").select_option("rotate_secret")
    page.get_by_role("button", name="Go").click()
    new_secret = page.locator(".set-secret-message .set-secret").inner_text()
    assert new_secret != secret
    assert proves(transport_id, new_secret) and not proves(transport_id, secret)
    # Both recorded in the audit log, without the secret.
    from backoffice.models import AuditEntry

    entries = list(AuditEntry.objects.filter(object_repr__icontains="corner-bookshop").values_list("action", flat=True))
    assert "add" in entries and "rotate_secret" in entries
    assert all(new_secret not in f"{e.changes}{e.message}" and secret not in f"{e.changes}{e.message}"
               for e in AuditEntry.objects.all())


def test_staff_change_the_transport_id_and_disable_set(staff_page) -> None:  # type: ignore[no-untyped-def]
    page = staff_page
    shop = SetMerchant(name="Shop One")
    SetMerchant(name="Shop Two")
    page.goto(f"/admin/setgateway/setsettings/{shop.settings.pk}/change/")
    page.locator("#id_transport_id").fill("shop-two")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".errorlist")).to_contain_text("Another merchant already uses this transport id.")
    page.locator("#id_transport_id").fill("shop|one")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".errorlist")).to_contain_text("without spaces or '|'")
    page.locator("#id_transport_id").fill("shop-1.example")
    page.locator("#id_authentication").select_option(Authentication.ADDRESS)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist .success")).to_be_visible()
    shop.settings.refresh_from_db()
    assert (shop.settings.transport_id, shop.settings.authentication) == ("shop-1.example", Authentication.ADDRESS)

    page.goto("/admin/setgateway/setsettings/")
    page.locator(f"input[name='_selected_action'][value='{shop.settings.pk}']").check()
    page.locator("select[name='action']").select_option("disable")
    page.get_by_role("button", name="Go").click()
    expect(page.locator(".messagelist li")).to_contain_text("SET disabled for 1 merchant(s)")
    shop.settings.refresh_from_db()
    assert not shop.settings.enabled


def test_staff_see_live_connections_and_the_diagnostic_journal(staff_page) -> None:  # type: ignore[no-untyped-def]
    page = staff_page
    shop = SetMerchant(name="Live Shop", allowed_ips=["127.0.0.1"])
    since = timezone.now() - timedelta(minutes=3)
    live_connections_publish(process="gw-a:1:x", connections=[
        LiveSnapshot("gw-a-1", shop.pk, "127.0.0.1:50123", "open", since, 5),
        LiveSnapshot("gw-a-2", shop.pk, "127.0.0.1:50124", "closing", since + timedelta(seconds=30), 0),
    ])
    live_connections_publish(process="gw-b:2:y", connections=[
        LiveSnapshot("gw-b-1", shop.pk, "127.0.0.1:50999", "open", since, 1),
    ])
    LiveConnection.objects.filter(process="gw-b:2:y").update(seen_at=timezone.now() - timedelta(minutes=5))
    diagnostic_record(peer_ip="127.0.0.1", received_at=timezone.now(), size=21,
                      content_type="application/set-payment", msg_tag="d1", body=b"\x04\x134242424242424242abc")

    page.goto(f"/admin/setgateway/setsettings/{shop.settings.pk}/change/")
    table = page.locator("table.set-live-connections")
    expect(table).to_contain_text("127.0.0.1:50123")
    expect(table.locator("tbody tr")).to_have_count(2)  # the killed process's row is not live
    first_row = table.locator("tbody tr").first  # the oldest first
    expect(first_row.locator("td")).to_have_count(4)
    # address, state, since (UTC, to the second) and outstanding requests of the oldest connection
    for cell, shown in zip(first_row.locator("td").all(), ["127.0.0.1:50123", "open",
                                                          f"{since:%Y-%m-%d %H:%M:%S}", "5"]):
        expect(cell).to_have_text(shown)
    expect(page.locator(".set-diagnostic")).to_contain_text("21 bytes")

    page.goto("/admin/setgateway/liveconnection/")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    expect(page.locator("#result_list")).to_contain_text("closing")

    page.goto("/admin/setgateway/diagnosticlog/")
    expect(page.locator("#result_list")).to_contain_text("Live Shop")
    page.locator("#result_list tbody tr a").first.click()
    body = page.locator(".set-diagnostic-body")
    expect(body).to_contain_text("34 32 34 32 34 32 2a 2a")  # "424242**": the card number masked
    assert "4242424242424242" not in page.content()
