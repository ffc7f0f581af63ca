"""Idempotency: an ``orderID`` or ``Idempotency-Key`` repeated gets the first answer.

The rules (Stripe's, and the IETF Idempotency-Key draft's):

- the first request under a key claims it (an INSERT: one winner among any
  number of concurrent requests, in any process);
- its answer, whatever it was (success or error), is stored with a keyed
  digest of the request, and a repeat with the same request gets that
  answer again, byte for byte once decrypted (it is sealed at rest: it may
  hold a ``cardCVVEncKey``);
- a repeat with another request (method, resource or decrypted body) is
  refused (997, the key was reused);
- a repeat while the first is still running gets 409 at once: no worker waits;
- a request that died while running leaves its claim behind with a lease;
  once the lease has run out a repeat may take it over (the core's own
  idempotency, one live payment per orderID, stops a second charge);
- Idempotency-Key records are forgotten after SECURE_API_IDEMPOTENCY_TTL_SECONDS
  (pruned now and then here, and by the periodic task); orderIDs are kept.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from payments import keys, vault
from payments.db import insert_flushed_later

from .models import IdempotencyRecord

Scope = IdempotencyRecord.Scope
_PURPOSE = "secure-api-answer"
_PRUNE_ONE_IN = 200


class Refusal(Enum):
    IN_PROGRESS = "in_progress"
    REUSED = "reused"


@dataclass(frozen=True)
class Claim:
    """This request is the first under the key (or took over a dead one's)."""

    pk: int
    lease_until: datetime


@dataclass(frozen=True)
class Replay:
    status: int
    body: bytes


def request_digest(*, method: str, resource: str, body: bytes) -> str:
    """A keyed digest of a request (the body may hold a card number: never a plain hash)."""
    return keys.fingerprint("secure-api-request", f"{method} {resource}\n{body.decode('utf-8', 'replace')}")


def _expiry(scope: str, now: datetime) -> datetime | None:
    if scope == Scope.ORDER:
        return None
    return now + timedelta(seconds=settings.SECURE_API_IDEMPOTENCY_TTL_SECONDS)


def claim(*, merchant_pk: int, scope: str, key: str, digest: str) -> Claim | Replay | Refusal:
    now = timezone.now()
    lease = now + timedelta(seconds=settings.SECURE_API_IDEMPOTENCY_LEASE_SECONDS)
    try:
        # Flushed later: a claim lost with a crash of the database before anything
        # else was written leaves nothing to repeat; anything the request then
        # writes (the payment) is committed flushed, and flushes the claim with it.
        record = IdempotencyRecord(
            merchant_id=merchant_pk, scope=scope, key=key, request_digest=digest, lease_until=lease,
            expires_at=_expiry(scope, now),
        )
        insert_flushed_later(record)
    except IntegrityError:
        pass
    else:
        if random.randrange(_PRUNE_ONE_IN) == 0:
            prune()
        return Claim(record.pk, lease)
    record = IdempotencyRecord.objects.filter(merchant_id=merchant_pk, scope=scope, key=key).first()
    if record is None:  # pruned in between: the key is free again
        return claim(merchant_pk=merchant_pk, scope=scope, key=key, digest=digest)
    if record.expires_at is not None and record.expires_at <= now:
        # Past its window but not pruned yet: as if it were gone.
        taken = IdempotencyRecord.objects.filter(pk=record.pk, expires_at__lte=now).update(
            request_digest=digest, running=True, lease_until=lease, status=None, response_sealed="",
            expires_at=_expiry(scope, now),
        )
        return Claim(record.pk, lease) if taken else Refusal.IN_PROGRESS
    if record.request_digest != digest:
        return Refusal.REUSED
    if not record.running:
        body = vault.unseal(record.response_sealed, purpose=f"{_PURPOSE}:{record.pk}").encode("utf-8")
        return Replay(record.status or 200, body)
    if record.lease_until > now:
        return Refusal.IN_PROGRESS
    # The first request died while running: take its claim over (one taker wins).
    taken = IdempotencyRecord.objects.filter(pk=record.pk, running=True, lease_until=record.lease_until).update(
        lease_until=lease
    )
    return Claim(record.pk, lease) if taken else Refusal.IN_PROGRESS


def complete(held: Claim, *, status: int, body: bytes) -> bool:
    """Store the first answer, if the claim is still this request's (its lease).

    The caller commits it with the call log, flushed later: an answer lost with a
    crash of the database leaves the claim running, and the repeat that takes it
    over gets the outcome of what was done (a charge is found by its orderID).
    """
    stored = IdempotencyRecord.objects.filter(pk=held.pk, running=True, lease_until=held.lease_until).update(
        running=False, status=status,
        response_sealed=vault.seal(body.decode("utf-8"), purpose=f"{_PURPOSE}:{held.pk}"),
    )
    return bool(stored)


def release(held: Claim) -> None:
    """Give a claim up unanswered (another key of the same request was refused)."""
    IdempotencyRecord.objects.filter(pk=held.pk, running=True, lease_until=held.lease_until).delete()


def prune() -> int:
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted
