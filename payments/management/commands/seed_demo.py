"""Demo data for the all-in-one run: a merchant, two terminals, a staff login.

Idempotent. Secrets are never readable back from the database, so the
demo terminals' secrets and the staff password are rotated at every run
and printed: what is printed is always what works.
"""
from __future__ import annotations

import json
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from merchants.models import Merchant
from merchants.services import merchant_create
from terminals.models import Terminal
from terminals.services import terminal_create, terminal_rotate_secret

DEMO_MERCHANT = "Demo Shop"
DEMO_TERMINALS = ("Demo terminal 1", "Demo terminal 2")


class Command(BaseCommand):
    help = "Create (or refresh) the demo merchant, terminals and staff login, and print their credentials."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        merchant = Merchant.objects.filter(name=DEMO_MERCHANT).first() or merchant_create(
            name=DEMO_MERCHANT, allowed_ips=["127.0.0.1"]
        )
        terminals = []
        for label in DEMO_TERMINALS:
            terminal = Terminal.objects.filter(merchant=merchant, label=label).first()
            if terminal is None:
                terminal, secret = terminal_create(merchant=merchant, label=label)
            else:
                secret = terminal_rotate_secret(terminal=terminal)
            terminals.append({"label": label, "terminal_id": terminal.terminal_id, "secret": secret})
        User = get_user_model()
        password = secrets.token_urlsafe(12)
        user = User.objects.filter(username="admin").first() or User(username="admin", email="admin@example.com")
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        data = {
            "merchant": {"name": merchant.name, "uuid": str(merchant.uuid)},
            "terminals": terminals,
            "staff": {"username": "admin", "password": password},
        }
        if options["json"]:
            self.stdout.write(json.dumps(data))
            return
        self.stdout.write(f"Demo merchant: {merchant.name} ({merchant.uuid})")
        for t in terminals:
            self.stdout.write(f"  {t['label']}: terminal_id={t['terminal_id']} secret={t['secret']}")
        self.stdout.write(f"Back office login: admin / {password}")
