from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet

from payments.models import WebhookEndpoint
from terminals.models import Terminal

from .addresses import IPListFormField
from .models import Merchant


class MerchantForm(forms.ModelForm):
    allowed_ips = IPListFormField(label="Server addresses", required=False,
                                  help_text="Addresses the merchant's servers call from, one per line.")
    callback_url = forms.URLField(
        label="Return URL", required=False, max_length=500, assume_scheme="https",
        help_text=Merchant._meta.get_field("callback_url").help_text,
    )

    class Meta:
        model = Merchant
        fields = ["name", "currency", "allowed_ips", "callback_url", "is_active"]


class TerminalInline(admin.TabularInline):
    model = Terminal
    fields = ["terminal_id", "label", "is_active", "last_seen"]
    readonly_fields = ["terminal_id", "label", "is_active", "last_seen"]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False  # terminals are added from the terminal page, which shows the secret once

    @admin.display(description="last seen", empty_value="never")
    def last_seen(self, obj: Terminal):  # type: ignore[no-untyped-def]
        return obj.last_seen_at


class WebhookEndpointInline(admin.TabularInline):
    model = WebhookEndpoint
    fields = ["url", "description", "is_active", "created_at"]
    readonly_fields = fields  # never the sealed secret
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "webhook endpoints"

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False  # added from the endpoint page, which shows the signing secret once

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False  # changed on the endpoint's own page


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    form = MerchantForm
    list_display = ["name", "uuid", "currency", "terminal_count", "is_active", "created_at"]
    list_filter = ["is_active", "currency"]
    search_fields = ["name", "=uuid"]
    search_help_text = "Name, or the exact UUID."
    readonly_fields = ["uuid", "created_at"]
    inlines = [TerminalInline, WebhookEndpointInline]
    # change_form.html adds "Add a terminal" and "Add a webhook endpoint" links, preset to this merchant.
    change_form_template = "admin/merchants/merchant/change_form.html"

    def get_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        fields = ["name", "currency", "allowed_ips", "callback_url", "is_active"]
        return ["uuid", *fields, "created_at"] if obj else fields

    def get_queryset(self, request) -> QuerySet:  # type: ignore[no-untyped-def]
        return super().get_queryset(request).annotate(terminal_count=Count("terminals"))

    @admin.display(description="terminals", ordering="terminal_count")
    def terminal_count(self, obj: Merchant) -> int:
        return getattr(obj, "terminal_count", 0)
