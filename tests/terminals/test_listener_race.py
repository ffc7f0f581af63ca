"""Two payments racing on one token over two connections: exactly one is approved."""
from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from payments.models import Transaction
from payments.states import TransactionStatus

from .conftest import HAPPY_VISA, LineClient

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_connections_paying_with_one_token_get_one_approval(listener, terminal) -> None:
    first, second = LineClient(listener.port), LineClient(listener.port)
    try:
        for client in (first, second):
            assert client.auth(terminal)["authenticated"] is True
        for round_number in range(5):
            token = first.token(try_count=-1)
            payment = {"token": token, "card_type": "VISA", "card_number": HAPPY_VISA, "pin": "4321", "amount": "10"}
            frame = b'{"path": "/payment/card", "parameters": %s}\n' % json.dumps(payment).encode()
            barrier = threading.Barrier(2)
            answers: list[dict[str, Any]] = []

            def pay(client: LineClient) -> None:
                barrier.wait(5)
                client.send_raw(frame)
                answers.append(client.read())

            threads = [threading.Thread(target=pay, args=(client,)) for client in (first, second)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
            approved = [a for a in answers if "transaction" in a]
            refused = [a for a in answers if "error_code" in a]
            assert len(approved) == 1 and len(refused) == 1, (round_number, answers)
            assert refused[0] == {"error": "Wrong token", "error_code": 107}
            assert Transaction.objects.filter(token__value=token, status=TransactionStatus.CAPTURED).count() == 1
    finally:
        first.close()
        second.close()


def test_json_lines_and_http_racing_on_one_token(listener, http, terminal) -> None:
    lines_client = LineClient(listener.port)
    http_client = http()
    try:
        assert lines_client.auth(terminal)["authenticated"] is True
        token = lines_client.token(try_count=-1)
        query = f"/payment/card?token={token}&card_type=VISA&card_number={HAPPY_VISA}&pin=4321&amount=10"
        barrier = threading.Barrier(2)
        results: dict[str, Any] = {}

        def over_lines() -> None:
            barrier.wait(5)
            results["lines"] = lines_client.request(
                "/payment/card",
                {"token": token, "card_type": "VISA", "card_number": HAPPY_VISA, "pin": "4321", "amount": "10"},
            )

        def over_http() -> None:
            barrier.wait(5)
            results["http"] = http_client.get(query, auth=(terminal.terminal_id, terminal.secret)).json()

        threads = [threading.Thread(target=over_lines), threading.Thread(target=over_http)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        approved = [r for r in results.values() if "transaction" in r]
        assert len(results) == 2 and len(approved) == 1, results
    finally:
        lines_client.close()
