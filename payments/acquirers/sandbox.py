"""The sandbox acquirer: approves what the gateway's rules let through,
except the test cards (as Stripe's; listed in docs/terminal.md and docs/esipay.md).

Like a real acquirer it remembers what it did, so that an answer that was
lost can be asked about (``inquire``) and undone (``reverse``) by another
process: the listener that sent an authorization may be dead when a Celery
worker asks. Its memory is a ledger shared by every process of the machine,
an append-only file (``SANDBOX_ACQUIRER_LEDGER``): one ``write`` of one line
per operation, atomic with ``O_APPEND``, no lock, no fsync (a sandbox may
forget on a power cut; it must not cost the hot path a commit). An inquiry
reads the file backwards from its end, where recent transactions are.
"""
from __future__ import annotations

import os
import secrets
import threading
import time
from decimal import Decimal
from pathlib import Path

from django.conf import settings

from .base import (
    Acquirer,
    AcquirerResult,
    AcquirerState,
    AcquirerTimeout,
    AuthorizationRequest,
    Inquiry,
    Outcome,
)

# card number -> (outcome, decline code, reason)
TEST_CARDS: dict[str, tuple[Outcome, str, str]] = {
    "4000000000000002": (Outcome.DECLINED, "card_declined", "card declined"),
    "4000000000009995": (Outcome.DECLINED, "insufficient_funds", "insufficient funds"),
    "4000000000000069": (Outcome.DECLINED, "expired_card", "expired card"),
    "4000000000000119": (Outcome.ERROR, "processing_error", "acquirer processing error"),
}
HAPPY_CARDS = ("4242424242424242", "5555555555554444")
# Approved by the sandbox, but its answer never comes back in time (as "408
# Request Timeout"): the authorization is in the ledger, the caller hears
# nothing until its deadline has passed. The unknown-outcome path, end to end.
TIMEOUT_CARD = "4000000000000408"


def _reference() -> str:
    return "sbx_" + secrets.token_hex(12)


class Ledger:
    """The sandbox's memory: ``<kind> <transaction id> <fields...>\\n`` lines.

    Kinds: ``A`` authorization (outcome, capture flag, reference, authorization
    code, decline code, amount), ``C`` capture (amount), ``V`` void, ``R``
    reversal. The newest authorization of a transaction id counts (a database
    reset reuses ids; the sandbox then answers for the latest one).
    """

    _CHUNK = 64 * 1024
    # Transaction ids grow with time, and each authorization is written within
    # moments of its id being taken: once the scan backwards meets the
    # authorization of an id this much lower, the one asked about is not
    # further back. An inquiry about a transaction the sandbox never saw then
    # reads ~5 MB, not the whole file.
    _HORIZON = 100_000

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _descriptor(self) -> int:
        # One descriptor per process: a forked listener worker opens its own.
        if self._fd is None or self._pid != os.getpid():
            with self._lock:
                if self._fd is None or self._pid != os.getpid():
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                    self._pid = os.getpid()
        return self._fd

    def append(self, kind: str, transaction_id: int, *fields: object) -> None:
        line = " ".join([kind, str(int(transaction_id)), *(str(f) or "-" for f in fields)]) + "\n"
        os.write(self._descriptor(), line.encode("ascii"))

    def records(self, transaction_id: int) -> list[list[str]]:
        """The records of one transaction, oldest first, from its newest authorization on."""
        key = str(int(transaction_id))
        floor = int(transaction_id) - self._HORIZON
        found: list[list[str]] = []
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            return []
        with handle:
            end = handle.seek(0, os.SEEK_END)
            tail = b""
            newest = True
            while end > 0:
                start = max(0, end - self._CHUNK)
                handle.seek(start)
                block = handle.read(end - start) + tail
                end = start
                lines = block.split(b"\n")
                if newest:
                    lines.pop()  # b"" after the last newline, or a line still being written
                    newest = False
                # The first piece may be the end of a line that starts in the previous block.
                tail = lines.pop(0) if start > 0 else b""
                for raw in reversed(lines):
                    fields = raw.decode("ascii", "replace").split(" ")
                    if len(fields) < 2:
                        continue
                    if fields[1] != key:
                        if fields[0] == "A" and fields[1].isdigit() and int(fields[1]) < floor:
                            return []  # far older than the one asked about: it is not in the ledger
                        continue
                    found.append(fields)
                    if fields[0] == "A":
                        return list(reversed(found))
            return []  # no authorization: the sandbox never received it


class SandboxAcquirer(Acquirer):
    def __init__(self) -> None:
        self.ledger = Ledger(Path(settings.SANDBOX_ACQUIRER_LEDGER))

    def authorize(self, request: AuthorizationRequest) -> AcquirerResult:
        reference = _reference()
        special = TEST_CARDS.get(request.pan)
        if special:
            outcome, code, reason = special
            result = AcquirerResult(outcome, reference=reference, decline_code=code, reason=reason)
        else:
            result = AcquirerResult(
                Outcome.APPROVED, reference=reference, authorization_code=f"{secrets.randbelow(10**6):06d}"
            )
        self.ledger.append(
            "A", request.transaction_id, result.outcome.value, int(request.capture), result.reference,
            result.authorization_code, result.decline_code, request.amount,
        )
        if request.pan == TIMEOUT_CARD:
            # Processed, but the answer is lost: wait past any caller's deadline.
            time.sleep(settings.ACQUIRER_TIMEOUT_SECONDS + 1)
            raise AcquirerTimeout("sandbox: no answer in time (test card 4000000000000408)")
        return result

    def capture(self, *, reference: str, amount: Decimal, currency: str, transaction_id: int) -> AcquirerResult:
        self.ledger.append("C", transaction_id, amount)
        return AcquirerResult(Outcome.APPROVED, reference=reference)

    def void(self, *, reference: str, transaction_id: int) -> AcquirerResult:
        self.ledger.append("V", transaction_id)
        return AcquirerResult(Outcome.APPROVED, reference=reference)

    def refund(self, *, reference: str, amount: Decimal, currency: str, refund_id: int) -> AcquirerResult:
        return AcquirerResult(Outcome.APPROVED, reference=_reference())

    def reverse(self, *, transaction_id: int) -> AcquirerResult:
        self.ledger.append("R", transaction_id)
        return AcquirerResult(Outcome.APPROVED)

    def inquire(self, *, transaction_id: int) -> Inquiry:
        records = self.ledger.records(transaction_id)
        if not records:
            return Inquiry(AcquirerState.NOT_FOUND, reason="no such transaction")
        _, _, outcome, capture, reference, code, decline, amount = (records[0] + ["-"] * 8)[:8]
        reference, code, decline = (value if value != "-" else "" for value in (reference, code, decline))
        if outcome == Outcome.DECLINED.value:
            return Inquiry(AcquirerState.DECLINED, reference=reference, decline_code=decline,
                           reason=decline.replace("_", " ") or "declined")
        if outcome != Outcome.APPROVED.value:
            return Inquiry(AcquirerState.ERROR, reference=reference, decline_code=decline,
                           reason=decline.replace("_", " ") or "acquirer error")
        state = AcquirerState.CAPTURED if capture == "1" else AcquirerState.AUTHORIZED
        captured = Decimal(amount) if state is AcquirerState.CAPTURED else Decimal("0")
        for record in records[1:]:
            if record[0] == "C":
                state, captured = AcquirerState.CAPTURED, Decimal(record[2])
            elif record[0] in ("V", "R"):
                state, captured = AcquirerState.VOIDED, Decimal("0")
        return Inquiry(state, reference=reference, authorization_code=code, captured_amount=captured)
