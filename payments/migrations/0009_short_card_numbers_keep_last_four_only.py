"""Masks by the number's length: a number of fewer than 15 digits keeps its
last four only (payments.cards). Rows written before kept the first six of
11- to 14-digit numbers too, which with the Luhn digit left a few guesses
to the whole number.

A stored row does not say how long its number was. Terminal numbers are
always 16 digits; esipay took 10 to 19, and so did the ban list: their BINs
are dropped (the last four, the brand and the fingerprint stay; a ban still
matches by its fingerprint), and the masked card of esipay events is
rewritten to the last four. The shipped ban of 0000000000000000 keeps its
BIN: its length is known.
"""
from django.db import migrations

SHIPPED_BANNED_CARD = "0000000000000000"


def forwards(apps, schema_editor):
    from payments.cards import card_facts

    Transaction = apps.get_model("payments", "Transaction")
    Ban = apps.get_model("payments", "Ban")
    Event = apps.get_model("payments", "Event")
    Transaction.objects.filter(door="esipay").exclude(card_bin="").update(card_bin="")
    Ban.objects.filter(kind="card").exclude(card_bin="").exclude(
        key=card_facts(SHIPPED_BANNED_CARD).fingerprint
    ).update(card_bin="")
    for event in Event.objects.filter(transaction__door="esipay").iterator():
        card = (event.data or {}).get("card") if isinstance(event.data, dict) else None
        if card and not card.startswith("*"):
            event.data["card"] = "******" + card[-4:]
            event.save(update_fields=["data"])


class Migration(migrations.Migration):

    dependencies = [
        ("payments", "0008_card_limits_for_every_currency"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
