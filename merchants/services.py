"""Writes about merchants."""
from __future__ import annotations

from django.core.exceptions import ValidationError

from payments.money import validate_currency

from .addresses import normalize_ip
from .models import Merchant


def merchant_create(
    *, name: str, allowed_ips: list[str] | None = None, callback_url: str = "", currency: str = "EUR"
) -> Merchant:
    try:
        validate_currency(currency)
        addresses = [normalize_ip(ip) for ip in (allowed_ips or [])]
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    merchant = Merchant(name=name.strip(), allowed_ips=addresses, callback_url=callback_url, currency=currency)
    merchant.full_clean()
    merchant.save()
    return merchant
