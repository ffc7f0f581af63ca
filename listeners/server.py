"""A listener: one port, one door, the caps, the drain.

The ``Listener`` accepts connections (asyncio, uvloop when installed),
admits them under ``max_connections`` and ``max_connections_per_address``,
runs the door's ``serve(conn)`` for each, and on ``stop()`` drains: it stops
accepting, asks every connection to finish (``Door.shutdown``: by default
close when idle; SET sends its ``close`` there), waits up to
``drain_seconds`` for work in flight, cuts what is left, and lets the door
release its resources (``Door.stopped``). Several listeners may run in one
process (SET's gateway port and its diagnostic port), each with its own
door, limits and counters.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterable
from typing import Any

from .config import ListenerConfig
from .connection import Closed, Connection
from .counters import Counters

logger = logging.getLogger("listeners")


class Door:
    """What a TCP door gives the foundation: its framing and handlers live in ``serve``.

    Subclass it; only ``serve`` is required.
    """

    name = "listener"

    async def serve(self, conn: Connection) -> None:
        """The life of one connection: greeting, framing, handlers. Return to close it."""
        raise NotImplementedError

    async def shutdown(self, conn: Connection) -> None:
        """The listener is stopping: tell ``conn``. Default: close it when it is not inside
        a request. A door may instead send a message and keep reading (SET's ``close``)."""
        conn.close_when_idle()

    def refusal(self, reason: str) -> bytes:
        """Bytes sent to a connection refused at accept (``reason``: ``over_cap``,
        ``per_address``, ``draining``) before it is closed; empty: just close."""
        return b""

    async def stopped(self) -> None:
        """Every connection is gone: release what the door holds (threads, pools)."""


class Listener:
    def __init__(self, door: Door, config: ListenerConfig | None = None, *, counters: Counters | None = None,
                 name: str | None = None) -> None:
        self.door = door
        self.config = config or ListenerConfig()
        self.counters = counters if counters is not None else Counters()
        self.name = name or door.name
        self.connections: set[Connection] = set()
        self.stopping = False
        self.sockets: list[socket.socket] = []
        self._per_address: dict[str, int] = {}
        self._server: asyncio.AbstractServer | None = None
        self._stopped: asyncio.Event | None = None
        self._log_timer: asyncio.TimerHandle | None = None
        self._logged: dict[str, int] = {}
        self._refusals_logged: dict[str, int] = {}

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None) -> None:
        """Listen on ``sock`` (bound by the supervisor) or on ``host:port``."""
        loop = asyncio.get_running_loop()
        if sock is None:
            sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                        backlog=self.config.backlog)
        sock.listen(self.config.backlog)
        sock.setblocking(False)
        self._server = await loop.create_server(lambda: Connection(self), sock=sock, backlog=self.config.backlog)
        self.sockets = [sock]
        self._stopped = asyncio.Event()
        if self.config.counters_log_seconds > 0:
            self._log_timer = loop.call_later(self.config.counters_log_seconds, self._log_counters)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sockets[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    async def stop(self) -> None:
        """Drain: stop accepting, let work in flight finish (up to ``drain_seconds``), close."""
        if self.stopping:
            if self._stopped is not None:
                await self._stopped.wait()
            return
        self.stopping = True
        loop = asyncio.get_running_loop()
        if self._server is not None:
            self._server.close()
        conns = list(self.connections)
        hooks = [loop.create_task(self._shutdown(conn)) for conn in conns]
        running = {conn._task for conn in conns if conn._task is not None and not conn._task.done()}
        if running or hooks:
            done, pending = await asyncio.wait({*running, *hooks}, timeout=self.config.drain_seconds)
            late = [conn for conn in conns if conn._task in pending]
            if late:
                self.counters.drain_aborted += len(late)
                logger.warning("%s: %d connections still busy after %.0fs of drain: cutting them",
                               self.name, len(late), self.config.drain_seconds)
            for task in pending:
                task.cancel()
            for conn in late:
                conn.abort()
                for request in list(conn._in_flight):
                    request.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5)
            except TimeoutError:  # pragma: no cover - a transport that never reports its loss
                pass
        try:
            await self.door.stopped()
        finally:
            if self._log_timer is not None:
                self._log_timer.cancel()
            logger.info("%s listener stopped: %s", self.name, self.counters)
            if self._stopped is not None:  # set by start(): a listener never started has no waiter
                self._stopped.set()

    async def _shutdown(self, conn: Connection) -> None:
        try:
            await self.door.shutdown(conn)
        except (Closed, ConnectionError, OSError):
            pass
        except Exception:
            self.counters.errors += 1
            logger.exception("%s: shutdown of a connection from %s failed", self.name, conn.peer_ip)

    def broadcast(self, data: bytes) -> int:
        """Send ``data`` to every open connection (best effort); how many were sent to."""
        sent = 0
        for conn in list(self.connections):
            if conn.transport is not None and not conn.transport.is_closing():
                conn.transport.write(data)
                sent += 1
        return sent

    def live(self) -> list[dict[str, Any]]:
        """``Connection.info()`` of every open connection (for staff pages and tests)."""
        return [conn.info() for conn in self.connections]

    # --- admission and the life of a connection ---------------------------------------------

    def _admit(self, conn: Connection) -> bytes | None:
        """None to admit ``conn``; otherwise what to send it before closing (maybe b"")."""
        reason = None
        if self.stopping:
            reason, self.counters.rejected_draining = "draining", self.counters.rejected_draining + 1
        elif len(self.connections) >= self.config.max_connections:
            reason, self.counters.rejected_over_cap = "over_cap", self.counters.rejected_over_cap + 1
        elif (self.config.max_connections_per_address
              and self._per_address.get(conn.peer_ip, 0) >= self.config.max_connections_per_address):
            reason, self.counters.rejected_per_address = "per_address", self.counters.rejected_per_address + 1
        if reason is not None:
            seen = self._refusals_logged.get(reason, 0) + 1
            self._refusals_logged[reason] = seen
            if seen % 100 == 1:  # one line per hundred: a flood must not flood the log too
                logger.warning("%s: refusing connections (%s) from %s, %d so far", self.name, reason,
                               conn.peer_ip, seen)
            return self.door.refusal(reason)
        self.connections.add(conn)
        self._per_address[conn.peer_ip] = self._per_address.get(conn.peer_ip, 0) + 1
        self.counters.accepted += 1
        self.counters.active = len(self.connections)
        return None

    def _forget(self, conn: Connection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            left = self._per_address.get(conn.peer_ip, 1) - 1
            if left > 0:
                self._per_address[conn.peer_ip] = left
            else:
                self._per_address.pop(conn.peer_ip, None)
            self.counters.closed += 1
            self.counters.active = len(self.connections)

    async def _run(self, conn: Connection) -> None:
        try:
            try:
                await self.door.serve(conn)
            except (Closed, ConnectionError, OSError):
                pass
            except Exception:
                self.counters.errors += 1
                logger.exception("%s: connection from %s failed", self.name, conn.peer_ip)
            # Requests in flight finish (their answers still go out, or find the
            # connection gone): the connection's task ends with its last request.
            await conn.settle()
        except asyncio.CancelledError:
            pass  # cut at the end of the drain
        finally:
            conn._finish(grace=self.config.request_timeout)

    # --- counters in the log ----------------------------------------------------------------

    def _log_counters(self) -> None:
        snapshot = self.counters.snapshot()
        if snapshot != self._logged:
            self._logged = snapshot
            logger.info("%s listener: %s", self.name, self.counters)
        self._log_timer = asyncio.get_running_loop().call_later(self.config.counters_log_seconds, self._log_counters)


def open_connections(listeners: Iterable[Listener]) -> int:
    return sum(len(listener.connections) for listener in listeners)
