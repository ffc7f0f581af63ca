"""The hand-written SQL of the hot path against the real schema.

The terminals' statements are written in SQL (payments/services/sql.py says
why), so a model whose columns change under them would break payments at
run time only. Each statement is planned here by the database itself
(``EXPLAIN``), on the schema the migrations built: a renamed or dropped
column, or a table that moved, fails this test on PostgreSQL and SQLite.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone as dt_timezone
from decimal import Decimal

import pytest
from django.db import connection, transaction

from payments import outbox
from payments.models import Transaction
from payments.services import payments, screening, tokens
from payments.states import TransactionStatus

pytestmark = pytest.mark.django_db

_PLACEHOLDER = re.compile(r"%s")


def _explain(sql: str) -> None:
    """Plan ``sql`` with every parameter NULL: the database resolves every
    table and column without running the statement."""
    count = len(_PLACEHOLDER.findall(sql))
    prefix = "EXPLAIN " if connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN "
    with connection.cursor() as cursor:
        cursor.execute(prefix + sql, [None] * count)
        cursor.fetchall()


def _outcome_statement() -> dict[str, object]:
    changes = {
        "status": TransactionStatus.CAPTURED,
        "authorized_amount": Decimal("1.00"),
        "captured_amount": Decimal("1.00"),
        "acquirer_reference": "r",
        "authorization_code": "123456",
        "failure_code": "",
        "failure_message": "",
        "updated_at": datetime.now(dt_timezone.utc),
    }
    return payments._txn_outcome_statement(1, changes)


def _rule_facts_sql(monkeypatch) -> str:  # type: ignore[no-untyped-def]
    """The union ``rule_facts`` sends for a card with PIN, limits and a token."""
    sent: list[str] = []

    class Recorder:
        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc):  # type: ignore[no-untyped-def]
            return False

        def execute(self, sql, params):  # type: ignore[no-untyped-def]
            sent.append(sql)

        def fetchall(self):  # type: ignore[no-untyped-def]
            return []

    monkeypatch.setattr(screening.connection, "cursor", lambda: Recorder())
    screening.rule_facts(pan="4242424242424242", pin="1235", check="12345678ABC",
                         limit_kinds=["CONTACTLESS", "VISA"], currency="EUR", token_pk=1)
    monkeypatch.undo()
    return sent[0]


STATEMENTS = {
    "token issue": lambda mp: tokens._SQL_TOKEN_ISSUE,
    "token claim": lambda mp: tokens.SQL_TOKEN_CLAIM,
    "token held": lambda mp: tokens.SQL_TOKEN_HELD,
    "transaction insert": lambda mp: payments._SQL_TXN_INSERT,
    "acquirer outcome": lambda mp: _outcome_statement()["statement"],
    "rule facts": _rule_facts_sql,
}


@pytest.mark.parametrize("name", list(STATEMENTS))
def test_statement_matches_the_schema(name: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _explain(STATEMENTS[name](monkeypatch))  # type: ignore[operator]


def test_outcome_and_event_in_one_statement_matches_the_schema(require_postgres) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL's data-modifying CTE: the outcome, its event and deliveries."""
    _explain(outbox._SQL_EVENT_AFTER_CHANGE.format(statement=_outcome_statement()["statement"]))


def test_the_insert_writes_every_column_of_the_model() -> None:
    """A column added to the model is written by the hand-made INSERT too
    (it is generated from the model's fields, and a NOT NULL column it missed
    would fail every payment)."""
    columns = {f.column for f in Transaction._meta.concrete_fields if not f.primary_key}
    listed = re.search(r"\(([^)]*)\)", payments._SQL_TXN_INSERT)
    assert listed is not None
    assert {c.strip() for c in listed.group(1).split(",")} == columns
    with connection.cursor() as cursor:
        table = {c.name for c in connection.introspection.get_table_description(cursor, Transaction._meta.db_table)}
    assert columns | {"id"} == table


def test_explain_would_catch_a_renamed_column() -> None:
    """The check itself can fail: a statement naming a column the table lacks."""
    with pytest.raises(Exception), transaction.atomic():
        _explain(tokens.SQL_TOKEN_CLAIM.replace("tries_used", "tries_spent", 1))
