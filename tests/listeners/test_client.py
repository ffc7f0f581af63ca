"""The client side: a multiplexer matching out-of-order answers, an adaptor that reconnects
to a real sample server that is killed and started again on the same port."""
from __future__ import annotations

import asyncio
import signal
import socket

import pytest

from listeners.client import Adaptor, Multiplexer
from listeners.supervisor import new_event_loop

from .test_supervisor import Process, processes  # noqa: F401 - the fixture


def free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


class SampleClient:
    """A merchant-like client of the sample door: HELLO, then tagged SLOW requests."""

    def __init__(self, port: int) -> None:
        self.mux = Multiplexer()
        self.adaptor = Adaptor("127.0.0.1", port, self._session, on_lost=self._lost, delay=0.05, max_delay=0.5)
        self.late: list[str] = []

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()  # greeting
        writer.write(b"HELLO client\r\n")
        while line := await reader.readline():
            kind, _, tag = line.decode().strip().partition(" ")
            if kind in ("DONE", "BUSY") and not self.mux.deliver(tag, kind):
                self.late.append(tag)

    def _lost(self) -> None:
        self.mux.fail_all(ConnectionError("connection lost"))

    async def slow(self, tag: str, seconds: float) -> str:
        return await self.mux.request(tag, lambda: self.adaptor.send(f"SLOW {tag} {seconds}\r\n".encode()), 10)

    async def slow_until_answered(self, tag: str, seconds: float) -> tuple[str, int]:
        """Resend with the same tag until answered; (answer, attempts)."""
        attempts = 0
        while True:
            attempts += 1
            await asyncio.wait_for(self.adaptor.connected.wait(), 30)
            try:
                return await self.slow(tag, seconds), attempts
            except ConnectionError:
                await asyncio.sleep(0.05)


def test_multiplexer_matches_answers_in_any_order() -> None:
    async def scenario() -> None:
        mux = Multiplexer()
        a, b = mux.expect("a"), mux.expect("b")
        with pytest.raises(ValueError):
            mux.expect("a")
        assert mux.deliver("b", 2) and mux.deliver("a", 1)
        assert (await a, await b) == (1, 2)
        assert not mux.deliver("a", 3)  # late or unknown: not delivered
        c = mux.expect("c")
        mux.fail_all(ConnectionError("gone"))
        with pytest.raises(ConnectionError):
            await c
        assert len(mux) == 0

    asyncio.run(scenario())


def test_many_requests_in_flight_on_one_connection_come_back_matched(processes) -> None:  # noqa: F811
    server: Process = processes("--workers", "1")
    server.wait_announce()

    async def scenario() -> list[str]:
        client = SampleClient(server.port)
        client.adaptor.start()
        await asyncio.wait_for(client.adaptor.connected.wait(), 10)
        try:
            return await asyncio.gather(client.slow("x", 0.3), client.slow("y", 0.1))
        finally:
            await client.adaptor.stop()

    loop = new_event_loop()
    try:
        assert loop.run_until_complete(scenario()) == ["DONE", "DONE"]
    finally:
        loop.close()


def test_the_adaptor_reconnects_and_the_caller_resends_after_the_server_restarts(processes) -> None:  # noqa: F811
    port, diag = free_port(), free_port()
    server: Process = processes("--workers", "1", "--port", str(port), "--diag-port", str(diag), "--drain", "0.2")
    server.wait_announce()

    async def scenario() -> tuple[str, int, int]:
        client = SampleClient(port)
        client.adaptor.start()
        await asyncio.wait_for(client.adaptor.connected.wait(), 10)
        pending = asyncio.ensure_future(client.slow_until_answered("job-1", 2.0))
        await asyncio.sleep(0.3)
        server.process.send_signal(signal.SIGKILL)  # dies with the request in flight
        server.process.wait(10)
        restarted = processes("--workers", "1", "--port", str(port), "--diag-port", str(diag))
        restarted.wait_announce()
        answer, attempts = await asyncio.wait_for(pending, 30)
        connections = client.adaptor.connections
        await client.adaptor.stop()
        return answer, attempts, connections

    loop = new_event_loop()
    try:
        answer, attempts, connections = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert answer == "DONE" and attempts >= 2 and connections >= 2
