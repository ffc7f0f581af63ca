"""The secure API served as in production (issue 8, item 7): ``gunicorn config.wsgi``
with the production settings and only the environment they require, over real
sockets; its access log masked; a nonce used on one server refused by another
(item 3, across processes); an Idempotency-Key and orderID repeated on another
server replayed and charged once (item 4, across processes); SIGTERM ends it cleanly."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx
import pytest
from django.conf import settings

from clients.secure_api import Answer, SecureApiClient, authorization
from merchants.credentials import api_keys_issue
from merchants.models import AccountCharge
from payments.models import Transaction
from tests.factories import MerchantFactory
from tests.support.threads import run_at_once
from tests.support.workers import database_url_for_workers

from .conftest import card_body, charge_body
from .test_idempotency import raw_post

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """``gunicorn config.wsgi`` in a clean environment: what production needs, nothing more."""

    def __init__(self, tmp_path: Path, *, workers: int = 2) -> None:
        self.port = free_port()
        broker = settings.CELERY_BROKER_URL
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "DJANGO_SECRET_KEY": "a-production-secret-for-this-test",
            # The keys the tests issue are sealed under the tests' master key.
            "PAYMENTS_MASTER_KEY": settings.PAYMENTS_MASTER_KEY,
            "DATABASE_URL": database_url_for_workers(),
            # Production refuses the embedded broker; nothing here needs a worker.
            "CELERY_BROKER_URL": broker if not broker.startswith("filesystem://") else "memory://",
            "GATEWAY_VAR_DIR": str(tmp_path / "var"),
        }
        # The sandbox acquirer's memory (its default place under GATEWAY_VAR_DIR): every
        # authorization this server asked for is a line there.
        self.ledger = tmp_path / "var" / "sandbox-acquirer.ledger"
        self.output: list[str] = []
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(workers)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(90):
            self.stop()
            raise AssertionError("gunicorn did not start:\n" + self.log())
        self.url = f"http://127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if "Booting worker" in line:
                self._ready.set()

    def log(self) -> str:
        return "".join(self.output)

    def wait_for_log(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and text not in self.log():
            time.sleep(0.05)
        assert text in self.log(), self.log()[-3000:]

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        return self.process.returncode


@pytest.fixture
def gunicorn(tmp_path, shipped_defaults) -> Iterator[Gunicorn]:  # type: ignore[no-untyped-def]
    server = Gunicorn(tmp_path)
    yield server
    server.stop()


def test_gunicorn_serves_the_api_with_the_production_settings(gunicorn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    keys = api_keys_issue(merchant=MerchantFactory(currency="EUR", allowed_ips=[]))
    api = SecureApiClient(gunicorn.url, app_id=keys.app_id, app_key=keys.app_key, data_key=keys.data_key)
    try:
        account = api.post("/account", {"name": "Ada"}).data
        card = api.post(f"/account/{account['uuid']}/paymentinfo", card_body(cvv="123")).data
        paid = api.post(f"/billing/{account['uuid']}/transaction", charge_body(card, order="gunicorn-1"))
        assert paid.status == 200 and paid.data["paymentInfo"]["card"]["cardLastNum"] == "4242"
        listed = api.get(f"/billing/{account['uuid']}/transactions", {"pageNo": 1})
        assert listed.data["totalCount"] == 1
        # gunicorn passes the raw URI: an encrypted uuid in the path signs and routes as sent.
        assert api.get(f"/account/{api.envelope(account['uuid'])}").data["uuid"] == account["uuid"]
    finally:
        api.close()
    schema = httpx.get(f"{gunicorn.url}/api/schema/", headers={"Accept": "application/json"}, timeout=30)
    assert schema.status_code == 200 and "/account" in schema.json()["paths"]
    # An esipay path holds a card number: gunicorn's access log masks it, and logs no query strings.
    httpx.get(f"{gunicorn.url}/cardpay/nobody/c1/4242424242424242/12/2030/1.00", timeout=30)
    gunicorn.wait_for_log("/cardpay/****/c1/****/12/2030/1.00")  # "nobody" is no uuid: masked too
    log = gunicorn.log()
    assert '"POST /billing/' in log and " 200 " in log
    assert "4242424242424242" not in log and "data=" not in log
    assert gunicorn.stop() == 0


def test_a_nonce_used_on_one_server_is_refused_by_another(tmp_path, shipped_defaults) -> None:  # type: ignore[no-untyped-def]
    first, second = Gunicorn(tmp_path / "a", workers=1), Gunicorn(tmp_path / "b", workers=1)
    try:
        keys = api_keys_issue(merchant=MerchantFactory(allowed_ips=[]))
        # One signed request, sent to both servers with the same Host (as behind one load balancer).
        header = authorization(app_id=keys.app_id, app_key=keys.app_key, method="POST", uri="http://127.0.0.1/account")
        answers = [
            httpx.post(f"{server.url}/account", headers={"Host": "127.0.0.1", "Authorization": header}, timeout=30)
            for server in (first, second)
        ]
        assert answers[0].status_code == 200, answers[0].text
        refused = SecureApiClient("http://x", app_id=keys.app_id, app_key=keys.app_key,
                                  data_key=keys.data_key).read(answers[1])
        assert refused.status == 401 and refused.code == 998 and "nonce already used" in refused.error["detail"]
    finally:
        assert first.stop() == 0 and second.stop() == 0


def sandbox_authorizations(*servers: Gunicorn) -> list[str]:
    """The transaction ids the servers' sandbox acquirer authorized, one per authorization."""
    ids: list[str] = []
    for server in servers:
        if server.ledger.exists():
            ids += [line.split(" ")[1] for line in server.ledger.read_text().splitlines() if line.startswith("A ")]
    return ids


def clients_of(keys, *servers: Gunicorn) -> list[SecureApiClient]:  # type: ignore[no-untyped-def]
    """One client per server, of one merchant: each request signed afresh (a new nonce)."""
    return [SecureApiClient(server.url, app_id=keys.app_id, app_key=keys.app_key, data_key=keys.data_key,
                            timeout=60) for server in servers]


@dataclass
class TwoServers:
    """Two gunicorn servers on one database (as behind one load balancer), a client
    of each with the same merchant's keys, and an account with a card on file."""

    first: Gunicorn
    second: Gunicorn
    a: SecureApiClient
    b: SecureApiClient
    card: dict[str, object]
    path: str  # the account's charges


@pytest.fixture
def two_servers(tmp_path, shipped_defaults) -> Iterator[TwoServers]:  # type: ignore[no-untyped-def]
    first, second = Gunicorn(tmp_path / "a", workers=1), Gunicorn(tmp_path / "b", workers=1)
    a, b = clients_of(api_keys_issue(merchant=MerchantFactory(currency="EUR", allowed_ips=[])), first, second)
    try:
        account = a.post("/account", {"name": "Ada"}).data
        card = a.post(f"/account/{account['uuid']}/paymentinfo", card_body()).data
        yield TwoServers(first, second, a, b, card, f"/billing/{account['uuid']}/transaction")
    finally:
        for client in (a, b):
            client.close()
        assert first.stop() == 0 and second.stop() == 0


def test_an_idempotency_key_repeated_on_another_server_replays_the_first_answer_and_charges_once(
    two_servers: TwoServers,
) -> None:
    """The records are in the database, not in a process: server B refuses the key
    of a charge answered by server A with another body, and a repeat on B (same
    Idempotency-Key and orderID, signed again: a new nonce) gets A's answer; the
    acquirer is asked once. A per-process store would have B charge again, or
    answer afresh (the core's own orderID check then spares the card, not the answer)."""
    first, second, a, b, card, path = (two_servers.first, two_servers.second, two_servers.a, two_servers.b,
                                       two_servers.card, two_servers.path)
    paid, paid_bytes = raw_post(a, path, charge_body(card, order="ord-two-servers"), key="charge-two-servers")
    assert paid.status == 200, paid.body
    asked = sandbox_authorizations(first, second)
    # First on B, before B has answered anything under the key: it knows it only from A's record.
    other = b.post(path, charge_body(card, order="ord-two-servers", amount=11),
                   idempotency_key="charge-two-servers")
    assert other.status == 400 and other.code == 997 and other.error["detail"].startswith("Idempotency-Key: ")
    again, again_bytes = raw_post(b, path, charge_body(card, order="ord-two-servers"), key="charge-two-servers")
    assert again_bytes == paid_bytes and again.replayed and not paid.replayed
    # The orderID alone is a key of its own, stored by A with the same answer.
    by_order, by_order_bytes = raw_post(b, path, charge_body(card, order="ord-two-servers"))
    assert by_order_bytes == paid_bytes and by_order.replayed
    charged = paid.data["transactionID"]
    assert Transaction.objects.filter(merchant_reference="ord-two-servers").count() == 1
    assert AccountCharge.objects.filter(order_id="ord-two-servers").count() == 1
    # Neither repeat reached the acquirer, on either server.
    assert sandbox_authorizations(first, second) == asked and asked.count(charged) == 1


def test_an_idempotency_key_sent_to_two_servers_at_once_charges_once(two_servers: TwoServers) -> None:
    """The same charge sent to both servers at the same instant, a few times (each
    time a new key and orderID): one of them claims the key (an INSERT in the
    shared database), the other gets 409 while it runs or its answer once it is
    stored, never a second charge. Both outcomes are right (which one comes is
    timing), so the race cannot flake; both are seen, on PostgreSQL and on SQLite
    (whose writers in other processes wait for the lock, never fail)."""
    first, second, a, b, card, path = (two_servers.first, two_servers.second, two_servers.a, two_servers.b,
                                       two_servers.card, two_servers.path)
    asked = sandbox_authorizations(first, second)
    for round_ in range(5):
        order, key = f"ord-at-once-{round_}", f"charge-at-once-{round_}"
        results = run_at_once([lambda c=c, o=order, k=key: raw_post(c, path, charge_body(card, order=o), key=k)
                               for c in (a, b)])
        assert not [r for r in results if isinstance(r, BaseException)], results
        # The first answer first: exactly one; the other is its replay, or "still running".
        (paid, paid_bytes), (other, other_bytes) = sorted(
            cast(list[tuple[Answer, bytes]], results), key=lambda pair: pair[0].replayed or pair[0].status != 200
        )
        assert paid.status == 200 and not paid.replayed, paid.body
        if other.status == 200:
            assert other_bytes == paid_bytes and other.replayed and not paid.replayed
        else:
            assert other.status == 409 and other.code == 997, other.body
        assert Transaction.objects.filter(merchant_reference=order).count() == 1
        assert AccountCharge.objects.filter(order_id=order).count() == 1
        authorized = sandbox_authorizations(first, second)
        assert len(authorized) == len(asked) + 1 and authorized.count(paid.data["transactionID"]) == 1
        asked = authorized
