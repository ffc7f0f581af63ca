"""Terminal credentials and identification: who is at the other end of a socket.

Rules (shared/contracts/terminal.md, "Terminal authentication"):
- credentials are a terminal id and a secret (JSON lines ``/auth`` frame,
  or HTTP Basic);
- a terminal with allowed addresses is refused from any other address,
  credentials or not;
- without credentials, a connection from an address that exactly one
  active terminal allows is that terminal (an indexed lookup of
  ``TerminalAddress``, the mirror ``Terminal.save()`` keeps of
  ``allowed_ips``).
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.utils import timezone

from merchants.addresses import normalize_ip
from merchants.models import Merchant
from payments.errors import NotAuthorized
from payments.keys import secret_digest, secret_matches

from .models import Terminal, TerminalAddress


@dataclass(frozen=True)
class TerminalIdentity:
    """What a connection knows about its terminal once identified."""

    pk: int
    terminal_id: str
    merchant_name: str


def _new_terminal_id() -> str:
    return "T" + secrets.token_hex(6).upper()


def terminal_create(
    *, merchant: Merchant, allowed_ips: list[str] | None = None, label: str = "", is_active: bool = True
) -> tuple[Terminal, str]:
    """A new terminal and its secret (shown once: only a digest is kept)."""
    try:
        addresses = [normalize_ip(ip) for ip in (allowed_ips or [])]
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    secret = secrets.token_urlsafe(24)
    terminal = Terminal.objects.create(
        terminal_id=_new_terminal_id(),
        merchant=merchant,
        label=label,
        allowed_ips=addresses,
        is_active=is_active,
        secret_digest=secret_digest(secret),
    )
    return terminal, secret


def terminal_rotate_secret(*, terminal: Terminal) -> str:
    secret = secrets.token_urlsafe(24)
    terminal.secret_digest = secret_digest(secret)
    terminal.save(update_fields=["secret_digest"])
    return secret


def _peer_allowed(terminal: Terminal, peer_ip: str) -> bool:
    return not terminal.allowed_ips or peer_ip in terminal.allowed_ips


def terminal_authenticate(*, terminal_id: object, secret: object, peer_ip: str) -> TerminalIdentity:
    """The terminal these credentials name, or NotAuthorized (always the same message)."""
    if not isinstance(terminal_id, str) or not isinstance(secret, str) or len(terminal_id) > 32:
        raise NotAuthorized("Terminal not authorized")
    terminal = (
        Terminal.objects.select_related("merchant")
        .filter(terminal_id=terminal_id, is_active=True, merchant__is_active=True)
        .first()
    )
    if terminal is None or not secret_matches(secret, terminal.secret_digest) or not _peer_allowed(
        terminal, normalize_ip(peer_ip)
    ):
        raise NotAuthorized("Terminal not authorized")
    terminal_touch(pk=terminal.pk)
    return TerminalIdentity(terminal.pk, terminal.terminal_id, terminal.merchant.name)


def terminal_identify_by_address(*, peer_ip: str) -> TerminalIdentity | None:
    """The only active terminal that allows ``peer_ip``, if there is exactly one.

    One query on the indexed mirror of the terminals' addresses
    (``TerminalAddress``), at most two rows read: the cost does not grow with
    the number of terminals, so connections from unknown addresses cannot
    make the listener load the terminal table.
    """
    try:
        address = normalize_ip(peer_ip)
    except ValueError:
        return None
    candidates = list(
        TerminalAddress.objects.filter(
            address=address, terminal__is_active=True, terminal__merchant__is_active=True
        ).values_list("terminal_id", "terminal__terminal_id", "terminal__merchant__name")[:2]
    )
    if len(candidates) != 1:
        return None
    pk, terminal_id, merchant_name = candidates[0]
    terminal_touch(pk=pk)
    return TerminalIdentity(pk, terminal_id, merchant_name)


_LAST_TOUCH: dict[int, float] = {}
TOUCH_INTERVAL_SECONDS = 30.0


def terminal_touch_due(*, pk: int) -> bool:
    """Whether this process should record that terminal ``pk`` was seen now
    (at most once per interval per process: a write per request would tax the
    hottest path for a minute's precision). True also marks it done."""
    now = time.monotonic()
    if now - _LAST_TOUCH.get(pk, -TOUCH_INTERVAL_SECONDS) < TOUCH_INTERVAL_SECONDS:
        return False
    _LAST_TOUCH[pk] = now
    return True


def terminal_touch_statement(*, pk: int) -> tuple[str, list[object]]:
    """The UPDATE of the async path (``%s`` placeholders; PostgreSQL only)."""
    return f"UPDATE {Terminal._meta.db_table} SET last_seen_at = %s WHERE id = %s", [timezone.now(), pk]


def terminal_touch(*, pk: int) -> None:
    """Record that a terminal was seen (see ``terminal_touch_due``)."""
    if terminal_touch_due(pk=pk):
        Terminal.objects.filter(pk=pk).update(last_seen_at=timezone.now())
