"""esipay when the acquirer's answer is lost: 500 ``outcome_unknown`` (never a 400
"declined" for a charge that may have happened), the cid held until the
gateway has settled the payment, then a repeat answers the settled outcome."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from payments import services
from payments.acquirers.base import AcquirerTimeout, _load
from payments.acquirers.sandbox import TIMEOUT_CARD, SandboxAcquirer
from payments.models import Event, Transaction
from payments.states import AcquirerOperation, TransactionStatus

pytestmark = pytest.mark.django_db

FUTURE = str(date.today().year + 3)
VISA = "4242424242424242"


@pytest.fixture(autouse=True)
def sandbox(tmp_path, settings):  # type: ignore[no-untyped-def]
    settings.SANDBOX_ACQUIRER_LEDGER = str(tmp_path / "sandbox.ledger")
    settings.ACQUIRER_TIMEOUT_SECONDS = 0.2
    settings.ESIPAY_REPEAT_WAIT_SECONDS = 0.5
    _load.cache_clear()
    yield
    _load.cache_clear()


def pay(merchant, cid: str = "order-9", card: str = VISA, amount: str = "12.50"):  # type: ignore[no-untyped-def]
    return Client().get(f"/cardpay/{merchant.uuid}/{cid}/{card}/12/{FUTURE}/{amount}", REMOTE_ADDR="127.0.0.1")


def settle(txn_pk: int) -> None:
    """The resolver's run, once the row is old enough."""
    Transaction.objects.filter(pk=txn_pk).update(updated_at=timezone.now() - timedelta(hours=1))
    services.payments_resolve_unknown()


def test_an_authorization_timeout_is_500_outcome_unknown_and_holds_the_cid(merchant, return_url) -> None:  # type: ignore[no-untyped-def]
    first = pay(merchant, card=TIMEOUT_CARD)
    assert first.status_code == 500
    body = first.json()
    assert body["code"] == "outcome_unknown" and body["error"].startswith("Outcome unknown")
    assert "declined" not in body["error"].lower()
    txn = Transaction.objects.get(pk=body["transaction"])
    assert txn.status == TransactionStatus.PROCESSING and txn.operation == AcquirerOperation.AUTHORIZE
    assert not return_url.received  # never confirmed: nothing will be captured
    # The cid is held: the same request waits, then says the outcome is still unknown ...
    repeat = pay(merchant, card=TIMEOUT_CARD)
    assert repeat.status_code == 500 and repeat.json()["code"] == "outcome_unknown"
    assert repeat.json()["transaction"] == txn.pk
    # ... and another card or amount under this cid is refused, not paid.
    other = pay(merchant, card=VISA)
    assert other.status_code == 400 and other.json()["code"] == "invalid_request"
    assert Transaction.objects.count() == 1
    settle(txn.pk)
    txn.refresh_from_db()
    assert txn.status == TransactionStatus.VOIDED and txn.failure_code == "reversed_unknown_outcome"
    assert list(Event.objects.filter(transaction=txn).values_list("type", flat=True)) == ["payment.cancelled"]
    # Settled as cancelled: the cid is free, a new attempt (the contract's rule after a cancellation).
    again = pay(merchant, card=VISA)
    assert again.status_code == 200 and again.json()["transaction"] != txn.pk


def test_a_capture_whose_answer_was_lost_answers_200_to_a_repeat_once_settled(  # type: ignore[no-untyped-def]
    merchant, return_url, monkeypatch
) -> None:
    real = SandboxAcquirer.capture

    def captured_but_lost(self, **kwargs):  # type: ignore[no-untyped-def]
        real(self, **kwargs)
        raise AcquirerTimeout("read timeout")

    monkeypatch.setattr(SandboxAcquirer, "capture", captured_but_lost)
    first = pay(merchant)
    assert first.status_code == 500 and first.json()["code"] == "outcome_unknown"
    txn = Transaction.objects.get(pk=first.json()["transaction"])
    assert txn.status == TransactionStatus.PROCESSING and txn.operation == AcquirerOperation.CAPTURE
    assert len(return_url.received) == 1
    monkeypatch.undo()
    settle(txn.pk)
    txn.refresh_from_db()
    assert txn.status == TransactionStatus.CAPTURED
    repeat = pay(merchant)
    assert repeat.status_code == 200
    assert repeat.json()["transaction"] == txn.pk and repeat.json()["repeated"] is True
    assert len(return_url.received) == 1  # a repeat never calls the return URL again
    assert list(Event.objects.filter(transaction=txn).values_list("type", flat=True)) == ["payment.succeeded"]


def test_a_definite_acquirer_failure_is_still_500_acquirer_failure(merchant) -> None:  # type: ignore[no-untyped-def]
    response = pay(merchant, card="4000000000000119")
    assert response.status_code == 500 and response.json()["code"] == "acquirer_failure"
    assert Transaction.objects.get().status == TransactionStatus.ERROR
