"""Database triggers refusing UPDATE and DELETE of audit entries (backoffice.append_only)."""
from django.db import migrations

from backoffice import append_only


def install(apps, schema_editor):  # type: ignore[no-untyped-def]
    append_only.install(schema_editor.connection)


def uninstall(apps, schema_editor):  # type: ignore[no-untyped-def]
    append_only.uninstall(schema_editor.connection)


class Migration(migrations.Migration):

    dependencies = [
        ("backoffice", "0001_audit_log_and_shown_once_secrets"),
    ]

    operations = [
        migrations.RunPython(install, uninstall),
    ]
