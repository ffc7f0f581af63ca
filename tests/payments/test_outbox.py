"""The outbox (payments.outbox): events for every state change, written with the
change; webhook deliveries fanned out to active endpoints, queued only after the
commit, signed, retried with capped jittered backoff, held by leases, swept when
the broker lost them, resent by staff; endpoint secrets kept sealed."""
from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
import threading
import time
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from payments import cards, outbox, services, tasks
from payments.acquirers.base import AcquirerResult, Outcome
from payments.acquirers.sandbox import SandboxAcquirer
from payments.db import TransactionRuleViolation
from payments.errors import AcquirerFailure, Declined, InvalidPin, LimitExceeded
from payments.models import DeliveryAttempt, Event, Refund, Transaction, WebhookDelivery, WebhookEndpoint
from payments.states import DeliveryStatus, Door, EventType, PaymentMethod, RefundStatus, TransactionStatus
from tests.factories import AuthorizedTransactionFactory, CapturedTransactionFactory, MerchantFactory
from tests.support.http_servers import merchant_server
from tests.support.threads import run_at_once

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("shipped_defaults")]

CARD = "4000056655665556"  # a Visa the sandbox approves (digits that do not repeat much)
GOOD_PIN = "2580"
SIGNATURE = re.compile(r"t=(\d+),v1=([0-9a-f]{64})\Z")


# --- helpers -------------------------------------------------------------------------------


class Queue:
    """Stands in for the broker: records every task the outbox sends by name
    (and whether a transaction was open at that moment), or raises like a dead broker."""

    def __init__(self) -> None:
        self.calls: list[dict[str, object]] = []
        self.down = False

    def send_task(self, name: str, args=(), kwargs=None, countdown=None, **options):  # type: ignore[no-untyped-def]
        if self.down:
            raise OperationalError("[Errno 111] Connection refused")
        self.calls.append({
            "task": name.rsplit(".", 1)[-1], "id": args[0], "countdown": countdown,
            "in_atomic": connection.in_atomic_block,
        })

    def ids(self, task: str) -> list[int]:
        return [call["id"] for call in self.calls if call["task"] == task]  # type: ignore[misc]

    @property
    def deliveries(self) -> list[int]:
        return self.ids("deliver_webhook")

    @property
    def refunds(self) -> list[int]:
        return self.ids("execute_refund")


@pytest.fixture(autouse=True)
def queue(monkeypatch) -> Queue:  # type: ignore[no-untyped-def]
    recorded = Queue()
    from config.celery import app

    monkeypatch.setattr(app, "send_task", recorded.send_task)
    return recorded


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    yield from merchant_server()


def add_endpoint(merchant, url: str = "https://hooks.example.com/gateway", active: bool = True):  # type: ignore[no-untyped-def]
    return outbox.webhook_endpoint_create(merchant_pk=merchant.pk, url=url, is_active=active)


def issue(terminal, method: str = PaymentMethod.CARD) -> str:  # type: ignore[no-untyped-def]
    return services.token_issue(terminal_pk=terminal.pk, payment_type=method).value


def pay_card(terminal, *, card_number=CARD, pin=GOOD_PIN, amount="12.50"):  # type: ignore[no-untyped-def]
    return services.payment_sale_with_token(
        terminal_pk=terminal.pk, token=issue(terminal), method=PaymentMethod.CARD, amount=amount,
        card_type=cards.card_brand(card_number), card_number=card_number, pin=pin,
    )


def authorize(merchant, *, capture, card_number=CARD, amount="20.00", door=Door.SECURE_API, **kw):  # type: ignore[no-untyped-def]
    return services.payment_authorize(
        merchant_pk=merchant.pk, door=door, card_number=card_number, policy=kw.pop("policy", cards.LUHN_PAN),
        amount=amount, capture=capture, **kw,
    )


def only_event(**filters) -> Event:  # type: ignore[no-untyped-def]
    events = list(Event.objects.filter(**filters))
    assert len(events) == 1, [e.type for e in events]
    return events[0]


def row_text(model, pk: int) -> str:  # type: ignore[no-untyped-def]
    """Every column of one row, as text."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(model._meta.db_table)} WHERE id = %s", [pk])
        row = cursor.fetchone()
    assert row is not None
    return "\n".join("" if value is None else str(value) for value in row)


def assert_card_masked(event: Event, pan: str) -> None:
    assert event.data["card"] == pan[:6] + "******" + pan[-4:]
    for text in (json.dumps(event.data), row_text(Event, event.pk), outbox.envelope(event).decode()):
        assert pan not in text
    text = json.dumps(event.data)
    assert pan[:7] not in text and pan[-5:] not in text  # no more than first 6 / last 4


def emit(txn, type=EventType.PAYMENT_SUCCEEDED) -> Event:  # type: ignore[no-untyped-def]
    with transaction.atomic():
        return outbox.event_emit(type=type, transaction=txn)


def verify(secret: str, header: str, body: bytes, *, tolerance: int = 300) -> bool:
    """A receiver's check of X-Gateway-Signature, written from the contract."""
    match = SIGNATURE.match(header)
    if match is None:
        return False
    t, received = int(match.group(1)), match.group(2)
    if abs(time.time() - t) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, received)


def make_due(delivery: WebhookDelivery) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())


def ceiling(n: int) -> float:
    s = django_settings
    return min(s.WEBHOOK_RETRY_MAX_DELAY_SECONDS, s.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (n - 1))


# --- 1. Events for every state change, with the contract's types and data --------------------


def test_terminal_sale_approved_emits_payment_succeeded(terminal) -> None:  # type: ignore[no-untyped-def]
    endpoint, _ = add_endpoint(terminal.merchant)
    txn = pay_card(terminal, amount="12.5")
    event = only_event(transaction=txn)
    assert event.type == EventType.PAYMENT_SUCCEEDED == "payment.succeeded"
    assert event.merchant_id == terminal.merchant_id and event.refund_id is None
    assert re.fullmatch(r"evt_[0-9a-f]{24}", event.public_id)
    assert event.data == {
        "object": "payment", "transaction": txn.pk, "merchant_reference": "", "door": "terminal",
        "method": "card", "status": "captured", "process_state": "CompletedOk",
        "amount": "12.50", "currency": "EUR", "captured_amount": "12.50", "refunded_amount": "0.00",
        "card": "400005******5556", "card_brand": "VISA", "failure_code": "", "failure_message": "",
    }
    assert_card_masked(event, CARD)
    assert list(event.deliveries.values_list("endpoint_id", "status", "attempts")) == [
        (endpoint.pk, DeliveryStatus.PENDING, 0)
    ]


@pytest.mark.parametrize(
    ("error", "changes", "code"),
    [
        (InvalidPin, {"pin": "1234"}, "invalid_pin"),  # banned PIN (shipped ban list)
        (LimitExceeded, {"amount": "2500.01"}, "limit_exceeded"),  # over the VISA limit
        (Declined, {"card_number": "4000000000000002"}, "card_declined"),  # the sandbox acquirer says no
    ],
)
def test_terminal_attempt_declined_emits_payment_failed(terminal, error, changes, code) -> None:  # type: ignore[no-untyped-def]
    add_endpoint(terminal.merchant)
    with pytest.raises(error) as info:
        pay_card(terminal, **changes)
    txn = Transaction.objects.get(pk=info.value.transaction_id)
    event = only_event(transaction=txn)
    assert event.type == EventType.PAYMENT_FAILED
    pan = changes.get("card_number", CARD)
    data = event.data
    assert data["status"] == "declined" and data["process_state"] == "Failed"
    assert data["failure_code"] == code and data["failure_message"] == txn.failure_message != ""
    assert data["amount"] == f"{Decimal(changes.get('amount', '12.50')):.2f}"
    assert data["captured_amount"] == "0.00" and data["transaction"] == txn.pk and data["door"] == "terminal"
    assert_card_masked(event, pan)
    assert event.deliveries.count() == 1


def test_terminal_acquirer_error_emits_payment_failed(terminal) -> None:  # type: ignore[no-untyped-def]
    pan = "4000000000000119"
    with pytest.raises(AcquirerFailure) as info:
        pay_card(terminal, card_number=pan)
    event = only_event(transaction_id=info.value.transaction_id)
    assert event.type == EventType.PAYMENT_FAILED
    assert event.data["status"] == "error" and event.data["process_state"] == "ProcessError"
    assert event.data["failure_code"] == "processing_error"
    assert_card_masked(event, pan)


@pytest.mark.parametrize("door", [Door.SECURE_API, Door.ESIPAY, Door.IOTP, Door.SET])
def test_card_not_present_sale_emits_payment_succeeded_by_every_door(door) -> None:  # type: ignore[no-untyped-def]
    merchant = MerchantFactory()
    txn = authorize(merchant, capture=True, amount="12.50", door=door, merchant_reference="order-42")
    event = only_event(transaction=txn)
    assert event.type == EventType.PAYMENT_SUCCEEDED
    assert event.data["door"] == str(door) and event.data["merchant_reference"] == "order-42"
    assert event.data["amount"] == event.data["captured_amount"] == "12.50"
    assert_card_masked(event, CARD)


def test_card_not_present_declines_emit_payment_failed() -> None:
    merchant = MerchantFactory()
    with pytest.raises(Declined) as declined:
        authorize(merchant, capture=True, card_number="4000000000000002")
    with pytest.raises(LimitExceeded) as refused:
        authorize(merchant, capture=False, amount="2500.01")
    for info in (declined, refused):
        event = only_event(transaction_id=info.value.transaction_id)
        assert event.type == EventType.PAYMENT_FAILED and event.data["status"] == "declined"


def test_authorization_is_silent_then_capture_succeeds_and_void_cancels() -> None:
    merchant = MerchantFactory()
    pending = authorize(merchant, capture=False, amount="20.00", merchant_reference="cap-1")
    assert not Event.objects.filter(transaction=pending).exists()  # in progress: nothing to say yet
    captured = services.payment_capture(transaction_id=pending.pk, merchant_pk=merchant.pk, amount="12.50")
    event = only_event(transaction=captured)
    assert event.type == EventType.PAYMENT_SUCCEEDED
    assert event.data["status"] == "captured" and event.data["process_state"] == "CompletedOk"
    assert event.data["amount"] == "20.00" and event.data["captured_amount"] == "12.50"
    assert event.data["merchant_reference"] == "cap-1"
    assert_card_masked(event, CARD)

    other = authorize(merchant, capture=False, merchant_reference="void-1")
    assert not Event.objects.filter(transaction=other).exists()
    services.payment_void(transaction_id=other.pk, merchant_pk=merchant.pk)
    event = only_event(transaction=other)
    assert event.type == EventType.PAYMENT_CANCELLED
    assert event.data["status"] == "voided" and event.data["process_state"] == "Failed"
    assert event.data["merchant_reference"] == "void-1"


def test_failed_capture_or_void_changes_nothing_and_says_nothing(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    txn = AuthorizedTransactionFactory()
    error = AcquirerResult(Outcome.ERROR, reason="bank offline")
    monkeypatch.setattr(SandboxAcquirer, "capture", lambda self, **kw: error)
    monkeypatch.setattr(SandboxAcquirer, "void", lambda self, **kw: error)
    with pytest.raises(AcquirerFailure):
        services.payment_capture(transaction_id=txn.pk, merchant_pk=txn.merchant_id)
    with pytest.raises(AcquirerFailure):
        services.payment_void(transaction_id=txn.pk, merchant_pk=txn.merchant_id)
    assert not Event.objects.exists()


def test_refund_succeeded_event(terminal) -> None:  # type: ignore[no-untyped-def]
    txn = pay_card(terminal, amount="40.00")
    accepted = services.refund_request(
        transaction_id=txn.pk, merchant_pk=terminal.merchant_id, amount="12.5", reference="R-7"
    )
    assert not Event.objects.filter(refund=accepted).exists()  # accepted, not done: nothing yet
    services.refund_execute(refund_id=accepted.pk)
    event = only_event(refund=accepted)
    assert event.type == EventType.REFUND_SUCCEEDED and event.transaction_id == txn.pk
    assert event.data == {
        "object": "refund", "refund": accepted.pk, "transaction": txn.pk, "merchant_reference": "",
        "reference": "R-7", "status": "succeeded", "amount": "12.50", "currency": "EUR",
        "transaction_status": "partially_refunded", "refunded_amount": "12.50", "failure_message": "",
    }
    for text in (json.dumps(event.data), row_text(Event, event.pk)):
        assert CARD not in text


def test_refund_declined_by_the_acquirer_emits_refund_failed(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    txn = CapturedTransactionFactory(amount=Decimal("30.00"), merchant_reference="order-9")
    accepted = services.refund_request(transaction_id=txn.pk, merchant_pk=txn.merchant_id, amount="12.50")
    monkeypatch.setattr(
        SandboxAcquirer, "refund",
        lambda self, **kw: AcquirerResult(Outcome.DECLINED, decline_code="refused", reason="refund refused"),
    )
    services.refund_execute(refund_id=accepted.pk)
    event = only_event(refund=accepted)
    assert event.type == EventType.REFUND_FAILED
    assert event.data["status"] == "failed" and event.data["failure_message"] == "refund refused"
    assert event.data["amount"] == "12.50" and event.data["refunded_amount"] == "0.00"
    assert event.data["transaction_status"] == "captured" and event.data["merchant_reference"] == "order-9"


def test_refund_technical_failure_waits_silently(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    txn = CapturedTransactionFactory()
    accepted = services.refund_request(transaction_id=txn.pk, merchant_pk=txn.merchant_id)
    monkeypatch.setattr(SandboxAcquirer, "refund", lambda self, **kw: AcquirerResult(Outcome.ERROR, reason="down"))
    assert services.refund_execute(refund_id=accepted.pk).status == RefundStatus.PENDING
    assert not Event.objects.exists()


def test_short_card_number_is_not_revealed_by_the_event() -> None:
    merchant = MerchantFactory()
    pan = "4111222230"
    txn = authorize(merchant, capture=True, card_number=pan, policy=cards.ESIPAY_PAN, door=Door.ESIPAY)
    card = only_event(transaction=txn).data["card"]
    assert re.sub(r"\D", "", card) == "2230"  # a number under 15 digits shows its last four only
    assert card == "******2230"
    txn.refresh_from_db()
    assert (txn.card_bin, txn.card_last4) == ("", "2230") and txn.card_fingerprint


# --- 2. The event commits with the change, or not at all ---------------------------------------


@pytest.mark.django_db(transaction=True)
def test_event_and_deliveries_roll_back_with_the_change(queue) -> None:  # type: ignore[no-untyped-def]
    txn = AuthorizedTransactionFactory()
    add_endpoint(txn.merchant)
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            services.payment_capture(transaction_id=txn.pk, merchant_pk=txn.merchant_id)
            assert Event.objects.filter(transaction=txn).count() == 1  # written in this transaction...
            raise RuntimeError("the caller's transaction fails after the capture")
    assert not Event.objects.exists() and not WebhookDelivery.objects.exists()  # ...and gone with it
    assert Transaction.objects.get(pk=txn.pk).status == TransactionStatus.AUTHORIZED
    assert queue.calls == []


def _capture(txn):  # type: ignore[no-untyped-def]
    services.payment_capture(transaction_id=txn.pk, merchant_pk=txn.merchant_id)


def _void(txn):  # type: ignore[no-untyped-def]
    services.payment_void(transaction_id=txn.pk, merchant_pk=txn.merchant_id)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("change", [_capture, _void], ids=["capture", "void"])
def test_change_does_not_commit_when_its_event_cannot_be_written(monkeypatch, change) -> None:  # type: ignore[no-untyped-def]
    txn = AuthorizedTransactionFactory()

    def broken(txn):  # type: ignore[no-untyped-def]
        raise RuntimeError("cannot write the event")

    monkeypatch.setattr(outbox, "transaction_data", broken)
    with pytest.raises(RuntimeError):
        change(txn)
    txn.refresh_from_db()
    assert txn.status not in (TransactionStatus.CAPTURED, TransactionStatus.VOIDED) and txn.captured_amount == 0
    assert not Event.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_acquirer_answer_does_not_commit_without_its_event(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    merchant = MerchantFactory()
    monkeypatch.setattr(outbox, "transaction_data", lambda txn: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        authorize(merchant, capture=True)
    txn = Transaction.objects.get()
    assert txn.status == TransactionStatus.PROCESSING and txn.captured_amount == 0 and txn.acquirer_reference == ""
    assert not Event.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_refund_outcome_does_not_commit_without_its_event(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    txn = CapturedTransactionFactory()
    accepted = services.refund_request(transaction_id=txn.pk, merchant_pk=txn.merchant_id)
    monkeypatch.setattr(outbox, "refund_data", lambda refund, txn: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        services.refund_execute(refund_id=accepted.pk)
    assert Refund.objects.get(pk=accepted.pk).status == RefundStatus.PENDING
    assert not Event.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_event_emit_outside_a_transaction_is_refused() -> None:
    txn = CapturedTransactionFactory()
    add_endpoint(txn.merchant)
    with pytest.raises(TransactionRuleViolation, match="inside the change's transaction"):
        outbox.event_emit(type=EventType.PAYMENT_SUCCEEDED, transaction=txn)
    assert not Event.objects.exists() and not WebhookDelivery.objects.exists()


# --- 3. Fan-out: the merchant's active endpoints only ----------------------------------------------


def test_deliveries_go_to_the_merchants_active_endpoints_only() -> None:
    merchant, stranger = MerchantFactory(), MerchantFactory()
    first, _ = add_endpoint(merchant, "https://a.example.com/hook")
    second, _ = add_endpoint(merchant, "https://b.example.com/hook")
    add_endpoint(merchant, "https://off.example.com/hook", active=False)
    theirs, _ = add_endpoint(stranger, "https://stranger.example.com/hook")
    event = emit(CapturedTransactionFactory(merchant=merchant))
    assert set(event.deliveries.values_list("endpoint_id", flat=True)) == {first.pk, second.pk}
    assert not WebhookDelivery.objects.filter(endpoint=theirs).exists()
    assert all(d.next_attempt_at <= timezone.now() and d.lease_until is None for d in event.deliveries.all())
    # No endpoint at all: the event is still written (staff see it, may resend it later).
    lonely = emit(CapturedTransactionFactory(merchant=MerchantFactory()))
    assert Event.objects.filter(pk=lonely.pk).exists() and not lonely.deliveries.exists()


# --- 4. Nothing is queued before the commit ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_deliveries_are_queued_only_after_the_commit(queue) -> None:  # type: ignore[no-untyped-def]
    txn = AuthorizedTransactionFactory()
    add_endpoint(txn.merchant, "https://a.example.com/hook")
    add_endpoint(txn.merchant, "https://b.example.com/hook")
    with transaction.atomic():  # the change an event announces (no acquirer call: none may run in a transaction)
        Transaction.objects.filter(pk=txn.pk).update(status=TransactionStatus.CAPTURED, captured_amount=txn.amount)
        txn.refresh_from_db()
        outbox.event_emit(type=EventType.PAYMENT_SUCCEEDED, transaction=txn)
        assert queue.calls == []  # the capture may still roll back
    ids = list(WebhookDelivery.objects.filter(event__transaction=txn).values_list("pk", flat=True))
    assert len(ids) == 2 and sorted(queue.deliveries) == sorted(ids)
    assert not any(call["in_atomic"] for call in queue.calls)


@pytest.mark.django_db(transaction=True)
def test_terminal_sale_queues_its_deliveries_after_commit(queue, terminal) -> None:  # type: ignore[no-untyped-def]
    add_endpoint(terminal.merchant)
    txn = pay_card(terminal)
    assert queue.deliveries == [WebhookDelivery.objects.get(event__transaction=txn).pk]
    assert not any(call["in_atomic"] for call in queue.calls)


@pytest.mark.django_db(transaction=True)
def test_refund_is_queued_only_after_the_commit(queue) -> None:  # type: ignore[no-untyped-def]
    txn = CapturedTransactionFactory()
    with transaction.atomic():
        accepted = services.refund_request(transaction_id=txn.pk, merchant_pk=txn.merchant_id, amount="10")
        assert queue.calls == []
    assert queue.refunds == [accepted.pk] and queue.deliveries == []
    assert not any(call["in_atomic"] for call in queue.calls)


@pytest.mark.django_db(transaction=True)
def test_nothing_is_queued_for_a_rolled_back_change(queue) -> None:  # type: ignore[no-untyped-def]
    authorized = AuthorizedTransactionFactory()
    captured = CapturedTransactionFactory(merchant=authorized.merchant)
    add_endpoint(authorized.merchant)
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            services.payment_capture(transaction_id=authorized.pk, merchant_pk=authorized.merchant_id)
            services.refund_request(transaction_id=captured.pk, merchant_pk=captured.merchant_id)
            raise RuntimeError("rolled back")
    assert queue.calls == []
    assert not Refund.objects.exists() and not Event.objects.exists()


# --- 5. A dead broker delays the work, never loses it ------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_broker_down_at_publish_then_the_sweep_queues(queue, terminal, settings) -> None:  # type: ignore[no-untyped-def]
    add_endpoint(terminal.merchant)
    queue.down = True
    txn = pay_card(terminal, amount="50.00")  # no exception for the caller
    accepted = services.refund_request(transaction_id=txn.pk, merchant_pk=terminal.merchant_id, amount="20")
    assert Transaction.objects.get(pk=txn.pk).status == TransactionStatus.PARTIALLY_REFUNDED
    delivery = WebhookDelivery.objects.get(event__transaction=txn)
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 0
    assert Refund.objects.get(pk=accepted.pk).status == RefundStatus.PENDING
    assert queue.calls == []

    queue.down = False
    settings.OUTBOX_SWEEP_GRACE_SECONDS = 0
    swept = outbox.outbox_sweep()
    assert queue.deliveries == [delivery.pk] and queue.refunds == [accepted.pk]
    assert swept == {"deliveries": 1, "refunds": 1, "deliveries_queued": 1, "refunds_queued": 1}


def test_sweep_leaves_fresh_held_and_finished_rows_alone(queue, settings) -> None:  # type: ignore[no-untyped-def]
    merchant = MerchantFactory()
    for n in range(4):
        add_endpoint(merchant, f"https://h{n}.example.com/hook")
    event = emit(CapturedTransactionFactory(merchant=merchant))
    due, held, done, later = event.deliveries.order_by("pk")
    now = timezone.now()
    WebhookDelivery.objects.filter(pk__in=[due.pk, held.pk, done.pk]).update(next_attempt_at=now - timedelta(hours=1))
    WebhookDelivery.objects.filter(pk=held.pk).update(lease_until=now + timedelta(seconds=30))
    WebhookDelivery.objects.filter(pk=done.pk).update(status=DeliveryStatus.SUCCEEDED)
    WebhookDelivery.objects.filter(pk=later.pk).update(next_attempt_at=now + timedelta(minutes=5))
    settings.OUTBOX_SWEEP_GRACE_SECONDS = 60
    outbox.outbox_sweep()
    assert queue.deliveries == [due.pk]
    # Within the grace, the task queued at commit is left to do its work.
    fresh = emit(CapturedTransactionFactory(merchant=MerchantFactory()))
    add_endpoint(fresh.merchant)
    queue.calls.clear()
    outbox.event_resend(event_id=fresh.pk)  # due now (its on_commit never runs here)
    outbox.outbox_sweep()
    # The fresh one is within the grace; `due` was queued by the last sweep and
    # may still be waiting behind a backlog: not queued again so soon.
    assert queue.deliveries == []
    WebhookDelivery.objects.filter(pk=due.pk).update(
        swept_at=timezone.now() - timedelta(seconds=settings.OUTBOX_RESWEEP_SECONDS + 1)
    )
    outbox.outbox_sweep()
    assert queue.deliveries == [due.pk]  # still not done long after: queued again


# --- 6. Delivering: signed body, outcomes, retries ------------------------------------------------


@pytest.fixture
def hooked(server):  # type: ignore[no-untyped-def]
    """An event of a merchant whose one endpoint is the local server: (delivery, secret)."""
    merchant = MerchantFactory()
    _, secret = add_endpoint(merchant, server.url + "hooks/gateway")
    event = emit(CapturedTransactionFactory(merchant=merchant, amount=Decimal("12.50")))
    return event.deliveries.get(), secret


def test_delivery_posts_the_signed_envelope(server, hooked) -> None:  # type: ignore[no-untyped-def]
    delivery, secret = hooked
    server.answer = lambda received: (200, b'{"received": true}')
    result = outbox.delivery_attempt(delivery_id=delivery.pk)
    assert len(server.received) == 1
    got = server.received[0]
    event = Event.objects.get(pk=delivery.event_id)
    assert got.path == "/hooks/gateway"
    assert got.body == outbox.envelope(event)
    body = json.loads(got.body)
    assert set(body) == {"id", "type", "created", "data"}
    assert body["id"] == event.public_id and body["type"] == "payment.succeeded"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["created"])
    assert body["data"]["amount"] == "12.50" and body["data"]["transaction"] == event.transaction_id
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-gateway-event"] == "payment.succeeded"
    assert got.headers["x-gateway-event-id"] == event.public_id
    header = got.headers["x-gateway-signature"]
    assert SIGNATURE.match(header)
    assert verify(secret, header, got.body)
    assert not verify(secret, header, got.body.replace(b"12.50", b"99.50"))  # tampered body
    assert not verify(secret + "x", header, got.body)  # wrong secret
    assert not verify(outbox.new_endpoint_secret(), header, got.body)

    assert result is not None and result.status == DeliveryStatus.SUCCEEDED
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.attempts == 1
    assert delivery.last_status_code == 200 and delivery.completed_at is not None and delivery.lease_until is None
    (attempt,) = DeliveryAttempt.objects.filter(delivery=delivery)
    assert attempt.status_code == 200 and attempt.succeeded and attempt.error == ""
    assert attempt.response_excerpt == '{"received": true}'
    assert isinstance(attempt.duration_ms, int) and 0 <= attempt.duration_ms < 10_000
    # Delivered: a duplicate task does nothing.
    assert outbox.delivery_attempt(delivery_id=delivery.pk) is None
    assert len(server.received) == 1 and DeliveryAttempt.objects.filter(delivery=delivery).count() == 1


def test_signature_header_is_the_contracts_hmac() -> None:
    body = b'{"id":"evt_1"}'
    header = outbox.signature_header("whsec_abc", body, timestamp=1700000000)
    expected = hmac.new(b"whsec_abc", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_failed_delivery_is_retried_later(server, hooked, settings, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    delivery, _ = hooked
    server.answer = lambda received: (500, b"boom")
    before = timezone.now()
    outbox.delivery_attempt(delivery_id=delivery.pk)
    after = timezone.now()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
    assert delivery.last_status_code == 500 and delivery.lease_until is None and delivery.completed_at is None
    base = settings.WEBHOOK_RETRY_BASE_SECONDS
    # Within the schedule's first steps (retry_delay(1) or (2): see the off-by-one test below).
    assert before + timedelta(seconds=base / 2) <= delivery.next_attempt_at <= after + timedelta(seconds=2 * base)
    (attempt,) = DeliveryAttempt.objects.filter(delivery=delivery)
    assert attempt.status_code == 500 and not attempt.succeeded and attempt.response_excerpt == "boom"

    # Not due yet: a duplicate message does nothing.
    assert outbox.delivery_attempt(delivery_id=delivery.pk) is None
    assert len(server.received) == 1 and DeliveryAttempt.objects.filter(delivery=delivery).count() == 1

    make_due(delivery)
    server.answer = lambda received: (204, b"")
    assert outbox.delivery_attempt(delivery_id=delivery.pk).status == DeliveryStatus.SUCCEEDED
    assert len(server.received) == 2 and server.received[0].body == server.received[1].body  # same bytes
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and delivery.status == DeliveryStatus.SUCCEEDED
    assert DeliveryAttempt.objects.filter(delivery=delivery).count() == 2


def test_first_webhook_retry_waits_the_first_step_of_the_schedule(server, hooked, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    delivery, _ = hooked
    monkeypatch.setattr(random, "uniform", lambda a, b: b)  # no jitter: the delay is the step's ceiling
    server.answer = lambda received: (503, b"")
    before = timezone.now()
    outbox.delivery_attempt(delivery_id=delivery.pk)
    after = timezone.now()
    delivery.refresh_from_db()
    assert delivery.attempts == 1
    assert before + timedelta(seconds=ceiling(1) / 2) <= delivery.next_attempt_at
    assert delivery.next_attempt_at <= after + timedelta(seconds=ceiling(1))


def test_delivery_of_an_event_older_than_the_max_age_fails_for_good(server, hooked, settings) -> None:  # type: ignore[no-untyped-def]
    delivery, _ = hooked
    server.answer = lambda received: (500, b"")
    age = settings.WEBHOOK_MAX_AGE_SECONDS
    WebhookDelivery.objects.filter(pk=delivery.pk).update(started_at=timezone.now() - timedelta(seconds=age - 3600))
    outbox.delivery_attempt(delivery_id=delivery.pk)
    assert WebhookDelivery.objects.get(pk=delivery.pk).status == DeliveryStatus.PENDING  # not 3 days yet
    make_due(delivery)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(started_at=timezone.now() - timedelta(seconds=age + 1))
    outbox.delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED and delivery.completed_at is not None
    assert delivery.attempts == 2 and len(server.received) == 2
    make_due(delivery)
    assert outbox.delivery_attempt(delivery_id=delivery.pk) is None  # given up: never tried again


class _Redirector(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.hits += 1  # type: ignore[attr-defined]
        self.send_response(302)
        self.send_header("Location", self.server.location)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def redirector(server):  # type: ignore[no-untyped-def]
    """A server answering 302 to the merchant server (which must never be hit)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    httpd.daemon_threads = True
    httpd.location = server.url + "landed"  # type: ignore[attr-defined]
    httpd.hits = 0  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_redirect_is_a_failure_and_is_not_followed(server, redirector) -> None:  # type: ignore[no-untyped-def]
    merchant = MerchantFactory()
    add_endpoint(merchant, f"http://127.0.0.1:{redirector.server_address[1]}/hook")
    delivery = emit(CapturedTransactionFactory(merchant=merchant)).deliveries.get()
    outbox.delivery_attempt(delivery_id=delivery.pk)
    assert redirector.hits == 1 and server.received == []
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING and delivery.last_status_code == 302
    assert delivery.next_attempt_at > timezone.now()
    (attempt,) = DeliveryAttempt.objects.filter(delivery=delivery)
    assert attempt.status_code == 302 and not attempt.succeeded


def test_private_destination_is_refused_when_not_allowed(server, hooked, settings) -> None:  # type: ignore[no-untyped-def]
    delivery, _ = hooked
    settings.PAYMENTS_ALLOW_PRIVATE_CALLBACKS = False
    outbox.delivery_attempt(delivery_id=delivery.pk)
    assert server.received == []
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING and delivery.last_status_code is None
    assert delivery.next_attempt_at > timezone.now()
    (attempt,) = DeliveryAttempt.objects.filter(delivery=delivery)
    assert "refused" in attempt.error and attempt.status_code is None and not attempt.succeeded


def test_deactivated_endpoint_is_not_called(server, hooked) -> None:  # type: ignore[no-untyped-def]
    delivery, _ = hooked
    WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(is_active=False)
    outbox.delivery_attempt(delivery_id=delivery.pk)
    assert server.received == []
    assert WebhookDelivery.objects.get(pk=delivery.pk).status == DeliveryStatus.FAILED


def test_deactivated_endpoint_result_says_failed(server, hooked) -> None:  # type: ignore[no-untyped-def]
    delivery, _ = hooked
    WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(is_active=False)
    assert tasks.deliver_webhook.run(delivery.pk) == "failed"


def test_rotated_secret_signs_the_next_delivery(server, hooked) -> None:  # type: ignore[no-untyped-def]
    delivery, old = hooked
    new = outbox.webhook_endpoint_rotate_secret(endpoint_pk=delivery.endpoint_id)
    outbox.delivery_attempt(delivery_id=delivery.pk)
    got = server.received[0]
    assert verify(new, got.headers["x-gateway-signature"], got.body)
    assert not verify(old, got.headers["x-gateway-signature"], got.body)


# --- 7. Leases ---------------------------------------------------------------------------------------


def pending_deliveries():  # type: ignore[no-untyped-def]
    return WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING)


def test_lease_claim_is_exclusive_until_the_lease_runs_out(settings) -> None:  # type: ignore[no-untyped-def]
    merchant = MerchantFactory()
    add_endpoint(merchant)
    delivery = emit(CapturedTransactionFactory(merchant=merchant)).deliveries.get()
    now = timezone.now()
    leases = [outbox.lease_claim(pending_deliveries(), pk=delivery.pk, now=now) for _ in range(2)]
    assert leases == [now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS), None]
    delivery.refresh_from_db()
    assert delivery.attempts == 1
    assert delivery.lease_until == now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert outbox.lease_claim(pending_deliveries(), pk=delivery.pk, now=timezone.now())  # a dead worker's row
    assert WebhookDelivery.objects.get(pk=delivery.pk).attempts == 2

    WebhookDelivery.objects.filter(pk=delivery.pk).update(lease_until=None, next_attempt_at=now + timedelta(minutes=1))
    assert not outbox.lease_claim(pending_deliveries(), pk=delivery.pk, now=timezone.now())  # not due
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=now, status=DeliveryStatus.SUCCEEDED)
    assert not outbox.lease_claim(pending_deliveries(), pk=delivery.pk, now=timezone.now())  # done
    assert outbox.delivery_attempt(delivery_id=delivery.pk) is None
    assert WebhookDelivery.objects.get(pk=delivery.pk).attempts == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_deliver_once(server) -> None:  # type: ignore[no-untyped-def]
    merchant = MerchantFactory()
    add_endpoint(merchant, server.url)
    delivery = emit(CapturedTransactionFactory(merchant=merchant)).deliveries.get()
    results = run_at_once([lambda: outbox.delivery_attempt(delivery_id=delivery.pk)] * 4)
    assert len(results) == 4 and not [r for r in results if isinstance(r, BaseException)], results
    assert sum(r is not None for r in results) == 1
    assert len(server.received) == 1 and DeliveryAttempt.objects.count() == 1


# --- 8. Retry policy ---------------------------------------------------------------------------------


def test_retry_delay_is_capped_exponential_with_jitter(settings) -> None:  # type: ignore[no-untyped-def]
    top = settings.WEBHOOK_RETRY_MAX_DELAY_SECONDS
    rng = random.Random(7)
    for n in range(1, 41):
        for _ in range(20):
            delay = outbox.retry_delay(n, rng=rng)
            assert ceiling(n) / 2 <= delay <= ceiling(n) <= top, (n, delay)
    assert ceiling(1) == settings.WEBHOOK_RETRY_BASE_SECONDS and ceiling(40) == top
    draws = {outbox.retry_delay(6, rng=random.Random(seed)) for seed in range(50)}
    assert len(draws) == 50  # jittered: failures together do not come back together
    assert min(draws) < ceiling(6) * 0.6 and max(draws) > ceiling(6) * 0.9  # spread over the upper half
    assert outbox.retry_delay(6, rng=random.Random(3)) == outbox.retry_delay(6, rng=random.Random(3))
    settings.WEBHOOK_RETRY_MAX_DELAY_SECONDS = 100.0
    assert all(outbox.retry_delay(n) <= 100.0 for n in range(1, 41))


def test_retry_schedule_reaches_the_max_age_in_a_sane_number_of_tries(settings) -> None:  # type: ignore[no-untyped-def]
    age = settings.WEBHOOK_MAX_AGE_SECONDS

    def tries(delay) -> int:  # type: ignore[no-untyped-def]
        total, n = 0.0, 0
        while total < age:
            n += 1
            total += delay(n)
            assert n < 100, "the schedule never reaches the max age"
        return n

    for seed in range(100):
        rng = random.Random(seed)
        assert tries(lambda n: outbox.retry_delay(n, rng=rng)) < 30, seed
    assert tries(lambda n: ceiling(n) / 2) <= 35  # even with the shortest jitter every time


def test_countdown_never_reaches_the_visibility_timeout(settings) -> None:  # type: ignore[no-untyped-def]
    cap = settings.CELERY_MAX_COUNTDOWN_SECONDS
    assert 0 < cap < settings.CELERY_VISIBILITY_TIMEOUT_SECONDS
    for delay in (0.0, 1.0, 10.5, cap - 0.5, cap):
        assert outbox.countdown_for(delay) == delay
    for delay in (cap + 0.001, cap + 1, settings.CELERY_VISIBILITY_TIMEOUT_SECONDS, 6 * 3600.0, 1e9):
        assert outbox.countdown_for(delay) is None


@pytest.mark.parametrize("base", [3.0, 4000.0])
def test_retries_are_queued_with_a_safe_countdown_or_left_to_the_sweep(  # type: ignore[no-untyped-def]
    queue, server, hooked, settings, django_capture_on_commit_callbacks, base
) -> None:
    delivery, _ = hooked
    settings.WEBHOOK_RETRY_BASE_SECONDS = base
    server.answer = lambda received: (500, b"")
    cap, visibility = settings.CELERY_MAX_COUNTDOWN_SECONDS, settings.CELERY_VISIBILITY_TIMEOUT_SECONDS
    with_countdown = without = 0
    # With base 3 s the ceiling passes the cap (30 min) at try 11, where the jitter
    # may fall either side; tries 12 and 13 are surely past it.
    for n in range(1, 14):
        queue.calls.clear()
        make_due(delivery)
        with django_capture_on_commit_callbacks(execute=True):
            outbox.delivery_attempt(delivery_id=delivery.pk)
        row = WebhookDelivery.objects.get(pk=delivery.pk)
        assert row.attempts == n and row.status == DeliveryStatus.PENDING
        delay = (row.next_attempt_at - timezone.now()).total_seconds()
        if delay <= cap - 1:
            (call,) = queue.calls
            assert call["id"] == delivery.pk and abs(call["countdown"] - delay) < 1  # type: ignore[operator]
            with_countdown += 1
        elif delay > cap + 1:
            assert queue.calls == []  # too far ahead for a countdown: the sweep will queue it
            without += 1
        assert all(c["countdown"] is None or c["countdown"] <= cap < visibility for c in queue.calls)
    if base < 10:
        assert with_countdown >= 5 and without >= 2
    else:
        assert with_countdown == 0 and without == 13
    # What was left to the sweep is queued once due.
    queue.calls.clear()
    make_due(delivery)
    settings.OUTBOX_SWEEP_GRACE_SECONDS = 0
    outbox.outbox_sweep()
    assert queue.calls == [{"task": "deliver_webhook", "id": delivery.pk, "countdown": None, "in_atomic": True}]


@pytest.mark.parametrize("base", [3.0, 4000.0])
def test_refund_retry_countdown_is_safe(  # type: ignore[no-untyped-def]
    queue, monkeypatch, settings, django_capture_on_commit_callbacks, base
) -> None:
    settings.WEBHOOK_RETRY_BASE_SECONDS = base
    txn = CapturedTransactionFactory()
    accepted = services.refund_request(transaction_id=txn.pk, merchant_pk=txn.merchant_id)
    monkeypatch.setattr(SandboxAcquirer, "refund", lambda self, **kw: AcquirerResult(Outcome.ERROR, reason="down"))
    with django_capture_on_commit_callbacks(execute=True):
        services.refund_execute(refund_id=accepted.pk)
    delay = (Refund.objects.get(pk=accepted.pk).next_attempt_at - timezone.now()).total_seconds()
    assert base / 2 - 1 <= delay <= base
    if base < 10:
        (call,) = queue.calls
        assert call["task"] == "execute_refund" and 0 < call["countdown"] <= settings.CELERY_MAX_COUNTDOWN_SECONDS
    else:
        assert queue.calls == []


# --- 9. Resend ---------------------------------------------------------------------------------------


def test_resend_puts_a_failed_delivery_back_and_reaches_new_endpoints(  # type: ignore[no-untyped-def]
    queue, server, django_capture_on_commit_callbacks
) -> None:
    merchant = MerchantFactory()
    first, _ = add_endpoint(merchant, server.url + "first")
    event = emit(CapturedTransactionFactory(merchant=merchant))
    old = event.deliveries.get()
    WebhookDelivery.objects.filter(pk=old.pk).update(
        status=DeliveryStatus.FAILED, completed_at=timezone.now(), attempts=30,
        next_attempt_at=timezone.now() + timedelta(days=1),  # whatever it was, resend makes it due now
    )
    second, _ = add_endpoint(merchant, server.url + "second")  # added after the event
    add_endpoint(merchant, server.url + "off", active=False)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert outbox.event_resend(event_id=event.pk) == 2
        assert queue.calls == []  # not before the commit
    assert len(callbacks) == 1
    deliveries = {d.endpoint_id: d for d in WebhookDelivery.objects.filter(event=event)}
    assert set(deliveries) == {first.pk, second.pk}
    assert deliveries[first.pk].pk == old.pk  # the same row, put back
    for delivery in deliveries.values():
        assert delivery.status == DeliveryStatus.PENDING and delivery.completed_at is None
        assert delivery.lease_until is None and delivery.next_attempt_at <= timezone.now()
        # A new 3 days, from the first step of the backoff (an old event is resent
        # precisely because it failed for age).
        assert delivery.attempts == 0 and (timezone.now() - delivery.started_at).total_seconds() < 60
    assert sorted(queue.deliveries) == sorted(d.pk for d in deliveries.values())
    for delivery in deliveries.values():  # due now: the queued tasks deliver at once
        assert outbox.delivery_attempt(delivery_id=delivery.pk).status == DeliveryStatus.SUCCEEDED
    assert sorted(r.path for r in server.received) == ["/first", "/second"]


# --- 10. Endpoints and their secrets -----------------------------------------------------------------


def test_endpoint_secret_is_shown_once_and_kept_sealed() -> None:
    merchant = MerchantFactory()
    endpoint, secret = outbox.webhook_endpoint_create(
        merchant_pk=merchant.pk, url="https://hooks.example.com/in", description="orders"
    )
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{40,}", secret)
    stored = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert stored.url == "https://hooks.example.com/in" and stored.is_active and stored.merchant_id == merchant.pk
    assert secret not in stored.secret_sealed and secret[6:] not in stored.secret_sealed
    assert secret[6:] not in row_text(WebhookEndpoint, endpoint.pk)
    assert outbox.endpoint_secret(stored) == secret
    other, other_secret = outbox.webhook_endpoint_create(merchant_pk=merchant.pk, url="https://hooks.example.com/b")
    assert other_secret != secret and outbox.endpoint_secret(other) == other_secret
    rotated = outbox.webhook_endpoint_rotate_secret(endpoint_pk=endpoint.pk)
    assert rotated != secret and outbox.endpoint_secret(WebhookEndpoint.objects.get(pk=endpoint.pk)) == rotated


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/in",
        "file:///etc/passwd",
        "hooks.example.com/in",
        "https:///in",
        "http://",
        "https://user:pass@hooks.example.com/in",
        "https://user@hooks.example.com/in",
    ],
)
def test_endpoint_url_refused(url) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(outbox.EndpointURLInvalid):
        outbox.endpoint_url_validate(url)
    with pytest.raises(outbox.EndpointURLInvalid):
        outbox.webhook_endpoint_create(merchant_pk=MerchantFactory().pk, url=url)
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("url", ["https://hooks.example.com/in", "http://127.0.0.1:8080/hook?x=1"])
def test_endpoint_url_accepted(url) -> None:  # type: ignore[no-untyped-def]
    assert outbox.endpoint_url_validate(url) == url


@pytest.mark.django_db(transaction=True)
def test_no_webhook_call_is_made_inside_a_transaction(server) -> None:  # type: ignore[no-untyped-def]
    """A merchant's slow server must never hold our row locks: delivering from
    inside an atomic block is refused before any connection."""
    txn = CapturedTransactionFactory()
    add_endpoint(txn.merchant, url=server.url + "hooks")
    with transaction.atomic():
        emit(txn)
    delivery = WebhookDelivery.objects.get()
    with pytest.raises(TransactionRuleViolation, match="inside a transaction"):
        with transaction.atomic():
            outbox.delivery_attempt(delivery_id=delivery.pk)
    assert not server.received



@pytest.mark.django_db(transaction=True)
def test_a_delivery_whose_lease_was_lost_records_nothing(server) -> None:  # type: ignore[no-untyped-def]
    """The worker outlived its lease and the sweep handed the row to another:
    the late answer must not overwrite the new holder's state."""
    txn = CapturedTransactionFactory()
    add_endpoint(txn.merchant, url=server.url + "hooks")
    with transaction.atomic():
        delivery = emit(txn).deliveries.get()

    def taken_over(received):  # type: ignore[no-untyped-def]
        try:  # another worker's lease, written from the server's thread (its own connection)
            WebhookDelivery.objects.filter(pk=delivery.pk).update(lease_until=timezone.now() + timedelta(minutes=5))
        finally:
            connection.close()
        return 500, b"late"

    server.answer = taken_over
    outbox.delivery_attempt(delivery_id=delivery.pk)
    row = WebhookDelivery.objects.get(pk=delivery.pk)
    assert row.status == DeliveryStatus.PENDING and row.last_status_code is None
    assert not DeliveryAttempt.objects.exists() and len(server.received) == 1


@pytest.mark.django_db(transaction=True)
def test_on_postgresql_the_answer_its_event_and_deliveries_are_one_statement(require_postgres, queue) -> None:  # type: ignore[no-untyped-def]
    """The terminals' hot path: the acquirer's answer, the event and its deliveries
    are written by one statement (atomic by itself), and queued after it."""
    from django.test.utils import CaptureQueriesContext

    merchant = MerchantFactory()
    endpoint, _ = add_endpoint(merchant)
    add_endpoint(merchant, "https://off.example.com/hook", active=False)
    with CaptureQueriesContext(connection) as queries:
        txn = authorize(merchant, capture=True, amount="33.10")
    combined = [q["sql"] for q in queries.captured_queries if "WITH changed AS" in q["sql"]]
    assert len(combined) == 1
    event = only_event(transaction=txn)
    assert event.type == EventType.PAYMENT_SUCCEEDED and event.merchant_id == merchant.pk
    assert event.data["amount"] == "33.10" and event.data["status"] == "captured" and event.public_id.startswith("evt_")
    [delivery] = WebhookDelivery.objects.filter(event=event)
    assert delivery.endpoint_id == endpoint.pk and delivery.status == DeliveryStatus.PENDING
    assert delivery.started_at == event.created_at == delivery.next_attempt_at
    assert queue.deliveries == [delivery.pk] and not any(c["in_atomic"] for c in queue.calls)
