"""Shared set-up for the back-office browser tests: payments through the real services."""
from __future__ import annotations

from payments import services
from payments.states import PaymentMethod
from terminals.models import Terminal


def sale(terminal: Terminal, *, method: PaymentMethod = PaymentMethod.CARD, amount: str = "10.00", **card):  # type: ignore[no-untyped-def]
    """A terminal sale with a fresh token, as the terminal listener would make it."""
    token = services.token_issue(terminal_pk=terminal.pk, payment_type=method)
    return services.payment_sale_with_token(
        terminal_pk=terminal.pk, token=token.value, method=method, amount=amount, **card
    )
