"""The client side of a TCP door (a merchant's server talking to SET): multiplexer and adaptor.

jPOS's split again: the *adaptor* (``Adaptor``) only connects and
reconnects; the *channel* is the door's framing, run by the session
coroutine the adaptor is given; the *multiplexer* (``Multiplexer``) only
matches answers to the requests waiting for them, by key (SET: msg-tag),
in whatever order they come. A request whose connection died fails with
``ConnectionError``: the caller resends it with the same ids once the
adaptor has reconnected (idempotent requests make that safe).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

logger = logging.getLogger("listeners.client")

Session = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Multiplexer:
    """Futures by key: ``expect(key)`` before sending, ``deliver(key, answer)`` when it comes."""

    def __init__(self) -> None:
        self._waiting: dict[Hashable, asyncio.Future[Any]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def expect(self, key: Hashable) -> asyncio.Future[Any]:
        if key in self._waiting:
            raise ValueError(f"a request with key {key!r} is already waiting")
        future = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        future.add_done_callback(lambda _: self._waiting.pop(key, None))
        return future

    def deliver(self, key: Hashable, answer: Any) -> bool:
        """False when nobody waits for ``key`` (a late or unknown answer: the caller logs it)."""
        future = self._waiting.pop(key, None)
        if future is None or future.done():
            return False
        future.set_result(answer)
        return True

    def fail_all(self, exc: BaseException) -> None:
        """The connection is gone: every waiting request fails (to be resent)."""
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(exc)

    async def request(self, key: Hashable, send: Callable[[], Awaitable[None]], timeout: float) -> Any:
        """``send()`` the request and wait for its answer (``TimeoutError`` after ``timeout``)."""
        future = self.expect(key)
        try:
            await send()
            return await asyncio.wait_for(future, timeout)
        finally:
            if not future.done():
                future.cancel()


class Adaptor:
    """Keeps one connection to ``host:port`` open: connects, runs ``session(reader, writer)``
    until it ends, waits (a growing delay), reconnects, until ``stop()``."""

    def __init__(self, host: str, port: int, session: Session, *, on_lost: Callable[[], None] | None = None,
                 delay: float = 0.1, max_delay: float = 5.0, connect_timeout: float = 5.0) -> None:
        self.host, self.port, self.session, self.on_lost = host, port, session, on_lost
        self.delay, self.max_delay, self.connect_timeout = delay, max_delay, connect_timeout
        self.connected = asyncio.Event()
        self.writer: asyncio.StreamWriter | None = None
        self.connections = 0  # successful connects, for tests and logs
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        if self.writer is not None:
            self.writer.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def send(self, data: bytes) -> None:
        """Write on the current connection; ``ConnectionError`` when there is none."""
        writer = self.writer
        if writer is None or writer.is_closing():
            raise ConnectionError("not connected")
        writer.write(data)
        await writer.drain()

    async def _run(self) -> None:
        delay = self.delay
        while not self._stopping:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port),
                                                        self.connect_timeout)
            except (OSError, TimeoutError) as exc:
                logger.info("cannot connect to %s:%d (%s); again in %.1fs", self.host, self.port, exc, delay)
                await asyncio.sleep(delay)
                delay = min(self.max_delay, delay * 2)
                continue
            delay = self.delay
            self.connections += 1
            self.writer = writer
            self.connected.set()
            try:
                await self.session(reader, writer)
            except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
                logger.info("connection to %s:%d lost: %s", self.host, self.port, exc)
            finally:
                self.connected.clear()
                self.writer = None
                writer.close()
                if self.on_lost is not None:
                    self.on_lost()
            if not self._stopping:
                await asyncio.sleep(delay)
