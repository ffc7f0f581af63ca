"""orderID and Idempotency-Key repeats replay the first answer and charge once, even
when sent concurrently (issue 8, item 4, and its idempotency rules): the first
answer is stored whatever it was and replayed byte for byte once decrypted; a
repeat with another body is 997; a repeat while the first runs is 409 at once;
records are shared by every process (the database) and pruned after their window."""
from __future__ import annotations

import threading
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from clients.secure_api import SecureApiClient, decrypt
from merchants import accounts
from merchants.models import Account, StoredCard
from payments.doors.secure_api import idempotency
from payments.doors.secure_api.models import IdempotencyRecord
from payments.models import Refund, Transaction
from tests.support.threads import run_at_once

from .acquirers import HeldAcquirer
from .conftest import card_body, charge_body

pytestmark = pytest.mark.django_db


def raw_post(api, path: str, body: dict, **headers):  # type: ignore[no-untyped-def]
    """POST through the client, and the decrypted answer's exact bytes."""
    sent: dict[str, httpx.Response] = {}
    original = api.read

    def keep(response):  # type: ignore[no-untyped-def]
        sent["response"] = response
        return original(response)

    api.read = keep
    try:
        answer = api.post(path, body, idempotency_key=headers.get("key"))
    finally:
        api.read = original
    return answer, decrypt(api.data_key, sent["response"].text)


def test_an_order_repeated_replays_the_first_answer_byte_for_byte(api, account, card) -> None:  # type: ignore[no-untyped-def]
    path = f"/billing/{account['uuid']}/transaction"
    first, first_bytes = raw_post(api, path, charge_body(card, order="ord-7"))
    again, again_bytes = raw_post(api, path, charge_body(card, order="ord-7"))
    assert first.status == again.status == 200
    assert again_bytes == first_bytes and again.replayed and not first.replayed
    assert Transaction.objects.filter(merchant_reference="ord-7").count() == 1
    # The same body with its fields in another order is the same request.
    reordered = dict(reversed(list(charge_body(card, order="ord-7").items())))
    assert raw_post(api, path, reordered)[1] == first_bytes


def test_an_order_repeated_with_another_body_is_refused(api, account, card) -> None:  # type: ignore[no-untyped-def]
    path = f"/billing/{account['uuid']}/transaction"
    assert api.post(path, charge_body(card, order="ord-8", amount=10)).status == 200
    changed = api.post(path, charge_body(card, order="ord-8", amount=11))
    assert changed.status == 400 and changed.code == 997
    assert changed.error["detail"] == "orderID: 'ord-8' was already used for another request (another body or resource)"
    other = api.post("/account", {}).data
    elsewhere = api.post(f"/billing/{other['uuid']}/transaction", charge_body(card, order="ord-8"))
    assert elsewhere.code == 997  # another account's resource: reused too
    assert Transaction.objects.filter(merchant_reference="ord-8").count() == 1


def test_an_error_is_the_first_answer_too(api, account) -> None:  # type: ignore[no-untyped-def]
    poor = api.post(f"/account/{account['uuid']}/paymentinfo", card_body("4000000000009995")).data
    path = f"/billing/{account['uuid']}/transaction"
    declined, declined_bytes = raw_post(api, path, charge_body(poor, order="ord-poor"))
    assert declined.status == 400 and declined.code == 938
    repeat, repeat_bytes = raw_post(api, path, charge_body(poor, order="ord-poor"))
    assert repeat_bytes == declined_bytes and repeat.status == 400 and repeat.replayed
    assert Transaction.objects.filter(merchant_reference="ord-poor").count() == 1  # asked once


def test_an_idempotency_key_makes_any_post_once(api, account, card) -> None:  # type: ignore[no-untyped-def]
    _, first_bytes = raw_post(api, "/account", {"externalID": "k-1"}, key="create-k-1")
    again, again_bytes = raw_post(api, "/account", {"externalID": "k-1"}, key="create-k-1")
    assert again_bytes == first_bytes and again.replayed
    assert Account.objects.filter(external_id="k-1").count() == 1
    other = api.post("/account", {"externalID": "k-2"}, idempotency_key="create-k-1")
    assert other.status == 400 and other.code == 997 and other.error["detail"].startswith("Idempotency-Key: ")
    # Refunds: the key is the core's refund reference as well.
    paid = api.post(f"/billing/{account['uuid']}/transaction", charge_body(card, order="ord-r", amount=9)).data
    refund_path = f"/billing/{account['uuid']}/transaction/{paid['transactionID']}/refund"
    one = api.post(refund_path, {"amount": 3}, idempotency_key="refund-1")
    two = api.post(refund_path, {"amount": 3}, idempotency_key="refund-1")
    assert one.data == two.data and Refund.objects.count() == 1
    assert Refund.objects.get().reference == "refund-1"


def test_keys_are_forgotten_after_their_window_and_pruned(api, settings) -> None:  # type: ignore[no-untyped-def]
    assert api.post("/account", {"name": "a"}, idempotency_key="window").status == 200
    record = IdempotencyRecord.objects.get(key="window")
    assert record.expires_at is not None
    assert abs((record.expires_at - record.created_at).total_seconds() - settings.SECURE_API_IDEMPOTENCY_TTL_SECONDS) < 5
    assert api.post("/account", {"name": "b"}, idempotency_key="window").code == 997  # still in its window
    IdempotencyRecord.objects.filter(pk=record.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    fresh = api.post("/account", {"name": "b"}, idempotency_key="window")  # past it: a new request
    assert fresh.status == 200 and not fresh.replayed and fresh.data["name"] == "b"
    IdempotencyRecord.objects.filter(key="window").update(expires_at=timezone.now() - timedelta(seconds=1))
    assert idempotency.prune() == 1
    assert not IdempotencyRecord.objects.filter(key="window").exists()
    # orderIDs are kept for good: they are the merchant's unique order numbers.
    assert IdempotencyRecord.objects.filter(scope="order", expires_at__isnull=False).count() == 0


def test_a_request_that_died_leaves_a_claim_a_repeat_takes_over_without_charging_twice(
    api, account, card, merchant
) -> None:  # type: ignore[no-untyped-def]
    """The process died after the core charged the card but before answering: the
    claim is left running. Once its lease runs out a repeat takes over and gets
    that charge's outcome, with no second payment."""
    body = charge_body(card, order="ord-crash")
    path = f"/billing/{account['uuid']}/transaction"
    # What the dead request had done: claimed the orderID (for this very request), charged.
    stored = StoredCard.objects.get(uuid=card["paymentInfoID"])
    charged = accounts.account_charge(account=stored.account, card=stored, order_id="ord-crash", amount=10,
                                      currency="EUR")
    record = IdempotencyRecord.objects.create(
        merchant=merchant, scope="order", key="ord-crash", request_digest=_digest_of(account, body),
        lease_until=timezone.now() + timedelta(seconds=60),
    )
    assert api.post(path, body).status == 409  # its lease is still running
    IdempotencyRecord.objects.filter(pk=record.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    repeat = api.post(path, body)
    assert repeat.status == 200 and repeat.data["transactionID"] == str(charged.pk)
    assert Transaction.objects.filter(merchant_reference="ord-crash").count() == 1
    assert api.post(path, body).replayed


def _digest_of(account, body: dict) -> str:  # type: ignore[no-untyped-def]
    """The digest the door computes for a charge of ``body`` on ``account``."""
    from payments.doors.secure_api import envelope

    return idempotency.request_digest(
        method="POST", resource=f"billing/<str:uuid>/transaction {[('uuid', account['uuid'])]}",
        body=envelope.compact_json_sorted(body),
    )


# --- Concurrent repeats, real threads and sockets ----------------------------------------------


@pytest.fixture
def live_api(live_server, transactional_db, shipped_defaults):  # type: ignore[no-untyped-def]
    """A client per thread against the live server (real sockets; its own database connections)."""
    from merchants.credentials import api_keys_issue
    from tests.factories import MerchantFactory

    keys = api_keys_issue(merchant=MerchantFactory(currency="EUR", allowed_ips=[]))
    made: list[SecureApiClient] = []

    def new_client() -> SecureApiClient:
        made.append(SecureApiClient(live_server.url, app_id=keys.app_id, app_key=keys.app_key,
                                    data_key=keys.data_key, timeout=60))
        return made[-1]

    yield new_client
    # Closing the connections ends the server's threads, and with them their database connections.
    for client in made:
        client.close()


def test_a_repeat_while_the_first_runs_is_409_at_once(live_api, settings) -> None:  # type: ignore[no-untyped-def]
    HeldAcquirer.reset()
    api = live_api()
    account = api.post("/account", {}).data
    card = api.post(f"/account/{account['uuid']}/paymentinfo", card_body()).data
    settings.PAYMENTS_ACQUIRER = "tests.secure_api.acquirers.HeldAcquirer"
    path = f"/billing/{account['uuid']}/transaction"
    results: dict[str, object] = {}
    first = threading.Thread(target=lambda: results.update(first=live_api().post(path, charge_body(card, "ord-slow"))))
    first.start()
    try:
        assert HeldAcquirer.entered.wait(30), "the first charge never reached the acquirer"
        while_running = live_api().post(path, charge_body(card, "ord-slow"))
        assert while_running.status == 409 and while_running.code == 997
        assert while_running.error["detail"].startswith("orderID: the first request with 'ord-slow' is still")
    finally:
        HeldAcquirer.release.set()
        first.join(60)
    assert results["first"].status == 200  # type: ignore[attr-defined]
    after = live_api().post(path, charge_body(card, "ord-slow"))
    assert after.replayed and after.data == results["first"].data  # type: ignore[attr-defined]
    assert len(HeldAcquirer.seen) == 1 and Transaction.objects.filter(merchant_reference="ord-slow").count() == 1


def test_concurrent_repeats_of_an_order_charge_once(live_api, require_postgres) -> None:  # type: ignore[no-untyped-def]
    api = live_api()
    account = api.post("/account", {}).data
    card = api.post(f"/account/{account['uuid']}/paymentinfo", card_body()).data
    path = f"/billing/{account['uuid']}/transaction"
    clients = [live_api() for _ in range(8)]
    answers = run_at_once([lambda c=c: c.post(path, charge_body(card, "ord-race")) for c in clients])
    assert not [a for a in answers if isinstance(a, BaseException)], answers
    statuses = sorted(a.status for a in answers)  # type: ignore[union-attr]
    assert set(statuses) <= {200, 409} and 200 in statuses, statuses
    charged = {a.data["transactionID"] for a in answers if a.status == 200}  # type: ignore[union-attr]
    assert len(charged) == 1
    assert Transaction.objects.filter(merchant_reference="ord-race").count() == 1
    in_progress = [a for a in answers if a.status == 409]  # type: ignore[union-attr]
    assert all(a.code == 997 for a in in_progress)  # type: ignore[union-attr]


def test_concurrent_repeats_of_an_idempotency_key_create_once(live_api, require_postgres) -> None:  # type: ignore[no-untyped-def]
    clients = [live_api() for _ in range(8)]
    answers = run_at_once([lambda c=c: c.post("/account", {"externalID": "race"}, idempotency_key="k-race")
                           for c in clients])
    assert not [a for a in answers if isinstance(a, BaseException)], answers
    assert {a.status for a in answers} <= {200, 409}  # type: ignore[union-attr]
    assert len({a.data["uuid"] for a in answers if a.status == 200}) == 1  # type: ignore[union-attr]
    assert Account.objects.filter(external_id="race").count() == 1
