"""Concurrency with real threads, each with its own database connection.

The invariants: one token, one payment; refunds never exceed the captured
amount; an authorization is captured (or voided) once. PostgreSQL holds them
with row locks and conditional UPDATEs; SQLite with IMMEDIATE transactions
(one writer at a time). Both run these tests.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal

import pytest

from payments import cards, services
from payments.errors import AmountExceedsRemaining, InvalidState, TokenInvalid, TokenTriesExhausted
from payments.models import Refund, Token, Transaction
from payments.states import TOKEN_HOLDING_STATUSES, PaymentMethod, TransactionStatus
from tests.support.threads import run_at_once
from tests.factories import AuthorizedTransactionFactory, CapturedTransactionFactory, TerminalFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("shipped_defaults")]

THREADS = 8


def kinds(results: list[object]) -> Counter[str]:
    return Counter(type(result).__name__ for result in results)


def unexpected(results: list[object], *allowed: type) -> list[object]:
    return [r for r in results if not isinstance(r, (Transaction, Refund, *allowed))]


@pytest.fixture
def slow_screening(monkeypatch):  # type: ignore[no-untyped-def]
    """Hold the token lock a little longer (screening runs inside the payment's
    transaction), so that the other threads surely queue on it."""
    real = cards.card_facts

    def slow(pan: str) -> cards.CardFacts:
        time.sleep(0.05)
        return real(pan)

    monkeypatch.setattr(cards, "card_facts", slow)


@pytest.mark.parametrize("try_count", [-1, 3])
def test_one_token_many_payments_exactly_one_approved(try_count, slow_screening) -> None:  # type: ignore[no-untyped-def]
    terminal = TerminalFactory()
    token = services.token_issue(terminal_pk=terminal.pk, payment_type=PaymentMethod.CARD, try_count=try_count)

    def pay() -> Transaction:
        return services.payment_sale_with_token(
            terminal_pk=terminal.pk, token=token.value, method=PaymentMethod.CARD, amount="12.34",
            card_type="VISA", card_number="4242424242424242", pin="2580",
        )

    results = run_at_once([pay] * THREADS)
    assert not unexpected(results, TokenInvalid, TokenTriesExhausted), results
    approved = [r for r in results if isinstance(r, Transaction)]
    assert len(approved) == 1, kinds(results)
    assert approved[0].status == TransactionStatus.CAPTURED
    holding = Transaction.objects.filter(token=token, status__in=TOKEN_HOLDING_STATUSES)
    assert list(holding.values_list("pk", flat=True)) == [approved[0].pk]
    assert Transaction.objects.filter(token=token).count() == 1
    used = Token.objects.get(pk=token.pk).tries_used
    if try_count == -1:
        assert kinds(results) == Counter({"Transaction": 1, "TokenInvalid": THREADS - 1})
        assert used == 1  # the losers were refused at the token check, before using a try
    else:
        assert used <= try_count


def test_one_token_while_the_acquirer_is_slow(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The winner's transaction is 'processing' (committed, token held) while the others arrive."""
    from payments.acquirers.sandbox import SandboxAcquirer

    real = SandboxAcquirer.authorize

    def slow_authorize(self, request):  # type: ignore[no-untyped-def]
        time.sleep(0.3)
        return real(self, request)

    monkeypatch.setattr(SandboxAcquirer, "authorize", slow_authorize)
    terminal = TerminalFactory()
    token = services.token_issue(terminal_pk=terminal.pk, payment_type=PaymentMethod.CONTACTLESS, try_count=-1)

    def pay() -> Transaction:
        return services.payment_sale_with_token(
            terminal_pk=terminal.pk, token=token.value, method=PaymentMethod.CONTACTLESS, amount="5",
            card_type="MASTER", card_number="5555555555554444",
        )

    results = run_at_once([pay] * THREADS)
    assert kinds(results) == Counter({"Transaction": 1, "TokenInvalid": THREADS - 1}), results


def test_concurrent_refunds_never_exceed_captured() -> None:
    txn = CapturedTransactionFactory(amount=Decimal("100.00"))

    def refund() -> Refund:
        return services.refund_request(transaction_id=txn.pk, merchant_pk=txn.merchant_id, amount="30.00")

    results = run_at_once([refund] * THREADS)
    assert kinds(results) == Counter({"Refund": 3, "AmountExceedsRemaining": THREADS - 3}), results
    txn.refresh_from_db()
    assert txn.refunded_amount == Decimal("90.00") == sum(r.amount for r in txn.refunds.all())
    assert txn.status == TransactionStatus.PARTIALLY_REFUNDED


def test_concurrent_refunds_filling_the_captured_amount() -> None:
    txn = CapturedTransactionFactory(amount=Decimal("100.00"))
    amounts = ["25", "25", "25", "25", "25", "10", "40", "0.01"]

    def refund(amount: str) -> Callable[[], Refund]:
        return lambda: services.refund_request(transaction_id=txn.pk, merchant_pk=txn.merchant_id, amount=amount)

    results = run_at_once([refund(a) for a in amounts])
    assert not unexpected(results, AmountExceedsRemaining, InvalidState), results
    accepted = sum((r.amount for r in results if isinstance(r, Refund)), Decimal("0"))
    txn.refresh_from_db()
    assert accepted == txn.refunded_amount <= txn.captured_amount
    assert txn.refunded_amount == sum(r.amount for r in txn.refunds.all())
    expected_status = (
        TransactionStatus.REFUNDED if txn.refunded_amount == txn.captured_amount
        else TransactionStatus.PARTIALLY_REFUNDED
    )
    assert txn.status == expected_status


def test_concurrent_refunds_with_one_reference_make_one_refund() -> None:
    txn = CapturedTransactionFactory(amount=Decimal("100.00"))

    def refund() -> Refund:
        return services.refund_request(
            transaction_id=txn.pk, merchant_pk=txn.merchant_id, amount="10", reference="R-42"
        )

    results = run_at_once([refund] * THREADS)
    assert kinds(results) == Counter({"Refund": THREADS}), results
    assert len({r.pk for r in results}) == 1  # type: ignore[attr-defined]
    txn.refresh_from_db()
    assert txn.refunded_amount == Decimal("10.00") and txn.refunds.count() == 1


def test_concurrent_captures_one_wins() -> None:
    txn = AuthorizedTransactionFactory(amount=Decimal("70.00"))

    def capture() -> Transaction:
        return services.payment_capture(transaction_id=txn.pk, merchant_pk=txn.merchant_id)

    results = run_at_once([capture] * THREADS)
    assert kinds(results) == Counter({"Transaction": 1, "InvalidState": THREADS - 1}), results
    txn.refresh_from_db()
    assert txn.status == TransactionStatus.CAPTURED and txn.captured_amount == Decimal("70.00")


def test_capture_racing_void_one_wins() -> None:
    txn = AuthorizedTransactionFactory(amount=Decimal("70.00"))

    def capture() -> Transaction:
        return services.payment_capture(transaction_id=txn.pk, merchant_pk=txn.merchant_id)

    def void() -> Transaction:
        return services.payment_void(transaction_id=txn.pk, merchant_pk=txn.merchant_id)

    results = run_at_once([capture, void] * (THREADS // 2))
    assert kinds(results) == Counter({"Transaction": 1, "InvalidState": THREADS - 1}), results
    (winner,) = [r for r in results if isinstance(r, Transaction)]
    txn.refresh_from_db()
    assert txn.status == winner.status
    assert txn.status in (TransactionStatus.CAPTURED, TransactionStatus.VOIDED)
    assert txn.captured_amount == (Decimal("70.00") if txn.status == TransactionStatus.CAPTURED else 0)
