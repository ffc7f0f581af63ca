"""Ban lists and card limits edited in the back office, and obeyed by payments."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from playwright.sync_api import expect

from payments.errors import CardBanned, CheckBanned, InvalidPin, LimitExceeded
from payments.models import Ban, CardLimit, Transaction
from payments.states import BanKind, PaymentMethod, TransactionStatus
from tests.factories import CardLimitFactory, TerminalFactory

from .helpers import sale

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CARD = "4000056655665556"  # a Visa number (Luhn-valid), 16 digits as terminals send


def add_ban(page, kind: str, value: str, reason: str = "") -> None:  # type: ignore[no-untyped-def]
    page.goto("/admin/payments/ban/add/")
    page.locator("#id_kind").select_option(kind)
    page.locator("#id_value").fill(value)
    page.locator("#id_reason").fill(reason)
    page.get_by_role("button", name="Save", exact=True).click()


def test_a_card_banned_by_number_is_kept_as_fingerprint_bin_and_last_four_and_refused(staff_page):  # type: ignore[no-untyped-def]
    page = staff_page
    CardLimitFactory(kind="VISA", currency="EUR")  # a payment needs its limit
    terminal = TerminalFactory()
    assert sale(terminal, card_number=CARD, pin="4821").status == TransactionStatus.CAPTURED

    add_ban(page, BanKind.CARD, CARD, reason="reported stolen")

    expect(page.locator(".messagelist .success")).to_contain_text("400005******5556")
    page.wait_for_url("**/admin/payments/ban/")
    assert CARD not in page.content()
    ban = Ban.objects.get(kind=BanKind.CARD, card_last4="5556")
    assert (ban.card_bin, ban.card_last4, ban.reason) == ("400005", "5556", "reported stolen")
    assert len(ban.key) == 64 and CARD not in ban.key
    for row in Ban.objects.values():
        assert all(CARD not in str(value) for value in row.values()), row
    for entry in LogEntry.objects.values():  # the admin's own history of the change
        assert all(CARD not in str(value) for value in entry.values()), entry

    page.get_by_role("link", name="400005******5556").click()
    expect(page.locator(".field-display_value")).to_contain_text("400005******5556")
    assert CARD not in page.content()

    with pytest.raises(CardBanned):
        sale(terminal, card_number=CARD, pin="4821")
    declined = Transaction.objects.get(status=TransactionStatus.DECLINED)
    assert declined.failure_code == CardBanned.code


def test_banning_the_same_card_twice_is_refused_without_echoing_the_number(staff_page):  # type: ignore[no-untyped-def]
    page = staff_page
    add_ban(page, BanKind.CARD, CARD)
    page.wait_for_url("**/admin/payments/ban/")

    add_ban(page, BanKind.CARD, CARD)
    expect(page.locator(".errorlist")).to_contain_text("Already on the ban list: Card number 400005******5556.")
    expect(page.locator("#id_value")).to_have_value("")
    assert CARD not in page.content()
    assert Ban.objects.filter(kind=BanKind.CARD, card_last4="5556").count() == 1

    add_ban(page, BanKind.CARD, "4000-0566")
    expect(page.locator(".errorlist")).to_contain_text("a card number is 10 to 19 digits")


def test_staff_bans_a_bin_a_check_and_a_pin(staff_page):  # type: ignore[no-untyped-def]
    page = staff_page
    CardLimitFactory(kind="VISA", currency="EUR", max_amount=Decimal("2500.00"))  # a payment needs its limit
    terminal = TerminalFactory()
    add_ban(page, BanKind.BIN, "411111", reason="compromised issuer range")
    expect(page.locator(".messagelist .success")).to_contain_text("411111")
    add_ban(page, BanKind.CHECK, "12345678abc", reason="bounced")
    expect(page.locator(".messagelist .success")).to_contain_text("12345678ABC")
    add_ban(page, BanKind.PIN, "2580", reason="too common")
    expect(page.locator(".messagelist .success")).to_contain_text("PIN ****")
    assert "2580" not in page.locator("#result_list").inner_text()

    assert set(Ban.objects.values_list("kind", "key").exclude(kind=BanKind.PIN)) >= {
        (BanKind.BIN, "411111"), (BanKind.CHECK, "12345678ABC")
    }
    pin_ban = Ban.objects.get(kind=BanKind.PIN, reason="too common")
    assert pin_ban.key != "2580" and len(pin_ban.key) == 64

    with pytest.raises(CardBanned):
        sale(terminal, card_number="4111111111111111", pin="4821")
    with pytest.raises(CheckBanned):
        sale(terminal, method=PaymentMethod.CHECK, check_number="12345678ABC")
    with pytest.raises(InvalidPin):
        sale(terminal, card_number="4242424242424242", pin="2580")
    # Another BIN, another check and another PIN still pay.
    assert sale(terminal, card_number="4242424242424242", pin="4821").status == TransactionStatus.CAPTURED
    assert sale(terminal, method=PaymentMethod.CHECK, check_number="12345678ABD").status == TransactionStatus.CAPTURED

    # The list filters by kind.
    page.goto("/admin/payments/ban/")
    page.locator("#changelist-filter").get_by_role("link", name="Check number").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(
        Ban.objects.filter(kind=BanKind.CHECK).count()
    )
    expect(page.locator("#result_list")).to_contain_text("12345678ABC")


def test_staff_edits_the_visa_limit_and_a_payment_above_it_is_refused(staff_page):  # type: ignore[no-untyped-def]
    page = staff_page
    CardLimitFactory(kind="VISA", currency="EUR", max_amount=Decimal("2500.00"))
    CardLimitFactory(kind="CONTACTLESS", currency="EUR", max_amount=Decimal("30.00"))
    terminal = TerminalFactory()
    assert sale(terminal, card_number="4242424242424242", pin="4821", amount="1500.00").status == "captured"

    page.goto("/admin/payments/cardlimit/")
    # The EUR row (the shipped defaults, when present, hold one per currency).
    row = page.locator("#result_list tbody tr", has_text="Visa (per payment)").filter(has_text="EUR")
    row.locator("input[name$='-max_amount']").fill("1000.00")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist .success")).to_contain_text("1 card limit was changed successfully")
    assert CardLimit.objects.get(kind="VISA", currency="EUR").max_amount == Decimal("1000.00")
    assert CardLimit.objects.get(kind="CONTACTLESS", currency="EUR").max_amount == Decimal("30.00")

    with pytest.raises(LimitExceeded) as refused:
        sale(terminal, card_number="4242424242424242", pin="4821", amount="1000.01")
    assert refused.value.limit == Decimal("1000.00") and not refused.value.contactless
    assert str(refused.value) == "Card max amount 1000.00"
    assert sale(terminal, card_number="4242424242424242", pin="4821", amount="1000.00").status == "captured"


def test_a_limit_must_be_positive(staff_page):  # type: ignore[no-untyped-def]
    page = staff_page
    CardLimitFactory(kind="CONTACTLESS", currency="EUR", max_amount=Decimal("30.00"))
    CardLimitFactory(kind="VISA", currency="EUR", max_amount=Decimal("2500.00"))  # the card's own limit
    page.goto("/admin/payments/cardlimit/")
    page.locator("#result_list").get_by_role("link", name="Contactless (per payment, any brand)").click()
    page.locator("#id_max_amount").fill("0")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".errorlist")).to_contain_text("greater than or equal to 0.01")
    assert CardLimit.objects.get(kind="CONTACTLESS", currency="EUR").max_amount == Decimal("30.00")

    page.locator("#id_max_amount").fill("50.00")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist .success")).to_be_visible()
    terminal = TerminalFactory()
    with pytest.raises(LimitExceeded) as refused:
        sale(terminal, method=PaymentMethod.CONTACTLESS, card_number="4242424242424242", amount="50.01")
    assert str(refused.value) == "Contactless max amount 50.00"
