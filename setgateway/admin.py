"""The SET gateway in the back office: SET settings per merchant (enable,
authentication, transport id, the secret shown once), live connections, the
diagnostic log journal and the SET requests.

A SET secret is shown once, on the page the add or rotate POST redirects to
(post/redirect/get, ``backoffice.shown_once``): a reload neither enables
again nor rotates again, and shows nothing. Until that page is read the
secret is kept sealed server-side.

Who may do what (backoffice/roles.py): everything here that changes SET
settings is the administrator's (``setgateway.change_setsettings``: a
door's credentials); the lists are read by every role.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils.html import format_html, format_html_join

from backoffice.admin_mixins import AuditedModelAdmin, ShownOnceAdminMixin
from backoffice.audit import audit_record
from backoffice.models import AuditAction
from merchants.models import Merchant
from payments.admin import ReadOnlyAdmin  # written by the gateway processes only

from .credentials import IssuedSecret, set_secret_rotate, set_settings_create
from .journal import live_cutoff
from .models import DiagnosticLog, LiveConnection, SetExchange, SetSettings, validate_transport_id

_SHOWN_ATTR = "_set_secrets_shown_once"


def _shown(row: SetSettings, issued: IssuedSecret) -> dict[str, object]:
    return {"pk": row.pk, "merchant": str(row.merchant), "transport_id": issued.transport_id,
            "secret": issued.secret}


class SetSettingsForm(forms.ModelForm):
    transport_id = forms.CharField(
        label="Transport id", max_length=64, required=False, validators=[validate_transport_id],
        help_text="How the merchant names itself in its Authentication message. "
                  "Left empty when adding: a slug of the merchant's name.",
    )

    class Meta:
        model = SetSettings
        fields = ["merchant", "transport_id", "authentication", "enabled"]

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        if "merchant" in self.fields:
            # One SET settings row per merchant: offer only merchants without one.
            self.fields["merchant"].queryset = Merchant.objects.filter(set_settings__isnull=True)
        if self.instance.pk:
            self.fields["transport_id"].required = True

    def clean_transport_id(self) -> str:
        value = self.cleaned_data.get("transport_id", "")
        if value and SetSettings.objects.filter(transport_id=value).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError("Another merchant already uses this transport id.")
        return value


@admin.register(SetSettings)
class SetSettingsAdmin(ShownOnceAdminMixin, AuditedModelAdmin):
    form = SetSettingsForm
    list_display = ["merchant", "transport_id", "authentication", "enabled", "live_connection_count",
                    "secret_rotated_at"]
    list_filter = ["enabled", "authentication"]
    search_fields = ["merchant__name", "transport_id"]
    search_help_text = "Merchant name or transport id."
    list_select_related = ["merchant"]
    actions = ["enable", "disable", "rotate_secret"]
    shown_once_template = "admin/setgateway/setsettings/secret.html"

    def get_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        if obj is None:
            return ["merchant", "transport_id", "authentication", "enabled"]
        return ["merchant", "transport_id", "authentication", "enabled", "registered_addresses", "secret_rotated_at",
                "live_connections", "recent_diagnostics"]

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        if obj is None:
            return []
        return ["merchant", "registered_addresses", "secret_rotated_at", "live_connections", "recent_diagnostics"]

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False  # disable SET instead: the settings name the merchant's requests

    def get_queryset(self, request) -> QuerySet:  # type: ignore[no-untyped-def]
        live = Count("merchant__set_connections", filter=Q(merchant__set_connections__seen_at__gte=live_cutoff()))
        return super().get_queryset(request).annotate(live_count=live)

    @admin.display(description="live connections", ordering="live_count")
    def live_connection_count(self, obj: SetSettings) -> int:
        return getattr(obj, "live_count", 0)

    @admin.display(description="registered addresses")
    def registered_addresses(self, obj: SetSettings) -> str:
        addresses = obj.merchant.allowed_ips
        return ", ".join(addresses) if addresses else "none (edit them on the merchant's page)"

    @admin.display(description="live connections")
    def live_connections(self, obj: SetSettings) -> str:
        rows = LiveConnection.objects.filter(merchant=obj.merchant, seen_at__gte=live_cutoff()).order_by("since")
        if not rows:
            return "none"
        return format_html(
            '<table class="set-live-connections"><thead><tr><th>address</th><th>state</th><th>since</th>'
            "<th>outstanding requests</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                             ((r.peer, r.state, f"{r.since:%Y-%m-%d %H:%M:%S}", r.outstanding) for r in rows)),
        )

    @admin.display(description="diagnostic log (latest 10)")
    def recent_diagnostics(self, obj: SetSettings) -> str:
        rows = DiagnosticLog.objects.filter(merchant=obj.merchant)[:10]
        if not rows:
            return "none"
        return format_html_join(
            "", '<div class="set-diagnostic">{} from {}: {} bytes, {} — {}</div>',
            ((f"{r.received_at:%Y-%m-%d %H:%M:%S}", r.peer_ip, r.size, r.content_type or "?", r.summary)
             for r in rows),
        )

    def save_model(self, request, obj: SetSettings, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        if change:
            super().save_model(request, obj, form, change)
            return
        row, issued = set_settings_create(
            merchant=obj.merchant, transport_id=form.cleaned_data.get("transport_id", ""),
            authentication=obj.authentication, enabled=obj.enabled,
        )
        obj.pk = row.pk
        obj.refresh_from_db()
        setattr(request, _SHOWN_ATTR, [_shown(obj, issued)])

    def response_add(self, request, obj, post_url_continue=None):  # type: ignore[no-untyped-def]
        shown = getattr(request, _SHOWN_ATTR, None)
        if not shown:
            return super().response_add(request, obj, post_url_continue)
        return self.shown_once_redirect(request, title="SET enabled", items=shown)

    def _set_enabled(self, request, queryset, *, enabled: bool) -> int:  # type: ignore[no-untyped-def]
        action = AuditAction.ENABLE if enabled else AuditAction.DISABLE
        with transaction.atomic():
            pks = list(queryset.values_list("pk", flat=True))  # the list's queryset is annotated
            changed = list(SetSettings.objects.select_for_update().filter(pk__in=pks).exclude(enabled=enabled))
            for row in changed:
                audit_record(request=request, action=action, obj=row,
                             changes=[{"field": "enabled", "before": not enabled, "after": enabled}])
            SetSettings.objects.filter(pk__in=[row.pk for row in changed]).update(enabled=enabled)
        return len(changed)

    @admin.action(description="Enable SET for the selected merchants", permissions=["change"])
    def enable(self, request, queryset) -> None:  # type: ignore[no-untyped-def]
        count = self._set_enabled(request, queryset, enabled=True)
        self.message_user(request, f"SET enabled for {count} merchant(s).")

    @admin.action(description="Disable SET for the selected merchants", permissions=["change"])
    def disable(self, request, queryset) -> None:  # type: ignore[no-untyped-def]
        count = self._set_enabled(request, queryset, enabled=False)
        self.message_user(request, f"SET disabled for {count} merchant(s): new connections are refused "
                                   "(open ones stay open until they close).")

    @admin.action(description="Rotate the SET secret of the selected merchants (shown once)",
                  permissions=["change"])
    def rotate_secret(self, request, queryset):  # type: ignore[no-untyped-def]
        shown = []
        # One transaction: every secret rotated, recorded and kept for its one view, or none.
        with transaction.atomic():
            pks = list(queryset.values_list("pk", flat=True))
            for row in SetSettings.objects.select_related("merchant").select_for_update(of=("self",)).filter(
                    pk__in=pks):
                issued = set_secret_rotate(settings_pk=row.pk)
                audit_record(request=request, action=AuditAction.ROTATE_SECRET, obj=row,
                             changes=[{"field": "secret_sealed", "redacted": True}],
                             message="SET secret rotated (the new one shown once to this staff member)")
                shown.append(_shown(row, issued))
            if not shown:
                self.message_user(request, "No SET settings selected.", messages.WARNING)
                return None
            return self.shown_once_redirect(request, title="New SET secrets", items=shown)


@admin.register(LiveConnection)
class LiveConnectionAdmin(ReadOnlyAdmin):
    list_display = ["merchant", "peer", "state", "since", "outstanding", "process"]
    list_filter = ["state", "merchant"]
    search_fields = ["merchant__name", "peer"]
    list_select_related = ["merchant"]

    def get_queryset(self, request) -> QuerySet:  # type: ignore[no-untyped-def]
        # Rows of a process that is gone (killed) are not live: not shown.
        return super().get_queryset(request).filter(seen_at__gte=live_cutoff())


@admin.register(DiagnosticLog)
class DiagnosticLogAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "merchant", "peer_ip", "size", "content_type", "msg_tag", "summary"]
    list_filter = ["merchant", "received_at"]
    search_fields = ["merchant__name", "peer_ip", "msg_tag"]
    list_select_related = ["merchant"]
    fields = ["received_at", "merchant", "peer_ip", "size", "content_type", "msg_tag", "summary", "body_hex"]
    readonly_fields = fields

    @admin.display(description="body (hex, card-like digits masked)")
    def body_hex(self, obj: DiagnosticLog) -> str:
        if not obj.body_kept:
            return "not kept (over the maximum message size)"
        data = bytes(obj.body)
        return format_html("<pre class='set-diagnostic-body'>{}</pre>",
                           "\n".join(data[i:i + 32].hex(" ") for i in range(0, min(len(data), 4096), 32)))


@admin.register(SetExchange)
class SetExchangeAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "merchant", "kind", "trans_id", "cred_id", "transaction", "summary", "completed_at"]
    list_filter = ["kind", "merchant"]
    search_fields = ["=trans_id", "=cred_id", "merchant__name"]
    search_help_text = "Exact transId or credId, or merchant name."
    list_select_related = ["merchant", "transaction"]
    exclude = ["digest", "response"]
