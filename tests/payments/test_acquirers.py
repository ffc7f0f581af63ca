"""The acquirer connector and the pool it runs on.

The sandbox remembers what it did in a ledger shared by processes (inquiry
and reversal from another process); every call runs on the acquirer pool
with a deadline, and what a failure means is decided in one place
(payments.services.acquiring).
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from payments.acquirers import base
from payments.acquirers.base import (
    AcquirerError,
    AcquirerResult,
    AcquirerState,
    AcquirerTimeout,
    AcquirerUnavailable,
    AuthorizationRequest,
    Outcome,
)
from payments.acquirers.sandbox import TEST_CARDS, TIMEOUT_CARD, Ledger, SandboxAcquirer
from payments.cards import luhn_valid
from payments.services import acquiring

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox(tmp_path, settings) -> SandboxAcquirer:  # type: ignore[no-untyped-def]
    settings.SANDBOX_ACQUIRER_LEDGER = str(tmp_path / "ledger")
    return SandboxAcquirer()


def request(transaction_id: int, pan: str = "4242424242424242", *, capture: bool = True) -> AuthorizationRequest:
    return AuthorizationRequest(
        transaction_id=transaction_id, amount=Decimal("12.50"), currency="EUR", capture=capture, pan=pan
    )


# --- The sandbox's inquiry and reversal ---------------------------------------------------


def test_inquiry_says_what_became_of_each_authorization(sandbox) -> None:  # type: ignore[no-untyped-def]
    sale = sandbox.authorize(request(1))
    found = sandbox.inquire(transaction_id=1)
    assert found.state is AcquirerState.CAPTURED and found.captured_amount == Decimal("12.50")
    assert found.reference == sale.reference and found.authorization_code == sale.authorization_code

    sandbox.authorize(request(2, capture=False))
    assert sandbox.inquire(transaction_id=2).state is AcquirerState.AUTHORIZED
    sandbox.capture(reference="r", amount=Decimal("10.00"), currency="EUR", transaction_id=2)
    captured = sandbox.inquire(transaction_id=2)
    assert captured.state is AcquirerState.CAPTURED and captured.captured_amount == Decimal("10.00")

    sandbox.authorize(request(3, capture=False))
    sandbox.void(reference="r", transaction_id=3)
    assert sandbox.inquire(transaction_id=3).state is AcquirerState.VOIDED

    assert sandbox.inquire(transaction_id=4).state is AcquirerState.NOT_FOUND


def test_inquiry_of_declined_and_failed_test_cards(sandbox) -> None:  # type: ignore[no-untyped-def]
    sandbox.authorize(request(5, "4000000000009995"))
    declined = sandbox.inquire(transaction_id=5)
    assert declined.state is AcquirerState.DECLINED and declined.decline_code == "insufficient_funds"
    assert declined.reason == "insufficient funds"
    sandbox.authorize(request(6, "4000000000000119"))
    assert sandbox.inquire(transaction_id=6).state is AcquirerState.ERROR


def test_reversal_undoes_an_approval_and_is_safe_to_repeat(sandbox) -> None:  # type: ignore[no-untyped-def]
    sandbox.authorize(request(7))
    assert sandbox.reverse(transaction_id=7).approved
    assert sandbox.reverse(transaction_id=7).approved
    reversed_ = sandbox.inquire(transaction_id=7)
    assert reversed_.state is AcquirerState.VOIDED and reversed_.captured_amount == 0
    # A reversal of what never arrived is accepted and changes nothing.
    assert sandbox.reverse(transaction_id=8).approved
    assert sandbox.inquire(transaction_id=8).state is AcquirerState.NOT_FOUND


def test_the_newest_authorization_of_an_id_counts(sandbox) -> None:  # type: ignore[no-untyped-def]
    """A database reset numbers transactions from 1 again: the sandbox answers for the latest."""
    sandbox.authorize(request(9))
    sandbox.reverse(transaction_id=9)
    sandbox.authorize(request(9, "4000000000000002"))
    assert sandbox.inquire(transaction_id=9).state is AcquirerState.DECLINED


def test_inquiry_reads_across_block_boundaries(sandbox, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(Ledger, "_CHUNK", 7)  # far shorter than a line
    for pk in range(100, 160):
        sandbox.authorize(request(pk, capture=pk % 2 == 0))
    sandbox.void(reference="r", transaction_id=101)
    assert sandbox.inquire(transaction_id=100).state is AcquirerState.CAPTURED
    assert sandbox.inquire(transaction_id=101).state is AcquirerState.VOIDED
    assert sandbox.inquire(transaction_id=159).state is AcquirerState.AUTHORIZED
    assert sandbox.inquire(transaction_id=10).state is AcquirerState.NOT_FOUND  # a prefix of 100..109 is not 10


def test_a_line_still_being_written_is_not_read(sandbox) -> None:  # type: ignore[no-untyped-def]
    sandbox.authorize(request(11))
    with open(sandbox.ledger.path, "ab") as ledger:
        ledger.write(b"R 11")  # no newline yet
    assert sandbox.inquire(transaction_id=11).state is AcquirerState.CAPTURED


def test_another_process_can_ask_about_an_authorization(sandbox) -> None:  # type: ignore[no-untyped-def]
    """A Celery worker asks about what a listener authorized: the ledger is shared
    by processes (here a second Python process authorizes, this one inquires)."""
    code = (
        "import django; django.setup();"
        "from decimal import Decimal;"
        "from payments.acquirers.base import AuthorizationRequest;"
        "from payments.acquirers.sandbox import SandboxAcquirer;"
        "r = SandboxAcquirer().authorize(AuthorizationRequest(transaction_id=4242, amount=Decimal('3.00'),"
        " currency='EUR', capture=False, pan='4242424242424242'));"
        "print(r.reference)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.dev", "GATEWAY_VAR_DIR": str(Path(sandbox.ledger.path).parent),
           "SANDBOX_ACQUIRER_LEDGER": str(sandbox.ledger.path), "DATABASE_URL": "sqlite://:memory:"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    found = sandbox.inquire(transaction_id=4242)
    assert found.state is AcquirerState.AUTHORIZED and found.reference == done.stdout.strip()


def test_the_timeout_card_is_processed_but_never_answered_in_time(sandbox, settings) -> None:  # type: ignore[no-untyped-def]
    settings.ACQUIRER_TIMEOUT_SECONDS = 0.1
    assert luhn_valid(TIMEOUT_CARD) and TIMEOUT_CARD not in TEST_CARDS
    started = time.monotonic()
    with pytest.raises(AcquirerTimeout):
        sandbox.authorize(request(12, TIMEOUT_CARD))
    assert time.monotonic() - started > settings.ACQUIRER_TIMEOUT_SECONDS  # past any caller's deadline
    assert sandbox.inquire(transaction_id=12).state is AcquirerState.CAPTURED


def test_test_cards_are_luhn_valid() -> None:
    assert all(luhn_valid(card) for card in [*TEST_CARDS, TIMEOUT_CARD])


# --- The acquirer pool and its deadline -----------------------------------------------------


@pytest.fixture
def own_pool(monkeypatch, settings):  # type: ignore[no-untyped-def]
    """A fresh acquirer pool of this test's size (the process's pool is kept aside)."""
    def make(threads: int) -> None:
        settings.ACQUIRER_THREADS = threads
        monkeypatch.setattr(acquiring, "_pool", None)

    return make


def test_calls_run_on_the_acquirer_pool_not_in_the_callers_thread() -> None:
    seen: list[str] = []
    acquiring.acquirer_run(lambda: seen.append(threading.current_thread().name))
    assert seen and seen[0].startswith("acquirer") and seen[0] != threading.current_thread().name


def test_the_deadline_makes_a_slow_call_a_timeout_and_drops_its_late_answer(settings, caplog) -> None:  # type: ignore[no-untyped-def]
    settings.ACQUIRER_TIMEOUT_SECONDS = 0.1
    release, answered = threading.Event(), threading.Event()

    def slow_authorize() -> AcquirerResult:
        release.wait(10)
        answered.set()
        return AcquirerResult(Outcome.APPROVED)

    with pytest.raises(AcquirerTimeout, match="within 0.1 s"):
        acquiring.acquirer_run(slow_authorize)
    release.set()
    assert answered.wait(10)
    deadline = time.monotonic() + 5
    while "answered after its deadline" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "answered after its deadline" in caplog.text and "dropped" in caplog.text


def test_a_call_the_full_pool_never_started_is_unavailable_not_unknown(own_pool, settings) -> None:  # type: ignore[no-untyped-def]
    """Queued behind busy threads until its deadline, the call is cancelled: it was
    never sent, so it is a definite failure (nothing can have been charged)."""
    own_pool(1)
    settings.ACQUIRER_TIMEOUT_SECONDS = 0.2
    release, ran = threading.Event(), []
    busy = threading.Thread(target=lambda: acquiring.acquirer_answer(lambda: release.wait(10) and AcquirerResult(Outcome.APPROVED)))
    busy.start()
    time.sleep(0.05)
    result = acquiring.acquirer_answer(lambda: ran.append(1) or AcquirerResult(Outcome.APPROVED))
    release.set()
    busy.join(10)
    assert result.outcome is Outcome.ERROR and result.decline_code == "acquirer_unavailable"
    time.sleep(0.1)
    assert ran == []  # never sent


def test_a_slow_acquirer_holds_only_its_own_pool(own_pool, settings) -> None:  # type: ignore[no-untyped-def]
    """The pool is bounded: a call beyond its size waits for a thread (and for no
    one else's), then runs once one is free."""
    own_pool(2)
    settings.ACQUIRER_TIMEOUT_SECONDS = 10
    release, inside = threading.Event(), threading.Semaphore(0)

    def slow() -> AcquirerResult:
        inside.release()
        release.wait(10)
        return AcquirerResult(Outcome.APPROVED)

    callers = [threading.Thread(target=acquiring.acquirer_run, args=(slow,)) for _ in range(2)]
    for caller in callers:
        caller.start()
    assert inside.acquire(timeout=5) and inside.acquire(timeout=5)
    third: list[AcquirerResult] = []
    waiting = threading.Thread(target=lambda: third.append(acquiring.acquirer_run(lambda: AcquirerResult(Outcome.APPROVED))))
    waiting.start()
    waiting.join(0.3)
    assert third == []  # both threads busy
    release.set()
    waiting.join(10)
    assert third and third[0].approved
    for caller in callers:
        caller.join(10)


@pytest.mark.parametrize(
    ("raised", "outcome", "code"),
    [
        (AcquirerUnavailable("connection refused"), Outcome.ERROR, "acquirer_unavailable"),
        (AcquirerTimeout("read timeout"), Outcome.UNKNOWN, "acquirer_timeout"),
        (AcquirerError("garbled"), Outcome.UNKNOWN, "acquirer_error"),
        (KeyError("a bug"), Outcome.UNKNOWN, "internal_error"),
    ],
)
def test_what_a_connector_failure_means(raised, outcome, code) -> None:  # type: ignore[no-untyped-def]
    def call() -> AcquirerResult:
        raise raised

    result = acquiring.acquirer_answer(call)
    assert result.outcome is outcome and result.decline_code == code
    assert asyncio.run(acquiring.acquirer_answer_async(call)) == result


def test_a_result_of_the_wrong_type_is_a_bug_not_an_answer() -> None:
    assert acquiring.acquirer_answer(lambda: None).outcome is Outcome.UNKNOWN  # type: ignore[arg-type,return-value]


def test_a_celery_time_limit_is_never_taken_for_an_answer() -> None:
    def cut() -> AcquirerResult:
        raise SoftTimeLimitExceeded()

    with pytest.raises(SoftTimeLimitExceeded):
        acquiring.acquirer_answer(cut)


def test_the_resolver_and_refunds_see_a_bug_as_it_is() -> None:
    """``acquirer_run`` (the resolver's, the refund task's) never hides a bug."""
    def bug() -> None:
        raise ZeroDivisionError()

    with pytest.raises(ZeroDivisionError):
        acquiring.acquirer_run(bug)


def test_async_deadline_waits_without_a_thread(settings) -> None:  # type: ignore[no-untyped-def]
    settings.ACQUIRER_TIMEOUT_SECONDS = 0.1
    release = threading.Event()

    async def main() -> tuple[AcquirerResult, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        result = await acquiring.acquirer_answer_async(lambda: release.wait(10) and AcquirerResult(Outcome.APPROVED))
        ticker.cancel()
        return result, ticks

    result, ticks = asyncio.run(main())
    release.set()
    assert result.outcome is Outcome.UNKNOWN and result.decline_code == "acquirer_timeout"
    assert ticks > 0  # the event loop went on while the acquirer was waited for


def test_the_connector_interface_declares_inquiry_and_reversal() -> None:
    for name in ("authorize", "capture", "void", "refund", "inquire", "reverse"):
        assert callable(getattr(base.Acquirer, name))
    assert issubclass(AcquirerTimeout, AcquirerError) and issubclass(AcquirerUnavailable, AcquirerError)
    assert "4242424242424242" not in repr(request(1))  # the card number stays out of reprs (masked at most)


def test_a_connectors_own_builtin_timeout_is_not_taken_for_the_deadline() -> None:
    """TimeoutError is also what a future's wait raises: a connector's own is its
    failure (a bug for the resolver: it must raise AcquirerTimeout), not ours."""
    def own() -> None:
        raise TimeoutError("socket timed out")

    with pytest.raises(TimeoutError, match="socket timed out"):
        acquiring.acquirer_run(own)
    with pytest.raises(TimeoutError, match="socket timed out"):
        asyncio.run(acquiring.acquirer_run_async(own))


def test_an_inquiry_about_an_unseen_transaction_stops_at_the_horizon(sandbox, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Ids grow with time: the scan backwards stops at authorizations far older than
    the one asked about, instead of reading a long-lived ledger to its start."""
    monkeypatch.setattr(Ledger, "_HORIZON", 10)
    sandbox.authorize(request(1))  # beyond the horizon of id 50: never read
    for pk in range(30, 45):
        sandbox.authorize(request(pk))
    reads: list[int] = []
    real_open = open

    def counting_open(path, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        handle = real_open(path, mode, *args, **kwargs)
        real_read = handle.read
        handle.read = lambda size=-1: reads.append(size) or real_read(size)  # type: ignore[method-assign]
        return handle

    monkeypatch.setattr(Ledger, "_CHUNK", 60)
    monkeypatch.setattr("builtins.open", counting_open)
    assert sandbox.inquire(transaction_id=50).state is AcquirerState.NOT_FOUND
    assert sum(reads) < sandbox.ledger.path.stat().st_size  # stopped before the start of the file
    assert sandbox.inquire(transaction_id=35).state is AcquirerState.CAPTURED
