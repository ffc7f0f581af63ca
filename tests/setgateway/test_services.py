"""SET requests onto the payment core, without sockets: one service call per message.

AuthReq, CapReq (partial), CredReq (several, idempotent by credId), RevReq,
InqReq; the contract's idempotency (same ids and data → the same answer and
no change; other data → ErrorMsg 3), its ErrorMsg codes, and a request
whose process died half-way settled by its repeat.
"""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from payments.models import Event, Refund, Transaction
from payments.states import Door, EventType, TransactionStatus
from setgateway import payload
from setgateway.models import ExchangeKind, SetExchange
from setgateway.payload import (
    AuthReq,
    AuthRes,
    CapReq,
    CapRes,
    CredReq,
    CredRes,
    CurrencyAmount,
    ErrorMsg,
    InqReq,
    InqRes,
    RevReq,
    RevRes,
)
from setgateway.services import set_request_handle

from .conftest import ACQUIRER_ERROR_CARD, DECLINED_CARD, EXPIRY, HAPPY_MASTER, HAPPY_VISA, SetMerchant, eur, handle


def auth(trans_id: str = "order-1", pan: str = HAPPY_VISA, amount: str = "100.00", capture: bool = False,
         expiry: str = EXPIRY) -> AuthReq:
    return AuthReq(trans_id, pan, expiry, eur(amount), capture_now=capture)


def txns(merchant: SetMerchant) -> list[Transaction]:
    return list(Transaction.objects.filter(merchant_id=merchant.pk).order_by("id"))


# --- AuthReq ------------------------------------------------------------------------------------


def test_an_authorization(set_merchant: SetMerchant) -> None:
    answer = handle(set_merchant, auth())
    assert isinstance(answer, AuthRes) and answer.status == "approved"
    (txn,) = txns(set_merchant)
    assert answer.gateway_trans_id == str(txn.pk) and answer.auth_code == txn.authorization_code
    assert (txn.door, txn.merchant_reference, txn.status, txn.amount) == (
        Door.SET, "order-1", TransactionStatus.AUTHORIZED, Decimal("100.00"))
    assert txn.card_last4 == "4242" and txn.card_brand == "VISA"
    assert not Event.objects.filter(transaction=txn).exists()  # an authorization waiting for capture announces nothing


def test_an_authorization_captured_at_once(set_merchant: SetMerchant) -> None:
    answer = handle(set_merchant, auth(capture=True, pan=HAPPY_MASTER))
    assert answer.status == "approved"
    (txn,) = txns(set_merchant)
    assert txn.status == TransactionStatus.CAPTURED and txn.captured_amount == Decimal("100.00")
    assert Event.objects.get(transaction=txn).type == EventType.PAYMENT_SUCCEEDED


def test_a_repeat_gets_the_same_answer_and_changes_nothing(set_merchant: SetMerchant) -> None:
    body = payload.encode(auth(capture=True))
    first = set_request_handle(merchant_pk=set_merchant.pk, body=body)
    again = set_request_handle(merchant_pk=set_merchant.pk, body=body)
    # Another encoding of the same value (1000 x 10^-1) is the same data.
    same_value = AuthReq("order-1", HAPPY_VISA, EXPIRY, CurrencyAmount(978, 1000, -1), capture_now=True)
    third = set_request_handle(merchant_pk=set_merchant.pk, body=payload.encode(same_value))
    assert first == again == third
    assert len(txns(set_merchant)) == 1
    assert Event.objects.filter(type=EventType.PAYMENT_SUCCEEDED).count() == 1


@pytest.mark.parametrize("other", [
    auth(amount="100.01"), auth(pan=HAPPY_MASTER), auth(capture=True), auth(expiry="203101"),
])
def test_the_same_trans_id_with_other_data_is_error_3(set_merchant: SetMerchant, other: AuthReq) -> None:
    handle(set_merchant, auth())
    answer = handle(set_merchant, other)
    assert isinstance(answer, ErrorMsg) and answer.code == payload.TRANS_ID_REUSED and answer.trans_id == "order-1"
    assert len(txns(set_merchant)) == 1


def test_trans_ids_are_per_merchant(set_merchant: SetMerchant) -> None:
    other = SetMerchant(name="Other Shop")
    assert handle(set_merchant, auth()).status == "approved"
    assert handle(other, auth(amount="5.00")).status == "approved"


def test_gateway_rules_decline_with_their_reason_and_the_answer_is_kept(set_merchant: SetMerchant) -> None:
    banned = handle(set_merchant, auth(pan="0000000000000000"))
    # 0000000000000000 is Luhn-valid and on the shipped ban list.
    assert (banned.status, banned.reason) == ("declined", "Card banned")
    over = handle(set_merchant, auth("order-2", amount="2500.01"))
    assert (over.status, over.reason) == ("declined", "Card max amount 2500.00")
    assert handle(set_merchant, auth("order-2", amount="2500.01")) == over
    declined = [t.failure_code for t in txns(set_merchant)]
    assert declined == ["card_banned", "limit_exceeded"]
    assert Event.objects.filter(type=EventType.PAYMENT_FAILED).count() == 2


def test_the_acquirer_declines_or_fails(set_merchant: SetMerchant) -> None:
    declined = handle(set_merchant, auth("d", pan=DECLINED_CARD))
    failed = handle(set_merchant, auth("f", pan=ACQUIRER_ERROR_CARD))
    assert (declined.status, declined.reason) == ("declined", "Declined: card declined")
    assert failed.status == "failed" and "processing error" in failed.reason
    assert handle(set_merchant, InqReq("f")).process_state == "processError"
    assert handle(set_merchant, InqReq("d")).process_state == "failed"


@pytest.mark.parametrize(("request_", "field"), [
    (auth(pan="4242424242424241"), "pan"),  # Luhn
    (auth(expiry="203013"), "cardExpiry"),
    (AuthReq("order-1", HAPPY_VISA, EXPIRY, CurrencyAmount(978, 1, -3)), "amount"),  # 0.001
    (AuthReq("order-1", HAPPY_VISA, EXPIRY, CurrencyAmount(978, 0, 0)), "amount"),
])
def test_invalid_fields_are_error_4_and_leave_the_trans_id_free(set_merchant: SetMerchant, request_, field) -> None:
    answer = handle(set_merchant, request_)
    assert isinstance(answer, ErrorMsg) and answer.code == payload.INVALID_FIELD
    assert answer.reason.startswith(f"invalid field {field}:")
    assert "4242424242424241" not in answer.reason
    assert handle(set_merchant, auth()).status == "approved"


def test_an_expired_card_is_declined(set_merchant: SetMerchant) -> None:
    answer = handle(set_merchant, auth(expiry="202001"))
    assert (answer.status, answer.reason) == ("declined", "Card expired")
    assert txns(set_merchant) == []


def test_another_currency_is_error_5(set_merchant: SetMerchant) -> None:
    for currency in (840, 999):
        answer = handle(set_merchant, AuthReq("o", HAPPY_VISA, EXPIRY, CurrencyAmount(currency, 100, -2)))
        assert isinstance(answer, ErrorMsg) and answer.code == payload.CURRENCY_NOT_ACCEPTED
        assert "EUR (978)" in answer.reason


def test_undecodable_and_non_request_messages(set_merchant: SetMerchant) -> None:
    assert payload.decode(set_request_handle(merchant_pk=set_merchant.pk, body=b"\x01\x02")) == ErrorMsg(
        payload.NOT_DECODABLE, "not a DER GatewayMessage")
    answer = handle(set_merchant, AuthRes("order-1", "approved"))
    assert isinstance(answer, ErrorMsg) and answer.code == payload.INVALID_FIELD and "authRes" in answer.reason


def test_a_bug_is_error_9_and_releases_the_ids(set_merchant: SetMerchant, monkeypatch) -> None:
    from payments import services

    def broken(**kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("bug")

    monkeypatch.setattr(services, "payment_authorize", broken)
    answer = handle(set_merchant, auth())
    assert isinstance(answer, ErrorMsg) and answer.code == payload.INTERNAL and answer.trans_id == "order-1"
    monkeypatch.undo()
    assert handle(set_merchant, auth()).status == "approved"


def test_no_card_number_is_stored(set_merchant: SetMerchant) -> None:
    handle(set_merchant, auth(capture=True))
    row = SetExchange.objects.get()
    assert HAPPY_VISA not in row.digest and HAPPY_VISA.encode() not in bytes(row.response)
    assert HAPPY_VISA not in str(Transaction.objects.values().get())


# --- CapReq ---------------------------------------------------------------------------------------


def test_a_partial_capture_once(set_merchant: SetMerchant) -> None:
    handle(set_merchant, auth())
    assert handle(set_merchant, CapReq("order-1", eur("60.00"))) == CapRes("order-1", "approved")
    assert handle(set_merchant, CapReq("order-1", eur("60.00"))) == CapRes("order-1", "approved")
    (txn,) = txns(set_merchant)
    assert (txn.status, txn.captured_amount, txn.authorized_amount) == (
        TransactionStatus.CAPTURED, Decimal("60.00"), Decimal("100.00"))
    assert Event.objects.filter(transaction=txn, type=EventType.PAYMENT_SUCCEEDED).count() == 1
    again = handle(set_merchant, CapReq("order-1", eur("40.00")))
    assert isinstance(again, ErrorMsg) and again.code == payload.TRANS_ID_REUSED


def test_a_capture_over_the_authorized_amount_is_declined_and_changes_nothing(set_merchant: SetMerchant) -> None:
    handle(set_merchant, auth())
    over = handle(set_merchant, CapReq("order-1", eur("100.01")))
    assert over.status == "declined" and "100.00" in over.reason
    assert handle(set_merchant, CapReq("order-1", eur("100.00"))).status == "approved"


def test_capture_errors(set_merchant: SetMerchant) -> None:
    unknown = handle(set_merchant, CapReq("nope", eur("1.00")))
    assert isinstance(unknown, ErrorMsg) and unknown.code == payload.UNKNOWN_TRANS_ID and unknown.trans_id == "nope"
    handle(set_merchant, auth(capture=True))
    captured = handle(set_merchant, CapReq("order-1", eur("1.00")))
    assert (captured.status, captured.reason) == ("declined", "Transaction is captured")
    currency = handle(set_merchant, CapReq("order-1", CurrencyAmount(840, 100, -2)))
    assert isinstance(currency, ErrorMsg) and currency.code == payload.CURRENCY_NOT_ACCEPTED


# --- CredReq --------------------------------------------------------------------------------------


def test_refunds_several_times_idempotent_by_cred_id(set_merchant: SetMerchant) -> None:
    handle(set_merchant, auth(capture=True))
    assert handle(set_merchant, CredReq("order-1", "r1", eur("30.00"))) == CredRes("order-1", "r1", "approved")
    assert handle(set_merchant, CredReq("order-1", "r2", eur("30.00"))).status == "approved"
    assert handle(set_merchant, CredReq("order-1", "r1", eur("30.00"))).status == "approved"  # a repeat
    (txn,) = txns(set_merchant)
    assert txn.refunded_amount == Decimal("60.00") and txn.status == TransactionStatus.PARTIALLY_REFUNDED
    assert sorted(Refund.objects.values_list("reference", flat=True)) == ["r1", "r2"]
    over = handle(set_merchant, CredReq("order-1", "r3", eur("40.01")))
    assert over.status == "declined" and "40.00" in over.reason
    reused = handle(set_merchant, CredReq("order-1", "r1", eur("31.00")))
    assert isinstance(reused, ErrorMsg) and reused.code == payload.TRANS_ID_REUSED
    assert handle(set_merchant, CredReq("order-1", "r3", eur("40.00"))).status == "approved"
    inquiry = handle(set_merchant, InqReq("order-1"))
    assert inquiry.refunded == eur("100.00") and inquiry.process_state == "completedOk"


def test_a_refund_of_an_uncaptured_payment_is_declined(set_merchant: SetMerchant) -> None:
    handle(set_merchant, auth())
    answer = handle(set_merchant, CredReq("order-1", "r1", eur("1.00")))
    assert answer.status == "declined" and "authorized" in answer.reason.lower()


# --- RevReq ---------------------------------------------------------------------------------------


def test_reversing_an_uncaptured_authorization(set_merchant: SetMerchant) -> None:
    handle(set_merchant, auth())
    assert handle(set_merchant, RevReq("order-1")) == RevRes("order-1", "approved")
    assert handle(set_merchant, RevReq("order-1")) == RevRes("order-1", "approved")
    (txn,) = txns(set_merchant)
    assert txn.status == TransactionStatus.VOIDED
    assert Event.objects.filter(transaction=txn, type=EventType.PAYMENT_CANCELLED).count() == 1
    assert handle(set_merchant, auth()).status == "approved"  # the AuthReq's repeat: still the same answer
    assert handle(set_merchant, InqReq("order-1")).process_state == "failed"


def test_a_captured_payment_cannot_be_reversed(set_merchant: SetMerchant) -> None:
    handle(set_merchant, auth(capture=True))
    answer = handle(set_merchant, RevReq("order-1"))
    assert (answer.status, answer.reason) == ("declined", "Transaction is captured")
    unknown = handle(set_merchant, RevReq("nope"))
    assert isinstance(unknown, ErrorMsg) and unknown.code == payload.UNKNOWN_TRANS_ID


# --- InqReq ---------------------------------------------------------------------------------------


def test_inquiry_reports_the_current_state(set_merchant: SetMerchant) -> None:
    unknown = handle(set_merchant, InqReq("order-1"))
    assert isinstance(unknown, ErrorMsg) and unknown.code == payload.UNKNOWN_TRANS_ID
    handle(set_merchant, auth())
    assert handle(set_merchant, InqReq("order-1")) == InqRes("order-1", "inProgress", eur("100.00"), eur("0"), eur("0"))
    handle(set_merchant, CapReq("order-1", eur("25.50")))
    assert handle(set_merchant, InqReq("order-1")) == InqRes(
        "order-1", "completedOk", eur("100.00"), eur("25.50"), eur("0"))


def test_inquiry_of_a_request_not_yet_started(set_merchant: SetMerchant) -> None:
    SetExchange.objects.create(merchant_id=set_merchant.pk, kind=ExchangeKind.AUTHORIZE, trans_id="o", digest="d",
                               lease_until=timezone.now() + timedelta(seconds=60))
    assert handle(set_merchant, InqReq("o")) == InqRes("o", "notYetStarted", eur("0"), eur("0"), eur("0"))


# --- A request whose process died half-way --------------------------------------------------------


def _died_after_the_core(set_merchant: SetMerchant, request: payload.Request, kind: str) -> SetExchange:
    """The state a process leaves when it is killed after the core committed, before the answer was kept."""
    handle(set_merchant, request)
    row = SetExchange.objects.get(kind=kind, trans_id=request.trans_id)
    SetExchange.objects.filter(pk=row.pk).update(response=None, lease_until=timezone.now() - timedelta(seconds=1))
    return row


def test_an_authorization_whose_answer_was_lost_is_answered_from_the_payment(set_merchant: SetMerchant) -> None:
    _died_after_the_core(set_merchant, auth(capture=True), ExchangeKind.AUTHORIZE)
    (txn,) = txns(set_merchant)
    answer = handle(set_merchant, auth(capture=True))
    assert (answer.status, answer.gateway_trans_id) == ("approved", str(txn.pk))
    assert len(txns(set_merchant)) == 1  # not authorized twice
    assert bytes(SetExchange.objects.get().response) == payload.encode(answer)


def test_an_authorization_that_died_before_the_core_is_authorized_by_its_repeat(set_merchant: SetMerchant) -> None:
    SetExchange.objects.create(
        merchant_id=set_merchant.pk, kind=ExchangeKind.AUTHORIZE, trans_id="order-1",
        digest=__import__("setgateway.services", fromlist=["_auth_digest"])._auth_digest(set_merchant.pk, auth()),
        lease_until=timezone.now() - timedelta(seconds=1),
    )
    assert handle(set_merchant, auth()).status == "approved"
    assert len(txns(set_merchant)) == 1


def test_an_authorization_whose_acquirer_answer_was_lost_waits_for_the_resolver(set_merchant: SetMerchant,
                                                                                settings) -> None:  # type: ignore[no-untyped-def]
    from payments import services
    from payments.states import AcquirerOperation

    _died_after_the_core(set_merchant, auth(capture=True), ExchangeKind.AUTHORIZE)
    # Killed while the acquirer was asked: the acquirer approved, nobody recorded it.
    Transaction.objects.update(status=TransactionStatus.PROCESSING, operation=AcquirerOperation.AUTHORIZE,
                               captured_amount=0, authorized_amount=0, authorization_code="",
                               updated_at=timezone.now() - timedelta(hours=1))
    Event.objects.all().delete()
    answer = handle(set_merchant, auth(capture=True))
    assert isinstance(answer, ErrorMsg) and answer.code == payload.INTERNAL and "in progress" in answer.reason
    assert handle(set_merchant, InqReq("order-1")).process_state == "inProgress"
    assert len(txns(set_merchant)) == 1  # never a second attempt
    # The core's resolver settles it by inquiry: approved and nobody told, so reversed.
    (txn,) = txns(set_merchant)
    services.transaction_resolve(transaction_id=txn.pk)
    answer = handle(set_merchant, auth(capture=True))
    txn.refresh_from_db()
    assert txn.status == TransactionStatus.VOIDED and txn.captured_amount == 0
    assert (answer.status, answer.gateway_trans_id) == ("failed", str(txn.pk)) and "reversed" in answer.reason
    assert handle(set_merchant, auth(capture=True)) == answer  # kept: the same answer from now on
    assert handle(set_merchant, InqReq("order-1")).process_state == "failed"
    assert len(txns(set_merchant)) == 1


def test_a_capture_and_a_reversal_whose_answers_were_lost(set_merchant: SetMerchant) -> None:
    handle(set_merchant, auth("a"))
    _died_after_the_core(set_merchant, CapReq("a", eur("10.00")), ExchangeKind.CAPTURE)
    assert handle(set_merchant, CapReq("a", eur("10.00"))) == CapRes("a", "approved")
    handle(set_merchant, auth("b", amount="5.00"))
    _died_after_the_core(set_merchant, RevReq("b"), ExchangeKind.REVERSE)
    assert handle(set_merchant, RevReq("b")) == RevRes("b", "approved")
    _died_after_the_core(set_merchant, CredReq("a", "r", eur("10.00")), ExchangeKind.REFUND)
    assert handle(set_merchant, CredReq("a", "r", eur("10.00"))).status == "approved"
    assert Refund.objects.count() == 1


def test_a_repeat_waits_for_a_live_first_request_then_says_in_progress(set_merchant: SetMerchant, settings) -> None:
    from setgateway.services import _auth_digest

    settings.SET_REPEAT_WAIT_SECONDS = 0.2
    SetExchange.objects.create(merchant_id=set_merchant.pk, kind=ExchangeKind.AUTHORIZE, trans_id="order-1",
                               digest=_auth_digest(set_merchant.pk, auth()),
                               lease_until=timezone.now() + timedelta(seconds=60))
    answer = handle(set_merchant, auth())
    assert isinstance(answer, ErrorMsg) and answer.code == payload.INTERNAL and "still being processed" in answer.reason
    assert txns(set_merchant) == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_repeats_authorize_once(require_postgres, shipped_defaults) -> None:  # type: ignore[no-untyped-def]
    from tests.support.threads import run_at_once

    merchant = SetMerchant(name="Racing Shop")
    body = payload.encode(auth(capture=True))
    answers = run_at_once([lambda: set_request_handle(merchant_pk=merchant.pk, body=body) for _ in range(6)])
    assert all(isinstance(a, bytes) for a in answers), answers
    decoded = [payload.decode(a) for a in answers]
    approved = [a for a in decoded if isinstance(a, AuthRes)]
    assert approved and all(a == approved[0] and a.status == "approved" for a in approved)
    assert all(isinstance(a, AuthRes) or a.code == payload.INTERNAL for a in decoded)
    assert Transaction.objects.filter(merchant=merchant.merchant).count() == 1
