from __future__ import annotations

from django import forms
from django.contrib import admin

from terminals.models import Terminal

from .addresses import IPListFormField
from .models import Merchant


class MerchantForm(forms.ModelForm):
    allowed_ips = IPListFormField(label="Server addresses", required=False,
                                  help_text="Addresses the merchant's servers call from, one per line.")

    class Meta:
        model = Merchant
        fields = ["name", "currency", "allowed_ips", "callback_url", "is_active"]


class TerminalInline(admin.TabularInline):
    model = Terminal
    fields = ["terminal_id", "label", "is_active", "last_seen_at"]
    readonly_fields = ["terminal_id", "label", "is_active", "last_seen_at"]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False  # terminals are added from the terminal page, which shows the secret once


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    form = MerchantForm
    list_display = ["name", "uuid", "currency", "is_active", "created_at"]
    list_filter = ["is_active", "currency"]
    search_fields = ["name", "=uuid"]
    readonly_fields = ["uuid", "created_at"]
    inlines = [TerminalInline]

    def get_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        fields = ["name", "currency", "allowed_ips", "callback_url", "is_active"]
        return ["uuid", *fields, "created_at"] if obj else fields
