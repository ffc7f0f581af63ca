"""Terminals: the payment devices of a merchant, with their credentials.

A terminal's secret is shown once (when created or rotated) and stored only
as a keyed digest (``payments.keys.secret_digest``): secrets are 192 random
bits, so a fast keyed hash is as safe as a slow password hash and keeps
HTTP Basic authentication cheap on every request.

A terminal's allowed addresses are a JSON list on the terminal (what staff
edit, what authentication checks) mirrored, one row each, in
``TerminalAddress``: identifying a connection by its source address is then
one indexed lookup, whatever the number of terminals. ``Terminal.save()``
keeps the mirror in step (creation, the back office, the services); a
``QuerySet.update()`` of ``allowed_ips`` would not, so none is written.
"""
from __future__ import annotations

from django.db import models, transaction

from merchants.addresses import normalize_ip, validate_ip_list
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

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "allowed_ips" not in update_fields:
            super().save(*args, **kwargs)
            return
        with transaction.atomic():
            super().save(*args, **kwargs)
            self._sync_addresses()

    def _sync_addresses(self) -> None:
        wanted = set()
        for item in self.allowed_ips or []:
            try:
                wanted.add(normalize_ip(str(item)))
            except ValueError:  # refused by the form's validator; never an address to match
                continue
        have = set(self.addresses.values_list("address", flat=True))
        if have - wanted:
            self.addresses.filter(address__in=have - wanted).delete()
        TerminalAddress.objects.bulk_create(
            [TerminalAddress(terminal=self, address=address) for address in sorted(wanted - have)]
        )


class TerminalAddress(models.Model):
    """One allowed address of a terminal (a mirror of ``Terminal.allowed_ips``, indexed)."""

    terminal = models.ForeignKey(Terminal, on_delete=models.CASCADE, related_name="addresses")
    address = models.CharField(max_length=45)  # normalize_ip's text: IPv4, or IPv6 (at most 45 chars)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["address", "terminal"], name="terminal_address_once")]

    def __str__(self) -> str:
        return f"{self.address} → {self.terminal_id}"
