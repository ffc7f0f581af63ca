"""The two small additions to the payment core the secure API needs:
``card_verify`` (a zero-amount authorization) and ``payment_cancel`` (a void of
an authorization, or of a capture not settled yet)."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from payments import cards, errors, services
from payments.acquirers.base import AcquirerResult, Outcome
from payments.acquirers.sandbox import SandboxAcquirer
from payments.models import Event, Transaction
from payments.states import BanKind, Door, EventType, TransactionStatus
from tests.factories import MerchantFactory
from tests.support.threads import run_at_once

from .acquirers import RecordingAcquirer

pytestmark = pytest.mark.django_db
YEAR = str(timezone.now().year + 2)


def verify(number: str, **kw):  # type: ignore[no-untyped-def]
    return services.card_verify(card_number=number, policy=cards.LUHN_PAN, expiry_month="12", expiry_year=YEAR,
                                currency="EUR", **kw)


def test_a_card_is_verified_by_a_zero_amount_authorization(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PAYMENTS_ACQUIRER = "tests.secure_api.acquirers.RecordingAcquirer"
    RecordingAcquirer.seen = []
    verified = verify("4242424242424242", cvv="123")
    assert verified.facts.last4 == "4242" and verified.brand == "VISA" and verified.expiry == f"{YEAR}12"
    asked = RecordingAcquirer.seen[0]
    assert asked.amount == Decimal("0") and not asked.capture and asked.cvv == "123"
    assert not Transaction.objects.exists()  # no money moved: nothing to record


@pytest.mark.parametrize(("number", "error"), [
    ("4000000000000002", errors.Declined),
    ("4000000000000069", errors.Declined),
    ("4000000000000119", errors.AcquirerFailure),
    ("4242424242424241", errors.InvalidCardNumber),
])
def test_what_fails_verification(number: str, error: type) -> None:
    with pytest.raises(error):
        verify(number)


def test_insufficient_funds_still_verifies_the_account() -> None:
    assert verify("4000000000009995").facts.last4 == "9995"


def test_a_banned_card_or_bin_is_not_verified(shipped_defaults) -> None:  # type: ignore[no-untyped-def]
    services.ban_add(kind=BanKind.BIN, value="555555")
    with pytest.raises(errors.CardBanned):
        verify("5555555555554444")
    with pytest.raises(errors.CardExpired):
        services.card_verify(card_number="4242424242424242", policy=cards.LUHN_PAN, expiry_month="1",
                             expiry_year="2001", currency="EUR")


def _captured(merchant, amount: str = "20.00") -> Transaction:  # type: ignore[no-untyped-def]
    return services.payment_authorize(merchant_pk=merchant.pk, door=Door.SECURE_API, card_number="4242424242424242",
                                      policy=cards.LUHN_PAN, amount=amount, capture=True)


def test_cancel_voids_an_authorization_or_a_capture_of_the_day(shipped_defaults) -> None:  # type: ignore[no-untyped-def]
    merchant = MerchantFactory()
    authorized = services.payment_authorize(merchant_pk=merchant.pk, door=Door.SECURE_API,
                                            card_number="4242424242424242", policy=cards.LUHN_PAN, amount="5.00",
                                            capture=False)
    assert services.payment_cancel(transaction_id=authorized.pk, merchant_pk=merchant.pk).status == "voided"
    captured = _captured(merchant)
    voided = services.payment_cancel(transaction_id=captured.pk, merchant_pk=merchant.pk)
    assert voided.status == TransactionStatus.VOIDED and voided.captured_amount == 0
    assert Event.objects.filter(transaction=captured, type=EventType.PAYMENT_CANCELLED).count() == 1
    with pytest.raises(services.AlreadyCancelled):
        services.payment_cancel(transaction_id=captured.pk, merchant_pk=merchant.pk)
    with pytest.raises(errors.TransactionNotFound):
        services.payment_cancel(transaction_id=captured.pk, merchant_pk=MerchantFactory().pk)


def test_a_settled_or_refunded_capture_is_not_cancelled(shipped_defaults) -> None:  # type: ignore[no-untyped-def]
    merchant = MerchantFactory()
    yesterday = _captured(merchant)
    Transaction.objects.filter(pk=yesterday.pk).update(updated_at=timezone.now() - timedelta(days=1))
    with pytest.raises(services.AlreadySettled, match="refund it instead"):
        services.payment_cancel(transaction_id=yesterday.pk, merchant_pk=merchant.pk)
    refunded = _captured(merchant)
    services.refund_request(transaction_id=refunded.pk, merchant_pk=merchant.pk, amount="1.00")
    with pytest.raises(services.AlreadySettled):
        services.payment_cancel(transaction_id=refunded.pk, merchant_pk=merchant.pk)


class RefusingVoids(SandboxAcquirer):
    def void(self, *, reference: str, transaction_id: int) -> AcquirerResult:
        return AcquirerResult(Outcome.DECLINED, reference=reference, reason="too late for a void")


def test_a_void_the_acquirer_refuses_leaves_the_payment_captured(settings, shipped_defaults) -> None:  # type: ignore[no-untyped-def]
    merchant = MerchantFactory()
    captured = _captured(merchant)
    settings.PAYMENTS_ACQUIRER = "tests.secure_api.test_core_services.RefusingVoids"
    with pytest.raises(errors.AcquirerFailure, match="too late"):
        services.payment_cancel(transaction_id=captured.pk, merchant_pk=merchant.pk)
    captured.refresh_from_db()
    assert captured.status == TransactionStatus.CAPTURED and captured.captured_amount == Decimal("20.00")


@pytest.mark.django_db(transaction=True)
def test_a_cancel_and_a_refund_at_once_one_wins(require_postgres, shipped_defaults) -> None:  # type: ignore[no-untyped-def]
    merchant = MerchantFactory()
    for _ in range(5):
        captured = _captured(merchant)
        pk = captured.pk
        results = run_at_once([
            lambda: services.payment_cancel(transaction_id=pk, merchant_pk=merchant.pk),  # noqa: B023 - run now
            lambda: services.refund_request(transaction_id=pk, merchant_pk=merchant.pk, amount="20.00"),  # noqa: B023
        ])
        succeeded = [r for r in results if not isinstance(r, BaseException)]
        assert len(succeeded) == 1, results
        assert all(isinstance(r, errors.InvalidState) for r in results if isinstance(r, BaseException)), results
        captured.refresh_from_db()
        assert captured.status in (TransactionStatus.VOIDED, TransactionStatus.REFUNDED)
        assert captured.refunded_amount <= captured.captured_amount
