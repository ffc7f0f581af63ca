"""Merchants: who is paid, from where they may call, and in what currency."""
from __future__ import annotations

import uuid

from django.db import models

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

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
