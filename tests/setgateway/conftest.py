"""Fixtures of the SET gateway's tests: merchants with SET settings, and requests."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from setgateway import payload
from setgateway.credentials import set_settings_create
from setgateway.payload import CurrencyAmount
from tests.factories import MerchantFactory

HAPPY_VISA = "4242424242424242"
HAPPY_MASTER = "5555555555554444"
DECLINED_CARD = "4000000000000002"
ACQUIRER_ERROR_CARD = "4000000000000119"
EXPIRY = "203012"


def eur(value: str) -> CurrencyAmount:
    return CurrencyAmount.of(Decimal(value), currency=978, exponent=2)


class SetMerchant:
    """A merchant with SET enabled; ``secret`` is its shared secret in clear."""

    def __init__(self, **settings: Any) -> None:
        addresses = settings.pop("allowed_ips", [])
        name = settings.pop("name", None)
        self.merchant = MerchantFactory(allowed_ips=addresses, **({"name": name} if name else {}))
        self.settings, issued = set_settings_create(merchant=self.merchant, **settings)
        self.transport_id = issued.transport_id
        self.secret = issued.secret

    @property
    def pk(self) -> int:
        return self.merchant.pk


@pytest.fixture(autouse=True)
def _forget_cached_currencies() -> None:
    """Merchant ids are reused across tests: no currency cached by an earlier one."""
    from setgateway import services

    services._CURRENCY_CACHE.clear()


@pytest.fixture
def set_merchant(db, shipped_defaults) -> SetMerchant:  # type: ignore[no-untyped-def]
    return SetMerchant(name="Corner Bookshop")


def handle(merchant: SetMerchant, message: payload.Message) -> payload.Message:
    from setgateway.services import set_request_handle

    return payload.decode(set_request_handle(merchant_pk=merchant.pk, body=payload.encode(message)))


# --- The gateway, running for real on 127.0.0.1 (port 0), in a thread of its own --------------

import asyncio  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402

from setgateway import framing  # noqa: E402

IO_TIMEOUT = 10.0


class RunningGateway:
    """A SetGateway (both ports) serving from an event loop in a background thread."""

    def __init__(self, **overrides: Any) -> None:
        from setgateway.server import SetConfig, SetGateway

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="set-gateway-loop", daemon=True)
        self.thread.start()
        config = {"t30": 5.0, "t120": 5.0, "max_outstanding": 16, "max_message_bytes": 4096, "db_threads": 4,
                  "idle_timeout": 30.0, "live_publish_seconds": 0.2, **overrides}
        self.gateway = SetGateway(SetConfig(**config))
        self.call(self.gateway.start("127.0.0.1", 0, 0))
        self.port, self.diag_port = self.gateway.port, self.gateway.diag_port
        self.stopped = False

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop_async(self) -> Any:
        self.stopped = True
        return asyncio.run_coroutine_threadsafe(self.gateway.stop(), self.loop)

    def close(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.call(self.gateway.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def start_gateway(transactional_db: None) -> Iterator[Callable[..., RunningGateway]]:
    running: list[RunningGateway] = []

    def start(**overrides: Any) -> RunningGateway:
        item = RunningGateway(**overrides)
        running.append(item)
        return item

    yield start
    for item in running:
        item.close()


@pytest.fixture
def rules(transactional_db: None) -> None:
    """The shipped limits and bans (a transactional test flushed the migration's)."""
    import importlib

    from django.apps import apps

    importlib.import_module("payments.migrations.0002_default_limits_and_bans").forwards(apps, None)


@pytest.fixture
def gateway(start_gateway: Callable[..., RunningGateway], rules: None) -> RunningGateway:
    return start_gateway()


class Raw:
    """A merchant's connection spoken by hand: lines, then MIME messages (plain sockets)."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(IO_TIMEOUT)
        self.sock.bind((source, 0))
        self.sock.connect(("127.0.0.1", port))
        self.buffer = bytearray()
        self.parser = framing.MimeParser(max_message_bytes=10 * 1024 * 1024)
        self.events: list[framing.Event] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> str:
        while True:
            line = framing.read_line(self.buffer)
            if line is not None:
                return line
            chunk = self.sock.recv(65536)
            assert chunk, f"closed before a line (got {bytes(self.buffer)!r})"
            self.buffer += chunk

    def authenticate(self, merchant: SetMerchant, *, secret: str | None = None) -> tuple[str, str]:
        """Greeting and Authentication; (greeting line, reply line)."""
        greeting = self.line()
        challenge = framing.parse_greeting(greeting)
        assert challenge.ok and challenge.challenge, greeting
        response = framing.authentication_response(greeting=greeting, transport_id=merchant.transport_id,
                                                   secret=secret or merchant.secret)
        self.send(framing.authentication_line(merchant.transport_id, response))
        return greeting, self.line()

    def event(self) -> framing.Event:
        if self.buffer:
            self.events += self.parser.feed(bytes(self.buffer))
            self.buffer.clear()
        while not self.events:
            chunk = self.sock.recv(65536)
            assert chunk, "closed before a message"
            self.events += self.parser.feed(chunk)
        return self.events.pop(0)

    def request(self, message: payload.Message, tag: str | None) -> None:
        self.send(framing.payment_message(payload.encode(message), msg_tag=tag))

    def answer(self) -> tuple[str | None, payload.Message]:
        event = self.event()
        assert isinstance(event, framing.Frame) and event.content_type == framing.SET_PAYMENT, event
        return event.msg_tag, payload.decode(event.body)

    def closed(self, timeout: float = IO_TIMEOUT) -> bytes:
        """What arrived until the gateway closed; fails if it stays open."""
        self.sock.settimeout(timeout)
        received = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return received
            except TimeoutError:
                pytest.fail(f"the gateway kept the connection open for {timeout}s")
            if not chunk:
                return received
            received += chunk

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(gateway: RunningGateway) -> Iterator[Callable[..., Raw]]:
    opened: list[Raw] = []

    def open_raw(source: str = "127.0.0.1", port: int | None = None) -> Raw:
        connection = Raw(port or gateway.port, source)
        opened.append(connection)
        return connection

    yield open_raw
    for connection in opened:
        connection.close()


@pytest.fixture
def shop(rules: None) -> SetMerchant:
    """A challenge-authenticated SET merchant whose server is 127.0.0.1."""
    return SetMerchant(name="Corner Bookshop", allowed_ips=["127.0.0.1"])
