"""Terminals in the back office: credentials shown once, enable/disable, last seen.

A terminal's secret exists in clear only in the response that creates or
rotates it: that response is rendered directly (no redirect), so the secret
never passes through Django's message storage (a signed but readable
cookie, or the session table) and is marked ``no-store`` for caches.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers

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


@admin.register(Terminal)
class TerminalAdmin(admin.ModelAdmin):
    form = TerminalForm
    list_display = ["terminal_id", "label", "merchant", "is_active", "last_seen", "created_at"]
    list_filter = ["is_active", "merchant", "last_seen_at"]
    search_fields = ["terminal_id", "label", "merchant__name"]
    search_help_text = "Terminal id, label or merchant name."
    readonly_fields = ["terminal_id", "last_seen", "created_at"]
    list_select_related = ["merchant"]
    actions = ["enable", "disable", "rotate_secret"]

    def get_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        fields = ["merchant", "label", "allowed_ips", "is_active"]
        return ["terminal_id", *fields, "last_seen", "created_at"] if obj else fields

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        # A terminal's payments belong to its merchant: it never moves to another one.
        return [*self.readonly_fields, "merchant"] if obj else self.readonly_fields

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
        setattr(request, _SECRETS_ATTR, [(obj, secret)])

    def response_add(self, request, obj, post_url_continue=None):  # type: ignore[no-untyped-def]
        shown = getattr(request, _SECRETS_ATTR, None)
        if not shown:
            return super().response_add(request, obj, post_url_continue)
        return self._credentials_response(request, shown, title="Terminal added")

    def _credentials_response(self, request: HttpRequest, shown, *, title: str) -> TemplateResponse:  # type: ignore[no-untyped-def]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "credentials": shown,
        }
        response = TemplateResponse(request, "admin/terminals/terminal/credentials.html", context)
        add_never_cache_headers(response)  # Cache-Control: no-store among others
        return response

    @admin.action(description="Enable selected terminals")
    def enable(self, request, queryset) -> None:  # type: ignore[no-untyped-def]
        count = queryset.update(is_active=True)
        self.message_user(request, f"{count} terminal(s) enabled.")

    @admin.action(description="Disable selected terminals")
    def disable(self, request, queryset) -> None:  # type: ignore[no-untyped-def]
        count = queryset.update(is_active=False)
        self.message_user(request, f"{count} terminal(s) disabled: their requests now get error 110.")

    @admin.action(description="Rotate the secret of selected terminals (shown once)")
    def rotate_secret(self, request, queryset):  # type: ignore[no-untyped-def]
        shown = [(terminal, terminal_rotate_secret(terminal=terminal))
                 for terminal in queryset.select_related("merchant")]
        return self._credentials_response(request, shown, title="New terminal secrets")
