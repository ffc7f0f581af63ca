"""Fixtures for the listener foundation: a real Listener on uvloop, real sockets.

The listener runs in an event loop of its own thread, bound to 127.0.0.1 on
port 0; tests talk to it through plain blocking sockets with bounded waits.
No database: the foundation has no ORM.
"""
from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from listeners import Door, Listener, ListenerConfig
from listeners.supervisor import new_event_loop

from .sample_door import SampleDoor

IO_TIMEOUT = 5.0


class Running:
    def __init__(self, door: Door, config: ListenerConfig) -> None:
        self.loop = new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="listener-loop", daemon=True)
        self.thread.start()
        self.door = door
        self.listener = Listener(door, config)
        if isinstance(door, SampleDoor):
            door.listener = self.listener
        self.call(self.listener.start("127.0.0.1", 0))
        self.port = self.listener.port
        self.stopped = False

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def on_loop(self, func: Callable[[], Any]) -> Any:
        """Run ``func`` on the listener's loop (its state is only consistent there)."""
        async def wrapper() -> Any:
            return func()
        return self.call(wrapper())

    def stop_async(self) -> Any:
        self.stopped = True
        return asyncio.run_coroutine_threadsafe(self.listener.stop(), self.loop)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        if not self.stopped:
            self.stopped = True
            self.call(self.listener.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def counters(self) -> Any:
        return self.listener.counters


@pytest.fixture
def start() -> Iterator[Callable[..., Running]]:
    """``start(door=None, **config)`` → a running listener (SampleDoor by default), stopped at teardown."""
    running: list[Running] = []

    def make(door: Door | None = None, **config: Any) -> Running:
        settings = {"idle_timeout": 10.0, "request_timeout": 5.0, "drain_seconds": 5.0, "counters_log_seconds": 0,
                    **config}
        item = Running(door or SampleDoor(close_reply_timeout=0.5), ListenerConfig(**settings))
        running.append(item)
        return item

    yield make
    for item in running:
        item.close()


class LineClient:
    """A CRLF-lines peer of the sample door; reads its greeting first (unless told not to)."""

    def __init__(self, port: int, *, source: str | None = None, greeting: bool = True, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(IO_TIMEOUT)
        if source is not None:
            self.sock.bind((source, 0))
        self.sock.connect(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")
        self.greeting = self.read() if greeting else ""

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def read(self) -> str:
        line = self.file.readline()
        assert line.endswith(b"\r\n"), f"connection closed instead of a line (got {line!r})"
        return line[:-2].decode()

    def ask(self, line: str) -> str:
        self.send(line)
        return self.read()

    def closed(self, timeout: float = IO_TIMEOUT) -> bytes:
        """What arrived until the listener closed; fails if it stays open."""
        return wait_closed(self.sock, timeout, self.file)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def wait_closed(sock: socket.socket, timeout: float = IO_TIMEOUT, file: Any = None) -> bytes:
    sock.settimeout(timeout)
    received = b""
    deadline = time.monotonic() + timeout
    while True:
        try:
            chunk = file.read1(65536) if file is not None else sock.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            pytest.fail(f"the listener kept the connection open for {timeout}s")
        if not chunk:
            return received
        received += chunk
        if time.monotonic() > deadline:
            pytest.fail(f"the listener kept the connection open for {timeout}s")


def loopback_alias_available() -> bool:
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.2", 0))
    except OSError:
        return False
    finally:
        sock.close()
    return True


needs_127_0_0_2 = pytest.mark.skipif(not loopback_alias_available(), reason="127.0.0.2 is not a local address here")
