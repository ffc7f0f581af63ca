"""Provision a merchant; prints one JSON object (operations contract)."""
from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from merchants.services import merchant_provision
from setgateway.credentials import set_credentials_for


class Command(BaseCommand):
    help = "Create a merchant and print its credentials as JSON."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--name", required=True)
        parser.add_argument("--allowed-ip", action="append", default=[], dest="allowed_ips")
        parser.add_argument("--callback-url", default="")
        parser.add_argument("--currency", default="EUR")

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        try:
            with transaction.atomic():  # the merchant and all its credentials, or nothing
                merchant, keys = merchant_provision(
                    name=options["name"],
                    allowed_ips=options["allowed_ips"],
                    callback_url=options["callback_url"],
                    currency=options["currency"].upper(),
                )
                set_credentials = set_credentials_for(merchant)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        # The API keys and the SET secret exist in clear only here (operations.md): shown once.
        self.stdout.write(json.dumps({
            "uuid": str(merchant.uuid), "name": merchant.name,
            "app_id": keys.app_id, "app_key": keys.app_key, "data_key": keys.data_key,
            **set_credentials,
        }))
