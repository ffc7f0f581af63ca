"""Objects that hold a card number, PIN, CVV or secret never show it in their repr
(what tracebacks, debuggers and ``%r`` log lines print)."""
from __future__ import annotations

from decimal import Decimal

from payments import cards
from payments.acquirers.base import AuthorizationRequest
from payments.services.screening import ScreenedCard
from terminals import protocol
from payments.states import PaymentMethod

PAN, PIN, CVV = "4242424242424242", "2580", "737"


def test_authorization_request() -> None:
    request = AuthorizationRequest(
        transaction_id=7, amount=Decimal("12.50"), currency="EUR", capture=True, pan=PAN, expiry="202912", cvv=CVV
    )
    shown = repr(request)
    assert PAN not in shown and CVV not in shown
    assert "424242******4242" in shown and "transaction_id=7" in shown and "cvv='***'" in shown
    assert str(request) == shown
    assert request.pan == PAN and request.cvv == CVV  # the connector still gets them


def test_screened_card() -> None:
    screened = ScreenedCard(pan=PAN, facts=cards.card_facts(PAN), brand="VISA", amount=Decimal("1.00"))
    shown = repr(screened)
    assert PAN not in shown and "424242******4242" in shown  # the facts' mask only


def test_payment_command_and_request() -> None:
    command = protocol.PaymentCommand(
        PaymentMethod.CARD, "tok", "12.50", card_type="VISA", card_number=PAN, pin=PIN
    )
    shown = repr(command)
    assert PAN not in shown and PIN not in shown and "424242******4242" in shown and "pin='***'" in shown
    request = protocol.Request(
        path="/payment/card", parameters={"card_number": PAN, "pin": PIN, "cvv": CVV, "amount": "12.50"}
    )
    shown = repr(request)
    assert PAN not in shown and PIN not in shown and CVV not in shown and "'amount': '12.50'" in shown
    assert request.parameters["pin"] == PIN
    odd = protocol.Request(path="/payment/card", parameters=[PAN])  # type: ignore[arg-type]
    assert PAN not in repr(odd)


def test_auth_command_hides_the_secret() -> None:
    command = protocol.AuthCommand("T1", "very-secret-value")
    assert "very-secret-value" not in repr(command) and "T1" in repr(command)
