"""Terminals in the back office: credentials shown once, enable/disable, last seen."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from merchants.addresses import IPListFormField

from .models import Terminal
from .services import terminal_create, terminal_rotate_secret


class TerminalForm(forms.ModelForm):
    allowed_ips = IPListFormField(label="Allowed addresses", required=False,
                                  help_text=Terminal._meta.get_field("allowed_ips").help_text)

    class Meta:
        model = Terminal
        fields = ["merchant", "label", "allowed_ips", "is_active"]


def _show_secret_once(request, terminal: Terminal, secret: str) -> None:  # type: ignore[no-untyped-def]
    messages.warning(
        request,
        format_html(
            "Credentials of terminal <strong>{}</strong>: terminal_id <code>{}</code>, secret "
            "<code class=\"terminal-secret\">{}</code>. Copy the secret now: it is shown only once.",
            terminal, terminal.terminal_id, secret,
        ),
    )


@admin.register(Terminal)
class TerminalAdmin(admin.ModelAdmin):
    form = TerminalForm
    list_display = ["terminal_id", "label", "merchant", "is_active", "last_seen_at", "created_at"]
    list_filter = ["is_active", "merchant"]
    search_fields = ["terminal_id", "label", "merchant__name"]
    readonly_fields = ["terminal_id", "last_seen_at", "created_at"]
    actions = ["enable", "disable", "rotate_secret"]

    def get_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        fields = ["merchant", "label", "allowed_ips", "is_active"]
        return ["terminal_id", *fields, "last_seen_at", "created_at"] if obj else fields

    def save_model(self, request, obj: Terminal, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        if change:
            super().save_model(request, obj, form, change)
            return
        terminal, secret = terminal_create(
            merchant=obj.merchant, allowed_ips=obj.allowed_ips, label=obj.label, is_active=obj.is_active
        )
        obj.pk = terminal.pk
        obj.refresh_from_db()
        _show_secret_once(request, obj, secret)

    @admin.action(description="Enable selected terminals")
    def enable(self, request, queryset) -> None:  # type: ignore[no-untyped-def]
        count = queryset.update(is_active=True)
        self.message_user(request, f"{count} terminal(s) enabled.")

    @admin.action(description="Disable selected terminals")
    def disable(self, request, queryset) -> None:  # type: ignore[no-untyped-def]
        count = queryset.update(is_active=False)
        self.message_user(request, f"{count} terminal(s) disabled: their requests now get error 110.")

    @admin.action(description="Rotate the secret of selected terminals (shown once)")
    def rotate_secret(self, request, queryset) -> None:  # type: ignore[no-untyped-def]
        for terminal in queryset:
            _show_secret_once(request, terminal, terminal_rotate_secret(terminal=terminal))
