"""The payment core (payments.services): tokens, sales, authorizations, captures, voids,
refunds, bans; in the order of checks of docs/terminal.md."""
from __future__ import annotations

import re
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from payments import cards, services
from payments.acquirers.base import AcquirerError, AcquirerResult, AcquirerTimeout, AcquirerUnavailable, Outcome
from payments.acquirers.sandbox import SandboxAcquirer
from payments.errors import (
    AcquirerFailure,
    AmountExceedsRemaining,
    CardBanned,
    CheckBanned,
    Declined,
    InvalidAmount,
    InvalidCardNumber,
    InvalidCheckNumber,
    InvalidPin,
    InvalidRequest,
    InvalidState,
    LimitExceeded,
    NotAuthorized,
    PaymentOutcomeUnknown,
    TokenInvalid,
    TokenTriesExhausted,
    TransactionNotFound,
)
from payments.db import TransactionRuleViolation
from payments.models import Ban, CardLimit, Refund, Token, Transaction
from payments.states import (
    PROCESS_STATE,
    AcquirerOperation,
    BanKind,
    Door,
    PaymentMethod,
    ProcessState,
    RefundStatus,
    TransactionStatus,
    statuses_in,
)
from tests.factories import (
    AuthorizedTransactionFactory,
    CapturedTransactionFactory,
    MerchantFactory,
    TerminalFactory,
    TokenFactory,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("shipped_defaults")]

VISA = "4242424242424242"
MASTER = "5555555555554444"
GOOD_PIN = "2580"
CHECK = "12345678ABC"


def issue(terminal, method: str = PaymentMethod.CARD, try_count: int = 3) -> str:  # type: ignore[no-untyped-def]
    return services.token_issue(terminal_pk=terminal.pk, payment_type=method, try_count=try_count).value


def pay_card(terminal, token, *, card_number=VISA, pin=GOOD_PIN, amount="10.00", card_type=None):  # type: ignore[no-untyped-def]
    if card_type is None:
        card_type = cards.card_brand(card_number) if isinstance(card_number, str) and card_number[:4].isdigit() else ""
    return services.payment_sale_with_token(
        terminal_pk=terminal.pk, token=token, method=PaymentMethod.CARD, amount=amount,
        card_type=card_type, card_number=card_number, pin=pin,
    )


def pay_contactless(terminal, token, *, card_number=VISA, amount="10.00", card_type="VISA"):  # type: ignore[no-untyped-def]
    return services.payment_sale_with_token(
        terminal_pk=terminal.pk, token=token, method=PaymentMethod.CONTACTLESS, amount=amount,
        card_type=card_type, card_number=card_number,
    )


def pay_check(terminal, token, *, check_number=CHECK, amount="10.00"):  # type: ignore[no-untyped-def]
    return services.payment_sale_with_token(
        terminal_pk=terminal.pk, token=token, method=PaymentMethod.CHECK, amount=amount, check_number=check_number,
    )


def tries_used(token_value: str) -> int:
    return Token.objects.get(value=token_value).tries_used


# --- token_issue ---------------------------------------------------------------------------


def test_token_issue(terminal) -> None:  # type: ignore[no-untyped-def]
    before = timezone.now()
    token = services.token_issue(terminal_pk=terminal.pk, payment_type=PaymentMethod.CARD)
    token.refresh_from_db()
    assert re.fullmatch(r"[0-9a-f]{64}", token.value)
    assert token.terminal_id == terminal.pk
    assert token.payment_type == PaymentMethod.CARD
    assert token.try_count == 3 and token.tries_used == 0
    assert before <= token.created_at <= timezone.now()
    assert token.expires_at - token.created_at == timedelta(seconds=180)
    other = services.token_issue(terminal_pk=terminal.pk, payment_type=PaymentMethod.CARD)
    assert other.value != token.value


def test_token_ttl_is_a_setting(terminal, settings) -> None:  # type: ignore[no-untyped-def]
    settings.TERMINAL_TOKEN_TTL_SECONDS = 30
    token = services.token_issue(terminal_pk=terminal.pk, payment_type=PaymentMethod.CHECK)
    assert token.expires_at - token.created_at == timedelta(seconds=30)


@pytest.mark.parametrize("try_count", [-1, 0, 1, 3, 1000])
def test_token_try_count_domain(terminal, try_count) -> None:  # type: ignore[no-untyped-def]
    token = services.token_issue(terminal_pk=terminal.pk, payment_type=PaymentMethod.CARD, try_count=try_count)
    assert Token.objects.get(pk=token.pk).try_count == try_count
    assert token.unlimited is (try_count == -1)


@pytest.mark.parametrize("try_count", [-2, -100, "3", 3.0, True, False, None])
def test_token_try_count_out_of_domain(terminal, try_count) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRequest, match="try_count must be an integer >= -1"):
        services.token_issue(terminal_pk=terminal.pk, payment_type=PaymentMethod.CARD, try_count=try_count)
    assert not Token.objects.exists()


def test_token_refused_to_inactive_terminal_or_merchant(terminal) -> None:  # type: ignore[no-untyped-def]
    terminal.is_active = False
    terminal.save()
    with pytest.raises(NotAuthorized):
        services.token_issue(terminal_pk=terminal.pk, payment_type=PaymentMethod.CARD)
    live = TerminalFactory()
    live.merchant.is_active = False
    live.merchant.save()
    with pytest.raises(NotAuthorized):
        services.token_issue(terminal_pk=live.pk, payment_type=PaymentMethod.CARD)
    with pytest.raises(NotAuthorized):
        services.token_issue(terminal_pk=10**9, payment_type=PaymentMethod.CARD)
    assert not Token.objects.exists()


# --- Card sale: approval -----------------------------------------------------------------


def test_card_sale_approved(terminal) -> None:  # type: ignore[no-untyped-def]
    token = issue(terminal)
    txn = pay_card(terminal, token, amount="500.000000")
    assert txn.status == TransactionStatus.CAPTURED
    txn.refresh_from_db()
    assert txn.status == TransactionStatus.CAPTURED
    assert txn.process_state == ProcessState.COMPLETED_OK
    assert txn.amount == txn.authorized_amount == txn.captured_amount == Decimal("500.00")
    assert txn.refunded_amount == 0
    assert txn.currency == "EUR" and txn.merchant_id == terminal.merchant_id and txn.terminal_id == terminal.pk
    assert txn.door == Door.TERMINAL and txn.method == PaymentMethod.CARD
    assert txn.card_bin == "424242" and txn.card_last4 == "4242" and txn.card_brand == "VISA"
    assert txn.card_fingerprint == cards.card_facts(VISA).fingerprint
    assert txn.masked_card == "424242******4242"
    assert txn.acquirer_reference.startswith("sbx_") and re.fullmatch(r"\d{6}", txn.authorization_code)
    assert txn.token.value == token
    assert tries_used(token) == 1


def test_approval_consumes_the_token(terminal) -> None:  # type: ignore[no-untyped-def]
    token = issue(terminal, try_count=-1)
    pay_card(terminal, token)
    with pytest.raises(TokenInvalid) as info:
        pay_card(terminal, token, card_number=MASTER)
    assert info.value.message == "Wrong token"
    assert Transaction.objects.count() == 1
    assert tries_used(token) == 1  # a 107 does not use a try


def test_mastercard_sale_approved(terminal) -> None:  # type: ignore[no-untyped-def]
    txn = pay_card(terminal, issue(terminal), card_number=MASTER, amount="3000.00")
    assert txn.status == TransactionStatus.CAPTURED and txn.card_brand == "MASTER"


# --- 107: token ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["f" * 64, "0" * 64, "abc", "", None, 12345, ["x"], "F" * 65])
def test_unknown_token(terminal, value) -> None:  # type: ignore[no-untyped-def]
    issue(terminal)
    with pytest.raises(TokenInvalid):
        pay_card(terminal, value)
    assert not Transaction.objects.exists()


def test_expired_token(terminal) -> None:  # type: ignore[no-untyped-def]
    token = issue(terminal)
    Token.objects.filter(value=token).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(TokenInvalid):
        pay_card(terminal, token)
    assert tries_used(token) == 0
    assert not Transaction.objects.exists()


def test_token_expires_after_its_ttl(terminal, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    token = issue(terminal)
    later = timezone.now() + timedelta(seconds=181)
    monkeypatch.setattr(timezone, "now", lambda: later)
    with pytest.raises(TokenInvalid):
        pay_card(terminal, token)


def test_token_of_another_terminal(terminal) -> None:  # type: ignore[no-untyped-def]
    sibling = TerminalFactory(merchant=terminal.merchant)
    token = issue(sibling)
    with pytest.raises(TokenInvalid):
        pay_card(terminal, token)
    assert tries_used(token) == 0
    # ...and still good for its own terminal.
    assert pay_card(sibling, token).status == TransactionStatus.CAPTURED


@pytest.mark.parametrize(
    ("issued", "used"),
    [
        (PaymentMethod.CONTACTLESS, PaymentMethod.CARD),
        (PaymentMethod.CHECK, PaymentMethod.CARD),
        (PaymentMethod.CARD, PaymentMethod.CONTACTLESS),
        (PaymentMethod.CARD, PaymentMethod.CHECK),
    ],
)
def test_token_for_another_payment_type(terminal, issued, used) -> None:  # type: ignore[no-untyped-def]
    token = issue(terminal, issued)
    payers = {PaymentMethod.CARD: pay_card, PaymentMethod.CONTACTLESS: pay_contactless, PaymentMethod.CHECK: pay_check}
    with pytest.raises(TokenInvalid):
        payers[used](terminal, token)
    assert tries_used(token) == 0


def test_inactive_terminal_cannot_pay(terminal) -> None:  # type: ignore[no-untyped-def]
    token = issue(terminal)
    terminal.is_active = False
    terminal.save()
    with pytest.raises(NotAuthorized):
        pay_card(terminal, token)
    with pytest.raises(NotAuthorized):
        pay_card(terminal, "f" * 64)
    assert tries_used(token) == 0


def test_wrong_token_comes_before_max_try(terminal) -> None:  # type: ignore[no-untyped-def]
    token = issue(terminal, try_count=0)
    Token.objects.filter(value=token).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(TokenInvalid):
        pay_card(terminal, token)
    token = issue(terminal, PaymentMethod.CHECK, try_count=0)
    with pytest.raises(TokenInvalid):
        pay_card(terminal, token)


# --- 108: tries ---------------------------------------------------------------------------


def test_every_attempt_past_the_token_check_uses_a_try(terminal) -> None:  # type: ignore[no-untyped-def]
    token = issue(terminal, try_count=6)
    failures = [
        (InvalidCardNumber, {"card_number": "424242424242424"}),  # 104
        (CardBanned, {"card_number": "0000000000000000"}),  # 101
        (InvalidPin, {"pin": "1234"}),  # 103
        (InvalidAmount, {"amount": "0"}),  # 109
        (LimitExceeded, {"amount": "2500.01"}),  # 106
        (Declined, {"card_number": "4000000000000002"}),  # 111
    ]
    for used, (error, changes) in enumerate(failures, start=1):
        with pytest.raises(error):
            pay_card(terminal, token, **changes)
        assert tries_used(token) == used, error
    with pytest.raises(TokenTriesExhausted) as info:
        pay_card(terminal, token)
    assert info.value.message == "Max try"
    assert tries_used(token) == 6
    assert not Transaction.objects.filter(status=TransactionStatus.CAPTURED).exists()


def test_declined_attempt_leaves_the_token_usable_while_tries_remain(terminal) -> None:  # type: ignore[no-untyped-def]
    token = issue(terminal, try_count=2)
    with pytest.raises(Declined):
        pay_card(terminal, token, card_number="4000000000009995")
    assert pay_card(terminal, token).status == TransactionStatus.CAPTURED
    assert tries_used(token) == 2


def test_zero_tries(terminal) -> None:  # type: ignore[no-untyped-def]
    token = issue(terminal, try_count=0)
    with pytest.raises(TokenTriesExhausted):
        pay_card(terminal, token)
    assert tries_used(token) == 0


def test_max_try_comes_before_everything_else(terminal) -> None:  # type: ignore[no-untyped-def]
    token = issue(terminal, try_count=1)
    with pytest.raises(InvalidPin):
        pay_card(terminal, token, pin="12")
    with pytest.raises(TokenTriesExhausted):
        pay_card(terminal, token, card_number="12", pin="x", amount="-1")
    with pytest.raises(TokenTriesExhausted):
        pay_card(terminal, token)  # a good attempt too


def test_unlimited_tries(terminal) -> None:  # type: ignore[no-untyped-def]
    token = issue(terminal, try_count=-1)
    for _ in range(12):
        with pytest.raises(InvalidPin):
            pay_card(terminal, token, pin="0000")
    assert tries_used(token) == 12
    assert pay_card(terminal, token).status == TransactionStatus.CAPTURED


# --- 104 → 101 → 103 → 109 → 106 → 111 -------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    ["424242424242424", "42424242424242424", "4242-4242-4242-42", "", None, 4242424242424242, "4242x24242424242"],
)
def test_invalid_card_number(terminal, number) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidCardNumber) as info:
        pay_card(terminal, issue(terminal), card_number=number, card_type="VISA")
    assert info.value.message.startswith("Invalid card number")
    if isinstance(number, str):
        assert number not in info.value.message or len(number) <= 4


def test_invalid_card_number_message_is_masked(terminal) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidCardNumber) as info:
        pay_card(terminal, issue(terminal), card_number="42424242424242421", card_type="VISA")
    assert info.value.message == "Invalid card number 424242*******2421"


def test_card_number_format_comes_before_ban_pin_and_amount(terminal) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidCardNumber):
        pay_card(terminal, issue(terminal), card_number="000000000000000", pin="1234", amount="0")


def test_default_banned_card(terminal) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CardBanned) as info:
        pay_card(terminal, issue(terminal), card_number="0000000000000000", card_type="VISA")
    assert info.value.message == "Card banned"


def test_banned_card(terminal) -> None:  # type: ignore[no-untyped-def]
    assert pay_card(terminal, issue(terminal)).status == TransactionStatus.CAPTURED
    ban, created = services.ban_add(kind=BanKind.CARD, value=VISA, reason="stolen")
    assert created and ban.key == cards.card_facts(VISA).fingerprint
    with pytest.raises(CardBanned):
        pay_card(terminal, issue(terminal))
    with pytest.raises(CardBanned):
        pay_contactless(terminal, issue(terminal, PaymentMethod.CONTACTLESS))
    assert pay_card(terminal, issue(terminal), card_number=MASTER).status == TransactionStatus.CAPTURED


@pytest.mark.parametrize("bin_value", ["424242", "4242424", "42424242"])
def test_banned_bin(terminal, bin_value) -> None:  # type: ignore[no-untyped-def]
    services.ban_add(kind=BanKind.BIN, value=bin_value)
    with pytest.raises(CardBanned):
        pay_card(terminal, issue(terminal))
    with pytest.raises(CardBanned):
        pay_card(terminal, issue(terminal), card_number="4242424299999997")
    assert pay_card(terminal, issue(terminal), card_number=MASTER).status == TransactionStatus.CAPTURED


def test_bin_ban_matches_prefixes_only(terminal) -> None:  # type: ignore[no-untyped-def]
    services.ban_add(kind=BanKind.BIN, value="42424243")  # 8 digits, one more than the card shares
    services.ban_add(kind=BanKind.BIN, value="242424")  # the card's digits, not at its start
    assert pay_card(terminal, issue(terminal)).status == TransactionStatus.CAPTURED


def test_ban_comes_before_pin_and_amount(terminal) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CardBanned):
        pay_card(terminal, issue(terminal), card_number="0000000000000000", pin="12", amount="-3")


@pytest.mark.parametrize("pin", ["123", "12345", "12a4", "", None, 2580, " 258", "1234", "0000", "5555", "9999"])
def test_invalid_or_banned_pin(terminal, pin) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidPin) as info:
        pay_card(terminal, issue(terminal), pin=pin)
    assert info.value.message == "Invalid pin"


def test_staff_banned_pin(terminal) -> None:  # type: ignore[no-untyped-def]
    services.ban_add(kind=BanKind.PIN, value=GOOD_PIN)
    with pytest.raises(InvalidPin):
        pay_card(terminal, issue(terminal))
    assert Ban.objects.get(kind=BanKind.PIN, key=cards.pin_fingerprint(GOOD_PIN)).display_value == "****"


def test_pin_comes_before_amount(terminal) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidPin):
        pay_card(terminal, issue(terminal), pin="1111", amount="abc")


def test_contactless_needs_no_pin(terminal) -> None:  # type: ignore[no-untyped-def]
    txn = pay_contactless(terminal, issue(terminal, PaymentMethod.CONTACTLESS), amount="30.00")
    assert txn.status == TransactionStatus.CAPTURED and txn.method == PaymentMethod.CONTACTLESS


@pytest.mark.parametrize("amount", ["0", "-5", "1.001", 1.5, "abc", None, True, "1e3", "10000000000"])
def test_invalid_amount(terminal, amount) -> None:  # type: ignore[no-untyped-def]
    token = issue(terminal)
    with pytest.raises(InvalidAmount) as info:
        pay_card(terminal, token, amount=amount)
    assert info.value.message == "Invalid amount"
    assert tries_used(token) == 1
    assert not Transaction.objects.exists()  # nothing to show without an amount


@pytest.mark.parametrize(
    ("card_number", "card_type", "limit"),
    [(VISA, "VISA", "2500.00"), (MASTER, "MASTER", "3000.00"), ("4026000000000002", "ELECTRON", "1700.00")],
)
def test_card_limits(terminal, card_number, card_type, limit) -> None:  # type: ignore[no-untyped-def]
    over = Decimal(limit) + Decimal("0.01")
    with pytest.raises(LimitExceeded) as info:
        pay_card(terminal, issue(terminal), card_number=card_number, card_type=card_type, amount=str(over))
    assert info.value.message == f"Card max amount {limit}"
    txn = pay_card(terminal, issue(terminal), card_number=card_number, card_type=card_type, amount=limit)
    assert txn.status == TransactionStatus.CAPTURED and txn.amount == Decimal(limit)


def test_contactless_limit(terminal) -> None:  # type: ignore[no-untyped-def]
    for amount in ("30.01", "2000", "9999"):  # under, then over, the brand limit as well
        with pytest.raises(LimitExceeded) as info:
            pay_contactless(terminal, issue(terminal, PaymentMethod.CONTACTLESS), amount=amount)
        assert info.value.message == "Contactless max amount 30.00"
    txn = pay_contactless(terminal, issue(terminal, PaymentMethod.CONTACTLESS), amount="30")
    assert txn.amount == Decimal("30.00")


def test_limits_are_data(terminal) -> None:  # type: ignore[no-untyped-def]
    CardLimit.objects.filter(kind="VISA", currency="EUR").update(max_amount=Decimal("100"))
    with pytest.raises(LimitExceeded) as info:
        pay_card(terminal, issue(terminal), amount="100.01")
    assert info.value.message == "Card max amount 100.00"
    assert pay_card(terminal, issue(terminal), amount="100").status == TransactionStatus.CAPTURED


def test_limit_comes_before_the_acquirer(terminal) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LimitExceeded):
        pay_card(terminal, issue(terminal), card_number="4000000000000119", amount="2600")


# --- 111: the sandbox acquirer's test cards -------------------------------------------------


@pytest.mark.parametrize(
    ("number", "decline_code", "reason"),
    [
        ("4000000000000002", "card_declined", "card declined"),
        ("4000000000009995", "insufficient_funds", "insufficient funds"),
        ("4000000000000069", "expired_card", "expired card"),
    ],
)
def test_sandbox_declines(terminal, number, decline_code, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Declined) as info:
        pay_card(terminal, issue(terminal), card_number=number)
    assert info.value.reason == reason and info.value.decline_code == decline_code
    assert info.value.message == f"Declined: {reason}"
    txn = Transaction.objects.get(pk=info.value.transaction_id)
    assert txn.status == TransactionStatus.DECLINED
    assert txn.process_state == ProcessState.FAILED
    assert txn.failure_code == decline_code and txn.failure_message == reason
    assert txn.captured_amount == 0 and txn.authorized_amount == 0
    assert txn.card_last4 == number[-4:]


def test_sandbox_acquirer_failure(terminal) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AcquirerFailure) as info:
        pay_contactless(terminal, issue(terminal, PaymentMethod.CONTACTLESS), card_number="4000000000000119")
    txn = Transaction.objects.get(pk=info.value.transaction_id)
    assert txn.status == TransactionStatus.ERROR
    assert txn.process_state == ProcessState.PROCESS_ERROR
    assert txn.captured_amount == 0


def test_acquirer_unreachable_is_a_process_error(terminal, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A connector that knows its request never left (connection refused) says
    AcquirerUnavailable: nothing happened, a technical failure that frees the token."""
    def refused(self, request):  # type: ignore[no-untyped-def]
        raise AcquirerUnavailable("connection refused")

    monkeypatch.setattr(SandboxAcquirer, "authorize", refused)
    token = issue(terminal)
    with pytest.raises(AcquirerFailure):
        pay_card(terminal, token)
    assert Transaction.objects.get().status == TransactionStatus.ERROR
    monkeypatch.undo()
    assert pay_card(terminal, token).status == TransactionStatus.CAPTURED  # the token was not held


@pytest.mark.parametrize("failure", [ConnectionError("a bug: not the connector's own error"),
                                     AcquirerTimeout("read timed out"), AcquirerError("garbled answer")])
def test_a_connector_failure_that_may_hide_a_charge_leaves_the_outcome_unknown(  # type: ignore[no-untyped-def]
    terminal, monkeypatch, failure
) -> None:
    """A timeout, another AcquirerError, or an exception that is not the
    connector's (a bug) is never taken for an answer: the transaction stays
    processing, holding its token, for the resolver; the caller hears "unknown"."""
    def boom(self, request):  # type: ignore[no-untyped-def]
        raise failure

    monkeypatch.setattr(SandboxAcquirer, "authorize", boom)
    token = issue(terminal)
    with pytest.raises(PaymentOutcomeUnknown) as info:
        pay_card(terminal, token)
    txn = Transaction.objects.get()
    assert info.value.transaction_id == txn.pk and info.value.code == "outcome_unknown"
    assert txn.status == TransactionStatus.PROCESSING and txn.operation == AcquirerOperation.AUTHORIZE
    assert not txn.failure_code and not txn.events.exists()
    with pytest.raises(TokenInvalid):
        pay_card(terminal, token)


def test_an_acquirer_slower_than_the_deadline_leaves_the_outcome_unknown(  # type: ignore[no-untyped-def]
    terminal, monkeypatch, settings
) -> None:
    """The deadline (ACQUIRER_TIMEOUT_SECONDS) is the pool's: the caller stops
    waiting; the answer that comes later is dropped, not recorded."""
    settings.ACQUIRER_TIMEOUT_SECONDS = 0.2
    release = threading.Event()
    real = SandboxAcquirer.authorize

    def slow(self, request):  # type: ignore[no-untyped-def]
        release.wait(10)
        return real(self, request)

    monkeypatch.setattr(SandboxAcquirer, "authorize", slow)
    with pytest.raises(PaymentOutcomeUnknown, match="no answer from the acquirer in time"):
        pay_card(terminal, issue(terminal))
    release.set()
    time.sleep(0.3)  # the late answer arrives (and is dropped)
    assert Transaction.objects.get().status == TransactionStatus.PROCESSING


# --- Declined attempts are kept; card data is not --------------------------------------------


@pytest.mark.parametrize(
    ("error", "changes", "code"),
    [
        (InvalidCardNumber, {"card_number": "42424242424242"}, "invalid_card_number"),
        (CardBanned, {"card_number": "0000000000000000"}, "card_banned"),
        (InvalidPin, {"pin": "1234"}, "invalid_pin"),
        (LimitExceeded, {"amount": "2600"}, "limit_exceeded"),
    ],
)
def test_refused_attempt_is_recorded_as_declined(terminal, error, changes, code) -> None:  # type: ignore[no-untyped-def]
    token = issue(terminal)
    with pytest.raises(error) as info:
        pay_card(terminal, token, **changes)
    txn = Transaction.objects.get()
    assert info.value.transaction_id == txn.pk
    assert txn.status == TransactionStatus.DECLINED and txn.failure_code == code
    assert txn.failure_message == info.value.message
    assert txn.token.value == token and txn.terminal_id == terminal.pk
    assert txn.amount == Decimal(changes.get("amount", "10.00"))


def test_check_refusals_are_recorded(terminal) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CheckBanned) as info:
        pay_check(terminal, issue(terminal, PaymentMethod.CHECK), check_number="00000000AAA")
    txn = Transaction.objects.get(pk=info.value.transaction_id)
    assert txn.status == TransactionStatus.DECLINED and txn.failure_code == "check_banned"
    assert txn.check_number == "00000000AAA"  # staff see which check was refused


def all_stored_text() -> str:
    """Every value of every column of every row of every table, as text."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                chunks.extend("" if value is None else str(value) for value in row)
    return "\n".join(chunks)


def test_no_card_number_or_pin_is_stored(terminal) -> None:  # type: ignore[no-untyped-def]
    pin = "2468"
    numbers = {
        "approved": "4917610000000000",
        "declined": "4000000000000002",
        "failed": "4000000000000119",
        "banned": "5105105105105100",
        "malformed": "42424242424242429",
        "pin refused": "5200828282828210",
        "over limit": "4111111111111111",
    }
    services.ban_add(kind=BanKind.CARD, value=numbers["banned"])
    pay_card(terminal, issue(terminal), card_number=numbers["approved"], pin=pin)
    with pytest.raises(Declined):
        pay_card(terminal, issue(terminal), card_number=numbers["declined"], pin=pin)
    with pytest.raises(AcquirerFailure):
        pay_card(terminal, issue(terminal), card_number=numbers["failed"], pin=pin)
    with pytest.raises(CardBanned):
        pay_card(terminal, issue(terminal), card_number=numbers["banned"], pin=pin)
    with pytest.raises(InvalidCardNumber):
        pay_card(terminal, issue(terminal), card_number=numbers["malformed"], pin=pin, card_type="VISA")
    with pytest.raises(InvalidPin):
        pay_card(terminal, issue(terminal), card_number=numbers["pin refused"], pin="123")
    with pytest.raises(LimitExceeded):
        pay_card(terminal, issue(terminal), card_number=numbers["over limit"], pin=pin, amount="2600")
    contactless = pay_contactless(terminal, issue(terminal, PaymentMethod.CONTACTLESS), card_number="4000056655665556")
    services.refund_execute(refund_id=services.refund_request(
        transaction_id=contactless.pk, merchant_pk=terminal.merchant_id).pk)

    assert Transaction.objects.count() == 8  # the attempts are there...
    stored = all_stored_text()
    for label, number in {**numbers, "contactless": "4000056655665556"}.items():
        assert number not in stored, label  # ...but no card number
        assert number[:12] not in stored and number[4:] not in stored, label
    # The PIN: hex digests may contain any 4 digits by chance, so look for it standing alone.
    assert not re.search(rf"(?<![0-9a-fA-F]){pin}(?![0-9a-fA-F])", stored)


# --- Check sale ------------------------------------------------------------------------------


def test_check_sale(terminal) -> None:  # type: ignore[no-untyped-def]
    token = issue(terminal, PaymentMethod.CHECK)
    txn = pay_check(terminal, token, check_number="12345678abc", amount="9999999999.99")  # checks have no limit
    txn.refresh_from_db()
    assert txn.status == TransactionStatus.CAPTURED and txn.method == PaymentMethod.CHECK
    assert txn.check_number == "12345678ABC" and txn.amount == Decimal("9999999999.99")
    assert txn.card_fingerprint == "" and txn.card_last4 == ""
    with pytest.raises(TokenInvalid):
        pay_check(terminal, token)


@pytest.mark.parametrize("number", ["1234567890", "123456789012", "12345678AB-", None, 12345678901])
def test_invalid_check_number(terminal, number) -> None:  # type: ignore[no-untyped-def]
    token = issue(terminal, PaymentMethod.CHECK)
    with pytest.raises(InvalidCheckNumber):
        pay_check(terminal, token, check_number=number, amount="0")  # 105 before 109
    assert tries_used(token) == 1


@pytest.mark.parametrize("number", ["00000000AAA", "00000000aaa"])
def test_default_banned_check(terminal, number) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CheckBanned) as info:
        pay_check(terminal, issue(terminal, PaymentMethod.CHECK), check_number=number, amount="x")  # 102 before 109
    assert info.value.message == "Check banned"


def test_staff_banned_check(terminal) -> None:  # type: ignore[no-untyped-def]
    services.ban_add(kind=BanKind.CHECK, value="12345678abc")
    with pytest.raises(CheckBanned):
        pay_check(terminal, issue(terminal, PaymentMethod.CHECK))


def test_check_invalid_amount(terminal) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidAmount):
        pay_check(terminal, issue(terminal, PaymentMethod.CHECK), amount="0.001")


def test_contactless_number_and_ban_checks(terminal) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidCardNumber):
        pay_contactless(terminal, issue(terminal, PaymentMethod.CONTACTLESS), card_number="4242")
    with pytest.raises(CardBanned):
        pay_contactless(terminal, issue(terminal, PaymentMethod.CONTACTLESS), card_number="0000000000000000")
    with pytest.raises(Declined):
        pay_contactless(terminal, issue(terminal, PaymentMethod.CONTACTLESS), card_number="4000000000000069")


# --- Card-not-present: payment_authorize, capture, void -------------------------------------


def authorize(merchant, *, capture=False, card_number=VISA, amount="100.00", policy=cards.LUHN_PAN, **kw):  # type: ignore[no-untyped-def]
    return services.payment_authorize(
        merchant_pk=merchant.pk, door=Door.SECURE_API, card_number=card_number, policy=policy,
        amount=amount, capture=capture, **kw,
    )


@pytest.mark.parametrize("currency", ["USD", "JPY"])
def test_a_payment_in_another_currency_than_the_merchants_is_refused(terminal, currency) -> None:  # type: ignore[no-untyped-def]
    """A merchant is paid in one currency (EUR here): a door that names another is refused
    before anything is recorded, with or without card data (payment_open: IOTP without card)."""
    from payments.errors import NotTheMerchantsCurrency, UnsupportedCurrency

    with pytest.raises(NotTheMerchantsCurrency, match=f"'{currency}' not accepted: this merchant is paid in EUR"):
        authorize(terminal.merchant, capture=True, currency=currency, amount="100")
    with pytest.raises(UnsupportedCurrency):  # what the doors already map, as an unsupported currency
        services.payment_open(merchant_pk=terminal.merchant.pk, door=Door.IOTP, amount="100", currency=currency)
    assert not Transaction.objects.exists()
    assert authorize(terminal.merchant, capture=True, currency="EUR").status == TransactionStatus.CAPTURED


def test_authorize_then_capture(terminal) -> None:  # type: ignore[no-untyped-def]
    merchant = terminal.merchant
    txn = authorize(merchant, merchant_reference="order-1")
    txn.refresh_from_db()
    assert txn.status == TransactionStatus.AUTHORIZED and txn.process_state == ProcessState.IN_PROGRESS
    assert txn.authorized_amount == Decimal("100.00") and txn.captured_amount == 0
    assert txn.merchant_reference == "order-1" and txn.token_id is None and txn.door == Door.SECURE_API
    captured = services.payment_capture(transaction_id=txn.pk, merchant_pk=merchant.pk)
    assert captured.status == TransactionStatus.CAPTURED and captured.captured_amount == Decimal("100.00")
    with pytest.raises(InvalidState, match="captured"):
        services.payment_capture(transaction_id=txn.pk, merchant_pk=merchant.pk)
    with pytest.raises(InvalidState):
        services.payment_void(transaction_id=txn.pk, merchant_pk=merchant.pk)


def test_authorize_with_capture() -> None:
    merchant = MerchantFactory()
    txn = authorize(merchant, capture=True, card_number=MASTER)
    assert Transaction.objects.get(pk=txn.pk).status == TransactionStatus.CAPTURED
    assert txn.card_brand == "MASTER"


def test_authorize_applies_the_gateway_rules() -> None:
    merchant = MerchantFactory()
    with pytest.raises(InvalidCardNumber):
        authorize(merchant, card_number="4242424242424241")  # not Luhn-valid
    with pytest.raises(InvalidCardNumber):
        authorize(merchant, card_number="4242424242424241", policy=cards.ESIPAY_PAN)  # not at esipay either
    assert authorize(merchant, card_number="4111222230", policy=cards.ESIPAY_PAN)  # 10 digits, Luhn-valid
    with pytest.raises(CardBanned):
        authorize(merchant, card_number="0000000000000000", policy=cards.ESIPAY_PAN)
    with pytest.raises(LimitExceeded, match="Card max amount 2500.00"):
        authorize(merchant, amount="2500.01")  # brand from the number
    with pytest.raises(InvalidAmount):
        authorize(merchant, amount="1.001")
    with pytest.raises(Declined):
        authorize(merchant, card_number="4000000000000002")
    statuses = list(Transaction.objects.order_by("pk").values_list("status", flat=True))
    assert statuses == ["declined", "declined", "authorized", "declined", "declined", "declined"]


def test_authorize_refused_for_inactive_merchant() -> None:
    merchant = MerchantFactory(is_active=False)
    with pytest.raises(NotAuthorized):
        authorize(merchant)
    assert not Transaction.objects.exists()


def test_partial_capture() -> None:
    txn = AuthorizedTransactionFactory(amount=Decimal("100.00"))
    with pytest.raises(AmountExceedsRemaining):
        services.payment_capture(transaction_id=txn.pk, merchant_pk=txn.merchant_id, amount="100.01")
    with pytest.raises(InvalidAmount):
        services.payment_capture(transaction_id=txn.pk, merchant_pk=txn.merchant_id, amount="0")
    captured = services.payment_capture(transaction_id=txn.pk, merchant_pk=txn.merchant_id, amount="40")
    assert captured.captured_amount == Decimal("40.00") and captured.status == TransactionStatus.CAPTURED
    with pytest.raises(AmountExceedsRemaining, match=r"\(40.00\)"):
        services.refund_request(transaction_id=txn.pk, merchant_pk=txn.merchant_id, amount="40.01")


def test_capture_and_void_belong_to_the_merchant() -> None:
    txn = AuthorizedTransactionFactory()
    stranger = MerchantFactory()
    with pytest.raises(TransactionNotFound):
        services.payment_capture(transaction_id=txn.pk, merchant_pk=stranger.pk)
    with pytest.raises(TransactionNotFound):
        services.payment_void(transaction_id=txn.pk, merchant_pk=stranger.pk)
    with pytest.raises(TransactionNotFound):
        services.payment_capture(transaction_id=10**9, merchant_pk=txn.merchant_id)
    with pytest.raises(TransactionNotFound):
        services.refund_request(transaction_id=txn.pk, merchant_pk=stranger.pk)
    assert Transaction.objects.get(pk=txn.pk).status == TransactionStatus.AUTHORIZED


def test_capture_failure_puts_the_authorization_back(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    txn = AuthorizedTransactionFactory()
    monkeypatch.setattr(
        SandboxAcquirer, "capture", lambda self, **kw: AcquirerResult(Outcome.ERROR, reason="bank offline")
    )
    with pytest.raises(AcquirerFailure, match="bank offline"):
        services.payment_capture(transaction_id=txn.pk, merchant_pk=txn.merchant_id)
    txn.refresh_from_db()
    assert txn.status == TransactionStatus.AUTHORIZED and txn.captured_amount == 0


def test_void() -> None:
    txn = AuthorizedTransactionFactory()
    voided = services.payment_void(transaction_id=txn.pk, merchant_pk=txn.merchant_id)
    assert voided.status == TransactionStatus.VOIDED and voided.process_state == ProcessState.FAILED
    with pytest.raises(InvalidState, match="voided"):
        services.payment_void(transaction_id=txn.pk, merchant_pk=txn.merchant_id)
    with pytest.raises(InvalidState):
        services.payment_capture(transaction_id=txn.pk, merchant_pk=txn.merchant_id)
    with pytest.raises(InvalidState):
        services.refund_request(transaction_id=txn.pk, merchant_pk=txn.merchant_id)


def test_void_failure_keeps_the_authorization(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    txn = AuthorizedTransactionFactory()
    monkeypatch.setattr(SandboxAcquirer, "void", lambda self, **kw: AcquirerResult(Outcome.DECLINED, reason="no"))
    with pytest.raises(AcquirerFailure):
        services.payment_void(transaction_id=txn.pk, merchant_pk=txn.merchant_id)
    assert Transaction.objects.get(pk=txn.pk).status == TransactionStatus.AUTHORIZED


def test_capture_a_captured_or_declined_transaction() -> None:
    captured = CapturedTransactionFactory()
    with pytest.raises(InvalidState):
        services.payment_capture(transaction_id=captured.pk, merchant_pk=captured.merchant_id)
    declined = CapturedTransactionFactory(
        status=TransactionStatus.DECLINED, authorized_amount=Decimal("0"), captured_amount=Decimal("0")
    )
    with pytest.raises(InvalidState):
        services.payment_capture(transaction_id=declined.pk, merchant_pk=declined.merchant_id)
    with pytest.raises(InvalidState, match="declined"):
        services.refund_request(transaction_id=declined.pk, merchant_pk=declined.merchant_id)


# --- Refunds ---------------------------------------------------------------------------------


def refund(txn, amount=None, reference=""):  # type: ignore[no-untyped-def]
    return services.refund_request(
        transaction_id=txn.pk, merchant_pk=txn.merchant_id, amount=amount, reference=reference
    )


def test_full_refund() -> None:
    txn = CapturedTransactionFactory(amount=Decimal("100.00"))
    accepted = refund(txn)
    assert accepted.amount == Decimal("100.00") and accepted.status == RefundStatus.PENDING
    txn.refresh_from_db()
    assert txn.refunded_amount == Decimal("100.00") and txn.status == TransactionStatus.REFUNDED
    assert txn.process_state == ProcessState.COMPLETED_OK
    with pytest.raises(InvalidState, match="refunded"):
        refund(txn, "0.01")


def test_partial_refunds_never_exceed_captured() -> None:
    txn = CapturedTransactionFactory(amount=Decimal("100.00"))
    refund(txn, "30")
    refund(txn, "20.50")
    txn.refresh_from_db()
    assert txn.refunded_amount == Decimal("50.50") and txn.status == TransactionStatus.PARTIALLY_REFUNDED
    with pytest.raises(AmountExceedsRemaining) as info:
        refund(txn, "49.51")
    assert info.value.remaining == Decimal("49.50")
    assert info.value.message == "Amount exceeds what remains (49.50)"
    last = refund(txn)  # all that remains
    assert last.amount == Decimal("49.50")
    txn.refresh_from_db()
    assert txn.refunded_amount == txn.captured_amount and txn.status == TransactionStatus.REFUNDED
    assert sum(r.amount for r in txn.refunds.all()) == Decimal("100.00")


def test_refund_invalid_amount() -> None:
    txn = CapturedTransactionFactory()
    for bad in ("0", "-1", "1.001", 2.5):
        with pytest.raises(InvalidAmount):
            refund(txn, bad)
    assert not Refund.objects.exists()


def test_refund_needs_a_capture() -> None:
    txn = AuthorizedTransactionFactory()
    with pytest.raises(InvalidState, match="authorized"):
        refund(txn, "1")


def test_refund_reference_is_idempotent() -> None:
    txn = CapturedTransactionFactory(amount=Decimal("100.00"))
    first = refund(txn, "10", reference="R-1")
    assert refund(txn, "10", reference="R-1").pk == first.pk
    assert refund(txn, None, reference="R-1").pk == first.pk
    with pytest.raises(InvalidRequest, match="another amount"):
        refund(txn, "11", reference="R-1")
    txn.refresh_from_db()
    assert txn.refunded_amount == Decimal("10.00") and Refund.objects.count() == 1
    other = refund(txn, "10", reference="R-2")
    assert other.pk != first.pk
    # The same reference on another transaction is another refund.
    elsewhere = CapturedTransactionFactory(merchant=txn.merchant)
    assert refund(elsewhere, "10", reference="R-1").transaction_id == elsewhere.pk


def test_refund_reference_repeat_after_full_refund_returns_the_first() -> None:
    txn = CapturedTransactionFactory(amount=Decimal("10.00"))
    first = refund(txn, reference="all")
    assert refund(txn, reference="all").pk == first.pk


def test_refund_execute() -> None:
    txn = CapturedTransactionFactory(amount=Decimal("100.00"))
    accepted = refund(txn, "25")
    done = services.refund_execute(refund_id=accepted.pk)
    assert done.status == RefundStatus.SUCCEEDED and done.completed_at is not None
    assert done.acquirer_reference.startswith("sbx_")
    again = services.refund_execute(refund_id=accepted.pk)  # safe to run twice
    assert again.acquirer_reference == done.acquirer_reference and again.completed_at == done.completed_at
    txn.refresh_from_db()
    assert txn.refunded_amount == Decimal("25.00") and txn.status == TransactionStatus.PARTIALLY_REFUNDED


@pytest.mark.parametrize("earlier", [None, "40"])
def test_failed_refund_gives_the_amount_back(monkeypatch, earlier) -> None:  # type: ignore[no-untyped-def]
    txn = CapturedTransactionFactory(amount=Decimal("100.00"))
    if earlier:
        services.refund_execute(refund_id=refund(txn, earlier).pk)
    accepted = refund(txn, "60")

    def refuse(self, **kwargs):  # type: ignore[no-untyped-def]
        return AcquirerResult(Outcome.DECLINED, decline_code="refund_refused", reason="refund refused")

    monkeypatch.setattr(SandboxAcquirer, "refund", refuse)
    failed = services.refund_execute(refund_id=accepted.pk)
    assert failed.status == RefundStatus.FAILED and failed.failure_message
    txn.refresh_from_db()
    if earlier:
        assert txn.refunded_amount == Decimal("40.00") and txn.status == TransactionStatus.PARTIALLY_REFUNDED
    else:
        assert txn.refunded_amount == 0 and txn.status == TransactionStatus.CAPTURED
    assert services.refund_execute(refund_id=accepted.pk).status == RefundStatus.FAILED
    txn.refresh_from_db()
    assert txn.refunded_amount == Decimal(earlier or "0")  # given back once, not twice


def test_refund_technical_failure_is_retried_and_never_released(monkeypatch, settings, caplog) -> None:  # type: ignore[no-untyped-def]
    """An acquirer that times out may still have paid: the refund is asked again
    later (backoff), its amount stays reserved, and it is never given back on a
    timeout, even after 3 days (then each try is logged as an error for staff)."""
    txn = CapturedTransactionFactory(amount=Decimal("100.00"))
    accepted = refund(txn, "60")

    def time_out(self, **kwargs):  # type: ignore[no-untyped-def]
        raise AcquirerTimeout("acquirer timed out")

    monkeypatch.setattr(SandboxAcquirer, "refund", time_out)
    waiting = services.refund_execute(refund_id=accepted.pk)
    assert waiting.status == RefundStatus.PENDING and waiting.attempts == 1
    assert waiting.next_attempt_at > timezone.now() and waiting.lease_until is None
    txn.refresh_from_db()
    assert txn.refunded_amount == Decimal("60.00")  # still reserved
    # Not due yet: a duplicate task does nothing.
    assert services.refund_execute(refund_id=accepted.pk).attempts == 1
    Refund.objects.filter(pk=accepted.pk).update(
        next_attempt_at=timezone.now(), created_at=timezone.now() - timedelta(days=4)
    )
    still = services.refund_execute(refund_id=accepted.pk)
    assert still.status == RefundStatus.PENDING and still.attempts == 2
    assert "still unanswered by the acquirer after 2 tries" in caplog.text
    txn.refresh_from_db()
    assert txn.refunded_amount == Decimal("60.00") and txn.status == TransactionStatus.PARTIALLY_REFUNDED
    assert not txn.events.exists()


@pytest.mark.django_db(transaction=True)  # the connector runs on the acquirer pool: its own connection
def test_refund_result_of_a_worker_that_lost_its_lease_is_dropped(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The worker's lease ran out while the acquirer answered and the sweep gave
    the refund to another worker: the first one must not record over it."""
    txn = CapturedTransactionFactory(amount=Decimal("100.00"))
    accepted = refund(txn, "10")
    real = SandboxAcquirer.refund

    def slow(self, **kwargs):  # type: ignore[no-untyped-def]
        Refund.objects.filter(pk=accepted.pk).update(lease_until=timezone.now() + timedelta(minutes=5))  # another's
        connection.close()  # this pool thread's connection (connectors never use the database)
        return real(self, **kwargs)

    monkeypatch.setattr(SandboxAcquirer, "refund", slow)
    kept = services.refund_execute(refund_id=accepted.pk)
    assert kept.status == RefundStatus.PENDING and not kept.acquirer_reference
    assert not Refund.objects.get(pk=accepted.pk).completed_at


def test_refund_of_a_terminal_sale(terminal) -> None:  # type: ignore[no-untyped-def]
    txn = pay_card(terminal, issue(terminal), amount="80")
    accepted = services.refund_request(transaction_id=txn.pk, merchant_pk=terminal.merchant_id, amount="80")
    assert services.refund_execute(refund_id=accepted.pk).status == RefundStatus.SUCCEEDED
    assert Transaction.objects.get(pk=txn.pk).status == TransactionStatus.REFUNDED


# --- Ban list service -----------------------------------------------------------------------


def test_ban_add_is_idempotent_and_keeps_no_number() -> None:
    ban, created = services.ban_add(kind=BanKind.CARD, value=" 4111111111111111 ", reason="fraud")
    assert created
    again, created_again = services.ban_add(kind=BanKind.CARD, value="4111111111111111")
    assert again.pk == ban.pk and not created_again
    ban.refresh_from_db()
    assert ban.card_bin == "411111" and ban.card_last4 == "1111" and ban.display_value == "411111******1111"
    assert "4111111111111111" not in (ban.key, ban.card_bin, ban.card_last4, ban.reason, str(ban))


@pytest.mark.parametrize(
    ("kind", "value"),
    [("card", "123456789"), ("card", "4242x"), ("bin", "12345"), ("bin", "123456789"), ("bin", "abcdef"),
     ("check", "123"), ("pin", "12345"), ("pin", "abcd"), ("iban", "x")],
)
def test_ban_add_refuses_bad_values(kind, value) -> None:  # type: ignore[no-untyped-def]
    count = Ban.objects.count()
    with pytest.raises(services.BanValueError):
        services.ban_add(kind=kind, value=value)
    assert Ban.objects.count() == count


def test_shipped_defaults() -> None:
    limits = dict(CardLimit.objects.filter(currency="EUR").values_list("kind", "max_amount"))
    assert limits == {
        "VISA": Decimal("2500.00"), "MASTER": Decimal("3000.00"),
        "ELECTRON": Decimal("1700.00"), "CONTACTLESS": Decimal("30.00"),
        "AMEX": Decimal("2500.00"), "OTHER": Decimal("1700.00"),  # docs/decisions.md
    }
    # Every currency the gateway accepts has every limit (a payment is never unlimited by omission).
    from payments.money import CURRENCIES
    from payments.states import LimitKind

    seeded = set(CardLimit.objects.values_list("kind", "currency"))
    assert seeded == {(kind, code) for kind in LimitKind.values for code in CURRENCIES}
    pins = set(Ban.objects.filter(kind=BanKind.PIN).values_list("key", flat=True))
    assert pins == {cards.pin_fingerprint(p) for p in [str(d) * 4 for d in range(10)] + ["1234"]}
    assert Ban.objects.filter(kind=BanKind.CHECK, key="00000000AAA").exists()
    assert Ban.objects.filter(kind=BanKind.CARD, key=cards.card_facts("0000000000000000").fingerprint).exists()


# --- States ----------------------------------------------------------------------------------


def test_process_state_mapping() -> None:
    assert set(PROCESS_STATE) == set(TransactionStatus.values)
    assert PROCESS_STATE == {
        "pending": ProcessState.NOT_YET_STARTED,
        "awaiting_card": ProcessState.IN_PROGRESS,
        "processing": ProcessState.IN_PROGRESS,
        "suspended": ProcessState.SUSPENDED,
        "authorized": ProcessState.IN_PROGRESS,
        "captured": ProcessState.COMPLETED_OK,
        "partially_refunded": ProcessState.COMPLETED_OK,
        "refunded": ProcessState.COMPLETED_OK,
        "voided": ProcessState.FAILED,
        "declined": ProcessState.FAILED,
        "error": ProcessState.PROCESS_ERROR,
    }
    assert sorted(statuses_in(ProcessState.FAILED)) == ["declined", "voided"]
    assert statuses_in(ProcessState.PROCESS_ERROR) == ["error"]
    assert {s for state in ProcessState for s in statuses_in(state)} == set(TransactionStatus.values)


# --- Database constraints: the backstops of the services' rules --------------------------------


def test_one_payment_per_token_constraint(terminal) -> None:  # type: ignore[no-untyped-def]
    token = TokenFactory(terminal=terminal)
    common = dict(merchant=terminal.merchant, terminal=terminal, token=token, door=Door.TERMINAL,
                  method=PaymentMethod.CARD, amount=Decimal("5"), currency="EUR")
    for _ in range(2):  # failed attempts do not hold the token
        Transaction.objects.create(status=TransactionStatus.DECLINED, **common)
    Transaction.objects.create(status=TransactionStatus.ERROR, **common)
    Transaction.objects.create(status=TransactionStatus.PROCESSING, operation="authorize", **common)
    for status in (TransactionStatus.PROCESSING, TransactionStatus.CAPTURED, TransactionStatus.VOIDED):
        with pytest.raises(IntegrityError, match="one_payment_per_token|token_id"), transaction.atomic():
            Transaction.objects.create(
                status=status, operation="authorize" if status == TransactionStatus.PROCESSING else "", **common
            )


def test_a_processing_transaction_says_which_operation_is_in_flight(terminal) -> None:  # type: ignore[no-untyped-def]
    """The resolver must know what to ask the acquirer about: processing has an
    operation, and nothing else has one (check constraint)."""
    common = dict(merchant=terminal.merchant, door=Door.ESIPAY, method=PaymentMethod.CARD,
                  amount=Decimal("5"), currency="EUR")
    with pytest.raises(IntegrityError, match="txn_operation_while_processing"), transaction.atomic():
        Transaction.objects.create(status=TransactionStatus.PROCESSING, **common)
    with pytest.raises(IntegrityError, match="txn_operation_while_processing"), transaction.atomic():
        Transaction.objects.create(status=TransactionStatus.DECLINED, operation="capture", **common)
    Transaction.objects.create(status=TransactionStatus.PROCESSING, operation="void", **common)


def test_refunded_within_captured_constraint() -> None:
    txn = CapturedTransactionFactory(amount=Decimal("100.00"))
    Transaction.objects.filter(pk=txn.pk).update(refunded_amount=Decimal("100.00"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Transaction.objects.filter(pk=txn.pk).update(refunded_amount=F("captured_amount") + Decimal("0.01"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Transaction.objects.filter(pk=txn.pk).update(refunded_amount=Decimal("-1"))


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": Decimal("0")},
        {"captured_amount": Decimal("100.01")},
        {"authorized_amount": Decimal("100.01"), "captured_amount": Decimal("0")},
    ],
)
def test_amount_constraints(changes) -> None:  # type: ignore[no-untyped-def]
    txn = CapturedTransactionFactory(amount=Decimal("100.00"))
    if changes.get("amount") == 0:
        changes = {"amount": Decimal("0"), "authorized_amount": Decimal("0"), "captured_amount": Decimal("0")}
    with pytest.raises(IntegrityError), transaction.atomic():
        Transaction.objects.filter(pk=txn.pk).update(**changes)


def test_token_constraints(terminal) -> None:  # type: ignore[no-untyped-def]
    token = TokenFactory(terminal=terminal, try_count=2)
    Token.objects.filter(pk=token.pk).update(tries_used=2)
    with pytest.raises(IntegrityError), transaction.atomic():
        Token.objects.filter(pk=token.pk).update(tries_used=3)
    with pytest.raises(IntegrityError), transaction.atomic():
        TokenFactory(terminal=terminal, try_count=-2)
    with pytest.raises(IntegrityError), transaction.atomic():
        TokenFactory(terminal=terminal, value=token.value)
    unlimited = TokenFactory(terminal=terminal, try_count=-1)
    Token.objects.filter(pk=unlimited.pk).update(tries_used=10**6)


def test_unique_ban_refund_reference_and_limit_constraints() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Ban.objects.create(kind=BanKind.CHECK, key="00000000AAA")
    txn = CapturedTransactionFactory()
    Refund.objects.create(transaction=txn, amount=Decimal("1"), reference="R")
    Refund.objects.create(transaction=txn, amount=Decimal("1"), reference="")
    Refund.objects.create(transaction=txn, amount=Decimal("1"), reference="")  # no reference: no uniqueness
    with pytest.raises(IntegrityError), transaction.atomic():
        Refund.objects.create(transaction=txn, amount=Decimal("1"), reference="R")
    with pytest.raises(IntegrityError), transaction.atomic():
        Refund.objects.create(transaction=txn, amount=Decimal("0"))
    with pytest.raises(IntegrityError), transaction.atomic():
        CardLimit.objects.create(kind="VISA", currency="EUR", max_amount=Decimal("1"))
    with pytest.raises(IntegrityError), transaction.atomic():
        CardLimit.objects.create(kind="VISA", currency="USD", max_amount=Decimal("0"))


def test_no_acquirer_call_inside_a_transaction(terminal) -> None:  # type: ignore[no-untyped-def]
    """Architecture rule: no network I/O inside a transaction; a door that wraps a
    payment in its own transaction is stopped before the acquirer is called."""
    token = issue(terminal)
    with pytest.raises(TransactionRuleViolation, match="no acquirer call inside a transaction"), transaction.atomic():
        pay_card(terminal, token)
