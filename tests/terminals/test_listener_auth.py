"""Who is at the other end of the socket: /auth, HTTP Basic, source address (contracts/terminal.md)."""
from __future__ import annotations

import pytest

from tests.factories import MerchantFactory, TerminalFactory

from .conftest import HttpClient, LineClient

pytestmark = pytest.mark.django_db(transaction=True)

NOT_AUTHORIZED = {"error": "Terminal not authorized", "error_code": 110}


def loopback_alias_available() -> bool:
    import socket

    sock = socket.socket()
    try:
        sock.bind(("127.0.0.2", 0))
    except OSError:
        return False
    finally:
        sock.close()
    return True


needs_127_0_0_2 = pytest.mark.skipif(not loopback_alias_available(), reason="127.0.0.2 is not a local address here")


@pytest.mark.parametrize(
    "parameters",
    [
        {"terminal_id": "T_UNKNOWN", "secret": "x"},
        {"terminal_id": "__real__", "secret": "wrong"},
        {"terminal_id": "__real__"},
        {"terminal_id": "__real__", "secret": 5},
        {"terminal_id": "x" * 5000, "secret": "x"},
    ],
)
def test_failed_auth_is_110_and_closes(lines, terminal, parameters) -> None:
    parameters = {k: (terminal.terminal_id if v == "__real__" else v) for k, v in parameters.items()}
    client: LineClient = lines()
    assert client.request("/auth", parameters, id=1) == {"id": 1, **NOT_AUTHORIZED}
    assert client.is_closed()


def test_a_request_before_auth_is_110_and_closes_then_a_new_connection_can_auth(lines, terminal) -> None:
    client = lines()
    assert client.request("/token", {"type": "CARD"}) == NOT_AUTHORIZED
    assert client.is_closed()  # issue 7 item 12: the first 110 closes
    client = lines()
    assert client.auth(terminal)["authenticated"] is True
    assert "token" in client.request("/token", {"type": "CARD"})


def test_disabled_terminal_or_merchant_cannot_authenticate(lines, rules) -> None:
    disabled = TerminalFactory(is_active=False)
    client = lines()
    assert client.auth(disabled) == NOT_AUTHORIZED
    assert client.is_closed()
    merchant_off = TerminalFactory(merchant=MerchantFactory(is_active=False))
    client = lines()
    assert client.auth(merchant_off) == NOT_AUTHORIZED


def test_terminal_disabled_after_auth_is_refused_from_then_on(client, lines, terminal) -> None:
    token = client.token()
    terminal.is_active = False
    terminal.save(update_fields=["is_active"])
    payment = {"token": token, "card_type": "VISA", "card_number": "4242424242424242", "pin": "4321", "amount": "1"}
    assert client.request("/payment/card", payment) == NOT_AUTHORIZED
    assert client.is_closed()
    again = lines()
    assert again.auth(terminal) == NOT_AUTHORIZED


def test_http_basic_disabled_terminal_is_401(http, rules) -> None:
    disabled = TerminalFactory(is_active=False)
    answer = http().get("/token?type=CARD", auth=(disabled.terminal_id, disabled.secret))
    assert answer.status == 401 and answer.json() == NOT_AUTHORIZED


# --- By source address --------------------------------------------------------------------------


def test_only_terminal_allowing_the_address_is_identified_without_credentials(lines, http, rules) -> None:
    reference = TerminalFactory(allowed_ips=["127.0.0.1"])
    TerminalFactory(allowed_ips=["127.0.0.1"], is_active=False)  # disabled ones do not count
    TerminalFactory(allowed_ips=["10.1.2.3"])
    TerminalFactory()  # no address list: never identified by address
    answer = lines().request("/token", {"type": "CARD"})
    assert "token" in answer, answer
    over_http = http().get("/token?type=CHECK")
    assert over_http.status == 200 and over_http.json()["type"] == "CHECK"
    assert http().get("/auth").json()["terminal_id"] == reference.terminal_id


def test_two_terminals_allowing_the_address_are_not_identified_by_it(lines, http, rules) -> None:
    first = TerminalFactory(allowed_ips=["127.0.0.1"])
    TerminalFactory(allowed_ips=["127.0.0.1", "10.0.0.1"])
    assert lines().request("/token", {"type": "CARD"}) == NOT_AUTHORIZED
    assert http().get("/token?type=CARD").status == 401
    # credentials still work for each of them
    client = lines()
    assert client.auth(first)["authenticated"] is True
    assert "token" in client.request("/token", {"type": "CARD"})


def test_terminal_with_allowed_ips_is_refused_from_elsewhere_even_with_its_secret(lines, http, rules) -> None:
    remote = TerminalFactory(allowed_ips=["127.0.0.2"])
    client = lines()  # from 127.0.0.1
    assert client.auth(remote) == NOT_AUTHORIZED
    assert client.is_closed()
    answer = http().get("/token?type=CARD", auth=(remote.terminal_id, remote.secret))
    assert answer.status == 401
    # and it is not identified by 127.0.0.1 either
    assert lines().request("/token", {"type": "CARD"}) == NOT_AUTHORIZED


@needs_127_0_0_2
def test_terminal_with_allowed_ips_is_served_from_its_address(listener, rules) -> None:
    remote = TerminalFactory(allowed_ips=["127.0.0.2"])
    with_secret = LineClient(listener.port, source="127.0.0.2")
    try:
        assert with_secret.auth(remote)["terminal_id"] == remote.terminal_id
    finally:
        with_secret.close()
    by_address = HttpClient(listener.port, source="127.0.0.2")
    try:
        assert by_address.get("/auth").json()["terminal_id"] == remote.terminal_id
    finally:
        by_address.close()


def test_basic_credentials_win_over_address_identification(http, rules) -> None:
    TerminalFactory(allowed_ips=["127.0.0.1"])
    other = TerminalFactory()
    answer = http().get("/auth", auth=(other.terminal_id, other.secret))
    assert answer.json()["terminal_id"] == other.terminal_id


def test_wrong_basic_credentials_are_not_rescued_by_the_address(http, rules) -> None:
    by_address = TerminalFactory(allowed_ips=["127.0.0.1"])
    answer = http().get("/token?type=CARD", auth=(by_address.terminal_id, "wrong"))
    assert answer.status == 401
