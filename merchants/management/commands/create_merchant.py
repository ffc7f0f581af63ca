"""Provision a merchant; prints one JSON object (operations contract)."""
from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from merchants.services import merchant_create
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
            merchant = merchant_create(
                name=options["name"],
                allowed_ips=options["allowed_ips"],
                callback_url=options["callback_url"],
                currency=options["currency"].upper(),
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        output = {"uuid": str(merchant.uuid), "name": merchant.name}
        output.update(set_credentials_for(merchant))
        self.stdout.write(json.dumps(output))
