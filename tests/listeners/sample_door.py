"""A small SET-like door on the listener foundation, for the foundation's own tests.

It uses every hook the SET gateway needs: a greeting on accept, a handshake
(``HELLO``) that must come within the handshake timeout, per-connection
state, requests in flight answered by tag as they finish (``SLOW tag s``),
a ``CLOSE`` sent to every connection on shutdown with a wait for
``CLOSE-REPLY``, and a diagnostic door on a second port that journals one
line per connection and answers nothing.

Runnable as a process (``python tests/listeners/sample_door.py --port 0
--diag-port 0 --workers 2``) so that the supervisor is tested for real; no
Django anywhere.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from listeners import Connection, Door, FrameTooLarge, LineFramer, Listener, ListenerConfig, supervisor  # noqa: E402

logger = logging.getLogger("sample")


class SampleState:
    __slots__ = ("closing", "greeted")

    def __init__(self) -> None:
        self.closing = False  # we sent CLOSE (shutdown): wait for CLOSE-REPLY
        self.greeted = ""


class SampleDoor(Door):
    name = "sample"

    def __init__(self, *, max_line: int = 4096, close_reply_timeout: float = 5.0) -> None:
        self.max_line = max_line
        self.close_reply_timeout = close_reply_timeout
        self.listener: Listener | None = None

    async def serve(self, conn: Connection) -> None:
        state = conn.state = SampleState()
        state.greeted = f"+OK|sample {conn.id}|"
        await conn.send(state.greeted.encode() + b"\r\n")
        framer = LineFramer(self.max_line, strip_cr=True)
        while True:
            try:
                line = await conn.next_frame(framer)
            except FrameTooLarge:
                await conn.send(b"-ERR|line too long\r\n")
                return
            if line is None:
                return
            command, _, rest = line.decode("ascii", "replace").partition(" ")
            if command == "HELLO":
                conn.mark_identified()
                conn.label = rest or "hello"
                await conn.send(b"WELCOME\r\n")
            elif command == "ECHO":
                await conn.send(rest.encode() + b"\r\n")
            elif command == "SLOW":
                tag, _, seconds = rest.partition(" ")
                if state.closing:
                    await conn.send(f"CLOSING {tag}\r\n".encode())
                elif not conn.spawn(self._slow(conn, tag, float(seconds or 0))):
                    await conn.send(f"BUSY {tag}\r\n".encode())
            elif command == "BIG":
                await conn.send(b"x" * int(rest) + b"\r\n")
            elif command == "PID":
                await conn.send(f"{os.getpid()}\r\n".encode())
            elif command == "STATS":
                await conn.send(json.dumps(conn.counters.snapshot()).encode() + b"\r\n")
            elif command == "CLOSE-REPLY" and state.closing:
                return
            elif command == "QUIT":
                return
            else:
                await conn.send(b"?\r\n")

    async def _slow(self, conn: Connection, tag: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await conn.send(f"DONE {tag}\r\n".encode())

    async def shutdown(self, conn: Connection) -> None:
        """SET's way: send CLOSE, keep answering what is in flight, wait for CLOSE-REPLY."""
        state = conn.state
        if not isinstance(state, SampleState) or not state.greeted:
            conn.close_when_idle()
            return
        state.closing = True
        await conn.send(b"CLOSE\r\n")
        asyncio.get_running_loop().call_later(self.close_reply_timeout, conn.close_when_idle)

    def refusal(self, reason: str) -> bytes:
        return f"-ERR|{reason}\r\n".encode()


class DiagDoor(Door):
    """One line per connection, journaled (logged and kept), never answered."""

    name = "sample-diag"

    def __init__(self) -> None:
        self.journal: list[bytes] = []

    async def serve(self, conn: Connection) -> None:
        line = await conn.next_frame(LineFramer(4096, strip_cr=True))
        if line is not None:
            self.journal.append(line)
            logger.warning("diag journal %s %s", os.getpid(), line.decode("ascii", "replace"))


def worker(config: ListenerConfig, door_kwargs: dict) -> Callable:  # type: ignore[type-arg]
    async def main(sockets: list[socket.socket], ready: Callable[[], None], stop: asyncio.Event) -> None:
        door = SampleDoor(**door_kwargs)
        listeners = [Listener(door, config), Listener(DiagDoor(), config)]
        door.listener = listeners[0]
        for listener, sock in zip(listeners, sockets):
            await listener.start(sock=sock)
        ready()
        await stop.wait()
        await asyncio.gather(*(listener.stop() for listener in listeners))

    return main


async def _failing(sockets: list[socket.socket], ready: Callable[[], None], stop: asyncio.Event) -> None:
    raise RuntimeError("this worker cannot start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--diag-port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--drain", type=float, default=10.0)
    parser.add_argument("--close-reply-timeout", type=float, default=5.0)
    parser.add_argument("--max-in-flight", type=int, default=8)
    parser.add_argument("--fail-start", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    config = ListenerConfig(drain_seconds=args.drain, counters_log_seconds=0, max_in_flight=args.max_in_flight)

    def announce(bound: list[tuple[str, int]], count: int) -> None:
        (host, port), (_, diag) = bound
        print(f"listening on {host}:{port} (diagnostic {host}:{diag}) ({count} workers)", flush=True)

    main_coro = _failing if args.fail_start else worker(config, {"close_reply_timeout": args.close_reply_timeout})
    return supervisor.run(
        [(args.host, args.port), (args.host, args.diag_port)], main_coro, workers=args.workers,
        announce=announce, stop_timeout=args.drain + 10, name="sample",
    )


if __name__ == "__main__":
    sys.exit(main())
