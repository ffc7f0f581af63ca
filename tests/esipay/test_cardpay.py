"""esipay card payments over HTTP (docs/esipay.md): every status of the
contract, the return-URL confirmation against a real local server, cid idempotency."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.test import Client

from payments.models import Event, Transaction
from payments.states import TransactionStatus
from tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db

FUTURE = str(date.today().year + 3)


def pay(merchant, cid="order-1", card="4242424242424242", month="12", year=FUTURE, amount="12.50",  # type: ignore[no-untyped-def]
        *, client: Client | None = None, method: str = "get", address: str = "127.0.0.1"):
    client = client or Client()
    url = f"/cardpay/{merchant.uuid}/{cid}/{card}/{month}/{year}/{amount}"
    return getattr(client, method)(url, REMOTE_ADDR=address)


def test_approved_payment_calls_the_return_url_then_answers_200(merchant, return_url) -> None:  # type: ignore[no-untyped-def]
    response = pay(merchant, amount="12.50")
    assert response.status_code == 200, response.json()
    body = response.json()
    txn = Transaction.objects.get(pk=body["transaction"])
    assert body == {"transaction": txn.pk, "amount": "12.50", "status": "captured", "cid": "order-1",
                    "repeated": False}
    assert txn.status == TransactionStatus.CAPTURED and txn.captured_amount == Decimal("12.50")
    assert txn.door == "esipay" and txn.merchant_reference == "order-1" and txn.card_last4 == "4242"
    [call] = return_url.received
    assert call.path == "/esipay/return"
    assert call.headers["content-type"] == "application/x-www-form-urlencoded"
    assert call.form == {"type": "card", "amount": "12.50", "transaction": str(txn.pk), "cid": "order-1"}
    assert list(Event.objects.filter(transaction=txn).values_list("type", flat=True)) == ["payment.succeeded"]


def test_post_is_accepted_too(merchant) -> None:  # type: ignore[no-untyped-def]
    assert pay(merchant, method="post").status_code == 200
    assert pay(merchant, cid="order-put", method="put").status_code == 405


def test_unregistered_address_is_403(merchant, return_url) -> None:  # type: ignore[no-untyped-def]
    response = pay(merchant, address="203.0.113.9")
    assert response.status_code == 403 and response.json()["code"] == "forbidden_address"
    assert not Transaction.objects.exists() and not return_url.received


def test_merchant_without_addresses_gets_403_for_everything(db) -> None:  # type: ignore[no-untyped-def]
    merchant = MerchantFactory(allowed_ips=[], callback_url="http://127.0.0.1:9/")
    assert pay(merchant).status_code == 403
    assert Client().get(f"/cardpay/{merchant.uuid}/1", REMOTE_ADDR="127.0.0.1").status_code == 403


def test_disabled_merchant_gets_403(merchant) -> None:  # type: ignore[no-untyped-def]
    merchant.is_active = False
    merchant.save()
    assert pay(merchant).status_code == 403


@pytest.mark.parametrize("raw_uuid", ["not-a-uuid", "6f1c5e0a-0000-4000-8000-000000000000"])
def test_unknown_uuid_is_400(db, raw_uuid) -> None:  # type: ignore[no-untyped-def]
    response = Client().get(f"/cardpay/{raw_uuid}/c1/4242424242424242/12/{FUTURE}/10", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 400 and response.json()["code"] == "unknown_merchant"


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("cid", "x" * 65, "invalid_cid"),
        ("cid", "a b", "invalid_cid"),
        ("cid", "é", "invalid_cid"),
        ("card", "424242424", "invalid_card_number"),  # 9 digits
        ("card", "42424242424242424242", "invalid_card_number"),  # 20 digits
        ("card", "4242x42424242424", "invalid_card_number"),
        ("month", "0", "invalid_card_expiry"),
        ("month", "13", "invalid_card_expiry"),
        ("month", "ab", "invalid_card_expiry"),
        ("year", "30", "invalid_card_expiry"),
        ("year", "20300", "invalid_card_expiry"),
        ("amount", "0", "invalid_amount"),
        ("amount", "-1", "invalid_amount"),
        ("amount", "12,50", "invalid_amount"),
        ("amount", "1.234", "invalid_amount"),
        ("amount", "abc", "invalid_amount"),
        ("amount", "1e3", "invalid_amount"),
        ("amount", "12.500", "invalid_amount"),  # "at most 2 decimals", as written
        ("amount", ".5", "invalid_amount"),
    ],
)
def test_each_bad_parameter_is_400(merchant, return_url, field, value, code) -> None:  # type: ignore[no-untyped-def]
    response = pay(merchant, **{field: value})
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert not return_url.received
    assert not Transaction.objects.filter(status=TransactionStatus.CAPTURED).exists()


def test_expired_card_is_400_but_valid_through_the_last_day_of_its_month(merchant) -> None:  # type: ignore[no-untyped-def]
    today = date.today()
    last_month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    response = pay(merchant, cid="old", month=str(last_month[1]), year=str(last_month[0]))
    assert response.status_code == 400 and response.json()["code"] == "card_expired"
    assert pay(merchant, cid="this-month", month=str(today.month), year=str(today.year)).status_code == 200


def test_ten_and_twelve_digit_cards_are_accepted(merchant) -> None:  # type: ignore[no-untyped-def]
    assert pay(merchant, cid="ten", card="4242424242").status_code == 200
    assert pay(merchant, cid="twelve", card="424242424242").status_code == 200


@pytest.mark.parametrize(
    ("card", "amount", "code", "says"),
    [
        ("4000000000000002", "10", "declined", "card declined"),
        ("4000000000009995", "10", "declined", "insufficient funds"),
        ("4000000000000069", "10", "declined", "expired card"),
        ("0000000000000000", "10", "card_banned", "Card banned"),
        ("4242424242424242", "2500.01", "limit_exceeded", "2500.00"),
    ],
)
def test_declines_are_400_and_say_why(merchant, return_url, card, amount, code, says) -> None:  # type: ignore[no-untyped-def]
    response = pay(merchant, card=card, amount=amount)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code and says in body["error"]
    assert card not in response.content.decode()  # never the card number
    assert not return_url.received  # nothing to confirm
    txn = Transaction.objects.get(merchant=merchant)
    assert txn.status == TransactionStatus.DECLINED and txn.captured_amount == 0
    assert list(txn.events.values_list("type", flat=True)) == ["payment.failed"]


def test_acquirer_failure_is_500(merchant, return_url) -> None:  # type: ignore[no-untyped-def]
    response = pay(merchant, card="4000000000000119")
    assert response.status_code == 500 and response.json()["code"] == "acquirer_failure"
    assert Transaction.objects.get().status == TransactionStatus.ERROR and not return_url.received


@pytest.mark.parametrize("status", [500, 302, 201, 404])
def test_return_url_not_answering_200_cancels_the_transaction(merchant, return_url, status) -> None:  # type: ignore[no-untyped-def]
    return_url.answer = lambda received: (status, b"nope")
    response = pay(merchant)
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "confirmation_failed" and "cancelled" in body["error"]
    txn = Transaction.objects.get(pk=body["transaction"])
    assert txn.status == TransactionStatus.VOIDED and txn.captured_amount == 0
    assert list(txn.events.values_list("type", flat=True)) == ["payment.cancelled"]


def test_return_url_at_a_private_address_is_refused_and_cancels(merchant, return_url, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PAYMENTS_ALLOW_PRIVATE_CALLBACKS = False
    response = pay(merchant)
    assert response.status_code == 500 and "refused" in response.json()["error"]
    assert not return_url.received  # never connected
    assert Transaction.objects.get().status == TransactionStatus.VOIDED


def test_merchant_without_return_url_gets_500_and_nothing_is_charged(db, shipped_defaults) -> None:  # type: ignore[no-untyped-def]
    merchant = MerchantFactory(allowed_ips=["127.0.0.1"], callback_url="")
    response = pay(merchant)
    assert response.status_code == 500 and response.json()["code"] == "no_return_url"
    assert not Transaction.objects.exists()


# --- cid: the merchant's payment id is idempotent ----------------------------------------------


def test_a_repeat_of_an_approved_cid_answers_the_same_transaction_and_charges_nothing(merchant, return_url) -> None:  # type: ignore[no-untyped-def]
    first = pay(merchant, cid="A-1").json()
    again = pay(merchant, cid="A-1")
    assert again.status_code == 200
    assert again.json()["transaction"] == first["transaction"] and again.json()["repeated"] is True
    assert Transaction.objects.filter(merchant=merchant).count() == 1
    assert len(return_url.received) == 1


@pytest.mark.parametrize(("field", "value"), [("amount", "12.51"), ("card", "5555555555554444")])
def test_a_repeat_with_other_data_is_400(merchant, field, value) -> None:  # type: ignore[no-untyped-def]
    assert pay(merchant, cid="A-2").status_code == 200
    response = pay(merchant, cid="A-2", **{field: value})
    assert response.status_code == 400 and "already used" in response.json()["error"]
    assert Transaction.objects.filter(merchant=merchant).count() == 1


def test_a_repeat_after_a_cancelled_attempt_is_a_new_attempt(merchant, return_url) -> None:  # type: ignore[no-untyped-def]
    return_url.answer = lambda received: (503, b"busy")
    cancelled = pay(merchant, cid="A-3")
    assert cancelled.status_code == 500
    return_url.answer = lambda received: (200, b"ok")
    retried = pay(merchant, cid="A-3")
    assert retried.status_code == 200
    assert retried.json()["transaction"] != cancelled.json()["transaction"]
    statuses = sorted(Transaction.objects.filter(merchant_reference="A-3").values_list("status", flat=True))
    assert statuses == ["captured", "voided"]


def test_a_repeat_after_a_decline_is_a_new_attempt(merchant) -> None:  # type: ignore[no-untyped-def]
    assert pay(merchant, cid="A-4", card="4000000000000002").status_code == 400
    assert pay(merchant, cid="A-4", card="4000000000000002").status_code == 400
    assert Transaction.objects.filter(merchant_reference="A-4", status="declined").count() == 2


def test_the_same_cid_at_another_merchant_is_another_payment(merchant, return_url) -> None:  # type: ignore[no-untyped-def]
    other = MerchantFactory(allowed_ips=["127.0.0.1"], callback_url=return_url.url)
    assert pay(merchant, cid="shared").json()["transaction"] != pay(other, cid="shared").json()["transaction"]


def test_card_numbers_never_reach_the_logs(merchant, return_url, caplog) -> None:  # type: ignore[no-untyped-def]
    """What the log handlers write: every record (Django's "Bad Request: /cardpay/..."
    lines included, whose loggers do not propagate to the root) goes through the
    card filter, which masks card numbers of any length in esipay paths."""
    import logging

    from config.logging import RedactCardNumbers

    for name in ("django", "django.server", "django.request"):
        logger = logging.getLogger(name)
        while not logger.handlers and logger.propagate and logger.parent:
            logger = logger.parent
        handlers = [h for h in logger.handlers if type(h) is logging.StreamHandler]  # ours, not pytest's
        assert handlers and all(
            any(isinstance(f, RedactCardNumbers) for f in h.filters) for h in handlers
        ), f"{name} writes without the card filter"
    django_logger = logging.getLogger("django")
    django_logger.addHandler(caplog.handler)
    try:
        caplog.set_level(logging.DEBUG)
        return_url.answer = lambda received: (500, b"no")
        pay(merchant, card="4242424242424242")
        pay(merchant, cid="c2", card="4000000000000002")
        pay(merchant, cid="c3", card="4242424242", month="13")  # 10 digits, 400
        Client().get(f"/cardpay/{merchant.uuid}/4242424242", REMOTE_ADDR="127.0.0.1")  # truncated: a refund path
    finally:
        django_logger.removeHandler(caplog.handler)
    assert any("Bad Request: /cardpay/" in r.getMessage() for r in caplog.records)  # the lines are there...
    card_filter, formatter = RedactCardNumbers(), logging.Formatter("%(message)s")
    written = []
    for record in caplog.records:
        card_filter.filter(record)
        written.append(formatter.format(record))
    output = "\n".join(written)
    for card in ("4242424242424242", "4000000000000002", "4242424242"):  # ...but masked
        assert card not in output


@pytest.mark.django_db(transaction=True)
def test_repeats_of_one_cid_at_once_charge_once(return_url, shipped_defaults) -> None:  # type: ignore[no-untyped-def]
    """6 merchant threads send the same cid at the same instant: one payment is
    made, its return URL called once, and every call answers 200 with it."""
    import time

    from tests.support.threads import run_at_once

    merchant = MerchantFactory(allowed_ips=["127.0.0.1"], callback_url=return_url.url)

    def slow_ok(received):  # type: ignore[no-untyped-def]
        time.sleep(0.3)  # the first request is still confirming while the others arrive
        return 200, b"ok"

    return_url.answer = slow_ok
    def call() -> tuple[int, dict]:
        response = pay(merchant, cid="same-order")
        return response.status_code, response.json()

    results = run_at_once([call] * 6)
    assert [status for status, _ in results] == [200] * 6, results
    assert len({body["transaction"] for _, body in results}) == 1
    assert sum(not body["repeated"] for _, body in results) == 1
    assert Transaction.objects.filter(merchant=merchant).count() == 1
    assert len(return_url.received) == 1



def test_an_abandoned_confirmation_is_voided_by_the_sweep(merchant, return_url, settings) -> None:  # type: ignore[no-untyped-def]
    """The request confirming a payment died (a restart) and left it authorized:
    the sweep voids it, the cardholder's money is released, the cid is free."""
    from datetime import timedelta

    from django.utils import timezone

    from payments import cards, services, tasks
    from payments.states import Door

    abandoned = services.payment_authorize(
        merchant_pk=merchant.pk, door=Door.ESIPAY, card_number="4242424242424242", policy=cards.ESIPAY_PAN,
        amount="12.50", capture=False, merchant_reference="lost-1",
    )
    recent = services.payment_authorize(
        merchant_pk=merchant.pk, door=Door.ESIPAY, card_number="4242424242424242", policy=cards.ESIPAY_PAN,
        amount="12.50", capture=False, merchant_reference="in-flight",
    )
    Transaction.objects.filter(pk=abandoned.pk).update(
        updated_at=timezone.now() - timedelta(seconds=settings.ESIPAY_UNCONFIRMED_VOID_SECONDS + 1)
    )
    assert tasks.sweep_outbox()["unconfirmed_voided"] == 1
    abandoned.refresh_from_db()
    assert abandoned.status == TransactionStatus.VOIDED
    assert list(abandoned.events.values_list("type", flat=True)) == ["payment.cancelled"]
    assert Transaction.objects.get(pk=recent.pk).status == TransactionStatus.AUTHORIZED  # a live request's
    retried = pay(merchant, cid="lost-1")
    assert retried.status_code == 200 and retried.json()["transaction"] != abandoned.pk
