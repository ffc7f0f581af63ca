"""The audit log: every staff change and action is written (who, when, what,
before/after, never a secret or a card number), shown in the back office with
filters and search, and never changed or deleted, by the back office
(superusers included) or by the database."""
from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import DatabaseError, IntegrityError, connection, transaction
from playwright.sync_api import expect

from backoffice.admin_mixins import AuditedModelAdmin
from backoffice.audit import audit_record, changes_between, is_secret_field, snapshot
from backoffice.models import AppendOnlyError, AuditEntry
from merchants.models import Merchant
from payments.models import Ban, CardLimit
from terminals.models import Terminal

from .helpers import post_action, post_form


def _values_of_every_entry() -> str:
    return "\n".join(str(row) for row in AuditEntry.objects.values())


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_staff_changes_and_actions_are_logged_with_before_and_after_and_shown(staff_page, gateway_data):  # type: ignore[no-untyped-def]
    page, data = staff_page, gateway_data
    merchant, terminal = data.merchant, data.terminal

    page.goto(f"/admin/merchants/merchant/{merchant.pk}/change/")
    page.locator("#id_name").fill("Corner Bakery & Sons")
    page.locator("#id_allowed_ips").fill("127.0.0.1\n203.0.113.9")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist .success")).to_be_visible()
    page.goto(f"/admin/terminals/terminal/{terminal.pk}/change/")
    page.locator("#id_label").fill("Till by the door")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist .success")).to_be_visible()
    page.goto("/admin/payments/ban/add/")
    page.locator("#id_kind").select_option("card")
    page.locator("#id_value").fill("4000000760000002")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist .success")).to_contain_text("400000******0002")
    page.goto("/admin/payments/cardlimit/")
    page.locator("#result_list tbody tr", has_text="Visa (per payment)").filter(has_text="EUR").locator(
        "input[name$='-max_amount']").fill("1999.00")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist .success")).to_be_visible()
    post_action(page, "/admin/terminals/terminal/", "rotate_secret", [terminal.pk])
    post_action(page, "/admin/payments/webhookendpoint/", "rotate_secret", [data.endpoint.pk])
    post_action(page, "/admin/merchants/merchant/", "deactivate", [merchant.pk])
    bin_ban = Ban.objects.get(kind="bin")
    page.goto(f"/admin/payments/ban/{bin_ban.pk}/delete/")
    page.get_by_role("button", name="Yes, I’m sure").click()
    expect(page.locator(".messagelist .success")).to_be_visible()
    user = get_user_model().objects.get(username="staff")
    page.goto(f"/admin/auth/user/{user.pk}/password/")
    page.locator("#id_password1").fill("another-long-password-31")
    page.locator("#id_password2").fill("another-long-password-31")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator(".messagelist .success")).to_be_visible()

    def entry(action: str, obj) -> AuditEntry:  # type: ignore[no-untyped-def]
        return AuditEntry.objects.get(action=action, object_type=obj._meta.label_lower, object_id=str(obj.pk))

    changed = entry("change", merchant)
    assert changed.actor_username == "staff" and changed.ip_address == "127.0.0.1"
    assert {"field": "name", "before": "Corner Bakery", "after": "Corner Bakery & Sons"} in changed.changes
    assert {"field": "allowed_ips", "before": ["127.0.0.1"], "after": ["127.0.0.1", "203.0.113.9"]} in changed.changes
    assert entry("change", terminal).changes == [{"field": "label", "before": "Till 1", "after": "Till by the door"}]
    assert entry("rotate_secret", terminal).changes == [{"field": "secret_digest", "redacted": True}]
    assert entry("rotate_secret", data.endpoint).changes == [{"field": "secret_sealed", "redacted": True}]
    assert entry("deactivate", merchant).changes == [{"field": "is_active", "before": True, "after": False}]
    limit = CardLimit.objects.get(kind="VISA", currency="EUR")
    assert entry("change", limit).changes == [{"field": "max_amount", "before": "2500.00", "after": "1999.00"}]
    card_ban = Ban.objects.get(kind="card", card_last4="0002")
    added = entry("add", card_ban)
    assert added.object_repr == "Card number 400000******0002"
    assert {"field": "key", "redacted": True} in added.changes
    assert entry("delete", bin_ban).object_repr == str(bin_ban)
    password = entry("change", user)
    assert password.changes == [] and password.message == "Changed password."
    # Never a secret, digest, sealed value, fingerprint or card number.
    everything = _values_of_every_entry()
    for value in [*data.hidden, card_ban.key, Terminal.objects.get(pk=terminal.pk).secret_digest, user.password,
                  get_user_model().objects.get(pk=user.pk).password, "another-long-password-31",
                  "4000000760000002", *data.pans]:
        assert value not in everything

    # Shown in the back office: list, filters, search, a detail page.
    page.goto("/admin/backoffice/auditentry/")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(AuditEntry.objects.count())
    filters = page.locator("#changelist-filter")
    filters.get_by_role("link", name="secret rotated", exact=True).click()
    expect(rows).to_have_count(2)
    filters.get_by_role("link", name="merchant", exact=True).click()  # object type
    expect(rows).to_have_count(0)
    page.goto("/admin/backoffice/auditentry/?object_type=merchants.merchant")
    expect(rows).to_have_count(2)
    page.locator("#searchbar").fill("Sons")
    page.locator("#searchbar").press("Enter")
    expect(rows).to_have_count(2)  # named as it was: "Corner Bakery & Sons" in both
    rows.filter(has_text="changed").locator("th a").click()
    table = page.locator("table.audit-changes")
    expect(table.locator("tr.audit-change", has_text="name").locator(".audit-before")).to_have_text("Corner Bakery")
    expect(table.locator("tr.audit-change", has_text="name").locator(".audit-after")).to_have_text("Corner Bakery & Sons")
    expect(page.locator(".field-object_display a")).to_have_attribute("href", f"/admin/merchants/merchant/{merchant.pk}/change/")

    # Read-only for a superuser too: no add, save or delete, by button or by POST.
    assert page.evaluate("() => document.querySelectorAll('input[name=_save], a.deletelink').length") == 0
    page.goto("/admin/backoffice/auditentry/")
    expect(page.locator(".object-tools .addlink")).to_have_count(0)
    expect(page.locator("select[name=action]")).to_have_count(0)
    first = AuditEntry.objects.order_by("id").first()
    assert page.request.get("/admin/backoffice/auditentry/add/", max_redirects=0).status == 403
    assert post_form(page, f"/admin/backoffice/auditentry/{first.pk}/change/", {"message": "x"}).status == 403
    assert post_form(page, f"/admin/backoffice/auditentry/{first.pk}/delete/", {"post": "yes"}).status == 403
    post_action(page, "/admin/backoffice/auditentry/", "delete_selected", [first.pk])
    assert AuditEntry.objects.filter(pk=first.pk, message=first.message).exists()


# --- Without a browser -------------------------------------------------------------------


@pytest.mark.django_db
def test_the_database_refuses_to_change_or_delete_an_entry():  # type: ignore[no-untyped-def]
    """The triggers of backoffice/migrations/0002 (PostgreSQL and SQLite; CI runs both)."""
    entry = audit_record(action="add", object_type="merchants.merchant", object_id=1, object_repr="Shop")
    assert connection.vendor in ("postgresql", "sqlite")
    attempts = [
        lambda: AuditEntry.objects.filter(pk=entry.pk).update(message="rewritten"),
        lambda: AuditEntry.objects.filter(pk=entry.pk).delete(),
        lambda: AuditEntry.objects.all()._raw_delete(AuditEntry.objects.db),
    ]
    for attempt in attempts:
        with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
            attempt()
    for statement in (f"UPDATE backoffice_auditentry SET actor_username = 'someone else' WHERE id = {entry.pk}",
                      f"DELETE FROM backoffice_auditentry WHERE id = {entry.pk}"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    # And the model itself refuses before the database is asked.
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    assert AuditEntry.objects.get(pk=entry.pk).message == "" and AuditEntry.objects.count() == 1
    # Appending still works.
    audit_record(action="change", object_type="merchants.merchant", object_id=1, object_repr="Shop")
    assert AuditEntry.objects.count() == 2


@pytest.mark.django_db
def test_deleting_a_user_keeps_the_entries_about_them():  # type: ignore[no-untyped-def]
    user = get_user_model().objects.create_user("temp", is_staff=True)
    entry = audit_record(actor=user, action="add", object_type="payments.ban", object_id=3, object_repr="BIN 411111")
    pk = user.pk
    user.delete()  # no foreign key constraint to cascade or null: the entry is untouched
    kept = AuditEntry.objects.get(pk=entry.pk)
    assert (kept.actor_username, kept.actor_id, kept.object_repr) == ("temp", pk, "BIN 411111")


def test_every_admin_is_audited_and_every_action_declares_its_permission():  # type: ignore[no-untyped-def]
    for model, model_admin in admin.site._registry.items():
        assert isinstance(model_admin, AuditedModelAdmin), f"{model.__name__}'s admin writes no audit entries"
        for name in model_admin.actions or []:
            action = model_admin.get_action(name)
            assert action is not None, f"{model.__name__}.{name}"
            func = action[0]
            permissions = getattr(func, "allowed_permissions", None)
            assert permissions, f"the action {model.__name__}.{name} declares no permission"
            for permission in permissions:
                assert callable(getattr(model_admin, f"has_{permission}_permission", None)), (model, permission)


def test_secret_fields_are_recorded_as_changed_never_with_their_value():  # type: ignore[no-untyped-def]
    for name in ("secret_digest", "secret_sealed", "card_fingerprint", "password", "key", "pin", "app_key",
                 "set_secret", "card_number", "cvv"):
        assert is_secret_field(name), name
    for name in ("name", "label", "card_bin", "card_last4", "allowed_ips", "is_active", "max_amount", "reason"):
        assert not is_secret_field(name), name

    before = snapshot(Terminal(terminal_id="T1", label="a", secret_digest="d" * 64, merchant_id=None))
    after = snapshot(Terminal(terminal_id="T1", label="b", secret_digest="e" * 64, merchant_id=None))
    assert changes_between(before, after) == [
        {"field": "label", "before": "a", "after": "b"},
        {"field": "secret_digest", "redacted": True},
    ]
    # A card number typed into a free-text field keeps its last four only.
    merchant_before = snapshot(Merchant(name="Shop", uuid="73a9a79d-5fec-4729-98ae-0c6f1b68ef6d"))
    merchant_after = snapshot(Merchant(name="Shop 4242424242424242", uuid="73a9a79d-5fec-4729-98ae-0c6f1b68ef6d"))
    assert changes_between(merchant_before, merchant_after) == [
        {"field": "name", "before": "Shop", "after": "Shop ************4242"},
    ]
    entry = AuditEntry(object_repr="x")
    assert str(entry)  # usable without a database
