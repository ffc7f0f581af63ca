"""The outbox: events announcing state changes, and their webhook deliveries.

Every rule of *when* a merchant hears about something, and how hard we try,
is here:

- ``event_emit`` is called by ``payments.services`` inside the database
  transaction of the change it announces. It writes the event and one
  delivery row per active endpoint of the merchant, and asks for the
  deliveries to be queued **after** the commit (never before: a task must
  not run for a change that may still roll back).
- ``delivery_attempt`` (the Celery task's body) claims a delivery with a
  conditional UPDATE and a lease, makes one signed HTTP call outside any
  transaction, and records the attempt. A failed call is retried with
  exponential backoff and jitter until the event is 3 days old.
- ``outbox_sweep`` (Celery beat) re-queues every due row nobody holds: what a
  dead broker or a killed worker left behind is delivered late, never lost.
- Delivery is at least once: a receiver may see an event twice, with the
  same ``id``; it verifies ``X-Gateway-Signature`` (``signature_header``).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection
from django.db import transaction as db_transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from . import outbound, vault
from .db import require_atomic, require_no_transaction
from .money import format_amount
from .models import DeliveryAttempt, Event, Refund, Transaction, WebhookDelivery, WebhookEndpoint
from .states import PROCESS_STATE, DeliveryStatus, EventType, RefundStatus

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Gateway-Signature"
_SECRET_PURPOSE = "webhook-secret"
_DELIVERY = WebhookDelivery._meta.db_table
_ENDPOINT = WebhookEndpoint._meta.db_table


# --- What an event says -----------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def transaction_data(txn: Transaction) -> dict[str, object]:
    """A payment as merchants see it: never more of the card than its mask (first 6 /
    last 4 at most, the last 4 only for a short number); amounts with the currency's decimals."""
    currency = txn.currency
    return {
        "object": "payment",
        "transaction": txn.pk,
        "merchant_reference": txn.merchant_reference,
        "door": str(txn.door),
        "method": str(txn.method),
        "status": str(txn.status),
        "process_state": str(PROCESS_STATE[txn.status]),
        "amount": format_amount(txn.amount, currency),
        "currency": currency,
        "captured_amount": format_amount(txn.captured_amount, currency),
        "refunded_amount": format_amount(txn.refunded_amount, currency),
        "card": txn.masked_card,
        "card_brand": str(txn.card_brand),
        "failure_code": txn.failure_code,
        "failure_message": txn.failure_message,
    }


def refund_data(refund: Refund, txn: Transaction) -> dict[str, object]:
    return {
        "object": "refund",
        "refund": refund.pk,
        "transaction": txn.pk,
        "merchant_reference": txn.merchant_reference,
        "reference": refund.reference,
        "status": str(refund.status),
        "amount": format_amount(refund.amount, txn.currency),
        "currency": txn.currency,
        "transaction_status": str(txn.status),
        "refunded_amount": format_amount(txn.refunded_amount, txn.currency),
        "failure_message": refund.failure_message,
    }


def _require_atomic() -> None:
    # The event must commit with the change it announces, or not at all.
    require_atomic("event_emit")


def event_emit(
    *, type: EventType, transaction: Transaction, refund: Refund | None = None
) -> Event:
    """Write an event and its deliveries in the caller's transaction."""
    _require_atomic()
    data = refund_data(refund, transaction) if refund is not None else transaction_data(transaction)
    event = Event.objects.create(
        public_id="evt_" + secrets.token_hex(12),
        merchant_id=transaction.merchant_id,
        type=type,
        transaction_id=transaction.pk,
        refund_id=refund.pk if refund is not None else None,
        data=data,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_DELIVERY} (event_id, endpoint_id, status, started_at, attempts, next_attempt_at) "
            f"SELECT %s, id, %s, %s, 0, %s FROM {_ENDPOINT} WHERE merchant_id = %s AND is_active RETURNING id",
            [event.pk, DeliveryStatus.PENDING.value, connection.ops.adapt_datetimefield_value(event.created_at),
             connection.ops.adapt_datetimefield_value(event.created_at), transaction.merchant_id],
        )
        delivery_ids = [row[0] for row in cursor.fetchall()]
    if delivery_ids:
        db_transaction.on_commit(lambda: enqueue_deliveries(delivery_ids))
    logger.info("event %s %s transaction=%s deliveries=%d", event.public_id, type, transaction.pk, len(delivery_ids))
    return event


_EVENT = Event._meta.db_table
_SQL_EVENT_AFTER_CHANGE = (
    # PostgreSQL: the change, its event and its deliveries in one statement
    # (data-modifying CTEs), atomic by itself: one round trip on the terminals'
    # hot path instead of BEGIN, three statements and COMMIT. No row changed,
    # no event. One row back: whether the change applied, and the deliveries.
    "WITH changed AS ({statement} RETURNING merchant_id), "
    f"event AS (INSERT INTO {_EVENT} (public_id, merchant_id, type, transaction_id, refund_id, data, created_at) "
    "SELECT %s, merchant_id, %s, %s, NULL, %s::jsonb, %s FROM changed RETURNING id, merchant_id, created_at), "
    f"delivered AS (INSERT INTO {_DELIVERY} (event_id, endpoint_id, status, started_at, attempts, next_attempt_at) "
    f"SELECT event.id, ep.id, %s, event.created_at, 0, event.created_at FROM event "
    f"JOIN {_ENDPOINT} ep ON ep.merchant_id = event.merchant_id AND ep.is_active RETURNING id) "
    "SELECT (SELECT count(*) FROM changed), ARRAY(SELECT id FROM delivered)"
)


def event_emit_with_change(
    *, statement: str, params: list[object], type: EventType, transaction: Transaction
) -> bool:
    """Run ``statement`` (an UPDATE of one transaction, without RETURNING) and
    write the event announcing it, in one database transaction. True if the
    UPDATE changed the row (else nothing was written).

    ``transaction`` carries the values after the change (the event's data).
    On PostgreSQL outside any atomic block this is a single statement; else
    the UPDATE and ``event_emit`` run in one atomic block.
    """
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        with db_transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(statement, params)
                changed = cursor.rowcount
            if changed:
                event_emit(type=type, transaction=transaction)
        return bool(changed)
    sql, values, public_id = event_after_change_statement(
        statement=statement, params=params, type=type, transaction=transaction
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        changed, delivery_ids = cursor.fetchone()
    if delivery_ids:
        db_transaction.on_commit(lambda: enqueue_deliveries(delivery_ids))  # autocommit: at once
    if changed:
        logger.info("event %s %s transaction=%s deliveries=%d", public_id, type, transaction.pk, len(delivery_ids))
    return bool(changed)


def event_after_change_statement(
    *, statement: str, params: list[object], type: EventType, transaction: Transaction
) -> tuple[str, list[object], str]:
    """PostgreSQL's single statement for ``event_emit_with_change`` (also run by
    the TCP doors' async path): the SQL, its parameters and the event's public id.
    One row back: how many rows changed, and the deliveries' ids."""
    public_id = "evt_" + secrets.token_hex(12)
    return (
        _SQL_EVENT_AFTER_CHANGE.format(statement=statement),
        [*params, public_id, type.value, transaction.pk, json.dumps(transaction_data(transaction)),
         timezone.now(), DeliveryStatus.PENDING.value],
        public_id,
    )


def envelope(event: Event) -> bytes:
    """The body sent for an event: the same bytes on every attempt."""
    return json.dumps(
        {"id": event.public_id, "type": event.type, "created": _iso(event.created_at), "data": event.data},
        separators=(",", ":"),
    ).encode()


# --- Signing ------------------------------------------------------------------------


def new_endpoint_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def seal_secret(secret: str) -> str:
    return vault.seal(secret, purpose=_SECRET_PURPOSE)


def endpoint_secret(endpoint: WebhookEndpoint) -> str:
    return vault.unseal(endpoint.secret_sealed, purpose=_SECRET_PURPOSE)


def signature_header(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`` (esipay.md)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


# --- Retry policy ---------------------------------------------------------------------


def retry_delay(attempts: int, *, rng: random.Random | None = None) -> float:
    """Seconds before try ``attempts + 1``: exponential, capped, with jitter.

    The ceiling doubles with each try (10 s, 20 s, 40 s ... up to 6 h); the
    delay is drawn in its upper half, so retries of many deliveries that
    failed together spread out instead of returning as one wave.
    """
    ceiling = min(
        settings.WEBHOOK_RETRY_MAX_DELAY_SECONDS,
        settings.WEBHOOK_RETRY_BASE_SECONDS * (2 ** max(0, min(attempts - 1, 30))),
    )
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def countdown_for(delay: float) -> float | None:
    """The countdown to queue a retry with, or None to leave it to the sweep.

    A countdown waits inside a worker, unacknowledged; past the broker's
    visibility timeout Redis would hand the message to another worker.
    """
    return delay if delay <= settings.CELERY_MAX_COUNTDOWN_SECONDS else None


def _given_up(created_at: datetime, now: datetime) -> bool:
    return (now - created_at).total_seconds() >= settings.WEBHOOK_MAX_AGE_SECONDS


# --- Queueing (after commit only) ----------------------------------------------------


def _publish(task_name: str, ids: Iterable[int], countdown: float | None = None) -> int:
    """Queue one task per id, by the task's name (the outbox never imports the
    tasks module, which imports the services that import the outbox). A broker
    that is down is logged, not raised: the rows are in the database and the
    sweep queues them again."""
    from config.celery import app  # loaded only where work is queued

    sent = 0
    for pk in ids:
        try:
            app.send_task(f"payments.tasks.{task_name}", args=(pk,), countdown=countdown)
            sent += 1
        except Exception as exc:  # noqa: BLE001 - kombu raises many kinds; the sweep recovers
            logger.warning("broker unavailable, %s(%s) left to the sweep: %s", task_name, pk, exc)
            break
    return sent


def enqueue_deliveries(ids: Iterable[int], countdown: float | None = None) -> int:
    return _publish("deliver_webhook", ids, countdown)


def enqueue_refunds(ids: Iterable[int], countdown: float | None = None) -> int:
    return _publish("execute_refund", ids, countdown)


# --- Leases ---------------------------------------------------------------------------


def _free(now: datetime) -> Q:
    return Q(lease_until__isnull=True) | Q(lease_until__lt=now)


def lease_claim(queryset: QuerySet, *, pk: int, now: datetime) -> datetime | None:
    """Claim a due, pending, unheld row for this worker: one conditional UPDATE,
    so of two workers given the same id exactly one proceeds. Returns the
    lease (its end, to the microsecond: the holder's token), or None.

    The worker records its outcome only while the row still carries its
    lease: one whose lease ran out (and was handed to another) writes nothing.
    """
    lease = now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    claimed = (
        queryset.filter(pk=pk, next_attempt_at__lte=now)
        .filter(_free(now))
        .update(lease_until=lease, attempts=F("attempts") + 1)
    )
    return lease if claimed else None


# --- Delivering -----------------------------------------------------------------------


def delivery_attempt(*, delivery_id: int) -> WebhookDelivery | None:
    """One try of a delivery, if it is due and no other worker holds it."""
    now = timezone.now()
    pending = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING)
    lease = lease_claim(pending, pk=delivery_id, now=now)
    if lease is None:
        return None
    delivery = WebhookDelivery.objects.select_related("event", "endpoint").get(pk=delivery_id)
    endpoint, event = delivery.endpoint, delivery.event
    if not endpoint.is_active:
        WebhookDelivery.objects.filter(pk=delivery_id, lease_until=lease).update(
            status=DeliveryStatus.FAILED, lease_until=None, completed_at=now
        )
        delivery.status, delivery.lease_until, delivery.completed_at = DeliveryStatus.FAILED, None, now
        return delivery
    body = envelope(event)
    require_no_transaction("webhook call")
    started = timezone.now()
    try:
        secret = endpoint_secret(endpoint)
    except vault.VaultError as exc:
        response = outbound.OutboundResponse(status=None, duration_ms=0, excerpt="", error=f"cannot sign: {exc}")
    else:
        response = outbound.post(
            endpoint.url,
            content=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "payment-gateway-webhooks/1",
                "X-Gateway-Event": event.type,
                "X-Gateway-Event-Id": event.public_id,
                SIGNATURE_HEADER: signature_header(secret, body),
            },
        )
    return _delivery_record(delivery, response, started=started, lease=lease)


def _delivery_record(
    delivery: WebhookDelivery, response: outbound.OutboundResponse, *, started: datetime, lease: datetime
) -> WebhookDelivery:
    now = timezone.now()
    retry_in: float | None = None
    with db_transaction.atomic():
        # Still ours? A worker that outlived its lease must not overwrite the
        # state of the worker the sweep gave the row to.
        held = WebhookDelivery.objects.select_for_update().filter(
            pk=delivery.pk, status=DeliveryStatus.PENDING, lease_until=lease
        ).exists()
        if not held:
            logger.warning("delivery %s: lease lost before recording (%s), result dropped",
                           delivery.pk, response.status or response.error)
            return delivery
        DeliveryAttempt.objects.create(
            delivery=delivery,
            started_at=started,
            duration_ms=response.duration_ms,
            status_code=response.status,
            succeeded=response.success,
            error=response.error[:255],
            response_excerpt=response.excerpt[:500],
        )
        changes: dict[str, object] = {"lease_until": None, "last_status_code": response.status}
        if response.success:
            changes.update(status=DeliveryStatus.SUCCEEDED, completed_at=now)
        elif _given_up(delivery.started_at, now):
            changes.update(status=DeliveryStatus.FAILED, completed_at=now)
        else:
            retry_in = retry_delay(delivery.attempts)  # attempts counts this try (lease_claim)
            changes.update(next_attempt_at=now + timedelta(seconds=retry_in))
        WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.PENDING).update(**changes)
        if retry_in is not None and (countdown := countdown_for(retry_in)) is not None:
            db_transaction.on_commit(lambda: enqueue_deliveries([delivery.pk], countdown=countdown))
    for field, value in changes.items():
        setattr(delivery, field, value)
    logger.info(
        "webhook %s %s to %s: %s in %d ms%s",
        delivery.event.public_id, delivery.event.type, urlsplit(delivery.endpoint.url).hostname,
        response.status or response.error, response.duration_ms,
        f", retry in {retry_in:.0f} s" if retry_in is not None else "",
    )
    return delivery


def event_resend(*, event_id: int) -> int:
    """Staff's resend: deliver the event again to every active endpoint of its
    merchant (including endpoints added since), whatever happened before."""
    with db_transaction.atomic():
        event = Event.objects.select_for_update().get(pk=event_id)
        endpoints = WebhookEndpoint.objects.filter(merchant_id=event.merchant_id, is_active=True)
        ids = []
        for endpoint in endpoints:
            delivery, _ = WebhookDelivery.objects.get_or_create(event=event, endpoint=endpoint)
            # A new 3 days from now, from the first step of the backoff.
            WebhookDelivery.objects.filter(pk=delivery.pk).update(
                status=DeliveryStatus.PENDING, started_at=timezone.now(), attempts=0, next_attempt_at=timezone.now(),
                lease_until=None, completed_at=None, swept_at=None,
            )
            ids.append(delivery.pk)
        db_transaction.on_commit(lambda: enqueue_deliveries(ids))
    return len(ids)


# --- The sweep --------------------------------------------------------------------------


def _sweepable(pending: QuerySet, now: datetime) -> list[int]:
    """Due, unheld rows past the grace that this sweep did not queue recently;
    stamped, so that a backlog is not fed the same rows every period."""
    cutoff = now - timedelta(seconds=settings.OUTBOX_SWEEP_GRACE_SECONDS)
    resweep = now - timedelta(seconds=settings.OUTBOX_RESWEEP_SECONDS)
    ids = list(
        pending.filter(next_attempt_at__lte=cutoff).filter(_free(now))
        .filter(Q(swept_at__isnull=True) | Q(swept_at__lt=resweep))
        .order_by("next_attempt_at").values_list("pk", flat=True)[: settings.OUTBOX_SWEEP_BATCH]
    )
    if ids:
        pending.model.objects.filter(pk__in=ids).update(swept_at=now)
    return ids


def outbox_sweep() -> dict[str, int]:
    """Queue again every delivery and refund that is due, unheld, and has
    waited longer than the grace (what the queue should have done already)."""
    now = timezone.now()
    deliveries = _sweepable(WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING), now)
    refunds = _sweepable(Refund.objects.filter(status=RefundStatus.PENDING), now)
    found = {"deliveries": len(deliveries), "refunds": len(refunds)}
    sent = {"deliveries_queued": enqueue_deliveries(deliveries), "refunds_queued": enqueue_refunds(refunds)}
    if deliveries or refunds:
        logger.info("outbox sweep: %s", {**found, **sent})
    return {**found, **sent}


# --- Endpoints -------------------------------------------------------------------------


class EndpointURLInvalid(ValueError):
    pass


def endpoint_url_validate(url: str) -> str:
    """An http(s) URL with a host and no credentials. Whether its address is
    public is checked at every delivery (DNS answers change)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointURLInvalid("a webhook URL is http:// or https:// with a host")
    if parts.username or parts.password:
        raise EndpointURLInvalid("a webhook URL must not contain credentials")
    return url


def webhook_endpoint_create(
    *, merchant_pk: int, url: str, description: str = "", is_active: bool = True
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret, returned in clear this once."""
    endpoint_url_validate(url)
    secret = new_endpoint_secret()
    endpoint = WebhookEndpoint.objects.create(
        merchant_id=merchant_pk, url=url, description=description[:120],
        secret_sealed=seal_secret(secret), is_active=is_active,
    )
    return endpoint, secret


def webhook_endpoint_rotate_secret(*, endpoint_pk: int) -> str:
    """A new signing secret (shown once); the old one stops working at once."""
    secret = new_endpoint_secret()
    WebhookEndpoint.objects.filter(pk=endpoint_pk).update(secret_sealed=seal_secret(secret))
    return secret
