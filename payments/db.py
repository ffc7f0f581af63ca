"""Small database facts the core asserts on."""
from __future__ import annotations

from contextlib import contextmanager

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


@contextmanager
def atomic_flushed_later():
    """A transaction whose commit does not wait for its WAL to reach the disk
    (PostgreSQL's ``synchronous_commit = off`` for this transaction only; a plain
    transaction elsewhere).

    For bookkeeping that a crash of the database may lose without harm (it is
    never lost otherwise, and never seen half-written): other sessions see it at
    once, and the next ordinary commit of any session flushes it too. Each use
    says why losing it is harmless. On this machine a flushed commit costs
    about 3 ms (fdatasync); this one, a few round trips.
    """
    with db_transaction.atomic():
        connection = db_transaction.get_connection()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield
