"""An acquirer reached over HTTP, for the worker tests: the connector the worker
process loads (PAYMENTS_ACQUIRER=tests.support.http_acquirer.HttpAcquirer) and
the local bank server it talks to, which refunds once per idempotency key."""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from payments.acquirers.base import AcquirerResult, Outcome
from payments.acquirers.sandbox import SandboxAcquirer


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
    url: str = ""

    def start(self) -> BankServer:
        bank = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                key = self.headers["Idempotency-Key"]
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    bank.calls.append(key)
                    first = len(bank.calls) == 1
                if first:
                    bank.first_call.set()
                    if bank.hold_first:
                        bank.release.wait(60)
                with lock:
                    bank.refunded.setdefault(key, Decimal(body["amount"]))
                payload = json.dumps({"reference": f"bank-{key}"}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
