"""The audit log (read-only for everyone), and staff accounts and groups
(audited; the three role groups read-only, as backoffice.roles defines them)."""
from __future__ import annotations

from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.db.models import QuerySet
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from .admin_mixins import AuditedModelAdmin
from .models import AuditEntry
from .roles import ROLE_NAMES

User = get_user_model()


class ObjectTypeFilter(admin.SimpleListFilter):
    title = "object type"
    parameter_name = "object_type"

    def lookups(self, request, model_admin):  # type: ignore[no-untyped-def]
        types = AuditEntry.objects.order_by("object_type").values_list("object_type", flat=True).distinct()
        return [(label, _model_name(label)) for label in types]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:  # type: ignore[no-untyped-def]
        return queryset.filter(object_type=self.value()) if self.value() else queryset


class ActorFilter(admin.SimpleListFilter):
    title = "staff member"
    parameter_name = "actor"

    def lookups(self, request, model_admin):  # type: ignore[no-untyped-def]
        names = AuditEntry.objects.order_by("actor_username").values_list("actor_username", flat=True).distinct()
        return [(name, name) for name in names]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:  # type: ignore[no-untyped-def]
        return queryset.filter(actor_username=self.value()) if self.value() else queryset


def _model_name(label: str) -> str:
    try:
        return str(apps.get_model(label)._meta.verbose_name)
    except (LookupError, ValueError):
        return label


@admin.register(AuditEntry)
class AuditEntryAdmin(AuditedModelAdmin):
    """Who did what, when, to which object. Nobody adds, changes or deletes
    an entry here, superusers included (and the database refuses it too)."""

    list_display = ["at_display", "actor_username", "action_display", "object_display", "message", "changes_short"]
    list_filter = ["action", ObjectTypeFilter, ActorFilter, "at"]
    search_fields = ["actor_username", "object_repr", "=object_id", "message"]
    search_help_text = "Staff member, object (as it was named), exact object id, or words of the summary."
    date_hierarchy = "at"
    show_full_result_count = False
    actions = None  # no "delete selected"
    fields = ["at_display", "actor_username", "ip_address", "action_display", "object_type", "object_id",
              "object_display", "message", "changes_table"]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    @admin.display(description="when", ordering="at")
    def at_display(self, obj: AuditEntry) -> str:
        return timezone.localtime(obj.at).strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description="action", ordering="action")
    def action_display(self, obj: AuditEntry) -> str:
        return format_html('<span class="audit-action audit-action-{}">{}</span>', obj.action, obj.get_action_display())

    @admin.display(description="object", ordering="object_repr")
    def object_display(self, obj: AuditEntry) -> str:
        kind = _model_name(obj.object_type)
        app_label, _, model_name = obj.object_type.partition(".")
        try:
            url = reverse(f"admin:{app_label}_{model_name}_change", args=[obj.object_id]) if obj.object_id else ""
        except NoReverseMatch:
            url = ""
        if not url:
            return format_html('{} <span class="audit-object">{}</span>', kind, obj.object_repr)
        return format_html('{} <a class="audit-object" href="{}">{}</a>', kind, url, obj.object_repr)

    @admin.display(description="fields changed")
    def changes_short(self, obj: AuditEntry) -> str:
        return ", ".join(change.get("field", "?") for change in obj.changes)

    @admin.display(description="changes")
    def changes_table(self, obj: AuditEntry) -> str:
        if not obj.changes:
            return "—"
        rows = format_html_join(
            "",
            '<tr class="audit-change"><td class="audit-field">{}</td><td class="audit-before">{}</td>'
            '<td class="audit-after">{}</td></tr>',
            (
                (change.get("field", "?"), "(secret: not recorded)", "(changed)") if change.get("redacted")
                else (change.get("field", "?"), _value(change.get("before")), _value(change.get("after")))
                for change in obj.changes
            ),
        )
        return format_html('<table class="audit-changes"><thead><tr><th>field</th><th>before</th><th>after</th>'
                           "</tr></thead><tbody>{}</tbody></table>", rows)


def _value(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "(none)"
    return str(value)


# --- Staff accounts and groups ----------------------------------------------------------

admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class StaffUserAdmin(AuditedModelAdmin, UserAdmin):
    """Staff accounts; roles are given by group membership (viewer, operator,
    administrator). Only a superuser makes a superuser or changes one."""

    list_display = ["username", "email", "roles", "is_staff", "is_superuser", "is_active", "last_login"]
    list_filter = ["groups", "is_staff", "is_superuser", "is_active"]
    audit_exclude = ("last_login",)  # moved by logging in, not by staff

    @admin.display(description="roles")
    def roles(self, obj) -> str:  # type: ignore[no-untyped-def]
        return ", ".join(group.name for group in obj.groups.all())

    def get_queryset(self, request) -> QuerySet:  # type: ignore[no-untyped-def]
        return super().get_queryset(request).prefetch_related("groups")

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        readonly = list(super().get_readonly_fields(request, obj))
        return readonly if request.user.is_superuser else [*readonly, "is_superuser"]

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)


@admin.register(Group)
class StaffGroupAdmin(AuditedModelAdmin, GroupAdmin):
    """Groups; the three roles are defined in code (backoffice/roles.py) and
    shown read-only: docs/backoffice.md's table of what each role may do
    stays true. Administrators may add groups of their own."""

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        if obj is not None and obj.name in ROLE_NAMES:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        if obj is not None and obj.name in ROLE_NAMES:
            return False
        return super().has_delete_permission(request, obj)
