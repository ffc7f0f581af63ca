"""The README's walk-through, run as written against the live server (real sockets)
with credentials printed by ``create_merchant`` (issue 8, item 2)."""
from __future__ import annotations

import io
import json
from decimal import Decimal

import pytest
from django.core.management import call_command

from payments.models import Refund, Transaction
from payments.states import TransactionStatus
from tests.support.readme import python_block


@pytest.mark.django_db(transaction=True)
def test_the_readme_walkthrough_works_as_written(live_server, shipped_defaults, capsys) -> None:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    call_command("create_merchant", "--name", "My shop", stdout=out)
    created = json.loads(out.getvalue())
    namespace = {"BASE_URL": live_server.url, "APP_ID": created["app_id"], "APP_KEY": created["app_key"],
                 "DATA_KEY": created["data_key"]}
    try:
        exec(python_block("secure-api-walkthrough"), namespace)  # noqa: S102 - our own documentation
    finally:
        namespace["api"].close()  # type: ignore[attr-defined]
    paid, page, refund = namespace["paid"], namespace["page"], namespace["refund"]
    assert paid["amount"] == Decimal("25.00") and paid["paymentInfo"]["card"]["cardLastNum"] == "4242"
    assert page["totalCount"] == 1 and page["transactions"][0]["transactionID"] == paid["transactionID"]
    assert refund["amount"] == Decimal("5.00") and refund["status"] == "pending"
    assert namespace["cancelled"]["status"] == "voided"
    reused = namespace["reused"]
    assert reused.status == 400 and reused.code == 997 and reused.error["detail"].startswith("orderID: ")
    assert "400 {'code': 997" in capsys.readouterr().out
    assert Transaction.objects.get(pk=paid["transactionID"]).status == TransactionStatus.PARTIALLY_REFUNDED
    assert Refund.objects.get().amount == Decimal("5.00")
