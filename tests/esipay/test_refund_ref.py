"""esipay refunds with ``?ref=<merchant refund id>`` (contracts/esipay.md): a retry
with the same ref answers the same refund and refunds nothing more, also when the
retries arrive at the same instant (real threads; PostgreSQL in CI, SQLite's single
writer on a laptop); the same ref with another amount is 400; without a ref every
call is a new refund."""
from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
from django.test import Client

from payments.models import Refund, Transaction
from payments.states import TransactionStatus
from tests.factories import CapturedTransactionFactory, MerchantFactory
from tests.support.threads import run_at_once

pytestmark = pytest.mark.django_db


def refund(merchant, transaction, amount=None, *, query: str = "", method: str = "get"):  # type: ignore[no-untyped-def]
    url = f"/cardpay/{merchant.uuid}/{transaction}" + (f"/{amount}" if amount is not None else "") + query
    return getattr(Client(), method)(url, REMOTE_ADDR="127.0.0.1")


@pytest.fixture
def paid(db, shipped_defaults):  # type: ignore[no-untyped-def]
    merchant = MerchantFactory(allowed_ips=["127.0.0.1"])
    return CapturedTransactionFactory(merchant=merchant, amount=Decimal("100.00"))


def refunded(txn: Transaction) -> Decimal:
    txn.refresh_from_db()
    return txn.refunded_amount


def test_a_repeated_ref_answers_the_same_refund_and_refunds_nothing_more(paid) -> None:  # type: ignore[no-untyped-def]
    first = refund(paid.merchant, paid.pk, "30.00", query="?ref=rf-1")
    assert first.status_code == 200
    body = first.json()
    assert body["ref"] == "rf-1" and body["amount"] == "30.00" and body["status"] == "pending"
    for method in ("get", "post", "get"):
        again = refund(paid.merchant, paid.pk, "30", query="?ref=rf-1", method=method)
        assert again.status_code == 200 and again.json()["refund"] == body["refund"]
    assert refunded(paid) == Decimal("30.00") and Refund.objects.count() == 1


def test_the_same_ref_with_another_amount_is_400(paid) -> None:  # type: ignore[no-untyped-def]
    assert refund(paid.merchant, paid.pk, "30.00", query="?ref=rf-1").status_code == 200
    other = refund(paid.merchant, paid.pk, "30.01", query="?ref=rf-1")
    assert other.status_code == 400 and other.json()["code"] == "invalid_request"
    assert "rf-1" in other.json()["error"]
    assert refunded(paid) == Decimal("30.00") and Refund.objects.count() == 1


def test_a_full_refund_with_a_ref_can_be_retried_after_the_payment_is_refunded(paid) -> None:  # type: ignore[no-untyped-def]
    first = refund(paid.merchant, paid.pk, query="?ref=all")
    assert first.status_code == 200 and first.json()["amount"] == "100.00"
    paid.refresh_from_db()
    assert paid.status == TransactionStatus.REFUNDED
    again = refund(paid.merchant, paid.pk, query="?ref=all")  # the answer was lost: the merchant retries
    assert again.status_code == 200 and again.json()["refund"] == first.json()["refund"]
    assert refund(paid.merchant, paid.pk).status_code == 400  # without the ref: a new refund, refused
    assert Refund.objects.count() == 1


def test_without_ref_each_call_is_a_new_refund(paid) -> None:  # type: ignore[no-untyped-def]
    ids = {refund(paid.merchant, paid.pk, "15.00").json()["refund"] for _ in range(3)}
    assert len(ids) == 3 and refunded(paid) == Decimal("45.00")
    assert refund(paid.merchant, paid.pk, "15.00").json()["ref"] is None


def test_a_ref_is_per_transaction(paid) -> None:  # type: ignore[no-untyped-def]
    other = CapturedTransactionFactory(merchant=paid.merchant, amount=Decimal("50.00"))
    a = refund(paid.merchant, paid.pk, "10", query="?ref=same")
    b = refund(paid.merchant, other.pk, "10", query="?ref=same")
    assert a.status_code == b.status_code == 200 and a.json()["refund"] != b.json()["refund"]


@pytest.mark.parametrize(
    "query", ["?ref=", "?ref=a%20b", "?ref=" + "x" * 65, "?ref=a&ref=b", "?ref=%C3%A9", "?ref=a/b".replace("/", "%2F")]
)
def test_a_malformed_ref_is_400_and_refunds_nothing(paid, query) -> None:  # type: ignore[no-untyped-def]
    response = refund(paid.merchant, paid.pk, "10", query=query)
    assert response.status_code == 400 and response.json()["code"] == "invalid_ref"
    assert not Refund.objects.exists()


def test_the_longest_ref_is_accepted(paid) -> None:  # type: ignore[no-untyped-def]
    ref = "A-z_0." + "9" * 58
    assert len(ref) == 64
    assert refund(paid.merchant, paid.pk, "1", query=f"?ref={ref}").json()["ref"] == ref


@pytest.mark.django_db(transaction=True)
def test_repeats_of_one_ref_at_once_make_one_refund(shipped_defaults) -> None:  # type: ignore[no-untyped-def]
    """8 merchant threads send the same refund (same ref) at the same instant."""
    merchant = MerchantFactory(allowed_ips=["127.0.0.1"])
    txn = CapturedTransactionFactory(merchant=merchant, amount=Decimal("100.00"))

    def call() -> tuple[int, object]:
        response = refund(merchant, txn.pk, "40.00", query="?ref=once")
        return response.status_code, response.json().get("refund")

    results = run_at_once([call] * 8)
    assert {status for status, _ in results} == {200}, results
    assert len({refund_id for _, refund_id in results}) == 1
    assert refunded(txn) == Decimal("40.00") and Refund.objects.filter(transaction=txn).count() == 1


@pytest.mark.django_db(transaction=True)
def test_repeats_of_several_refs_at_once_refund_each_once_within_the_captured(shipped_defaults) -> None:  # type: ignore[no-untyped-def]
    """5 refs of 30.00, each sent twice at the same instant, on 100.00: three refunds
    are accepted (90.00), each answered twice with the same refund; the two others are
    400 both times."""
    merchant = MerchantFactory(allowed_ips=["127.0.0.1"])
    txn = CapturedTransactionFactory(merchant=merchant, amount=Decimal("100.00"))

    def call(ref: str):  # type: ignore[no-untyped-def]
        def run() -> tuple[str, int, object]:
            response = refund(merchant, txn.pk, "30.00", query=f"?ref={ref}")
            return ref, response.status_code, response.json().get("refund")

        return run

    results = run_at_once([call(f"r{i}") for i in range(5)] * 2)
    by_ref: dict[str, set[tuple[int, object]]] = {}
    for ref, status, refund_id in results:  # type: ignore[misc]
        by_ref.setdefault(ref, set()).add((status, refund_id))
    assert all(len(answers) == 1 for answers in by_ref.values()), by_ref  # a ref's two calls agree
    assert Counter(status for answers in by_ref.values() for status, _ in answers) == {200: 3, 400: 2}, by_ref
    assert refunded(txn) == Decimal("90.00") and Refund.objects.filter(transaction=txn).count() == 3
