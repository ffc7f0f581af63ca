"""The role groups in the database are what backoffice/roles.py (and the table
in docs/backoffice.md) say: created by the migrations, with every permission
that exists, and kept so after every ``migrate`` (a model added later gets
its permissions into the roles)."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission

from backoffice.roles import ADMINISTRATOR, OPERATOR, OPERATOR_PERMISSIONS, ROLE_NAMES, VIEWER, role_permissions

pytestmark = pytest.mark.django_db


def _pairs(permissions) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return set(permissions.values_list("content_type__app_label", "codename"))


def test_the_migrations_made_the_three_roles_with_exactly_their_permissions():  # type: ignore[no-untyped-def]
    available = _pairs(Permission.objects.all())
    groups = {group.name: group for group in Group.objects.filter(name__in=ROLE_NAMES)}
    assert set(groups) == set(ROLE_NAMES), "the roles migration did not run (or a transactional test flushed it)"
    for name, group in groups.items():
        assert _pairs(group.permissions) == role_permissions(name, available), name


def test_after_a_migrate_the_roles_hold_the_permissions_of_models_added_since():  # type: ignore[no-untyped-def]
    from django.contrib.contenttypes.models import ContentType
    from django.core.management.sql import emit_post_migrate_signal

    from merchants.models import Merchant

    merchant_type = ContentType.objects.get_for_model(Merchant)
    # As a later migration's model would bring them (post_migrate creates permissions).
    added_view = Permission.objects.create(codename="view_later_credential", name="x", content_type=merchant_type)
    added_change = Permission.objects.create(codename="change_later_credential", name="y", content_type=merchant_type)
    viewer, operator, administrator = (Group.objects.get(name=name) for name in (VIEWER, OPERATOR, ADMINISTRATOR))
    assert not viewer.permissions.filter(pk=added_view.pk).exists()

    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    assert set(viewer.permissions.filter(pk__in=[added_view.pk, added_change.pk])) == {added_view}
    assert set(operator.permissions.filter(pk__in=[added_view.pk, added_change.pk])) == {added_view}
    assert set(administrator.permissions.filter(pk__in=[added_view.pk, added_change.pk])) == {added_view, added_change}


def test_what_each_role_holds():  # type: ignore[no-untyped-def]
    available = _pairs(Permission.objects.all())
    assert OPERATOR_PERMISSIONS <= available  # no typo hides an operator's right
    viewer = role_permissions(VIEWER, available)
    operator = role_permissions(OPERATOR, available)
    administrator = role_permissions(ADMINISTRATOR, available)
    assert viewer < operator < administrator
    assert all(codename.startswith("view_") for _, codename in viewer)
    assert operator - viewer == OPERATOR_PERMISSIONS
    for credential in (("terminals", "rotate_terminal_secret"), ("terminals", "add_terminal"),
                       ("payments", "rotate_webhookendpoint_secret"), ("payments", "add_webhookendpoint"),
                       ("payments", "add_ban"), ("payments", "change_cardlimit"), ("merchants", "change_merchant"),
                       ("auth", "change_user"), ("auth", "change_group")):
        assert credential in administrator and credential not in operator, credential
    # Django's own tables are nobody's to read through a role; the audit log has no change or delete.
    assert not {pair for pair in operator if pair[0] in ("auth", "admin", "sessions", "contenttypes")}
    assert ("backoffice", "view_auditentry") in viewer
    assert not {pair for pair in available if pair[0] == "backoffice" and pair[1] != "view_auditentry"}
