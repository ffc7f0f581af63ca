"""Stopping the listener: in-flight requests finish, idle connections close, new ones are refused.

In-process (TerminalListener.stop) and as the real command
(``manage.py runterminalserver --port 0``, SIGTERM → exit 0), with one
process and with ``--workers 2``.
"""
from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from .conftest import HAPPY_VISA, LineClient, connect, wait_closed

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = "tests.terminals.acquirers.SlowAcquirer"
ROOT = Path(__file__).resolve().parents[2]


def card(token: str) -> dict[str, Any]:
    return {"token": token, "card_type": "VISA", "card_number": HAPPY_VISA, "pin": "4321", "amount": "500.000000"}


def test_stop_finishes_in_flight_requests_closes_idle_ones_and_refuses_new(start_listener, terminal, settings, monkeypatch) -> None:
    running = start_listener(drain_seconds=10)
    idle, busy = LineClient(running.port), LineClient(running.port)
    for client in (idle, busy):
        assert client.auth(terminal)["authenticated"] is True
    token = busy.token()
    monkeypatch.setenv("SLOW_ACQUIRER_SECONDS", "1.0")
    settings.PAYMENTS_ACQUIRER = SLOW
    busy.send("/payment/card", card(token), id="in-flight")
    time.sleep(0.3)  # the payment is now with the (slow) acquirer
    stopping = running.stop_async()
    assert idle.is_closed(timeout=0.7)  # idle: closed at once, not after the drain
    with pytest.raises(ConnectionRefusedError):
        for _ in range(50):  # the listening socket closes as stop() begins
            connect(running.port).close()
            time.sleep(0.01)
    answer = busy.read()
    assert answer["id"] == "in-flight" and isinstance(answer["transaction"], int)
    assert busy.is_closed()
    stopping.result(10)
    idle.close()
    busy.close()


def test_stop_answers_an_in_flight_http_request_with_connection_close(start_listener, terminal, settings, monkeypatch) -> None:
    from .conftest import HttpClient

    running = start_listener(drain_seconds=10)
    client = HttpClient(running.port)
    auth = (terminal.terminal_id, terminal.secret)
    token = client.get("/token?type=CARD", auth=auth).json()["token"]
    monkeypatch.setenv("SLOW_ACQUIRER_SECONDS", "1.0")
    settings.PAYMENTS_ACQUIRER = SLOW
    result: dict[str, Any] = {}
    query = f"/payment/card?token={token}&card_type=VISA&card_number={HAPPY_VISA}&pin=4321&amount=5"
    worker = threading.Thread(target=lambda: result.setdefault("r", client.get(query, auth=auth)))
    worker.start()
    time.sleep(0.3)
    stopping = running.stop_async()
    worker.join(10)
    response = result["r"]
    assert response.status == 200 and "transaction" in response.json()
    assert response.headers.get("connection") == "close"
    assert wait_closed(client.sock) == b""
    stopping.result(10)
    client.close()


# --- The management command -------------------------------------------------------------------


def database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{user}{password}@{host}{port}/{db['NAME']}"


class Server:
    """``manage.py runterminalserver --port 0`` against the test database."""

    def __init__(self, *args: str, acquirer: str | None = None) -> None:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": database_url(),
            "TERMINAL_DRAIN_SECONDS": "10",
            "SLOW_ACQUIRER_SECONDS": "1.0",
        }
        if acquirer:
            env["PAYMENTS_ACQUIRER"] = acquirer
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runterminalserver", "--host", "127.0.0.1", "--port", "0", *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.stderr: list[str] = []
        threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True).start()
        self.announce = self._wait_for("listening on ")
        self.port = int(self.announce.split("listening on ", 1)[1].split()[0].rsplit(":", 1)[1])

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def _wait_for(self, text: str, timeout: float = 30) -> str:
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
        pytest.fail(f"no {text!r} line; stderr: {''.join(self.stderr)[-2000:]}")

    def terminate(self, timeout: float = 20) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def servers():
    started: list[Server] = []

    def start(*args: str, **kwargs: Any) -> Server:
        server = Server(*args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def test_command_announces_serves_and_drains_on_sigterm(servers, terminal) -> None:
    server = servers(acquirer=SLOW)
    assert server.announce.startswith("listening on 127.0.0.1:")
    idle, busy = LineClient(server.port), LineClient(server.port)
    for client in (idle, busy):
        assert client.auth(terminal)["authenticated"] is True
    token = busy.token()
    busy.send("/payment/card", card(token), id=1)
    time.sleep(0.3)
    server.process.send_signal(signal.SIGTERM)
    assert idle.is_closed(timeout=5)
    answer = busy.read()
    assert answer["id"] == 1 and isinstance(answer["transaction"], int), answer
    assert server.process.wait(20) == 0, "".join(server.stderr)
    with pytest.raises(ConnectionRefusedError):
        connect(server.port)
    idle.close()
    busy.close()


def test_command_with_two_workers_starts_serves_and_exits_0(servers, terminal) -> None:
    server = servers("--workers", "2")
    assert "(2 workers)" in server.announce
    for _ in range(4):  # connections spread over the workers: every one serves
        client = LineClient(server.port)
        assert client.auth(terminal)["authenticated"] is True
        assert "token" in client.request("/token", {"type": "CARD"})
        client.close()
    assert server.terminate() == 0, "".join(server.stderr)
    with pytest.raises(ConnectionRefusedError):
        connect(server.port)


def test_command_exits_0_on_sigterm_with_nobody_connected(servers, transactional_db) -> None:
    server = servers()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.close()
    assert server.terminate() == 0, "".join(server.stderr)


def worker_pids(server: Server) -> list[int]:
    path = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    try:
        return sorted(int(pid) for pid in path.read_text().split())
    except OSError:
        return []


def listening_sockets(port: int) -> int:
    """LISTEN sockets on ``port`` (Linux /proc/net/tcp): one per worker (the parent's are only bound)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for row in f:
                    fields = row.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                        count += 1
        except OSError:
            continue
    return count


linux_only = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads worker pids from /proc (Linux)")


def test_two_workers_drain_on_sigterm_finishing_the_payment_in_flight(servers, terminal) -> None:
    server = servers("--workers", "2", acquirer=SLOW)
    idle = LineClient(server.port)
    busy = LineClient(server.port)
    for client in (idle, busy):
        assert client.auth(terminal)["authenticated"] is True
    token = busy.token()
    busy.send("/payment/card", card(token), id="in-flight")
    time.sleep(0.3)  # with the (slow) acquirer now
    server.process.send_signal(signal.SIGTERM)
    assert idle.is_closed(timeout=5)  # idle: closed at once, whichever worker holds it
    answer = busy.read()
    assert answer["id"] == "in-flight" and isinstance(answer["transaction"], int), answer
    assert busy.is_closed()
    assert server.process.wait(30) == 0, "".join(server.stderr)
    log = "".join(server.stderr)
    assert log.count("terminal listener stopped: accepted=") == 2  # each worker logs its counters
    with pytest.raises(ConnectionRefusedError):
        connect(server.port)
    idle.close()
    busy.close()


@linux_only
def test_a_killed_worker_is_restarted_and_payments_go_on(servers, terminal) -> None:
    server = servers("--workers", "2")
    deadline = time.monotonic() + 20
    while len(worker_pids(server)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    before = worker_pids(server)
    assert listening_sockets(server.port) == 2
    os.kill(before[0], signal.SIGKILL)
    while not (len(worker_pids(server)) == 2 and before[0] not in worker_pids(server)
               and listening_sockets(server.port) == 2):  # the new worker listens on the same port
        assert time.monotonic() < deadline + 20, "the dead worker was not replaced"
        time.sleep(0.05)
    for _ in range(8):  # whichever worker the kernel picks, it serves
        client = LineClient(server.port)
        assert client.auth(terminal)["authenticated"] is True
        assert "token" in client.request("/token", {"type": "CARD"})
        client.close()
    assert "restarting it" in "".join(server.stderr)
    assert server.terminate(timeout=30) == 0, "".join(server.stderr)
