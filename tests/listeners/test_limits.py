"""Every limit of the foundation over real sockets: caps, timeouts, buffered bytes, counters."""
from __future__ import annotations

import socket
import time

import pytest

from listeners import Connection, Door, LineFramer

from .conftest import IO_TIMEOUT, LineClient, needs_127_0_0_2, wait_closed


def eventually(check, timeout: float = IO_TIMEOUT) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.02)


# --- connection caps ---------------------------------------------------------------------------


def test_connections_over_the_cap_get_the_refusal_and_are_closed(start) -> None:
    running = start(max_connections=2)
    first, second = LineClient(running.port), LineClient(running.port)
    third = LineClient(running.port, greeting=False)
    assert third.closed() == b"-ERR|over_cap\r\n"
    assert running.counters.rejected_over_cap == 1
    assert first.ask("ECHO still here") == "still here"
    first.close()
    eventually(lambda: running.counters.active == 1)
    fourth = LineClient(running.port)  # a slot was freed: admitted
    assert fourth.greeting.startswith("+OK|")
    assert running.counters.accepted == 3
    for client in (second, third, fourth):
        client.close()


@needs_127_0_0_2
def test_connections_per_address_are_capped_other_addresses_are_not(start) -> None:
    running = start(max_connections_per_address=2)
    a1, a2 = LineClient(running.port), LineClient(running.port)
    a3 = LineClient(running.port, greeting=False)
    assert a3.closed() == b"-ERR|per_address\r\n"
    other = LineClient(running.port, source="127.0.0.2")  # another address has its own allowance
    assert other.ask("ECHO ok") == "ok"
    assert running.counters.rejected_per_address == 1
    a1.close()
    eventually(lambda: running.counters.active == 2)
    a4 = LineClient(running.port)
    assert a4.ask("ECHO back") == "back"
    for client in (a2, a3, other, a4):
        client.close()


# --- timeouts ----------------------------------------------------------------------------------


def test_idle_connection_is_closed_after_the_idle_timeout(start) -> None:
    running = start(idle_timeout=0.4)
    client = LineClient(running.port)
    assert client.ask("ECHO a") == "a"
    started = time.monotonic()
    assert client.closed() == b""
    assert 0.3 <= time.monotonic() - started < 4
    assert running.counters.idle_timeouts == 1 and running.counters.timeouts == 1


def test_a_request_in_flight_suspends_the_idle_timeout(start) -> None:
    running = start(idle_timeout=0.3, max_in_flight=4)
    client = LineClient(running.port)
    client.send("SLOW a 1.0")  # longer than the idle timeout
    assert client.read() == "DONE a"
    assert running.counters.idle_timeouts == 0
    assert client.closed() == b""  # idle again afterwards: closed
    assert running.counters.idle_timeouts == 1


def test_a_request_sent_too_slowly_is_closed_after_the_request_timeout(start) -> None:
    running = start(request_timeout=0.4, idle_timeout=30)
    client = LineClient(running.port)
    client.sock.sendall(b"ECHO never ends")
    started = time.monotonic()
    assert client.closed() == b""
    assert time.monotonic() - started < 4
    assert running.counters.request_timeouts == 1


def test_a_trickle_is_still_one_request_and_times_out(start) -> None:
    running = start(request_timeout=0.5, idle_timeout=30)
    client = LineClient(running.port)
    started = time.monotonic()
    try:
        for _ in range(60):
            client.sock.sendall(b"E")
            time.sleep(0.05)
    except (BrokenPipeError, ConnectionResetError):
        pass
    else:
        client.closed()
    assert time.monotonic() - started < 5
    assert running.counters.request_timeouts == 1


def test_the_handshake_deadline_is_not_extended_by_keep_alives(start) -> None:
    running = start(handshake_timeout=0.6, idle_timeout=30)
    silent = LineClient(running.port)
    chatty = LineClient(running.port)
    started = time.monotonic()
    try:
        while time.monotonic() - started < 4:
            assert chatty.ask("ECHO x") == "x"  # busy, but never says HELLO
            time.sleep(0.05)
    except (AssertionError, OSError):
        pass
    assert silent.closed() == b""
    assert chatty.closed(timeout=1) in (b"", b"x\r\n")
    assert time.monotonic() - started < 4
    assert running.counters.handshake_timeouts == 2


def test_an_identified_connection_outlives_the_handshake_deadline(start) -> None:
    running = start(handshake_timeout=0.3, idle_timeout=30)
    client = LineClient(running.port)
    assert client.ask("HELLO me") == "WELCOME"
    time.sleep(0.8)
    assert client.ask("ECHO alive") == "alive"
    assert running.counters.handshake_timeouts == 0
    assert running.on_loop(lambda: [c["label"] for c in running.listener.live()]) == ["me"]
    client.close()


# --- buffered bytes ----------------------------------------------------------------------------


def test_a_peer_that_never_reads_costs_at_most_the_cap_and_is_cut(start) -> None:
    """The sample door answers BIG n with n bytes; the peer never reads them."""
    cap = 64 * 1024
    answer = 20_000
    running = start(max_buffered_bytes=cap, request_timeout=0.5, idle_timeout=30)
    client = LineClient(running.port, rcvbuf=4096)
    client.sock.setblocking(False)
    peak = 0
    started = time.monotonic()
    cut = False
    while time.monotonic() - started < 10:
        try:
            client.sock.send(b"BIG %d\r\n" % answer)
        except BlockingIOError:
            pass
        except (BrokenPipeError, ConnectionResetError):
            cut = True
            break

        def unflushed() -> int:
            return max((c.transport.get_write_buffer_size() for c in running.listener.connections), default=0)

        peak = max(peak, running.on_loop(unflushed))
        if running.counters.write_timeouts:
            cut = True
            break
        time.sleep(0.002)
    assert cut, "the listener kept writing to a peer that reads nothing"
    eventually(lambda: running.counters.write_timeouts == 1)
    eventually(lambda: running.counters.active == 0)
    assert 0 < peak <= cap + answer + 2  # the cap plus the one message that crossed it


class SlowConsumer(Door):
    """Reads one line, then sits on the rest for a while (a busy door)."""

    name = "slow"

    def __init__(self) -> None:
        self.peak = 0

    async def serve(self, conn: Connection) -> None:
        import asyncio

        framer = LineFramer(10 * 1024 * 1024)  # frames bigger than the cap: the cap must still hold
        await conn.next_frame(framer)
        for _ in range(40):
            self.peak = max(self.peak, len(conn.buffer))
            await asyncio.sleep(0.05)
        while await conn.next_frame(framer) is not None:
            pass


def test_unread_input_stops_at_the_cap_and_a_frame_that_cannot_fit_closes(start) -> None:
    cap = 64 * 1024
    door = SlowConsumer()
    running = start(door, max_buffered_bytes=cap, idle_timeout=30, request_timeout=30)
    sock = socket.create_connection(("127.0.0.1", running.port), timeout=IO_TIMEOUT)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    sock.sendall(b"first\n")
    sock.setblocking(False)
    sent = 0
    started = time.monotonic()
    while time.monotonic() - started < 1.5:
        try:
            sent += sock.send(b"y" * 65536)  # one endless line
        except BlockingIOError:
            time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            break
    # TCP pushed back long before the sender was done: what the listener holds is bounded
    # by the cap plus one read of the event loop (uvloop reads up to 256 KiB at once).
    assert door.peak <= cap + 256 * 1024, door.peak
    assert sent < 32 * 1024 * 1024
    sock.setblocking(True)
    wait_closed(sock, timeout=10)  # the line can never be framed within the cap: closed
    assert running.counters.buffer_overflows == 1
    sock.close()


# --- counters ---------------------------------------------------------------------------------------


def test_counters_add_up(start) -> None:
    running = start(max_connections=3)
    clients = [LineClient(running.port) for _ in range(3)]
    refused = LineClient(running.port, greeting=False)
    refused.closed()
    for client in clients:
        client.send("QUIT")
        client.closed()
    eventually(lambda: running.counters.active == 0)
    counters = running.counters.snapshot()
    assert counters["accepted"] == 3 and counters["closed"] == 3 and counters["rejected_over_cap"] == 1
    assert counters["errors"] == 0 and counters["timeouts"] == 0
    refused.close()


def test_counters_are_logged_while_they_change_and_at_stop(start, caplog) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="listeners")
    running = start(counters_log_seconds=0.2)
    client = LineClient(running.port)
    assert client.ask("ECHO x") == "x"
    eventually(lambda: any("sample listener: accepted=1" in r.getMessage() for r in caplog.records))
    client.close()
    running.close()
    assert any(r.getMessage().startswith("sample listener stopped: accepted=1 active=0 closed=1")
               for r in caplog.records)
