"""Socket-level fixtures for the terminal listener.

The listener runs for real, bound to 127.0.0.1 on port 0, in an event loop
of its own thread; tests talk to it through plain sockets. Its database
threads see only committed rows, hence ``django_db(transaction=True)``
(which also flushes the data migrations' default bans and limits: tests
that need them create them, see ``rules``).
"""
from __future__ import annotations

import asyncio
import base64
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import h11
import pytest
import simplejson
from django.conf import settings

from listeners.supervisor import new_event_loop
from payments import services
from terminals.server import TerminalConfig, TerminalListener
from tests.factories import CardLimitFactory, MerchantFactory, TerminalFactory

# Short timeouts: every wait in these tests is bounded.
IO_TIMEOUT = 5.0

HAPPY_VISA = "4242424242424242"
HAPPY_MASTER = "5555555555554444"


def loads(data: bytes | str) -> Any:
    """JSON with exact decimals, as a terminal that cares about cents reads it."""
    return simplejson.loads(data, use_decimal=True)


class RunningListener:
    """A TerminalListener serving on 127.0.0.1:<free port> from a background thread."""

    def __init__(self, config: TerminalConfig) -> None:
        self.loop = new_event_loop()  # uvloop, as in production
        self.thread = threading.Thread(target=self.loop.run_forever, name="listener-loop", daemon=True)
        self.thread.start()
        self.listener = TerminalListener(config)
        self.call(self.listener.start(host="127.0.0.1", port=0))
        self.port = self.listener.port
        self.stopped = False

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop_async(self) -> Any:
        """Start stop() and return its concurrent future (for drain tests)."""
        self.stopped = True
        return asyncio.run_coroutine_threadsafe(self.listener.stop(), self.loop)

    def close(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.call(self.listener.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def counters(self) -> Any:
        return self.listener.counters


# The listener's database paths (docs/listeners.md): every test of a running
# listener runs on each, so this directory is the conformance suite of the
# two. The async path is PostgreSQL's; on SQLite only the threads exist.
DATABASE_PATHS = (
    ["threads", "async"] if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" else ["threads"]
)


@pytest.fixture(params=DATABASE_PATHS)
def database_path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def start_listener(database_path: str) -> Iterator[Callable[..., RunningListener]]:
    """Factory: ``start_listener(idle_timeout=0.5, ...)`` → a running listener, stopped at teardown."""
    running: list[RunningListener] = []

    def start(**overrides: Any) -> RunningListener:
        config = TerminalConfig(
            **{
                "idle_timeout": 10.0,
                "request_timeout": 5.0,
                "max_connections": 100,
                "db_threads": 4,
                "drain_seconds": 5.0,
                "database_path": database_path,
                **overrides,
            }
        )
        item = RunningListener(config)
        running.append(item)
        return item

    yield start
    for item in running:
        item.close()


@pytest.fixture
def listener(start_listener: Callable[..., RunningListener]) -> RunningListener:
    return start_listener()


# --- Clients ------------------------------------------------------------------------------


def connect(port: int, source: str | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(IO_TIMEOUT)
    if source is not None:
        sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def wait_closed(sock: socket.socket, timeout: float = IO_TIMEOUT) -> bytes:
    """Read until the server closes; what arrived before. Fails if it stays open."""
    sock.settimeout(timeout)
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            pytest.fail(f"the listener kept the connection open for {timeout}s")
        if not chunk:
            return received
        received += chunk


class LineClient:
    """A JSON-lines terminal."""

    def __init__(self, port: int, source: str | None = None) -> None:
        self.sock = connect(port, source)
        self.file = self.sock.makefile("rb")

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, path: str, parameters: dict[str, Any] | None = None, **extra: Any) -> None:
        frame: dict[str, Any] = {"path": path, **extra}
        if parameters is not None:
            frame["parameters"] = parameters
        self.sock.sendall(simplejson.dumps(frame, use_decimal=True).encode() + b"\n")

    def read_raw(self) -> bytes:
        line = self.file.readline()
        assert line.endswith(b"\n"), f"connection closed instead of an answer (got {line!r})"
        return line

    def read(self) -> dict[str, Any]:
        return loads(self.read_raw())

    def request(self, path: str, parameters: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        self.send(path, parameters, **extra)
        return self.read()

    def auth(self, terminal: Any) -> dict[str, Any]:
        return self.request("/auth", {"terminal_id": terminal.terminal_id, "secret": terminal.secret})

    def token(self, payment_type: str = "CARD", try_count: int | None = None) -> str:
        parameters: dict[str, Any] = {"type": payment_type}
        if try_count is not None:
            parameters["try_count"] = try_count
        answer = self.request("/token", parameters)
        assert "token" in answer, answer
        return answer["token"]

    def is_closed(self, timeout: float = IO_TIMEOUT) -> bool:
        return wait_closed(self.sock, timeout) == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return loads(self.body)


class HttpClient:
    """An HTTP/1.1 terminal on one keep-alive connection; responses parsed by h11."""

    def __init__(self, port: int, source: str | None = None) -> None:
        self.sock = connect(port, source)
        self.h = h11.Connection(h11.CLIENT)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self,
        method: str,
        target: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        auth: tuple[str, str] | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> HttpResponse:
        all_headers = [("host", "terminal"), *(headers or [])]
        if auth is not None:
            all_headers.append(("authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()))
        if content_type is not None:
            all_headers.append(("content-type", content_type))
        if method == "POST" or body:
            all_headers.append(("content-length", str(len(body))))
        if self.h.our_state is h11.DONE and self.h.their_state is h11.DONE:
            self.h.start_next_cycle()
        data = self.h.send(h11.Request(method=method, target=target, headers=all_headers))
        if body:
            data += self.h.send(h11.Data(data=body))
        data += self.h.send(h11.EndOfMessage())
        self.sock.sendall(data)
        return self.read_response()

    def read_response(self) -> HttpResponse:
        response: h11.Response | None = None
        body = b""
        while True:
            event = self.h.next_event()
            if event is h11.NEED_DATA:
                self.h.receive_data(self.sock.recv(65536))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                headers = {k.decode().lower(): v.decode() for k, v in response.headers}
                return HttpResponse(response.status_code, headers, body)
            elif isinstance(event, h11.ConnectionClosed):
                raise AssertionError("connection closed instead of a response")

    def get(self, target: str, **kwargs: Any) -> HttpResponse:
        return self.request("GET", target, **kwargs)

    def close(self) -> None:
        self.sock.close()


def raw_http_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Parse one HTTP response from raw bytes (status, headers, body)."""
    h = h11.Connection(h11.CLIENT)
    h.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    h.send(h11.EndOfMessage())
    h.receive_data(data)
    h.receive_data(b"")
    status, headers, body = 0, {}, b""
    while True:
        event = h.next_event()
        if isinstance(event, h11.Response):
            status = event.status_code
            headers = {k.decode().lower(): v.decode() for k, v in event.headers}
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)) or event is h11.NEED_DATA:
            return status, headers, body


@pytest.fixture
def lines(listener: RunningListener) -> Iterator[Callable[..., LineClient]]:
    clients: list[LineClient] = []

    def open_client(source: str | None = None) -> LineClient:
        client = LineClient(listener.port, source)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


@pytest.fixture
def http(listener: RunningListener) -> Iterator[Callable[..., HttpClient]]:
    clients: list[HttpClient] = []

    def open_client(source: str | None = None) -> HttpClient:
        client = HttpClient(listener.port, source)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


# --- Data ---------------------------------------------------------------------------------


@pytest.fixture
def rules(transactional_db: None) -> None:
    """The shipped defaults (limits, banned card/check/PINs), flushed by transactional tests."""
    for kind, amount in {"VISA": "2500.00", "MASTER": "3000.00", "ELECTRON": "1700.00", "CONTACTLESS": "30.00"}.items():
        CardLimitFactory(kind=kind, currency="EUR", max_amount=Decimal(amount))
    services.ban_add(kind="card", value="0000000000000000")
    services.ban_add(kind="check", value="00000000AAA")
    for pin in [str(d) * 4 for d in range(10)] + ["1234"]:
        services.ban_add(kind="pin", value=pin)


@pytest.fixture
def terminal(transactional_db: None, rules: None) -> Any:
    """An active terminal without address restrictions (authenticates with its secret)."""
    return TerminalFactory(merchant=MerchantFactory(name="Corner Shop"))


@pytest.fixture
def client(lines: Callable[..., LineClient], terminal: Any) -> LineClient:
    """A JSON-lines connection already authenticated as ``terminal``."""
    line_client = lines()
    assert line_client.auth(terminal)["authenticated"] is True
    return line_client
