"""Abuse: garbage, malformed lines, huge frames, slow and silent peers, caps (terminal.md "Malformed input").

Every test ends by checking the listener still serves a normal payment.
"""
from __future__ import annotations

import os
import random
import socket
import time

import pytest

from .conftest import HAPPY_VISA, LineClient, connect, raw_http_response, wait_closed

pytestmark = pytest.mark.django_db(transaction=True)


def assert_still_serving(port: int, terminal) -> None:
    client = LineClient(port)
    try:
        assert client.auth(terminal)["authenticated"] is True
        token = client.token()
        answer = client.request(
            "/payment/card",
            {"token": token, "card_type": "VISA", "card_number": HAPPY_VISA, "pin": "4321", "amount": "500.000000"},
        )
        assert isinstance(answer.get("transaction"), int), answer
    finally:
        client.close()


# --- JSON lines ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [b"hello", b"[1, 2]", b'"path"', b"{}", b'{"path": 5}', b'{"parameters": {}}', b"{not json", b"\xff\xfe{", b"null"],
)
def test_malformed_lines_are_ignored_and_a_valid_line_is_still_answered(client: LineClient, listener, bad) -> None:
    client.send_raw(bad + b"\n" + bad + b"\n")
    assert "token" in client.request("/token", {"type": "CARD"})  # nothing came back for the two bad lines
    assert listener.counters.malformed_lines == 2


def test_three_malformed_lines_in_a_row_close_the_connection(client: LineClient, listener, terminal) -> None:
    client.send_raw(b"junk\n[]\n{\"no\": \"path\"}\n")
    assert client.is_closed()
    assert_still_serving(listener.port, terminal)


def test_a_valid_line_resets_the_malformed_count(client: LineClient) -> None:
    for _ in range(3):
        client.send_raw(b"junk\njunk\n")
        assert "token" in client.request("/token", {"type": "CARD"})
    # blank lines are not frames: neither answered nor counted
    client.send_raw(b"\n\r\n   \n")
    client.send_raw(b"junk\njunk\n")
    assert "token" in client.request("/token", {"type": "CARD"})


def test_garbage_bytes_never_crash_the_listener(listener, terminal) -> None:
    rng = random.Random(1234)
    for _ in range(20):
        sock = connect(listener.port)
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4000)))
        try:
            sock.sendall(blob + b"\n\n\n\n")
            sock.shutdown(socket.SHUT_WR)
            wait_closed(sock)
        except (ConnectionResetError, BrokenPipeError):
            pass
        finally:
            sock.close()
    assert_still_serving(listener.port, terminal)


def test_deeply_nested_json_is_just_malformed(client: LineClient, listener, terminal) -> None:
    client.send_raw(b"[" * 30000 + b"\n")
    client.send_raw(b'{"path": "/token", "parameters": ' + b"[" * 30000 + b"]" * 30000 + b"}\n")
    assert "token" in client.request("/token", {"type": "CARD"})
    assert_still_serving(listener.port, terminal)


def test_a_line_over_64_kib_closes_the_connection(client: LineClient, listener, terminal) -> None:
    client.send_raw(b'{"path": "/token", "pad": "' + b"x" * (65 * 1024) + b'"}\n')
    assert client.is_closed()
    assert listener.counters.oversized_frames == 1
    assert_still_serving(listener.port, terminal)


def test_an_endless_line_without_newline_closes_the_connection(lines, listener, terminal) -> None:
    client = lines()
    try:
        for _ in range(20):
            client.send_raw(b"x" * 8192)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert client.is_closed()
    assert_still_serving(listener.port, terminal)


def test_a_line_just_under_the_limit_is_served(client: LineClient) -> None:
    frame = b'{"path": "/token", "parameters": {"type": "CARD"}, "pad": "'
    padding = 64 * 1024 - len(frame) - 2
    client.send_raw(frame + b"y" * padding + b'"}\n')
    assert "token" in client.read()


@pytest.mark.parametrize("value", [b"1E+999999999", b"99999999999999999999", b"2147483648", b"1E+400"])
def test_absurd_try_count_is_an_invalid_request_not_a_hang(client: LineClient, value: bytes) -> None:
    started = time.monotonic()
    client.send_raw(b'{"path": "/token", "parameters": {"type": "CARD", "try_count": ' + value + b"}}\n")
    answer = client.read()
    assert answer["error_code"] == 100, answer
    assert time.monotonic() - started < 2


def test_absurd_json_number_amount_is_109(client: LineClient) -> None:
    token = client.token(try_count=-1)
    for amount in (b"1E+999999999", b"1E-999999999", b"-0", b"0.001"):
        client.send_raw(
            b'{"path": "/payment/card", "parameters": {"token": "' + token.encode()
            + b'", "card_type": "VISA", "card_number": "4242424242424242", "pin": "4321", "amount": ' + amount + b"}}\n"
        )
        assert client.read() == {"error": "Invalid amount", "error_code": 109}


# --- Timeouts ------------------------------------------------------------------------------------


def test_slow_sender_is_closed_after_the_request_timeout(start_listener, terminal) -> None:
    running = start_listener(request_timeout=0.5, idle_timeout=30)
    client = LineClient(running.port)
    started = time.monotonic()
    client.send_raw(b'{"path": "/token", "par')
    assert client.is_closed(timeout=5)
    assert 0.4 <= time.monotonic() - started < 3
    client.close()
    assert_still_serving(running.port, terminal)


def test_trickling_sender_is_closed_even_though_it_is_never_idle(start_listener, terminal) -> None:
    running = start_listener(request_timeout=0.5, idle_timeout=30)
    sock = connect(running.port)
    started = time.monotonic()
    closed = False
    try:
        for _ in range(40):
            sock.sendall(b"{")
            time.sleep(0.05)
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    if not closed:
        wait_closed(sock, timeout=3)
    assert time.monotonic() - started < 4
    sock.close()
    assert_still_serving(running.port, terminal)


def test_slow_http_headers_are_closed_after_the_request_timeout(start_listener, terminal) -> None:
    running = start_listener(request_timeout=0.5, idle_timeout=30)
    sock = connect(running.port)
    started = time.monotonic()
    sock.sendall(b"GET /token?type=CARD HTTP/1.1\r\nHost: x\r\n")
    wait_closed(sock, timeout=5)
    assert time.monotonic() - started < 3
    sock.close()
    assert_still_serving(running.port, terminal)


def test_idle_connection_is_closed_after_the_idle_timeout(start_listener, terminal) -> None:
    running = start_listener(idle_timeout=0.5, request_timeout=5)
    silent = connect(running.port)
    client = LineClient(running.port)
    assert client.auth(terminal)["authenticated"] is True  # idle after an answer, too
    started = time.monotonic()
    wait_closed(silent, timeout=5)
    assert client.is_closed(timeout=5)
    assert time.monotonic() - started < 3
    silent.close()
    client.close()
    assert running.counters.timeouts >= 2


def test_idle_http_keep_alive_connection_is_closed(start_listener, terminal) -> None:
    running = start_listener(idle_timeout=0.5)
    from .conftest import HttpClient

    client = HttpClient(running.port)
    assert client.get("/token?type=CARD", auth=(terminal.terminal_id, terminal.secret)).status == 200
    assert wait_closed(client.sock, timeout=5) == b""
    client.close()


def server_side_connections(port: int) -> int | None:
    """Established TCP sockets whose local port is ``port`` (Linux), None elsewhere."""
    count = 0
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                next(f)
                for row in f:
                    fields = row.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                        count += 1
    except OSError:
        return None
    return count


def test_peer_that_never_reads_is_dropped_and_does_not_hang_the_listener(start_listener, terminal) -> None:
    running = start_listener(request_timeout=0.5, idle_timeout=30)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", running.port))
    sock.sendall(b'{"path": "/auth", "parameters": {"terminal_id": "%s", "secret": "%s"}}\n' % (
        terminal.terminal_id.encode(), terminal.secret.encode()))
    # Cheap requests (100, no database) with big ids, echoed: their answers fill
    # both socket buffers, and the listener's write buffer, while we never read.
    request = b'{"path": "/token", "parameters": {"type": "PROBE"}, "id": "' + b"i" * 30000 + b'"}\n'
    try:
        for _ in range(1000):
            sock.sendall(request * 10)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the listener gave up on us
    except TimeoutError:
        pytest.fail("the listener stopped reading but kept the connection")
    # meanwhile, and afterwards, others are served
    assert_still_serving(running.port, terminal)
    assert running.counters.timeouts >= 1
    # and the listener's end of the socket is gone, although we never read a byte
    deadline = time.monotonic() + 3
    while server_side_connections(running.port) not in (0, None) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server_side_connections(running.port) in (0, None)
    sock.close()


# --- Half-close, cap --------------------------------------------------------------------------------


def test_half_closed_json_lines_client_still_gets_its_answers(listener, terminal) -> None:
    sock = connect(listener.port)
    auth = b'{"path": "/auth", "parameters": {"terminal_id": "%s", "secret": "%s"}}\n' % (
        terminal.terminal_id.encode(), terminal.secret.encode())
    sock.sendall(auth + b'{"id": 1, "path": "/token", "parameters": {"type": "CARD"}}\n')
    sock.shutdown(socket.SHUT_WR)
    answers = wait_closed(sock).splitlines()
    assert len(answers) == 2
    assert b'"id":1' in answers[1] and b'"token"' in answers[1]
    sock.close()


def test_half_closed_http_client_still_gets_its_answer(listener, terminal) -> None:
    import base64

    sock = connect(listener.port)
    auth = base64.b64encode(f"{terminal.terminal_id}:{terminal.secret}".encode())
    sock.sendall(b"GET /token?type=CARD HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + auth + b"\r\n\r\n")
    sock.shutdown(socket.SHUT_WR)
    status, _, body = raw_http_response(wait_closed(sock))
    assert status == 200 and b'"token"' in body
    sock.close()


def test_connections_over_the_cap_are_closed(start_listener, terminal) -> None:
    running = start_listener(max_connections=2)
    first, second = LineClient(running.port), LineClient(running.port)
    assert first.auth(terminal)["authenticated"] and second.auth(terminal)["authenticated"]
    third = connect(running.port)
    assert wait_closed(third) == b""
    third.close()
    assert running.counters.rejected_over_cap >= 1
    assert "token" in first.request("/token", {"type": "CARD"})  # the first two are unaffected
    first.close()
    # once a slot is free, a new terminal gets in
    deadline = time.monotonic() + 5
    while True:
        fourth = LineClient(running.port)
        try:
            assert fourth.auth(terminal)["authenticated"]
            break
        except (AssertionError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            fourth.close()
    second.close()


def test_after_all_the_abuse_a_normal_payment_still_works(start_listener, terminal) -> None:
    running = start_listener(request_timeout=0.5, idle_timeout=1, max_connections=50)
    port = running.port
    abusers = []
    for payload in (
        b"\x00\x01\x02" * 1000,
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b'{"path": "/payment/card", "parameters": {"token": null, "amount": {}}}\n' * 3,
        b"POST /payment/card HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n[1,2]",
        b'{"path": "/auth", "parameters": {"terminal_id": [], "secret": {}}}\n',
        b'{"path": "/token", "parameters": {"type": "CARD", "try_count": true}}\n',
        os.urandom(5000),
        b"",
    ):
        sock = connect(port)
        try:
            sock.sendall(payload)
        except OSError:
            pass
        abusers.append(sock)
    for sock in abusers:
        try:
            wait_closed(sock, timeout=5)
        except OSError:
            pass
        sock.close()
    assert_still_serving(port, terminal)
