"""The six process states are the whole gateway's vocabulary: the same card
outcome paid through the terminal listener (HTTP, a real socket), esipay and
IOTP ends in the same process state, announced with the same words in every
webhook event, and IOTP reports it so. (The secure API and SET doors are
other issues: their tests join this table when they land.)"""
from __future__ import annotations

import base64
import http.client
import json
from datetime import date

import pytest
from django.test import Client

from payments.models import Event, Transaction
from payments.states import PROCESS_STATE, Door
from terminals.server import TerminalConfig
from tests.factories import MerchantFactory, TerminalFactory
from tests.support.http_servers import merchant_server
from tests.terminals.conftest import RunningListener

from .support import card_data, fixture, render, window

pytestmark = pytest.mark.django_db(transaction=True)

OUTCOMES = [
    ("4242424242424242", "CompletedOk"),
    ("4000000000000002", "Failed"),
    ("4000000000009995", "Failed"),
    ("4000000000000119", "ProcessError"),
]
# What each door's own answer says, in its vocabulary, per process state.
ESIPAY_STATUS = {"CompletedOk": 200, "Failed": 400, "ProcessError": 500}
TERMINAL_ERROR = {"CompletedOk": None, "Failed": 111, "ProcessError": 111}


@pytest.fixture
def listener():  # type: ignore[no-untyped-def]
    running = RunningListener(TerminalConfig(idle_timeout=10.0, request_timeout=5.0, max_connections=20,
                                             db_threads=2, drain_seconds=5.0))
    yield running
    running.close()


@pytest.fixture
def shop(shipped_defaults):  # type: ignore[no-untyped-def]
    for server in merchant_server():
        merchant = MerchantFactory(allowed_ips=["127.0.0.1"], callback_url=server.url + "esipay/return")
        yield merchant


def terminal_pay(port: int, terminal, card: str, amount: str) -> dict:  # type: ignore[no-untyped-def]
    credentials = base64.b64encode(f"{terminal.terminal_id}:{terminal.secret}".encode()).decode()
    headers = {"Authorization": f"Basic {credentials}"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/token?type=CARD&try_count=1", headers=headers)
        token = json.loads(connection.getresponse().read())["token"]
        connection.request("GET", f"/payment/card?token={token}&card_type=VISA&card_number={card}&pin=4821"
                                  f"&amount={amount}", headers=headers)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def test_one_outcome_one_process_state_at_every_door(shop, listener) -> None:  # type: ignore[no-untyped-def]
    from merchants.credentials import api_keys_issue

    from .support import IotpClient

    terminal = TerminalFactory(merchant=shop)
    core = IotpClient(api_keys_issue(merchant=shop))
    year = str(date.today().year + 2)
    for number, (card, state) in enumerate(OUTCOMES, start=1):
        amount = f"{number}.25"
        made: dict[str, Transaction] = {}

        answer = terminal_pay(listener.port, terminal, card, amount)
        assert answer.get("error_code") == TERMINAL_ERROR[state], answer
        made["terminal"] = Transaction.objects.filter(door=Door.TERMINAL).latest("id")

        esipay = Client().get(f"/cardpay/{shop.uuid}/order-{number}/{card}/12/{year}/{amount}",
                              REMOTE_ADDR="127.0.0.1")
        assert esipay.status_code == ESIPAY_STATUS[state], esipay.content
        made["esipay"] = Transaction.objects.get(pk=esipay.json()["transaction"])

        pay_id = f"PH-{number:04d}"
        body = render("exchanges/06-StartPaymentPaymentHandler.request.xml", merchant=str(shop.uuid),
                      card_data=card_data(card), **window()).replace(b"PH-0001", pay_id.encode())
        body = body.replace(b'Amount="12.50"', f'Amount="{amount}"'.encode())
        assert core.post(body).error is None
        inquiry = core.post(fixture("exchanges/12-InquireProcessState.request.xml").replace(
            "PH-0001", pay_id).encode()).response("InquireProcessStateResponse")
        assert inquiry.get("ProcessState") == state, inquiry.attrib
        made["iotp"] = Transaction.objects.get(merchant_reference=f"iotp:{pay_id}")

        for door, txn in made.items():
            assert str(PROCESS_STATE[txn.status]) == state, (door, txn.status)
            events = Event.objects.filter(transaction=txn)
            assert [e.data["process_state"] for e in events] == [state], (door, [e.data for e in events])
        assert {txn.status for txn in made.values()} == {made["iotp"].status}  # same stored status too
