"""Merchants: who is paid, from where they may call, and in what currency."""
from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from payments.money import CURRENCIES

from .addresses import validate_ip_list


class Merchant(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=120, unique=True)
    currency = models.CharField(
        max_length=3, default="EUR", choices=[(code, code) for code in CURRENCIES],
        help_text="ISO 4217 currency of the merchant's payments.",
    )
    allowed_ips = models.JSONField(
        "server addresses", default=list, blank=True, validators=[validate_ip_list],
        help_text="Addresses the merchant's servers call from (one per line).",
    )
    callback_url = models.URLField(
        "return URL", max_length=500, blank=True,
        help_text="Called with the result of each payment (esipay return URL).",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The merchant's public name in PLTOKEN authentication (secure API, IOTP):
    # 32 lower-case hex, given with the first key pair (merchants.credentials).
    app_id = models.CharField("app id", max_length=32, unique=True, null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApiKeyPair(models.Model):
    """A merchant's PLTOKEN key pair: ``app_key`` signs requests (HMAC-SHA256),
    ``data_key`` encrypts payloads (AES-256-GCM). Both are shown once and kept
    sealed (payments.vault): the gateway must read them back to verify and
    encrypt. One pair is current (``expires_at`` empty); a rotated pair stays
    valid until its ``expires_at`` (the grace period), so a merchant can roll
    its servers over without a failed request."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="api_key_pairs")
    app_key_sealed = models.TextField(editable=False)
    data_key_sealed = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["merchant", "-created_at", "-id"]
        verbose_name = "API key pair"
        constraints = [
            models.UniqueConstraint(
                fields=["merchant"], condition=Q(expires_at__isnull=True), name="one_current_api_key_pair"
            ),
        ]

    def __str__(self) -> str:
        state = "current" if self.expires_at is None else f"valid until {self.expires_at:%Y-%m-%d %H:%M}"
        return f"API keys of {self.merchant} ({state})"


class ApiNonce(models.Model):
    """A nonce seen in a PLTOKEN header, remembered until no request carrying
    it could pass the timestamp check any more (``expires_at``): a replay in
    that window is refused, by every process (the unique constraint)."""

    app_id = models.CharField(max_length=32)
    nonce = models.CharField(max_length=64)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["app_id", "nonce"], name="api_nonce_unique")]

    def __str__(self) -> str:
        return f"{self.app_id}:{self.nonce}"
