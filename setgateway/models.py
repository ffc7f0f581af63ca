"""The SET gateway's data: merchants' SET settings, request records, the
diagnostic journal, and the live connections the listeners publish.

Design overview
---------------
**SetSettings** (one per merchant that may use SET): the transport id the
merchant names itself by in ``Authentication|transportId|...`` (unique), its
shared secret (sealed under PAYMENTS_MASTER_KEY with ``payments.vault``:
the gateway must read it back to compute the HMAC), how it authenticates
(challenge, address, or both; the addresses are the merchant's registered
server addresses, ``Merchant.allowed_ips``), and whether SET is enabled.

**SetExchange** records one SET request that changed (or may have changed)
a payment: the merchant, its kind, its ids (transId, credId), a keyed
digest of its data, and the DER answer once there is one. It is what makes
the contract's idempotency hold across connections, processes and
restarts: one row per (merchant, kind, transId, credId), a unique
constraint; a repeat with the same digest gets the stored answer; another
digest is ErrorMsg 3. ``lease_until`` marks a request being worked on; a
lease that ran out without an answer (its process died) is taken over by
the next repeat, which settles it from the payment's state.

**DiagnosticLog** is the journal of the diagnostic log port: one row per
message received there (who sent it if the address says, its size, type,
time and body, card-like digit runs masked).

**LiveConnection** rows are what each gateway process publishes of its open
connections every few seconds (``SET_LIVE_PUBLISH_SECONDS``), for the back
office: a process replaces its own rows; rows not refreshed for three
periods belong to a process that is gone and are not shown.
"""
from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from merchants.models import Merchant
from payments.models import Transaction

_TRANSPORT_ID = re.compile(r"[!-{}~]{1,64}\Z")  # printable ASCII, no space, no '|'


def validate_transport_id(value: str) -> None:
    if not _TRANSPORT_ID.match(value or ""):
        raise ValidationError("1 to 64 printable ASCII characters, without spaces or '|'.")


class Authentication(models.TextChoices):
    CHALLENGE = "challenge", "Challenge (shared secret)"
    ADDRESS = "address", "Address only"
    BOTH = "both", "Challenge and address"


class SetSettings(models.Model):
    merchant = models.OneToOneField(Merchant, on_delete=models.CASCADE, related_name="set_settings")
    transport_id = models.CharField(
        "transport id", max_length=64, unique=True, validators=[validate_transport_id],
        help_text="How the merchant names itself in its Authentication message.",
    )
    secret_sealed = models.TextField(editable=False)
    authentication = models.CharField(
        max_length=16, choices=Authentication.choices, default=Authentication.CHALLENGE,
        help_text="Address and both use the merchant's registered server addresses.",
    )
    enabled = models.BooleanField(default=True)
    secret_rotated_at = models.DateTimeField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["merchant__name"]
        verbose_name = "SET settings"
        verbose_name_plural = "SET settings"

    def __str__(self) -> str:
        return f"SET {self.transport_id}"


class ExchangeKind(models.TextChoices):
    AUTHORIZE = "auth", "Authorization"
    CAPTURE = "cap", "Capture"
    REFUND = "cred", "Refund"
    REVERSE = "rev", "Reversal"


class SetExchange(models.Model):
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="set_exchanges")
    kind = models.CharField(max_length=4, choices=ExchangeKind.choices)
    trans_id = models.CharField("transId", max_length=64)
    cred_id = models.CharField("credId", max_length=64, blank=True)
    digest = models.CharField(max_length=64, help_text="Keyed fingerprint of the request's data.")
    transaction = models.ForeignKey(
        Transaction, on_delete=models.PROTECT, null=True, blank=True, related_name="set_exchanges"
    )
    response = models.BinaryField(null=True, blank=True, help_text="The DER answer, repeated to repeats.")
    summary = models.CharField(max_length=255, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "SET request"
        constraints = [
            models.UniqueConstraint(fields=["merchant", "kind", "trans_id", "cred_id"], name="set_exchange_unique_ids"),
        ]

    def __str__(self) -> str:
        ids = f"{self.trans_id}/{self.cred_id}" if self.cred_id else self.trans_id
        return f"{self.get_kind_display()} {ids}"


class DiagnosticLog(models.Model):
    merchant = models.ForeignKey(
        Merchant, on_delete=models.SET_NULL, null=True, blank=True, related_name="set_diagnostics"
    )
    peer_ip = models.GenericIPAddressField("from address")
    received_at = models.DateTimeField(db_index=True)
    size = models.PositiveIntegerField(help_text="Content-Length as sent.")
    content_type = models.CharField(max_length=100, blank=True)
    msg_tag = models.CharField("msg-tag", max_length=32, blank=True)
    body = models.BinaryField(blank=True, help_text="Card-like digit runs masked; empty when over the maximum.")
    body_kept = models.BooleanField(default=True)
    summary = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name = "diagnostic log message"

    def __str__(self) -> str:
        return f"{self.received_at:%Y-%m-%d %H:%M:%S} from {self.peer_ip} ({self.size} bytes)"


class LiveConnection(models.Model):
    process = models.CharField(max_length=100, help_text="host:pid:boot of the gateway process.")
    connection_id = models.CharField(max_length=100, unique=True)
    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, null=True, blank=True, related_name="set_connections"
    )
    peer = models.CharField("address", max_length=64)
    state = models.CharField(max_length=16)
    since = models.DateTimeField()
    outstanding = models.PositiveIntegerField("outstanding requests", default=0)
    seen_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-since"]
        verbose_name = "live connection"
        indexes = [models.Index(fields=["process"], name="set_live_process")]
        constraints = [models.CheckConstraint(condition=~Q(process=""), name="set_live_process_named")]

    def __str__(self) -> str:
        return f"{self.peer} {self.state} since {self.since:%H:%M:%S}"
