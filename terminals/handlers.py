"""One terminal request's work: synchronous database functions, and a payment's phases.

The listener runs the synchronous functions in its database threads
(``sync_to_async``); each calls the payment services (which own the
transactions) and turns the outcome into the contract's response body. A
payment (``pay``) is three steps, so that no database thread waits for the
acquirer: screen and record it (a database thread), ask the acquirer (its own
pool, awaited on the event loop), record the answer (a database thread).
No sockets here.

On PostgreSQL the listener's hot path is asynchronous instead
(``token_async``, ``pay_async``): the same services' async twins
(``payments.services.sale_async``) on the listener's asyncpg pool, no
thread at all; identification (once per connection) stays in the threads.
Both paths answer the same bodies: the conformance suite checks it.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.db import connections

from listeners.database import AsyncDatabase, DatabaseUnavailable, numbered
from payments import cards, services
from payments.acquirers.base import AcquirerResult
from payments.errors import NotAuthorized, PaymentError
from payments.services import sale_async

from . import protocol
from .services import (
    TerminalIdentity,
    terminal_authenticate,
    terminal_identify_by_address,
    terminal_touch,
    terminal_touch_due,
    terminal_touch_statement,
)

logger = logging.getLogger(__name__)


def _connection_ready() -> None:
    """Drop this thread's connection if it broke or aged out, so the next query reconnects.

    Cheaper than Django's per-request health check: a listener thread runs
    thousands of requests a second on one persistent connection.
    """
    conn = connections["default"]
    if conn.connection is not None and (conn.errors_occurred or (conn.close_at and conn.close_at <= _now())):
        conn.close_if_unusable_or_obsolete()


def _now() -> float:
    import time

    return time.monotonic()


def authenticate(terminal_id: str, secret: str, peer_ip: str) -> TerminalIdentity | None:
    _connection_ready()
    try:
        return terminal_authenticate(terminal_id=terminal_id, secret=secret, peer_ip=peer_ip)
    except NotAuthorized:
        return None


def identify(peer_ip: str) -> TerminalIdentity | None:
    _connection_ready()
    return terminal_identify_by_address(peer_ip=peer_ip)


def execute(identity: TerminalIdentity, command: protocol.TokenCommand) -> dict[str, Any]:
    """Issue a token for an identified terminal; the response body."""
    _connection_ready()
    try:
        terminal_touch(pk=identity.pk)
        token = services.token_issue(
            terminal_pk=identity.pk, payment_type=command.payment_type, try_count=command.try_count
        )
        return protocol.token_body(
            value=token.value,
            payment_type=token.payment_type,
            created=token.created_at,
            expire=token.expires_at,
            try_count=token.try_count,
        )
    except PaymentError as exc:
        return protocol.error_for(exc)
    except Exception:
        # Never let one request take the connection (or the listener) down;
        # the message carries no request data, so no card data reaches the log.
        logger.exception("terminal request failed terminal=%s", identity.terminal_id)
        return protocol.error_body(111, "Declined internal error")


async def pay(
    run_db: Callable[..., Awaitable[Any]], identity: TerminalIdentity, command: protocol.PaymentCommand
) -> dict[str, Any]:
    """A payment for an identified terminal; the response body.

    ``run_db`` runs a synchronous function in one of the listener's database
    threads. The acquirer is awaited on the event loop in between, with its
    deadline (``payments.services.acquiring``), holding no database thread.
    """
    started = await run_db(start_payment, identity, command)
    if not isinstance(started, services.AuthorizationStep):
        return started  # refused before the acquirer: an error body
    try:
        result = await services.payment_authorization_send_async(started)
        return await run_db(finish_payment, command, started, result)
    except Exception:
        # After the acquirer was asked, a failure of ours hides its answer: the
        # card may be charged, so the answer is "unknown" (the resolver settles it).
        logger.exception("terminal payment failed after the acquirer call terminal=%s", identity.terminal_id)
        return protocol.outcome_unknown_body("internal error", started.transaction.pk)


def _sale_arguments(identity: TerminalIdentity, command: protocol.PaymentCommand) -> dict[str, Any]:
    """A payment request as the sale's arguments (both database paths)."""
    return {
        "terminal_pk": identity.pk, "token": command.token, "method": command.method, "amount": command.amount,
        "card_type": command.card_type, "card_number": command.card_number, "pin": command.pin,
        "check_number": command.check_number,
    }


def _approved_body(command: protocol.PaymentCommand, txn: Any) -> dict[str, Any]:
    """The contract's answer to an approved payment (both database paths)."""
    return protocol.payment_body(
        token=command.token,
        method=command.method,
        transaction=txn.pk,
        amount=txn.amount,
        currency=txn.currency,
        card_type=command.card_type,
        masked_card=cards.mask_pan(command.card_number) if command.card_number else "",
        check_number=txn.check_number,
    )


def start_payment(
    identity: TerminalIdentity, command: protocol.PaymentCommand
) -> services.AuthorizationStep | dict[str, Any]:
    """The payment's database phase: token, rules, the attempt committed as processing."""
    _connection_ready()
    try:
        terminal_touch(pk=identity.pk)
        return services.payment_sale_start(**_sale_arguments(identity, command))
    except PaymentError as exc:
        return protocol.error_for(exc)
    except Exception:
        # Nothing was sent to the acquirer: nothing can have been charged.
        logger.exception("terminal payment failed before the acquirer call terminal=%s", identity.terminal_id)
        return protocol.error_body(111, "Declined internal error")


def finish_payment(
    command: protocol.PaymentCommand, step: services.AuthorizationStep, result: AcquirerResult
) -> dict[str, Any]:
    """The payment's recording phase: the acquirer's answer and its event."""
    _connection_ready()
    try:
        txn = services.payment_authorization_record(step, result)
    except PaymentError as exc:
        return protocol.error_for(exc)
    return _approved_body(command, txn)


# --- The async PostgreSQL path ----------------------------------------------------------

Enqueue = Callable[[list[int]], None]


async def _touch_async(db: AsyncDatabase, identity: TerminalIdentity) -> None:
    if terminal_touch_due(pk=identity.pk):
        sql, params = terminal_touch_statement(pk=identity.pk)
        await db.execute(numbered(sql), params)


async def token_async(db: AsyncDatabase, identity: TerminalIdentity, command: protocol.TokenCommand) -> dict[str, Any]:
    """``execute`` on the async path."""
    try:
        await _touch_async(db, identity)
        token = await sale_async.token_issue_async(
            db, terminal_pk=identity.pk, payment_type=command.payment_type, try_count=command.try_count
        )
    except PaymentError as exc:
        return protocol.error_for(exc)
    except DatabaseUnavailable:
        return protocol.error_body(111, "Declined internal error")
    except Exception:
        logger.exception("terminal request failed terminal=%s", identity.terminal_id)
        return protocol.error_body(111, "Declined internal error")
    return protocol.token_body(
        value=token.value, payment_type=token.payment_type, created=token.created_at, expire=token.expires_at,
        try_count=token.try_count,
    )


async def pay_async(
    db: AsyncDatabase, enqueue: Enqueue, identity: TerminalIdentity, command: protocol.PaymentCommand
) -> dict[str, Any]:
    """``pay`` on the async path: facts, claim-and-record, acquirer, record.

    ``enqueue`` hands webhook deliveries to the broker off the event loop."""
    try:
        await _touch_async(db, identity)
        step, deliveries = await sale_async.payment_sale_start_async(db, **_sale_arguments(identity, command))
    except PaymentError as exc:
        enqueue(getattr(exc, "deliveries", []))
        return protocol.error_for(exc)
    except DatabaseUnavailable:
        # Nothing was sent to the acquirer: nothing can have been charged. (An
        # attempt committed unseen stays processing until the resolver declines it.)
        return protocol.error_body(111, "Declined internal error")
    except Exception:
        logger.exception("terminal payment failed before the acquirer call terminal=%s", identity.terminal_id)
        return protocol.error_body(111, "Declined internal error")
    try:
        result = await services.payment_authorization_send_async(step)
        txn, deliveries = await sale_async.payment_authorization_record_async(db, step, result)
    except PaymentError as exc:
        return protocol.error_for(exc)
    except Exception:
        # After the acquirer was asked, a failure of ours hides its answer (see ``pay``).
        logger.exception("terminal payment failed after the acquirer call terminal=%s", identity.terminal_id)
        return protocol.outcome_unknown_body("internal error", step.transaction.pk)
    enqueue(deliveries)
    return _approved_body(command, txn)
