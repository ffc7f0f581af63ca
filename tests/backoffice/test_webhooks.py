"""Staff manage webhook endpoints (signing secret shown once), follow events and
their delivery attempts, resend them, and follow refunds."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from payments import outbox
from payments.models import DeliveryAttempt, Event, Refund, WebhookDelivery, WebhookEndpoint
from payments.states import DeliveryStatus, EventType, RefundStatus
from tests.factories import CapturedTransactionFactory, MerchantFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EVENT_ID = "evt_" + "5e" * 12


@pytest.fixture
def queued(monkeypatch):  # type: ignore[no-untyped-def]
    """The delivery ids the outbox queues after commit (no broker in these tests)."""
    ids: list[int] = []
    monkeypatch.setattr(outbox, "enqueue_deliveries", lambda batch, countdown=None: ids.extend(batch) or len(ids))
    return ids


@pytest.fixture
def failed_event(transactional_db):  # type: ignore[no-untyped-def]
    """A payment event whose one delivery failed twice: a timeout, then HTTP 500 with a hostile body."""
    txn = CapturedTransactionFactory(merchant__name="Corner Bakery")
    endpoint, _ = outbox.webhook_endpoint_create(merchant_pk=txn.merchant_id, url="https://bakery.example/hooks")
    event = Event.objects.create(public_id=EVENT_ID, merchant=txn.merchant, type=EventType.PAYMENT_SUCCEEDED,
                                 transaction=txn, data=outbox.transaction_data(txn))
    now = timezone.now()
    delivery = WebhookDelivery.objects.create(event=event, endpoint=endpoint, status=DeliveryStatus.FAILED, attempts=2,
                                              last_status_code=500, completed_at=now,
                                              next_attempt_at=now - timedelta(hours=1))
    DeliveryAttempt.objects.create(delivery=delivery, started_at=now - timedelta(minutes=5), duration_ms=10000,
                                   status_code=None, succeeded=False, error="timed out")
    DeliveryAttempt.objects.create(delivery=delivery, started_at=now - timedelta(minutes=1), duration_ms=231,
                                   status_code=500, succeeded=False,
                                   response_excerpt="<script>document.title='pwned'</script> oops")
    return event, delivery


def test_staff_adds_a_webhook_endpoint_and_sees_its_secret_once(staff_page):  # type: ignore[no-untyped-def]
    page = staff_page
    merchant = MerchantFactory(name="Corner Bakery")
    page.goto(f"/admin/merchants/merchant/{merchant.pk}/change/")
    page.get_by_role("link", name="Add a webhook endpoint").click()
    expect(page.locator("#id_merchant")).to_have_value(str(merchant.pk))  # preset from the merchant page

    page.locator("#id_url").fill("ftp://x")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".errorlist")).to_contain_text("a webhook URL is http:// or https:// with a host")
    assert not WebhookEndpoint.objects.exists()

    page.locator("#id_url").fill("https://bakery.example/hooks")
    page.locator("#id_description").fill("Orders")
    with page.expect_response(lambda response: "/shown-once/" in response.url) as shown, \
            page.expect_response(lambda response: response.request.method == "POST") as posted:
        page.get_by_role("button", name="Save", exact=True).click()
    assert posted.value.status == 302  # post/redirect/get
    assert shown.value.status == 200 and "no-store" in shown.value.headers["cache-control"]
    expect(page.locator(".webhook-secret-message")).to_contain_text("shown only once")
    secret = page.locator(".webhook-secret-message .webhook-secret").inner_text()
    assert secret.startswith("whsec_") and len(secret) > 40
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.merchant == merchant and endpoint.description == "Orders"
    assert secret not in endpoint.secret_sealed
    assert outbox.endpoint_secret(endpoint) == secret

    # Never again: not on the endpoint's page, not after editing it, not in a cookie.
    page.get_by_role("link", name="Webhook endpoint https://bakery.example/hooks").click()
    expect(page.locator("#id_url")).to_have_value("https://bakery.example/hooks")
    assert secret not in page.content() and endpoint.secret_sealed not in page.content()
    page.locator("#id_description").fill("Orders and refunds")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist .success")).to_contain_text("https://bakery.example/hooks")
    assert secret not in page.content()
    endpoint.refresh_from_db()
    assert endpoint.description == "Orders and refunds" and outbox.endpoint_secret(endpoint) == secret
    assert all(secret not in cookie["value"] for cookie in page.context.cookies())


def test_rotating_the_signing_secret_shows_a_new_one_once(staff_page):  # type: ignore[no-untyped-def]
    page = staff_page
    endpoint, old_secret = outbox.webhook_endpoint_create(merchant_pk=MerchantFactory().pk, url="https://a.example/h")
    page.goto("/admin/payments/webhookendpoint/")
    page.locator(f"input.action-select[value='{endpoint.pk}']").check()
    page.locator("select[name=action]").select_option(label="Rotate the signing secret (shown once)")
    page.get_by_role("button", name="Go").click()

    new_secret = page.locator(".webhook-secret-message .webhook-secret").inner_text()
    assert new_secret.startswith("whsec_") and new_secret != old_secret
    endpoint.refresh_from_db()
    assert outbox.endpoint_secret(endpoint) == new_secret
    page.goto(f"/admin/payments/webhookendpoint/{endpoint.pk}/change/")
    expect(page.locator("#id_url")).to_have_value("https://a.example/h")
    assert new_secret not in page.content()


def test_event_page_lists_every_attempt_and_resend_queues_it_again(staff_page, failed_event, queued):  # type: ignore[no-untyped-def]
    page = staff_page
    event, delivery = failed_event
    page.goto("/admin/payments/event/")
    row = page.locator("#result_list tbody tr", has_text=EVENT_ID)
    expect(row).to_contain_text("payment.succeeded")
    expect(row.locator(".delivery-state")).to_have_text("failed")
    row.get_by_role("link", name=EVENT_ID).click()

    expect(page.locator(".event-data")).to_contain_text('"card": "424242******4242"')
    expect(page.locator(".delivery-endpoint")).to_have_text("https://bakery.example/hooks")
    attempts = page.locator("tr.delivery-attempt")
    expect(attempts).to_have_count(2)  # newest first
    expect(attempts.nth(0).locator(".attempt-result")).to_have_text("HTTP 500")
    expect(attempts.nth(0).locator(".attempt-duration")).to_have_text("231 ms")
    # The receiver's body is shown as text, never run as markup.
    expect(attempts.nth(0).locator(".attempt-excerpt")).to_have_text("<script>document.title='pwned'</script> oops")
    expect(page.locator(".attempt-excerpt script")).to_have_count(0)
    assert page.title() != "pwned"
    expect(attempts.nth(1).locator(".attempt-result")).to_have_text("timed out")
    expect(attempts.nth(1).locator(".attempt-duration")).to_have_text("10000 ms")

    page.get_by_role("button", name="Resend").click()
    expect(page.locator(".messagelist .success")).to_have_text(f"Event {EVENT_ID} queued for 1 endpoint(s).")
    expect(page.locator(".delivery-status")).to_have_text("Pending (will be tried)")
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING and delivery.completed_at is None
    assert abs(delivery.next_attempt_at - timezone.now()) < timedelta(seconds=30)
    assert queued == [delivery.pk]


def test_resend_action_and_the_delivered_summary(staff_page, failed_event, queued):  # type: ignore[no-untyped-def]
    page = staff_page
    event, delivery = failed_event
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SUCCEEDED)
    page.goto(f"/admin/payments/event/?q={event.transaction_id}")
    expect(page.locator("#result_list .delivery-state")).to_have_text("1/1 delivered")
    page.locator(f"input.action-select[value='{event.pk}']").check()
    page.locator("select[name=action]").select_option(label="Resend selected events")
    page.get_by_role("button", name="Go").click()
    expect(page.locator(".messagelist .success")).to_have_text(f"Event {EVENT_ID} queued for 1 endpoint(s).")
    expect(page.locator("#result_list .delivery-state")).to_have_text("pending")
    assert queued == [delivery.pk]


def test_refunds_list_shows_each_refunds_state(staff_page, failed_event):  # type: ignore[no-untyped-def]
    page = staff_page
    txn = failed_event[0].transaction
    pending = Refund.objects.create(transaction=txn, amount=Decimal("10.00"), attempts=2)
    done = Refund.objects.create(transaction=txn, amount=Decimal("5.00"), status=RefundStatus.SUCCEEDED, attempts=1,
                                 completed_at=timezone.now())
    page.goto("/admin/payments/refund/")
    for refund, amount, status in ((pending, "10.00 EUR", "Pending with the acquirer"),
                                   (done, "5.00 EUR", "Succeeded")):
        row = page.locator("#result_list tbody tr", has=page.get_by_role("link", name=str(refund.pk), exact=True))
        expect(row.locator(".field-amount_display")).to_have_text(amount)
        expect(row.locator(".field-status_display")).to_have_text(status)
        expect(row.locator(".field-attempts")).to_have_text(str(refund.attempts))
    page.get_by_role("link", name="Succeeded").click()  # the status filter
    expect(page.locator("#result_list tbody tr")).to_have_count(1)

    # The transaction's page shows its refunds (with attempts) and its events.
    page.goto(f"/admin/payments/transaction/{txn.pk}/change/")
    expect(page.locator(".field-attempts").first).to_have_text("1")
    page.get_by_role("link", name=EVENT_ID).click()
    expect(page.locator(".event-data")).to_contain_text('"object": "payment"')


def test_merchant_page_shows_its_webhook_endpoints_and_uuid(staff_page):  # type: ignore[no-untyped-def]
    page = staff_page
    merchant = MerchantFactory(name="Corner Bakery")
    outbox.webhook_endpoint_create(merchant_pk=merchant.pk, url="https://bakery.example/hooks", description="Orders")
    outbox.webhook_endpoint_create(merchant_pk=MerchantFactory().pk, url="https://other.example/hooks")
    page.goto(f"/admin/merchants/merchant/{merchant.pk}/change/")
    expect(page.locator(".field-uuid .readonly")).to_have_text(str(merchant.uuid))
    endpoints = page.locator("#webhook_endpoints-group")
    expect(endpoints).to_contain_text("https://bakery.example/hooks")
    expect(endpoints).to_contain_text("Orders")
    expect(endpoints).not_to_contain_text("https://other.example/hooks")
    assert "secret" not in endpoints.inner_text().lower()
