"""Staff see the process state of every transaction, whichever door it came
through (terminal, esipay, IOTP), filter by it, and find IOTP's payment log,
in a real headless Chromium."""
from __future__ import annotations

from datetime import date

import pytest
from django.test import Client
from playwright.sync_api import expect

from merchants.credentials import api_keys_issue
from payments.states import Door
from tests.backoffice.conftest import browser, page, staff_page, staff_user  # noqa: F401 - fixtures
from tests.backoffice.helpers import sale
from tests.factories import TerminalFactory
from tests.support.http_servers import merchant_server

from .support import IotpClient
from .test_payments import change
from .test_errors import start

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def payments_made(transactional_db, shipped_defaults):  # type: ignore[no-untyped-def]
    for server in merchant_server():
        terminal = TerminalFactory(merchant__name="Gamma Games", merchant__callback_url=server.url + "r")
        shop = terminal.merchant
        sale(terminal, card_number="4242424242424242", pin="4821", amount="10.00")
        year = date.today().year + 2
        assert Client().get(f"/cardpay/{shop.uuid}/o-1/5555555555554444/12/{year}/20.00",
                            REMOTE_ADDR="127.0.0.1").status_code == 200
        core = IotpClient(api_keys_issue(merchant=shop))
        assert start(core, shop, pay_id="PH-PAID").error is None
        assert start(core, shop, pay_id="PH-WAIT", card=False).error is None
        assert start(core, shop, pay_id="PH-SUSP", card=False).error is None
        assert change(core, "Suspended", pay_id="PH-SUSP").get("ProcessState") == "Suspended"
        yield shop


def rows(on):  # type: ignore[no-untyped-def]
    return on.locator("#result_list tbody tr")


def test_every_transaction_shows_its_process_state_whatever_the_door(staff_page, payments_made) -> None:  # type: ignore[no-untyped-def]
    page = staff_page
    page.goto("/admin/payments/transaction/")
    expect(rows(page)).to_have_count(5)
    states = page.locator("#result_list .field-process_state_display .process-state").all_inner_texts()
    assert sorted(states) == ["CompletedOk", "CompletedOk", "CompletedOk", "InProgress", "Suspended"]
    filters = page.locator("#changelist-filter")
    filters.locator('a[href="?process_state=Suspended"]').click()  # the process-state filter (not the status one)
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first.locator(".status")).to_have_text("Suspended")
    page.goto("/admin/payments/transaction/?process_state=InProgress")
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first.locator(".status")).to_have_text("Waiting for card data")
    page.goto(f"/admin/payments/transaction/?process_state=CompletedOk&door__exact={Door.IOTP.value}")
    expect(rows(page)).to_have_count(1)

    page.goto("/admin/iotp/iotppayment/")
    expect(rows(page)).to_have_count(3)
    table = page.locator("#result_list")
    for pay_id, state in [("PH-PAID", "CompletedOk"), ("PH-WAIT", "InProgress"), ("PH-SUSP", "Suspended")]:
        row = table.locator("tr", has_text=pay_id)
        expect(row.locator(".process-state")).to_have_text(state)
    page.screenshot(path="/tmp/backoffice-iotp.png", full_page=True)
