"""A merchant's PLTOKEN credentials (secure API, IOTP): issue, rotate, look up,
and the nonces already seen.

Credentials (shared/contracts/secure-api.md, "Credentials"): ``app_id`` 32
lower-case hex (public, on the merchant), ``app_key`` and ``data_key`` base64
of 32 random bytes each. The keys exist in clear only in the answer that
issues them (``IssuedKeys``); the database keeps them sealed under
PAYMENTS_MASTER_KEY (payments.vault), because the gateway must read them back
to verify signatures and encrypt answers. A rotation makes a new current
pair; the previous one stays valid for ``API_KEY_GRACE_SECONDS``.
"""
from __future__ import annotations

import base64
import logging
import random
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError
from django.db import transaction as db_transaction
from django.db.models import Q
from django.utils import timezone

from payments import vault
from payments.db import insert_flushed_later

from .models import ApiKeyPair, ApiNonce, Merchant

logger = logging.getLogger(__name__)

_APP_KEY_PURPOSE = "api-app-key"
_DATA_KEY_PURPOSE = "api-data-key"
# One remember() in this many also deletes the nonces that expired (cheap,
# indexed), so the table stays the size of the replay window.
_PRUNE_ONE_IN = 200


@dataclass(frozen=True)
class IssuedKeys:
    """Credentials as shown once (create_merchant, the back office)."""

    app_id: str
    app_key: str = field(repr=False)
    data_key: str = field(repr=False)


@dataclass(frozen=True)
class KeyPair:
    """One usable key pair of a merchant, opened (bytes), for one request."""

    pk: int
    app_key: bytes = field(repr=False)
    data_key: bytes = field(repr=False)
    current: bool


def _new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def api_keys_issue(*, merchant: Merchant) -> IssuedKeys:
    """A new current key pair for ``merchant`` (and its app_id on the first
    call). A pair that was current stays valid for the grace period."""
    app_key, data_key = _new_key(), _new_key()
    now = timezone.now()
    with db_transaction.atomic():
        locked = Merchant.objects.select_for_update().get(pk=merchant.pk)
        if not locked.app_id:
            locked.app_id = secrets.token_hex(16)
            locked.save(update_fields=["app_id"])
        ApiKeyPair.objects.filter(merchant=locked, expires_at__isnull=True).update(
            expires_at=now + timedelta(seconds=settings.API_KEY_GRACE_SECONDS)
        )
        ApiKeyPair.objects.create(
            merchant=locked,
            app_key_sealed=vault.seal(app_key, purpose=_APP_KEY_PURPOSE),
            data_key_sealed=vault.seal(data_key, purpose=_DATA_KEY_PURPOSE),
        )
    merchant.app_id = locked.app_id
    logger.info("API keys issued for merchant %s (app_id %s)", merchant.pk, locked.app_id)
    return IssuedKeys(app_id=locked.app_id, app_key=app_key, data_key=data_key)


def api_key_pairs_valid(*, merchant: Merchant, now: datetime | None = None) -> list[KeyPair]:
    """The merchant's pairs that may sign a request now, the current one first."""
    moment = now or timezone.now()
    rows = ApiKeyPair.objects.filter(merchant=merchant).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=moment)
    ).order_by("expires_at", "-created_at")
    pairs = [pair for row in rows if (pair := _opened(row, merchant.pk)) is not None]
    # Current first: the common case costs one HMAC.
    pairs.sort(key=lambda pair: not pair.current)
    return pairs


def _opened(row: ApiKeyPair, merchant_pk: int) -> KeyPair | None:
    try:
        return KeyPair(
            pk=row.pk,
            app_key=base64.b64decode(vault.unseal(row.app_key_sealed, purpose=_APP_KEY_PURPOSE)),
            data_key=base64.b64decode(vault.unseal(row.data_key_sealed, purpose=_DATA_KEY_PURPOSE)),
            current=row.expires_at is None,
        )
    except vault.VaultError as exc:  # sealed under another master key: unusable, say so loudly
        logger.error("API key pair %s of merchant %s cannot be opened: %s", row.pk, merchant_pk, exc)
        return None


def api_caller_keys(*, app_id: str, now: datetime | None = None) -> tuple[Merchant | None, list[KeyPair]]:
    """``merchant_by_app_id`` and ``api_key_pairs_valid`` in one query: the signature
    check's lookup on every request (a second query only when the merchant has no
    valid pair, to tell that from an unknown app_id)."""
    if not (isinstance(app_id, str) and len(app_id) == 32):
        return None, []
    moment = now or timezone.now()
    rows = list(
        ApiKeyPair.objects.select_related("merchant")
        .filter(merchant__app_id=app_id, merchant__is_active=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=moment))
    )
    if not rows:
        return merchant_by_app_id(app_id), []
    merchant = rows[0].merchant
    pairs = [pair for row in rows if (pair := _opened(row, merchant.pk)) is not None]
    pairs.sort(key=lambda pair: not pair.current)  # current first: the common case costs one HMAC
    return merchant, pairs


def merchant_by_app_id(app_id: str) -> Merchant | None:
    """The active merchant with this app_id, if any."""
    if not (isinstance(app_id, str) and len(app_id) == 32):
        return None
    return Merchant.objects.filter(app_id=app_id, is_active=True).first()


def api_nonce_remember(*, app_id: str, nonce: str, expires_at: datetime) -> bool:
    """Remember a nonce until ``expires_at``; False when it was already seen
    (a replay), by this process or any other."""
    now = timezone.now()
    try:
        # Committed without waiting for the disk (a flushed commit costs ~3 ms, the
        # largest part of a signature check): other processes see the nonce at once;
        # only a crash of the database could lose the last few, and what a replay of
        # such a request could then do is nothing: its answer is encrypted for the
        # key holder, and any request that wrote something committed (flushed) its
        # write after the nonce, which flushes the nonce with it.
        insert_flushed_later(ApiNonce(app_id=app_id, nonce=nonce, expires_at=expires_at))
    except IntegrityError:
        # Seen before. Expired but not yet pruned: it may be used again.
        reused = ApiNonce.objects.filter(app_id=app_id, nonce=nonce, expires_at__lte=now).update(
            expires_at=expires_at
        )
        return bool(reused)
    if random.randrange(_PRUNE_ONE_IN) == 0:
        ApiNonce.objects.filter(expires_at__lte=now).delete()
    return True


def api_nonces_prune() -> int:
    """Forget every nonce past its window (also done now and then by remember())."""
    deleted, _ = ApiNonce.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted
