"""Merchants in the back office (administrators change them; every role reads them).

A merchant is never deleted: its terminals, payments and events protect it
(and are evidence). Deactivating it refuses its esipay calls (403) and its
terminals (110); reactivating restores them.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db import transaction
from django.db.models import Count, QuerySet

from backoffice.admin_mixins import AuditedModelAdmin
from backoffice.audit import audit_record
from backoffice.models import AuditAction
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
class MerchantAdmin(AuditedModelAdmin):
    form = MerchantForm
    list_display = ["name", "uuid", "currency", "terminal_count", "is_active", "created_at"]
    list_filter = ["is_active", "currency"]
    search_fields = ["name", "=uuid"]
    search_help_text = "Name, or the exact UUID."
    readonly_fields = ["uuid", "created_at"]
    inlines = [TerminalInline, WebhookEndpointInline]
    # change_form.html adds "Add a terminal" and "Add a webhook endpoint" links, preset to this merchant.
    change_form_template = "admin/merchants/merchant/change_form.html"
    actions = ["deactivate", "activate"]

    def get_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        fields = ["name", "currency", "allowed_ips", "callback_url", "is_active"]
        return ["uuid", *fields, "created_at"] if obj else fields

    def get_queryset(self, request) -> QuerySet:  # type: ignore[no-untyped-def]
        return super().get_queryset(request).annotate(terminal_count=Count("terminals"))

    @admin.display(description="terminals", ordering="terminal_count")
    def terminal_count(self, obj: Merchant) -> int:
        return getattr(obj, "terminal_count", 0)

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        # Deleting could never succeed once the merchant has a terminal or a
        # payment (PROTECT), and would erase evidence: deactivate instead.
        return False

    def _set_active(self, request, queryset, *, active: bool) -> int:  # type: ignore[no-untyped-def]
        action = AuditAction.ACTIVATE if active else AuditAction.DEACTIVATE
        with transaction.atomic():
            pks = list(queryset.values_list("pk", flat=True))  # the list's queryset may be annotated
            changed = list(Merchant.objects.select_for_update().filter(pk__in=pks).exclude(is_active=active))
            for merchant in changed:
                audit_record(request=request, action=action, obj=merchant,
                             changes=[{"field": "is_active", "before": not active, "after": active}])
            Merchant.objects.filter(pk__in=[merchant.pk for merchant in changed]).update(is_active=active)
        return len(changed)

    @admin.action(description="Deactivate selected merchants (refuse their payments)", permissions=["change"])
    def deactivate(self, request, queryset) -> None:  # type: ignore[no-untyped-def]
        count = self._set_active(request, queryset, active=False)
        self.message_user(request, f"{count} merchant(s) deactivated: their esipay calls now get 403 and "
                                   "their terminals error 110.")

    @admin.action(description="Reactivate selected merchants", permissions=["change"])
    def activate(self, request, queryset) -> None:  # type: ignore[no-untyped-def]
        count = self._set_active(request, queryset, active=True)
        self.message_user(request, f"{count} merchant(s) reactivated.")
