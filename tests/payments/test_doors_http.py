"""The caller's address behind proxies (payments/doors/http.py): X-Forwarded-For is
read only from a trusted proxy, from the right, and never lets a caller choose."""
from __future__ import annotations

import ipaddress

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory
from hypothesis import given
from hypothesis import strategies as st

from payments.doors.http import caller_address, parse_address, parse_trusted_proxies, resolve_caller

PROXIES = parse_trusted_proxies(["10.0.0.5", "192.168.0.0/16", "2001:db8::/48"])
NONE = parse_trusted_proxies([])


@pytest.mark.parametrize(
    ("peer", "chain", "expected"),
    [
        # The direct peer is not a proxy: a forged header changes nothing.
        ("203.0.113.66", ["203.0.113.7"], "203.0.113.66"),
        # One trusted proxy: the entry it appended.
        ("10.0.0.5", ["203.0.113.7"], "203.0.113.7"),
        # The caller wrote its own header in front: right-most untrusted wins.
        ("10.0.0.5", ["203.0.113.7", "198.51.100.9"], "198.51.100.9"),
        # Two of our proxies in a row: skip both.
        ("10.0.0.5", ["203.0.113.66", "203.0.113.7", "192.168.1.2"], "203.0.113.7"),
        # A proxy that calls us itself (no header): the proxy.
        ("10.0.0.5", [], "10.0.0.5"),
        # Every hop ours: the left-most is the machine that began the request.
        ("10.0.0.5", ["192.168.3.3", "192.168.1.2"], "192.168.3.3"),
        # Ports, as some proxies write them; IPv6 in brackets; IPv4-mapped IPv6.
        ("10.0.0.5", ["203.0.113.7:51234"], "203.0.113.7"),
        ("10.0.0.5", ["[2001:db8:ffff::7]:443"], "2001:db8:ffff::7"),
        ("::ffff:10.0.0.5", ["::ffff:203.0.113.7"], "203.0.113.7"),
        ("2001:db8:0:1::2", ["2001:DB8:FFFF:0::7"], "2001:db8:ffff::7"),
        # Garbage where our proxy would have written an address: unknown, never guessed.
        ("10.0.0.5", ["203.0.113.7", "unknown"], ""),
        ("10.0.0.5", ["203.0.113.7", ""], ""),
        ("10.0.0.5", ["203.0.113.7:http"], ""),
        # Garbage to the left of the caller's entry was the caller's: ignored.
        ("10.0.0.5", ["<script>", "203.0.113.7"], "203.0.113.7"),
        # No usable peer address at all.
        ("", ["203.0.113.7"], ""),
        ("not-an-address", [], ""),
    ],
)
def test_resolve_caller(peer, chain, expected) -> None:  # type: ignore[no-untyped-def]
    assert resolve_caller(peer, chain, PROXIES) == expected


def test_no_proxy_trusted_means_remote_addr_whatever_the_header() -> None:
    assert resolve_caller("10.0.0.5", ["203.0.113.7"], NONE) == "10.0.0.5"


def test_a_unix_socket_proxy_is_trusted_only_when_configured() -> None:
    assert resolve_caller("", ["203.0.113.7"], parse_trusted_proxies(["unix"])) == "203.0.113.7"
    assert resolve_caller("", [], parse_trusted_proxies(["unix"])) == ""
    assert resolve_caller("", ["203.0.113.7"], PROXIES) == ""


def test_a_padded_header_is_not_walked_without_end() -> None:
    chain = ["203.0.113.7"] + ["192.168.0.1"] * 40
    assert resolve_caller("10.0.0.5", chain, PROXIES) == ""


@pytest.mark.parametrize("entry", ["10.0.0.300", "10.0.0.5/8", "proxy.internal", "10.0.0.0/33"])
def test_a_bad_trusted_proxies_entry_is_refused(entry) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ImproperlyConfigured, match="TRUSTED_PROXIES"):
        parse_trusted_proxies(["10.0.0.1", entry])


def test_ipv4_mapped_trusted_network_matches_ipv4_peers() -> None:
    trusted = parse_trusted_proxies(["::ffff:10.0.0.0/104"])
    assert resolve_caller("10.1.2.3", ["203.0.113.7"], trusted) == "203.0.113.7"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("203.0.113.7", "203.0.113.7"), (" 203.0.113.7 ", "203.0.113.7"), ("[::1]", "::1"), ("[::1]:80", "::1"),
     ("[::1]x", None), ("1.2.3.4:", None), ("1.2.3.4:99999999", "1.2.3.4"), ("", None), ("::1", "::1")],
)
def test_parse_address(text, expected) -> None:  # type: ignore[no-untyped-def]
    address = parse_address(text)
    assert (None if address is None else str(address)) == expected


# --- The rule as a property: whatever the caller puts in front, it cannot choose. ------------------

public_v4 = st.integers(min_value=int(ipaddress.IPv4Address("1.0.0.0")), max_value=int(ipaddress.IPv4Address("9.255.255.255"))
                        ).map(lambda n: str(ipaddress.IPv4Address(n)))
ours = st.sampled_from(["10.0.0.5", "192.168.0.1", "192.168.200.17"])
junk = st.one_of(public_v4, ours, st.text(max_size=20).filter(lambda t: "," not in t))


@given(forged=st.lists(junk, max_size=6), caller=public_v4, hops=st.lists(ours, max_size=4), proxy=ours)
def test_the_caller_cannot_choose_its_address(forged, caller, hops, proxy) -> None:  # type: ignore[no-untyped-def]
    """The caller may send any X-Forwarded-For; our proxies append the caller's real
    address and then each other's. The answer is always the real address."""
    chain = [*forged, caller, *hops]
    assert resolve_caller(proxy, chain, PROXIES) == caller


@given(forged=st.lists(junk, max_size=6), caller=public_v4)
def test_without_a_trusted_peer_the_header_is_never_read(forged, caller) -> None:  # type: ignore[no-untyped-def]
    assert resolve_caller(caller, forged, PROXIES) == caller
    assert resolve_caller(caller, forged, NONE) == caller


# --- Through a request and the setting. -----------------------------------------------------------


def test_caller_address_reads_the_setting(settings) -> None:  # type: ignore[no-untyped-def]
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.7")
    settings.TRUSTED_PROXIES = []
    assert caller_address(request) == "10.0.0.5"
    settings.TRUSTED_PROXIES = ["10.0.0.0/24"]
    assert caller_address(request) == "203.0.113.7"
