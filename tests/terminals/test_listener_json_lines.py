"""The terminal protocol over JSON lines, through a real socket (contracts/terminal.md)."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from payments import services
from payments.models import Token, Transaction
from payments.states import TransactionStatus
from tests.factories import TerminalFactory, TokenFactory

from .conftest import HAPPY_MASTER, HAPPY_VISA, LineClient, loads

pytestmark = pytest.mark.django_db(transaction=True)

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)\Z")


def card(token: str, **overrides: Any) -> dict[str, Any]:
    return {"token": token, "card_type": "VISA", "card_number": HAPPY_VISA, "pin": "4321", "amount": "12.50", **overrides}


def contactless(token: str, **overrides: Any) -> dict[str, Any]:
    return {"token": token, "card_type": "VISA", "card_number": HAPPY_VISA, "amount": "12.50", **overrides}


def check(token: str, **overrides: Any) -> dict[str, Any]:
    return {"token": token, "check_number": "12345678ABC", "amount": "12.50", **overrides}


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- /auth and /token ------------------------------------------------------------------------


def test_auth_frame_names_the_terminal_and_its_merchant(lines, terminal) -> None:
    answer = lines().auth(terminal)
    assert answer == {"authenticated": True, "terminal_id": terminal.terminal_id, "merchant": "Corner Shop"}


def test_token_response_fields(client: LineClient) -> None:
    before = datetime.now(timezone.utc).replace(microsecond=0)
    answer = client.request("/token", {"type": "CARD", "try_count": 5})
    assert set(answer) == {"token", "type", "created", "expire", "try_count"}
    assert re.fullmatch(r"[0-9a-f]{64}", answer["token"])
    assert answer["type"] == "CARD"
    assert answer["try_count"] == 5
    assert ISO_UTC.match(answer["created"]) and ISO_UTC.match(answer["expire"])
    created, expire = parse_iso(answer["created"]), parse_iso(answer["expire"])
    assert created.utcoffset() == timedelta(0)
    assert before <= created <= datetime.now(timezone.utc)
    assert expire - created == timedelta(seconds=180)


@pytest.mark.parametrize("payment_type", ["CARD", "CONTACTLESS", "CHECK"])
def test_token_types_and_default_try_count(client: LineClient, payment_type: str) -> None:
    answer = client.request("/token", {"type": payment_type})
    assert answer["type"] == payment_type
    assert answer["try_count"] == 3


def test_unlimited_token_and_try_count_as_string(client: LineClient) -> None:
    assert client.request("/token", {"type": "CARD", "try_count": -1})["try_count"] == -1
    assert client.request("/token", {"type": "CARD", "try_count": "2"})["try_count"] == 2


def test_each_token_is_unique(client: LineClient) -> None:
    assert len({client.token() for _ in range(5)}) == 5


# --- Successful payments -----------------------------------------------------------------------


def test_card_payment_approved(client: LineClient) -> None:
    token = client.token()
    client.send("/payment/card", card(token, card_number=HAPPY_MASTER, card_type="MASTER"))
    raw = client.read_raw()
    answer = loads(raw)
    assert answer == {
        "token": token,
        "type": "CARD",
        "card_type": "MASTER",
        "card_number": "555555******4444",
        "transaction": answer["transaction"],
        "amount": Decimal("12.50"),
    }
    assert isinstance(answer["transaction"], int)
    assert b'"amount":12.50' in raw.replace(b" ", b"")  # a JSON number, never a string
    assert HAPPY_MASTER.encode() not in raw
    txn = Transaction.objects.get(pk=answer["transaction"])
    assert txn.status == TransactionStatus.CAPTURED and txn.amount == Decimal("12.50")


@pytest.mark.parametrize("amount", ["500.000000", Decimal("500.000000"), 500, "500"])
def test_reference_client_amounts_come_back_as_a_number_with_two_decimals(client: LineClient, amount: Any) -> None:
    token = client.token()
    client.send("/payment/card", card(token, amount=amount))
    raw = client.read_raw()
    assert b'"amount":500.00' in raw.replace(b" ", b""), raw


def test_amount_as_json_number_in_the_wire_bytes(client: LineClient) -> None:
    token = client.token()
    client.send_raw(
        b'{"path": "/payment/card", "parameters": {"token": "' + token.encode()
        + b'", "card_type": "VISA", "card_number": "4242424242424242", "pin": "4321", "amount": 500.000000}}\n'
    )
    raw = client.read_raw()
    assert b'"amount":500.00' in raw.replace(b" ", b""), raw


def test_contactless_payment_approved(client: LineClient) -> None:
    token = client.token("CONTACTLESS")
    answer = client.request("/payment/contactless", contactless(token, amount="30.00"))
    assert answer["type"] == "CONTACTLESS"
    assert answer["card_number"] == "424242******4242"
    assert answer["amount"] == Decimal("30.00")
    assert "pin" not in answer


@pytest.mark.parametrize("path", ["/payment/check", "/payment/chek"])
def test_check_payment_under_both_spellings(client: LineClient, path: str) -> None:
    token = client.token("CHECK")
    answer = client.request(path, check(token))
    assert answer == {
        "token": token,
        "type": "CHECK",
        "check_number": "12345678ABC",
        "transaction": answer["transaction"],
        "amount": Decimal("12.50"),
    }


def test_id_is_echoed_whatever_its_type(client: LineClient) -> None:
    for request_id in (7, "abc", None, True, Decimal("1.5")):
        answer = client.request("/token", {"type": "CARD"}, id=request_id)
        assert "id" in answer and answer["id"] == request_id
    # and on errors, too
    answer = client.request("/nowhere", {}, id=42)
    assert answer["id"] == 42 and answer["error_code"] == 100
    # no id, no id in the answer
    assert "id" not in client.request("/token", {"type": "CARD"})


def test_pipelined_requests_are_answered_in_order(client: LineClient) -> None:
    frames = b"".join(
        b'{"id": %d, "path": "/token", "parameters": {"type": "CARD"}}\n' % n for n in range(10)
    )
    client.send_raw(frames)
    assert [client.read()["id"] for _ in range(10)] == list(range(10))


def test_approved_token_is_consumed(client: LineClient) -> None:
    token = client.token()
    assert "transaction" in client.request("/payment/card", card(token))
    assert client.request("/payment/card", card(token)) == {"error": "Wrong token", "error_code": 107}


# --- Every error code --------------------------------------------------------------------------


def error(code: int, message: str) -> dict[str, Any]:
    return {"error": message, "error_code": code}


@pytest.mark.parametrize(
    "path,parameters,detail",
    [
        ("/nowhere", {}, "unknown path"),
        ("/token", {}, "type"),
        ("/token", {"type": "CASH"}, "type"),
        ("/token", {"type": "CARD", "try_count": -2}, "try_count"),
        ("/token", {"type": "CARD", "try_count": "many"}, "try_count"),
        ("/token", {"type": "CARD", "try_count": 1.5}, "try_count"),
        ("/token", {"type": 3}, "type"),
        ("/payment/card", {"token": "x", "card_type": "VISA", "card_number": HAPPY_VISA, "amount": "1"}, "pin"),
        ("/payment/card", {"token": "x", "card_type": "AMEX", "card_number": HAPPY_VISA, "pin": "4321", "amount": "1"}, "card_type"),
        ("/payment/card", {"token": 5, "card_type": "VISA", "card_number": HAPPY_VISA, "pin": "4321", "amount": "1"}, "token"),
        ("/payment/contactless", {"token": "x", "card_number": HAPPY_VISA, "amount": "1"}, "card_type"),
        ("/payment/check", {"token": "x", "amount": "1"}, "check_number"),
        ("/payment/check", {"token": "x", "check_number": "12345678ABC", "amount": [1]}, "amount"),
    ],
)
def test_error_100_invalid_request(client: LineClient, path: str, parameters: dict[str, Any], detail: str) -> None:
    answer = client.request(path, parameters)
    assert answer["error_code"] == 100
    assert answer["error"].startswith("Invalid request: ")
    assert detail in answer["error"]


def test_error_100_when_parameters_is_not_an_object(client: LineClient) -> None:
    answer = client.request("/token", ["CARD"])  # type: ignore[arg-type]
    assert answer["error_code"] == 100


def test_error_101_card_banned_and_bin_banned(client: LineClient) -> None:
    token = client.token()
    assert client.request("/payment/card", card(token, card_number="0000000000000000")) == error(101, "Card banned")
    services.ban_add(kind="bin", value="555555")
    token = client.token()
    answer = client.request("/payment/card", card(token, card_number=HAPPY_MASTER, card_type="MASTER"))
    assert answer == error(101, "Card banned")


def test_error_102_check_banned(client: LineClient) -> None:
    token = client.token("CHECK")
    assert client.request("/payment/check", check(token, check_number="00000000AAA")) == error(102, "Check banned")
    declined = Transaction.objects.get(token__value=token)  # on either database path
    assert (declined.status, declined.check_number) == (TransactionStatus.DECLINED, "00000000AAA")


@pytest.mark.parametrize("pin", ["12a4", "123", "12345", "1234", "0000", "9999"])
def test_error_103_invalid_or_banned_pin(client: LineClient, pin: str) -> None:
    token = client.token()
    assert client.request("/payment/card", card(token, pin=pin)) == error(103, "Invalid pin")


@pytest.mark.parametrize(
    "number,masked",
    [
        ("4242", "****"),
        ("42424242424242421", "424242*******2421"),
        ("4242424242a42424", "424242******2424"),
    ],
)
def test_error_104_invalid_card_number_is_masked(client: LineClient, number: str, masked: str) -> None:
    token = client.token()
    client.send("/payment/card", card(token, card_number=number))
    raw = client.read_raw()
    assert loads(raw) == error(104, f"Invalid card_number {masked}")
    if len(number) > 10:
        assert number.encode() not in raw


@pytest.mark.parametrize("number", ["1234567890", "123456789012", "12345678-AB", ""])
def test_error_105_invalid_check_number(client: LineClient, number: str) -> None:
    token = client.token("CHECK")
    assert client.request("/payment/check", check(token, check_number=number)) == error(105, "Invalid check_number")


def test_error_106_card_and_contactless_limits(client: LineClient) -> None:
    token = client.token()
    assert client.request("/payment/card", card(token, amount="2500.01")) == error(106, "Card max amount 2500.00")
    token = client.token("CONTACTLESS")
    assert client.request("/payment/contactless", contactless(token, amount="30.01")) == error(
        106, "Contactless max amount 30.00"
    )
    token = client.token()
    assert "transaction" in client.request("/payment/card", card(token, amount="2500.00"))


def test_error_107_wrong_token_in_every_way(client: LineClient, terminal) -> None:
    wrong = error(107, "Wrong token")
    assert client.request("/payment/card", card("f" * 64)) == wrong  # unknown
    assert client.request("/payment/card", card("short")) == wrong  # not even a token's length
    expired = TokenFactory(terminal=terminal, expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    assert client.request("/payment/card", card(expired.value)) == wrong
    other = TokenFactory(terminal=TerminalFactory(merchant=terminal.merchant))
    assert client.request("/payment/card", card(other.value)) == wrong
    check_token = client.token("CHECK")
    assert client.request("/payment/card", card(check_token)) == wrong  # issued for another type
    used = client.token()
    assert "transaction" in client.request("/payment/card", card(used))
    assert client.request("/payment/card", card(used)) == wrong


def test_error_108_max_try(client: LineClient) -> None:
    token = client.token(try_count=2)
    assert client.request("/payment/card", card(token, pin="0000"))["error_code"] == 103
    assert client.request("/payment/card", card(token, card_number="1"))["error_code"] == 104
    assert client.request("/payment/card", card(token)) == error(108, "Max try")
    assert Token.objects.get(value=token).tries_used == 2


def test_unlimited_token_never_runs_out_of_tries(client: LineClient) -> None:
    token = client.token(try_count=-1)
    for _ in range(5):
        assert client.request("/payment/card", card(token, pin="1111"))["error_code"] == 103
    assert "transaction" in client.request("/payment/card", card(token))


@pytest.mark.parametrize(
    "amount", ["abc", "-5", "0", "0.00", "1.001", "12345678901", "1e3", "", " 1", Decimal("-1"), 0, "1,50"]
)
def test_error_109_invalid_amount(client: LineClient, amount: Any) -> None:
    token = client.token(try_count=-1)
    assert client.request("/payment/card", card(token, amount=amount)) == error(109, "Invalid amount")


@pytest.mark.parametrize("path,parameters", [
    ("/token", {"type": "CARD"}), ("/payment/card", card("f" * 64)), ("/nowhere", {}),
])
def test_error_110_before_authentication_then_the_connection_closes(lines, path, parameters) -> None:
    anonymous = lines()
    assert anonymous.request(path, parameters) == error(110, "Terminal not authorized")
    assert anonymous.is_closed()


@pytest.mark.parametrize(
    "number,message",
    [
        ("4000000000000002", "Declined card declined"),
        ("4000000000009995", "Declined insufficient funds"),
        ("4000000000000069", "Declined expired card"),
        ("4000000000000119", "Declined acquirer processing error"),
    ],
)
def test_error_111_acquirer_declines_and_failures(client: LineClient, number: str, message: str) -> None:
    token = client.token()
    assert client.request("/payment/card", card(token, card_number=number)) == error(111, message)
    txn = Transaction.objects.get(token__value=token)
    assert txn.status in (TransactionStatus.DECLINED, TransactionStatus.ERROR)


def test_declined_payment_uses_a_try_but_not_the_token(client: LineClient) -> None:
    token = client.token(try_count=2)
    assert client.request("/payment/card", card(token, card_number="4000000000000002"))["error_code"] == 111
    assert "transaction" in client.request("/payment/card", card(token))


# --- The contract's order of checks ------------------------------------------------------------


def test_order_token_before_everything(client: LineClient) -> None:
    everything_wrong = card("f" * 64, card_number="1", pin="x", amount="-1")
    assert client.request("/payment/card", everything_wrong)["error_code"] == 107


def test_order_tries_before_number_format(client: LineClient) -> None:
    token = client.token(try_count=1)
    client.request("/payment/card", card(token, pin="0000"))
    assert client.request("/payment/card", card(token, card_number="1", amount="-1"))["error_code"] == 108


def test_order_number_format_before_ban_pin_amount(client: LineClient) -> None:
    token = client.token(try_count=-1)
    assert client.request("/payment/card", card(token, card_number="000", pin="0000", amount="-1"))["error_code"] == 104
    token = client.token("CHECK", try_count=-1)
    assert client.request("/payment/check", check(token, check_number="00000000AA", amount="-1"))["error_code"] == 105


def test_order_ban_before_pin_and_amount(client: LineClient) -> None:
    token = client.token(try_count=-1)
    banned = card(token, card_number="0000000000000000", pin="12", amount="-1")
    assert client.request("/payment/card", banned)["error_code"] == 101
    token = client.token("CHECK", try_count=-1)
    assert client.request("/payment/check", check(token, check_number="00000000AAA", amount="-1"))["error_code"] == 102


def test_order_pin_before_amount_and_limit(client: LineClient) -> None:
    token = client.token(try_count=-1)
    assert client.request("/payment/card", card(token, pin="1234", amount="-1"))["error_code"] == 103
    assert client.request("/payment/card", card(token, pin="1234", amount="99999"))["error_code"] == 103


def test_order_amount_before_limit_and_limit_before_acquirer(client: LineClient) -> None:
    token = client.token(try_count=-1)
    assert client.request("/payment/card", card(token, amount="99999.999"))["error_code"] == 109
    declined_card_over_limit = card(token, card_number="4000000000000002", amount="2500.01")
    assert client.request("/payment/card", declined_card_over_limit)["error_code"] == 106
    assert client.request("/payment/card", card(token, card_number="4000000000000002"))["error_code"] == 111


def test_every_attempt_past_the_token_checks_uses_a_try(client: LineClient) -> None:
    token = client.token(try_count=6)
    for bad in (
        {"card_number": "1"},  # 104
        {"card_number": "0000000000000000"},  # 101
        {"pin": "0000"},  # 103
        {"amount": "x"},  # 109
        {"amount": "2600"},  # 106
        {"card_number": "4000000000000002"},  # 111
    ):
        assert "error_code" in client.request("/payment/card", card(token, **bad))
    assert Token.objects.get(value=token).tries_used == 6
    assert client.request("/payment/card", card(token))["error_code"] == 108
