"""The hooks a door such as SET needs, over real sockets: greeting, state, requests in flight
answered as they finish, a message to every connection on shutdown, drain."""
from __future__ import annotations

import time

from .conftest import LineClient
from .test_limits import eventually


def test_the_greeting_is_sent_on_accept_with_a_unique_connection_id(start) -> None:
    running = start()
    first, second = LineClient(running.port), LineClient(running.port)
    assert first.greeting.startswith("+OK|sample ") and first.greeting.endswith("|")
    assert first.greeting != second.greeting
    first.close()
    second.close()


def test_requests_in_flight_are_answered_as_they_finish_out_of_order(start) -> None:
    running = start(max_in_flight=3)
    client = LineClient(running.port)
    client.send("SLOW a 0.9")
    client.send("SLOW b 0.1")
    client.send("SLOW c 0.5")
    client.send("SLOW d 0")  # a fourth while three run: refused, the others go on
    assert client.read() == "BUSY d"
    assert [client.read() for _ in range(3)] == ["DONE b", "DONE c", "DONE a"]
    assert running.counters.requests_in_flight_refused == 1
    assert client.ask("ECHO reading never stopped") == "reading never stopped"
    client.close()


def test_a_half_closed_peer_still_gets_the_answers_in_flight(start) -> None:
    running = start(max_in_flight=2)
    client = LineClient(running.port)
    client.send("SLOW a 0.3")
    client.send("SLOW b 0.1")
    client.sock.shutdown(1)  # SHUT_WR: we are done sending
    assert client.closed() == b"DONE b\r\nDONE a\r\n"


def test_live_connections_show_their_state(start) -> None:
    running = start(max_in_flight=2)
    client = LineClient(running.port)
    assert client.ask("HELLO merchant-1") == "WELCOME"
    client.send("SLOW a 0.5")
    eventually(lambda: running.on_loop(lambda: [c["in_flight"] for c in running.listener.live()]) == [1])
    (info,) = running.on_loop(running.listener.live)
    assert info["label"] == "merchant-1" and info["identified"] is True
    assert info["peer"].startswith("127.0.0.1:") and info["since"] <= time.time()
    assert client.read() == "DONE a"
    client.close()


def test_broadcast_reaches_every_connection(start) -> None:
    running = start()
    clients = [LineClient(running.port) for _ in range(3)]
    assert running.on_loop(lambda: running.listener.broadcast(b"NOTICE maintenance\r\n")) == 3
    assert [client.read() for client in clients] == ["NOTICE maintenance"] * 3
    for client in clients:
        client.close()


def test_stop_sends_close_answers_what_is_in_flight_and_waits_for_close_reply(start) -> None:
    """SET's shutdown: close sent to all; outstanding answers still go out; close-reply ends a
    connection at once; a peer that never replies is closed after the door's wait."""
    from .sample_door import SampleDoor

    running = start(SampleDoor(close_reply_timeout=3), max_in_flight=2, drain_seconds=10)
    polite, busy, mute = (LineClient(running.port) for _ in range(3))
    busy.send("SLOW job 0.8")
    time.sleep(0.1)
    stopping = running.stop_async()
    assert polite.read() == "CLOSE"
    polite.send("CLOSE-REPLY")
    assert polite.closed() == b""
    eventually(lambda: running.on_loop(lambda: len(running.listener.connections)) == 2)  # not held for the others
    assert busy.read() == "CLOSE"
    assert busy.ask("SLOW late 0") == "CLOSING late"  # after close: refused, by the door's rule
    assert busy.read() == "DONE job"  # in flight before close: answered
    busy.send("CLOSE-REPLY")
    assert busy.closed() == b""
    assert mute.read() == "CLOSE"
    assert mute.closed(timeout=10) == b""  # closed after the door's close-reply wait (3 s)
    stopping.result(10)
    assert running.counters.drain_aborted == 0
    for client in (polite, busy, mute):
        client.close()


def test_the_drain_time_bounds_work_in_flight(start) -> None:
    running = start(max_in_flight=2, drain_seconds=0.5)
    client = LineClient(running.port)
    client.send("SLOW forever 30")
    time.sleep(0.1)
    started = time.monotonic()
    running.stop_async().result(10)
    assert time.monotonic() - started < 5
    assert client.read() == "CLOSE"
    assert client.closed() == b""
    assert running.counters.drain_aborted == 1
    client.close()


def test_new_connections_are_refused_once_stopping(start) -> None:
    import socket

    import pytest

    running = start(drain_seconds=3)
    client = LineClient(running.port)
    stopping = running.stop_async()
    assert client.read() == "CLOSE"
    with pytest.raises(ConnectionRefusedError):
        for _ in range(50):
            socket.create_connection(("127.0.0.1", running.port), timeout=1).close()
            time.sleep(0.02)
    client.send("CLOSE-REPLY")
    client.closed()
    stopping.result(10)
    client.close()
