"""Staff roles: three Django groups whose permissions are defined here.

- **viewer**: every ``view_*`` permission of the gateway's apps (all apps but
  Django's own: users, groups, sessions, admin log, content types). Pages
  show a card as its mask at most, so reading everything reveals no card.
- **operator**: viewer, plus acting on payments and devices: refund, void,
  resend a webhook event, enable or disable a terminal.
- **administrator**: every permission of the gateway's apps (credentials:
  terminal and webhook secrets, and those later doors add; bans, limits,
  merchants) and the management of staff accounts and groups.

Superusers have every permission anyway. Nobody has a permission to change
or delete audit entries: the model has none (``default_permissions``).

The groups are created, and set to exactly these permissions, by
``roles_sync``: run by a migration (``backoffice/migrations/0003``), and
again after every ``migrate`` (``post_migrate``, see ``apps.py``), so the
permissions of models added later (a door's credentials) reach the roles
with nothing to remember. A new permission an operator needs goes into
``OPERATOR_PERMISSIONS``. The three groups are read-only in the back
office, so the table in docs/backoffice.md stays true; administrators may
add groups of their own.
"""
from __future__ import annotations

from collections.abc import Iterable

VIEWER = "viewer"
OPERATOR = "operator"
ADMINISTRATOR = "administrator"
ROLE_NAMES = (VIEWER, OPERATOR, ADMINISTRATOR)

# Django's own apps: not gateway data, no role reads them (but the administrator
# manages users and groups, below).
_DJANGO_APPS = frozenset({"admin", "auth", "contenttypes", "sessions"})

OPERATOR_PERMISSIONS = frozenset({
    ("payments", "refund_transaction"),
    ("payments", "void_transaction"),
    ("payments", "resend_event"),
    ("terminals", "enable_terminal"),
})

STAFF_MANAGEMENT_PERMISSIONS = frozenset(
    ("auth", f"{action}_{model}") for action in ("add", "change", "delete", "view") for model in ("user", "group")
)


def role_permissions(role: str, available: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """The ``(app_label, codename)`` pairs of ``available`` that ``role`` holds."""
    pairs = set(available)
    gateway = {pair for pair in pairs if pair[0] not in _DJANGO_APPS}
    viewer = {pair for pair in gateway if pair[1].startswith("view_")}
    if role == VIEWER:
        return viewer
    if role == OPERATOR:
        return viewer | (OPERATOR_PERMISSIONS & pairs)
    if role == ADMINISTRATOR:
        return gateway | (STAFF_MANAGEMENT_PERMISSIONS & pairs)
    raise ValueError(f"unknown role {role!r}")


def _ensure_permissions(apps) -> None:  # type: ignore[no-untyped-def]
    """Create the content types and permissions of every model now, as
    ``post_migrate`` would only after the last migration: a role migration
    on a fresh database must find them."""
    from django.contrib.auth.management import create_permissions
    from django.contrib.contenttypes.management import create_contenttypes

    for app_config in apps.get_app_configs():
        # Historical app configs have no models_module; create_* skip such apps.
        previous = getattr(app_config, "models_module", None)
        app_config.models_module = previous or True
        try:
            create_contenttypes(app_config, verbosity=0, apps=apps)
            create_permissions(app_config, verbosity=0, apps=apps)
        finally:
            app_config.models_module = previous


def roles_sync(apps, schema_editor=None) -> None:  # type: ignore[no-untyped-def]
    """Create the three groups and give each exactly its permissions.

    Usable as a migration's ``RunPython`` (historical ``apps``) and with the
    project's own registry (``django.apps.apps``, tests after a flush)."""
    _ensure_permissions(apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    by_pair = {
        (app_label, codename): pk
        for pk, app_label, codename in Permission.objects.values_list("pk", "content_type__app_label", "codename")
    }
    for role in ROLE_NAMES:
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set([by_pair[pair] for pair in role_permissions(role, by_pair)])


def roles_remove(apps, schema_editor=None) -> None:  # type: ignore[no-untyped-def]
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_NAMES).delete()


def roles_sync_after_migrate(sender, apps=None, using="default", **kwargs) -> None:  # type: ignore[no-untyped-def]
    """``post_migrate`` receiver: the roles follow the permissions that exist now.
    ``migrate`` passes its final state's ``apps``; ``flush`` passes none."""
    from django.apps import apps as global_apps
    from django.db import router

    apps = apps or global_apps

    try:
        group_model = apps.get_model("auth", "Group")
    except LookupError:  # migrated back before auth existed: nothing to sync
        return
    if router.allow_migrate_model(using, group_model):
        roles_sync(apps)
