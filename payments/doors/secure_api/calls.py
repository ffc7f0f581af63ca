"""The API call log: one row per request, for staff (time, method, path, status,
error code), never a payload.

The query string is not kept (it is the encrypted payload of GET requests);
every run of 10 or more digits in the path is masked, in case a caller put a
card number where an id belongs (an envelope's digits are masked too: the
path shows which resource, the account uuid stays readable).
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from payments.db import insert_flushed_later

from .models import ApiCall

logger = logging.getLogger(__name__)
_LONG_DIGITS = re.compile(r"[0-9]{10,}")


def redact(path: str) -> str:
    return _LONG_DIGITS.sub(lambda match: "*" * len(match.group(0)), path)


def call_record(
    *, started: datetime, merchant_pk: int | None, app_id: str, method: str, path: str, status: int,
    error_code: int | None, replayed: bool, duration_ms: int, remote_addr: str,
) -> None:
    """Log the call, committed without waiting for the disk (a call lost with a crash of
    the database is a log line lost), in the caller's transaction when it has one
    (see ``base.SecureApiView._bookkeep``)."""
    insert_flushed_later(ApiCall(
        created_at=started, merchant_id=merchant_pk, app_id=app_id[:32], method=method[:8],
        path=redact(path)[:255], status=status, error_code=error_code, replayed=replayed,
        duration_ms=duration_ms, remote_addr=remote_addr[:45],
    ))


def calls_prune() -> int:
    """Forget calls older than SECURE_API_CALL_LOG_DAYS (the periodic task)."""
    cutoff = timezone.now() - timedelta(days=settings.SECURE_API_CALL_LOG_DAYS)
    deleted, _ = ApiCall.objects.filter(created_at__lt=cutoff).delete()
    return deleted
