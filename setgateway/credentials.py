"""Merchants' SET credentials: settings, the shared secret, and who a connection is.

The contract's rules (set-gateway, "Connection states"):
- greeting: an address registered to no SET merchant is refused (unless
  ``SET_ACCEPT_UNKNOWN_ADDRESSES``); an address that belongs to exactly one
  merchant whose authentication is ``address`` opens at once; otherwise a
  challenge is issued;
- Authentication: the HMAC of the greeting and transport id under the
  merchant's secret, checked in constant time, and the source address must
  be one of the merchant's registered addresses when it has any (``both``
  requires them).

The secret is shown once (``create_merchant``, the back office) and kept
sealed (``payments.vault``): the gateway must read it back to check HMACs.
"""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError
from django.db import transaction as db_transaction
from django.utils import timezone
from django.utils.text import slugify

from merchants.addresses import normalize_ip
from merchants.models import Merchant
from payments import vault

from . import framing
from .models import Authentication, SetSettings
from .session import CHALLENGE, REFUSE, GreetingDecision

logger = logging.getLogger(__name__)

_SECRET_PURPOSE = "set-secret"


@dataclass(frozen=True)
class IssuedSecret:
    """A transport id and its new secret, as shown once."""

    transport_id: str
    secret: str = field(repr=False)


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


def default_transport_id(name: str) -> str:
    """A slug of the merchant's name, made unique (``shop``, ``shop-2``...)."""
    base = (slugify(name) or "merchant")[:56]
    candidate, n = base, 1
    while SetSettings.objects.filter(transport_id=candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def set_settings_create(
    *, merchant: Merchant, transport_id: str = "", authentication: str = Authentication.CHALLENGE,
    enabled: bool = True,
) -> tuple[SetSettings, IssuedSecret]:
    """SET settings for ``merchant``, with a new secret (returned once, kept sealed)."""
    secret = _new_secret()
    for _ in range(5):  # a concurrent merchant may take the same slug: take the next one
        row = SetSettings(
            merchant=merchant,
            transport_id=transport_id or default_transport_id(merchant.name),
            secret_sealed=vault.seal(secret, purpose=_SECRET_PURPOSE),
            authentication=authentication,
            enabled=enabled,
            secret_rotated_at=timezone.now(),
        )
        row.full_clean(exclude=["merchant"])
        try:
            with db_transaction.atomic():
                row.save()
        except IntegrityError:
            if transport_id or SetSettings.objects.filter(merchant=merchant).exists():
                raise
            continue
        logger.info("SET settings created for merchant %s (transport id %s)", merchant.pk, row.transport_id)
        return row, IssuedSecret(row.transport_id, secret)
    raise IntegrityError("could not find a free transport id")


def set_secret_rotate(*, settings_pk: int) -> IssuedSecret:
    """A new secret (returned once); the old one stops working at once, and
    connections already open stay open (they authenticated when it was valid)."""
    secret = _new_secret()
    row = SetSettings.objects.get(pk=settings_pk)
    SetSettings.objects.filter(pk=settings_pk).update(
        secret_sealed=vault.seal(secret, purpose=_SECRET_PURPOSE), secret_rotated_at=timezone.now()
    )
    logger.info("SET secret rotated for merchant %s (transport id %s)", row.merchant_id, row.transport_id)
    return IssuedSecret(row.transport_id, secret)


def set_secret(row: SetSettings) -> str:
    return vault.unseal(row.secret_sealed, purpose=_SECRET_PURPOSE)


# --- Who is connecting ---------------------------------------------------------------------


def _usable() -> object:
    return SetSettings.objects.select_related("merchant").filter(enabled=True, merchant__is_active=True)


def _address(peer_ip: str) -> str:
    try:
        return normalize_ip(peer_ip)
    except ValueError:
        return ""


def merchants_at_address(peer_ip: str) -> list[SetSettings]:
    """The enabled SET merchants that registered ``peer_ip``."""
    address = _address(peer_ip)
    # JSON containment is not portable to SQLite; SET merchants are few.
    return [row for row in _usable().exclude(merchant__allowed_ips=[]) if address in row.merchant.allowed_ips]


def set_greeting_decision(*, peer_ip: str) -> GreetingDecision:
    """What the greeting of a connection from ``peer_ip`` is."""
    rows = merchants_at_address(peer_ip)
    if not rows:
        return CHALLENGE if settings.SET_ACCEPT_UNKNOWN_ADDRESSES else REFUSE
    if len(rows) == 1 and rows[0].authentication == Authentication.ADDRESS:
        return GreetingDecision(merchant_pk=rows[0].merchant_id, challenge=False)
    return CHALLENGE


@dataclass(frozen=True)
class Authenticated:
    merchant_pk: int
    transport_id: str


_DUMMY_SECRET = secrets.token_urlsafe(32)


def set_authenticate(*, transport_id: str, response: str, greeting: str, peer_ip: str) -> Authenticated | None:
    """The merchant an Authentication message proves, or None (the same for every failure)."""
    row = _usable().filter(transport_id=transport_id).first() if len(transport_id) <= 64 else None
    secret = _DUMMY_SECRET
    if row is not None:
        try:
            secret = set_secret(row)
        except vault.VaultError as exc:  # sealed under another master key: unusable, say so loudly
            logger.error("SET secret of merchant %s cannot be opened: %s", row.merchant_id, exc)
            row = None
    # Computed even for an unknown transport id: the time taken does not tell which ids exist.
    valid = framing.authentication_valid(greeting=greeting, transport_id=transport_id, secret=secret,
                                         response=response)
    if row is None or not valid:
        return None
    addresses = row.merchant.allowed_ips
    if row.authentication == Authentication.BOTH and not addresses:
        return None
    if addresses and _address(peer_ip) not in addresses:
        return None
    return Authenticated(merchant_pk=row.merchant_id, transport_id=row.transport_id)


def set_credentials_for(merchant: Merchant) -> dict[str, str]:
    """SET enabled for a new merchant (challenge authentication), as ``create_merchant``
    prints it: ``set_transport_id`` and ``set_secret`` (shown this once)."""
    _, issued = set_settings_create(merchant=merchant)
    return {"set_transport_id": issued.transport_id, "set_secret": issued.secret}


def set_demo_credentials(*, merchant: Merchant) -> dict[str, str]:
    """The demo merchant's SET credentials for ``make run``: its settings made once,
    its secret rotated at every run (secrets are never readable back, so what is
    printed is always what works)."""
    row = SetSettings.objects.filter(merchant=merchant).first()
    if row is None:
        row, issued = set_settings_create(merchant=merchant)
    else:
        SetSettings.objects.filter(pk=row.pk).update(enabled=True)
        issued = set_secret_rotate(settings_pk=row.pk)
    return {"transport_id": issued.transport_id, "secret": issued.secret}
