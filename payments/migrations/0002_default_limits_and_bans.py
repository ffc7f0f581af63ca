"""Defaults shipped as data (operations contract), editable by staff afterwards.

Fingerprints are keyed with this installation's PAYMENTS_MASTER_KEY, so
they are computed here, at migration time, with the running settings.
"""
from decimal import Decimal

from django.db import migrations

LIMITS = {"VISA": "2500.00", "MASTER": "3000.00", "ELECTRON": "1700.00", "CONTACTLESS": "30.00"}
BANNED_PINS = [str(d) * 4 for d in range(10)] + ["1234"]
BANNED_CARD = "0000000000000000"
BANNED_CHECK = "00000000AAA"


def forwards(apps, schema_editor):
    from payments.cards import card_facts, pin_fingerprint

    CardLimit = apps.get_model("payments", "CardLimit")
    Ban = apps.get_model("payments", "Ban")
    for kind, amount in LIMITS.items():
        CardLimit.objects.get_or_create(kind=kind, currency="EUR", defaults={"max_amount": Decimal(amount)})
    reason = "default ban list"
    for pin in BANNED_PINS:
        Ban.objects.get_or_create(kind="pin", key=pin_fingerprint(pin), defaults={"reason": "trivial PIN"})
    facts = card_facts(BANNED_CARD)
    Ban.objects.get_or_create(
        kind="card", key=facts.fingerprint,
        defaults={"card_bin": facts.bin, "card_last4": facts.last4, "reason": reason},
    )
    Ban.objects.get_or_create(kind="check", key=BANNED_CHECK, defaults={"reason": reason})


class Migration(migrations.Migration):
    dependencies = [("payments", "0001_initial")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
