"""The terminal door: JSON lines and HTTP/1.1 on one port, on the listener foundation.

The foundation (``listeners``) accepts, caps connections overall and per
source address, times out idle, slow and unidentified connections, bounds
what each connection buffers, drains on SIGTERM and runs the processes
sharing the port. This module keeps only what is the terminal's:

- its framing, chosen per connection from the first bytes (``{`` → JSON
  lines, an HTTP method → HTTP parsed by h11; ``terminals.framing``);
- its handlers: who the terminal is (``/auth``, HTTP Basic, or its source
  address) and the request's database work (``terminals.handlers``), run in
  a small pool of threads, each with its own persistent connection
  (``sync_to_async`` with a dedicated executor), so the event loop never
  blocks on PostgreSQL.

Requests on one connection are answered in order. The contract's rules for
malformed input (shared/contracts/terminal.md, "Malformed input"):
- a JSON line that is not an object with a string ``path`` is ignored and
  counted; 3 in a row, or a line over the frame limit, close the connection;
- HTTP requests h11 rejects get 400 and the connection is closed.
And against unidentified connections (issue 7, item 12): any 110 answer
closes the connection, and a connection must identify its terminal within
``TERMINAL_IDENTIFY_TIMEOUT_SECONDS`` of connecting.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import h11
from django.conf import settings
from django.db import connections

from listeners import Connection, Counters, Door, FrameTooLarge, LineFramer, Listener, ListenerConfig, supervisor
from listeners.database import AsyncDatabase, dsn_from_django
from listeners.threads import DatabaseThreads
from payments import outbox
from payments.services import sale_async

from . import handlers, protocol
from .framing import CONTINUE, HttpError, HttpFramer, framing_for
from .services import TerminalIdentity

logger = logging.getLogger("terminals.server")

MAX_CONSECUTIVE_MALFORMED = 3


@dataclass(frozen=True)
class TerminalConfig:
    idle_timeout: float = 300.0
    request_timeout: float = 30.0
    max_connections: int = 10000
    max_connections_per_address: int = 256
    identify_timeout: float | None = 10.0
    max_frame_bytes: int = 64 * 1024
    max_buffered_bytes: int = 256 * 1024
    db_threads: int = 8
    # "async": the hot path (tokens, payments) on an asyncpg pool (PostgreSQL
    # only); "threads": everything in the database threads (any database).
    database_path: str = "threads"
    db_pool_size: int = 8
    db_timeout: float = 5.0
    drain_seconds: float = 10.0
    counters_log_seconds: float = 60.0

    @classmethod
    def from_settings(cls) -> TerminalConfig:
        return cls(
            idle_timeout=settings.TERMINAL_IDLE_TIMEOUT_SECONDS,
            request_timeout=settings.TERMINAL_REQUEST_TIMEOUT_SECONDS,
            max_connections=settings.TERMINAL_MAX_CONNECTIONS,
            max_connections_per_address=settings.TERMINAL_MAX_CONNECTIONS_PER_ADDRESS,
            identify_timeout=settings.TERMINAL_IDENTIFY_TIMEOUT_SECONDS or None,
            max_frame_bytes=settings.TERMINAL_MAX_FRAME_BYTES,
            max_buffered_bytes=settings.TERMINAL_MAX_BUFFERED_BYTES,
            db_threads=settings.TERMINAL_DB_THREADS,
            database_path=database_path_for(settings.TERMINAL_DATABASE_PATH),
            db_pool_size=settings.TERMINAL_DB_POOL_SIZE,
            db_timeout=settings.TERMINAL_DB_TIMEOUT_SECONDS,
            drain_seconds=settings.TERMINAL_DRAIN_SECONDS,
            counters_log_seconds=settings.TERMINAL_COUNTERS_LOG_SECONDS,
        )

    def limits(self) -> ListenerConfig:
        return ListenerConfig(
            idle_timeout=self.idle_timeout,
            request_timeout=self.request_timeout,
            handshake_timeout=self.identify_timeout,
            max_connections=self.max_connections,
            max_connections_per_address=self.max_connections_per_address,
            # A whole frame must fit, whatever else is buffered behind it.
            max_buffered_bytes=max(self.max_buffered_bytes, 2 * self.max_frame_bytes + 1024),
            drain_seconds=self.drain_seconds,
            counters_log_seconds=self.counters_log_seconds,
        )


def database_path_for(setting: str) -> str:
    """``TERMINAL_DATABASE_PATH``: "auto" is async on PostgreSQL, threads otherwise."""
    vendor = connections["default"].vendor
    if setting == "auto":
        return "async" if vendor == "postgresql" else "threads"
    if setting not in ("async", "threads"):
        raise ValueError(f"TERMINAL_DATABASE_PATH must be auto, async or threads, not {setting!r}")
    if setting == "async" and vendor != "postgresql":
        raise ValueError("TERMINAL_DATABASE_PATH=async needs PostgreSQL")
    return setting


@dataclass
class TerminalCounters(Counters):
    """The foundation's counters and the terminal door's own."""

    requests: int = 0
    malformed_lines: int = 0
    oversized_frames: int = 0
    http_errors: int = 0
    unidentified_closed: int = 0  # connections closed after answering 110


class _Terminal:
    """Per-connection state of the terminal door (``Connection.state``)."""

    __slots__ = ("link", "peer_ip", "_identity", "identified", "basic_cache")

    def __init__(self, link: Connection) -> None:
        self.link = link
        self.peer_ip = link.peer_ip
        self._identity: TerminalIdentity | None = None
        self.identified = False  # address identification was attempted
        self.basic_cache: dict[str, TerminalIdentity | None] = {}

    @property
    def identity(self) -> TerminalIdentity | None:
        return self._identity

    @identity.setter
    def identity(self, value: TerminalIdentity | None) -> None:
        self._identity = value
        if value is not None:
            self.link.mark_identified()  # the identify timeout no longer applies
            self.link.label = value.terminal_id


class TerminalListener(Door):
    name = "terminal"

    def __init__(self, config: TerminalConfig | None = None) -> None:
        self.config = config or TerminalConfig.from_settings()
        self.counters = TerminalCounters()
        self.listener = Listener(self, self.config.limits(), counters=self.counters, name=self.name)
        self._threads = DatabaseThreads(self.config.db_threads, "terminal-db")
        self._pg: AsyncDatabase | None = None
        if self.config.database_path == "async":
            self._pg = AsyncDatabase(
                dsn_from_django(settings.DATABASES["default"]), size=self.config.db_pool_size,
                timeout=self.config.db_timeout, application_name="gateway-terminal", init=sale_async.connection_init,
            )

    # --- database calls, off the event loop ---------------------------------------------

    async def _db(self, func: Callable[..., Any], *args: Any) -> Any:
        return await self._threads.call(func, *args)

    # --- lifecycle ----------------------------------------------------------------------

    def _enqueue(self, deliveries: list[int]) -> None:
        """Webhook deliveries to the broker, off the event loop (the outbox's
        sweep sends any this misses)."""
        if deliveries:
            future = asyncio.get_running_loop().run_in_executor(self._threads.executor, outbox.enqueue_deliveries, deliveries)
            future.add_done_callback(_log_enqueue_failure)

    async def start(self, host: str = "127.0.0.1", port: int = 0, sock: socket.socket | None = None) -> None:
        if self._pg is not None:
            await self._pg.start()
        await self.listener.start(host, port, sock=sock)

    @property
    def sockets(self) -> list[socket.socket]:
        return self.listener.sockets

    @property
    def port(self) -> int:
        return self.listener.port

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to the drain time), close the rest."""
        await self.listener.stop()

    async def stopped(self) -> None:
        # The async pool, then each database thread closes its own connection.
        if self._pg is not None:
            await self._pg.close()
        await self._threads.close()

    # --- a connection -------------------------------------------------------------------

    async def serve(self, link: Connection) -> None:
        conn = _Terminal(link)
        link.state = conn
        link.label = "unidentified"
        deadline: float | None = None
        while True:
            if link.buffer:
                kind = framing_for(bytes(link.buffer[:16]))
                if kind is not None:
                    break
                if deadline is None:
                    deadline = link.request_deadline()  # a request has begun
            if not await link.receive(deadline):
                return
        if kind == "http":
            await self._serve_http(conn)
        else:
            await self._serve_json_lines(conn)

    async def _identity(self, conn: _Terminal) -> TerminalIdentity | None:
        if conn.identity is None and not conn.identified:
            conn.identified = True
            conn.identity = await self._db(handlers.identify, conn.peer_ip)
        return conn.identity

    async def _execute(self, identity: TerminalIdentity | None, request: protocol.Request) -> tuple[dict[str, Any], protocol.Request]:
        self.counters.requests += 1
        try:
            command = protocol.command_for(request)
        except protocol.ProtocolError as exc:
            if identity is None:
                return protocol.error_body(protocol.E_NOT_AUTHORIZED, "Terminal not authorized"), request
            return protocol.error_body(protocol.E_INVALID_REQUEST, f"Invalid request: {exc.detail}"), request
        if identity is None:
            return protocol.error_body(protocol.E_NOT_AUTHORIZED, "Terminal not authorized"), request
        if isinstance(command, protocol.PaymentCommand):
            # Database, acquirer and recording phases: no database thread waits for the acquirer.
            if self._pg is not None:
                return await handlers.pay_async(self._pg, self._enqueue, identity, command), request
            return await handlers.pay(self._db, identity, command), request
        if not isinstance(command, protocol.TokenCommand):  # /auth is the connection's, answered before
            raise TypeError(f"{type(command).__name__} is not a terminal request")
        if self._pg is not None:
            return await handlers.token_async(self._pg, identity, command), request
        return await self._db(handlers.execute, identity, command), request

    # --- JSON lines -----------------------------------------------------------------------

    async def _serve_json_lines(self, conn: _Terminal) -> None:
        link = conn.link
        framer = LineFramer(self.config.max_frame_bytes)
        malformed = 0
        while True:
            try:
                line = await link.next_frame(framer)
            except FrameTooLarge:
                self.counters.oversized_frames += 1
                logger.warning("terminal %s: line over %d bytes, closing", conn.peer_ip, self.config.max_frame_bytes)
                return
            if line is None:
                return
            request = protocol.parse_json_line(line)
            if request is None:
                malformed += 1
                self.counters.malformed_lines += 1
                logger.info("terminal %s: ignored a malformed line (%d in a row)", conn.peer_ip, malformed)
                if malformed >= MAX_CONSECUTIVE_MALFORMED:
                    return
                continue
            malformed = 0
            close_after = await self._answer_line(conn, request)
            if close_after:
                self.counters.unidentified_closed += 1
                return
            if link.closing:
                return

    async def _answer_line(self, conn: _Terminal, request: protocol.Request) -> bool:
        """Answer one JSON-lines request; True when the connection must close (after any 110)."""
        if request.path == protocol.PATH_AUTH:
            self.counters.requests += 1
            try:
                command = protocol.command_for(request)
            except protocol.ProtocolError:
                identity = None
            else:
                identity = (
                    await self._db(handlers.authenticate, command.terminal_id, command.secret, conn.peer_ip)
                    if isinstance(command, protocol.AuthCommand) else None
                )
            if identity is None:
                await self._write(conn, protocol.encode_line(
                    protocol.error_body(protocol.E_NOT_AUTHORIZED, "Terminal not authorized"), request))
                return True
            conn.identity = identity
            body = {"authenticated": True, "terminal_id": identity.terminal_id, "merchant": identity.merchant_name}
            await self._write(conn, protocol.encode_line(body, request))
            return False
        identity = await self._identity(conn)
        body, _ = await self._execute(identity, request)
        await self._write(conn, protocol.encode_line(body, request))
        return body.get("error_code") == protocol.E_NOT_AUTHORIZED

    async def _write(self, conn: _Terminal, data: bytes) -> None:
        # Never hangs on a peer that does not read: the foundation cuts it after the request timeout.
        await conn.link.send(data)

    # --- HTTP/1.1 -------------------------------------------------------------------------

    async def _serve_http(self, conn: _Terminal) -> None:
        link = conn.link
        framer = HttpFramer(self.config.max_frame_bytes)
        h = framer.h
        while True:
            frame = await link.next_frame(framer)
            if frame is None:
                return
            if frame is CONTINUE:
                await self._write(conn, h.send(h11.InformationalResponse(status_code=100, headers=[])))
                continue
            if isinstance(frame, HttpError):
                self.counters.http_errors += 1
                # The contract: malformed requests (whatever h11's hint: 413, 431,
                # 501...) get 400 and error 100, then the connection is closed.
                await self._http_fail(conn, h, 400, frame.message)
                return
            not_authorized = await self._http_answer(conn, h, frame.event, frame.body)
            if not_authorized:
                self.counters.unidentified_closed += 1
                return
            if h.our_state is h11.MUST_CLOSE or link.closing:
                return
            try:
                h.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _http_answer(self, conn: _Terminal, h: h11.Connection, event: h11.Request, body: bytes) -> bool:
        """Answer one HTTP request; True when it was a 110 (401): the connection then closes."""
        method = event.method.decode("ascii", "replace").upper()
        target = event.target.decode("utf-8", "replace")
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in event.headers}
        if method not in ("GET", "POST"):
            # Error 100 is status 400 over HTTP (the contract), whatever the cause.
            await self._http_send(conn, h, 400, protocol.error_body(
                protocol.E_INVALID_REQUEST, f"Invalid request: method {method[:16]} not allowed"),
                [(b"allow", b"GET, POST")], head=method == "HEAD")
            return False
        try:
            request = protocol.request_from_http(method, target, headers.get("content-type", ""), body)
        except protocol.ProtocolError as exc:
            await self._http_send(conn, h, 400, protocol.error_body(protocol.E_INVALID_REQUEST, f"Invalid request: {exc.detail}"))
            return False
        authorization = headers.get("authorization")
        if authorization is not None:
            if authorization not in conn.basic_cache:
                credentials = protocol.basic_credentials(authorization)
                conn.basic_cache.clear()  # one cached identity per connection is enough
                conn.basic_cache[authorization] = (
                    await self._db(handlers.authenticate, credentials[0], credentials[1], conn.peer_ip)
                    if credentials else None
                )
            identity = conn.basic_cache[authorization]
            if identity is not None:
                conn.link.mark_identified()
        else:
            identity = await self._identity(conn)
        if request.path == protocol.PATH_AUTH:
            # HTTP terminals authenticate with Basic on each request; /auth just says who they are.
            response = (
                {"authenticated": True, "terminal_id": identity.terminal_id, "merchant": identity.merchant_name}
                if identity else protocol.error_body(protocol.E_NOT_AUTHORIZED, "Terminal not authorized")
            )
        else:
            response, _ = await self._execute(identity, request)
        not_authorized = response.get("error_code") == protocol.E_NOT_AUTHORIZED
        extra = [(b"www-authenticate", b'Basic realm="terminal"'), (b"connection", b"close")] if not_authorized else []
        await self._http_send(conn, h, protocol.http_status_for(response), response, extra)
        return not_authorized

    async def _http_send(
        self, conn: _Terminal, h: h11.Connection, status: int, body: dict[str, Any],
        extra_headers: list[tuple[bytes, bytes]] | None = None, *, head: bool = False,
    ) -> None:
        """Send one JSON response (``head``: headers only, as h11 requires for HEAD)."""
        payload = protocol.encode(body)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            *(extra_headers or []),
        ]
        if conn.link.closing and (b"connection", b"close") not in headers:
            headers.append((b"connection", b"close"))
        data = h.send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))
        if not head:
            data += h.send(h11.Data(data=payload))
        data += h.send(h11.EndOfMessage())
        await self._write(conn, data)

    async def _http_fail(self, conn: _Terminal, h: h11.Connection, status: int, message: str) -> None:
        """Answer a request h11 could not parse, then close."""
        if h.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        payload = protocol.encode(protocol.error_body(protocol.E_INVALID_REQUEST, message[:200]))
        try:
            data = h.send(h11.Response(status_code=status, reason=_reason(status), headers=[
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ]))
            data += h.send(h11.Data(data=payload)) + h.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            # h11 refuses a response after a request line it could not parse;
            # write a minimal one ourselves.
            data = (
                f"HTTP/1.1 {status} {_reason(status).decode()}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n"
            ).encode() + payload
        await self._write(conn, data)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _log_enqueue_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("webhook deliveries not enqueued (the outbox sweep will): %s", future.exception())


# --- Processes ------------------------------------------------------------------------------


async def _worker(sockets: list[socket.socket], ready: Callable[[], None], stop: asyncio.Event) -> None:
    listener = TerminalListener()
    await listener.start(sock=sockets[0])
    ready()
    await stop.wait()
    await listener.stop()


def serve(host: str, port: int, *, workers: int = 1, announce: Callable[[str], None] = print) -> int:
    """Run the listener until SIGTERM/SIGINT; return the exit status.

    ``workers > 1``: that many processes share the port (``listeners.supervisor``).
    """
    config = TerminalConfig.from_settings()
    connections.close_all()  # never carry a database connection across fork

    def ready(bound: list[tuple[str, int]], count: int) -> None:
        bound_host, bound_port = bound[0]
        announce(f"listening on {bound_host}:{bound_port}" + (f" ({count} workers)" if count > 1 else ""))

    return supervisor.run(
        [(host, port)], _worker, workers=workers, announce=ready, before_fork=connections.close_all,
        stop_timeout=config.drain_seconds + 15, name="terminal",
    )
