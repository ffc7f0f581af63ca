"""The listener and the acquirer: a slow acquirer stalls nobody else, and an
answer that is lost is told as unknown (111 "Outcome unknown: ..."), never as
"Declined", with the token held until the gateway has settled the payment.

Real sockets against an in-process listener; tests/celery/test_unknown_outcomes.py
kills a real ``runterminalserver`` process.
"""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from listeners.database import AsyncDatabase, DatabaseUnavailable
from payments import outbox, services
from payments.acquirers.base import _load
from payments.acquirers.sandbox import TIMEOUT_CARD
from payments.models import Event, Transaction
from payments.services import sale_async
from payments.states import EventType, TransactionStatus
from tests.factories import TerminalFactory

from . import acquirers
from .conftest import HAPPY_VISA, HttpClient, LineClient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def sandbox(tmp_path, settings):  # type: ignore[no-untyped-def]
    settings.SANDBOX_ACQUIRER_LEDGER = str(tmp_path / "sandbox.ledger")
    _load.cache_clear()
    yield
    _load.cache_clear()


def card(token: str, number: str = HAPPY_VISA) -> dict[str, str]:
    return {"token": token, "card_type": "VISA", "card_number": number, "pin": "4321", "amount": "20.00"}


def unknown(answer: dict[str, object], transaction: int) -> bool:
    message = str(answer.get("error", ""))
    return (
        answer.get("error_code") == 111 and message.startswith("Outcome unknown:")
        and "Declined" not in message and f"transaction {transaction}" in message
    )


def settle() -> dict[str, int]:
    Transaction.objects.filter(status=TransactionStatus.PROCESSING).update(
        updated_at=timezone.now() - timedelta(hours=1)
    )
    return services.payments_resolve_unknown()


def test_a_timeout_is_111_outcome_unknown_and_the_token_stays_held(client: LineClient, settings) -> None:  # type: ignore[no-untyped-def]
    settings.ACQUIRER_TIMEOUT_SECONDS = 0.3
    token = client.token()
    answer = client.request("/payment/card", card(token, TIMEOUT_CARD))
    txn = Transaction.objects.get()
    assert unknown(answer, txn.pk), answer
    assert txn.status == TransactionStatus.PROCESSING
    # Repeating the payment with the same token is refused: it may already be paid.
    assert client.request("/payment/card", card(token))["error_code"] == 107
    assert settle() == {"voided": 1}
    txn.refresh_from_db()
    assert txn.status == TransactionStatus.VOIDED and txn.failure_code == "reversed_unknown_outcome"
    assert client.request("/payment/card", card(token))["error_code"] == 107  # one token, one payment


def test_over_http_the_unknown_outcome_is_status_200_error_111(http, terminal, settings) -> None:  # type: ignore[no-untyped-def]
    settings.ACQUIRER_TIMEOUT_SECONDS = 0.3
    client: HttpClient = http()
    auth = (terminal.terminal_id, terminal.secret)
    token = client.get("/token?type=CONTACTLESS", auth=auth).json()["token"]
    response = client.get(
        f"/payment/contactless?token={token}&card_type=VISA&card_number={TIMEOUT_CARD}&amount=5", auth=auth
    )
    assert response.status == 200 and unknown(response.json(), Transaction.objects.get().pk)


def test_a_slow_acquirer_does_not_stall_auth_and_token_of_other_terminals(  # type: ignore[no-untyped-def]
    start_listener, terminal, settings, monkeypatch
) -> None:
    """More payments waiting at the acquirer than the listener has database
    threads: other terminals still authenticate and get tokens, because no
    database thread waits for the acquirer (it has its own pool)."""
    monkeypatch.setattr(acquirers.BlockingAcquirer, "entered", threading.Semaphore(0))
    monkeypatch.setattr(acquirers.BlockingAcquirer, "release", threading.Event())
    settings.PAYMENTS_ACQUIRER = "tests.terminals.acquirers.BlockingAcquirer"
    settings.ACQUIRER_TIMEOUT_SECONDS = 30
    running = start_listener(db_threads=2)
    payers = [LineClient(running.port) for _ in range(4)]
    try:
        for payer in payers:
            assert payer.auth(terminal)["authenticated"] is True
            payer.send("/payment/card", card(payer.token()))
        for _ in payers:  # all four are at the acquirer, twice the database threads
            assert acquirers.BlockingAcquirer.entered.acquire(timeout=10)
        neighbour = TerminalFactory(merchant=terminal.merchant)  # another till of the shop
        other = LineClient(running.port)
        assert other.auth(neighbour)["authenticated"] is True
        assert len(other.token()) == 64
        http = HttpClient(running.port)
        assert http.get("/token?type=CHECK", auth=(neighbour.terminal_id, neighbour.secret)).status == 200
        assert not acquirers.BlockingAcquirer.release.is_set()  # the payments are still waiting
        acquirers.BlockingAcquirer.release.set()
        answers = [payer.read() for payer in payers]
        assert all(isinstance(a.get("transaction"), int) for a in answers), answers
        other.close()
        http.close()
    finally:
        acquirers.BlockingAcquirer.release.set()
        for payer in payers:
            payer.close()


def test_the_database_failing_while_recording_is_an_unknown_outcome(client: LineClient, monkeypatch, database_path) -> None:  # type: ignore[no-untyped-def]
    """Injected: the statement that records the acquirer's approval fails as a
    dropped connection would (any database, either path). The card was charged: "unknown"."""
    def dropped(**kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("server closed the connection unexpectedly")

    token = client.token()
    if database_path == "async":
        real_fetchrow = AsyncDatabase.fetchrow

        async def fetchrow(self, sql, args):  # type: ignore[no-untyped-def]
            if sql.startswith("WITH changed AS"):  # the recording statement
                raise DatabaseUnavailable("ConnectionDoesNotExistError")
            return await real_fetchrow(self, sql, args)

        monkeypatch.setattr(AsyncDatabase, "fetchrow", fetchrow)
    else:
        monkeypatch.setattr(outbox, "event_emit_with_change", dropped)
    answer = client.request("/payment/card", card(token))
    monkeypatch.undo()
    txn = Transaction.objects.get()
    assert unknown(answer, txn.pk), answer
    assert txn.status == TransactionStatus.PROCESSING
    assert settle() == {"voided": 1}
    assert list(Event.objects.filter(transaction=txn).values_list("type", flat=True)) == [EventType.PAYMENT_CANCELLED]


def test_a_bug_after_the_acquirer_answered_is_an_unknown_outcome(client: LineClient, monkeypatch, database_path) -> None:  # type: ignore[no-untyped-def]
    def bug(*args):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug while recording")

    token = client.token()
    if database_path == "async":
        monkeypatch.setattr(sale_async, "payment_authorization_record_async", bug)
    else:
        monkeypatch.setattr(services, "payment_authorization_record", bug)
    answer = client.request("/payment/card", card(token))
    assert unknown(answer, Transaction.objects.get().pk), answer


def test_pg_terminate_backend_while_recording(client: LineClient, terminal, settings, monkeypatch, require_postgres) -> None:  # type: ignore[no-untyped-def]
    """Real: the acquirer approves, then PostgreSQL drops the listener's connections
    before it records; the terminal hears "unknown", the listener reconnects for
    the next request, and the resolver reverses the approval."""
    token = client.token()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        own = cursor.fetchone()[0]
    monkeypatch.setattr(acquirers.DatabaseDroppingAcquirer, "spare", {own})
    settings.PAYMENTS_ACQUIRER = "tests.terminals.acquirers.DatabaseDroppingAcquirer"
    answer = client.request("/payment/card", card(token))
    txn = Transaction.objects.get()
    assert unknown(answer, txn.pk), answer
    assert txn.status == TransactionStatus.PROCESSING
    settings.PAYMENTS_ACQUIRER = "payments.acquirers.sandbox.SandboxAcquirer"
    # The listener's database threads reconnect: a cut connection costs at most
    # the one request that finds it cut, per thread (4 here), then all succeed.
    answers = [client.request("/token", {"type": "CARD"}) for _ in range(8)]
    assert all("token" in a for a in answers[4:]), answers
    assert all("token" in a or a == {"error": "Declined internal error", "error_code": 111} for a in answers)
    assert settle() == {"voided": 1}
