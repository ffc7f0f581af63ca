"""Lists of IP addresses (a merchant's servers, a terminal's allowed sources)."""
from __future__ import annotations

import ipaddress

from django import forms
from django.core.exceptions import ValidationError


def normalize_ip(value: str) -> str:
    """The canonical text of an IP address; IPv4-mapped IPv6 becomes IPv4."""
    address = ipaddress.ip_address(value.strip())
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address)


def validate_ip_list(value: object) -> None:
    if not isinstance(value, list):
        raise ValidationError("Expected a list of IP addresses.")
    for item in value:
        try:
            normalize_ip(str(item))
        except ValueError:
            raise ValidationError(f"{item!r} is not an IP address.") from None


class IPListFormField(forms.CharField):
    """One IP address per line (or comma-separated) in the back office."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 40})

    def prepare_value(self, value: object) -> str:
        if isinstance(value, list):
            return "\n".join(value)
        return "" if value is None else str(value)

    def to_python(self, value: object) -> list[str]:
        text = super().to_python(value) or ""
        result: list[str] = []
        for item in text.replace(",", "\n").split():
            try:
                address = normalize_ip(item)
            except ValueError:
                raise ValidationError(f"{item!r} is not an IP address.") from None
            if address not in result:
                result.append(address)
        return result
