"""The six process states are the whole gateway's vocabulary (issue 9, item 4):
the same card outcome paid through each of the five doors — the terminal
listener (HTTP, a real socket), esipay, the secure API (its client, over a
real socket to the live server), IOTP and the SET gateway (a real socket,
authenticated by challenge) — ends in the same stored status and the same
process state, each door's own answer says so in its vocabulary (the tables
below, with the words the doors really answer), every webhook event
announces it with the same words, and the back office shows it on every
transaction's page and in the list, whichever door it came through.

Each door words a state its own way: the terminal answers 111 ``Declined
<reason>`` for a decline and for an acquirer failure alike (docs/terminal.md),
the secure API 938 for both (its detail and the transaction's ``status`` tell
them apart), SET ``declined`` for Failed and ``failed`` for ProcessError.
"""
from __future__ import annotations

import base64
import http.client
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal

import pytest
from django.test import Client

from clients.secure_api import SecureApiClient
from payments.acquirers.base import AcquirerResult, AuthorizationRequest, Outcome
from payments.acquirers.sandbox import SandboxAcquirer
from payments.models import Event, Transaction
from payments.states import PROCESS_STATE, Door
from setgateway import payload
from terminals.server import TerminalConfig
from tests.factories import MerchantFactory, TerminalFactory
from tests.secure_api.conftest import card_body, charge_body
from tests.setgateway.conftest import Raw, RunningGateway, eur
from tests.support.http_servers import merchant_server
from tests.terminals.conftest import RunningListener

from .support import card_data, fixture, render, window

pytestmark = pytest.mark.django_db(transaction=True)

# card, process state, the acquirer's reason (the sandbox's test cards)
OUTCOMES = [
    ("4242424242424242", "CompletedOk", None),
    ("4000000000000002", "Failed", "card declined"),
    ("4000000000009995", "Failed", "insufficient funds"),
    ("4000000000000119", "ProcessError", "acquirer processing error"),
]
# What each door's own answer says, in its vocabulary, per process state.
ESIPAY_STATUS = {"CompletedOk": 200, "Failed": 400, "ProcessError": 500}
ESIPAY_CODE = {"CompletedOk": None, "Failed": "declined", "ProcessError": "acquirer_failure"}
TERMINAL_ERROR = {"CompletedOk": None, "Failed": 111, "ProcessError": 111}
# The secure API's charge: (HTTP status, error code), the detail's first words, and
# the transaction's "status" when it is looked up (GET /billing/{uuid}/transaction/{id}).
SECURE_API = {"CompletedOk": (200, None), "Failed": (400, 938), "ProcessError": (400, 938)}
SECURE_API_DETAIL = {"CompletedOk": None, "Failed": "declined by the acquirer", "ProcessError": "the acquirer failed"}
SECURE_API_STATUS = {"CompletedOk": "captured", "Failed": "declined", "ProcessError": "error"}
# SET: the AuthRes status, its reason's first words, and InqRes's process state.
SET_STATUS = {"CompletedOk": "approved", "Failed": "declined", "ProcessError": "failed"}
SET_REASON = {"CompletedOk": None, "Failed": "Declined", "ProcessError": "Acquirer failure"}
SET_PROCESS_STATE = {"CompletedOk": "completedOk", "Failed": "failed", "ProcessError": "processError"}

SHOWN_STATE = re.compile(r'<span class="process-state process-state-(\w+)">(\w+)</span>')


class VerifiesEveryCard(SandboxAcquirer):
    """The bank on the day the cards were put on file: it verified them all. The
    secure API charges only cards on file, and the sandbox refuses even a
    zero-amount verification of 4000000000000002 and 4000000000000119; their
    charges then meet the plain sandbox, as at every other door."""

    def authorize(self, request: AuthorizationRequest) -> AcquirerResult:
        if request.amount == 0:
            return AcquirerResult(Outcome.APPROVED, reference="sbx_verified", authorization_code="000000")
        return super().authorize(request)


@contextmanager
def verifying_every_card(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    previous = settings.PAYMENTS_ACQUIRER
    settings.PAYMENTS_ACQUIRER = f"{__name__}.{VerifiesEveryCard.__name__}"
    try:
        yield
    finally:
        settings.PAYMENTS_ACQUIRER = previous


@pytest.fixture
def listener():  # type: ignore[no-untyped-def]
    running = RunningListener(TerminalConfig(idle_timeout=10.0, request_timeout=5.0, max_connections=20,
                                             db_threads=2, drain_seconds=5.0))
    yield running
    running.close()


@pytest.fixture
def set_gateway() -> Iterator[RunningGateway]:
    from setgateway import services

    services._CURRENCY_CACHE.clear()  # merchant ids are reused across tests: no other test's currency
    running = RunningGateway()
    yield running
    running.close()


@pytest.fixture
def shop(shipped_defaults):  # type: ignore[no-untyped-def]
    for server in merchant_server():
        merchant = MerchantFactory(allowed_ips=["127.0.0.1"], callback_url=server.url + "esipay/return")
        yield merchant


@pytest.fixture
def staff(django_user_model) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("staff", "staff@example.com", "x"))
    return client


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


def shown_states(page) -> list[str]:  # type: ignore[no-untyped-def]
    assert page.status_code == 200, page.status_code
    found = SHOWN_STATE.findall(page.content.decode())
    assert all(css == text for css, text in found), found
    return [text for _, text in found]


def test_one_outcome_one_process_state_at_every_door(  # type: ignore[no-untyped-def]
        shop, listener, set_gateway, live_server, staff, settings) -> None:
    from merchants.credentials import api_keys_issue
    from setgateway.credentials import set_settings_create

    from .support import IotpClient

    terminal = TerminalFactory(merchant=shop)
    keys = api_keys_issue(merchant=shop)
    core = IotpClient(keys)
    api = SecureApiClient(live_server.url, app_id=keys.app_id, app_key=keys.app_key, data_key=keys.data_key)
    account = api.post("/account", {"externalID": "cust-1", "name": "Ada", "email": "ada@example.com"}).data
    with verifying_every_card(settings):
        on_file = {card: api.post(f"/account/{account['uuid']}/paymentinfo", card_body(card)).data
                   for card, _, _ in OUTCOMES}
    assert all(stored["verified"] for stored in on_file.values()), on_file
    _, issued = set_settings_create(merchant=shop)
    set_door = Raw(set_gateway.port)
    _, reply = set_door.authenticate(issued)  # type: ignore[arg-type]
    assert reply.startswith("+OK|"), reply
    year = date.today().year + 2
    try:
        for number, (card, state, reason) in enumerate(OUTCOMES, start=1):
            amount = f"{number}.25"
            made: dict[str, Transaction] = {}

            answer = terminal_pay(listener.port, terminal, card, amount)
            assert answer.get("error_code") == TERMINAL_ERROR[state], answer
            assert answer.get("error") == (reason and f"Declined {reason}"), answer
            made["terminal"] = Transaction.objects.filter(door=Door.TERMINAL).latest("id")

            esipay = Client().get(f"/cardpay/{shop.uuid}/order-{number}/{card}/12/{year}/{amount}",
                                  REMOTE_ADDR="127.0.0.1")
            assert esipay.status_code == ESIPAY_STATUS[state], esipay.content
            assert esipay.json().get("code") == ESIPAY_CODE[state], esipay.json()
            made["esipay"] = Transaction.objects.get(pk=esipay.json()["transaction"])

            charge = api.post(f"/billing/{account['uuid']}/transaction",
                              charge_body(on_file[card], order=f"api-{number}", amount=Decimal(amount)))
            made["secure_api"] = Transaction.objects.get(door=Door.SECURE_API, merchant_reference=f"api-{number}")
            assert (charge.status, charge.code) == SECURE_API[state], charge.body
            if reason is None:
                assert charge.data["transactionID"] == str(made["secure_api"].pk), charge.body
            else:
                assert charge.error["detail"] == (  # type: ignore[index]
                    f"{SECURE_API_DETAIL[state]}: {reason} (transactionID {made['secure_api'].pk})")
            looked_up = api.get(f"/billing/{account['uuid']}/transaction/{made['secure_api'].pk}").data
            assert looked_up["status"] == SECURE_API_STATUS[state], looked_up
            assert looked_up.get("failure", {}).get("message") == reason, looked_up

            pay_id = f"PH-{number:04d}"
            body = render("exchanges/06-StartPaymentPaymentHandler.request.xml", merchant=str(shop.uuid),
                          card_data=card_data(card), **window()).replace(b"PH-0001", pay_id.encode())
            body = body.replace(b'Amount="12.50"', f'Amount="{amount}"'.encode())
            assert core.post(body).error is None
            inquiry = core.post(fixture("exchanges/12-InquireProcessState.request.xml").replace(
                "PH-0001", pay_id).encode()).response("InquireProcessStateResponse")
            assert inquiry.get("ProcessState") == state, inquiry.attrib
            made["iotp"] = Transaction.objects.get(merchant_reference=f"iotp:{pay_id}")

            trans_id = f"set-{number}"
            set_door.request(payload.AuthReq(trans_id, card, f"{year}12", eur(amount), capture_now=True), f"a{number}")
            tag, authorized = set_door.answer()
            made["set"] = Transaction.objects.get(door=Door.SET, merchant_reference=trans_id)
            assert tag == f"a{number}" and isinstance(authorized, payload.AuthRes), authorized
            assert (authorized.status, authorized.gateway_trans_id) == (SET_STATUS[state], str(made["set"].pk))
            assert authorized.reason == (reason and f"{SET_REASON[state]}: {reason}"), authorized
            assert authorized.auth_code == (made["set"].authorization_code or None), authorized
            set_door.request(payload.InqReq(trans_id), f"q{number}")
            tag, inquired = set_door.answer()
            assert tag == f"q{number}" and isinstance(inquired, payload.InqRes), inquired
            assert inquired.process_state == SET_PROCESS_STATE[state], inquired
            captured = Decimal(amount) if state == "CompletedOk" else Decimal("0")
            assert inquired.captured.value == captured, inquired

            assert set(made) == {door.value for door in Door}  # every door
            for door, txn in made.items():
                assert txn.door == door
                assert str(PROCESS_STATE[txn.status]) == state, (door, txn.status)
                events = Event.objects.filter(transaction=txn)
                assert [e.data["process_state"] for e in events] == [state], (door, [e.data for e in events])
                page = staff.get(f"/admin/payments/transaction/{txn.pk}/change/")
                assert shown_states(page) == [state], (door, txn.pk)
            assert {txn.status for txn in made.values()} == {made["iotp"].status}  # same stored status too
    finally:
        set_door.close()
        api.close()

    # The back office's list: each door's four payments, each with its process state.
    expected = sorted(state for _, state, _ in OUTCOMES)
    for door in Door:
        listing = staff.get(f"/admin/payments/transaction/?door__exact={door.value}")
        assert sorted(shown_states(listing)) == expected, door
