"""Unknown outcomes: a transaction whose acquirer answer was lost stays processing,
holding its token and merchant reference, until the resolver asks the acquirer
and records what it says (payments/models.py's overview says how a resolved row
looks). The sandbox acquirer's ledger is this test's own file.

The death of a process is simulated by running a payment's phases only up to
where it "died": phase 1 only (died before asking the acquirer), phases 1 and 2
(died with the acquirer's answer in hand). tests/celery/test_unknown_outcomes.py
does it with real processes killed with SIGKILL.
"""
from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from payments import cards, outbox, services
from payments.acquirers.base import AcquirerResult, AcquirerState, AcquirerTimeout, Outcome, _load
from payments.acquirers.sandbox import TIMEOUT_CARD, SandboxAcquirer
from payments.errors import AcquirerFailure, PaymentOutcomeUnknown, TokenInvalid
from payments.models import Event, Transaction, WebhookDelivery
from payments.services import reconciliation
from payments.states import AcquirerOperation, Door, EventType, PaymentMethod, TransactionStatus
from tests.factories import MerchantFactory, TerminalFactory
from tests.support.threads import run_at_once

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("shipped_defaults", "sandbox")]

VISA = "4242424242424242"


@pytest.fixture
def sandbox(tmp_path, settings):  # type: ignore[no-untyped-def]
    settings.SANDBOX_ACQUIRER_LEDGER = str(tmp_path / "sandbox.ledger")
    _load.cache_clear()
    yield SandboxAcquirer()
    _load.cache_clear()


@pytest.fixture
def terminal():  # type: ignore[no-untyped-def]
    terminal = TerminalFactory()
    outbox.webhook_endpoint_create(merchant_pk=terminal.merchant_id, url="https://hooks.example.com/gw")
    return terminal


def token(terminal) -> str:  # type: ignore[no-untyped-def]
    return services.token_issue(terminal_pk=terminal.pk, payment_type=PaymentMethod.CARD).value


def start(terminal, value: str, card: str = VISA) -> services.AuthorizationStep:  # type: ignore[no-untyped-def]
    """Phase 1 only: committed as processing; the process died before asking the acquirer."""
    return services.payment_sale_start(
        terminal_pk=terminal.pk, token=value, method=PaymentMethod.CARD, amount="25.00",
        card_type=cards.card_brand(card) or "VISA", card_number=card, pin="2580",
    )


def sent(terminal, value: str, card: str = VISA) -> Transaction:  # type: ignore[no-untyped-def]
    """Phases 1 and 2: the acquirer answered, the process died before recording it."""
    step = start(terminal, value, card)
    services.payment_authorization_send(step)
    return Transaction.objects.get(pk=step.transaction.pk)


def lost(*transactions: Transaction, seconds: float = 3600) -> None:
    """Age the rows past PAYMENTS_RESOLVE_AFTER_SECONDS (the resolver's clock)."""
    Transaction.objects.filter(pk__in=[t.pk for t in transactions]).update(
        updated_at=timezone.now() - timedelta(seconds=seconds)
    )


def events(txn: Transaction) -> list[str]:
    return list(Event.objects.filter(transaction=txn).order_by("id").values_list("type", flat=True))


def pay(terminal, value: str, card: str = VISA) -> Transaction:  # type: ignore[no-untyped-def]
    return services.payment_sale_with_token(
        terminal_pk=terminal.pk, token=value, method=PaymentMethod.CARD, amount="25.00",
        card_type="VISA", card_number=card, pin="2580",
    )


# --- What a resolved row looks like --------------------------------------------------------


def test_an_approval_nobody_was_told_about_is_reversed(terminal, sandbox) -> None:  # type: ignore[no-untyped-def]
    value = token(terminal)
    txn = sent(terminal, value)
    assert txn.status == TransactionStatus.PROCESSING and txn.operation == AcquirerOperation.AUTHORIZE
    assert sandbox.inquire(transaction_id=txn.pk).state is AcquirerState.CAPTURED  # charged at the acquirer
    with pytest.raises(TokenInvalid):  # held until resolved
        pay(terminal, value)
    lost(txn)
    assert services.payments_resolve_unknown() == {"voided": 1}
    txn.refresh_from_db()
    assert txn.status == TransactionStatus.VOIDED and txn.operation == "" and txn.resolver_lease_until is None
    assert txn.failure_code == reconciliation.REVERSED and "reversed" in txn.failure_message
    assert txn.authorized_amount == Decimal("25.00") and txn.captured_amount == 0
    assert txn.acquirer_reference.startswith("sbx_") and len(txn.authorization_code) == 6
    assert sandbox.inquire(transaction_id=txn.pk).state is AcquirerState.VOIDED  # nothing charged any more
    assert events(txn) == [EventType.PAYMENT_CANCELLED]
    event = Event.objects.get(transaction=txn)
    assert event.data["status"] == "voided" and event.data["failure_code"] == "reversed_unknown_outcome"
    assert WebhookDelivery.objects.filter(event=event).count() == 1
    with pytest.raises(TokenInvalid):  # one token, one payment: a reversed payment keeps it
        pay(terminal, value)


def test_an_authorization_the_acquirer_never_received_is_declined_and_frees_its_token(terminal, sandbox) -> None:  # type: ignore[no-untyped-def]
    value = token(terminal)
    step = start(terminal, value)
    lost(step.transaction)
    assert services.payments_resolve_unknown() == {"declined": 1}
    txn = Transaction.objects.get(pk=step.transaction.pk)
    assert txn.status == TransactionStatus.DECLINED and txn.failure_code == reconciliation.NO_RECORD
    assert events(txn) == [EventType.PAYMENT_FAILED]
    # Reversed at the acquirer all the same (ISO 8583): an authorization arriving late is refused.
    assert [line.split()[0] for line in open(sandbox.ledger.path)] == ["R"]
    assert pay(terminal, value).status == TransactionStatus.CAPTURED  # the token's next try


@pytest.mark.parametrize(
    ("card", "status", "code"),
    [("4000000000009995", TransactionStatus.DECLINED, "insufficient_funds"),
     ("4000000000000119", TransactionStatus.ERROR, "processing_error")],
)
def test_a_refusal_whose_answer_was_lost_is_recorded_as_a_direct_answer_would_be(terminal, card, status, code) -> None:  # type: ignore[no-untyped-def]
    txn = sent(terminal, token(terminal), card)
    lost(txn)
    services.payments_resolve_unknown()
    txn.refresh_from_db()
    assert txn.status == status and txn.failure_code == code and txn.operation == ""
    assert events(txn) == [EventType.PAYMENT_FAILED]


def test_a_timeout_leaves_the_payment_processing_until_the_resolver_settles_it(terminal, sandbox, settings) -> None:  # type: ignore[no-untyped-def]
    """End to end in one process: the sandbox's timeout card is approved at the
    acquirer, its answer never comes; the caller hears "unknown", never "declined"."""
    settings.ACQUIRER_TIMEOUT_SECONDS = 0.2
    value = token(terminal)
    with pytest.raises(PaymentOutcomeUnknown) as info:
        pay(terminal, value, TIMEOUT_CARD)
    assert info.value.code == "outcome_unknown" and "Declined" not in info.value.message
    txn = Transaction.objects.get(pk=info.value.transaction_id)
    assert txn.status == TransactionStatus.PROCESSING and events(txn) == []
    assert services.payments_resolve_unknown() == {}  # not lost yet: its request may still be waiting
    with pytest.raises(TokenInvalid):
        pay(terminal, value)
    lost(txn)
    services.payments_resolve_unknown()
    txn.refresh_from_db()
    assert txn.status == TransactionStatus.VOIDED and txn.failure_code == reconciliation.REVERSED
    assert events(txn) == [EventType.PAYMENT_CANCELLED]


# --- Captures and voids in flight -----------------------------------------------------------


def authorization(merchant) -> Transaction:  # type: ignore[no-untyped-def]
    return services.payment_authorize(
        merchant_pk=merchant.pk, door=Door.ESIPAY, card_number=VISA, policy=cards.ESIPAY_PAN,
        amount="40.00", capture=False,
    )


def answer_lost(monkeypatch, name: str, *, done: bool) -> None:  # type: ignore[no-untyped-def]
    """The sandbox's ``name`` (capture or void) is done (or not) and its answer lost."""
    real = getattr(SandboxAcquirer, name)

    def lose(self, **kwargs):  # type: ignore[no-untyped-def]
        if done:
            real(self, **kwargs)
        raise AcquirerTimeout("read timeout")

    monkeypatch.setattr(SandboxAcquirer, name, lose)


@pytest.mark.parametrize(("done", "status", "event"), [
    (True, TransactionStatus.CAPTURED, [EventType.PAYMENT_SUCCEEDED]),
    (False, TransactionStatus.AUTHORIZED, []),
])
def test_a_capture_whose_answer_was_lost(monkeypatch, done, status, event) -> None:  # type: ignore[no-untyped-def]
    txn = authorization(MerchantFactory())
    answer_lost(monkeypatch, "capture", done=done)
    with pytest.raises(PaymentOutcomeUnknown):
        services.payment_capture(transaction_id=txn.pk, merchant_pk=txn.merchant_id)
    txn.refresh_from_db()
    assert txn.status == TransactionStatus.PROCESSING and txn.operation == AcquirerOperation.CAPTURE
    lost(txn)
    services.payments_resolve_unknown()
    txn.refresh_from_db()
    assert txn.status == status and txn.operation == ""
    assert txn.captured_amount == (Decimal("40.00") if done else 0)
    assert events(txn) == event


@pytest.mark.parametrize(("done", "status", "event"), [
    (True, TransactionStatus.VOIDED, [EventType.PAYMENT_CANCELLED]),
    (False, TransactionStatus.AUTHORIZED, []),
])
def test_a_void_whose_answer_was_lost(monkeypatch, done, status, event) -> None:  # type: ignore[no-untyped-def]
    txn = authorization(MerchantFactory())
    answer_lost(monkeypatch, "void", done=done)
    with pytest.raises(PaymentOutcomeUnknown):
        services.payment_void(transaction_id=txn.pk, merchant_pk=txn.merchant_id)
    assert Transaction.objects.get(pk=txn.pk).operation == AcquirerOperation.VOID
    lost(txn)
    services.payments_resolve_unknown()
    txn.refresh_from_db()
    assert txn.status == status and events(txn) == event


# --- Safe to run twice, concurrently, and never over the request that lost the answer ----------


def test_resolving_twice_records_once(terminal, sandbox) -> None:  # type: ignore[no-untyped-def]
    txn = sent(terminal, token(terminal))
    lost(txn)
    assert services.payments_resolve_unknown() == {"voided": 1}
    assert services.payments_resolve_unknown() == {}
    assert services.transaction_resolve(transaction_id=txn.pk) == "skipped"
    assert events(txn) == [EventType.PAYMENT_CANCELLED]


@pytest.mark.django_db(transaction=True)
def test_concurrent_resolvers_settle_each_row_once(sandbox, shipped_defaults) -> None:  # type: ignore[no-untyped-def]
    """Two resolvers at once (two beat runs overlapping, two workers): each row is
    claimed by exactly one of them (a conditional UPDATE), reversed once, announced once."""
    terminal = TerminalFactory()
    rows = [sent(terminal, token(terminal)) for _ in range(6)]
    lost(*rows)

    def resolve() -> dict[str, int]:
        try:
            return services.payments_resolve_unknown()
        finally:
            connection.close()

    results = run_at_once([resolve, resolve])
    assert sum(r.get("voided", 0) for r in results) == 6
    reversals = [line.split()[1] for line in open(sandbox.ledger.path) if line.startswith("R ")]
    assert sorted(reversals) == sorted(str(r.pk) for r in rows)
    assert Event.objects.filter(type=EventType.PAYMENT_CANCELLED).count() == 6


def test_the_request_that_lost_the_answer_cannot_record_it_once_the_resolver_holds_it(terminal) -> None:  # type: ignore[no-untyped-def]
    """A request far slower than its deadline and the resolver at the same time:
    the resolver's lease wins, the request tells its caller "unknown" (its
    approval is the resolver's to reverse), never "approved"."""
    step = start(terminal, token(terminal))
    result = services.payment_authorization_send(step)
    assert result.approved
    Transaction.objects.filter(pk=step.transaction.pk).update(resolver_lease_until=timezone.now() + timedelta(minutes=1))
    with pytest.raises(PaymentOutcomeUnknown, match="too late"):
        services.payment_authorization_record(step, result)
    assert Transaction.objects.get(pk=step.transaction.pk).status == TransactionStatus.PROCESSING
    assert events(step.transaction) == []


def test_a_row_held_by_a_live_resolver_is_left_alone_and_taken_again_when_its_lease_ends(terminal) -> None:  # type: ignore[no-untyped-def]
    txn = sent(terminal, token(terminal))
    lost(txn)
    Transaction.objects.filter(pk=txn.pk).update(resolver_lease_until=timezone.now() + timedelta(minutes=1))
    assert services.payments_resolve_unknown() == {}
    Transaction.objects.filter(pk=txn.pk).update(resolver_lease_until=timezone.now() - timedelta(seconds=1))
    assert services.payments_resolve_unknown() == {"voided": 1}


def test_an_acquirer_that_cannot_answer_the_inquiry_leaves_the_row_for_the_next_run(terminal, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    txn = sent(terminal, token(terminal))
    lost(txn)

    def down(self, **kwargs):  # type: ignore[no-untyped-def]
        raise AcquirerTimeout("inquiry timed out")

    monkeypatch.setattr(SandboxAcquirer, "inquire", down)
    assert services.payments_resolve_unknown() == {"unanswered": 1}
    txn.refresh_from_db()
    assert txn.status == TransactionStatus.PROCESSING and txn.resolver_lease_until is not None
    assert services.payments_resolve_unknown() == {}  # leased: not asked again at once
    monkeypatch.undo()
    Transaction.objects.filter(pk=txn.pk).update(resolver_lease_until=timezone.now() - timedelta(seconds=1))
    assert services.payments_resolve_unknown() == {"voided": 1}


def test_a_refused_reversal_keeps_the_row_unresolved_and_tells_staff(terminal, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    txn = sent(terminal, token(terminal))
    lost(txn)
    monkeypatch.setattr(SandboxAcquirer, "reverse",
                        lambda self, **kw: AcquirerResult(Outcome.DECLINED, reason="too late to reverse"))
    assert services.payments_resolve_unknown() == {"unanswered": 1}
    assert Transaction.objects.get(pk=txn.pk).status == TransactionStatus.PROCESSING
    assert "reversal was refused" in caplog.text and "too late to reverse" in caplog.text


def test_a_bug_in_the_connector_is_not_swallowed_by_the_resolver(terminal, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    txn = sent(terminal, token(terminal))
    lost(txn)
    monkeypatch.setattr(SandboxAcquirer, "inquire", lambda self, **kw: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        services.payments_resolve_unknown()
    assert Transaction.objects.get(pk=txn.pk).status == TransactionStatus.PROCESSING


def test_the_run_stops_taking_rows_when_its_time_budget_is_spent(terminal) -> None:  # type: ignore[no-untyped-def]
    rows = [sent(terminal, token(terminal)) for _ in range(3)]
    lost(*rows)
    assert services.payments_resolve_unknown(budget_seconds=0) == {"voided": 1}  # at least one a run
    assert services.payments_resolve_unknown() == {"voided": 2}


def test_capture_failure_is_still_a_definite_answer(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Only an unknown outcome is left processing: a refusal puts the authorization back."""
    txn = authorization(MerchantFactory())
    monkeypatch.setattr(SandboxAcquirer, "capture", lambda self, **kw: AcquirerResult(Outcome.ERROR, reason="no"))
    with pytest.raises(AcquirerFailure):
        services.payment_capture(transaction_id=txn.pk, merchant_pk=txn.merchant_id)
    assert Transaction.objects.get(pk=txn.pk).status == TransactionStatus.AUTHORIZED


def test_the_resolver_task_runs_the_resolver(terminal) -> None:  # type: ignore[no-untyped-def]
    from config.celery import app
    from payments import tasks

    txn = sent(terminal, token(terminal))
    lost(txn)
    assert tasks.resolve_unknown_outcomes() == {"voided": 1}
    assert "resolve-unknown-outcomes" in {
        name for name, entry in app.conf.beat_schedule.items() if entry["task"] == "payments.tasks.resolve_unknown_outcomes"
    }


def test_the_resolver_never_overtakes_a_request_still_waiting(settings) -> None:  # type: ignore[no-untyped-def]
    """The settings refuse a resolver that would ask before the deadline has passed."""
    import subprocess
    import sys
    import os
    from pathlib import Path

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test",
           "ACQUIRER_TIMEOUT_SECONDS": "30", "PAYMENTS_RESOLVE_AFTER_SECONDS": "20"}
    done = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env,
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "PAYMENTS_RESOLVE_AFTER_SECONDS must be longer" in done.stderr
