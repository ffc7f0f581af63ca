"""Writes about merchants (accounts and cards on file: ``merchants.accounts``)."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction as db_transaction

from payments.money import validate_currency

from .addresses import normalize_ip
from .credentials import IssuedKeys, api_keys_issue
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


def merchant_provision(
    *, name: str, allowed_ips: list[str] | None = None, callback_url: str = "", currency: str = "EUR"
) -> tuple[Merchant, IssuedKeys]:
    """A merchant and its first PLTOKEN key pair (secure API, IOTP), both or neither."""
    with db_transaction.atomic():
        merchant = merchant_create(name=name, allowed_ips=allowed_ips, callback_url=callback_url, currency=currency)
        return merchant, api_keys_issue(merchant=merchant)
