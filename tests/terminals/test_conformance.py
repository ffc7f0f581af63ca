"""The terminal protocol's conformance suite (docs/terminal.md), through real sockets.

One suite for every database path of the listener: it uses only the public
fixtures (``start_listener``, ``terminal``, the factories) and the wire, and
reads the database only to check what the contract says must be there. Each
step asserts the exact answer line and the whole transaction table after it,
so that two paths that differ in a single column, event or try fail here.

- ``test_every_error_code_in_the_contracts_order``: one scripted walk through
  codes 100-111, the approved card, contactless and check payments, and the
  precedence of two rules failing at once.
- ``test_one_token_one_approval_under_concurrency``: many payments racing on
  each of many tokens over many connections; one approval per token and the
  database invariants.
- ``test_an_unused_token_expires``: a token's life is TERMINAL_TOKEN_TTL_SECONDS.
- ``test_http_answers_the_same_codes_with_the_contracts_statuses``: HTTP
  statuses 200/400/401 for the same rules.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from payments import cards, services
from payments.models import Event, Token, Transaction
from payments.states import TOKEN_HOLDING_STATUSES, EventType, TransactionStatus
from terminals.models import Terminal
from tests.factories import MerchantFactory, TerminalFactory

from .conftest import HAPPY_MASTER, HAPPY_VISA, HttpClient, LineClient, RunningListener, loads

pytestmark = pytest.mark.django_db(transaction=True)

ELECTRON = "4026000000000002"
BIN_BANNED = "4111111111111111"  # Luhn-valid Visa; its BIN 411111 is banned by the scenario
BANNED_CARD = "0000000000000000"  # on the shipped ban list (the ``rules`` fixture); of no network
BANNED_CHECK = "00000000AAA"
LUHN_BAD = "4242424242424241"
DECLINED = "4000000000000002"
INSUFFICIENT = "4000000000009995"
EXPIRED_CARD = "4000000000000069"
PROCESS_ERROR = "4000000000000119"
# Every full card number the scenario sends: none may reach a log line.
PANS = (HAPPY_VISA, HAPPY_MASTER, ELECTRON, BIN_BANNED, LUHN_BAD, DECLINED, INSUFFICIENT, EXPIRED_CARD, PROCESS_ERROR)

FAILED = EventType.PAYMENT_FAILED.value
SUCCEEDED = EventType.PAYMENT_SUCCEEDED.value


def error(code: int, message: str) -> dict[str, Any]:
    return {"error": message, "error_code": code}


WRONG_TOKEN = error(107, "Wrong token")
MAX_TRY = error(108, "Max try")
INVALID_AMOUNT = error(109, "Invalid amount")
INVALID_PIN = error(103, "Invalid pin")
CARD_BANNED = error(101, "Card banned")
NOT_AUTHORIZED = error(110, "Terminal not authorized")


def card(token: str, **overrides: Any) -> dict[str, Any]:
    return {"token": token, "card_type": "VISA", "card_number": HAPPY_VISA, "pin": "4321", "amount": "12.50",
            **overrides}


def contactless(token: str, **overrides: Any) -> dict[str, Any]:
    return {"token": token, "card_type": "VISA", "card_number": HAPPY_VISA, "amount": "12.50", **overrides}


def check(token: str, **overrides: Any) -> dict[str, Any]:
    return {"token": token, "check_number": "12345678ABC", "amount": "20", **overrides}


def tries_used(token: str) -> int:
    return Token.objects.get(value=token).tries_used


def snapshot() -> list[dict[str, Any]]:
    """The whole transaction table, as the contract and the back office see it."""
    rows = []
    for txn in Transaction.objects.select_related("token", "terminal").prefetch_related("events").order_by("id"):
        rows.append({
            "token": txn.token.value if txn.token else None,
            "terminal": txn.terminal.terminal_id if txn.terminal else None,
            "door": txn.door,
            "method": txn.method,
            "status": txn.status,
            "operation": txn.operation,
            "failure_code": txn.failure_code,
            "amount": txn.amount,
            "authorized": txn.authorized_amount,
            "captured": txn.captured_amount,
            "currency": txn.currency,
            "card_bin": txn.card_bin,
            "card_last4": txn.card_last4,
            "card_fingerprint": txn.card_fingerprint,
            "card_brand": txn.card_brand,
            "check_number": txn.check_number,
            "events": sorted(event.type for event in txn.events.all()),
        })
    return rows


def row(
    token: str, terminal: Any, *, method: str, status: str, amount: str, failure_code: str = "",
    card_number: str | None = None, brand: str = "", check_number: str = "",
) -> dict[str, Any]:
    """An expected row: ``card_number`` is the number whose BIN, last four and
    keyed fingerprint the row keeps (None: no card data kept)."""
    captured = status == TransactionStatus.CAPTURED
    return {
        "token": token,
        "terminal": terminal.terminal_id,
        "door": "terminal",
        "method": method,
        "status": status,
        "operation": "",
        "failure_code": failure_code,
        "amount": Decimal(amount),
        "authorized": Decimal(amount) if captured else Decimal("0"),
        "captured": Decimal(amount) if captured else Decimal("0"),
        "currency": "EUR",
        "card_bin": card_number[:6] if card_number else "",
        "card_last4": card_number[-4:] if card_number else "",
        "card_fingerprint": cards.card_facts(card_number).fingerprint if card_number else "",
        "card_brand": brand,
        "check_number": check_number,
        "events": [SUCCEEDED] if captured else [FAILED],  # declined and error rows: payment.failed
    }


class Script:
    """A till on one JSON-lines connection that checks, after every request,
    the exact answer (with its echoed id), the token's tries and the whole
    transaction table."""

    def __init__(self, client: LineClient, terminal: Any) -> None:
        self.client = client
        self.terminal = terminal
        self.rows: list[dict[str, Any]] = []
        self.next_id = 0

    def ask(self, path: str, parameters: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        answer = self.client.request(path, parameters, id=self.next_id)
        assert answer.pop("id", None) == self.next_id, answer  # every answer echoes its request's id
        return answer

    def token(self, kind: str = "CARD", try_count: int | None = None) -> str:
        parameters: dict[str, Any] = {"type": kind}
        if try_count is not None:
            parameters["try_count"] = try_count
        answer = self.ask("/token", parameters)
        value = answer.get("token")
        assert isinstance(value, str) and len(value) == 64 and int(value, 16) >= 0, answer
        created = datetime.strptime(answer["created"], "%Y-%m-%dT%H:%M:%SZ")
        expire = datetime.strptime(answer["expire"], "%Y-%m-%dT%H:%M:%SZ")
        assert answer == {"token": value, "type": kind, "created": answer["created"], "expire": answer["expire"],
                          "try_count": 3 if try_count is None else try_count}
        assert expire - created == timedelta(seconds=settings.TERMINAL_TOKEN_TTL_SECONDS)
        stored = Token.objects.get(value=value)
        assert (stored.terminal_id, stored.payment_type, stored.try_count, stored.tries_used) == (
            self.terminal.pk, kind.lower(), 3 if try_count is None else try_count, 0)
        return value

    def step(
        self, label: str, path: str, parameters: dict[str, Any], answer: dict[str, Any], *,
        tries: int | None = None, declined: dict[str, Any] | None = None,
    ) -> None:
        """One refused request: its answer, the token's tries after it, and the
        declined row it adds (``declined``: the row's fields; None: no row)."""
        got = self.ask(path, parameters)
        assert got == answer, label
        if declined is not None:
            fields = {"status": TransactionStatus.DECLINED, **declined}
            self.rows.append(row(parameters["token"], self.terminal, amount=parameters["amount"], **fields))
        assert snapshot() == self.rows, label
        if tries is not None:
            assert tries_used(parameters["token"]) == tries, label

    def approved(
        self, label: str, path: str, parameters: dict[str, Any], body: dict[str, Any], *, tries: int,
        expected_row: dict[str, Any], raw_amount: bytes,
    ) -> int:
        """One approved payment: its exact body (``transaction`` aside), the
        amount as written on the wire, its captured row and event."""
        self.next_id += 1
        self.client.send(path, parameters, id=self.next_id)
        raw = self.client.read_raw()
        assert raw.endswith(b',"amount":' + raw_amount + b"}\n"), label  # a JSON number, the currency's decimals
        got = loads(raw)
        number = got.get("transaction")
        assert isinstance(number, int) and not isinstance(number, bool), (label, got)
        assert got == {"id": self.next_id, **body, "transaction": number}, label
        self.rows.append(expected_row)
        assert snapshot() == self.rows, label
        assert Transaction.objects.get(pk=number).token.value == parameters["token"], label
        assert tries_used(parameters["token"]) == tries, label
        return number


def test_every_error_code_in_the_contracts_order(  # noqa: PLR0915 - one script, on purpose
    start_listener: Callable[..., RunningListener], terminal: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    services.ban_add(kind="bin", value=BIN_BANNED[:6])
    other = TerminalFactory(merchant=MerchantFactory(name="Other Shop"))
    doomed = TerminalFactory(merchant=terminal.merchant)  # a till staff will disable mid-connection
    running = start_listener()  # after the rules: a path may read them when it starts
    port = running.port

    till = LineClient(port)
    assert till.request("/auth", {"terminal_id": terminal.terminal_id, "secret": terminal.secret}, id="a") == {
        "id": "a", "authenticated": True, "terminal_id": terminal.terminal_id, "merchant": "Corner Shop"}
    pos = Script(till, terminal)
    T = terminal  # noqa: N806 - short, for the many rows

    # --- 110: an unidentified peer learns nothing, and the connection is closed -----------------------
    probe = pos.token()  # a real token: an unidentified payment with it must not touch it
    for frame_path, parameters in [
        ("/token", {"type": "CARD"}),
        ("/payment/card", card(probe)),
        ("/nope", {"x": 1}),  # 110, not 100: not even the path is judged
        ("/payment/card", {"token": 7}),
    ]:
        stranger = LineClient(port)
        assert stranger.request(frame_path, parameters, id=1) == {"id": 1, **NOT_AUTHORIZED}, frame_path
        assert stranger.is_closed(), frame_path
        stranger.close()
    for credentials in [
        {"terminal_id": terminal.terminal_id, "secret": "wrong"},
        {"terminal_id": "TNOSUCHTERMINAL", "secret": terminal.secret},
        {"terminal_id": terminal.terminal_id},  # no secret
    ]:
        stranger = LineClient(port)
        assert stranger.request("/auth", credentials) == NOT_AUTHORIZED
        assert stranger.is_closed()
        stranger.close()
    # A terminal disabled after it authenticated: 110 for a token and for a payment, no try used.
    disabled = LineClient(port)
    assert disabled.auth(doomed)["authenticated"] is True
    doomed_token = disabled.token()
    Terminal.objects.filter(pk=doomed.pk).update(is_active=False)
    assert disabled.request("/payment/card", card(doomed_token)) == NOT_AUTHORIZED
    assert disabled.is_closed()
    disabled.close()
    disabled = LineClient(port)
    assert disabled.auth(doomed) == NOT_AUTHORIZED
    disabled.close()
    assert tries_used(probe) == 0 and tries_used(doomed_token) == 0
    assert snapshot() == []

    # --- 100 before the token: an unreadable request is no attempt (no try, no row) ------------------
    t100 = pos.token()
    for label, path, parameters, message in [
        ("unknown path", "/refund", {"token": t100}, "unknown path /refund"),
        ("missing pin", "/payment/card", {k: v for k, v in card(t100).items() if k != "pin"},
         "missing parameter pin"),
        ("missing amount", "/payment/check", {"token": t100, "check_number": "12345678ABC"},
         "missing parameter amount"),
        ("bad card_type", "/payment/card", card(t100, card_type="AMEX"),
         "card_type must be one of VISA, MASTER, ELECTRON"),
        ("card_number a number", "/payment/card", card(t100, card_number=int(HAPPY_VISA)),
         "parameter card_number must be a string"),
        ("pin a number", "/payment/card", card(t100, pin=4321), "parameter pin must be a string"),
        ("amount a boolean", "/payment/card", card(t100, amount=True),
         "parameter amount must be a number or a numeric string"),
        ("amount null", "/payment/card", card(t100, amount=None),
         "parameter amount must be a number or a numeric string"),
        ("token a number", "/payment/card", card(7), "parameter token must be a string"),
        # 100 before 107: an unknown token with a missing parameter.
        ("unknown token, missing pin", "/payment/card",
         {k: v for k, v in card("f" * 64).items() if k != "pin"}, "missing parameter pin"),
        ("bad type", "/token", {"type": "CASH"}, "type must be one of CARD, CONTACTLESS, CHECK"),
        ("try_count -2", "/token", {"type": "CARD", "try_count": -2}, "try_count must be -1 (unlimited) or more"),
        ("try_count text", "/token", {"type": "CARD", "try_count": "three"}, "parameter try_count must be an integer"),
        ("try_count over 32 bits", "/token", {"type": "CARD", "try_count": 2**31},
         "parameter try_count must be an integer"),
    ]:
        pos.step(label, path, parameters, error(100, f"Invalid request: {message}"))
    assert tries_used(t100) == 0

    # --- 107: the token check comes first, and uses no try -------------------------------------------
    pos.step("unknown token", "/payment/card", card("f" * 64), WRONG_TOKEN)
    pos.step("short token", "/payment/card", card("abc"), WRONG_TOKEN)
    # 107 before 104, 100, 103 and 109: an unknown token with everything else wrong.
    pos.step("unknown token, all wrong", "/payment/card",
             card("e" * 64, card_type="MASTER", card_number=LUHN_BAD, pin="1", amount="0"), WRONG_TOKEN)
    other_till = LineClient(port)
    assert other_till.auth(other)["authenticated"] is True
    theirs = other_till.token()
    pos.step("another terminal's token", "/payment/card", card(theirs), WRONG_TOKEN)
    assert tries_used(theirs) == 0
    other_till.close()
    t_contactless = pos.token("CONTACTLESS", try_count=5)
    t_check = pos.token("CHECK", try_count=-1)
    pos.step("contactless token on /payment/card", "/payment/card", card(t_contactless), WRONG_TOKEN, tries=0)
    pos.step("check token on /payment/contactless", "/payment/contactless", contactless(t_check), WRONG_TOKEN,
             tries=0)
    pos.step("card token on /payment/check", "/payment/check", check(t100), WRONG_TOKEN, tries=0)
    t_expired = pos.token()
    Token.objects.filter(value=t_expired).update(expires_at=timezone.now() - timedelta(seconds=1))
    pos.step("expired token", "/payment/card", card(t_expired), WRONG_TOKEN, tries=0)
    pos.step("expired token, bad number", "/payment/card", card(t_expired, card_number=LUHN_BAD), WRONG_TOKEN,
             tries=0)

    # --- One unlimited card token through every rule, in the contract's order ------------------------
    tc = pos.token("CARD", try_count=-1)
    used = 0

    def refused(label: str, parameters: dict[str, Any], answer: dict[str, Any], declined: dict[str, Any] | None,
                path: str = "/payment/card", token: str | None = None) -> None:
        # Every attempt past the token check uses one try, whatever fails after it.
        nonlocal used
        used += 1
        pos.step(label, path, {**parameters, "token": token or tc}, answer, tries=used, declined=declined)

    visa_row = {"method": "card", "card_number": HAPPY_VISA, "brand": "VISA"}
    # 104: number format and Luhn check digit (a declined row: the amount is valid).
    refused("short number", card(tc, card_number="42424242"), error(104, "Invalid card_number ********"),
            {"method": "card", "failure_code": "invalid_card_number"})
    refused("Luhn", card(tc, card_number=LUHN_BAD), error(104, "Invalid card_number 424242******4241"),
            {"method": "card", "failure_code": "invalid_card_number", "card_number": LUHN_BAD, "brand": "VISA"})
    refused("not digits", card(tc, card_number="4242-4242-4242-42"),
            error(104, "Invalid card_number 4242*4*******2*42"), {"method": "card", "failure_code": "invalid_card_number"})
    # 104 before 100 (the network) and before 109 (no row: the amount is not valid).
    refused("Luhn and MASTER", card(tc, card_type="MASTER", card_number=LUHN_BAD),
            error(104, "Invalid card_number 424242******4241"),
            {"method": "card", "failure_code": "invalid_card_number", "card_number": LUHN_BAD, "brand": "VISA"})
    refused("Luhn and amount 0", card(tc, card_number=LUHN_BAD, amount="0"),
            error(104, "Invalid card_number 424242******4241"), None)
    # 100: a card_type of another network than the number's.
    refused("MASTER for a Visa", card(tc, card_type="MASTER"),
            error(100, "Invalid request: card_type MASTER is not the card number's network (Visa)"),
            {**visa_row, "failure_code": "invalid_request"})
    refused("VISA for a Mastercard", card(tc, card_number=HAPPY_MASTER),
            error(100, "Invalid request: card_type VISA is not the card number's network (Mastercard)"),
            {"method": "card", "failure_code": "invalid_request", "card_number": HAPPY_MASTER, "brand": "MASTER"})
    # 100 before 101: a banned BIN sent with the wrong network.
    refused("MASTER for a banned BIN", card(tc, card_type="MASTER", card_number=BIN_BANNED),
            error(100, "Invalid request: card_type MASTER is not the card number's network (Visa)"),
            {"method": "card", "failure_code": "invalid_request", "card_number": BIN_BANNED, "brand": "VISA"})
    # 101: the card, or its BIN, is banned (a number of no network contradicts no card_type).
    banned_row = {"method": "card", "failure_code": "card_banned", "card_number": BANNED_CARD, "brand": ""}
    refused("banned card", card(tc, card_number=BANNED_CARD), CARD_BANNED, banned_row)
    refused("banned card as MASTER", card(tc, card_type="MASTER", card_number=BANNED_CARD), CARD_BANNED, banned_row)
    refused("banned BIN", card(tc, card_number=BIN_BANNED), CARD_BANNED,
            {"method": "card", "failure_code": "card_banned", "card_number": BIN_BANNED, "brand": "VISA"})
    refused("banned card, bad PIN", card(tc, card_number=BANNED_CARD, pin="12"), CARD_BANNED, banned_row)
    refused("banned card, banned PIN", card(tc, card_number=BANNED_CARD, pin="1234"), CARD_BANNED, banned_row)
    refused("banned card, amount -1", card(tc, card_number=BANNED_CARD, amount="-1"), CARD_BANNED, None)
    # 103: a PIN not of 4 digits, or a banned one.
    pin_row = {**visa_row, "failure_code": "invalid_pin"}
    for pin in ("12", "12345", "12a4", "", "1234", "0000", "9999"):
        refused(f"PIN {len(pin)} characters", card(tc, pin=pin), INVALID_PIN, pin_row)
    refused("banned PIN, amount with 3 decimals", card(tc, pin="1234", amount="12.345"), INVALID_PIN, None)
    # 109: the amount (never a declined row: there is no amount to show).
    for amount in ("0", "0.00", "-5", "12.345", "12345678901", "12345678901.00", "abc", "", "1e3", " 12",
                   0, -1, Decimal("0.001")):
        refused(f"amount {amount!r}", card(tc, amount=amount), INVALID_AMOUNT, None)
    # 109 before 106: over the limit and not an amount.
    refused("amount over the limit, 3 decimals", card(tc, amount="99999.999"), INVALID_AMOUNT, None)
    # 106: the limit of the number's brand (10 integer digits is an amount, over the limit).
    refused("over Visa's limit", card(tc, amount="2500.01"), error(106, "Card max amount 2500.00"),
            {**visa_row, "failure_code": "limit_exceeded"})
    refused("10 integer digits", card(tc, amount="1234567890"), error(106, "Card max amount 2500.00"),
            {**visa_row, "failure_code": "limit_exceeded"})
    refused("Electron sent as VISA", card(tc, card_number=ELECTRON, amount="1700.01"),
            error(106, "Card max amount 1700.00"),
            {"method": "card", "failure_code": "limit_exceeded", "card_number": ELECTRON, "brand": "ELECTRON"})
    # 111: declined by the acquirer (sandbox test cards), with the acquirer's code.
    for number, reason, code in [
        (DECLINED, "card declined", "card_declined"),
        (INSUFFICIENT, "insufficient funds", "insufficient_funds"),
        (EXPIRED_CARD, "expired card", "expired_card"),
    ]:
        refused(reason, card(tc, card_number=number), error(111, f"Declined {reason}"),
                {"method": "card", "failure_code": code, "card_number": number, "brand": "VISA"})
    # The acquirer's technical failure: status error (ProcessError), not declined; payment.failed all the same.
    refused("acquirer error", card(tc, card_number=PROCESS_ERROR), error(111, "Declined acquirer processing error"),
            {"status": TransactionStatus.ERROR, "method": "card", "failure_code": "processing_error",
             "card_number": PROCESS_ERROR, "brand": "VISA"})

    # Approved: the body, trailing zeros dropped (500.000000 is 500), two decimals on the wire.
    used += 1
    pos.approved(
        "approved card", "/payment/card", card(tc, amount=Decimal("500.000000")),
        {"token": tc, "type": "CARD", "card_type": "VISA", "card_number": "424242******4242",
         "amount": Decimal("500.00")},
        tries=used, raw_amount=b"500.00",
        expected_row=row(tc, T, method="card", status=TransactionStatus.CAPTURED, amount="500.00",
                         card_number=HAPPY_VISA, brand="VISA"),
    )
    # 107: a used token, before everything else; no try, no row.
    for label, parameters in [
        ("used token", card(tc)),
        ("used token, bad number", card(tc, card_number=LUHN_BAD)),
        ("used token, bad amount", card(tc, amount="0")),
        ("used token, banned card", card(tc, card_number=BANNED_CARD)),
    ]:
        pos.step(label, "/payment/card", parameters, WRONG_TOKEN, tries=used)

    # --- 108: the tries are used up; it comes before every rule after the token ----------------------
    t2 = pos.token("CARD", try_count=2)
    pos.step("decline, try 1 of 2", "/payment/card", card(t2, card_number=DECLINED),
             error(111, "Declined card declined"), tries=1,
             declined={"method": "card", "failure_code": "card_declined", "card_number": DECLINED, "brand": "VISA"})
    pos.step("bad PIN, try 2 of 2", "/payment/card", card(t2, pin="0000"), INVALID_PIN, tries=2,
             declined=pin_row)
    for label, parameters in [
        ("no try left", card(t2)),
        ("no try left, bad number", card(t2, card_number=LUHN_BAD)),
        ("no try left, MASTER", card(t2, card_type="MASTER")),
        ("no try left, amount 0", card(t2, amount="0")),
    ]:
        pos.step(label, "/payment/card", parameters, MAX_TRY, tries=2)
    # 107 before 108: the same token, now also expired.
    Token.objects.filter(value=t2).update(expires_at=timezone.now() - timedelta(seconds=1))
    pos.step("no try left and expired", "/payment/card", card(t2), WRONG_TOKEN, tries=2)
    t0 = pos.token("CARD", try_count=0)
    pos.step("try_count 0", "/payment/card", card(t0), MAX_TRY, tries=0)
    # A declined attempt does not hold the token: a later one pays with it.
    t3 = pos.token("CARD", try_count=3)
    pos.step("decline before paying", "/payment/card", card(t3, card_number=INSUFFICIENT),
             error(111, "Declined insufficient funds"), tries=1,
             declined={"method": "card", "failure_code": "insufficient_funds", "card_number": INSUFFICIENT,
                       "brand": "VISA"})
    pos.approved(
        "MASTER after a decline", "/payment/card", card(t3, card_type="MASTER", card_number=HAPPY_MASTER,
                                                        amount=12),
        {"token": t3, "type": "CARD", "card_type": "MASTER", "card_number": "555555******4444",
         "amount": Decimal("12.00")},
        tries=2, raw_amount=b"12.00",
        expected_row=row(t3, T, method="card", status=TransactionStatus.CAPTURED, amount="12.00",
                         card_number=HAPPY_MASTER, brand="MASTER"),
    )
    # 107 before 108: the approval used the last try, and the token is used.
    t1 = pos.token("CARD", try_count=1)
    pos.approved(
        "ELECTRON on its last try", "/payment/card", card(t1, card_type="ELECTRON", card_number=ELECTRON,
                                                          amount="1700.00"),
        {"token": t1, "type": "CARD", "card_type": "ELECTRON", "card_number": "402600******0002",
         "amount": Decimal("1700.00")},
        tries=1, raw_amount=b"1700.00",
        expected_row=row(t1, T, method="card", status=TransactionStatus.CAPTURED, amount="1700.00",
                         card_number=ELECTRON, brand="ELECTRON"),
    )
    pos.step("used, no try left", "/payment/card", card(t1), WRONG_TOKEN, tries=1)

    # --- Contactless: no PIN, and the contactless limit on top of the brand's ------------------------
    used = 0
    contactless_row = {"method": "contactless", "card_number": HAPPY_VISA, "brand": "VISA"}
    refused("contactless Luhn", contactless(t_contactless, card_number=LUHN_BAD),
            error(104, "Invalid card_number 424242******4241"),
            {"method": "contactless", "failure_code": "invalid_card_number", "card_number": LUHN_BAD,
             "brand": "VISA"}, path="/payment/contactless", token=t_contactless)
    refused("contactless banned", contactless(t_contactless, card_number=BANNED_CARD), CARD_BANNED,
            {"method": "contactless", "failure_code": "card_banned", "card_number": BANNED_CARD},
            path="/payment/contactless", token=t_contactless)
    refused("contactless over its limit", contactless(t_contactless, amount="30.01"),
            error(106, "Contactless max amount 30.00"), {**contactless_row, "failure_code": "limit_exceeded"},
            path="/payment/contactless", token=t_contactless)
    refused("contactless limit, bad amount", contactless(t_contactless, amount="30.001"), INVALID_AMOUNT, None,
            path="/payment/contactless", token=t_contactless)
    pos.approved(
        "approved contactless", "/payment/contactless", contactless(t_contactless, amount="30.00"),
        {"token": t_contactless, "type": "CONTACTLESS", "card_type": "VISA", "card_number": "424242******4242",
         "amount": Decimal("30.00")},
        tries=used + 1, raw_amount=b"30.00",
        expected_row=row(t_contactless, T, method="contactless", status=TransactionStatus.CAPTURED, amount="30.00",
                         card_number=HAPPY_VISA, brand="VISA"),
    )

    # --- Checks: 105 (format) before 102 (ban) before 109 --------------------------------------------
    used = 0

    def refused_check(label: str, parameters: dict[str, Any], answer: dict[str, Any],
                      declined: dict[str, Any] | None) -> None:
        refused(label, parameters, answer, declined, path="/payment/check", token=t_check)

    for number in ("1234", "12345678AB!", "123456789ABC", ""):
        refused_check(f"check number {number!r}", check(t_check, check_number=number),
                      error(105, "Invalid check_number"), {"method": "check", "failure_code": "invalid_check_number"})
    refused_check("bad check number, amount 0", check(t_check, check_number="1234", amount="0"),
                  error(105, "Invalid check_number"), None)
    for number in (BANNED_CHECK, BANNED_CHECK.lower()):  # check numbers are compared upper case
        refused_check(f"banned check {number}", check(t_check, check_number=number), error(102, "Check banned"),
                      {"method": "check", "failure_code": "check_banned", "check_number": BANNED_CHECK})
    refused_check("banned check, amount -1", check(t_check, check_number=BANNED_CHECK, amount="-1"),
                  error(102, "Check banned"), None)
    refused_check("check amount", check(t_check, amount="20.001"), INVALID_AMOUNT, None)
    pos.approved(
        "approved check", "/payment/check", check(t_check, check_number="12345678abc"),
        {"token": t_check, "type": "CHECK", "check_number": "12345678ABC", "amount": Decimal("20.00")},
        tries=used + 1, raw_amount=b"20.00",
        expected_row=row(t_check, T, method="check", status=TransactionStatus.CAPTURED, amount="20.00",
                         check_number="12345678ABC"),
    )
    t_chek = pos.token("CHECK", try_count=-1)
    pos.approved(
        "the specification's /payment/chek", "/payment/chek", check(t_chek, amount="7.5"),
        {"token": t_chek, "type": "CHECK", "check_number": "12345678ABC", "amount": Decimal("7.50")},
        tries=1, raw_amount=b"7.50",
        expected_row=row(t_chek, T, method="check", status=TransactionStatus.CAPTURED, amount="7.50",
                         check_number="12345678ABC"),
    )
    pos.step("used check token", "/payment/check", check(t_chek), WRONG_TOKEN, tries=1)

    # The tokens the refused requests carried were never touched.
    assert tries_used(probe) == 0 and tries_used(t100) == 0 and tries_used(t_expired) == 0
    till.close()
    # No card number in any log line of the listener or the core (masked at most).
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for pan in PANS:
        assert pan not in logged, f"a card number ending {pan[-4:]} reached the log"


# --- The race -------------------------------------------------------------------------------------------


@dataclass
class Plan:
    token: str
    kind: str
    try_count: int
    failed_before: int  # declined attempts made before the race (each uses a try)
    amount: Decimal


CONNECTIONS = 12  # two tokens at once per round, six payments on each
PER_TOKEN = 6
TOKENS = 20
PATHS = {"CARD": "/payment/card", "CONTACTLESS": "/payment/contactless", "CHECK": "/payment/check"}


def race_request(plan: Plan, seat: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The payment connection ``seat`` sends for ``plan``, and the body it gets if approved."""
    master = seat % 2 == 1  # half the seats pay with a Mastercard: the winner's own card is in its answer
    number, card_type, masked = (HAPPY_MASTER, "MASTER", "555555******4444") if master else (
        HAPPY_VISA, "VISA", "424242******4242")
    amount = f"{plan.amount:.2f}"
    if plan.kind == "CHECK":
        check_number = f"{seat:011d}"
        parameters = {"token": plan.token, "check_number": check_number, "amount": amount}
        body = {"token": plan.token, "type": "CHECK", "check_number": check_number}
    else:
        parameters = {"token": plan.token, "card_type": card_type, "card_number": number, "amount": amount}
        if plan.kind == "CARD":
            parameters["pin"] = "4321"
        body = {"token": plan.token, "type": plan.kind, "card_type": card_type, "card_number": masked}
    return PATHS[plan.kind], parameters, {**body, "amount": plan.amount}


def test_one_token_one_approval_under_concurrency(
    start_listener: Callable[..., RunningListener], terminal: Any
) -> None:
    """Six payments at once on each of twenty tokens (cards, contactless,
    checks; unlimited, 3 tries, and 3 tries of which 2 are used), two tokens
    at a time over twelve connections: exactly one approval per token, every
    other answer 107 (never 108: a used token is 107 first, and an attempt
    refused 107 uses no try), and nothing left behind."""
    running = start_listener()
    setup = LineClient(running.port)
    assert setup.auth(terminal)["authenticated"] is True
    plans: list[Plan] = []
    for index in range(TOKENS):
        kind = ("CARD", "CONTACTLESS", "CHECK")[index % 3]
        try_count = -1 if index < TOKENS // 2 else 3
        plan = Plan(setup.token(kind, try_count), kind, try_count, 2 if index >= TOKENS * 3 // 4 else 0,
                    Decimal(index + 1) + Decimal("0.25"))
        for _ in range(plan.failed_before):  # rule failures before the race: rows, events and tries
            path, parameters, _ = race_request(plan, 0)
            if kind == "CHECK":
                parameters["check_number"] = "1234"
                expected = error(105, "Invalid check_number")
            else:
                parameters["card_number"] = LUHN_BAD
                expected = error(104, "Invalid card_number 424242******4241")
            assert setup.request(path, parameters) == expected
        plans.append(plan)
    setup.close()

    clients = [LineClient(running.port) for _ in range(CONNECTIONS)]
    answers: dict[tuple[int, int], dict[str, Any]] = {}
    failures: list[BaseException] = []
    barrier = threading.Barrier(CONNECTIONS)
    rounds = [plans[i:i + CONNECTIONS // PER_TOKEN] for i in range(0, TOKENS, CONNECTIONS // PER_TOKEN)]

    def pay(seat: int) -> None:
        client = clients[seat]
        try:
            assert client.auth(terminal)["authenticated"] is True
            for round_plans in rounds:
                plan = round_plans[seat // PER_TOKEN]
                path, parameters, _ = race_request(plan, seat)
                barrier.wait(10)  # every payment of the round leaves at once
                answers[(plans.index(plan), seat)] = client.request(path, parameters, id=seat)
        except BaseException as exc:  # noqa: BLE001 - reported below, with the others
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=pay, args=(seat,), name=f"till-{seat}") for seat in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for client in clients:
        client.close()
    assert not any(thread.is_alive() for thread in threads), "a till hung"
    assert not failures, failures
    assert len(answers) == TOKENS * PER_TOKEN

    winners: dict[int, int] = {}  # plan index -> transaction
    for (index, seat), answer in sorted(answers.items()):
        plan = plans[index]
        assert answer.pop("id") == seat
        if "transaction" in answer:
            _, _, body = race_request(plan, seat)
            assert answer == {**body, "transaction": answer["transaction"]}, (index, seat)
            assert index not in winners, f"token {index} approved twice"
            winners[index] = answer["transaction"]
        else:
            assert answer == WRONG_TOKEN, (index, seat, answer)
    assert sorted(winners) == list(range(TOKENS)), "a token was never approved"

    # The database: one holding payment per token, the winner's; nothing in flight.
    assert not Transaction.objects.filter(status=TransactionStatus.PROCESSING).exists()
    for index, plan in enumerate(plans):
        holding = list(Transaction.objects.filter(token__value=plan.token, status__in=TOKEN_HOLDING_STATUSES))
        assert [t.pk for t in holding] == [winners[index]], index
        (txn,) = holding
        assert txn.status == TransactionStatus.CAPTURED and txn.terminal_id == terminal.pk
        assert txn.amount == txn.authorized_amount == txn.captured_amount == plan.amount, index
        token = Token.objects.get(value=plan.token)
        # Exactly the declined attempts before and the approval: the 107s used nothing.
        assert token.tries_used == plan.failed_before + 1, index
        assert plan.try_count == -1 or token.tries_used <= plan.try_count
        declined = Transaction.objects.filter(token=token, status=TransactionStatus.DECLINED).count()
        assert declined == plan.failed_before, index
        assert Transaction.objects.filter(token=token).count() == plan.failed_before + 1, index
    # One event per row: payment.succeeded for a capture, payment.failed for a decline.
    for txn in Transaction.objects.all():
        events = list(Event.objects.filter(transaction=txn).values_list("type", flat=True))
        assert events == ([SUCCEEDED] if txn.status == TransactionStatus.CAPTURED else [FAILED]), txn.pk
    assert Event.objects.count() == Transaction.objects.count() == TOKENS + sum(p.failed_before for p in plans)


# --- Expiry ---------------------------------------------------------------------------------------------


def test_an_unused_token_expires(
    start_listener: Callable[..., RunningListener], terminal: Any, settings: Any
) -> None:
    settings.TERMINAL_TOKEN_TTL_SECONDS = 1
    running = start_listener()  # after the setting: a path may read it when it starts
    client = LineClient(running.port)
    try:
        assert client.auth(terminal)["authenticated"] is True
        answer = client.request("/token", {"type": "CARD", "try_count": 3})
        unused = answer["token"]
        created = datetime.strptime(answer["created"], "%Y-%m-%dT%H:%M:%SZ")
        assert datetime.strptime(answer["expire"], "%Y-%m-%dT%H:%M:%SZ") - created == timedelta(seconds=1)
        tried = client.token("CONTACTLESS", try_count=3)
        # Alive before its time: an attempt is judged (and uses a try).
        answer = client.request("/payment/contactless", contactless(tried, card_number=LUHN_BAD))
        assert answer == error(104, "Invalid card_number 424242******4241")
        stored = Token.objects.get(value=unused)
        assert stored.expires_at - stored.created_at == timedelta(seconds=1)
        latest = max(stored.expires_at, Token.objects.get(value=tried).expires_at)
        time.sleep(max(0.0, (latest - timezone.now()).total_seconds()) + 0.05)
        assert client.request("/payment/card", card(unused)) == WRONG_TOKEN
        assert client.request("/payment/contactless", contactless(tried)) == WRONG_TOKEN
        # 107 before 104: expiry is a token rule.
        assert client.request("/payment/card", card(unused, card_number=LUHN_BAD)) == WRONG_TOKEN
        assert tries_used(unused) == 0 and tries_used(tried) == 1
        assert list(Transaction.objects.values_list("status", "failure_code")) == [
            (TransactionStatus.DECLINED, "invalid_card_number")]
        # A token issued now lives its own second: expiry is per token.
        fresh = client.token()
        assert "transaction" in client.request("/payment/card", card(fresh)), "a fresh token was refused"
    finally:
        client.close()


# --- HTTP -----------------------------------------------------------------------------------------------


def test_http_answers_the_same_codes_with_the_contracts_statuses(
    start_listener: Callable[..., RunningListener], terminal: Any
) -> None:
    """Over HTTP: 400 for 100, 401 (and Connection: close) for 110, 200 for the others."""
    running = start_listener()
    auth = (terminal.terminal_id, terminal.secret)
    client = HttpClient(running.port)
    try:
        token = client.get("/token?type=CARD&try_count=2", auth=auth).json()["token"]
        query = f"/payment/card?token={token}&card_type=VISA&pin=4321&amount=12.50&card_number="
        response = client.get(query + LUHN_BAD, auth=auth)
        assert (response.status, response.json()) == (200, error(104, "Invalid card_number 424242******4241"))
        response = client.get(query.replace("VISA", "AMEX") + HAPPY_VISA, auth=auth)
        assert response.status == 400 and response.json()["error_code"] == 100
        response = client.get(query + HAPPY_VISA, auth=auth)
        assert response.status == 200 and response.json() == {
            "token": token, "type": "CARD", "card_type": "VISA", "card_number": "424242******4242",
            "transaction": response.json().get("transaction"), "amount": Decimal("12.50")}
        assert Transaction.objects.get(pk=response.json()["transaction"]).status == TransactionStatus.CAPTURED
        response = client.get(query + HAPPY_VISA, auth=auth)
        assert (response.status, response.json()) == (200, WRONG_TOKEN)
        assert tries_used(token) == 2
        response = client.get(query + HAPPY_VISA, auth=(terminal.terminal_id, "wrong"))
        assert (response.status, response.json()) == (401, NOT_AUTHORIZED)
        assert response.headers.get("connection") == "close"
    finally:
        client.close()
