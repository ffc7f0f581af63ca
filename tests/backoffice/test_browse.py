"""Staff browse transactions and tokens: search by last four, filters by state, merchant, date."""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from payments import services
from payments.errors import AcquirerFailure, Declined
from payments.models import Token, Transaction
from payments.states import PaymentMethod, TransactionStatus
from tests.factories import CardLimitFactory, CapturedTransactionFactory, TerminalFactory

from .helpers import sale

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOT = "/tmp/backoffice-transactions.png"


@pytest.fixture
def payments_made(transactional_db):  # type: ignore[no-untyped-def]
    """Payments of two merchants in several states, one of them from 2024."""
    # A payment needs a limit for its currency and brand (transactional tests flush the shipped ones).
    for kind in ("VISA", "MASTER"):
        CardLimitFactory(kind=kind, currency="EUR", max_amount=Decimal("2500.00"))
    alpha = TerminalFactory(merchant__name="Alpha Books", label="Front desk")
    beta = TerminalFactory(merchant__name="Beta Garden", label="Greenhouse")
    made = {
        "alpha_visa": sale(alpha, card_number="4242424242424242", pin="4821", amount="42.50"),
        "beta_master": sale(beta, card_number="5555555555554444", pin="4821", amount="19.99"),
    }
    with pytest.raises(Declined) as declined:
        sale(beta, card_number="4000000000000002", pin="4821", amount="75.00")
    made["beta_declined"] = Transaction.objects.get(pk=declined.value.transaction_id)
    with pytest.raises(AcquirerFailure) as failed:
        sale(alpha, card_number="4000000000000119", pin="4821", amount="12.00")
    made["alpha_error"] = Transaction.objects.get(pk=failed.value.transaction_id)
    old = CapturedTransactionFactory(merchant=alpha.merchant, terminal=alpha, card_bin="401288", card_last4="1881",
                                     amount=Decimal("300.00"))
    Transaction.objects.filter(pk=old.pk).update(created_at=datetime(2024, 3, 5, 10, 30, tzinfo=dt_timezone.utc))
    made["alpha_2024"] = old
    made["terminals"] = (alpha, beta)
    return made



def result_rows(page):  # type: ignore[no-untyped-def]
    return page.locator("#result_list tbody tr")


def test_staff_browses_transactions_by_last_four_state_merchant_and_date(staff_page, payments_made):  # type: ignore[no-untyped-def]
    page = staff_page
    page.goto("/admin/payments/transaction/")
    expect(result_rows(page)).to_have_count(5)
    page.screenshot(path=SCREENSHOT, full_page=True)
    table = page.locator("#result_list")
    expect(table).to_contain_text("424242******4242")
    expect(table).not_to_contain_text("4242424242424242")

    # Search by last four.
    page.locator("#searchbar").fill("4444")
    page.locator("#searchbar").press("Enter")
    expect(result_rows(page)).to_have_count(1)
    expect(result_rows(page).first).to_contain_text("555555******4444")
    expect(result_rows(page).first).to_contain_text("Beta Garden")
    page.goto("/admin/payments/transaction/")

    # Filter by process state (RFC 3867 vocabulary).
    filters = page.locator("#changelist-filter")
    filters.get_by_role("link", name="Failed", exact=True).click()
    expect(result_rows(page)).to_have_count(1)
    state_cell = result_rows(page).first.locator(".field-process_state_display")
    expect(state_cell.locator(".process-state")).to_have_text("Failed")
    expect(state_cell.locator(".status")).to_have_text("Declined: card_declined")
    expect(result_rows(page).first).to_contain_text("400000******0002")
    filters.get_by_role("link", name="Process Error", exact=True).click()
    expect(result_rows(page)).to_have_count(1)
    expect(result_rows(page).first).to_contain_text("400000******0119")
    filters.get_by_role("link", name="Completed Ok", exact=True).click()
    expect(result_rows(page)).to_have_count(3)

    # ... combined with a merchant.
    filters.get_by_role("link", name="Alpha Books", exact=True).click()
    expect(result_rows(page)).to_have_count(2)
    expect(page.locator("#result_list")).not_to_contain_text("Beta Garden")
    assert "process_state=CompletedOk" in page.url and "merchant__id__exact=" in page.url

    # Filter by date: today, then a day in 2024 through the date drill-down.
    page.goto("/admin/payments/transaction/")
    filters.get_by_role("link", name="Today", exact=True).click()
    expect(result_rows(page)).to_have_count(4)
    expect(page.locator("#result_list")).not_to_contain_text("401288******1881")
    page.goto("/admin/payments/transaction/")
    page.locator("nav.toplinks").get_by_role("link", name="2024", exact=True).click()
    page.locator("nav.toplinks").get_by_role("link", name="March 2024", exact=True).click()
    page.locator("nav.toplinks").get_by_role("link", name="March 5", exact=True).click()
    expect(result_rows(page)).to_have_count(1)
    expect(result_rows(page).first).to_contain_text("401288******1881")

    # A transaction's page: the masked card, never the number nor the fingerprint.
    txn = payments_made["alpha_visa"]
    page.goto(f"/admin/payments/transaction/{txn.pk}/change/")
    expect(page.locator(".field-card_display")).to_contain_text("424242******4242")
    expect(page.locator(".field-process_state_display")).to_contain_text("CompletedOk")
    assert txn.card_fingerprint not in page.content()
    assert "4242424242424242" not in page.content()
    expect(page.get_by_role("button", name="Save")).to_have_count(0)  # read-only


def test_staff_browses_tokens(staff_page, payments_made):  # type: ignore[no-untyped-def]
    page = staff_page
    alpha, beta = payments_made["terminals"]
    open_token = services.token_issue(terminal_pk=beta.pk, payment_type=PaymentMethod.CONTACTLESS)
    used_token = payments_made["alpha_visa"].token
    total = Token.objects.count()

    page.goto("/admin/payments/token/")
    expect(result_rows(page)).to_have_count(total)
    expect(page.locator("#result_list")).to_contain_text(f"{open_token.value[:16]}…")
    assert open_token.value not in page.content()  # a bearer value: shown shortened

    filters = page.locator("#changelist-filter")
    filters.get_by_role("link", name="not used", exact=True).click()
    unused = {t.pk for t in Token.objects.all() if not Transaction.objects.filter(
        token=t, status__in=[TransactionStatus.CAPTURED, TransactionStatus.PROCESSING]).exists()}
    expect(result_rows(page)).to_have_count(len(unused))
    expect(page.locator("#result_list")).to_contain_text(f"{open_token.value[:16]}…")
    expect(page.locator("#result_list")).not_to_contain_text(f"{used_token.value[:16]}…")

    filters.get_by_role("link", name="used by a payment", exact=True).click()
    expect(page.locator("#result_list")).to_contain_text(f"{used_token.value[:16]}…")
    expect(page.locator("#result_list")).not_to_contain_text(f"{open_token.value[:16]}…")

    page.goto("/admin/payments/token/")
    page.locator("#searchbar").fill(beta.terminal_id)
    page.locator("#searchbar").press("Enter")
    expect(result_rows(page)).to_have_count(Token.objects.filter(terminal=beta).count())
    expect(page.locator("#result_list")).not_to_contain_text(alpha.terminal_id)

    page.goto("/admin/payments/token/")
    filters.get_by_role("link", name="Contactless card", exact=True).click()
    expect(result_rows(page)).to_have_count(1)
    expect(result_rows(page).first).to_contain_text(beta.terminal_id)
