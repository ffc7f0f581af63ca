"""The secure API door's own tables: idempotency records and the API call log.

Neither holds a payload: an idempotency record keeps a keyed digest of the
request and the first answer sealed under the master key (it may hold a
``cardCVVEncKey``); a call is time, method, path, status and error code.
"""
from __future__ import annotations

from django.db import models
from django.db.models import Q

from merchants.models import Merchant


class IdempotencyRecord(models.Model):
    """The first request under an ``Idempotency-Key`` (kept 24 h) or an ``orderID``
    (kept for good), and its answer once it has one.

    The unique constraint makes one request the first among any number sent
    at once, by any process. ``running`` records hold a lease: a request that
    died leaves one behind, which a repeat may take over once it ran out.
    """

    class Scope(models.TextChoices):
        HEADER = "key", "Idempotency-Key"
        ORDER = "order", "orderID"

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+")
    scope = models.CharField(max_length=8, choices=Scope.choices)
    key = models.CharField(max_length=255)
    request_digest = models.CharField(max_length=64)
    running = models.BooleanField(default=True)
    lease_until = models.DateTimeField()
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_sealed = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "scope", "key"], name="idempotency_record_unique"),
            models.CheckConstraint(condition=Q(running=True) | Q(status__isnull=False), name="answered_has_status"),
        ]

    def __str__(self) -> str:
        return f"{self.get_scope_display()} {self.key}"


class ApiCall(models.Model):
    """One request to the secure API, for staff: never its payload."""

    created_at = models.DateTimeField(db_index=True)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, null=True, blank=True, related_name="api_calls")
    # As claimed in the Authorization header (for staff looking at refusals);
    # ``merchant`` is set only when the signature was good.
    app_id = models.CharField("app id", max_length=32, blank=True)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255, help_text="Without the query string (the encrypted payload).")
    status = models.PositiveSmallIntegerField()
    error_code = models.PositiveSmallIntegerField("error code", null=True, blank=True)
    replayed = models.BooleanField(default=False, help_text="The first answer of an idempotent repeat.")
    duration_ms = models.PositiveIntegerField("duration (ms)")
    remote_addr = models.CharField("address", max_length=45, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API call"
        indexes = [models.Index(fields=["merchant", "-created_at"], name="apicall_merchant_created")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.status}"


class MerchantApiAccess(Merchant):
    """A merchant seen from the secure API: its app_id, key pairs and calls
    (the back office page where staff create and rotate its keys)."""

    class Meta:
        proxy = True
        verbose_name = "merchant API access"
        verbose_name_plural = "merchant API access"
