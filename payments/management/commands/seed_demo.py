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
from django.utils import timezone

from merchants.models import Merchant
from merchants.services import merchant_create
from payments import outbox
from payments.models import WebhookEndpoint
from setgateway.credentials import set_demo_credentials
from terminals.models import Terminal
from terminals.services import terminal_create, terminal_rotate_secret

DEMO_MERCHANT = "Demo Shop"
DEMO_TERMINALS = ("Demo terminal 1", "Demo terminal 2")
# The demo merchant's own server is served by the web app in development
# (merchants/demo_views.py), on the all-in-one run's web port.
DEMO_WEB_URL = "http://127.0.0.1:8000"
DEMO_ENDPOINT = "demo merchant (make run)"


class Command(BaseCommand):
    help = "Create (or refresh) the demo merchant, terminals and staff login, and print their credentials."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--web-url", default=DEMO_WEB_URL,
                            help="where the web app runs (the demo merchant's return URL and webhooks are there)")
        parser.add_argument("--esipay-url", default="http://127.0.0.1:6543")

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        web = options["web_url"].rstrip("/")
        return_url, webhook_url = f"{web}/demo/esipay-return", f"{web}/demo/webhooks"
        merchant = Merchant.objects.filter(name=DEMO_MERCHANT).first() or merchant_create(
            name=DEMO_MERCHANT, allowed_ips=["127.0.0.1"], callback_url=return_url
        )
        if merchant.callback_url != return_url:  # made before esipay landed, or for another port
            Merchant.objects.filter(pk=merchant.pk).update(callback_url=return_url)
        # Deliveries are kept for staff: an endpoint for another port is deactivated, not deleted.
        WebhookEndpoint.objects.filter(merchant=merchant, description=DEMO_ENDPOINT).exclude(url=webhook_url).update(
            is_active=False
        )
        endpoint = WebhookEndpoint.objects.filter(merchant=merchant, url=webhook_url).first()
        if endpoint is not None and not endpoint.is_active:
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=True)
        if endpoint is None:
            endpoint, webhook_secret = outbox.webhook_endpoint_create(
                merchant_pk=merchant.pk, url=webhook_url, description=DEMO_ENDPOINT
            )
        else:
            webhook_secret = outbox.webhook_endpoint_rotate_secret(endpoint_pk=endpoint.pk)
        terminals = []
        for label in DEMO_TERMINALS:
            terminal = Terminal.objects.filter(merchant=merchant, label=label).first()
            if terminal is None:
                terminal, secret = terminal_create(merchant=merchant, label=label)
            else:
                secret = terminal_rotate_secret(terminal=terminal)
            terminals.append({"label": label, "terminal_id": terminal.terminal_id, "secret": secret})
        set_credentials = set_demo_credentials(merchant=merchant)
        User = get_user_model()
        password = secrets.token_urlsafe(12)
        user = User.objects.filter(username="admin").first() or User(username="admin", email="admin@example.com")
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        data = {
            "merchant": {"name": merchant.name, "uuid": str(merchant.uuid), "return_url": return_url},
            "webhook": {"url": webhook_url, "secret": webhook_secret},
            "terminals": terminals,
            "set": set_credentials,
            "staff": {"username": "admin", "password": password},
        }
        if options["json"]:
            self.stdout.write(json.dumps(data))
            return
        self.stdout.write(f"Demo merchant: {merchant.name} ({merchant.uuid})")
        for t in terminals:
            self.stdout.write(f"  {t['label']}: terminal_id={t['terminal_id']} secret={t['secret']}")
        self.stdout.write(f"  Webhook endpoint: {webhook_url} secret={webhook_secret}")
        self.stdout.write(f"  SET gateway: transport_id={set_credentials['transport_id']} "
                          f"secret={set_credentials['secret']}")
        self.stdout.write(f"Back office login: admin / {password}")
        self.stdout.write(
            f"Try esipay: curl -i {options['esipay_url'].rstrip('/')}/cardpay/"
            f"{merchant.uuid}/order-1/4242424242424242/12/{timezone.now().year + 3}/12.50"
        )
