"""esipay refunds over HTTP: all that remains, partial, several, never beyond what
was captured — also with many refund calls at once (real threads)."""
from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
from django.test import Client

from payments.models import Refund, Transaction
from payments.states import RefundStatus, TransactionStatus
from tests.support.threads import run_at_once
from tests.factories import CapturedTransactionFactory, MerchantFactory

from .test_cardpay import pay

pytestmark = pytest.mark.django_db


def refund(merchant, transaction, amount: str | None = None, address: str = "127.0.0.1"):  # type: ignore[no-untyped-def]
    url = f"/cardpay/{merchant.uuid}/{transaction}" + (f"/{amount}" if amount is not None else "")
    return Client().get(url, REMOTE_ADDR=address)


@pytest.fixture
def paid(merchant):  # type: ignore[no-untyped-def]
    response = pay(merchant, cid="to-refund", amount="100.00")
    assert response.status_code == 200
    return Transaction.objects.get(pk=response.json()["transaction"])


def test_full_refund_is_accepted_and_a_second_is_400(merchant, paid) -> None:  # type: ignore[no-untyped-def]
    response = refund(merchant, paid.pk)
    assert response.status_code == 200
    body = response.json()
    assert body["transaction"] == paid.pk and body["amount"] == "100.00" and body["status"] == "pending"
    accepted = Refund.objects.get(pk=body["refund"])
    assert accepted.status == RefundStatus.PENDING and accepted.amount == Decimal("100.00")
    paid.refresh_from_db()
    assert paid.refunded_amount == Decimal("100.00") and paid.status == TransactionStatus.REFUNDED
    again = refund(merchant, paid.pk)
    assert again.status_code == 400
    assert refund(merchant, paid.pk, "0.01").status_code == 400


def test_several_partial_refunds_never_beyond_what_was_captured(merchant, paid) -> None:  # type: ignore[no-untyped-def]
    assert refund(merchant, paid.pk, "30").status_code == 200
    assert refund(merchant, paid.pk, "30.00").status_code == 200
    over = refund(merchant, paid.pk, "40.01")
    assert over.status_code == 400 and over.json()["code"] == "amount_exceeds_remaining"
    assert "40.00" in over.json()["error"]
    assert refund(merchant, paid.pk, "40").status_code == 200
    assert refund(merchant, paid.pk, "0.01").status_code == 400
    paid.refresh_from_db()
    assert paid.refunded_amount == paid.captured_amount == Decimal("100.00")
    assert sorted(paid.refunds.values_list("amount", flat=True)) == [Decimal("30"), Decimal("30"), Decimal("40")]


def test_refund_of_the_rest_after_a_partial_one(merchant, paid) -> None:  # type: ignore[no-untyped-def]
    assert refund(merchant, paid.pk, "25.50").status_code == 200
    rest = refund(merchant, paid.pk)
    assert rest.status_code == 200 and rest.json()["amount"] == "74.50"


@pytest.mark.parametrize("amount", ["0", "-5", "1.001", "abc", "1,5"])
def test_bad_refund_amount_is_400(merchant, paid, amount) -> None:  # type: ignore[no-untyped-def]
    response = refund(merchant, paid.pk, amount)
    assert response.status_code == 400 and response.json()["code"] == "invalid_amount"
    assert not Refund.objects.exists()


@pytest.mark.parametrize("transaction", ["999999", "abc", "12345678901234567890123"])
def test_unknown_transaction_is_400(merchant, transaction) -> None:  # type: ignore[no-untyped-def]
    response = refund(merchant, transaction)
    assert response.status_code == 400 and response.json()["code"] == "transaction_not_found"


def test_another_merchants_transaction_is_400(merchant, paid, return_url) -> None:  # type: ignore[no-untyped-def]
    other = MerchantFactory(allowed_ips=["127.0.0.1"], callback_url=return_url.url)
    assert refund(other, paid.pk).status_code == 400
    assert not Refund.objects.exists()


def test_refund_from_an_unregistered_address_is_403(merchant, paid) -> None:  # type: ignore[no-untyped-def]
    assert refund(merchant, paid.pk, address="198.51.100.1").status_code == 403
    assert not Refund.objects.exists()


def test_a_cancelled_or_declined_payment_cannot_be_refunded(merchant, return_url) -> None:  # type: ignore[no-untyped-def]
    return_url.answer = lambda received: (500, b"")
    cancelled = pay(merchant, cid="c").json()["transaction"]
    declined = pay(merchant, cid="d", card="4000000000000002").json()["transaction"]
    assert refund(merchant, cancelled).status_code == 400
    assert refund(merchant, declined).status_code == 400


@pytest.mark.django_db(transaction=True)
def test_many_refund_calls_at_once_never_exceed_the_captured_amount(shipped_defaults) -> None:  # type: ignore[no-untyped-def]
    """10 merchant threads refund 15.00 of a 100.00 payment at the same instant:
    exactly 6 are accepted (90.00), the other 4 get 400. PostgreSQL holds it with
    the transaction's row lock (CI); SQLite with its single writer."""
    merchant = MerchantFactory(allowed_ips=["127.0.0.1"])
    txn = CapturedTransactionFactory(merchant=merchant, amount=Decimal("100.00"))
    statuses = run_at_once([lambda: refund(merchant, txn.pk, "15.00").status_code] * 10)
    assert Counter(statuses) == {200: 6, 400: 4}, statuses
    txn.refresh_from_db()
    assert txn.refunded_amount == Decimal("90.00") and txn.status == TransactionStatus.PARTIALLY_REFUNDED
    assert Refund.objects.filter(transaction=txn).count() == 6
