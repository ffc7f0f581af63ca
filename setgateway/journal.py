"""What staff see of the SET gateway: the diagnostic log journal and the live connections.

Both are written by the gateway processes (synchronous functions, one
statement or transaction each, called from the listener's database threads)
and read by the back office.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction as db_transaction
from django.utils import timezone

from . import payload
from .credentials import merchants_at_address
from .models import DiagnosticLog, LiveConnection

# A run of 12–19 ASCII digits: a NumericString card number looks like this in
# DER too. Journaled bodies keep its first 6 and last 4 digits only.
_PAN_LIKE = re.compile(rb"(?<![0-9])[0-9]{12,19}(?![0-9])")


def mask_card_numbers(body: bytes) -> bytes:
    """``body`` with every card-like digit run masked, its length (and so its DER) kept."""
    return _PAN_LIKE.sub(lambda m: m.group(0)[:6] + b"*" * (len(m.group(0)) - 10) + m.group(0)[-4:], body)


def _summary(body: bytes) -> str:
    try:
        message = payload.decode(body)
    except payload.PayloadError as exc:
        return f"not a valid GatewayMessage (ErrorMsg {exc.code}: {exc.reason})"
    trans_id = getattr(message, "trans_id", None)
    return f"{message.KIND}" + (f" transId={trans_id}" if trans_id else "")


def diagnostic_record(*, peer_ip: str, received_at: datetime, size: int, content_type: str,
                      msg_tag: str | None, body: bytes | None) -> DiagnosticLog:
    """Journal one diagnostic log message (``body`` None: it was over the maximum
    and was not kept). The merchant is recorded when the address names one."""
    merchants = merchants_at_address(peer_ip)
    kept = body is not None
    return DiagnosticLog.objects.create(
        merchant_id=merchants[0].merchant_id if len(merchants) == 1 else None,
        peer_ip=peer_ip,
        received_at=received_at,
        size=size,
        content_type=content_type[:100],
        msg_tag=(msg_tag or "")[:32],
        body=mask_card_numbers(body) if kept else b"",
        body_kept=kept,
        summary=(_summary(body) if kept else "over the maximum message size: body not kept")[:255],
    )


# --- Live connections ------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveSnapshot:
    connection_id: str
    merchant_pk: int | None
    peer: str
    state: str
    since: datetime
    outstanding: int


def live_connections_publish(*, process: str, connections: list[LiveSnapshot]) -> None:
    """Replace what ``process`` published before with ``connections`` (one transaction)."""
    now = timezone.now()
    with db_transaction.atomic():
        LiveConnection.objects.filter(process=process).delete()
        LiveConnection.objects.bulk_create([
            LiveConnection(process=process, connection_id=c.connection_id, merchant_id=c.merchant_pk, peer=c.peer,
                           state=c.state, since=c.since, outstanding=c.outstanding, seen_at=now)
            for c in connections
        ])


def live_connections_forget(*, process: str) -> None:
    """A process that stops takes its rows with it."""
    LiveConnection.objects.filter(process=process).delete()


def live_cutoff() -> datetime:
    """Rows older than this belong to a process that is gone (killed, not stopped)."""
    return timezone.now() - timedelta(seconds=3 * settings.SET_LIVE_PUBLISH_SECONDS)
