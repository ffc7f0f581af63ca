"""Small database facts the core asserts on."""
from __future__ import annotations

from django.db import transaction as db_transaction


def in_transaction() -> bool:
    """Inside an atomic block, not counting the ones a test case wraps each test in
    (the rule Django applies to ``atomic(durable=True)``). Network calls (the
    acquirer, merchants' servers) assert they are not: a slow peer must never
    hold row locks, and a rolled-back transaction must not have told anyone."""
    connection = db_transaction.get_connection()
    return connection.in_atomic_block and any(
        not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks
    )
