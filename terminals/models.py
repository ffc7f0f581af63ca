"""Terminals: the payment devices of a merchant, with their credentials.

A terminal's secret is shown once (when created or rotated) and stored only
as a keyed digest (``payments.keys.secret_digest``): secrets are 192 random
bits, so a fast keyed hash is as safe as a slow password hash and keeps
HTTP Basic authentication cheap on every request.
"""
from __future__ import annotations

from django.db import models

from merchants.addresses import validate_ip_list
from merchants.models import Merchant


class Terminal(models.Model):
    terminal_id = models.CharField(max_length=32, unique=True, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="terminals")
    label = models.CharField(max_length=120, blank=True)
    secret_digest = models.CharField(max_length=64, editable=False)
    allowed_ips = models.JSONField(
        "allowed addresses", default=list, blank=True, validators=[validate_ip_list],
        help_text="If set, the terminal is refused from any other address; a terminal that is "
        "the only active one with an address is identified by it without credentials.",
    )
    is_active = models.BooleanField("enabled", default=True)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["terminal_id"]
        permissions = [
            ("enable_terminal", "Can enable or disable a terminal"),
            ("rotate_terminal_secret", "Can rotate a terminal's secret (and see the new one once)"),
        ]

    def __str__(self) -> str:
        return f"{self.terminal_id} ({self.label})" if self.label else self.terminal_id
