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
    # The secure API refuses (993) calls from other addresses when this is set;
    # empty: any address (merchants' applications may call from anywhere).
    api_allowed_ips = models.JSONField(
        "API addresses", default=list, blank=True, validators=[validate_ip_list],
        help_text="If set, the secure API accepts this merchant's calls from these addresses only.",
    )

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


# --- The secure API's accounts and cards on file (shared/contracts/secure-api.md) ---------


class Account(models.Model):
    """One of a merchant's end customers, who may keep cards on file. Its uuid is
    the ``{uuid}`` of the secure API's paths, scoped to the merchant."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="accounts")
    external_id = models.CharField("external id", max_length=64, blank=True,
                                   help_text="The merchant's own id of the customer.")
    name = models.CharField(max_length=120, blank=True)
    email = models.EmailField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["merchant", "-created_at"]

    def __str__(self) -> str:
        return f"account {self.uuid} of {self.merchant}"


class StoredCard(models.Model):
    """A card kept on file for an account (the API's "payment info").

    The number is kept only sealed in the card vault (``payments.card_vault``:
    AES-GCM under the master key, with its key id, bound to this row's uuid);
    people see BIN and last four. Deleting the card destroys the sealed number
    and keeps the row, so the account's charges still name their card.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="cards")
    pan_sealed = models.TextField(editable=False, blank=True)
    fingerprint = models.CharField(max_length=64, editable=False)
    card_bin = models.CharField("BIN", max_length=8, editable=False)
    card_last4 = models.CharField("last four", max_length=4, editable=False)
    brand = models.CharField(max_length=16, blank=True, editable=False)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    holder_name = models.CharField(max_length=120, blank=True)
    verified = models.BooleanField(default=False)
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["account", "created_at"]
        verbose_name = "stored card"
        constraints = [
            # One live copy of a card per account (a second one is 933).
            models.UniqueConstraint(
                fields=["account", "fingerprint"], condition=Q(deleted_at__isnull=True), name="one_live_card_per_account"
            ),
            # A deleted card keeps no number.
            models.CheckConstraint(
                condition=Q(deleted_at__isnull=True) | Q(pan_sealed=""), name="deleted_card_has_no_number"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.card_bin}******{self.card_last4} ({self.exp_month:02d}/{self.exp_year})"


class HeldCvv(models.Model):
    """A CVV held for one authorization (``cardCVVEncKey``): sealed under a key
    derived from that key and the master key, of which only a keyed digest is
    kept; used once, within SECURE_API_CVV_TTL_SECONDS (15 min), then deleted."""

    key_digest = models.CharField(max_length=64, unique=True, editable=False)
    card = models.ForeignKey(StoredCard, on_delete=models.CASCADE, related_name="held_cvvs")
    cvv_sealed = models.TextField(editable=False)
    expires_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "held CVV"

    def __str__(self) -> str:
        return f"CVV held for card {self.card_id} until {self.expires_at:%H:%M:%S}"


class AccountCharge(models.Model):
    """A charge of an account's stored card: which account and card a payment
    (a core ``Transaction``, made by ``payments.services``) was for, under the
    merchant's ``orderID`` (unique per merchant)."""

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="account_charges")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="charges")
    card = models.ForeignKey(StoredCard, on_delete=models.PROTECT, related_name="charges")
    order_id = models.CharField("order id", max_length=64)
    transaction = models.OneToOneField(
        "payments.Transaction", on_delete=models.PROTECT, related_name="account_charge"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["account", "-created_at"], name="charge_account_created")]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "order_id"], name="account_charge_order_unique"),
        ]

    def __str__(self) -> str:
        return f"order {self.order_id} of {self.account}"
