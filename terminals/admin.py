"""Terminals in the back office: credentials shown once, enable/disable, last seen.

A terminal's secret is shown once, on the page the add or rotate POST
redirects to (post/redirect/get, ``backoffice.shown_once``): a reload
neither creates a second terminal nor rotates again, and shows nothing.
Until that page is read the secret is kept sealed server-side, never in a
cookie or the message storage, and the page is sent ``no-store``.

Who may do what (backoffice/roles.py): adding a terminal and rotating its
secret are credentials (administrator); enabling and disabling are the
operator's ``terminals.enable_terminal``. Terminals are never deleted (their
tokens and payments are kept): disable them.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction

from backoffice.admin_mixins import AuditedModelAdmin, ShownOnceAdminMixin
from backoffice.audit import audit_record
from backoffice.models import AuditAction
from merchants.addresses import IPListFormField

from .models import Terminal
from .services import terminal_create, terminal_rotate_secret

_SECRETS_ATTR = "_terminal_secrets_shown_once"


class TerminalForm(forms.ModelForm):
    allowed_ips = IPListFormField(label="Allowed addresses", required=False,
                                  help_text=Terminal._meta.get_field("allowed_ips").help_text
                                  + " One address per line.")

    class Meta:
        model = Terminal
        fields = ["merchant", "label", "allowed_ips", "is_active"]


def _shown(terminal: Terminal, secret: str) -> dict[str, object]:
    return {"pk": terminal.pk, "terminal_id": terminal.terminal_id, "name": str(terminal),
            "merchant": str(terminal.merchant), "secret": secret}


@admin.register(Terminal)
class TerminalAdmin(ShownOnceAdminMixin, AuditedModelAdmin):
    form = TerminalForm
    list_display = ["terminal_id", "label", "merchant", "is_active", "last_seen", "created_at"]
    list_filter = ["is_active", "merchant", "last_seen_at"]
    search_fields = ["terminal_id", "label", "merchant__name"]
    search_help_text = "Terminal id, label or merchant name."
    readonly_fields = ["terminal_id", "last_seen", "created_at"]
    list_select_related = ["merchant"]
    actions = ["enable", "disable", "rotate_secret"]
    shown_once_template = "admin/terminals/terminal/credentials.html"
    audit_exclude = ("last_seen_at",)  # moved by the listener, not by staff

    def get_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        fields = ["merchant", "label", "allowed_ips", "is_active"]
        return ["terminal_id", *fields, "last_seen", "created_at"] if obj else fields

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        # A terminal's payments belong to its merchant: it never moves to another one.
        return [*self.readonly_fields, "merchant"] if obj else self.readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        # Its tokens and payments protect it (and are evidence): disable it instead.
        return False

    def has_enable_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return request.user.has_perm("terminals.enable_terminal")

    def has_rotate_secret_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return request.user.has_perm("terminals.rotate_terminal_secret")

    @admin.display(description="last seen", ordering="last_seen_at", empty_value="never")
    def last_seen(self, obj: Terminal):  # type: ignore[no-untyped-def]
        return obj.last_seen_at

    def save_model(self, request, obj: Terminal, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        if change:
            super().save_model(request, obj, form, change)
            return
        terminal, secret = terminal_create(
            merchant=obj.merchant, allowed_ips=obj.allowed_ips, label=obj.label, is_active=obj.is_active
        )
        obj.pk = terminal.pk
        obj.refresh_from_db()
        setattr(request, _SECRETS_ATTR, [_shown(obj, secret)])

    def response_add(self, request, obj, post_url_continue=None):  # type: ignore[no-untyped-def]
        shown = getattr(request, _SECRETS_ATTR, None)
        if not shown:
            return super().response_add(request, obj, post_url_continue)
        return self.shown_once_redirect(request, title="Terminal added", items=shown)

    def _set_active(self, request, queryset, *, active: bool) -> int:  # type: ignore[no-untyped-def]
        action = AuditAction.ENABLE if active else AuditAction.DISABLE
        with transaction.atomic():
            pks = list(queryset.values_list("pk", flat=True))  # the list's queryset may be annotated
            changed = list(Terminal.objects.select_for_update().filter(pk__in=pks).exclude(is_active=active))
            for terminal in changed:
                audit_record(request=request, action=action, obj=terminal,
                             changes=[{"field": "is_active", "before": not active, "after": active}])
            Terminal.objects.filter(pk__in=[terminal.pk for terminal in changed]).update(is_active=active)
        return len(changed)

    @admin.action(description="Enable selected terminals", permissions=["enable"])
    def enable(self, request, queryset) -> None:  # type: ignore[no-untyped-def]
        count = self._set_active(request, queryset, active=True)
        self.message_user(request, f"{count} terminal(s) enabled.")

    @admin.action(description="Disable selected terminals", permissions=["enable"])
    def disable(self, request, queryset) -> None:  # type: ignore[no-untyped-def]
        count = self._set_active(request, queryset, active=False)
        self.message_user(request, f"{count} terminal(s) disabled: their requests now get error 110.")

    @admin.action(description="Rotate the secret of selected terminals (shown once)",
                  permissions=["rotate_secret"])
    def rotate_secret(self, request, queryset):  # type: ignore[no-untyped-def]
        shown = []
        # One transaction: every secret rotated, recorded and kept for its one
        # view, or none (a secret nobody can read would lock the terminal out).
        with transaction.atomic():
            for terminal in queryset.select_related("merchant").select_for_update(of=("self",)):
                secret = terminal_rotate_secret(terminal=terminal)
                audit_record(request=request, action=AuditAction.ROTATE_SECRET, obj=terminal,
                             changes=[{"field": "secret_digest", "redacted": True}],
                             message="secret rotated (the new one shown once to this staff member)")
                shown.append(_shown(terminal, secret))
            if not shown:
                self.message_user(request, "No terminal selected.", messages.WARNING)
                return None
            return self.shown_once_redirect(request, title="New terminal secrets", items=shown)
