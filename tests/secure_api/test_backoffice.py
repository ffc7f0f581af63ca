"""The secure API in the back office, in headless Chromium (issue 8, item 1): staff see
each merchant's app_id, create or rotate its keys (shown once, the old pair valid
for the grace period), and see its API calls (never a payload)."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import expect

from clients.secure_api import SecureApiClient
from merchants.models import ApiKeyPair
from tests.backoffice import conftest as backoffice
from tests.backoffice.conftest import STAFF_PASSWORD, log_in
from tests.factories import MerchantFactory

from .conftest import card_body

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
# The back-office tests' fixtures: one headless Chromium, a page, a staff login.
browser, page, staff_user, staff_page = backoffice.browser, backoffice.page, backoffice.staff_user, backoffice.staff_page


def shown_keys(page) -> dict[str, str]:  # type: ignore[no-untyped-def]
    message = page.locator(".api-keys-message")
    return {name: message.locator(f".api-{name.replace('_', '-')}").inner_text()
            for name in ("app_id", "app_key", "data_key")}


def client_for(live_server, keys: dict[str, str]) -> SecureApiClient:  # type: ignore[no-untyped-def]
    return SecureApiClient(live_server.url, **keys)


def test_staff_create_keys_once_rotate_them_and_see_the_calls(staff_page, live_server, shipped_defaults) -> None:  # type: ignore[no-untyped-def]
    page = staff_page
    merchant = MerchantFactory(name="Corner Bakery", allowed_ips=[])
    page.goto("/admin/secure_api/merchantapiaccess/")
    row = page.locator("#result_list tbody tr", has_text="Corner Bakery")
    expect(row.locator(".field-app_id_display")).to_have_text("— (no keys yet)")
    row.get_by_role("link", name="Corner Bakery").click()

    with page.expect_response(lambda response: response.request.method == "POST") as posted:
        page.get_by_role("button", name="Create API keys (shown once)").click()
    # Post/redirect/get: the POST redirects to the keys' one view (kept sealed
    # server-side until then, never in a cookie), which is kept out of caches.
    assert posted.value.status == 302 and "/shown-once/" in posted.value.headers["location"]
    expect(page.locator(".api-keys-message")).to_contain_text("shown only once")
    first = shown_keys(page)
    # A reload neither rotates again nor shows the keys again.
    assert page.reload().status == 410
    assert first["app_key"] not in page.content()
    assert ApiKeyPair.objects.filter(merchant=merchant).count() == 1
    merchant.refresh_from_db()
    assert first["app_id"] == merchant.app_id and len(first["app_id"]) == 32
    api = client_for(live_server, first)
    account = api.post("/account", {"name": "Ada"}).data  # the keys work

    # Never shown again: not on the merchant's page, nor left in a cookie.
    page.goto(f"/admin/secure_api/merchantapiaccess/{merchant.pk}/change/")
    expect(page.locator(".field-app_id_display")).to_contain_text(first["app_id"])
    expect(page.locator(".field-keys_display")).to_contain_text("current, issued")
    content = page.content()
    assert first["app_key"] not in content and first["data_key"] not in content
    assert all(first["app_key"] not in cookie["value"] for cookie in page.context.cookies())

    page.get_by_role("button", name="Rotate API keys (shown once)").click()
    expect(page.locator(".api-keys-message")).to_contain_text("The previous keys stay valid for 24 hours")
    second = shown_keys(page)
    assert second["app_id"] == first["app_id"] and second["app_key"] != first["app_key"]
    assert client_for(live_server, second).get(f"/account/{account['uuid']}").status == 200
    assert api.get(f"/account/{account['uuid']}").status == 200  # the old pair, in its grace period
    assert ApiKeyPair.objects.filter(merchant=merchant).count() == 2
    page.get_by_role("link", name="API access of Corner Bakery").click()
    expect(page.locator(".field-keys_display")).to_contain_text("previous, valid until")

    # A few more calls, one refused, one invalid; then the call log.
    card = api.post(f"/account/{account['uuid']}/paymentinfo", card_body()).data
    assert card["verified"]
    assert api.post("/account", {"email": "not an email"}).code == 997
    assert SecureApiClient(live_server.url, app_id=first["app_id"], app_key=second["data_key"],
                           data_key=second["data_key"]).get("/account/x").code == 998
    page.get_by_role("link", name="API calls of this merchant").click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(5)  # the 998 names no merchant: it is under all calls, not this one's
    expect(rows.first).to_contain_text("POST")
    expect(rows.first.locator(".field-status")).to_have_text("400")
    expect(rows.first.locator(".field-error_code")).to_have_text("997")
    expect(page.locator("#result_list")).to_contain_text(f"/account/{account['uuid']}/paymentinfo")
    listing = page.locator("#result_list").inner_text()
    assert "4242424242424242" not in listing and "data=" not in listing and "not an email" not in listing
    page.goto("/admin/secure_api/apicall/?error_code__exact=998")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list")).to_contain_text("/account/x")
    api.close()


def test_a_viewer_sees_api_access_but_cannot_issue_keys(page, live_server, django_user_model) -> None:  # type: ignore[no-untyped-def]
    merchant = MerchantFactory(name="Viewed Shop")
    viewer = django_user_model.objects.create_user("viewer", password=STAFF_PASSWORD, is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_merchantapiaccess", "view_apicall"]))
    log_in(page, "viewer")
    page.wait_for_url("**/admin/")
    page.goto(f"/admin/secure_api/merchantapiaccess/{merchant.pk}/change/")
    expect(page.locator(".field-app_id_display")).to_be_visible()
    expect(page.locator(".issue-keys-button")).to_have_count(0)
    # Posting by hand is refused too.
    token = page.context.cookies()[0]["value"] if page.context.cookies() else ""
    refused = page.request.post(f"/admin/secure_api/merchantapiaccess/{merchant.pk}/keys/",
                                headers={"X-CSRFToken": token, "Referer": live_server.url})
    assert refused.status == 403
    assert not ApiKeyPair.objects.filter(merchant=merchant).exists()


def test_api_addresses_set_in_the_back_office_are_enforced(staff_page, live_server) -> None:  # type: ignore[no-untyped-def]
    page = staff_page
    merchant = MerchantFactory(name="Locked Shop")
    page.goto(f"/admin/secure_api/merchantapiaccess/{merchant.pk}/change/")
    page.get_by_role("button", name="Create API keys (shown once)").click()
    keys = shown_keys(page)
    page.goto(f"/admin/secure_api/merchantapiaccess/{merchant.pk}/change/")
    page.locator("#id_api_allowed_ips").fill("203.0.113.9")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist .success")).to_be_visible()
    refused = client_for(live_server, keys).post("/account", {})
    assert refused.status == 403 and refused.code == 993
    page.goto(f"/admin/secure_api/merchantapiaccess/{merchant.pk}/change/")
    page.locator("#id_api_allowed_ips").fill("203.0.113.9\n127.0.0.1")
    page.get_by_role("button", name="Save", exact=True).click()
    assert client_for(live_server, keys).post("/account", {}).status == 200
