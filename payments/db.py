"""Small database facts the core checks, and the rules built on them.

The checks raise ``TransactionRuleViolation`` (a real exception, which
``python -O`` keeps; an ``assert`` would vanish): breaking one is a bug in
the caller, never a payment error a door should translate.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

from django.db import transaction as db_transaction
from django.db.models import Model


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


def insert_flushed_later(instance: Model) -> None:
    """INSERT a new row like ``instance.save()``, committed without waiting for its WAL
    to reach the disk, in one round trip (the same promise as ``atomic_flushed_later``,
    for the hottest single-row writes: nonces, idempotency claims, charge links).

    On PostgreSQL the statement sets ``synchronous_commit`` for its own implicit
    transaction (``set_config(..., true)`` is read at that transaction's commit);
    elsewhere it is a plain save. Raises IntegrityError as ``save()`` would, and
    keeps an enclosing transaction usable (a savepoint) when there is one.
    """
    connection = db_transaction.get_connection()
    guard = db_transaction.atomic() if connection.in_atomic_block else nullcontext()
    if connection.vendor != "postgresql":
        with guard:
            instance.save(force_insert=True)
        return
    meta = instance._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    values = [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields]
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
        f"SELECT {', '.join(['%s'] * len(fields))} "
        f"FROM (SELECT set_config('synchronous_commit', 'off', true)) AS flushed_later "
        f"RETURNING {quote(meta.pk.column)}"
    )
    with guard, connection.cursor() as cursor:
        cursor.execute(sql, values)
        instance.pk = cursor.fetchone()[0]
    instance._state.adding = False
    instance._state.db = connection.alias
