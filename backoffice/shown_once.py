"""Secrets shown once, after a redirect (post/redirect/get).

A page that creates or rotates a credential must not answer its POST with
the secret: a reload would submit again (a second terminal, a second
rotation that kills the secret just copied). Instead the POST ``stash``es
the new secrets and redirects to a page that ``take``s them: the stored
value is deleted as it is read, so a reload shows nothing again.

Between the two requests the secrets are kept server-side only: sealed with
``payments.vault`` (AES-GCM under PAYMENTS_MASTER_KEY, bound to the row's
id), tied to the staff member and their session, and for at most
``BACKOFFICE_SHOWN_ONCE_SECONDS``. Nothing readable goes into a cookie, the
message storage or the session (the session holds nothing: the redirect's
URL names the row). Expired rows are purged on every stash and take.

``backoffice.admin_mixins.ShownOnceAdminMixin`` wires this into a
ModelAdmin (terminals, webhook endpoints, and the credentials later doors
add: secure API app keys, SET gateway secrets).
"""
from __future__ import annotations

import hashlib
import json
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from payments import vault

from .models import ShownOnceSecret

_PURPOSE = "backoffice-shown-once"


def _session_digest(request: HttpRequest) -> str:
    session = request.session
    if session.session_key is None:
        session.save()  # a logged-in staff member always has one; be safe anyway
    return hashlib.sha256(f"shown-once:{session.session_key}".encode()).hexdigest()


def _seal_purpose(purpose: str, handle: uuid.UUID) -> str:
    # The row's id and purpose are the associated data: a sealed value copied
    # to another row, or shown by another admin, does not open.
    return f"{_PURPOSE}:{purpose}:{handle}"


def _purge_expired(now) -> None:  # type: ignore[no-untyped-def]
    ShownOnceSecret.objects.filter(expires_at__lte=now).delete()


def stash(request: HttpRequest, *, purpose: str, payload: Any) -> uuid.UUID:
    """Keep ``payload`` (a JSON value, secrets in it) for one view; the handle names it."""
    now = timezone.now()
    handle = uuid.uuid4()
    sealed = vault.seal(json.dumps(payload), purpose=_seal_purpose(purpose, handle))
    _purge_expired(now)
    ShownOnceSecret.objects.create(
        id=handle, user=request.user, session_digest=_session_digest(request), purpose=purpose, sealed=sealed,
        created_at=now, expires_at=now + timedelta(seconds=settings.BACKOFFICE_SHOWN_ONCE_SECONDS),
    )
    return handle


def take(request: HttpRequest, *, purpose: str, handle: object) -> Any:
    """The payload stashed under ``handle`` by this staff member in this session,
    or None if they were shown already, expired, or are not theirs. Deleted
    as they are read: of two concurrent requests, one gets them."""
    try:
        key = uuid.UUID(str(handle))
    except ValueError:
        return None
    now = timezone.now()
    with transaction.atomic():
        _purge_expired(now)
        row = ShownOnceSecret.objects.filter(
            pk=key, user_id=request.user.pk, purpose=purpose, session_digest=_session_digest(request)
        ).first()
        if row is None:
            return None
        deleted, _ = ShownOnceSecret.objects.filter(pk=row.pk).delete()
    if not deleted:
        return None  # another request took it first
    return json.loads(vault.unseal(row.sealed, purpose=_seal_purpose(purpose, key)))
