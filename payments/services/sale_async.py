"""A terminal's token and sale on the async PostgreSQL path (the TCP doors' hot path).

The same rules as ``tokens.token_issue`` and ``payments.payment_sale_start``,
decided by the same functions (``token_refusal``, ``sale_draft``,
``sale_decide``, ``declined_fields``, ``outcome_plan``) on the same facts;
only the round trips differ. A sale's first phase is two statements
instead of Django's seven:

1. *facts* (read only): the terminal (active? its merchant's currency), the
   token, whether it is held, the bans hit and the limits that apply, in one
   SELECT (``screening.facts_statement`` inside it). Python decides.
2. *claim and record* (one call of a PL/pgSQL function, one transaction):
   use one try of the token (``tokens.SQL_TOKEN_CLAIM``, the row lock),
   check again that no payment holds it (a new snapshot, after the lock:
   READ COMMITTED), and insert the attempt Python decided (``processing``,
   or declined with its ``payment.failed`` event and deliveries).

So the SQL only claims, looks up and records; formats, fingerprints,
amounts and every decision stay in Python. The function is created per
connection in ``pg_temp`` from the models' columns (``connection_init``):
no migration to keep in step with the table. Divergence between the paths
is caught by one conformance suite run on both (tests/terminals).

``db`` is the listener's ``listeners.database.AsyncDatabase`` (any object
with its ``fetchrow``): a lost database raises ``DatabaseUnavailable``, a
refused statement ``StatementFailed``.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from django.utils import timezone

from listeners.database import DatabaseUnavailable, StatementFailed, numbered

from .. import outbox
from ..acquirers.base import AcquirerResult
from ..errors import NotAuthorized, PaymentError, PaymentOutcomeUnknown, TokenInvalid
from ..models import Event, Token, Transaction, WebhookDelivery, WebhookEndpoint
from ..states import DeliveryStatus, EventType, PaymentMethod
from .payments import (
    _TXN_FIELDS,
    AuthorizationStep,
    declined_fields,
    outcome_plan,
    outcome_settled,
    sale_decide,
    sale_draft,
    sale_facts_wanted,
    sale_step,
    sale_transaction,
)
from .screening import Expr, facts_from_rows, facts_statement
from .sql import MERCHANT, TERMINAL, TOKEN, TXN, plain
from .tokens import (
    SQL_TOKEN_CLAIM,
    SQL_TOKEN_HELD,
    ClaimedToken,
    TokenFacts,
    token_draft,
    token_issue_statement,
    token_refusal,
)


class Database(Protocol):
    async def fetchrow(self, sql: str, args: list[object]) -> Any: ...


# --- Statements ------------------------------------------------------------------------------

# The database refused the claim inside the function: SQLSTATEs it raises.
REFUSED, HELD, CURRENCY_CHANGED = "GWREF", "GWHLD", "GWCUR"

_EVENT, _DELIVERY, _ENDPOINT = Event._meta.db_table, WebhookDelivery._meta.db_table, WebhookEndpoint._meta.db_table
_COLUMNS = ", ".join(f.column for f in _TXN_FIELDS)


def _facts_sql(wanted: dict[str, object]) -> tuple[str, list[object]]:
    """Statement 1: the terminal, the token and the rules' facts in one row
    (none when the terminal is not active). Parameters in textual order."""
    rules = facts_statement(**wanted, currency=Expr("term.currency"), token=Expr("tok.id"))
    union, params = rules if rules is not None else ("SELECT '', '', CAST(NULL AS NUMERIC) WHERE false", [])
    sql = (
        "SELECT term.merchant_id, term.currency, tok.id, tok.payment_type, tok.expires_at, tok.tries_used, "
        "tok.try_count, ARRAY(SELECT f.what || ' ' || f.kind || ' ' || COALESCE(CAST(f.amount AS TEXT), '') "
        f"FROM ({union}) AS f(what, kind, amount)) "
        f"FROM (SELECT m.id AS merchant_id, m.currency FROM {TERMINAL} t JOIN {MERCHANT} m ON m.id = t.merchant_id "
        "WHERE t.id = %s AND t.is_active AND m.is_active) AS term "
        f"LEFT JOIN {TOKEN} tok ON tok.value = %s AND tok.terminal_id = %s"
    )
    return sql, params


# Statement 2, created once per connection. $1..$4 of SQL_TOKEN_CLAIM are the
# function's first four arguments (value, terminal, method, now).
_CLAIM_FUNCTION = f"""
CREATE OR REPLACE FUNCTION pg_temp.gateway_sale_claim(
    p_value text, p_terminal bigint, p_method text, p_now timestamptz, p_currency text,
    p_txn jsonb, p_event_id text, p_event_type text, p_event jsonb
) RETURNS TABLE (txn_id bigint, delivery_ids bigint[]) LANGUAGE plpgsql AS $fn$
DECLARE
    v_token bigint; v_merchant bigint; v_currency text; v_txn bigint; v_event bigint; v_deliveries bigint[];
BEGIN
    {numbered(SQL_TOKEN_CLAIM)} INTO v_token, v_merchant, v_currency;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'token refused' USING ERRCODE = '{REFUSED}';
    END IF;
    IF EXISTS ({SQL_TOKEN_HELD.replace('%s', 'v_token')}) THEN
        RAISE EXCEPTION 'token held' USING ERRCODE = '{HELD}';  -- undoes the try
    END IF;
    IF v_currency <> p_currency THEN
        RAISE EXCEPTION 'currency changed' USING ERRCODE = '{CURRENCY_CHANGED}';
    END IF;
    IF p_txn IS NOT NULL THEN
        INSERT INTO {TXN} ({_COLUMNS})
        SELECT {_COLUMNS} FROM jsonb_populate_record(
            NULL::{TXN}, p_txn || jsonb_build_object('token_id', v_token, 'merchant_id', v_merchant))
        RETURNING id INTO v_txn;
        IF p_event_type IS NOT NULL THEN
            INSERT INTO {_EVENT} (public_id, merchant_id, type, transaction_id, refund_id, data, created_at)
            VALUES (p_event_id, v_merchant, p_event_type, v_txn, NULL,
                    p_event || jsonb_build_object('transaction', v_txn), p_now)
            RETURNING id INTO v_event;
            WITH d AS (
                INSERT INTO {_DELIVERY} (event_id, endpoint_id, status, started_at, attempts, next_attempt_at)
                SELECT v_event, ep.id, '{DeliveryStatus.PENDING.value}', p_now, 0, p_now FROM {_ENDPOINT} ep
                WHERE ep.merchant_id = v_merchant AND ep.is_active RETURNING id
            ) SELECT array_agg(id) INTO v_deliveries FROM d;
        END IF;
    END IF;
    RETURN QUERY SELECT v_txn, COALESCE(v_deliveries, CAST('{{}}' AS bigint[]));
END
$fn$
"""
_CLAIM_CALL = "SELECT txn_id, delivery_ids FROM pg_temp.gateway_sale_claim($1, $2, $3, $4, $5, $6, $7, $8, $9)"


async def connection_init(conn: Any) -> None:
    """Per pooled connection: create the claim function (in pg_temp: it lives
    and dies with the connection, and always matches the running code)."""
    await conn.execute(_CLAIM_FUNCTION)


# --- Token ----------------------------------------------------------------------------------


async def token_issue_async(db: Database, *, terminal_pk: int, payment_type: PaymentMethod, try_count: int = 3) -> Token:
    """``tokens.token_issue`` on the async path (one INSERT)."""
    token = token_draft(terminal_pk=terminal_pk, payment_type=payment_type, try_count=try_count)
    sql, params = token_issue_statement(token)
    row = await db.fetchrow(numbered(sql), params)
    if row is None:
        raise NotAuthorized("Terminal not authorized")
    token.pk = row[0]
    return token


# --- Sale -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Facts:
    token: ClaimedToken | None
    token_facts: TokenFacts | None
    rules: Any


async def _read_facts(db: Database, *, terminal_pk: int, value: str, wanted: dict[str, object]) -> _Facts | None:
    sql, params = _facts_sql(wanted)
    row = await db.fetchrow(numbered(sql), [*params, terminal_pk, value, terminal_pk])
    if row is None:
        return None  # no active terminal
    merchant_pk, currency, token_pk, payment_type, expires_at, tries_used, try_count, encoded = row
    rules = facts_from_rows((tuple(item.split(" ", 2)) for item in encoded), currency=currency)
    if token_pk is None:
        return _Facts(token=None, token_facts=None, rules=rules)
    return _Facts(
        token=ClaimedToken(pk=token_pk, merchant_pk=merchant_pk, currency=currency),
        token_facts=TokenFacts(
            payment_type=payment_type, expires_at=expires_at, tries_used=tries_used, try_count=try_count,
            held=rules.token_held,
        ),
        rules=rules,
    )


# Fields whose value is set at save (auto_now, auto_now_add): pre_save sets them.
_STAMPED = [f for f in _TXN_FIELDS if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)]
_PLAIN = [(f.column, f.attname) for f in _TXN_FIELDS]


def _json_value(value: object) -> object:
    value = plain(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)  # exact: jsonb keeps it as a numeric
    return value


def _json_row(txn: Transaction) -> str:
    """The attempt's columns as the function's jsonb. The fields are plain
    (keys, text, decimals, times: tests/payments/test_sale_async.py keeps them so),
    so their Python values
    are their database values; the ORM's per-field preparation cost a tenth
    of the listener's CPU per payment."""
    for f in _STAMPED:
        f.pre_save(txn, True)
    return json.dumps({column: _json_value(getattr(txn, attname)) for column, attname in _PLAIN})


async def payment_sale_start_async(
    db: Database,
    *,
    terminal_pk: int,
    token: object,
    method: PaymentMethod,
    amount: object,
    card_type: str = "",
    card_number: object = None,
    pin: object = None,
    check_number: object = None,
) -> tuple[AuthorizationStep, list[int]]:
    """``payments.payment_sale_start`` on the async path: the step to send, and
    the deliveries to enqueue; raises the first failed rule (after recording a
    declined attempt, as the threaded path does)."""
    value = token if isinstance(token, str) and len(token) == 64 else ""
    try:
        draft = sale_draft(
            method=method, card_number=card_number, card_type=card_type, pin=pin, check_number=check_number
        )
        draft_error: PaymentError | None = None
    except PaymentError as exc:
        draft, draft_error = None, exc
    facts = await _read_facts(
        db, terminal_pk=terminal_pk, value=value, wanted=sale_facts_wanted(draft) if draft is not None else {}
    )
    now = timezone.now()
    refusal = token_refusal(
        terminal_active=facts is not None, token=facts.token_facts if facts else None, method=method, now=now
    )
    if refusal is not None:
        raise refusal
    claimed = facts.token if facts is not None else None
    if claimed is None:  # pragma: no cover - token_refusal refuses a missing token
        raise TokenInvalid()
    txn = sale_transaction(terminal_pk=terminal_pk, token=claimed, method=method)
    failure: PaymentError | None = None
    pan = ""
    keep = True
    try:
        if draft_error is not None:
            raise draft_error
        pan = sale_decide(txn, draft, facts.rules, amount=amount)
    except PaymentError as exc:
        failure = exc
        keep = declined_fields(txn, exc, amount=amount, card_number=card_number)
    event_id = "evt_" + secrets.token_hex(12)
    declined_event = failure is not None and keep
    try:
        row = await db.fetchrow(_CLAIM_CALL, [
            value, terminal_pk, str(method), now, txn.currency,
            _json_row(txn) if keep else None,
            event_id if declined_event else None,
            EventType.PAYMENT_FAILED.value if declined_event else None,
            json.dumps(outbox.transaction_data(txn)) if declined_event else None,
        ])
    except StatementFailed as exc:
        if exc.sqlstate == REFUSED:
            # Changed since the facts were read (another payment, expiry): read them again to say which rule.
            again = await _read_facts(db, terminal_pk=terminal_pk, value=value, wanted={})
            raise token_refusal(
                terminal_active=again is not None, token=again.token_facts if again else None, method=method,
                now=timezone.now(),
            ) or TokenInvalid() from None
        if exc.sqlstate in (HELD, CURRENCY_CHANGED) or exc.constraint == "one_payment_per_token":
            # Held by a payment that committed meanwhile (the unique index is the last guard).
            raise TokenInvalid() from None
        raise
    txn.pk, deliveries = row[0], list(row[1])
    txn._state.adding = False
    if failure is not None:
        failure.transaction_id = txn.pk
        failure.deliveries = deliveries  # type: ignore[attr-defined]  # enqueued by the caller
        raise failure
    return sale_step(txn, pan=pan), deliveries


async def payment_authorization_record_async(
    db: Database, step: AuthorizationStep, result: AcquirerResult
) -> tuple[Transaction, list[int]]:
    """``payments.payment_authorization_record`` on the async path: one statement
    (the UPDATE, its event and deliveries). A lost database leaves the outcome
    unknown, as on the threaded path."""
    plan = outcome_plan(step, result)
    txn = step.transaction
    if plan.event is None:  # pragma: no cover - a terminal's sale always captures
        raise PaymentError("an authorization without capture is not a terminal sale")
    sql, params, _ = outbox.event_after_change_statement(
        statement=plan.statement, params=plan.params, type=plan.event, transaction=txn
    )
    try:
        row = await db.fetchrow(numbered(sql), params)
    except (DatabaseUnavailable, StatementFailed) as exc:
        # Committed or not, nobody here can tell: the resolver will.
        raise PaymentOutcomeUnknown("the answer could not be recorded", transaction_id=txn.pk) from exc
    return outcome_settled(step, result, applied=bool(row[0])), list(row[1])
