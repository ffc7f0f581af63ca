"""The asynchronous backbone with real Celery processes on the tests' broker
(Redis in CI, the embedded filesystem broker otherwise): refunds carried out
and announced by webhook, retries, a worker killed mid-task, a broker that is
down when a payment commits.

Merchant servers and the acquirer's refund API are local HTTP servers.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from decimal import Decimal

import pytest
from django.test import Client

from payments import cards, outbox, services
from payments.models import DeliveryAttempt, Event, Refund, WebhookDelivery
from payments.states import DeliveryStatus, Door, RefundStatus, TransactionStatus
from tests.factories import MerchantFactory
from tests.support.http_acquirer import BankServer
from tests.support.http_servers import MerchantServer, Received
from tests.support.readme import verify_webhook_function
from tests.support.workers import ROOT, database_url_for_workers, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("shipped_defaults")]


@pytest.fixture
def webhooks():  # type: ignore[no-untyped-def]
    server = MerchantServer().start()
    yield server
    server.stop()


@pytest.fixture
def merchant(webhooks):  # type: ignore[no-untyped-def]
    merchant = MerchantFactory(allowed_ips=["127.0.0.1"], callback_url=webhooks.url + "return")
    endpoint, secret = outbox.webhook_endpoint_create(merchant_pk=merchant.pk, url=webhooks.url + "hooks")
    merchant.webhook_secret = secret
    return merchant


def sale(merchant, amount: str = "100.00"):  # type: ignore[no-untyped-def]
    return services.payment_authorize(
        merchant_pk=merchant.pk, door=Door.ESIPAY, card_number="4242424242424242", policy=cards.ESIPAY_PAN,
        amount=amount, capture=True,
    )


def hooks(server: MerchantServer) -> list[Received]:
    return [r for r in server.received if r.path == "/hooks"]


def hook_types(server: MerchantServer) -> list[str]:
    return [json.loads(r.body)["type"] for r in hooks(server)]


def sweep_until(condition, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    """Run the periodic sweep (as beat would) until ``condition`` holds."""

    def step() -> bool:
        outbox.outbox_sweep()
        return condition()

    wait_until(step, timeout=timeout, interval=0.5, message="the sweep did not get the work done")


def test_esipay_refund_is_carried_out_by_a_worker_and_announced_by_signed_webhooks(  # type: ignore[no-untyped-def]
    merchant, webhooks, celery_processes
) -> None:
    celery_processes("worker")
    paid = Client().get(f"/cardpay/{merchant.uuid}/order-77/4242424242424242/12/2099/100.00", REMOTE_ADDR="127.0.0.1")
    assert paid.status_code == 200
    transaction = paid.json()["transaction"]
    accepted = Client().get(f"/cardpay/{merchant.uuid}/{transaction}/40.00", REMOTE_ADDR="127.0.0.1")
    assert accepted.status_code == 200 and accepted.json()["status"] == "pending"
    refund = Refund.objects.get(pk=accepted.json()["refund"])

    wait_until(lambda: sorted(hook_types(webhooks)) == ["payment.succeeded", "refund.succeeded"], timeout=30,
               message=f"webhooks received: {hook_types(webhooks)}")
    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED and refund.acquirer_reference.startswith("sbx_")
    verify = verify_webhook_function()  # the README's example, run as a receiver would
    for received in hooks(webhooks):
        assert verify(merchant.webhook_secret, received.body, received.headers["x-gateway-signature"])
        assert not verify("whsec_wrong", received.body, received.headers["x-gateway-signature"])
        assert not verify(merchant.webhook_secret, received.body + b" ", received.headers["x-gateway-signature"])
    [refund_event] = [json.loads(r.body) for r in hooks(webhooks) if b"refund.succeeded" in r.body]
    assert refund_event["data"]["refund"] == refund.pk and refund_event["data"]["amount"] == "40.00"
    assert refund_event["data"]["transaction_status"] == TransactionStatus.PARTIALLY_REFUNDED
    assert "4242424242424242" not in json.dumps([json.loads(r.body) for r in hooks(webhooks)])
    # The receiver has the body before the worker records its answer: wait for the record.
    wait_until(lambda: DeliveryAttempt.objects.filter(succeeded=True).count() == 2, timeout=10,
               message="both deliveries recorded as succeeded")


def test_a_failing_endpoint_is_retried_with_backoff_until_it_answers(  # type: ignore[no-untyped-def]
    merchant, webhooks, celery_processes
) -> None:
    answers = iter([(500, b"down"), (503, b"still down")])
    webhooks.answer = lambda received: next(answers, (200, b"ok"))
    celery_processes("worker", env={"WEBHOOK_RETRY_BASE_SECONDS": "0.5"})
    sale(merchant)
    delivery = WebhookDelivery.objects.get()
    wait_until(lambda: WebhookDelivery.objects.get().status == DeliveryStatus.SUCCEEDED, timeout=30)
    attempts = list(DeliveryAttempt.objects.filter(delivery=delivery).order_by("started_at"))
    assert [a.status_code for a in attempts] == [500, 503, 200]
    assert attempts[0].response_excerpt == "down" and attempts[1].response_excerpt == "still down"
    # The second retry waited longer than the first (exponential, jittered in the upper half).
    first_gap = (attempts[1].started_at - attempts[0].started_at).total_seconds()
    assert first_gap >= 0.25
    assert len({json.loads(r.body)["id"] for r in hooks(webhooks)}) == 1  # one event id for all tries


def test_a_worker_killed_mid_delivery_is_replaced_and_the_event_delivered_once_recorded(  # type: ignore[no-untyped-def]
    merchant, webhooks, celery_processes, settings
) -> None:
    held = threading.Event()
    release = threading.Event()

    def first_hangs(received: Received) -> tuple[int, bytes]:
        if not held.is_set():
            held.set()
            release.wait(30)
        return 200, b"ok"

    webhooks.answer = first_hangs
    lease = {"OUTBOX_LEASE_SECONDS": "2"}
    first = celery_processes("worker", env=lease, name="doomed")
    sale(merchant)
    assert held.wait(30), first.log()
    first.kill()  # mid-delivery: the request was sent, no answer recorded
    release.set()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING and delivery.lease_until is not None
    assert not DeliveryAttempt.objects.exists()

    celery_processes("worker", env=lease, name="heir")
    settings.OUTBOX_SWEEP_GRACE_SECONDS = 0
    # The periodic sweep (called here as beat would) finds it once the lease ran out.
    sweep_until(lambda: WebhookDelivery.objects.get().status == DeliveryStatus.SUCCEEDED)
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert list(DeliveryAttempt.objects.values_list("status_code", flat=True)) == [200]
    # Both requests carried the same event id: the receiver can tell the duplicate.
    assert len(hooks(webhooks)) == 2 and len({json.loads(r.body)["id"] for r in hooks(webhooks)}) == 1


def test_a_worker_killed_mid_refund_never_refunds_twice(merchant, webhooks, celery_processes, settings) -> None:  # type: ignore[no-untyped-def]
    bank = BankServer(hold_first=True).start()
    try:
        env = {"OUTBOX_LEASE_SECONDS": "2", "PAYMENTS_ACQUIRER": "tests.support.http_acquirer.HttpAcquirer",
               "ACQUIRER_TEST_URL": bank.url}
        first = celery_processes("worker", env=env, name="doomed")
        txn = sale(merchant)
        refund = services.refund_request(transaction_id=txn.pk, merchant_pk=merchant.pk, amount="60.00")
        assert bank.first_call.wait(30), first.log()
        first.kill()  # the bank is processing the refund; the worker never hears back
        bank.release.set()
        assert Refund.objects.get(pk=refund.pk).status == RefundStatus.PENDING

        celery_processes("worker", env=env, name="heir")
        settings.OUTBOX_SWEEP_GRACE_SECONDS = 0
        sweep_until(lambda: Refund.objects.get(pk=refund.pk).status == RefundStatus.SUCCEEDED)
        refund.refresh_from_db()
        assert refund.attempts == 2 and refund.acquirer_reference == f"bank-refund-{refund.pk}"
        assert bank.calls == [f"refund-{refund.pk}"] * 2  # asked twice, with one idempotency key
        assert bank.refunded == {f"refund-{refund.pk}": Decimal("60.00")}  # money moved once
        txn.refresh_from_db()
        assert txn.refunded_amount == Decimal("60.00")
        assert Event.objects.filter(type="refund.succeeded").count() == 1
    finally:
        bank.stop()


def test_an_event_committed_while_the_broker_is_down_is_delivered_by_the_sweep(  # type: ignore[no-untyped-def]
    merchant, webhooks, celery_processes
) -> None:
    """A payment made by a process whose broker is unreachable commits anyway; once
    a worker and beat run, beat's sweep delivers its event."""
    script = (
        "import django; django.setup()\n"
        "from payments import cards, services\nfrom payments.states import Door\n"
        f"txn = services.payment_authorize(merchant_pk={merchant.pk}, door=Door.ESIPAY, "
        "card_number='4242424242424242', policy=cards.ESIPAY_PAN, amount='25.00', capture=True)\n"
        "print(txn.pk, txn.status)\n"
    )
    env = {**dict(__import__("os").environ), "DJANGO_SETTINGS_MODULE": "config.settings.test",
           "DATABASE_URL": database_url_for_workers(), "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1] == "captured"
    assert "broker unavailable" in done.stderr  # the publish failed, the payment did not
    assert WebhookDelivery.objects.get().status == DeliveryStatus.PENDING and not webhooks.received

    sweeping = {"OUTBOX_SWEEP_SECONDS": "1", "OUTBOX_SWEEP_GRACE_SECONDS": "0"}
    celery_processes("worker", env=sweeping)
    celery_processes("beat", env=sweeping)
    wait_until(lambda: WebhookDelivery.objects.get().status == DeliveryStatus.SUCCEEDED, timeout=40,
               message="the sweep did not deliver the event")
    assert hook_types(webhooks) == ["payment.succeeded"]


def test_a_broker_that_accepts_and_never_answers_costs_seconds_not_a_hang(merchant, webhooks, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A paused or black-holed Redis: the payment's publish after commit gives up
    on the socket timeout (2 s), the payment is made, the sweep delivers later."""
    import socket
    import time

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)  # accepts (the kernel does), never answers
    script = (
        "import django, time; django.setup()\n"
        "from payments import cards, services\nfrom payments.states import Door\n"
        "t = time.monotonic()\n"
        f"txn = services.payment_authorize(merchant_pk={merchant.pk}, door=Door.ESIPAY, "
        "card_number='4242424242424242', policy=cards.ESIPAY_PAN, amount='5.00', capture=True)\n"
        "print(txn.status, round(time.monotonic() - t, 1))\n"
    )
    env = {**dict(__import__("os").environ), "DJANGO_SETTINGS_MODULE": "config.settings.test",
           "DATABASE_URL": database_url_for_workers(),
           "CELERY_BROKER_URL": f"redis://127.0.0.1:{hole.getsockname()[1]}/0"}
    try:
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=60)
        elapsed = time.monotonic() - started
    finally:
        hole.close()
    assert done.returncode == 0, done.stderr
    status, payment_seconds = done.stdout.split()
    assert status == "captured" and "broker unavailable" in done.stderr
    assert float(payment_seconds) < 10, f"the payment waited {payment_seconds} s on the broker (total {elapsed:.1f} s)"
    assert WebhookDelivery.objects.get().status == DeliveryStatus.PENDING
