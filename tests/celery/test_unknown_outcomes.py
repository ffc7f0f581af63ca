"""Unknown outcomes end to end with real processes: a ``runterminalserver`` killed
with SIGKILL between the commit of its processing transaction and its answer,
then real Celery beat and worker processes running the resolver task
(``payments.tasks.resolve_unknown_outcomes``) on the tests' broker. The sandbox
acquirer's ledger (a file shared by the processes) lets the worker ask about
what the dead listener sent.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings

from payments import outbox, services
from payments.acquirers.base import _load
from payments.acquirers.sandbox import TIMEOUT_CARD
from payments.errors import TokenInvalid
from payments.models import Event, Transaction
from payments.states import EventType, PaymentMethod, TransactionStatus
from tests.factories import MerchantFactory, TerminalFactory
from tests.support.http_servers import MerchantServer
from tests.support.listener_process import ListenerProcess
from tests.support.workers import RESOLVER_ENV, wait_until
from tests.terminals.conftest import LineClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("shipped_defaults")]

HAPPY = "4242424242424242"


@pytest.fixture
def webhooks():  # type: ignore[no-untyped-def]
    server = MerchantServer().start()
    yield server
    server.stop()


@pytest.fixture
def terminal(webhooks):  # type: ignore[no-untyped-def]
    terminal = TerminalFactory(merchant=MerchantFactory())
    outbox.webhook_endpoint_create(merchant_pk=terminal.merchant_id, url=webhooks.url + "hooks")
    return terminal


@pytest.fixture
def listeners():  # type: ignore[no-untyped-def]
    started: list[ListenerProcess] = []

    def start(**env: str) -> ListenerProcess:
        process = ListenerProcess(env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture(autouse=True)
def _ledger_of_this_test(own_sandbox_ledger):  # type: ignore[no-untyped-def]
    """The listener, the worker and this process share a ledger no other test wrote."""
    return own_sandbox_ledger


def ledger() -> list[str]:
    path = Path(settings.SANDBOX_ACQUIRER_LEDGER)
    return path.read_text().splitlines() if path.exists() else []


def pay(terminal, token: str, card: str = HAPPY) -> Transaction:  # type: ignore[no-untyped-def]
    _load.cache_clear()
    return services.payment_sale_with_token(
        terminal_pk=terminal.pk, token=token, method=PaymentMethod.CARD, amount="30.00", card_type="VISA",
        card_number=card, pin="2580",
    )


def kill_mid_payment(listeners, terminal, card: str, *, seen_by_acquirer: bool, **env: str):  # type: ignore[no-untyped-def]
    """Pay ``card`` through a real listener and SIGKILL it once the processing row is
    committed (and, if ``seen_by_acquirer``, once the acquirer has recorded it),
    before it can answer. Returns the transaction and the token."""
    listener = listeners(**env)
    client = LineClient(listener.port)
    assert client.auth(terminal)["authenticated"] is True
    token = client.token()
    client.send("/payment/card", {"token": token, "card_type": "VISA", "card_number": card, "pin": "2580",
                                  "amount": "30.00"})

    def in_flight() -> bool:
        txn = Transaction.objects.filter(token__value=token).first()
        if txn is None or txn.status != TransactionStatus.PROCESSING:
            return False
        return not seen_by_acquirer or any(line.startswith(f"A {txn.pk} ") for line in ledger())

    wait_until(in_flight, timeout=30, message=f"the payment never got in flight:\n{listener.log()}")
    listener.kill()
    assert client.file.readline() == b""  # no answer: the connection died with the listener
    client.close()
    return Transaction.objects.get(token__value=token), token


def test_a_listener_killed_after_the_acquirer_approved_is_settled_by_reversal(  # type: ignore[no-untyped-def]
    listeners, terminal, webhooks, celery_processes
) -> None:
    """The sandbox's timeout card: the acquirer approved (its ledger says so), the
    listener died before it could answer. Nobody was told: the resolver reverses it."""
    txn, token = kill_mid_payment(
        listeners, terminal, TIMEOUT_CARD, seen_by_acquirer=True,
        ACQUIRER_TIMEOUT_SECONDS="120", PAYMENTS_RESOLVE_AFTER_SECONDS="121",
    )
    assert txn.status == TransactionStatus.PROCESSING and not txn.events.exists()
    with pytest.raises(TokenInvalid):  # held: repeating the payment with this token is refused
        pay(terminal, token)
    celery_processes("worker", env=RESOLVER_ENV)
    celery_processes("beat", env=RESOLVER_ENV)
    wait_until(lambda: Transaction.objects.get(pk=txn.pk).status != TransactionStatus.PROCESSING, timeout=120,
               message="the resolver did not settle the payment")
    txn.refresh_from_db()
    assert txn.status == TransactionStatus.VOIDED and txn.failure_code == "reversed_unknown_outcome"
    assert txn.captured_amount == 0 and txn.authorized_amount == txn.amount and txn.authorization_code
    assert f"R {txn.pk}" in ledger()  # reversed at the acquirer
    assert list(Event.objects.filter(transaction=txn).values_list("type", flat=True)) == [EventType.PAYMENT_CANCELLED]
    wait_until(lambda: any(r.path == "/hooks" for r in webhooks.received), timeout=60,
               message="payment.cancelled was not delivered")
    delivered = json.loads(next(r for r in webhooks.received if r.path == "/hooks").body)
    assert delivered["type"] == "payment.cancelled" and delivered["data"]["transaction"] == txn.pk
    with pytest.raises(TokenInvalid):  # still one token, one payment
        pay(terminal, token)


def test_a_listener_killed_before_the_acquirer_saw_the_payment_is_declined_and_frees_the_token(  # type: ignore[no-untyped-def]
    listeners, terminal, celery_processes
) -> None:
    """Killed while the (slow) acquirer had not recorded anything: the inquiry finds
    nothing, the payment is declined, and the token may be used again."""
    txn, token = kill_mid_payment(
        listeners, terminal, HAPPY, seen_by_acquirer=False,
        PAYMENTS_ACQUIRER="tests.terminals.acquirers.SlowAcquirer", SLOW_ACQUIRER_SECONDS="120",
        ACQUIRER_TIMEOUT_SECONDS="120", PAYMENTS_RESOLVE_AFTER_SECONDS="121",
    )
    with pytest.raises(TokenInvalid):
        pay(terminal, token)
    celery_processes("worker", env=RESOLVER_ENV)
    celery_processes("beat", env=RESOLVER_ENV)
    wait_until(lambda: Transaction.objects.get(pk=txn.pk).status != TransactionStatus.PROCESSING, timeout=120,
               message="the resolver did not settle the payment")
    txn.refresh_from_db()
    assert txn.status == TransactionStatus.DECLINED and txn.failure_code == "acquirer_no_record"
    assert list(Event.objects.filter(transaction=txn).values_list("type", flat=True)) == [EventType.PAYMENT_FAILED]
    assert pay(terminal, token).status == TransactionStatus.CAPTURED  # the token's next try
