"""payments.outbound: SSRF refusals, DNS pinning, no redirects, the total deadline.

Real traffic only ever goes to local servers on 127.0.0.1. Wherever a bug could
make the client connect elsewhere (metadata address, private ranges, a "public"
answer from a faked resolver) the transport is replaced at the edge
(``outbound._make_transport``) so nothing leaves the machine.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import httpx
import pytest

from payments import outbound
from payments.outbound import DestinationRefused, OutboundResponse, check_destination, post

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:4700::1"
LOOPBACKS = {"127.0.0.1", "::1"}


# --- local servers ------------------------------------------------------------------------


class RecordingServer(ThreadingHTTPServer):
    """Answers every POST with a fixed reply and records connections and requests."""

    daemon_threads = True

    def __init__(self, status: int = 200, body: bytes = b"OK", headers: dict[str, str] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.reply = (status, body, headers or {})
        self.connections = 0
        self.requests: list[dict[str, Any]] = []

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.connections += 1
        return True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _RecordingHandler(BaseHTTPRequestHandler):
    server: RecordingServer

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.requests.append({"path": self.path, "headers": self.headers, "body": body})
        status, reply, headers = self.server.reply
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Callable[..., RecordingServer]]:
    servers: list[RecordingServer] = []

    def start(**reply: Any) -> RecordingServer:
        server = RecordingServer(**reply)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def server(serve: Callable[..., RecordingServer]) -> RecordingServer:
    return serve()


class RawServer:
    """A socket server on 127.0.0.1 that reads the request head, then runs ``behaviour``."""

    def __init__(self, behaviour: Callable[[socket.socket, threading.Event], None]) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.behaviour = behaviour
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    _read_head(conn)
                    self.behaviour(conn, self.stop)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(3)
        self.listener.close()


def _read_head(conn: socket.socket) -> None:
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = conn.recv(4096)
        if not chunk:
            return
        received += chunk


def _trickle(prefix: bytes) -> Callable[[socket.socket, threading.Event], None]:
    """Send ``prefix``, then one byte every 0.5 s, never finishing (until the client goes away)."""

    def behaviour(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(prefix)
        while not stop.wait(0.5):
            conn.sendall(b"a")

    return behaviour


def _silent(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(10)


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(behaviour: Callable[[socket.socket, threading.Event], None]) -> RawServer:
        servers.append(RawServer(behaviour))
        return servers[-1]

    yield start
    for srv in servers:
        srv.close()


# --- the edge: what the module would connect to -------------------------------------------


class TransportSpy:
    """Records every transport the module builds. Delegates to the real one only for
    loopback addresses; anything else gets a MockTransport, so no traffic leaves."""

    def __init__(self, real: Callable[[str, float], httpx.BaseTransport]) -> None:
        self.real = real
        self.addresses: list[str] = []

    def __call__(self, address: str, deadline: float) -> httpx.BaseTransport:
        self.addresses.append(address)
        if address in LOOPBACKS:
            return self.real(address, deadline)
        return httpx.MockTransport(lambda request: httpx.Response(599))


@pytest.fixture
def transport_spy(monkeypatch: pytest.MonkeyPatch) -> TransportSpy:
    spy = TransportSpy(outbound._make_transport)
    monkeypatch.setattr(outbound, "_make_transport", spy)
    return spy


@pytest.fixture
def private_disallowed(settings: Any) -> None:
    settings.PAYMENTS_ALLOW_PRIVATE_CALLBACKS = False


class FakeResolver:
    """socket.getaddrinfo answering from a script for one hostname; numeric loopback
    lookups (made by socket.create_connection) pass through; anything else fails."""

    def __init__(self, hostname: str, answers: list[list[str]]) -> None:
        self.hostname = hostname
        self.answers = answers
        self.calls: list[str] = []
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host in LOOPBACKS:
            return self.real(host, port, *args, **kwargs)
        if host != self.hostname:
            raise socket.gaierror(f"unexpected lookup of {host}")
        self.calls.append(host)
        addresses = self.answers[min(len(self.calls), len(self.answers)) - 1]
        return [_addrinfo(address, int(port)) for address in addresses]


def _addrinfo(address: str, port: int) -> tuple[Any, ...]:
    if ipaddress.ip_address(address).version == 6:
        return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))


def _mock_edge(monkeypatch: pytest.MonkeyPatch, status: int = 200) -> list[tuple[str, httpx.Request]]:
    """Replace the edge with a MockTransport; returns the (pinned address, request) seen."""
    seen: list[tuple[str, httpx.Request]] = []

    def make(address: str, deadline: float) -> httpx.BaseTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            request.read()
            seen.append((address, request))
            return httpx.Response(status, content=b"mocked")

        return httpx.MockTransport(handler)

    monkeypatch.setattr(outbound, "_make_transport", make)
    return seen


# --- plain calls against a real local server ----------------------------------------------


def test_form_post_reaches_the_server_with_body_and_content_type(server: RecordingServer) -> None:
    result = post(f"{server.url}/notify?order=7", data={"amount": "12.50", "ref": "A&B"})

    assert result == OutboundResponse(status=200, duration_ms=result.duration_ms, excerpt="OK", error="")
    assert result.ok and result.success
    (request,) = server.requests
    assert request["path"] == "/notify?order=7"
    assert request["body"] == b"amount=12.50&ref=A%26B"
    assert request["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert request["headers"]["Host"] == f"127.0.0.1:{server.server_port}"


def test_raw_content_and_headers_are_sent_as_given(server: RecordingServer) -> None:
    result = post(server.url, content=b'{"a": 1}', headers={"Content-Type": "application/json", "X-Sig": "abc"})

    assert result.ok
    (request,) = server.requests
    assert request["body"] == b'{"a": 1}'
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["X-Sig"] == "abc"


def test_status_500_is_not_ok_and_keeps_an_excerpt(serve: Callable[..., RecordingServer]) -> None:
    srv = serve(status=500, body=b"Internal trouble: " + b"x" * 1000)

    result = post(srv.url, data={"a": "1"})

    assert result.status == 500
    assert not result.ok and not result.success
    assert result.error == ""
    assert result.excerpt.startswith("Internal trouble: xxx")
    assert len(result.excerpt) == 500


def test_204_is_success_but_not_ok(serve: Callable[..., RecordingServer]) -> None:
    result = post(serve(status=204, body=b"").url, data={})

    assert (result.status, result.success, result.ok, result.excerpt) == (204, True, False, "")


def test_excerpt_decodes_invalid_utf8_with_replacement(serve: Callable[..., RecordingServer]) -> None:
    result = post(serve(body=b"caf\xc3\xa9 \xff!").url, data={})

    assert result.excerpt == "café \ufffd!"


def test_redirect_is_returned_as_is_and_not_followed(serve: Callable[..., RecordingServer]) -> None:
    second = serve()
    first = serve(status=302, body=b"moved", headers={"Location": f"{second.url}/stolen"})

    result = post(first.url, data={"a": "1"})

    assert result.status == 302
    assert not result.ok
    assert result.excerpt == "moved"
    assert len(first.requests) == 1
    assert second.connections == 0 and second.requests == []


def test_connection_refused_is_an_error_not_an_exception() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the call: nothing listens

    result = post(f"http://127.0.0.1:{port}/", data={"a": "1"})

    assert result.status is None
    assert result.error.startswith("connection failed: ")
    assert result.excerpt == ""


def test_body_read_stops_at_64_kib(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[int] = []

    def endless() -> Iterator[bytes]:
        while True:
            served.append(1)
            yield b"y" * 1024

    def make(address: str, deadline: float) -> httpx.BaseTransport:
        return httpx.MockTransport(lambda request: httpx.Response(200, stream=_Endless(endless())))

    monkeypatch.setattr(outbound, "_make_transport", make)

    result = post("http://127.0.0.1/", data={})

    assert result.status == 200
    assert result.excerpt == "y" * 500
    assert len(served) <= outbound.MAX_BODY_BYTES // 1024 + 1


class _Endless(httpx.SyncByteStream):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks


def test_data_and_content_together_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        post("http://127.0.0.1/", data={"a": "1"}, content=b"a=1")


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.usefixtures("private_disallowed")
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/", "127.0.0.1 is a loopback address"),
        ("http://localhost:{port}/", "localhost resolves to 127.0.0.1, a loopback address"),
        ("http://[::1]:{port}/", "::1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
        ("http://10.0.0.5/", "10.0.0.5 is a private address"),
        ("http://192.168.1.1/", "192.168.1.1 is a private address"),
        ("http://[::ffff:127.0.0.1]:{port}/", "::ffff:127.0.0.1 is a loopback address"),
        ("http://2130706433:{port}/", "2130706433 resolves to 127.0.0.1, a loopback address"),
        ("http://0x7f.1:{port}/", "resolves to 127.0.0.1, a loopback address"),
        ("http://0.0.0.0:{port}/", "0.0.0.0 is an unspecified address"),
        ("http://100.64.0.1/", "100.64.0.1 is a non-public address"),
        ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
        ("http://[fe80::1]/", "fe80::1 is a link-local address"),
        ("http://[fd00::1]/", "fd00::1 is a private address"),
    ],
)
def test_private_destinations_are_refused_without_connecting(
    url: str, reason: str, server: RecordingServer, transport_spy: TransportSpy
) -> None:
    result = post(url.format(port=server.server_port), data={"card": "4111111111111111"})

    assert result.status is None
    assert result.error.startswith("destination refused: ")
    assert reason in result.error
    assert transport_spy.addresses == []
    assert server.connections == 0 and server.requests == []


def test_private_callbacks_setting_is_read_at_call_time(settings: Any, server: RecordingServer) -> None:
    settings.PAYMENTS_ALLOW_PRIVATE_CALLBACKS = False
    assert "destination refused" in post(server.url, data={}).error

    settings.PAYMENTS_ALLOW_PRIVATE_CALLBACKS = True
    assert post(server.url, data={}).ok
    assert len(server.requests) == 1


@pytest.mark.usefixtures("private_disallowed")
@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1:{port}/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:{port}/",
        "javascript:alert(1)",
        "http:///no-host",
        "/relative/path",
        "http://user:secret@127.0.0.1:{port}/",
        "https://token@127.0.0.1:{port}/",
        "http://exa mple.com/",
    ],
)
def test_bad_urls_are_refused(url: str, server: RecordingServer, transport_spy: TransportSpy) -> None:
    result = post(url.format(port=server.server_port), data={"a": "1"})

    assert result.status is None
    assert result.error.startswith("destination refused: ")
    assert "secret" not in result.error and "token" not in result.error
    assert transport_spy.addresses == []
    assert server.connections == 0


def test_credentials_refused_even_when_private_allowed(server: RecordingServer, transport_spy: TransportSpy) -> None:
    result = post(f"http://user:pw@127.0.0.1:{server.server_port}/", data={})

    assert result.error == "destination refused: credentials in the URL are not allowed"
    assert server.connections == 0


@pytest.mark.usefixtures("private_disallowed")
@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.0.1", "169.254.169.254", "100.64.0.1",
        "0.0.0.0", "224.0.0.1", "239.1.1.1", "192.0.2.1", "198.51.100.1", "203.0.113.1",
        "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "ff0e::1", "2001:db8::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::127.0.0.1", "64:ff9b::a00:1", "2002:a00:1::",
    ],
)
def test_check_destination_refuses_non_public_addresses(address: str) -> None:
    with pytest.raises(DestinationRefused, match="^destination refused: "):
        check_destination(address, 80)


@pytest.mark.usefixtures("private_disallowed")
@pytest.mark.parametrize("address", [PUBLIC_V4, PUBLIC_V6, "::ffff:93.184.215.14", "64:ff9b::5db8:d70e"])
def test_check_destination_returns_public_addresses(address: str) -> None:
    assert ipaddress.ip_address(check_destination(address, 443)) == ipaddress.ip_address(address)


def test_check_destination_allows_private_when_setting_is_on() -> None:
    assert check_destination("127.0.0.1", 80) == "127.0.0.1"


@pytest.mark.usefixtures("private_disallowed")
@pytest.mark.parametrize(
    ("mixed", "kind"),
    [
        ([PUBLIC_V4, "127.0.0.1"], "a loopback"),
        ([PUBLIC_V4, "::ffff:10.0.0.1"], "a private"),
        ([PUBLIC_V6, "fe80::1"], "a link-local"),
    ],
)
def test_hostname_with_any_private_answer_is_refused(
    mixed: list[str], kind: str, monkeypatch: pytest.MonkeyPatch, transport_spy: TransportSpy
) -> None:
    resolver = FakeResolver("shop.example", [mixed])
    monkeypatch.setattr(socket, "getaddrinfo", resolver)

    result = post("http://shop.example/notify", data={"a": "1"})

    assert result.error == f"destination refused: shop.example resolves to {mixed[1]}, {kind} address"
    assert resolver.calls == ["shop.example"]
    assert transport_spy.addresses == []


def test_unresolvable_host_is_a_connection_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", FakeResolver("other.example", [[PUBLIC_V4]]))
    seen = _mock_edge(monkeypatch)

    result = post("http://nowhere.example/", data={})

    assert result.status is None
    assert result.error == "connection failed: could not resolve the host"
    assert seen == []


# --- DNS pinning --------------------------------------------------------------------------


@pytest.mark.usefixtures("private_disallowed")
def test_dns_rebinding_is_defeated_by_pinning(monkeypatch: pytest.MonkeyPatch) -> None:
    resolver = FakeResolver("rebind.example", [[PUBLIC_V4], ["127.0.0.1"]])
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    seen = _mock_edge(monkeypatch)

    result = post("http://rebind.example:8080/hook?x=1", data={"a": "1"})

    assert result.ok and result.excerpt == "mocked"
    assert resolver.calls == ["rebind.example"]
    ((address, request),) = seen
    assert address == PUBLIC_V4
    assert request.url == httpx.URL(f"http://{PUBLIC_V4}:8080/hook?x=1")
    assert request.headers["Host"] == "rebind.example:8080"
    assert request.content == b"a=1"
    assert "sni_hostname" not in request.extensions


@pytest.mark.usefixtures("private_disallowed")
def test_https_pins_ip_and_keeps_hostname_for_sni_and_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    resolver = FakeResolver("shop.example", [[PUBLIC_V4], ["127.0.0.1"]])
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    seen = _mock_edge(monkeypatch)

    result = post("https://shop.example/notify", data={"a": "1"}, headers={"Host": "evil.example"})

    assert result.ok
    assert resolver.calls == ["shop.example"]
    ((address, request),) = seen
    assert address == PUBLIC_V4
    assert request.url == httpx.URL(f"https://{PUBLIC_V4}/notify")
    assert request.headers.get_list("Host") == ["shop.example"]
    assert request.extensions["sni_hostname"] == "shop.example"


@pytest.mark.usefixtures("private_disallowed")
def test_ipv6_answer_is_pinned_in_brackets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", FakeResolver("v6.example", [[PUBLIC_V6]]))
    seen = _mock_edge(monkeypatch)

    assert post("https://v6.example:8443/n", data={}).ok

    ((address, request),) = seen
    assert request.url == httpx.URL(f"https://[{PUBLIC_V6}]:8443/n")
    assert request.headers["Host"] == "v6.example:8443"
    assert request.extensions["sni_hostname"] == "v6.example"


def test_pinned_connection_end_to_end(server: RecordingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real backend: the hostname is resolved once, the server sees the original Host."""
    resolver = FakeResolver("merchant.test", [["127.0.0.1"], ["::1"]])
    monkeypatch.setattr(socket, "getaddrinfo", resolver)

    result = post(f"http://merchant.test:{server.server_port}/cb", data={"a": "1"})

    assert result.ok, result.error
    assert resolver.calls == ["merchant.test"]
    assert server.requests[0]["headers"]["Host"] == f"merchant.test:{server.server_port}"


def test_backend_refuses_any_address_but_the_checked_one(server: RecordingServer) -> None:
    backend = outbound._PinnedBackend(PUBLIC_V4, time.monotonic() + 5)

    with pytest.raises(httpcore.ConnectError):
        backend.connect_tcp("127.0.0.1", server.server_port, timeout=1)
    assert server.connections == 0


# --- deadlines ----------------------------------------------------------------------------
# pytest-timeout marks: a broken deadline would otherwise hang on the trickle forever.


@pytest.mark.timeout(15)
@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Trickle: ", id="trickled-headers"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", id="trickled-body"),
    ],
)
def test_trickling_server_hits_the_total_deadline(prefix: bytes, raw_server: Callable[..., RawServer]) -> None:
    srv = raw_server(_trickle(prefix))

    started = time.monotonic()
    result = post(f"http://127.0.0.1:{srv.port}/", data={"a": "1"}, total_timeout=2.0)
    elapsed = time.monotonic() - started

    assert elapsed < 2.0 + 1.5
    assert result.status is None
    assert result.error == "timed out after 2.0 s"
    assert result.excerpt == ""


@pytest.mark.timeout(15)
def test_server_that_never_answers_hits_the_total_deadline(raw_server: Callable[..., RawServer]) -> None:
    srv = raw_server(_silent)

    started = time.monotonic()
    result = post(f"http://127.0.0.1:{srv.port}/", data={"a": "1"}, total_timeout=1.0)

    assert time.monotonic() - started < 1.0 + 1.5
    assert (result.status, result.error) == (None, "timed out after 1.0 s")


@pytest.mark.timeout(15)
def test_server_that_never_accepts_times_out() -> None:
    """A listener whose accept queue is full: the kernel drops our SYN, the connect waits."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(address)
            time.sleep(0.05)

            started = time.monotonic()
            result = post(f"http://127.0.0.1:{address[1]}/", data={}, connect_timeout=0.5, total_timeout=1.5)
            elapsed = time.monotonic() - started
        finally:
            for filler in fillers:
                filler.close()

    assert elapsed < 1.5 + 1.5
    assert result.status is None
    assert result.error in ("timed out after 0.5 s (connect)", "timed out after 1.5 s")


@pytest.mark.timeout(15)
def test_slow_resolver_counts_against_the_total_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def hanging(*args: Any, **kwargs: Any) -> list[Any]:
        release.wait(5)
        raise socket.gaierror("gave up")

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    seen = _mock_edge(monkeypatch)
    try:
        started = time.monotonic()
        result = post("http://slow-dns.example/", data={}, total_timeout=0.5)
        elapsed = time.monotonic() - started
    finally:
        release.set()

    assert elapsed < 0.5 + 1.0
    assert (result.status, result.error) == (None, "timed out after 0.5 s")
    assert seen == []


# --- no payment data in logs or errors ----------------------------------------------------


@pytest.mark.usefixtures("private_disallowed")
def test_form_values_never_reach_logs_or_errors(
    settings: Any, server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "4111111111111111"
    caplog.set_level(logging.DEBUG)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    results = [post(f"{server.url}/", data={"card": secret})]  # refused (private)
    settings.PAYMENTS_ALLOW_PRIVATE_CALLBACKS = True
    results.append(post(f"{server.url}/", data={"card": secret}))  # delivered
    results.append(post(f"http://127.0.0.1:{closed_port}/", content=f"card={secret}".encode()))  # refused conn
    results.append(post(f"{server.url}/", data={}, headers={"X-Card": f"{secret}\n"}))  # illegal header value

    assert [r.status for r in results] == [None, 200, None, None]
    assert all(secret not in r.error for r in results)
    assert caplog.records
    assert all(secret not in record.getMessage() for record in caplog.records)
    assert any("127.0.0.1" in record.getMessage() for record in caplog.records if record.name == "payments.outbound")
