"""The real command: ``manage.py runsetgateway`` against the test database.

It announces both ports, serves, and on SIGTERM sends close, lets answers
out, waits for close-reply and exits 0 (one process, and two sharing the
ports). And merchants reconnect: the gateway is killed while 16 connections
have 8 requests each outstanding, started again, and the clients resend
with the same ids: nothing is authorized twice, every request gets its answer
(the payments the killed process left with the acquirer are settled by the
core's resolver in real Celery beat and worker processes, as in production).
"""
from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from payments.models import Transaction
from payments.states import TransactionStatus
from setgateway import framing, payload
from setgateway.client import SetClient
from setgateway.payload import AuthRes, ErrorMsg, InqReq
from tests.support.workers import RESOLVER_ENV, wait_until
from tests.terminals.test_listener_lifecycle import database_url

from .conftest import EXPIRY, HAPPY_VISA, Raw, SetMerchant

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
SLOW = "tests.setgateway.acquirers.SlowForSomeAmounts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gateway:
    """``manage.py runsetgateway`` in a child process; stdout lines collected."""

    def __init__(self, *args: str, port: int = 0, diag_port: int = 0, **env: str) -> None:
        environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": database_url(),
                       **env}
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runsetgateway", "--host", "127.0.0.1", "--port", str(port),
             "--diag-port", str(diag_port), *args],
            cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.process.stdout], daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True).start()
        self.announce = self._wait_for("listening on ")
        addresses = self.announce.split("listening on ", 1)[1]
        self.port = int(addresses.split()[0].rsplit(":", 1)[1])
        self.diag_port = int(addresses.split("diagnostic log on ", 1)[1].split(")")[0].rsplit(":", 1)[1])

    def _wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if text in line:
                return line
        self.kill()
        pytest.fail(f"no {text!r} line; stderr: {''.join(self.stderr)[-3000:]}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def gateways():  # type: ignore[no-untyped-def]
    started: list[Gateway] = []

    def start(*args: str, **kwargs: Any) -> Gateway:
        gateway = Gateway(*args, **kwargs)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.kill()


@pytest.fixture
def shop(rules) -> SetMerchant:  # type: ignore[no-untyped-def]
    return SetMerchant(name="Process Shop", allowed_ips=["127.0.0.1"])


def test_the_command_serves_both_ports_and_closes_gracefully_on_sigterm(gateways, shop) -> None:  # type: ignore[no-untyped-def]
    gateway = gateways("--t120", "20", PAYMENTS_ACQUIRER=SLOW, SLOW_ACQUIRER_SECONDS="1.0")
    assert gateway.announce.startswith("listening on 127.0.0.1:")
    connection = Raw(gateway.port)
    connection.authenticate(shop)
    connection.request(payload.AuthReq("sigterm", HAPPY_VISA, EXPIRY, payload.CurrencyAmount(978, 1099, -2)), "p")
    time.sleep(0.3)  # at the (slow) acquirer
    gateway.process.send_signal(signal.SIGTERM)
    close = connection.event()
    assert close.control == "close"
    tag, answer = connection.answer()  # the outstanding answer goes out after our close
    assert tag == "p" and isinstance(answer, AuthRes) and answer.status == "approved"
    connection.send(framing.control_message("close-reply", close.body))
    assert connection.closed() in (b"", b"\r\n")
    assert gateway.process.wait(30) == 0, "".join(gateway.stderr)[-3000:]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", gateway.port), timeout=5)


def test_the_command_takes_its_timers_as_options(gateways, shop) -> None:  # type: ignore[no-untyped-def]
    gateway = gateways("--t30", "0.5", "--max-outstanding", "1")
    silent = Raw(gateway.port)
    silent.line()
    assert silent.closed(timeout=10) == b""  # t30 = 0.5 s
    diag = Raw(gateway.diag_port)
    diag.send(framing.payment_message(b"\x30\x00", msg_tag="d"))
    assert diag.closed() == b""
    gateway.process.send_signal(signal.SIGTERM)
    assert gateway.process.wait(30) == 0, "".join(gateway.stderr)[-3000:]


def test_two_workers_share_the_ports(gateways, shop) -> None:  # type: ignore[no-untyped-def]
    gateway = gateways("--workers", "2")
    assert "(2 workers)" in gateway.announce
    for n in range(4):
        connection = Raw(gateway.port)
        connection.authenticate(shop)
        connection.request(InqReq(f"none-{n}"), str(n))
        assert connection.answer()[1].code == payload.UNKNOWN_TRANS_ID
        connection.send(framing.control_message("close", b"done"))
        assert connection.event().control == "close-reply"
        connection.close()
    gateway.process.send_signal(signal.SIGTERM)
    assert gateway.process.wait(30) == 0, "".join(gateway.stderr)[-3000:]


# The resolver's log line for each lost answer it settled (payments/services/reconciliation.py).
SETTLED = re.compile(r"transaction (\d+): lost \w+ settled by inquiry \(acquirer: \w+\) -> (\w+)")


def test_killed_with_requests_outstanding_restarted_and_every_request_answered_once(  # type: ignore[no-untyped-def]
    gateways, shop, celery_processes, own_sandbox_ledger
) -> None:
    port, diag_port = free_port(), free_port()
    # One environment for every process: the gateways and the resolver's Celery worker ask the
    # same (slow) acquirer, whose ledger is this test's own file (own_sandbox_ledger: through
    # SANDBOX_ACQUIRER_LEDGER in the environment): an inquiry finds what the killed process sent,
    # and nothing an earlier test wrote under a reused transaction id. The acquirer deadline (2 s) is shorter than the resolver's wait
    # (3 s), so a request still at the acquirer is never overtaken.
    env = {"PAYMENTS_ACQUIRER": SLOW, "SLOW_ACQUIRER_SECONDS": "0.3", **RESOLVER_ENV,
           # A request of the killed process holds its ids for 2 s; repeats then take it over.
           "SET_REQUEST_LEASE_SECONDS": "2", "SET_REPEAT_WAIT_SECONDS": "3"}
    ledger = own_sandbox_ledger
    ledger_start = 0  # the ledger is this test's: everything in it is this test's
    worker = celery_processes("worker", env=env)  # on the test database and broker (tests/support/workers.py)
    celery_processes("beat", env=env)
    first = gateways(port=port, diag_port=diag_port, **env)
    connections, per_connection = 16, 8
    resends: list[int] = [0]
    left_processing: set[int] = set()

    def processing() -> set[int]:
        from django.db import connection

        try:
            return set(Transaction.objects.filter(status=TransactionStatus.PROCESSING).values_list("pk", flat=True))
        finally:
            connection.close()  # this thread's own connection

    async def merchants() -> dict[str, payload.Response]:
        clients = [SetClient("127.0.0.1", port, transport_id=shop.transport_id, secret=shop.secret, timeout=90)
                   for _ in range(connections)]
        await asyncio.gather(*(client.connect() for client in clients))

        async def until_answered(client: SetClient, trans_id: str, amount: Decimal) -> payload.Response:
            give_up = time.monotonic() + 60  # settled within seconds of the kill when the worker runs
            while True:  # a merchant's loop: "in progress" is asked again later, with the same ids
                answer = await client.authorize(trans_id, pan=HAPPY_VISA, expiry=EXPIRY, amount=amount, capture=True)
                if not (isinstance(answer, ErrorMsg) and answer.code == payload.INTERNAL):
                    return answer
                if time.monotonic() > give_up:
                    raise AssertionError(f"{trans_id} still unanswered ({answer.reason}); the worker:\n{worker.log()}")
                resends[0] += 1
                # Killed while the acquirer was asked: the core's resolver (beat and worker)
                # settles it; until then the answer is "in progress".
                await asyncio.sleep(1)

        jobs = {
            f"c{c}-r{r}": asyncio.ensure_future(until_answered(
                clients[c], f"c{c}-r{r}", Decimal("5.99") if r % 2 else Decimal(f"{r + 1}.00")))
            for c in range(connections) for r in range(per_connection)
        }
        # Kill the gateway once part of the requests is answered and the rest is outstanding.
        while sum(job.done() for job in jobs.values()) < 10:
            await asyncio.sleep(0.01)
        answered_before = sum(job.done() for job in jobs.values())
        first.process.kill()
        first.process.wait(10)
        assert answered_before < len(jobs)
        # Left with the acquirer by the dead process (none settled yet: they are younger than 3 s).
        left_processing.update(await asyncio.to_thread(processing))
        await asyncio.to_thread(gateways, port=port, diag_port=diag_port, **env)  # the same ports
        answers = dict(zip(jobs, await asyncio.gather(*jobs.values())))
        assert all(client.connections >= 2 for client in clients)  # every merchant reconnected
        await asyncio.gather(*(client.close() for client in clients))
        return answers

    answers = asyncio.run(merchants())
    assert len(answers) == connections * per_connection
    assert all(isinstance(a, AuthRes) for a in answers.values()), answers
    stored = {ref: (pk, status, code) for ref, pk, status, code in
              Transaction.objects.values_list("merchant_reference", "pk", "status", "failure_code")}
    assert len(stored) == len(answers) == Transaction.objects.count()  # nothing authorized twice
    for ref, answer in answers.items():
        pk, status, code = stored[ref]
        assert answer.gateway_trans_id == str(pk)
        # Approved and captured; or, killed at the acquirer, settled by the resolver's inquiry: reversed
        # (answered failed) or never received (declined). Never charged without the merchant being told.
        assert (answer.status, status) in (("approved", "captured"), ("failed", "voided"),
                                           ("declined", "declined")), (ref, answer, status)
        assert status == "captured" or code
    assert sum(a.status == "approved" for a in answers.values()) >= len(answers) - 16
    # Settled by the resolver in the Celery worker (nothing in this process runs it): every
    # payment not captured, each one the worker's log names, with the status it recorded;
    # among them all that the killed process left with the acquirer. (How many were left
    # depends on where the kill lands: none, if no request was at the acquirer just then.)
    resolved = {pk: status for pk, status, _ in stored.values() if status != "captured"}
    assert left_processing <= set(resolved), (left_processing, resolved)

    def settled() -> dict[int, str]:
        return {int(pk): status for pk, status in SETTLED.findall("".join(worker.output))}

    # Beat's schedule reached the worker on this run's queue (every second), whatever the kill left.
    worker.wait_for_output("Task payments.tasks.resolve_unknown_outcomes[")
    wait_until(lambda: set(settled()) >= set(resolved), timeout=30,
               message=f"the worker did not log settling {sorted(resolved)}:\n{worker.log()}")
    assert settled() == resolved, worker.log()
    # And at the acquirer, through the ledger the processes share: the worker reversed each one;
    # one the killed process left is voided exactly when that process's authorization is there.
    # (Not for an id that earlier tests of this run wrote to the ledger too: SQLite reuses the
    # ids of a rolled-back test, and the sandbox then answers from the older line.)
    text = ledger.read_bytes()

    def kinds(part: bytes, pk: int) -> list[str]:
        return [line.split(" ")[0] for line in part.decode().splitlines() if line.split(" ")[1:2] == [str(pk)]]

    for pk, status in resolved.items():
        assert "R" in kinds(text[ledger_start:], pk), (pk, status, kinds(text, pk))
        if pk in left_processing and not kinds(text[:ledger_start], pk):
            assert ("A" in kinds(text[ledger_start:], pk)) == (status == "voided"), (pk, status, kinds(text, pk))
