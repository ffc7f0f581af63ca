"""Per-payment card limits for every currency the gateway accepts (a payment
whose currency has none is refused, never unlimited), editable by staff.

EUR has the operations contract's defaults (VISA 2500.00, MASTER 3000.00,
ELECTRON 1700.00, contactless 30.00); American Express gets Visa's, and
cards of no known network the lowest card limit (Electron's). Every other
currency gets the same limits converted at a rate rounded *down* from the
market's (so that no limit is worth more than the EUR one) and kept round:
staff review them in the back office (Card limits). Existing rows are never
changed: a limit staff edited stays as they set it.
"""
from decimal import Decimal

from django.db import migrations

EUR_LIMITS = {
    "VISA": Decimal("2500"),
    "MASTER": Decimal("3000"),
    "ELECTRON": Decimal("1700"),
    "AMEX": Decimal("2500"),
    "OTHER": Decimal("1700"),
    "CONTACTLESS": Decimal("30"),
}
# Units of the currency for one euro, rounded down (docs/decisions.md).
PER_EURO = {
    "EUR": Decimal("1"),
    "USD": Decimal("1"),
    "GBP": Decimal("0.8"),
    "CHF": Decimal("0.9"),
    "CAD": Decimal("1.5"),
    "AUD": Decimal("1.5"),
    "SEK": Decimal("10"),
    "NOK": Decimal("10"),
    "DKK": Decimal("7"),
    "PLN": Decimal("4"),
    "CZK": Decimal("24"),
    "JPY": Decimal("150"),
}


def default_limits() -> dict[tuple[str, str], Decimal]:
    return {
        (kind, currency): (amount * rate).quantize(Decimal("0.01"))
        for currency, rate in PER_EURO.items()
        for kind, amount in EUR_LIMITS.items()
    }


def forwards(apps, schema_editor):
    CardLimit = apps.get_model("payments", "CardLimit")
    for (kind, currency), amount in default_limits().items():
        CardLimit.objects.get_or_create(kind=kind, currency=currency, defaults={"max_amount": amount})


class Migration(migrations.Migration):

    dependencies = [
        ("payments", "0007_card_brands_amex_and_other_limit"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
