"""The card vault (issue 8, item 5): card numbers encrypted at rest under the master
key with a key id; the CVV held only encrypted, single use, 15 minutes, destroyed
after use; and the whole database read back to prove nothing card-like is in clear."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.apps import apps
from django.utils import timezone

from merchants.accounts import cvv_hold, held_cvvs_prune
from merchants.models import HeldCvv, StoredCard
from payments import card_vault
from payments.doors.secure_api.models import ApiCall, IdempotencyRecord

from .acquirers import RecordingAcquirer
from .conftest import card_body, charge_body

pytestmark = pytest.mark.django_db

PAN = "4571738192640353"  # Luhn-valid, approved by the sandbox, with distinctive middle digits
CVV = "8531"


def every_value_in_the_database() -> list[str]:
    """Every column of every row of every table, as text."""
    values: list[str] = []
    for model in apps.get_models(include_auto_created=True):
        if model._meta.proxy:
            continue
        for row in model.objects.all().values_list():
            values.extend(str(value) for value in row)
    return values


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def test_nothing_card_like_is_in_clear_in_the_database(api, account, settings, caplog) -> None:  # type: ignore[no-untyped-def]
    settings.PAYMENTS_ACQUIRER = "tests.secure_api.acquirers.RecordingAcquirer"
    RecordingAcquirer.seen = []
    base = f"/account/{account['uuid']}/paymentinfo"
    card = api.post(base, card_body(PAN, cvv=CVV), idempotency_key="store-card").data
    used = api.post(f"{base}/{card['paymentInfoID']}/cvv", {"cvv": CVV}).data["cardCVVEncKey"]
    paid = api.post(f"/billing/{account['uuid']}/transaction", charge_body(card, order="vault", paymentInfo={
        "paymentType": "CreditCard", "card": {"cardCVVEncKey": used}}))
    assert paid.status == 200
    api.post(f"/billing/{account['uuid']}/transaction/{paid.data['transactionID']}/refund", {"amount": 1})
    waiting = api.post(f"{base}/{card['paymentInfoID']}/cvv", {"cvv": CVV}).data["cardCVVEncKey"]  # held, unused
    api.get(f"/billing/{account['uuid']}/transactions", {"pageNo": 1})

    # The verification and the charge both reached the acquirer with the CVV...
    assert [r.cvv for r in RecordingAcquirer.seen] == [CVV, CVV] and RecordingAcquirer.seen[1].pan == PAN
    values = every_value_in_the_database()
    text = "\n".join(values)
    # ...and nothing of the card is in clear anywhere: no number, no run of its middle digits.
    assert PAN not in text and PAN[6:12] not in text
    # UUIDs go first: a UUID's last group is 12 hex characters, all digits about once in 280 UUIDs, and
    # would read as a 12-digit run (that made this test fail at random).
    scanned = UUID.sub("", text.replace(str(paid.data["transactionID"]), ""))
    assert not re.search(r"(?<![0-9a-f])\d{12,19}(?![0-9a-f])", scanned), "a card-number-like run of digits is in clear"
    assert CVV not in values and '"cvv"' not in text.lower() and "'cvv'" not in text.lower()
    assert used not in text and waiting not in text  # CVV keys are kept as keyed digests only

    stored = StoredCard.objects.get(uuid=card["paymentInfoID"])
    assert stored.pan_sealed.startswith(f"v1:{card_vault.pan_key_id()}:")  # sealed, with the key id
    assert card_vault.pan_open(stored.pan_sealed, card_uuid=str(stored.uuid)) == PAN
    assert (stored.card_bin, stored.card_last4) == ("457173", "0353")
    held = HeldCvv.objects.get()  # only the one not used yet; the used one is gone
    assert held.cvv_sealed.startswith("c1:") and held.key_digest == card_vault.cvv_key_digest(waiting)
    assert IdempotencyRecord.objects.get(key="store-card").response_sealed.startswith("v1:")
    assert all("data=" not in call.path and "?" not in call.path for call in ApiCall.objects.all())
    assert PAN not in caplog.text and not re.search(rf"cvv\W{{0,4}}{CVV}", caplog.text, re.I)


def test_a_sealed_number_opens_only_on_its_own_row_and_under_its_key(api, account, settings) -> None:  # type: ignore[no-untyped-def]
    base = f"/account/{account['uuid']}/paymentinfo"
    first = StoredCard.objects.get(uuid=api.post(base, card_body()).data["paymentInfoID"])
    second = StoredCard.objects.get(uuid=api.post(base, card_body(PAN)).data["paymentInfoID"])
    with pytest.raises(card_vault.CardVaultError):  # copied onto another card: refused, not a wrong number
        card_vault.pan_open(first.pan_sealed, card_uuid=str(second.uuid))
    settings.PAYMENTS_MASTER_KEY = "another-master-key-after-a-rotation-0123456789"
    with pytest.raises(card_vault.CardVaultError, match="rotated"):
        card_vault.pan_open(first.pan_sealed, card_uuid=str(first.uuid))


def test_a_held_cvv_lasts_15_minutes_is_used_once_and_is_destroyed(api, account, card) -> None:  # type: ignore[no-untyped-def]
    stored = StoredCard.objects.get(uuid=card["paymentInfoID"])
    before = timezone.now()
    key = cvv_hold(card=stored, cvv="123")
    held = HeldCvv.objects.get()
    assert timedelta(seconds=899) <= held.expires_at - before <= timedelta(seconds=901)
    # The database and the master key alone do not open it: it needs the merchant's key.
    with pytest.raises(card_vault.CardVaultError):
        card_vault.cvv_open(held.cvv_sealed, cvv_key="0" * 32, card_uuid=str(stored.uuid))
    assert card_vault.cvv_open(held.cvv_sealed, cvv_key=key, card_uuid=str(stored.uuid)) == "123"
    paid = api.post(f"/billing/{account['uuid']}/transaction", charge_body(card, order="cvv-once", paymentInfo={
        "card": {"cardCVVEncKey": key}}))
    assert paid.status == 200 and not HeldCvv.objects.exists()  # destroyed by the authorization that used it
    expired = cvv_hold(card=stored, cvv="456")
    HeldCvv.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert expired and held_cvvs_prune() == 1 and not HeldCvv.objects.exists()


def test_deleting_a_card_destroys_its_number_and_held_cvvs(api, account, card) -> None:  # type: ignore[no-untyped-def]
    stored = StoredCard.objects.get(uuid=card["paymentInfoID"])
    cvv_hold(card=stored, cvv="123")
    assert api.delete(f"/account/{account['uuid']}/paymentinfo/{card['paymentInfoID']}").status == 200
    stored.refresh_from_db()
    assert stored.pan_sealed == "" and not HeldCvv.objects.exists()
