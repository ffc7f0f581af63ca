"""One terminal request's work: synchronous database functions, and a payment's phases.

The listener runs the synchronous functions in its database threads
(``sync_to_async``); each calls the payment services (which own the
transactions) and turns the outcome into the contract's response body. A
payment (``pay``) is three steps, so that no database thread waits for the
acquirer: screen and record it (a database thread), ask the acquirer (its own
pool, awaited on the event loop), record the answer (a database thread).
No sockets here.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.db import connections

from payments import cards, services
from payments.acquirers.base import AcquirerResult
from payments.errors import NotAuthorized, PaymentError

from . import protocol
from .services import TerminalIdentity, terminal_authenticate, terminal_identify_by_address, terminal_touch

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


def start_payment(
    identity: TerminalIdentity, command: protocol.PaymentCommand
) -> services.AuthorizationStep | dict[str, Any]:
    """The payment's database phase: token, rules, the attempt committed as processing."""
    _connection_ready()
    try:
        terminal_touch(pk=identity.pk)
        return services.payment_sale_start(
            terminal_pk=identity.pk,
            token=command.token,
            method=command.method,
            amount=command.amount,
            card_type=command.card_type,
            card_number=command.card_number,
            pin=command.pin,
            check_number=command.check_number,
        )
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
