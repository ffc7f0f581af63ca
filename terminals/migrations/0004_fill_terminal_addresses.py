"""Mirror every terminal's allowed addresses into TerminalAddress (the model keeps it in step from now on)."""
import ipaddress

from django.db import migrations


def _normalize(value: str) -> str:
    # merchants.addresses.normalize_ip, frozen here: a migration must not change with the code.
    address = ipaddress.ip_address(value.strip())
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address)


def fill(apps, schema_editor):
    Terminal = apps.get_model("terminals", "Terminal")
    TerminalAddress = apps.get_model("terminals", "TerminalAddress")
    rows = []
    for terminal in Terminal.objects.exclude(allowed_ips=[]).only("pk", "allowed_ips").iterator():
        addresses = set()
        for item in terminal.allowed_ips or []:
            try:
                addresses.add(_normalize(str(item)))
            except ValueError:
                continue
        rows += [TerminalAddress(terminal_id=terminal.pk, address=address) for address in sorted(addresses)]
    TerminalAddress.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)


class Migration(migrations.Migration):

    dependencies = [
        ("terminals", "0003_terminal_addresses_indexed"),
    ]

    operations = [
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
