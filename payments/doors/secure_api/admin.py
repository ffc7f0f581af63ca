"""The secure API in the back office: each merchant's app_id, its keys created or
rotated (shown once), its API addresses, and the API calls.

Keys are shown the way terminal and webhook secrets are (terminals/admin.py):
the POST that issues them redirects to their one view (post/redirect/get,
``backoffice.shown_once``: kept sealed server-side until that page is read,
never in a cookie, ``no-store``), so a reload neither rotates again nor shows
them again; the database keeps them sealed. Each issue is in the audit log
(without the keys). A rotated pair stays valid for API_KEY_GRACE_SECONDS
so the merchant can roll over. Issuing keys needs the change permission on
"merchant API access"; the call log is read-only and holds no payload.
"""
from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin
from django.db import transaction
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Max, QuerySet
from django.http import Http404, HttpRequest, HttpResponseNotAllowed
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from backoffice.admin_mixins import AuditedModelAdmin, ShownOnceAdminMixin
from backoffice.audit import audit_record
from backoffice.models import AuditAction
from merchants.addresses import IPListFormField
from merchants.credentials import api_keys_issue
from merchants.models import ApiKeyPair

from .models import ApiCall, MerchantApiAccess


class MerchantApiAccessForm(forms.ModelForm):
    api_allowed_ips = IPListFormField(
        label="API addresses", required=False,
        help_text="If set, the secure API answers this merchant's calls from these addresses only (993 otherwise). "
                  "One per line; empty: any address.",
    )

    class Meta:
        model = MerchantApiAccess
        fields = ["api_allowed_ips"]


def _local(moment) -> str:  # type: ignore[no-untyped-def]
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


@admin.register(MerchantApiAccess)
class MerchantApiAccessAdmin(ShownOnceAdminMixin, AuditedModelAdmin):
    form = MerchantApiAccessForm
    list_display = ["name", "app_id_display", "keys_display", "last_call", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["name", "=app_id", "=uuid"]
    search_help_text = "Merchant name, or the exact app_id or uuid."
    fields = ["name", "uuid", "app_id_display", "keys_display", "api_allowed_ips", "calls_link"]
    readonly_fields = ["name", "uuid", "app_id_display", "keys_display", "calls_link"]
    actions = ["issue_keys"]
    change_form_template = "admin/secure_api/merchantapiaccess/change_form.html"
    shown_once_template = "admin/secure_api/merchantapiaccess/api_keys.html"

    def get_queryset(self, request) -> QuerySet:  # type: ignore[no-untyped-def]
        return super().get_queryset(request).annotate(last_call_at=Max("api_calls__created_at"))

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False  # merchants are created on their own page; keys are issued here

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    @admin.display(description="app id", ordering="app_id")
    def app_id_display(self, obj: MerchantApiAccess) -> str:
        return obj.app_id or "— (no keys yet)"

    @admin.display(description="key pairs")
    def keys_display(self, obj: MerchantApiAccess) -> str:
        now = timezone.now()
        pairs = ApiKeyPair.objects.filter(merchant_id=obj.pk).order_by("-created_at", "-id")
        rows = []
        for pair in pairs:
            if pair.expires_at is None:
                rows.append((f"current, issued {_local(pair.created_at)}",))
            elif pair.expires_at > now:
                rows.append((f"previous, valid until {_local(pair.expires_at)}",))
        return format_html_join(mark_safe("<br>"), "{}", rows) or "none"  # noqa: S308 - a constant

    @admin.display(description="last API call", ordering="last_call_at", empty_value="never")
    def last_call(self, obj: MerchantApiAccess):  # type: ignore[no-untyped-def]
        return getattr(obj, "last_call_at", None)

    @admin.display(description="API calls")
    def calls_link(self, obj: MerchantApiAccess) -> str:
        url = reverse("admin:secure_api_apicall_changelist") + f"?merchant__id__exact={obj.pk}"
        return format_html('<a href="{}" class="api-calls-link">API calls of this merchant</a>', url)

    def get_urls(self):  # type: ignore[no-untyped-def]
        own = [path("<path:object_id>/keys/", self.admin_site.admin_view(self.keys_view),
                    name="secure_api_merchantapiaccess_keys")]
        return own + super().get_urls()

    def keys_view(self, request: HttpRequest, object_id: str) -> HttpResponseRedirect:
        """POST: issue (or rotate) the merchant's keys and show them, once."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])  # type: ignore[return-value]
        merchant = self.get_object(request, unquote(object_id))
        if merchant is None:
            raise Http404("No such merchant")
        if not self.has_change_permission(request, merchant):
            raise PermissionDenied
        return self._keys_response(request, [merchant])

    @admin.action(description="Create or rotate API keys of the selected merchants (shown once)",
                  permissions=["change"])
    def issue_keys(self, request, queryset):  # type: ignore[no-untyped-def]
        return self._keys_response(request, list(queryset))

    def _keys_response(self, request: HttpRequest, merchants: list[MerchantApiAccess]) -> HttpResponseRedirect:
        grace_hours = f"{settings.API_KEY_GRACE_SECONDS / 3600:g}"
        shown = []
        # One transaction: every merchant's keys issued, audited and kept for
        # their one view, or none (keys nobody can read would lock it out).
        with transaction.atomic():
            for merchant in merchants:
                rotated = ApiKeyPair.objects.filter(merchant_id=merchant.pk, expires_at__isnull=True).exists()
                keys = api_keys_issue(merchant=merchant)
                audit_record(
                    request=request, action=AuditAction.ROTATE_SECRET, obj=merchant,
                    changes=[{"field": "api_keys", "redacted": True}],
                    message=("API keys rotated" if rotated else "API keys created")
                    + " (shown once to this staff member)",
                )
                shown.append({
                    "pk": merchant.pk, "name": merchant.name, "app_id": keys.app_id, "app_key": keys.app_key,
                    "data_key": keys.data_key, "rotated": rotated, "grace_hours": grace_hours,
                })
            return self.shown_once_redirect(request, title="API keys", items=shown)


@admin.register(ApiCall)
class ApiCallAdmin(AuditedModelAdmin):
    list_display = ["created_at", "merchant", "method", "path", "status", "error_code", "replayed",
                    "duration_ms", "remote_addr"]
    list_filter = ["status", "error_code", "method", "replayed", "merchant"]
    search_fields = ["path", "=app_id"]
    search_help_text = "Path (a uuid), or the exact app_id."
    date_hierarchy = "created_at"
    list_select_related = ["merchant"]
    fields = list_display[:1] + ["app_id"] + list_display[1:]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
