"""Who is calling: the client address of an HTTP request, behind proxies or not.

Every HTTP door that checks a caller's address (esipay's merchant servers
now; the secure API and IOTP later) asks ``caller_address(request)``, never
``REMOTE_ADDR`` or ``X-Forwarded-For`` directly.

``X-Forwarded-For`` is a list any client can start: each proxy appends the
address of the peer it received the request from. Only entries appended by
proxies we run can be believed, so the header is read only when the direct
peer (``REMOTE_ADDR``) is one of ``TRUSTED_PROXIES``, and from the right:
the first entry that is not a trusted proxy is the caller. Everything to its
left was written by the caller itself and is ignored. A header from a peer
that is not a trusted proxy changes nothing.

``TRUSTED_PROXIES`` holds addresses and networks (``10.0.0.5``,
``10.0.0.0/8``, ``2001:db8::/32``) and ``unix`` for a proxy that connects
over a Unix socket (the WSGI server then has no peer address). Empty (the
default): nobody is trusted and the caller is ``REMOTE_ADDR``.

Imported by the settings (to refuse a bad ``TRUSTED_PROXIES`` at start-up):
standard library, ``django.conf`` and ``django.core.exceptions`` only at module level.
"""
from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import TYPE_CHECKING, Union

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from django.http import HttpRequest

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

UNIX_SOCKET = "unix"
# A proxy chain longer than this is not ours: stop reading rather than walk a
# header the caller padded (servers cap headers at ~8 KiB anyway).
MAX_HOPS = 32


class TrustedProxies:
    """The parsed ``TRUSTED_PROXIES``: networks, and whether a Unix-socket peer is a proxy."""

    def __init__(self, networks: tuple[Network, ...], unix_socket: bool) -> None:
        self.networks = networks
        self.unix_socket = unix_socket

    def __contains__(self, address: Address) -> bool:
        return any(address.version == net.version and address in net for net in self.networks)


def parse_trusted_proxies(entries: list[str] | tuple[str, ...]) -> TrustedProxies:
    """``TRUSTED_PROXIES`` parsed; a typo is refused (ImproperlyConfigured), not silently ignored.

    A network with host bits set (``10.0.0.5/8``) is refused too: it is
    ambiguous whether one host or the whole network was meant.
    """
    networks: list[Network] = []
    unix_socket = False
    for raw in entries:
        entry = str(raw).strip()
        if not entry:
            continue
        if entry.lower() == UNIX_SOCKET:
            unix_socket = True
            continue
        try:
            network = ipaddress.ip_network(entry, strict=True)
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"TRUSTED_PROXIES: {entry!r} is not an IP address or network ({exc}); "
                "give addresses or networks such as 10.0.0.5, 10.0.0.0/8, 2001:db8::/32, or 'unix'"
            ) from None
        if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
            mapped = network.network_address.ipv4_mapped
            if mapped is not None:  # ::ffff:10.0.0.5 is 10.0.0.5
                network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
        networks.append(network)
    return TrustedProxies(tuple(networks), unix_socket)


@lru_cache(maxsize=8)
def _trusted(entries: tuple[str, ...]) -> TrustedProxies:
    return parse_trusted_proxies(entries)


def trusted_proxies() -> TrustedProxies:
    return _trusted(tuple(getattr(settings, "TRUSTED_PROXIES", ()) or ()))


def parse_address(text: str) -> Address | None:
    """An address as a header or REMOTE_ADDR writes it, or None.

    Accepts ``203.0.113.7``, ``2001:db8::7``, and with a port, as some proxies
    write them, ``203.0.113.7:443`` and ``[2001:db8::7]:443``. IPv4-mapped
    IPv6 (``::ffff:203.0.113.7``, a dual-stack socket) is the IPv4 address.
    """
    text = text.strip()
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]")
        if not bracket or (port and not (port.startswith(":") and port[1:].isdigit())):
            return None
        text = host
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not port.isdigit():
            return None
        text = host
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def forwarded_chain(request: HttpRequest) -> list[str]:
    """The entries of every ``X-Forwarded-For`` header, left to right (servers join repeats with ',')."""
    header = request.META.get("HTTP_X_FORWARDED_FOR", "")
    return [entry.strip() for entry in header.split(",")] if header.strip() else []


def resolve_caller(peer: str, chain: list[str], trusted: TrustedProxies) -> str:
    """The caller's address given the direct peer and the forwarded chain; "" if it cannot be known.

    Pure (no request, no settings) so the rule is tested on its own.
    """
    peer = peer.strip()
    peer_address: Address | None = None
    if peer:
        peer_address = parse_address(peer)
        if peer_address is None:
            return ""  # no address we can check: nobody is registered for it
        if peer_address not in trusted:
            return str(peer_address)  # a direct caller: its headers change nothing
    elif not trusted.unix_socket:
        return ""  # no peer address (a Unix socket) and no proxy trusted on one
    if not chain:
        return str(peer_address) if peer_address is not None else ""
    leftmost = ""
    for hops, entry in enumerate(reversed(chain)):
        if hops >= MAX_HOPS:
            return ""
        address = parse_address(entry)
        if address is None:
            # Our proxies write addresses: garbage here was not written by them
            # (or they are misconfigured). Guessing could let a caller choose.
            return ""
        if address not in trusted:
            return str(address)
        leftmost = str(address)
    return leftmost  # every hop is ours: the left-most is the machine that started the request


def caller_address(request: HttpRequest) -> str:
    """The address of whoever sent this request, as text ("" when it cannot be known)."""
    return resolve_caller(request.META.get("REMOTE_ADDR", "") or "", forwarded_chain(request), trusted_proxies())
