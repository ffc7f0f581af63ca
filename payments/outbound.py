"""The one HTTP client the gateway uses to call merchants' servers.

Merchants give us URLs (esipay return URLs, webhook endpoints) and the gateway
POSTs to them from inside our network. Unchecked, that is a server-side request
forgery (SSRF) door: a merchant could point us at 127.0.0.1, at an internal
service, or at the cloud metadata endpoint 169.254.169.254 and read the answer
back through the response excerpt we keep. So every call here:

* accepts only http/https URLs with a host and without credentials;
* resolves the host ONCE and refuses it if any resolved address is not public
  (unless ``settings.PAYMENTS_ALLOW_PRIVATE_CALLBACKS``, read at call time);
* pins the connection to the address that was checked: the request URL is
  rewritten to that IP, the original hostname stays in the ``Host`` header and,
  for https, in TLS SNI and certificate verification. A second DNS lookup (the
  DNS-rebinding trick: public answer for the check, 127.0.0.1 for the connect)
  never happens, and the network backend refuses any other address;
* never follows redirects (a 3xx is the answer, its Location is not fetched);
* ignores proxy environment variables (a proxy would defeat the pinning);
* enforces a TOTAL deadline for the whole call, on every socket read and write,
  so a server trickling one byte a second cannot hold a worker forever
  (httpx's own read timeout is per read), and reads at most 64 KiB of body.

Request bodies and form values may hold payment data: they never appear in log
lines or error messages. Only the destination host, status and timing are logged.
"""
from __future__ import annotations

import functools
import ipaddress
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
from django.conf import settings

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
EXCERPT_CHARS = 500
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_CHARS = re.compile(r"[A-Za-z0-9._-]+\Z")  # a DNS name (IDNA already applied) or an IPv4 form
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# IPv6 ranges that carry an IPv4 address in their low 32 bits (besides ::ffff:0:0/96
# and 2002::/16, which ipaddress decodes itself): judge them by that IPv4 address.
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class OutboundResponse:
    """What came back from one call: a status, or an error saying why there is none."""

    status: int | None
    duration_ms: int
    excerpt: str
    error: str

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def success(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class DestinationRefused(Exception):
    """The destination may not be called; the message ("destination refused: ...") says why."""


class _DeadlineExceeded(Exception):
    """The total deadline passed before the host was even resolved."""


@dataclass(frozen=True)
class _Target:
    url: httpx.URL
    host: str  # ASCII (IDNA) host, IPv6 without brackets
    port: int
    host_header: str  # the original host[:port], as the merchant's server expects it


# --- destination checks -------------------------------------------------------------------


def check_destination(host: str, port: int) -> str:
    """Resolve host once (socket.getaddrinfo), refuse if ANY resolved address is not public
    (unless private callbacks are allowed), return the one IP address to connect to.

    Raises DestinationRefused, or OSError (socket.gaierror) when the host does not resolve.
    """
    addresses = _resolve(host, port)
    if not _private_callbacks_allowed():
        for address in addresses:
            kind = _non_public_kind(address)
            if kind:
                raise DestinationRefused(_refusal_message(host, address, kind))
    return addresses[0]


def _private_callbacks_allowed() -> bool:
    return bool(getattr(settings, "PAYMENTS_ALLOW_PRIVATE_CALLBACKS", False))


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise socket.gaierror(f"no address for {host}")
    return addresses


def _non_public_kind(address: str) -> str:
    """"" for a public unicast address, else what it is ("a loopback", "a private", ...)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "an unparseable"
    for candidate in (*_embedded_ipv4(ip), ip):
        if candidate.is_multicast:
            return "a multicast"
        if not candidate.is_global:
            return _kind(candidate)
    return ""


def _embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for (::ffff:127.0.0.1 is 127.0.0.1)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = [v4 for v4 in (ip.ipv4_mapped, ip.sixtofour) if v4 is not None]
    if (ip in _IPV4_COMPATIBLE and int(ip) > 1) or ip in _NAT64:  # not :: or ::1 themselves
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _kind(ip: IPAddress) -> str:
    if ip.is_unspecified:
        return "an unspecified"
    if ip.is_loopback:
        return "a loopback"
    if ip.is_link_local:
        return "a link-local"
    if ip.is_private:
        return "a private"
    if ip.is_reserved:
        return "a reserved"
    return "a non-public"


def _refusal_message(host: str, address: str, kind: str) -> str:
    if _same_address(host, address):
        return f"destination refused: {address} is {kind} address"
    return f"destination refused: {host} resolves to {address}, {kind} address"


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def _parse_target(url: str) -> _Target:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise DestinationRefused("destination refused: not a valid URL") from None
    if parsed.scheme not in _DEFAULT_PORTS:
        raise DestinationRefused(f"destination refused: scheme {parsed.scheme[:20]!r} is not http or https")
    if parsed.userinfo:
        raise DestinationRefused("destination refused: credentials in the URL are not allowed")
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise DestinationRefused("destination refused: the URL has no host")
    if not (_HOST_CHARS.match(host) or ":" in host):  # httpx has already validated IPv6 literals
        raise DestinationRefused("destination refused: the host is not a valid name")
    port = parsed.port or _DEFAULT_PORTS[parsed.scheme]
    return _Target(url=parsed, host=host, port=port, host_header=parsed.netloc.decode("ascii"))


def _check_within(target: _Target, deadline: float) -> str:
    """check_destination, but give up at the deadline (a resolver can hang for long)."""
    outcome: list[Any] = []

    def resolve() -> None:
        try:
            outcome.append(check_destination(target.host, target.port))
        except BaseException as exc:  # handed over to the caller's thread below
            outcome.append(exc)

    worker = threading.Thread(target=resolve, name="outbound-resolve", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if not outcome:
        raise _DeadlineExceeded
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return str(outcome[0])


# --- the pinned, deadline-bound transport -------------------------------------------------


def _bounded(timeout: float | None, deadline: float, expired: type[Exception]) -> float:
    """The timeout for one socket operation: never past the call's total deadline."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise expired("total deadline reached")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read/write/TLS handshake ends by the deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, self._deadline, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, self._deadline, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, self._deadline, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects only to the checked address, with deadline-bound streams."""

    def __init__(self, address: str, deadline: float) -> None:
        self._address = address
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if not _same_address(host, self._address):
            raise httpcore.ConnectError(f"{host} is not the checked address")
        bounded = _bounded(timeout, self._deadline, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(self._address, port, bounded, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are never a destination")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


class _PinnedTransport(httpx.HTTPTransport):
    """httpx's transport (so httpx maps the errors) over a pool using _PinnedBackend.

    httpx 0.28 has no public way to pass a network backend, so the pool built by
    HTTPTransport is replaced; httpx is pinned, and the trickle tests catch a change.
    """

    def __init__(self, address: str, deadline: float) -> None:
        super().__init__(verify=_ssl_context(), trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=1,
            max_keepalive_connections=0,
            http1=True,
            http2=False,
            retries=0,
            network_backend=_PinnedBackend(address, deadline),
        )


def _make_transport(address: str, deadline: float) -> httpx.BaseTransport:
    """The edge where bytes leave the gateway (tests swap in an httpx.MockTransport)."""
    return _PinnedTransport(address, deadline)


# --- the call -----------------------------------------------------------------------------


def post(
    url: str,
    *,
    data: Mapping[str, str] | None = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    connect_timeout: float = 3.0,
    total_timeout: float = 10.0,
) -> OutboundResponse:
    """POST form data (application/x-www-form-urlencoded) or raw content. Never raises for
    network problems or refusals: returns an OutboundResponse with error set."""
    if data is not None and content is not None:
        raise ValueError("pass data or content, not both")
    started = time.monotonic()
    deadline = started + total_timeout
    host = ""
    try:
        target = _parse_target(url)
        host = target.host
        address = _check_within(target, deadline)
        status, body = _send(target, address, deadline, data, content, headers, connect_timeout, total_timeout)
    except DestinationRefused as exc:
        result = _failed(started, str(exc))
    except (httpx.TimeoutException, _DeadlineExceeded) as exc:
        result = _failed(started, _timeout_message(exc, deadline, connect_timeout, total_timeout))
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        result = _failed(started, f"connection failed: {_describe(exc)}")
    else:
        result = OutboundResponse(status, _elapsed_ms(started), _excerpt(body), "")
    _log(host, result)
    return result


def _send(
    target: _Target,
    address: str,
    deadline: float,
    data: Mapping[str, str] | None,
    content: bytes | None,
    headers: Mapping[str, str] | None,
    connect_timeout: float,
    total_timeout: float,
) -> tuple[int, bytes]:
    timeout = httpx.Timeout(total_timeout, connect=min(connect_timeout, total_timeout))
    extensions = {"sni_hostname": target.host} if target.url.scheme == "https" else {}
    with httpx.Client(
        transport=_make_transport(address, deadline), follow_redirects=False, trust_env=False, timeout=timeout
    ) as client:
        request = client.build_request(
            "POST",
            target.url.copy_with(host=address),
            data=data,
            content=content,
            headers=_request_headers(headers, target.host_header),
            extensions=extensions,
        )
        response = client.send(request, stream=True)
        try:
            return response.status_code, _read_capped(response, deadline)
        finally:
            response.close()


def _request_headers(headers: Mapping[str, str] | None, host_header: str) -> dict[str, str]:
    """Caller's headers, with Host set to the original hostname (the URL now holds the IP)."""
    merged = {"Accept-Encoding": "identity"}  # no decompression bombs: the body is read raw
    merged.update({k: v for k, v in (headers or {}).items() if k.lower() not in ("host", "accept-encoding")})
    merged["Host"] = host_header
    return merged


def _read_capped(response: httpx.Response, deadline: float) -> bytes:
    if response.is_stream_consumed:  # a transport that pre-read the body (httpx.MockTransport)
        return response.content[:MAX_BODY_BYTES]
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_BODY_BYTES:
            break
        if time.monotonic() >= deadline:
            raise httpx.ReadTimeout("total deadline reached")
    return b"".join(chunks)[:MAX_BODY_BYTES]


def _excerpt(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")[:EXCERPT_CHARS]


def _timeout_message(exc: Exception, deadline: float, connect_timeout: float, total_timeout: float) -> str:
    if isinstance(exc, httpx.ConnectTimeout) and time.monotonic() < deadline:
        return f"timed out after {connect_timeout} s (connect)"
    return f"timed out after {total_timeout} s"


def _describe(exc: Exception) -> str:
    """A short description of a network error. LocalProtocolError is about what WE sent
    (e.g. an illegal header value), so its message could echo our data: name only."""
    name = type(exc).__name__
    if isinstance(exc, socket.gaierror):
        return "could not resolve the host"
    message = str(exc).strip()
    if isinstance(exc, httpx.LocalProtocolError) or not message:
        return name
    return f"{name}: {message[:200]}"


def _failed(started: float, error: str) -> OutboundResponse:
    return OutboundResponse(status=None, duration_ms=_elapsed_ms(started), excerpt="", error=error)


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _log(host: str, result: OutboundResponse) -> None:
    if result.error:
        logger.warning("outbound POST to %s failed after %d ms: %s", host or "?", result.duration_ms, result.error)
    else:
        logger.info("outbound POST to %s: HTTP %s in %d ms", host, result.status, result.duration_ms)
