"""Provision a terminal; prints its id and secret (shown once) as JSON."""
from __future__ import annotations

import json
import uuid

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from merchants.models import Merchant
from terminals.services import terminal_create


class Command(BaseCommand):
    help = "Create a terminal for a merchant and print its credentials as JSON."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--merchant", required=True, help="merchant uuid")
        parser.add_argument("--allowed-ip", action="append", default=[], dest="allowed_ips")
        parser.add_argument("--label", default="")

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        try:
            merchant = Merchant.objects.get(uuid=uuid.UUID(options["merchant"]))
        except (ValueError, Merchant.DoesNotExist):
            raise CommandError(f"no merchant with uuid {options['merchant']}") from None
        try:
            terminal, secret = terminal_create(
                merchant=merchant, allowed_ips=options["allowed_ips"], label=options["label"]
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(json.dumps({"terminal_id": terminal.terminal_id, "secret": secret}))
