"""One accepted connection: bounded buffers, timeouts, requests in flight.

A ``Connection`` is the asyncio protocol of a socket *and* what a door's
coroutine talks to. The door reads with ``receive()`` / ``next_frame()``
(bytes land in ``buffer``, which the door consumes) and writes with
``send()``. The connection enforces the listener's rules, so no door can
forget one:

- reading pauses while ``buffer`` holds ``max_buffered_bytes``: a peer that
  sends faster than the door consumes is held back by TCP, not by memory;
  a door that asks for more while the buffer is full cannot frame what it
  has (``BufferOverflow``);
- ``send()`` waits while more than ``max_buffered_bytes`` are unflushed, and
  cuts the connection (``write_timeouts``) when the peer does not read them
  within ``request_timeout``: a peer that never reads costs at most the cap
  plus one message;
- waiting for a request to begin is bounded by ``idle_timeout`` (not while
  requests are in flight); receiving one, once begun, by the deadline the
  door passes (``request_deadline()``); until the door calls
  ``mark_identified()``, by the handshake deadline too;
- ``spawn()`` runs requests concurrently (at most ``max_in_flight``); their
  answers are written as they finish; the connection closes only when the
  last one has (or the drain time ran out).

Timeouts and end of stream surface to the door as ``receive()`` returning
False (the peer is done, or the listener asked this connection to close when
idle) or as ``Closed`` (a limit was hit: the foundation counts it; the door
just lets it propagate).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .server import Listener

logger = logging.getLogger("listeners")

_ids = itertools.count(1)


class Closed(Exception):
    """The connection is over: the peer went away, a limit was hit, or the door decided."""


class ConnectionTimeout(Closed):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"{kind} timeout")


class BufferOverflow(Closed):
    """More unread input than the cap: the door cannot frame it."""


class Framer(Protocol):
    """A channel's framing (jPOS's word): bytes in, one frame at a time out. No I/O."""

    def next_frame(self, buffer: bytearray) -> Any | None:
        """Remove one complete frame from ``buffer`` and return it; None if incomplete."""

    def in_frame(self, buffer: bytearray) -> bool:
        """Whether part of a frame has arrived (the request timeout then applies)."""

    def at_eof(self, buffer: bytearray) -> Any | None:
        """The peer closed its side: a last frame (e.g. an error to answer), or None."""


class Connection(asyncio.Protocol):
    """See the module docstring. ``state`` belongs to the door (its per-connection state)."""

    __slots__ = (
        "listener", "config", "counters", "transport", "buffer", "id", "peer_ip", "peer_port", "local_port",
        "since", "state", "label", "identified", "handshake_deadline", "admitted",
        "_loop", "_task", "_waiter", "_waiting_idle", "_timer", "_request_deadline", "_eof", "_lost",
        "_reading_paused", "_write_paused", "_drain_waiter", "_close_when_idle", "_in_flight", "_settled",
    )

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.config = listener.config
        self.counters = listener.counters
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        #: Unique in this process; a door that needs more (SET: across hosts) adds its host name.
        self.id = f"{os.getpid()}.{next(_ids)}"
        self.peer_ip = ""
        self.peer_port = 0
        self.local_port = 0
        self.since = time.time()
        self.state: Any = None
        #: What the door says this connection is (shown by ``info()``): "unidentified", a terminal id...
        self.label = ""
        self.identified = False
        #: Loop time by which ``mark_identified()`` must have been called (None: no limit); a door may move it.
        self.handshake_deadline: float | None = None
        self.admitted = False
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[bool] | None = None
        self._waiting_idle = False
        self._timer: asyncio.TimerHandle | None = None
        self._request_deadline: float | None = None
        self._eof = False
        self._lost = False
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._close_when_idle = False
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._settled: asyncio.Future[None] | None = None

    # --- asyncio protocol callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer_ip, self.peer_port = str(peer[0]), int(peer[1])
        local = transport.get_extra_info("sockname")
        if isinstance(local, tuple) and len(local) >= 2:
            self.local_port = int(local[1])
        refusal = self.listener._admit(self)
        if refusal is not None:
            if refusal:
                transport.write(refusal)
            transport.close()
            return
        self.admitted = True
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - a socket already reset
                pass
        cap = self.config.max_buffered_bytes
        transport.set_write_buffer_limits(high=cap, low=cap // 4)
        if self.config.handshake_timeout is not None:
            self.handshake_deadline = self._loop.time() + self.config.handshake_timeout
        self._task = self._loop.create_task(self.listener._run(self))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= self.config.max_buffered_bytes and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake(True)

    def eof_received(self) -> bool:
        # Keep our side open: a half-closed peer still gets its answers.
        self._eof = True
        self._wake(False)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._eof = True
        self._wake(False)
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)  # send() sees _lost
        if self.admitted:
            self.listener._forget(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- reading ----------------------------------------------------------------------------

    def request_deadline(self) -> float:
        """The loop time by which a request that begins now must be complete."""
        return self._loop.time() + self.config.request_timeout

    async def receive(self, deadline: float | None = None) -> bool:
        """Wait for more bytes in ``buffer``; False when no more will come.

        ``deadline`` None: waiting for a request to begin (idle timeout, unless
        requests are in flight); otherwise the loop time by which the current
        request must be complete (``request_deadline()``). False also when the
        listener asked this connection to close when idle (draining).
        """
        if self._close_when_idle or self._eof:
            return False
        if len(self.buffer) >= self.config.max_buffered_bytes:
            self.counters.buffer_overflows += 1
            raise BufferOverflow(f"over {self.config.max_buffered_bytes} bytes unread")
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        waiter = self._loop.create_future()
        self._waiter = waiter
        self._waiting_idle = deadline is None
        self._request_deadline = deadline
        self._arm_timer()
        try:
            return await waiter
        finally:
            self._waiter = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    async def next_frame(self, framer: Framer) -> Any | None:
        """The next frame, read as needed under the timeouts; None when the peer is done
        (or the listener asked this connection to close when idle)."""
        started: float | None = None
        while True:
            if self._close_when_idle:
                return None
            frame = framer.next_frame(self.buffer)
            if frame is not None:
                return frame
            if framer.in_frame(self.buffer):
                if started is None:
                    started = self.request_deadline()
                more = await self.receive(started)
            else:
                started = None
                more = await self.receive()
            if not more:
                return None if self._close_when_idle else framer.at_eof(self.buffer)

    def _wake(self, value: bool) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(value)

    def _arm_timer(self) -> None:
        """(Re)arm the one timer of the current wait: the earliest limit that applies."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiter is None or self._waiter.done():
            return
        when: float | None = None
        kind = ""
        if self._waiting_idle:
            if not self._in_flight:
                when, kind = self._loop.time() + self.config.idle_timeout, "idle"
        else:
            when, kind = self._request_deadline, "request"
        if not self.identified and self.handshake_deadline is not None and (when is None or self.handshake_deadline < when):
            when, kind = self.handshake_deadline, "handshake"
        if when is not None:
            self._timer = self._loop.call_at(when, self._expire, kind)

    def _expire(self, kind: str) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        self.counters.timeouts += 1
        setattr(self.counters, f"{kind}_timeouts", getattr(self.counters, f"{kind}_timeouts") + 1)
        waiter.set_exception(ConnectionTimeout(kind))

    # --- writing ----------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        """Write ``data``; wait first while the peer has not read what was already written."""
        if self._lost or self.transport is None or self.transport.is_closing():
            raise Closed("connection closed")
        if self._write_paused:
            await self._writable()
        self.transport.write(data)

    async def _writable(self) -> None:
        deadline = self._loop.time() + self.config.request_timeout
        try:
            while self._write_paused and not self._lost:
                if self._drain_waiter is None or self._drain_waiter.done():
                    self._drain_waiter = self._loop.create_future()
                # shield: one waiter shared by every sender (requests in flight), not cancelled by one's timeout
                await asyncio.wait_for(asyncio.shield(self._drain_waiter), max(0.0, deadline - self._loop.time()))
        except TimeoutError:
            if not self._lost:
                self.counters.timeouts += 1
                self.counters.write_timeouts += 1
                logger.info("%s: peer %s did not read its answers for %.0fs; cutting the connection",
                            self.listener.name, self.peer_ip, self.config.request_timeout)
                self.abort()
            raise ConnectionTimeout("write") from None
        if self._lost:
            raise Closed("connection lost")

    # --- requests in flight -----------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> bool:
        """Run one request concurrently with reading the next; False (and ``coro`` closed)
        when ``max_in_flight`` are already running: the door answers "busy"."""
        if len(self._in_flight) >= self.config.max_in_flight:
            coro.close()
            self.counters.requests_in_flight_refused += 1
            return False
        task = self._loop.create_task(coro)
        self._in_flight.add(task)
        task.add_done_callback(self._request_done)
        if self._waiting_idle:
            self._arm_timer()  # no idle timeout while a request runs
        return True

    def _request_done(self, task: asyncio.Task[Any]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None and not isinstance(exc, (Closed, ConnectionError, OSError)):
                self.counters.errors += 1
                logger.error("%s: a request from %s failed", self.listener.name, self.peer_ip, exc_info=exc)
        if not self._in_flight:
            if self._waiting_idle:
                self._arm_timer()  # idle again: the idle timeout starts now
            if self._settled is not None and not self._settled.done():
                self._settled.set_result(None)

    async def settle(self) -> None:
        """Wait until every request in flight has finished (answered or failed)."""
        while self._in_flight:
            self._settled = self._loop.create_future()
            await self._settled
        self._settled = None

    # --- the door's controls ----------------------------------------------------------------

    def mark_identified(self) -> None:
        """The peer said who it is: the handshake deadline no longer applies."""
        if not self.identified:
            self.identified = True
            self._arm_timer()

    def close_when_idle(self) -> None:
        """End this connection as soon as it is not inside a request (the default on drain)."""
        self._close_when_idle = True
        self._wake(False)

    @property
    def closing(self) -> bool:
        """The listener is draining: finish the current work, then close (HTTP: ``Connection: close``)."""
        return self.listener.stopping or self._close_when_idle

    @property
    def peer_closed(self) -> bool:
        return self._eof

    def abort(self) -> None:
        """Cut the connection now (what is unflushed is dropped)."""
        if self.transport is not None:
            self.transport.abort()

    def info(self) -> dict[str, Any]:
        """What staff may see of a live connection (no payload)."""
        return {
            "id": self.id,
            "peer": f"{self.peer_ip}:{self.peer_port}",
            "since": self.since,
            "label": self.label,
            "identified": self.identified,
            "in_flight": len(self._in_flight),
        }

    def _finish(self, grace: float) -> None:
        """Close after flushing the last answers, but never wait longer than ``grace``
        for a peer that does not read (``close()`` alone keeps the socket until it does)."""
        transport = self.transport
        if transport is None or self._lost:
            return
        transport.close()
        if transport.get_write_buffer_size():
            self._loop.call_later(grace, transport.abort)
