"""Card rules at the terminal door, through a real socket (contracts/terminal.md):
the Luhn check (104), a card_type of another network (100) in the contract's
order, limits of the number's real brand, amounts in the currency's precision
(JPY: 109 for 12.50), and a currency without limits refused."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from payments.models import CardLimit, Token, Transaction
from payments.states import TransactionStatus
from tests.factories import CardLimitFactory, MerchantFactory, TerminalFactory

from .conftest import HAPPY_MASTER, HAPPY_VISA, LineClient, loads

pytestmark = pytest.mark.django_db(transaction=True)

ELECTRON = "4026000000000002"


def card(token: str, **overrides: Any) -> dict[str, Any]:
    return {"token": token, "card_type": "VISA", "card_number": HAPPY_VISA, "pin": "4321", "amount": "12.50", **overrides}


def tries_used(token: str) -> int:
    return Token.objects.get(value=token).tries_used


def error(code: int, message: str) -> dict[str, Any]:
    return {"error": message, "error_code": code}


def connected(lines: Any, terminal: Any) -> LineClient:
    client = lines()
    assert client.auth(terminal)["authenticated"] is True
    return client


# --- 17. Luhn: 104 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/payment/card", "/payment/contactless"])
def test_a_luhn_invalid_number_is_104_and_uses_a_try(client: LineClient, path: str) -> None:
    token = client.token("CARD" if path == "/payment/card" else "CONTACTLESS")
    parameters = card(token, card_number="4242424242424241")
    if path == "/payment/contactless":
        del parameters["pin"]
    assert client.request(path, parameters) == error(104, "Invalid card_number 424242******4241")
    assert tries_used(token) == 1
    assert not Transaction.objects.filter(status=TransactionStatus.CAPTURED).exists()


def test_the_banned_card_is_luhn_valid_and_still_101(client: LineClient) -> None:
    token = client.token()
    assert client.request("/payment/card", card(token, card_number="0000000000000000")) == error(101, "Card banned")


# --- 8. The network of the number, and its real brand ---------------------------------------------


def test_a_card_type_of_another_network_is_100_and_uses_a_try(client: LineClient) -> None:
    token = client.token()
    answer = client.request("/payment/card", card(token, card_type="MASTER"))
    assert answer["error_code"] == 100
    assert answer["error"] == "Invalid request: card_type MASTER is not the card number's network (Visa)"
    assert tries_used(token) == 1
    answer = client.request("/payment/card", card(token, card_type="VISA", card_number=HAPPY_MASTER))
    assert answer["error_code"] == 100 and "(Mastercard)" in answer["error"]
    # The token is not spent: the right card_type pays with it.
    assert client.request("/payment/card", card(token))["transaction"]


@pytest.mark.parametrize("card_type", ["VISA", "ELECTRON"])
def test_visa_and_electron_are_both_visa(client: LineClient, card_type: str) -> None:
    for number in (HAPPY_VISA, ELECTRON):
        answer = client.request("/payment/card", card(client.token(), card_type=card_type, card_number=number))
        assert answer.get("card_type") == card_type, answer


def test_a_number_of_no_known_network_is_not_100(client: LineClient) -> None:
    """terminal.md: 0000000000000000 (banned) is of no network; it reaches the ban check."""
    token = client.token()
    assert client.request("/payment/card", card(token, card_type="MASTER", card_number="0000000000000000")) == error(
        101, "Card banned"
    )


def test_order_token_tries_luhn_network_ban_pin(client: LineClient) -> None:
    from payments import services

    token = client.token(try_count=2)
    # 107 before anything: a token that does not exist.
    assert client.request("/payment/card", card("f" * 64, card_type="MASTER"))["error_code"] == 107
    # 104 (format and Luhn) before 100 (network).
    assert client.request("/payment/card", card(token, card_type="MASTER", card_number="4242424242424241"))[
        "error_code"] == 104
    # 100 before 101 (a banned BIN), 103 (a banned PIN), 109 (amount) and 106 (limit).
    services.ban_add(kind="bin", value="424242")
    wrong_everything = card(token, card_type="MASTER", pin="1234", amount="99999.999")
    assert client.request("/payment/card", wrong_everything)["error_code"] == 100
    # 108 once the tries are used, before the network.
    assert client.request("/payment/card", card(token, card_type="MASTER")) == error(108, "Max try")


def test_the_limit_is_the_numbers_brand_not_the_claimed_type(client: LineClient) -> None:
    """An Electron card sent as VISA is under Electron's limit (1700.00), not Visa's (2500.00)."""
    answer = client.request("/payment/card", card(client.token(), card_number=ELECTRON, amount="2000.00"))
    assert answer == error(106, "Card max amount 1700.00")
    txn = Transaction.objects.get(status=TransactionStatus.DECLINED)
    assert txn.card_brand == "ELECTRON" and txn.failure_code == "limit_exceeded"
    assert client.request("/payment/card", card(client.token(), amount="2000.00"))["transaction"]  # a real Visa
    assert Transaction.objects.get(status=TransactionStatus.CAPTURED).card_brand == "VISA"


def test_http_answers_100_with_status_400(http: Any, terminal: Any) -> None:
    client = http()
    auth = (terminal.terminal_id, terminal.secret)
    token = client.get("/token?type=CARD", auth=auth).json()["token"]
    response = client.get(
        f"/payment/card?token={token}&card_type=MASTER&card_number={HAPPY_VISA}&pin=4321&amount=5", auth=auth
    )
    assert response.status == 400 and response.json()["error_code"] == 100


# --- 9. Amounts in the currency's precision --------------------------------------------------------


@pytest.fixture
def yen_terminal(rules: None) -> Any:
    for kind, amount in {"VISA": "375000", "MASTER": "450000", "ELECTRON": "255000", "CONTACTLESS": "4500"}.items():
        CardLimitFactory(kind=kind, currency="JPY", max_amount=Decimal(amount))
    return TerminalFactory(merchant=MerchantFactory(name="Tokyo Shop", currency="JPY"))


@pytest.mark.parametrize("amount", ["12.50", "0.5", Decimal("1200.01")])
def test_yen_with_a_fraction_is_109(lines: Any, yen_terminal: Any, amount: Any) -> None:
    client = connected(lines, yen_terminal)
    assert client.request("/payment/card", card(client.token(), amount=amount)) == error(109, "Invalid amount")


def test_yen_amounts_are_whole_and_answered_without_decimals(lines: Any, yen_terminal: Any) -> None:
    client = connected(lines, yen_terminal)
    client.send("/payment/card", card(client.token(), amount="1200.000000"))
    raw = client.read_raw()
    assert raw.endswith(b',"amount":1200}\n'), raw  # a JSON number with JPY's 0 decimals
    txn = Transaction.objects.get(pk=loads(raw)["transaction"])
    assert txn.currency == "JPY" and txn.amount == Decimal("1200") and txn.status == TransactionStatus.CAPTURED
    answer = client.request("/payment/card", card(client.token(), amount="375001"))
    assert answer == error(106, "Card max amount 375000")  # the limit in yen, no decimals


def test_euro_amounts_keep_two_decimals(client: LineClient) -> None:
    client.send("/payment/card", card(client.token(), amount="12.5"))
    assert client.read_raw().endswith(b',"amount":12.50}\n')


# --- 10. A currency without limits ----------------------------------------------------------------


def test_a_currency_without_limits_is_refused_not_unlimited(lines: Any, rules: None) -> None:
    dollar_terminal = TerminalFactory(merchant=MerchantFactory(name="NYC Shop", currency="USD"))
    assert not CardLimit.objects.filter(currency="USD").exists()
    client = connected(lines, dollar_terminal)
    token = client.token()
    assert client.request("/payment/card", card(token, amount="5.00")) == error(
        111, "Declined no card limits configured for USD (VISA)"
    )
    assert not Transaction.objects.filter(status=TransactionStatus.CAPTURED).exists()
    CardLimitFactory(kind="VISA", currency="USD", max_amount=Decimal("100.00"))
    assert client.request("/payment/card", card(token, amount="5.00"))["transaction"]
    contactless = {"token": client.token("CONTACTLESS"), "card_type": "VISA", "card_number": HAPPY_VISA, "amount": "5"}
    assert client.request("/payment/contactless", contactless) == error(
        111, "Declined no card limits configured for USD (CONTACTLESS)"
    )


def test_a_card_of_no_known_network_needs_the_other_limit(client: LineClient) -> None:
    """9999999999999995 is Luhn-valid and of no network: the OTHER limit applies, and
    the terminal fixture's data has none, so it is refused rather than unlimited."""
    answer = client.request("/payment/card", card(client.token(), card_number="9999999999999995"))
    assert answer == error(111, "Declined no card limits configured for EUR (OTHER)")
    CardLimitFactory(kind="OTHER", currency="EUR", max_amount=Decimal("1700.00"))
    answer = client.request("/payment/card", card(client.token(), card_number="9999999999999995", amount="1700.01"))
    assert answer == error(106, "Card max amount 1700.00")
