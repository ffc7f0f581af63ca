"""A small SET merchant client: connect, authenticate, send many requests at
once, match the answers by msg-tag, resend after a reconnect.

Plain Python (asyncio, no Django): a merchant's developer can copy this
module with ``framing.py`` and ``payload.py``. Split as jPOS splits a link:

- ``Channel`` knows only the framing: the greeting and authentication
  lines, then MIME messages in and out;
- ``Multiplexer`` only matches answers to requests by msg-tag;
- ``SetClient`` (the adaptor) connects, reconnects, and resends what was
  outstanding, with the same msg-tag and the same bytes: the gateway's
  idempotency (same ids and data → the same answer) makes that safe.

    async with SetClient("127.0.0.1", 9100, transport_id="shop", secret="...") as gateway:
        answer = await gateway.authorize("order-1", pan="4242424242424242", expiry="203012",
                                         amount=Decimal("10.00"))

``BlockingSetClient`` offers the same without asyncio.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from decimal import Decimal
from typing import Any, TypeVar

from . import framing, payload
from .payload import AuthReq, CapReq, CredReq, CurrencyAmount, InqReq, RevReq

logger = logging.getLogger("setgateway.client")

T = TypeVar("T")


class GatewayRefused(ConnectionError):
    """The greeting was ``-ERR`` (an address the gateway does not know) or the
    authentication failed: reconnecting will not help."""


class TransportFailure(Exception):
    """The gateway answered a request with ``class=failed``: do not resend it."""

    def __init__(self, text: str, msg_tag: str | None) -> None:
        self.text, self.msg_tag = text, msg_tag
        super().__init__(text)


class _Lost(ConnectionError):
    """The connection went away (or the gateway closed it) with requests outstanding."""


# --- Channel: framing only ------------------------------------------------------------------


class Channel:
    """One TCP connection: lines until authenticated, then MIME messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, max_message_bytes: int) -> None:
        self.reader, self.writer = reader, writer
        self._lines = bytearray()
        self._parser = framing.MimeParser(max_message_bytes=max_message_bytes)
        self._events: list[framing.Event] = []

    @classmethod
    async def open(cls, host: str, port: int, *, transport_id: str, secret: str, timeout: float,
                   max_message_bytes: int) -> Channel:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        channel = cls(reader, writer, max_message_bytes=max_message_bytes)
        try:
            await asyncio.wait_for(channel._authenticate(transport_id, secret), timeout)
        except BaseException:
            writer.close()
            raise
        return channel

    async def _authenticate(self, transport_id: str, secret: str) -> None:
        greeting = framing.parse_greeting(await self._line())
        if not greeting.ok:
            raise GatewayRefused(f"greeting -ERR: {greeting.text}")
        if greeting.challenge:
            response = framing.authentication_response(greeting=greeting.line, transport_id=transport_id,
                                                       secret=secret)
            self.writer.write(framing.authentication_line(transport_id, response))
            ok, text = framing.parse_reply(await self._line())
            if not ok:
                raise GatewayRefused(f"authentication refused: {text}")
        # Bytes after the last line are the first MIME messages.
        self._events = self._parser.feed(bytes(self._lines))
        self._lines.clear()

    async def _line(self) -> str:
        while True:
            line = framing.read_line(self._lines)
            if line is not None:
                return line
            data = await self.reader.read(4096)
            if not data:
                raise ConnectionError("the gateway closed the connection during the greeting")
            self._lines += data

    async def next_event(self) -> framing.Event:
        while not self._events:
            data = await self.reader.read(65536)
            if not data:
                raise _Lost("the gateway closed the connection")
            self._events = self._parser.feed(data)
        return self._events.pop(0)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def close(self) -> None:
        self.writer.close()


# --- Multiplexer: matching by msg-tag ---------------------------------------------------------


class Multiplexer:
    """Requests waiting for their answers, by msg-tag."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(4)
        self._numbers = itertools.count(1)
        self.waiting: dict[str, tuple[bytes, asyncio.Future[payload.Response]]] = {}

    def new_tag(self) -> str:
        return f"{self._prefix}.{next(self._numbers)}"  # "merchantID.messageSequenceNo", as the spec suggests

    def expect(self, tag: str, body: bytes) -> asyncio.Future[payload.Response]:
        future: asyncio.Future[payload.Response] = asyncio.get_running_loop().create_future()
        self.waiting[tag] = (body, future)
        return future

    def deliver(self, tag: str | None, body: bytes) -> bool:
        entry = self.waiting.pop(tag or "", None)
        if entry is None:
            return False
        if not entry[1].done():
            try:
                entry[1].set_result(payload.decode(body))
            except payload.PayloadError as exc:
                entry[1].set_exception(exc)
        return True

    def fail(self, tag: str | None, exc: BaseException) -> None:
        entry = self.waiting.pop(tag or "", None)
        if entry is not None and not entry[1].done():
            entry[1].set_exception(exc)

    def fail_all(self, exc: BaseException) -> None:
        for tag in list(self.waiting):
            self.fail(tag, exc)


# --- The adaptor: connect, reconnect, resend ---------------------------------------------------


class SetClient:
    """A merchant's connection to the SET gateway, kept up while requests need it."""

    def __init__(self, host: str, port: int, *, transport_id: str = "", secret: str = "", timeout: float = 30.0,
                 max_outstanding: int = 16, max_message_bytes: int = 1024 * 1024, reconnect: bool = True) -> None:
        self.host, self.port = host, port
        self.transport_id, self._secret = transport_id, secret
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        self.reconnect = reconnect
        self.mux = Multiplexer()
        self.connections = 0  # how many times a connection was opened
        self._slots = asyncio.Semaphore(max_outstanding)
        self._channel: Channel | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._connecting: asyncio.Lock = asyncio.Lock()
        self._draining = False  # the gateway sent close: no new request on this connection
        self._sent_on: dict[str, Channel] = {}
        self._controls: dict[str, asyncio.Future[bytes]] = {}

    async def __aenter__(self) -> SetClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- connection -----------------------------------------------------------------------

    async def connect(self) -> Channel:
        async with self._connecting:
            if self._channel is not None and not self._draining:
                return self._channel
            channel = await Channel.open(self.host, self.port, transport_id=self.transport_id, secret=self._secret,
                                         timeout=self.timeout, max_message_bytes=self.max_message_bytes)
            self.connections += 1
            self._channel, self._draining = channel, False
            self._reader_task = asyncio.create_task(self._read(channel))
            # Whatever is waiting and on no connection (its connection was lost, or the
            # gateway said "closing") goes again: same tag, same bytes.
            for tag, (body, future) in list(self.mux.waiting.items()):
                if not future.done() and tag not in self._sent_on:
                    self._send_request(channel, tag, body)
            return channel

    def _send_request(self, channel: Channel, tag: str, body: bytes) -> None:
        self._sent_on[tag] = channel
        channel.send(framing.payment_message(body, msg_tag=tag))

    async def _read(self, channel: Channel) -> None:
        try:
            while True:
                event = await channel.next_event()
                if isinstance(event, framing.Oversized):
                    self.mux.fail(event.msg_tag, TransportFailure("answer over the maximum message size",
                                                                  event.msg_tag))
                    continue
                if event.content_type == framing.SET_PAYMENT:
                    self._sent_on.pop(event.msg_tag or "", None)
                    self.mux.deliver(event.msg_tag, event.body)
                elif event.control == "status":
                    self._status(channel, event)
                elif event.control in ("echo-reply", "close-reply"):
                    future = self._controls.pop(event.control, None)
                    if future is not None and not future.done():
                        future.set_result(event.body)
                    if event.control == "close-reply":
                        return
                elif event.control == "echo":
                    channel.send(framing.control_message("echo-reply", event.body, msg_tag=event.msg_tag))
                elif event.control == "close":
                    # The gateway closes: new requests go to a new connection; the
                    # close-reply goes once the answers outstanding here arrived.
                    self._draining = True
                    asyncio.create_task(self._reply_close_when_answered(channel, event))
        except (ConnectionError, OSError, framing.FramingError) as exc:
            logger.info("SET connection lost: %s", exc)
        finally:
            channel.close()
            if self._channel is channel:
                self._channel = None
            self._connection_lost(channel)

    def _status(self, channel: Channel, event: framing.Frame) -> None:
        tag, status_class = event.msg_tag, event.params.get("class", "").lower()
        text = event.body.decode("utf-8", "replace")
        entry = self.mux.waiting.get(tag or "")
        if entry is None:
            logger.info("SET status %s %r without a request waiting: %s", status_class, tag, text)
            return
        self._sent_on.pop(tag or "", None)
        if status_class == framing.RETRY:
            raw = event.params.get("delay", "1")
            delay = int(raw) if raw.isdigit() and int(raw) > 0 else 1
            asyncio.get_running_loop().call_later(delay, self._resend, tag, entry[0])
        elif status_class == framing.CLOSING:
            asyncio.get_running_loop().call_soon(self._resend_elsewhere, tag, entry[0])
        elif status_class == framing.FAILED:
            self.mux.fail(tag, TransportFailure(text, tag))

    def _resend(self, tag: str | None, body: bytes) -> None:
        if tag in self.mux.waiting and self._channel is not None and not self._draining:
            self._send_request(self._channel, tag or "", body)
        elif tag in self.mux.waiting:
            self._resend_elsewhere(tag, body)

    def _resend_elsewhere(self, tag: str | None, body: bytes) -> None:
        async def again() -> None:
            try:
                await self.connect()  # sends every request not yet sent on the new connection
            except Exception as exc:  # noqa: BLE001 - reported to the request's caller
                self.mux.fail(tag, exc)
        asyncio.create_task(again())

    async def _reply_close_when_answered(self, channel: Channel, close: framing.Frame) -> None:
        while any(sent is channel for sent in self._sent_on.values()):
            await asyncio.sleep(0.01)
        channel.send(framing.control_message("close-reply", close.body, msg_tag=close.msg_tag))

    def _connection_lost(self, channel: Channel) -> None:
        lost = [tag for tag, sent in self._sent_on.items() if sent is channel]
        for tag in lost:
            del self._sent_on[tag]
        if not lost and not any(not f.done() for _, f in self.mux.waiting.values()):
            return
        if not self.reconnect:
            for tag in lost:
                self.mux.fail(tag, _Lost("the connection was lost before the answer"))
            return
        asyncio.create_task(self._reconnect_soon())

    async def _reconnect_soon(self) -> None:
        delay = 0.05
        while self.mux.waiting and self._channel is None:
            try:
                await self.connect()
                return
            except GatewayRefused as exc:
                self.mux.fail_all(exc)
                return
            except (OSError, asyncio.TimeoutError, framing.FramingError) as exc:
                logger.info("SET reconnect failed (%s), again in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # --- requests -----------------------------------------------------------------------------

    async def request(self, message: payload.Request) -> payload.Response:
        """Send one request and wait for its answer (many may be waiting at once)."""
        body = payload.encode(message)
        async with self._slots:
            channel = await self.connect()
            tag = self.mux.new_tag()
            future = self.mux.expect(tag, body)
            self._send_request(channel, tag, body)
            try:
                return await asyncio.wait_for(future, self.timeout)
            finally:
                self.mux.waiting.pop(tag, None)
                self._sent_on.pop(tag, None)

    async def authorize(self, trans_id: str, *, pan: str, expiry: str, amount: Decimal, currency: int = 978,
                        exponent: int = 2, capture: bool = False) -> payload.Response:
        return await self.request(AuthReq(trans_id, pan, expiry, CurrencyAmount.of(amount, currency=currency,
                                                                                   exponent=exponent), capture))

    async def capture(self, trans_id: str, *, amount: Decimal, currency: int = 978,
                      exponent: int = 2) -> payload.Response:
        return await self.request(CapReq(trans_id, CurrencyAmount.of(amount, currency=currency, exponent=exponent)))

    async def refund(self, trans_id: str, cred_id: str, *, amount: Decimal, currency: int = 978,
                     exponent: int = 2) -> payload.Response:
        return await self.request(CredReq(trans_id, cred_id, CurrencyAmount.of(amount, currency=currency,
                                                                              exponent=exponent)))

    async def reverse(self, trans_id: str) -> payload.Response:
        return await self.request(RevReq(trans_id))

    async def inquire(self, trans_id: str) -> payload.Response:
        return await self.request(InqReq(trans_id))

    async def echo(self, text: bytes = b"Are you there?") -> bytes:
        """A transport-level test: the gateway's echo-reply carries the same body."""
        channel = await self.connect()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._controls["echo-reply"] = future
        channel.send(framing.control_message("echo", text))
        return await asyncio.wait_for(future, self.timeout)

    async def close(self, reason: bytes = b"merchant done") -> None:
        """A graceful close: ``close``, then the gateway's ``close-reply`` (or t30)."""
        channel, self._channel = self._channel, None
        self.reconnect = False
        if channel is None:
            return
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._controls["close-reply"] = future
        channel.send(framing.control_message("close", reason))
        try:
            await asyncio.wait_for(future, self.timeout)
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            channel.close()
            if self._reader_task is not None:
                await asyncio.wait({self._reader_task}, timeout=self.timeout)


# --- Without asyncio ---------------------------------------------------------------------------


class BlockingSetClient:
    """``SetClient`` for code without an event loop: its loop runs in a thread.

        with BlockingSetClient("127.0.0.1", 9100, transport_id="shop", secret="...") as gateway:
            answer = gateway.authorize("order-1", pan="4242424242424242", expiry="203012", amount=Decimal("10"))
            pending = [gateway.submit(InqReq(f"order-{n}")) for n in range(8)]   # many at once
            answers = [p.result() for p in pending]
    """

    def __init__(self, host: str, port: int, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="set-client", daemon=True)
        self._thread.start()
        self._client: SetClient = self._run(self._make(host, port, options))

    async def _make(self, host: str, port: int, options: dict[str, Any]) -> SetClient:
        return SetClient(host, port, **options)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> BlockingSetClient:
        self._run(self._client.connect())
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, message: payload.Request) -> Future[payload.Response]:
        return asyncio.run_coroutine_threadsafe(self._client.request(message), self._loop)

    def request(self, message: payload.Request) -> payload.Response:
        return self.submit(message).result()

    def authorize(self, trans_id: str, **kwargs: Any) -> payload.Response:
        return self._run(self._client.authorize(trans_id, **kwargs))

    def capture(self, trans_id: str, **kwargs: Any) -> payload.Response:
        return self._run(self._client.capture(trans_id, **kwargs))

    def refund(self, trans_id: str, cred_id: str, **kwargs: Any) -> payload.Response:
        return self._run(self._client.refund(trans_id, cred_id, **kwargs))

    def reverse(self, trans_id: str) -> payload.Response:
        return self._run(self._client.reverse(trans_id))

    def inquire(self, trans_id: str) -> payload.Response:
        return self._run(self._client.inquire(trans_id))

    def echo(self, text: bytes = b"Are you there?") -> bytes:
        return self._run(self._client.echo(text))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self._client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
