"""The staff roles viewer, operator and administrator as groups (backoffice.roles).

Depends on the migrations that add the permissions the roles grant today;
permissions of models added later reach the roles through the same
``roles_sync``, run after every ``migrate`` (backoffice/apps.py).
"""
from django.db import migrations

from backoffice.roles import roles_remove, roles_sync


class Migration(migrations.Migration):

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("backoffice", "0002_audit_log_append_only"),
        ("merchants", "0001_initial"),
        ("terminals", "0002_staff_permissions"),
        ("payments", "0005_staff_permissions"),
    ]

    operations = [
        migrations.RunPython(roles_sync, roles_remove),
    ]
