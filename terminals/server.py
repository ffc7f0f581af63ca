"""The terminal listener: asyncio TCP server speaking JSON lines and HTTP/1.1 on one port.

Each connection picks its framing from its first bytes (``{`` → JSON lines,
an HTTP method → HTTP, parsed by h11). Requests on one connection are
answered in order. Database work runs in a small pool of threads, each
with its own persistent connection (``sync_to_async`` with a dedicated
executor), so the event loop never blocks on PostgreSQL.

Robustness (shared/contracts/terminal.md, "Malformed input"):
- a JSON line that is not an object with a string ``path`` is ignored and
  counted; 3 in a row, or a line over the frame limit, close the connection;
- HTTP requests h11 rejects get 400 and the connection is closed;
- a connection idle longer than the idle timeout, or taking longer than the
  request timeout to send one request, is closed;
- connections over the cap are closed at once;
- SIGTERM: stop accepting, let requests in flight finish, close, exit 0.

Scaling across cores: ``serve(workers=N)`` forks N processes that each bind
the port with ``SO_REUSEPORT``; the kernel spreads connections over them.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import h11
from http import HTTPStatus
from asgiref.sync import SyncToAsync
from django.conf import settings
from django.db import connections

from . import handlers, protocol
from .services import TerminalIdentity

logger = logging.getLogger("terminals.server")

HTTP_METHOD_PREFIXES = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ")
MAX_CONSECUTIVE_MALFORMED = 3


@dataclass
class ListenerConfig:
    idle_timeout: float = 300.0
    request_timeout: float = 30.0
    max_connections: int = 10000
    max_frame_bytes: int = 64 * 1024
    db_threads: int = 8
    drain_seconds: float = 10.0

    @classmethod
    def from_settings(cls) -> ListenerConfig:
        return cls(
            idle_timeout=settings.TERMINAL_IDLE_TIMEOUT_SECONDS,
            request_timeout=settings.TERMINAL_REQUEST_TIMEOUT_SECONDS,
            max_connections=settings.TERMINAL_MAX_CONNECTIONS,
            max_frame_bytes=settings.TERMINAL_MAX_FRAME_BYTES,
            db_threads=settings.TERMINAL_DB_THREADS,
            drain_seconds=settings.TERMINAL_DRAIN_SECONDS,
        )


@dataclass
class Counters:
    """What the listener has seen; logged at shutdown, read by tests."""

    connections: int = 0
    rejected_over_cap: int = 0
    requests: int = 0
    malformed_lines: int = 0
    oversized_frames: int = 0
    timeouts: int = 0
    http_errors: int = 0


class _Closed(Exception):
    """The peer went away, or we decided to close."""


@dataclass(eq=False)  # hashed by identity: kept in a set of live connections
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer_ip: str
    buffer: bytearray = field(default_factory=bytearray)
    identity: TerminalIdentity | None = None
    identified: bool = False  # address identification was attempted
    basic_cache: dict[str, TerminalIdentity | None] = field(default_factory=dict)
    busy: bool = False


class TerminalListener:
    def __init__(self, config: ListenerConfig | None = None) -> None:
        self.config = config or ListenerConfig.from_settings()
        self.counters = Counters()
        self._executor = ThreadPoolExecutor(max_workers=self.config.db_threads, thread_name_prefix="terminal-db")
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.sockets: list[socket.socket] = []

    # --- database calls, off the event loop ---------------------------------------

    async def _db(self, func: Callable[..., Any], *args: Any) -> Any:
        return await SyncToAsync(func, thread_sensitive=False, executor=self._executor)(*args)

    # --- lifecycle ----------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0, sock: socket.socket | None = None) -> None:
        if sock is not None:
            self._server = await asyncio.start_server(self._accept, sock=sock, limit=self.config.max_frame_bytes)
        else:
            self._server = await asyncio.start_server(
                self._accept, host=host, port=port, limit=self.config.max_frame_bytes, backlog=4096
            )
        self.sockets = list(self._server.sockets)

    @property
    def port(self) -> int:
        return self.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to the drain time), close the rest."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            if not conn.busy:
                conn.writer.close()
        if self._tasks:
            done, pending = await asyncio.wait(set(self._tasks), timeout=self.config.drain_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        if self._server is not None:
            await self._server.wait_closed()
        # Each database thread closes its own connection (Django's are per thread):
        # one task per thread, held apart by a barrier.
        barrier = threading.Barrier(self.config.db_threads)
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(
            loop.run_in_executor(self._executor, _close_db_connection, barrier)
            for _ in range(self.config.db_threads)
        ))
        self._executor.shutdown(wait=True)
        logger.info("terminal listener stopped %s", self.counters)

    # --- connections --------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._stopping or len(self._connections) >= self.config.max_connections:
            self.counters.rejected_over_cap += 1
            if self.counters.rejected_over_cap % 100 == 1:
                logger.warning("connection cap %d reached: closing new connections", self.config.max_connections)
            writer.close()
            return
        peer = writer.get_extra_info("peername") or ("0.0.0.0", 0)
        conn = _Connection(reader, writer, peer_ip=str(peer[0]))
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.counters.connections += 1
        self._connections.add(conn)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if not await self._read_more(conn, idle=True):
                return
            if await self._looks_like_http(conn):
                await self._serve_http(conn)
            else:
                await self._serve_json_lines(conn)
        except _Closed:
            pass
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("terminal connection from %s failed", conn.peer_ip)
        finally:
            self._connections.discard(conn)
            if task is not None:
                self._tasks.discard(task)
            _close(writer, grace=self.config.request_timeout)

    async def _looks_like_http(self, conn: _Connection) -> bool:
        """Choose the framing from the first bytes: an HTTP method and a space, or not."""
        deadline = asyncio.get_running_loop().time() + self.config.request_timeout
        while True:
            head = bytes(conn.buffer[:8]).lstrip()
            if head.startswith(HTTP_METHOD_PREFIXES):
                return True
            # Still a possible method name (e.g. "PO" of a "POST" cut by TCP): wait for more.
            if len(conn.buffer) < 8 and head.isalpha() and head.isupper():
                if not await self._read_more(conn, idle=False, deadline=deadline):
                    return False
                continue
            return False

    async def _read_more(self, conn: _Connection, *, idle: bool, deadline: float | None = None) -> bool:
        """Append what arrives to the buffer; False at end of stream.

        ``idle``: waiting for a new request (idle timeout); otherwise inside
        one, which must be complete by ``deadline`` (request timeout).
        """
        loop = asyncio.get_running_loop()
        if idle:
            timeout = self.config.idle_timeout
        else:
            timeout = max(0.0, (deadline or loop.time()) - loop.time())
        try:
            async with asyncio.timeout(timeout):
                data = await conn.reader.read(65536)
        except TimeoutError:
            self.counters.timeouts += 1
            raise _Closed() from None
        if not data:
            return False
        conn.buffer += data
        return True

    async def _identity(self, conn: _Connection) -> TerminalIdentity | None:
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
            return await handlers.pay(self._db, identity, command), request
        if not isinstance(command, protocol.TokenCommand):  # /auth is the connection's, answered before
            raise TypeError(f"{type(command).__name__} is not a terminal request")
        return await self._db(handlers.execute, identity, command), request

    # --- JSON lines -----------------------------------------------------------------

    async def _serve_json_lines(self, conn: _Connection) -> None:
        malformed = 0
        loop = asyncio.get_running_loop()
        request_started: float | None = None
        while True:
            newline = conn.buffer.find(b"\n")
            if newline < 0:
                if len(conn.buffer) > self.config.max_frame_bytes:
                    self.counters.oversized_frames += 1
                    logger.warning("terminal %s: line over %d bytes, closing", conn.peer_ip, self.config.max_frame_bytes)
                    return
                if self._stopping:
                    return
                if conn.buffer.strip():
                    if request_started is None:
                        request_started = loop.time()
                    more = await self._read_more(
                        conn, idle=False, deadline=request_started + self.config.request_timeout
                    )
                else:
                    conn.buffer.clear()
                    request_started = None
                    more = await self._read_more(conn, idle=True)
                if not more:
                    return
                continue
            line = bytes(conn.buffer[:newline])
            del conn.buffer[: newline + 1]
            request_started = loop.time() if conn.buffer.strip() else None
            if len(line) > self.config.max_frame_bytes:
                self.counters.oversized_frames += 1
                return
            if not line.strip():
                continue
            request = protocol.parse_json_line(line)
            if request is None:
                malformed += 1
                self.counters.malformed_lines += 1
                logger.info("terminal %s: ignored a malformed line (%d in a row)", conn.peer_ip, malformed)
                if malformed >= MAX_CONSECUTIVE_MALFORMED:
                    return
                continue
            malformed = 0
            conn.busy = True
            try:
                close_after = await self._answer_line(conn, request)
            finally:
                conn.busy = False
            if close_after or self._stopping:
                return

    async def _answer_line(self, conn: _Connection, request: protocol.Request) -> bool:
        """Answer one JSON-lines request; True when the connection must close."""
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
        return False

    async def _write(self, conn: _Connection, data: bytes) -> None:
        conn.writer.write(data)
        # Never hang on a peer that does not read: drain within the request timeout.
        try:
            async with asyncio.timeout(self.config.request_timeout):
                await conn.writer.drain()
        except TimeoutError:
            self.counters.timeouts += 1
            # close() would wait, forever, to flush what this peer does not read.
            conn.writer.transport.abort()
            raise _Closed() from None

    # --- HTTP/1.1 ---------------------------------------------------------------------

    async def _serve_http(self, conn: _Connection) -> None:
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=self.config.max_frame_bytes)
        # Whatever was read while choosing the framing goes to h11 first.
        h.receive_data(bytes(conn.buffer))
        conn.buffer.clear()
        while True:
            try:
                event, body = await self._http_next_request(conn, h)
            except h11.RemoteProtocolError as exc:
                self.counters.http_errors += 1
                # The contract: malformed requests (whatever h11's hint: 413, 431,
                # 501...) get 400 and error 100, then the connection is closed.
                await self._http_fail(conn, h, 400, f"Invalid request: {exc}")
                return
            if event is None:
                return
            conn.busy = True
            try:
                await self._http_answer(conn, h, event, body)
            finally:
                conn.busy = False
            if h.our_state is h11.MUST_CLOSE or self._stopping:
                return
            try:
                h.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _http_next_request(self, conn: _Connection, h: h11.Connection) -> tuple[h11.Request | None, bytes]:
        """The next request and its body, or (None, b"") when the peer is done."""
        loop = asyncio.get_running_loop()
        started: float | None = loop.time() if h.trailing_data[0] else None
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                if h.they_are_waiting_for_100_continue:
                    await self._write(conn, h.send(h11.InformationalResponse(status_code=100, headers=[])))
                idle = request is None and not h.trailing_data[0]
                if idle and self._stopping:
                    return None, b""
                if not idle and started is None:
                    started = loop.time()
                got = await self._read_more(
                    conn, idle=idle, deadline=(started or loop.time()) + self.config.request_timeout
                )
                if idle and got:
                    started = loop.time()
                h.receive_data(bytes(conn.buffer) if got else b"")
                conn.buffer.clear()
                if not got and request is None and not h.trailing_data[0]:
                    return None, b""
            elif isinstance(event, h11.Request):
                # h11's own limit depends on how the bytes were cut by TCP; the
                # frame limit applies to a request head whatever the chunking.
                head = len(event.target) + sum(len(name) + len(value) + 4 for name, value in event.headers)
                if head > self.config.max_frame_bytes:
                    raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.config.max_frame_bytes:
                    raise h11.RemoteProtocolError("request body too large", error_status_hint=413)
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)
            else:  # ConnectionClosed, or nothing else h11 yields to a server
                return None, b""

    async def _http_answer(self, conn: _Connection, h: h11.Connection, event: h11.Request, body: bytes) -> None:
        method = event.method.decode("ascii", "replace").upper()
        target = event.target.decode("utf-8", "replace")
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in event.headers}
        if method not in ("GET", "POST"):
            # Error 100 is status 400 over HTTP (the contract), whatever the cause.
            await self._http_send(conn, h, 400, protocol.error_body(
                protocol.E_INVALID_REQUEST, f"Invalid request: method {method[:16]} not allowed"),
                [(b"allow", b"GET, POST")], head=method == "HEAD")
            return
        try:
            request = protocol.request_from_http(method, target, headers.get("content-type", ""), body)
        except protocol.ProtocolError as exc:
            await self._http_send(conn, h, 400, protocol.error_body(protocol.E_INVALID_REQUEST, f"Invalid request: {exc.detail}"))
            return
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
        extra = [(b"www-authenticate", b'Basic realm="terminal"')] if response.get("error_code") == protocol.E_NOT_AUTHORIZED else []
        await self._http_send(conn, h, protocol.http_status_for(response), response, extra)

    async def _http_send(
        self, conn: _Connection, h: h11.Connection, status: int, body: dict[str, Any],
        extra_headers: list[tuple[bytes, bytes]] | None = None, *, head: bool = False,
    ) -> None:
        """Send one JSON response (``head``: headers only, as h11 requires for HEAD)."""
        payload = protocol.encode(body)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            *(extra_headers or []),
        ]
        if self._stopping:
            headers.append((b"connection", b"close"))
        data = h.send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))
        if not head:
            data += h.send(h11.Data(data=payload))
        data += h.send(h11.EndOfMessage())
        await self._write(conn, data)

    async def _http_fail(self, conn: _Connection, h: h11.Connection, status: int, message: str) -> None:
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


def _close(writer: asyncio.StreamWriter, *, grace: float) -> None:
    """Close after flushing the last answer, but never wait longer than ``grace`` for a
    peer that does not read (``close()`` alone keeps the socket until it does)."""
    transport = writer.transport
    writer.close()
    if transport.get_write_buffer_size():
        asyncio.get_running_loop().call_later(grace, transport.abort)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _close_db_connection(barrier: threading.Barrier | None = None) -> None:
    connections.close_all()
    if barrier is not None:
        try:
            barrier.wait(timeout=5)
        except threading.BrokenBarrierError:  # pragma: no cover - a thread stuck in a query
            pass


# --- Process management ------------------------------------------------------------------


def _raise_fd_limit() -> None:
    """Thousands of idle terminals need as many file descriptors."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):  # pragma: no cover - platform dependent
        pass


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in requirements on Linux
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def _bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


async def _run_one(sock: socket.socket, on_ready: Callable[[TerminalListener], None]) -> None:
    listener = TerminalListener()
    sock.listen(4096)
    sock.setblocking(False)
    await listener.start(sock=sock)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    on_ready(listener)
    await stop.wait()
    await listener.stop()


def serve(host: str, port: int, *, workers: int = 1, announce: Callable[[str], None] = print) -> int:
    """Run the listener until SIGTERM/SIGINT; return the exit status.

    With ``workers > 1`` the parent reserves the port, forks the workers
    (each binds it with SO_REUSEPORT), announces when all listen, forwards
    signals and restarts a worker that dies.
    """
    _raise_fd_limit()
    connections.close_all()  # never carry a database connection across fork
    if workers <= 1:
        sock = _bind(host, port, reuse_port=False)
        bound_host, bound_port = sock.getsockname()[:2]

        def ready(_: TerminalListener) -> None:
            announce(f"listening on {bound_host}:{bound_port}")

        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_run_one(sock, ready))
        return 0

    reserve = _bind(host, port, reuse_port=True)
    bound_host, bound_port = reserve.getsockname()[:2]
    ready_r, ready_w = os.pipe()
    children: dict[int, int] = {}
    stopping = False

    def spawn(index: int) -> int:
        pid = os.fork()
        if pid == 0:  # child
            os.close(ready_r)
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            code = 0
            try:
                sock = _bind(bound_host, bound_port, reuse_port=True)

                def ready(_: TerminalListener) -> None:
                    try:
                        os.write(ready_w, b"r")
                    except OSError:  # a restarted worker: nobody waits for it
                        pass

                with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                    runner.run(_run_one(sock, ready))
            except BaseException:  # noqa: BLE001 - report, then leave the child
                logger.exception("terminal worker %d failed", index)
                code = 1
            finally:
                os._exit(code)
        children[pid] = index
        return pid

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for index in range(workers):
        spawn(index)
    os.close(ready_w)
    got = 0
    while got < workers:
        chunk = os.read(ready_r, workers - got)
        if not chunk:
            break
        got += len(chunk)
    announce(f"listening on {bound_host}:{bound_port} ({workers} workers)")
    status = 0
    while children:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue
        index = children.pop(pid, None)
        code = os.waitstatus_to_exitcode(wait_status)
        if index is None:
            continue
        if stopping:
            status = status or (code if code > 0 else 0)
        else:
            logger.error("terminal worker %d exited with %d; restarting it", index, code)
            time.sleep(0.5)
            spawn(index)
    reserve.close()
    sys.stdout.flush()
    return status
