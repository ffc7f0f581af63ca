"""Small database facts the core checks, and the rules built on them.

The checks raise ``TransactionRuleViolation`` (a real exception, which
``python -O`` keeps; an ``assert`` would vanish): breaking one is a bug in
the caller, never a payment error a door should translate.
"""
from __future__ import annotations

from django.db import transaction as db_transaction


class TransactionRuleViolation(RuntimeError):
    """A rule of the house about database transactions was broken by the caller."""


def in_transaction() -> bool:
    """Inside an atomic block, not counting the ones a test case wraps each test in
    (the rule Django applies to ``atomic(durable=True)``). Network calls (the
    acquirer, merchants' servers) must not be: a slow peer must never hold row
    locks, and a rolled-back transaction must not have told anyone."""
    connection = db_transaction.get_connection()
    return connection.in_atomic_block and any(
        not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks
    )


def require_no_transaction(what: str) -> None:
    """Refuse network I/O (``what``: "acquirer call", "webhook call"...) inside a transaction."""
    if in_transaction():
        raise TransactionRuleViolation(f"no {what} inside a transaction")


def require_atomic(what: str) -> None:
    """Refuse a write that must commit with the change it belongs to, outside any atomic block."""
    if not db_transaction.get_connection().in_atomic_block:
        raise TransactionRuleViolation(f"{what} must run inside the change's transaction")
