"""An acquirer reached over HTTP, for the worker tests: the connector the worker
process loads (PAYMENTS_ACQUIRER=tests.support.http_acquirer.HttpAcquirer) and
the local bank server it talks to, which refunds once per idempotency key."""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from decimal import Decimal

import httpx

from payments.acquirers.base import AcquirerResult, Outcome
from payments.acquirers.sandbox import SandboxAcquirer
from tests.support.http_servers import MerchantServer, Received


class HttpAcquirer(SandboxAcquirer):
    """The sandbox, except refunds go to ``ACQUIRER_TEST_URL`` with the refund id
    as the idempotency key (what a real acquirer's API asks for)."""

    def refund(self, *, reference: str, amount: Decimal, currency: str, refund_id: int) -> AcquirerResult:
        response = httpx.post(
            os.environ["ACQUIRER_TEST_URL"] + "refund",
            json={"reference": reference, "amount": str(amount), "currency": currency},
            headers={"Idempotency-Key": f"refund-{refund_id}"},
            timeout=30,
        )
        if response.status_code != 200:
            return AcquirerResult(Outcome.ERROR, reason=f"acquirer answered {response.status_code}")
        return AcquirerResult(Outcome.APPROVED, reference=response.json()["reference"])


@dataclass
class BankServer:
    """Refunds money once per Idempotency-Key; a repeat gets the first answer.
    ``hold_first`` makes the first call wait until ``release`` is set."""

    hold_first: bool = False
    calls: list[str] = field(default_factory=list)
    refunded: dict[str, Decimal] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)
    first_call: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _http: MerchantServer | None = None

    @property
    def url(self) -> str:
        return self._http.url if self._http else ""

    def _answer(self, received: Received) -> tuple[int, bytes]:
        key = received.headers["idempotency-key"]
        with self._lock:
            self.calls.append(key)
            first = len(self.calls) == 1
        if first:
            self.first_call.set()
            if self.hold_first:
                self.release.wait(60)
        with self._lock:
            self.refunded.setdefault(key, Decimal(json.loads(received.body)["amount"]))
        return 200, json.dumps({"reference": f"bank-{key}"}).encode()

    def start(self) -> BankServer:
        self._http = MerchantServer(answer=self._answer).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._http:
            self._http.stop()
