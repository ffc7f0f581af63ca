"""Card rules at the esipay door (contracts/esipay.md): Luhn (400 invalid_card_number),
amounts in the merchant's currency precision, limits of the number's real brand,
a currency without limits (500), and what is kept of a short card number: never
enough to rebuild it, not even with its Luhn check digit."""
from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from django.test import Client

from payments import cards, services
from payments.models import Ban, CardLimit, Event, Refund, Transaction
from payments.states import TransactionStatus
from tests.factories import MerchantFactory

from .test_cardpay import pay

pytestmark = pytest.mark.django_db


def luhn_complete(body: str) -> str:
    return next(body + d for d in "0123456789" if cards.luhn_valid(body + d))


# --- 17. Luhn -------------------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["4242424242424241", "4111222233", "123456789012"])
def test_a_luhn_invalid_number_is_refused(merchant, return_url, number) -> None:  # type: ignore[no-untyped-def]
    response = pay(merchant, card=number)
    assert response.status_code == 400 and response.json()["code"] == "invalid_card_number"
    assert number not in response.json()["error"]
    assert not Transaction.objects.exists() and not return_url.received


# --- 9. The currency's precision ------------------------------------------------------------------


@pytest.fixture
def yen_merchant(return_url, shipped_defaults):  # type: ignore[no-untyped-def]
    return MerchantFactory(currency="JPY", allowed_ips=["127.0.0.1"], callback_url=return_url.url + "esipay/return")


@pytest.mark.parametrize("amount", ["12.50", "12.5", "0.01"])
def test_yen_with_a_fraction_is_invalid_amount(yen_merchant, return_url, amount) -> None:  # type: ignore[no-untyped-def]
    response = pay(yen_merchant, amount=amount)
    assert response.status_code == 400 and response.json()["code"] == "invalid_amount"
    assert not Transaction.objects.exists() and not return_url.received


def test_yen_is_stored_and_announced_without_decimals(yen_merchant, return_url) -> None:  # type: ignore[no-untyped-def]
    from payments.models import WebhookEndpoint
    from payments.outbox import seal_secret

    WebhookEndpoint.objects.create(merchant=yen_merchant, url=return_url.url + "hook", secret_sealed=seal_secret("s"))
    response = pay(yen_merchant, amount="1200")
    assert response.status_code == 200, response.json()
    assert response.json()["amount"] == "1200"
    txn = Transaction.objects.get(pk=response.json()["transaction"])
    assert txn.amount == Decimal("1200") and txn.currency == "JPY"
    [confirmation] = return_url.received
    assert confirmation.form["amount"] == "1200"
    [event] = Event.objects.filter(transaction=txn)
    assert (event.data["amount"], event.data["captured_amount"], event.data["refunded_amount"]) == ("1200", "1200", "0")
    # Refunds too: 1.50 JPY is no amount, 200 is.
    refund_url = f"/cardpay/{yen_merchant.uuid}/{txn.pk}"
    bad = Client().get(f"{refund_url}/1.50", REMOTE_ADDR="127.0.0.1")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_amount"
    good = Client().get(f"{refund_url}/200", REMOTE_ADDR="127.0.0.1")
    assert good.status_code == 200 and good.json()["amount"] == "200"
    over = Client().get(f"{refund_url}/1001", REMOTE_ADDR="127.0.0.1")
    assert over.status_code == 400 and over.json()["error"] == "Amount exceeds what remains (1000)"


def test_yen_limits_are_in_yen(yen_merchant) -> None:  # type: ignore[no-untyped-def]
    limit = CardLimit.objects.get(kind="VISA", currency="JPY").max_amount
    assert limit == Decimal("375000")
    response = pay(yen_merchant, amount=str(limit + 1))
    assert response.status_code == 400 and response.json()["error"] == "Card max amount 375000"


# --- 8. Limits of the real brand ------------------------------------------------------------------


def test_american_express_is_under_its_own_limit(merchant) -> None:  # type: ignore[no-untyped-def]
    response = pay(merchant, card="378282246310005", amount="2500.01")
    assert response.status_code == 400 and response.json()["error"] == "Card max amount 2500.00"
    assert Transaction.objects.get().card_brand == "AMEX"


def test_a_card_of_no_known_network_is_under_the_other_limit(merchant) -> None:  # type: ignore[no-untyped-def]
    """A 10-digit number is of no network: before, it had no limit at all."""
    response = pay(merchant, card="4111222230", amount="1700.01")
    assert response.status_code == 400 and response.json()["code"] == "limit_exceeded"
    assert response.json()["error"] == "Card max amount 1700.00"
    assert pay(merchant, cid="o2", card="4111222230", amount="1700.00").status_code == 200


# --- 10. A currency without limits ----------------------------------------------------------------


def test_a_currency_without_limits_is_500_and_charges_nothing(merchant, return_url) -> None:  # type: ignore[no-untyped-def]
    merchant.currency = "USD"
    merchant.save()
    CardLimit.objects.filter(currency="USD").delete()
    response = pay(merchant)
    assert response.status_code == 500
    assert response.json()["code"] == "limits_not_configured"
    assert response.json()["error"] == "no card limits configured for USD (VISA)"
    assert not return_url.received
    assert list(Transaction.objects.values_list("status", "failure_code")) == [("declined", "limits_not_configured")]


# --- 6. What is kept of a card number --------------------------------------------------------------


def _revealed_positions(pan: str, stored: list[str]) -> set[int]:
    """Positions of ``pan`` that some stored text shows: every run of digits in the
    stored texts, matched at a fixed place of the number — at its start (a BIN), at
    its end (the last four, or a mask "******1234") or both ends (a 6/4 mask)."""
    shown: set[int] = set()
    for text in stored:
        for run in re.finditer(r"[0-9]+", text):
            digits, start, end = run.group(), run.start(), run.end()
            if pan.startswith(digits) and start == 0:
                shown.update(range(len(digits)))
            if pan.endswith(digits) and (end == len(text) or len(digits) <= 4):
                shown.update(range(len(pan) - len(digits), len(pan)))
    return shown


def _stored_card_texts(txn: Transaction, ban: Ban) -> list[str]:
    """Every field the database keeps about the card (the fingerprint is checked apart:
    an HMAC under the master key, useless without it)."""
    txn.refresh_from_db()
    texts = [txn.card_bin, txn.card_last4, txn.masked_card, txn.failure_message,
             ban.card_bin, ban.card_last4, ban.display_value]
    for event in Event.objects.filter(transaction=txn):
        texts.append(str(event.data.get("card", "")))
        texts.append(json.dumps(event.data))
    return [t for t in texts if t]


@pytest.mark.parametrize("length", range(10, 20))
def test_no_stored_field_with_the_luhn_digit_rebuilds_a_card(merchant, length) -> None:  # type: ignore[no-untyped-def]
    """Through the door (payment, webhook event) and the ban list: a number under 15
    digits keeps its last four only, so that at least 10^5 Luhn-valid numbers fit what
    is stored; from 15 digits, the first six and the last four (PCI DSS 3.4.1)."""
    pan = luhn_complete(("7319" * 5)[: length - 1])
    assert len(pan) == length and cards.luhn_valid(pan)
    response = pay(merchant, cid=f"len-{length}", card=pan, amount="10.00")
    assert response.status_code == 200, response.json()
    txn = Transaction.objects.get(pk=response.json()["transaction"])
    ban, _ = services.ban_add(kind="card", value=pan)
    stored = _stored_card_texts(txn, ban)
    assert all(pan not in text for text in stored)
    assert txn.card_fingerprint == ban.key == cards.card_facts(pan).fingerprint  # keyed, not the number
    unknown = length - len(_revealed_positions(pan, stored))
    # One unknown digit is given back by the Luhn check: 10^(unknown - 1) candidates remain.
    if length < 15:
        assert unknown == length - 4, stored
        assert unknown - 1 >= 5, f"{length} digits: only {10 ** (unknown - 1)} candidates"
    else:
        assert unknown == length - 10, stored


@pytest.mark.parametrize("length", [10, 12, 14, 15, 16])
def test_the_back_office_shows_a_short_number_by_its_last_four_only(merchant, length) -> None:  # type: ignore[no-untyped-def]
    """What a viewer (the smallest role) reads of a card in the back office: the
    transaction's list and page, its event, the ban list and the ban's page show what
    the mask shows for the number's length, and no more of it."""
    from tests.backoffice.conftest import ROLE_PASSWORD, make_staff

    pan = luhn_complete(("7319" * 5)[: length - 1])
    response = pay(merchant, cid=f"admin-{length}", card=pan, amount="10.00")
    assert response.status_code == 200, response.json()
    txn = Transaction.objects.get(pk=response.json()["transaction"])
    ban, _ = services.ban_add(kind="card", value=pan)
    viewer = Client()
    assert viewer.login(username=make_staff("viewer-1", role="viewer").username, password=ROLE_PASSWORD)
    pages = [f"/admin/payments/transaction/?q={pan[-4:]}", f"/admin/payments/transaction/{txn.pk}/change/",
             f"/admin/payments/event/{Event.objects.get(transaction=txn).pk}/change/",
             "/admin/payments/ban/", f"/admin/payments/ban/{ban.pk}/change/"]
    mask = cards.mask_pan(pan)
    for url in pages:
        page = viewer.get(url)
        assert page.status_code == 200, url
        text = page.content.decode()
        assert pan not in text and pan[:-4][-6:] not in text, url  # not even the digits before the last four
        if length < 15:
            assert pan[:6] not in text, url  # no BIN for a short number
        assert mask in text or pan[-4:] in text, url


def test_an_11_digit_number_was_one_guess_away_before(merchant) -> None:  # type: ignore[no-untyped-def]
    """Why the rule matters: the first six and last four of 11 digits leave one digit,
    which the Luhn check gives back. Now only the last four are kept."""
    pan = luhn_complete("7319731973")
    assert pay(merchant, card=pan, amount="1.00").status_code == 200
    txn = Transaction.objects.get()
    assert (txn.card_bin, txn.card_last4, txn.masked_card) == ("", pan[-4:], "******" + pan[-4:])
    candidates = [pan[:6] + d + pan[-4:] for d in "0123456789" if cards.luhn_valid(pan[:6] + d + pan[-4:])]
    assert candidates == [pan]  # what the old BIN + last four gave away


def test_refund_of_a_short_card_shows_only_the_last_four(merchant) -> None:  # type: ignore[no-untyped-def]
    pan = luhn_complete("73197319731")
    txn_id = pay(merchant, card=pan, amount="5.00").json()["transaction"]
    assert Client().get(f"/cardpay/{merchant.uuid}/{txn_id}", REMOTE_ADDR="127.0.0.1").status_code == 200
    refund = Refund.objects.get()
    assert refund.transaction.masked_card == "******" + pan[-4:]
    assert refund.transaction.status == TransactionStatus.REFUNDED
