"""The async path's pieces that need no database: the attempt's jsonb row and the facts statement."""
from __future__ import annotations

import json
from decimal import Decimal

from django.db import models

from payments.services import payments as sale
from payments.services import sale_async
from payments.services.tokens import ClaimedToken
from payments.states import PaymentMethod, TransactionStatus

# Kinds whose Python value is their database value (what ``_json_row`` relies on).
PLAIN_FIELDS = (models.ForeignKey, models.CharField, models.DecimalField, models.DateTimeField,
                models.IntegerField, models.BooleanField)


def test_every_transaction_column_is_of_a_kind_the_jsonb_row_carries_exactly() -> None:
    odd = [f.name for f in sale._TXN_FIELDS if not isinstance(f, PLAIN_FIELDS)]
    assert not odd, f"_json_row must prepare these fields itself: {odd}"


def test_the_jsonb_row_has_every_column_with_exact_values() -> None:
    txn = sale.sale_transaction(
        terminal_pk=7, token=ClaimedToken(pk=3, merchant_pk=2, currency="EUR"), method=PaymentMethod.CARD
    )
    draft = sale.sale_draft(method=PaymentMethod.CARD, card_number="4242424242424242", card_type="VISA",
                            pin="1235", check_number=None)
    facts = sale_async.facts_from_rows([("limit", "VISA", "2500.00")], currency="EUR")
    sale.sale_decide(txn, draft, facts, amount="12.50")
    row = json.loads(sale_async._json_row(txn))
    assert set(row) == {f.column for f in sale._TXN_FIELDS}
    assert row["amount"] == "12.50" and Decimal(row["amount"]) == Decimal("12.50")
    assert row["status"] == TransactionStatus.PROCESSING.value and row["method"] == PaymentMethod.CARD.value
    assert row["terminal_id"] == 7 and row["token_id"] == 3 and row["merchant_id"] == 2
    assert row["card_last4"] == "4242" and "4242424242424242" not in json.dumps(row)
    assert row["created_at"].endswith("+00:00") and row["updated_at"].endswith("+00:00")
    assert row["resolver_lease_until"] is None
