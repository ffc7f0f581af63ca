"""PostgreSQL drops the listener's connections while terminals pay (either database path).

``pg_terminate_backend`` on every backend of the listener, several times,
while 6 terminals pay in a loop: each answer is a payment, or an error in the
contract's vocabulary (111 "Declined internal error" when nothing was sent to
the acquirer, 111 "Outcome unknown" after); no connection hangs or closes;
once the kills stop every payment succeeds again (the listener reconnected);
and the database holds no payment the terminal was not told about except
those left ``processing`` for the resolver.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection

from payments.models import Token, Transaction
from payments.states import TOKEN_HOLDING_STATUSES, TransactionStatus

from .conftest import HAPPY_VISA, LineClient

pytestmark = pytest.mark.django_db(transaction=True)

PAYERS = 6
DECLINED_INTERNAL = {"error": "Declined internal error", "error_code": 111}


def _kill_listener_backends() -> int:
    """Terminate every backend of the test database but this one (the listener's)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return int(cursor.fetchone()[0])


def _pay(client: LineClient) -> tuple[dict[str, Any], dict[str, Any] | None]:
    token_answer = client.request("/token", {"type": "CARD"})
    if "token" not in token_answer:
        return token_answer, None
    payment = {"token": token_answer["token"], "card_type": "VISA", "card_number": HAPPY_VISA, "pin": "4321",
               "amount": "12.50"}
    return token_answer, client.request("/payment/card", payment)


def _acceptable(answer: dict[str, Any]) -> bool:
    if "token" in answer or "transaction" in answer or answer == DECLINED_INTERNAL:
        return True
    return answer.get("error_code") == 111 and str(answer.get("error", "")).startswith("Outcome unknown:")


def test_connections_killed_under_load_are_answered_and_reconnected(
    listener, terminal, require_postgres
) -> None:  # type: ignore[no-untyped-def]
    clients = [LineClient(listener.port) for _ in range(PAYERS)]
    for client in clients:
        assert client.auth(terminal)["authenticated"] is True
    stop = threading.Event()
    answers: list[dict[str, Any]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def payer(client: LineClient) -> None:
        try:
            while not stop.is_set():
                token_answer, payment_answer = _pay(client)
                with lock:
                    answers.append(token_answer)
                    if payment_answer is not None:
                        answers.append(payment_answer)
        except BaseException as exc:  # a hang (socket timeout) or a closed connection
            failures.append(exc)

    threads = [threading.Thread(target=payer, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    killed = 0
    try:
        time.sleep(0.5)
        for _ in range(4):
            killed += _kill_listener_backends()
            time.sleep(0.4)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    assert not failures, failures
    assert killed > 0  # the listener's backends existed and were cut
    assert answers and all(_acceptable(a) for a in answers), [a for a in answers if not _acceptable(a)][:5]
    assert any("transaction" in a for a in answers)
    assert any(not ("token" in a or "transaction" in a) for a in answers)  # the cuts were felt
    # Reconnected: after the cuts, every request of every terminal succeeds.
    for client in clients:
        for _ in range(3):
            token_answer, payment_answer = _pay(client)
            assert "token" in token_answer, token_answer
            assert payment_answer is not None and "transaction" in payment_answer, payment_answer
            answers.append(payment_answer)
        client.close()
    # The database agrees with what terminals were told: a captured payment was
    # answered with its transaction, or its answer was lost and said "unknown".
    told = {a["transaction"] for a in answers if "transaction" in a}
    unknown = sum(1 for a in answers if str(a.get("error", "")).startswith("Outcome unknown:"))
    captured = set(Transaction.objects.filter(status=TransactionStatus.CAPTURED).values_list("pk", flat=True))
    assert told <= captured
    assert len(captured - told) <= unknown
    # One holding payment per token, whatever was cut.
    for token_pk in Token.objects.values_list("pk", flat=True):
        assert Transaction.objects.filter(token_id=token_pk, status__in=TOKEN_HOLDING_STATUSES).count() <= 1
