"""A small SET merchant client: connect, authenticate, send many requests at
once, match the answers by msg-tag, resend after a reconnect.

Plain Python (asyncio, no Django) on the listener foundation's client side,
split as jPOS splits a link:

- ``Channel`` knows only SET's framing: the greeting and authentication
  lines, then MIME messages in and out;
- ``listeners.client.Multiplexer`` only matches answers to the requests
  waiting for them, by msg-tag, in whatever order they come;
- ``listeners.client.Adaptor`` only connects and reconnects.

``SetClient`` ties them together: a request whose connection died, or that
the gateway refused with ``retry`` or ``closing``, is sent again with the
same msg-tag and the same bytes once a connection is open. The gateway's
idempotency (same ids and data → the same answer, nothing changed) makes
that safe.

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
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from listeners.client import Adaptor, Multiplexer

from . import framing, payload
from .payload import AuthReq, CapReq, CredReq, CurrencyAmount, InqReq, RevReq

logger = logging.getLogger("setgateway.client")

T = TypeVar("T")


class GatewayRefused(Exception):
    """The greeting was ``-ERR`` (an address the gateway does not know) or the
    authentication failed: reconnecting will not help."""


class TransportFailure(Exception):
    """The gateway answered a request with ``class=failed``: do not resend it."""

    def __init__(self, text: str, msg_tag: str | None) -> None:
        self.text, self.msg_tag = text, msg_tag
        super().__init__(text)


@dataclass(frozen=True)
class _Status:
    """A status message the gateway sent instead of a request's answer."""

    status_class: str
    text: str
    delay: int


# --- Channel: SET's framing only ----------------------------------------------------------------


class Channel:
    """One TCP connection: lines until authenticated, then MIME messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, max_message_bytes: int) -> None:
        self.reader, self.writer = reader, writer
        self._lines = bytearray()
        self._parser = framing.MimeParser(max_message_bytes=max_message_bytes)
        self._events: list[framing.Event] = []

    async def authenticate(self, transport_id: str, secret: str) -> None:
        """Read the greeting; answer its challenge if there is one; GatewayRefused on -ERR."""
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
                raise ConnectionError("the gateway closed the connection")
            self._events = self._parser.feed(data)
        return self._events.pop(0)

    def send(self, data: bytes) -> None:
        self.writer.write(data)


# --- The client ------------------------------------------------------------------------------------


class SetClient:
    """A merchant's connection to the SET gateway, kept open (and reopened) by an Adaptor."""

    def __init__(self, host: str, port: int, *, transport_id: str = "", secret: str = "", timeout: float = 30.0,
                 max_outstanding: int = 16, max_message_bytes: int = 1024 * 1024) -> None:
        self.transport_id, self._secret = transport_id, secret
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        self.mux = Multiplexer()
        self.adaptor = Adaptor(host, port, self._session, on_lost=self._lost, delay=0.05, max_delay=2.0,
                               connect_timeout=timeout)
        self._prefix = secrets.token_hex(4)
        self._numbers = itertools.count(1)
        self._slots = asyncio.Semaphore(max_outstanding)  # the outstanding limit agreed with the gateway
        self._open = asyncio.Event()  # authenticated, and taking requests (not closing)
        self._channel: Channel | None = None
        self._refused: GatewayRefused | None = None
        self._replies: dict[str, asyncio.Future[bytes]] = {}  # echo-reply, close-reply
        self._started = False

    async def __aenter__(self) -> SetClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connections(self) -> int:
        """How many connections were opened so far."""
        return self.adaptor.connections

    async def connect(self) -> None:
        """Start the adaptor and wait until a connection is authenticated."""
        if not self._started:
            self._started = True
            self.adaptor.start()
        await self._wait_open(asyncio.get_running_loop().time() + self.timeout)

    async def _wait_open(self, deadline: float) -> Channel:
        while True:
            if self._refused is not None:
                raise self._refused
            if self._open.is_set() and self._channel is not None:
                return self._channel
            await asyncio.wait_for(self._open.wait(), max(0.0, deadline - asyncio.get_running_loop().time()))

    # --- one connection's life (run by the adaptor) ---------------------------------------------------

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = Channel(reader, writer, max_message_bytes=self.max_message_bytes)
        try:
            await asyncio.wait_for(channel.authenticate(self.transport_id, self._secret), self.timeout)
        except GatewayRefused as exc:
            self._refused = exc
            self._open.set()  # wakes whoever waits: they see the refusal
            asyncio.get_running_loop().create_task(self.adaptor.stop())
            return
        self._channel = channel
        self._open.set()
        try:
            while True:
                if not self._event(channel, await channel.next_event()):
                    return
        finally:
            self._open.clear()
            self._channel = None

    def _event(self, channel: Channel, event: framing.Event) -> bool:
        """One message from the gateway; False when the connection is done."""
        if isinstance(event, framing.Oversized):
            self.mux.deliver(event.msg_tag, _Status(framing.FAILED, "answer over the maximum message size", 0))
        elif event.content_type == framing.SET_PAYMENT:
            try:
                answer: object = payload.decode(event.body)
            except payload.PayloadError as exc:
                answer = _Status(framing.FAILED, f"undecodable answer: {exc.reason}", 0)
            if not self.mux.deliver(event.msg_tag, answer):
                logger.info("SET answer for msg-tag %r that nobody waits for (late, or a resend's twin)",
                            event.msg_tag)
        elif event.control == "status":
            raw = event.params.get("delay", "1")
            self.mux.deliver(event.msg_tag, _Status(event.params.get("class", "").lower(),
                                                    event.body.decode("utf-8", "replace"),
                                                    int(raw) if raw.isdigit() and int(raw) > 0 else 1))
        elif event.control in ("echo-reply", "close-reply"):
            waiting = self._replies.pop(event.control, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(event.body)
            return event.control != "close-reply"
        elif event.control == "echo":
            channel.send(framing.control_message("echo-reply", event.body, msg_tag=event.msg_tag))
        elif event.control == "close":
            # The gateway closes: new requests wait for the next connection; the
            # close-reply goes once the answers outstanding here have arrived.
            self._open.clear()
            asyncio.get_running_loop().create_task(self._reply_close_when_answered(channel, event))
        return True

    async def _reply_close_when_answered(self, channel: Channel, close: framing.Frame) -> None:
        deadline = asyncio.get_running_loop().time() + self.timeout
        while len(self.mux) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        channel.send(framing.control_message("close-reply", close.body, msg_tag=close.msg_tag))

    def _lost(self) -> None:
        self.mux.fail_all(ConnectionError("the connection was lost before the answer"))

    # --- requests -------------------------------------------------------------------------------------

    async def request(self, message: payload.Request) -> payload.Response:
        """Send one request and wait for its answer (many may be waiting at once).

        Sent again, same msg-tag and bytes, after a lost connection, a ``retry``
        (after its delay) or a ``closing`` (on the next connection).
        """
        body = payload.encode(message)
        tag = f"{self._prefix}.{next(self._numbers)}"  # "merchantID.messageSequenceNo", as the spec suggests
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        async with self._slots:
            while True:
                channel = await self._wait_open(deadline)

                async def send(channel: Channel = channel) -> None:
                    channel.send(framing.payment_message(body, msg_tag=tag))

                try:
                    answer = await self.mux.request(tag, send, max(0.0, deadline - loop.time()))
                except ConnectionError:
                    continue  # resent on the next connection
                if not isinstance(answer, _Status):
                    return answer
                if answer.status_class == framing.RETRY:
                    await asyncio.sleep(answer.delay)
                elif answer.status_class != framing.CLOSING:
                    raise TransportFailure(answer.text, tag)

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

    async def _control(self, control: str, reply: str, body: bytes) -> bytes:
        channel = await self._wait_open(asyncio.get_running_loop().time() + self.timeout)
        waiting: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._replies[reply] = waiting
        channel.send(framing.control_message(control, body))
        return await asyncio.wait_for(waiting, self.timeout)

    async def echo(self, text: bytes = b"Are you there?") -> bytes:
        """A transport-level test: the gateway's echo-reply carries the same body."""
        return await self._control("echo", "echo-reply", text)

    async def close(self, reason: bytes = b"merchant done") -> None:
        """A graceful close (``close``, then the gateway's ``close-reply``, or the time-out);
        no reconnect after it. Answers still outstanding are lost: wait for them first."""
        try:
            if self._open.is_set() and self._refused is None:
                await self._control("close", "close-reply", reason)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            await self.adaptor.stop()


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
        try:
            self._run(self._client.connect())
        except BaseException:
            self.close()
            raise
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
