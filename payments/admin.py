"""The payment core in the back office: transactions, tokens, refunds, bans,
limits, webhook endpoints and events.

Transactions, tokens, refunds and events are read-only here (they change only
through payments.services and payments.outbox): staff with the permission
refund and void a transaction through ``refund_request`` and
``payment_void``, and resend an event through ``outbox.event_resend``. Bans
are added through ``ban_add`` so a card entered by number is stored as
fingerprint + BIN + last four, never in clear.

A webhook endpoint's signing secret is shown once, on the page the add or
rotate POST redirects to (``backoffice.shown_once``, as terminals/admin.py):
kept sealed until then, never in a cookie, sent ``no-store``.
``secret_sealed`` is shown nowhere.

Every change made here is written to the audit log (``backoffice``), in the
transaction of the change where the core allows it.
"""
from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from backoffice.admin_mixins import AuditedModelAdmin, ShownOnceAdminMixin
from backoffice.audit import audit_record
from backoffice.models import AuditAction

from . import outbox, services
from .errors import PaymentError
from .models import (
    Ban,
    CardLimit,
    DeliveryAttempt,
    Event,
    Refund,
    Token,
    Transaction,
    WebhookDelivery,
    WebhookEndpoint,
)
from .money import CURRENCIES, format_amount
from .states import (
    PROCESS_STATE,
    REFUNDABLE_STATUSES,
    TOKEN_HOLDING_STATUSES,
    BanKind,
    DeliveryStatus,
    ProcessState,
    TransactionStatus,
    statuses_in,
)

_WEBHOOK_SECRETS_ATTR = "_webhook_secrets_shown_once"


def _local(moment) -> str:  # type: ignore[no-untyped-def]
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _transaction_link(pk: int | None) -> str:
    if pk is None:
        return ""
    return format_html('<a href="{}">#{}</a>', reverse("admin:payments_transaction_change", args=[pk]), pk)


class ReadOnlyAdmin(AuditedModelAdmin):
    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


class ProcessStateFilter(admin.SimpleListFilter):
    """Filter by RFC 3867 process state, the gateway's shared vocabulary."""

    title = "process state"
    parameter_name = "process_state"

    def lookups(self, request, model_admin):  # type: ignore[no-untyped-def]
        return [(state.value, state.label) for state in ProcessState]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:  # type: ignore[no-untyped-def]
        if self.value():
            return queryset.filter(status__in=statuses_in(ProcessState(self.value())))
        return queryset


class RefundInline(admin.TabularInline):
    model = Refund
    fields = ["created_at", "amount", "status", "attempts", "reference", "failure_message", "completed_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


def _delivery_summary(total: int, delivered: int, failed: int) -> str:
    """One event's deliveries in a few words: "1/1 delivered", "pending", "failed"."""
    if not total:
        return format_html('<span class="delivery-state delivery-state-none">{}</span>', "no endpoint")
    pending = total - delivered - failed
    state = "pending" if pending else "failed" if failed else "delivered"
    words = f"{delivered}/{total} delivered" if state == "delivered" else state
    if state != "delivered" and delivered:
        words += f" ({delivered}/{total} delivered)"
    return format_html('<span class="delivery-state delivery-state-{}">{}</span>', state, words)


def _event_type(event: Event) -> str:
    # The type as merchants receive it ("payment.succeeded"), not its label.
    return format_html('<code class="event-type">{}</code>', event.type)


def _with_delivery_counts(queryset: QuerySet) -> QuerySet:
    return queryset.annotate(
        delivery_total=Count("deliveries"),
        delivery_succeeded=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.SUCCEEDED)),
        delivery_failed=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.FAILED)),
    )


class EventInline(admin.TabularInline):
    """A transaction's events, linked to their pages (deliveries, resend)."""

    model = Event
    fk_name = "transaction"
    fields = ["created_display", "type_display", "event_link", "deliveries_display"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "events (webhooks)"

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def get_queryset(self, request) -> QuerySet:  # type: ignore[no-untyped-def]
        return _with_delivery_counts(super().get_queryset(request))

    @admin.display(description="created")
    def created_display(self, obj: Event) -> str:
        return _local(obj.created_at)

    @admin.display(description="type")
    def type_display(self, obj: Event) -> str:
        return _event_type(obj)

    @admin.display(description="event id")
    def event_link(self, obj: Event) -> str:
        return format_html(
            '<a href="{}" class="event-link">{}</a>', reverse("admin:payments_event_change", args=[obj.pk]),
            obj.public_id,
        )

    @admin.display(description="deliveries")
    def deliveries_display(self, obj: Event) -> str:
        return _delivery_summary(
            getattr(obj, "delivery_total", 0), getattr(obj, "delivery_succeeded", 0), getattr(obj, "delivery_failed", 0)
        )


class RefundForm(forms.Form):
    amount = forms.CharField(
        required=False, max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", "size": 12}),
        help_text="Leave empty to refund all that remains; otherwise the amount, e.g. 15.00.",
    )
    reference = forms.CharField(widget=forms.HiddenInput, max_length=64)

    _REFERENCE = re.compile(r"backoffice-[A-Za-z0-9_-]{22}")

    @staticmethod
    def new_reference() -> str:
        # A refund id made for this form (the core's idempotency key): 128 random bits.
        return "backoffice-" + secrets.token_urlsafe(16)

    def clean_amount(self) -> str:
        return self.cleaned_data["amount"].strip()

    def clean_reference(self) -> str:
        reference = self.cleaned_data["reference"]
        if not self._REFERENCE.fullmatch(reference):
            raise forms.ValidationError("This form is not one the back office made: open the refund page again.")
        return reference


@admin.register(Transaction)
class TransactionAdmin(ReadOnlyAdmin):
    # Few, short columns: the list must fit a laptop screen beside its filters.
    list_display = [
        "id", "created_display", "merchant", "terminal_display", "channel_display", "amount_display",
        "card_display", "process_state_display",
    ]
    list_filter = [ProcessStateFilter, "status", "door", "method", "card_brand", "merchant", "terminal", "created_at"]
    search_fields = ["=id", "=card_last4", "=card_bin", "merchant__name", "terminal__terminal_id",
                     "=check_number", "=merchant_reference"]
    search_help_text = "Transaction id, last four or BIN of the card, merchant, terminal id, check number, merchant reference."
    date_hierarchy = "created_at"
    list_select_related = ["merchant", "terminal"]
    inlines = [RefundInline, EventInline]
    show_full_result_count = False
    # The detail page shows what people may see: the masked card, never the
    # keyed fingerprint (a lookup key for bans and limits, not for people).
    fieldsets = [
        (None, {"fields": ["merchant", "terminal", "door", "method", "token", "created_at", "updated_at"]}),
        ("State", {"fields": ["status", "process_state_display", "failure_code", "failure_message"]}),
        ("Money", {"fields": ["amount", "currency", "authorized_amount", "captured_amount", "refunded_amount"]}),
        ("Card or check", {"fields": ["card_display", "card_brand", "check_number"]}),
        ("References", {"fields": ["merchant_reference", "acquirer_reference", "authorization_code"]}),
    ]
    readonly_fields = ["created_at", "updated_at", "process_state_display", "card_display"]
    actions = ["refund", "void"]
    # change_form.html adds the Refund and Void buttons (links to refund_view and void_view).
    change_form_template = "admin/payments/transaction/change_form.html"

    # --- Refund and void: operators (backoffice/roles.py) ------------------------------

    def has_refund_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return request.user.has_perm("payments.refund_transaction")

    def has_void_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return request.user.has_perm("payments.void_transaction")

    def get_urls(self):  # type: ignore[no-untyped-def]
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        # Before the defaults: their "<path:object_id>/" would take ".../refund/" too.
        return [
            path("<path:object_id>/refund/", self.admin_site.admin_view(self.refund_view), name=f"{prefix}_refund"),
            path("<path:object_id>/void/", self.admin_site.admin_view(self.void_view), name=f"{prefix}_void"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):  # type: ignore[no-untyped-def]
        txn = self.get_object(request, unquote(object_id))
        extra_context = {
            **(extra_context or {}),
            "can_refund": txn is not None and self.has_refund_permission(request, txn)
            and txn.status in REFUNDABLE_STATUSES,
            "can_void": txn is not None and self.has_void_permission(request, txn)
            and txn.status == TransactionStatus.AUTHORIZED,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def _one_selected(self, request, queryset, what: str):  # type: ignore[no-untyped-def]
        selected = list(queryset[:2])
        if len(selected) != 1:
            self.message_user(request, f"Select exactly one transaction to {what}.", messages.WARNING)
            return None
        return selected[0]

    @admin.action(description="Refund the selected transaction…", permissions=["refund"])
    def refund(self, request, queryset):  # type: ignore[no-untyped-def]
        txn = self._one_selected(request, queryset, "refund")
        if txn is not None:
            return HttpResponseRedirect(reverse("admin:payments_transaction_refund", args=[txn.pk]))
        return None

    @admin.action(description="Void the selected authorization…", permissions=["void"])
    def void(self, request, queryset):  # type: ignore[no-untyped-def]
        txn = self._one_selected(request, queryset, "void")
        if txn is not None:
            return HttpResponseRedirect(reverse("admin:payments_transaction_void", args=[txn.pk]))
        return None

    def _operation_target(
        self, request: HttpRequest, object_id: str, allowed: Callable[[HttpRequest, Transaction], bool]
    ) -> Transaction:
        txn = self.get_object(request, unquote(object_id))
        if txn is None:
            raise Http404("No such transaction.")
        if not allowed(request, txn):
            raise PermissionDenied
        return txn

    def _operation_page(
        self, request: HttpRequest, txn: Transaction, template: str, title: str, **extra: object
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "original": txn,
            "card": txn.masked_card or txn.check_number,
            **extra,
        }
        return TemplateResponse(request, template, context)

    def _back_to(self, txn: Transaction) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:payments_transaction_change", args=[txn.pk]))

    def refund_view(self, request: HttpRequest, object_id: str):  # type: ignore[no-untyped-def]
        """A refund of all that remains or of an amount, after a confirmation
        page; post/redirect/get to the transaction's page. The form carries a
        reference made for it, so a double submit refunds once
        (``refund_request`` returns the first refund of a reference)."""
        txn = self._operation_target(request, object_id, self.has_refund_permission)
        form = RefundForm(request.POST if request.method == "POST" else None,
                          initial={"reference": RefundForm.new_reference()})
        if request.method == "POST" and form.is_valid():
            reference = form.cleaned_data["reference"]
            amount = form.cleaned_data["amount"] or None  # the core parses it in the currency's precision
            try:
                # The refund and its audit entry commit together (refund_request
                # does no network I/O; its task is queued after the commit).
                with transaction.atomic():
                    locked = Transaction.objects.select_for_update().get(pk=txn.pk)
                    before = {"status": locked.status, "refunded_amount": locked.refunded_amount}
                    repeated = Refund.objects.filter(transaction_id=txn.pk, reference=reference).exists()
                    refund = services.refund_request(transaction_id=txn.pk, merchant_pk=txn.merchant_id,
                                                     amount=amount, reference=reference)
                    if not repeated:
                        locked.refresh_from_db()
                        audit_record(
                            request=request, action=AuditAction.REFUND, obj=locked,
                            changes=[
                                {"field": field, "before": str(value), "after": str(getattr(locked, field))}
                                for field, value in before.items() if value != getattr(locked, field)
                            ],
                            message=f"refund {refund.pk} of {refund.amount} {locked.currency} requested",
                        )
            except PaymentError as exc:
                self.message_user(request, f"Refund refused: {exc.message}.", messages.ERROR)
            else:
                if repeated:
                    self.message_user(request, f"This refund was already requested (refund {refund.pk}): "
                                      "nothing more was refunded.", messages.WARNING)
                else:
                    self.message_user(request, f"Refund {refund.pk} of {refund.amount} {txn.currency} accepted: "
                                      "the acquirer is asked in the background (see Refunds).", messages.SUCCESS)
                return self._back_to(txn)
        return self._operation_page(
            request, txn, "admin/payments/transaction/refund.html", f"Refund transaction #{txn.pk}",
            form=form, remaining=txn.refundable_amount,
        )

    def void_view(self, request: HttpRequest, object_id: str):  # type: ignore[no-untyped-def]
        """Void an authorization after a confirmation page; post/redirect/get.
        ``payment_void`` asks the acquirer outside any transaction, so its
        audit entry is written once the answer is known, success or not."""
        txn = self._operation_target(request, object_id, self.has_void_permission)
        if request.method == "POST":
            before = txn.status
            try:
                voided = services.payment_void(transaction_id=txn.pk, merchant_pk=txn.merchant_id)
            except PaymentError as exc:
                after = Transaction.objects.filter(pk=txn.pk).values_list("status", flat=True).first()
                audit_record(request=request, action=AuditAction.VOID, obj=txn,
                             changes=[{"field": "status", "before": before, "after": after}] if after != before else [],
                             message=f"void failed: {exc.message}")
                self.message_user(request, f"Void refused: {exc.message}.", messages.ERROR)
            else:
                audit_record(request=request, action=AuditAction.VOID, obj=voided,
                             changes=[{"field": "status", "before": before, "after": voided.status}],
                             message="authorization voided")
                self.message_user(request, f"Transaction #{txn.pk} voided: the authorization is released.",
                                  messages.SUCCESS)
            return self._back_to(txn)
        return self._operation_page(request, txn, "admin/payments/transaction/void.html",
                                    f"Void transaction #{txn.pk}")

    @admin.display(description="card / check")
    def card_display(self, obj: Transaction) -> str:
        return obj.masked_card or obj.check_number

    @admin.display(description="process state", ordering="status")
    def process_state_display(self, obj: Transaction) -> str:
        """The RFC 3867 process state, with the gateway's status (and failure code) under it."""
        state = PROCESS_STATE[obj.status].value
        detail = obj.get_status_display() + (f": {obj.failure_code}" if obj.failure_code else "")
        return format_html(
            '<span class="process-state process-state-{}">{}</span><br><small class="status">{}</small>',
            state, state, detail,
        )

    @admin.display(description="created", ordering="created_at")
    def created_display(self, obj: Transaction) -> str:
        return timezone.localtime(obj.created_at).strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description="terminal", ordering="terminal__terminal_id")
    def terminal_display(self, obj: Transaction) -> str:
        return obj.terminal.terminal_id if obj.terminal else ""

    @admin.display(description="door / method", ordering="door")
    def channel_display(self, obj: Transaction) -> str:
        return format_html("{}<br><small>{}</small>", obj.get_door_display(), obj.method)

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj: Transaction) -> str:
        return f"{format_amount(obj.amount, obj.currency)} {obj.currency}"


class TokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):  # type: ignore[no-untyped-def]
        return [("used", "used by a payment"), ("open", "not used")]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:  # type: ignore[no-untyped-def]
        if self.value() == "used":
            return queryset.filter(used=True)
        if self.value() == "open":
            return queryset.filter(used=False)
        return queryset


@admin.register(Token)
class TokenAdmin(ReadOnlyAdmin):
    list_display = ["short_value", "terminal", "payment_type", "try_count", "tries_used", "used", "created_at", "expires_at"]
    list_filter = [TokenStateFilter, "payment_type", "terminal__merchant", "terminal", "created_at"]
    search_fields = ["=value", "terminal__terminal_id", "terminal__merchant__name"]
    date_hierarchy = "created_at"
    list_select_related = ["terminal"]
    show_full_result_count = False

    def get_queryset(self, request) -> QuerySet:  # type: ignore[no-untyped-def]
        holding = Transaction.objects.filter(token=OuterRef("pk"), status__in=TOKEN_HOLDING_STATUSES)
        return super().get_queryset(request).annotate(used=Exists(holding))

    @admin.display(description="token")
    def short_value(self, obj: Token) -> str:
        return f"{obj.value[:16]}…"

    @admin.display(boolean=True, description="used")
    def used(self, obj: Token) -> bool:
        return bool(getattr(obj, "used", False))


class NoEchoTextInput(forms.TextInput):
    """A text input that never writes its value back into the page.

    A card number typed into the ban form must not come back in clear when
    the form is shown again with an error (PCI DSS 3.3: at most 6 + 4).
    """

    def format_value(self, value):  # type: ignore[no-untyped-def]
        return None


class BanForm(forms.ModelForm):
    value = forms.CharField(
        max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "size": 24}),
        help_text="Card: the full number (only its fingerprint, BIN and last four are kept). "
        "BIN: 6 to 8 digits. Check: 11 letters or digits. PIN: 4 digits (kept as a fingerprint).",
    )

    class Meta:
        model = Ban
        fields = ["kind", "value", "reason"]

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        if self.is_bound and self.data.get("kind") in (BanKind.CARD, BanKind.PIN):
            self.fields["value"].widget = NoEchoTextInput(attrs=self.fields["value"].widget.attrs)

    def clean(self):  # type: ignore[no-untyped-def]
        cleaned = super().clean()
        kind, value = cleaned.get("kind"), cleaned.get("value")
        if kind and value:
            try:
                fields = services.ban_fields(kind, value)
            except services.BanValueError as exc:
                self.add_error("value", f"Not a valid value: {exc}.")
            else:
                existing = Ban.objects.filter(kind=kind, key=fields["key"]).first()
                if existing is not None:
                    self.add_error("value", f"Already on the ban list: {existing}.")
        return cleaned


@admin.register(Ban)
class BanAdmin(AuditedModelAdmin):
    list_display = ["kind", "display_value", "reason", "created_by", "created_at"]
    list_filter = ["kind", "created_at"]
    search_fields = ["=key", "=card_last4", "=card_bin", "reason"]
    search_help_text = "BIN, check number, last four or BIN of a banned card, reason."

    def get_form(self, request, obj=None, **kwargs):  # type: ignore[no-untyped-def]
        if obj is None:
            kwargs["form"] = BanForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        return ["kind", "value", "reason"] if obj is None else ["kind", "display_value", "reason", "created_by", "created_at"]

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        return [] if obj is None else ["kind", "display_value", "created_by", "created_at"]

    @admin.display(description="value")
    def display_value(self, obj: Ban) -> str:
        return obj.display_value

    def save_model(self, request, obj: Ban, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        if change:
            obj.save(update_fields=["reason"])
            return
        ban, created = services.ban_add(
            kind=form.cleaned_data["kind"], value=form.cleaned_data["value"],
            reason=form.cleaned_data.get("reason", ""), created_by_id=request.user.pk,
        )
        obj.pk = ban.pk
        obj.refresh_from_db()
        if not created:
            self.message_user(request, "That value was already on the ban list.")


@admin.register(CardLimit)
class CardLimitAdmin(AuditedModelAdmin):
    """Per-payment limits: one per card type (VISA, MASTER, ELECTRON) and one
    for contactless payments, per currency. A payment above the limit of its
    brand (or above the contactless limit) is refused with LimitExceeded."""

    list_display = ["kind", "currency", "max_amount", "updated_at"]
    list_editable = ["max_amount"]
    list_filter = ["kind", "currency"]
    fields = ["kind", "currency", "max_amount"]

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        # What a limit applies to is its identity: change the amount, or add another limit.
        return ["kind", "currency"] if obj else []

    def formfield_for_dbfield(self, db_field, request, **kwargs):  # type: ignore[no-untyped-def]
        if db_field.name == "currency":
            return forms.ChoiceField(
                choices=[(code, code) for code in CURRENCIES], initial="EUR",
                help_text="ISO 4217 currency of the payments the limit applies to.",
            )
        if db_field.name == "max_amount":
            # The database refuses zero and negative limits; say so in the form, not with an error page.
            kwargs["min_value"] = Decimal("0.01")
        return super().formfield_for_dbfield(db_field, request, **kwargs)




# --- Refunds ---------------------------------------------------------------------------


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    """Refunds as staff follow them: carried out by a Celery task, retried on
    the acquirer's technical failures (``attempts``), final when completed."""

    list_display = [
        "id", "transaction_link", "amount_display", "status_display", "attempts", "created_display",
        "completed_display", "failure_message",
    ]
    list_filter = ["status", "created_at"]
    search_fields = ["=id", "=transaction__id", "=reference"]
    search_help_text = "Refund id, transaction id, or the merchant's reference of the refund."
    list_select_related = ["transaction"]
    show_full_result_count = False
    fields = [
        "transaction_link", "amount_display", "status_display", "reference", "acquirer_reference",
        "failure_message", "attempts", "next_attempt_at", "created_at", "completed_at",
    ]
    readonly_fields = ["transaction_link", "amount_display", "status_display"]

    @admin.display(description="transaction", ordering="transaction_id")
    def transaction_link(self, obj: Refund) -> str:
        return _transaction_link(obj.transaction_id)

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj: Refund) -> str:
        return f"{format_amount(obj.amount, obj.transaction.currency)} {obj.transaction.currency}"

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: Refund) -> str:
        return format_html('<span class="refund-status refund-status-{}">{}</span>', obj.status,
                           obj.get_status_display())

    @admin.display(description="created", ordering="created_at")
    def created_display(self, obj: Refund) -> str:
        return _local(obj.created_at)

    @admin.display(description="completed", ordering="completed_at", empty_value="")
    def completed_display(self, obj: Refund) -> str:
        return _local(obj.completed_at)


# --- Webhook endpoints -------------------------------------------------------------------


class WebhookURLField(forms.URLField):
    """An http(s) URL as the outbox accepts it (``outbox.endpoint_url_validate``)."""

    def validate(self, value) -> None:  # type: ignore[no-untyped-def]
        super().validate(value)
        if value in self.empty_values:
            return
        try:
            outbox.endpoint_url_validate(value)
        except outbox.EndpointURLInvalid as exc:
            raise forms.ValidationError(f"Not a valid webhook URL: {exc}.", code="invalid_webhook_url") from exc


class WebhookEndpointForm(forms.ModelForm):
    url = WebhookURLField(
        label="URL", max_length=500, assume_scheme="https",
        help_text="Where the merchant receives events (POST, signed with X-Gateway-Signature).",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["merchant", "url", "description", "is_active"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ShownOnceAdminMixin, AuditedModelAdmin):
    form = WebhookEndpointForm
    list_display = ["url", "merchant", "is_active", "created_at"]
    list_filter = ["merchant", "is_active"]
    search_fields = ["url", "description", "merchant__name"]
    search_help_text = "URL, description or merchant name."
    list_select_related = ["merchant"]
    readonly_fields = ["created_at"]
    actions = ["rotate_secret"]
    shown_once_template = "admin/payments/webhookendpoint/secret.html"

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        # Its deliveries and their attempts are kept for staff: deactivate it instead.
        return False

    def has_rotate_secret_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return request.user.has_perm("payments.rotate_webhookendpoint_secret")

    def get_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        fields = ["merchant", "url", "description", "is_active"]
        return [*fields, "created_at"] if obj else fields

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        # An endpoint receives one merchant's events: it never moves to another one.
        return [*self.readonly_fields, "merchant"] if obj else self.readonly_fields

    def save_model(self, request, obj: WebhookEndpoint, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        if change:
            super().save_model(request, obj, form, change)
            return
        endpoint, secret = outbox.webhook_endpoint_create(
            merchant_pk=obj.merchant_id, url=obj.url, description=obj.description, is_active=obj.is_active
        )
        obj.pk = endpoint.pk
        obj.refresh_from_db()
        setattr(request, _WEBHOOK_SECRETS_ATTR, [_endpoint_shown(obj, secret)])

    def response_add(self, request, obj, post_url_continue=None):  # type: ignore[no-untyped-def]
        shown = getattr(request, _WEBHOOK_SECRETS_ATTR, None)
        if not shown:
            return super().response_add(request, obj, post_url_continue)
        return self.shown_once_redirect(request, title="Webhook endpoint added", items=shown)

    @admin.action(description="Rotate the signing secret (shown once)", permissions=["rotate_secret"])
    def rotate_secret(self, request, queryset):  # type: ignore[no-untyped-def]
        shown = []
        # One transaction: every secret rotated, recorded and kept for its one view, or none.
        with transaction.atomic():
            for endpoint in queryset.select_related("merchant"):
                secret = outbox.webhook_endpoint_rotate_secret(endpoint_pk=endpoint.pk)
                audit_record(request=request, action=AuditAction.ROTATE_SECRET, obj=endpoint,
                             changes=[{"field": "secret_sealed", "redacted": True}],
                             message="signing secret rotated (the new one shown once to this staff member)")
                shown.append(_endpoint_shown(endpoint, secret))
            if not shown:
                self.message_user(request, "No webhook endpoint selected.", messages.WARNING)
                return None
            return self.shown_once_redirect(request, title="New webhook signing secrets", items=shown)


def _endpoint_shown(endpoint: WebhookEndpoint, secret: str) -> dict[str, object]:
    return {"pk": endpoint.pk, "url": endpoint.url, "merchant": str(endpoint.merchant), "secret": secret}


# --- Events and their deliveries ---------------------------------------------------------


class WebhookDeliveryInline(admin.TabularInline):
    """An event's deliveries, each with every HTTP attempt (a table: Django has no nested inlines)."""

    model = WebhookDelivery
    fields = ["endpoint_url", "status_display", "attempts", "next_attempt_display", "last_status_code",
              "completed_display", "attempts_table"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "deliveries"

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def get_queryset(self, request) -> QuerySet:  # type: ignore[no-untyped-def]
        return super().get_queryset(request).select_related("endpoint").prefetch_related("attempts_log")

    @admin.display(description="endpoint")
    def endpoint_url(self, obj: WebhookDelivery) -> str:
        return format_html(
            '<a href="{}" class="delivery-endpoint">{}</a>',
            reverse("admin:payments_webhookendpoint_change", args=[obj.endpoint_id]), obj.endpoint.url,
        )

    @admin.display(description="status")
    def status_display(self, obj: WebhookDelivery) -> str:
        return format_html('<span class="delivery-status delivery-status-{}">{}</span>', obj.status,
                           obj.get_status_display())

    @admin.display(description="next attempt")
    def next_attempt_display(self, obj: WebhookDelivery) -> str:
        return _local(obj.next_attempt_at) if obj.status == DeliveryStatus.PENDING else ""

    @admin.display(description="completed")
    def completed_display(self, obj: WebhookDelivery) -> str:
        return _local(obj.completed_at)

    @admin.display(description="HTTP attempts")
    def attempts_table(self, obj: WebhookDelivery) -> str:
        attempts: list[DeliveryAttempt] = list(obj.attempts_log.all())  # newest first (Meta.ordering)
        if not attempts:
            return format_html('<span class="delivery-no-attempt">{}</span>', "not tried yet")
        rows = format_html_join(
            "",
            '<tr class="delivery-attempt delivery-attempt-{}"><td class="attempt-started">{}</td>'
            '<td class="attempt-result">{}</td><td class="attempt-duration">{} ms</td>'
            '<td class="attempt-excerpt"><code>{}</code></td></tr>',
            (
                (
                    "ok" if attempt.succeeded else "failed",
                    _local(attempt.started_at),
                    " ".join(part for part in (
                        f"HTTP {attempt.status_code}" if attempt.status_code is not None else "", attempt.error
                    ) if part),
                    attempt.duration_ms,
                    attempt.response_excerpt,  # the receiver's bytes: escaped by format_html_join
                )
                for attempt in attempts
            ),
        )
        return format_html(
            '<table class="delivery-attempts"><thead><tr><th>started</th><th>HTTP status / error</th>'
            "<th>duration</th><th>response (excerpt)</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    """Events announced to merchants and how their webhooks went; staff may
    resend one (to every active endpoint of its merchant)."""

    list_display = [
        "public_id", "type_display", "merchant", "transaction_link", "created_display", "deliveries_display",
    ]
    list_filter = ["type", "merchant", "created_at"]
    search_fields = ["=public_id", "=transaction__id"]
    search_help_text = "Event id (evt_…) or transaction id."
    date_hierarchy = "created_at"
    list_select_related = ["merchant"]
    show_full_result_count = False
    fields = ["public_id", "type_display", "merchant", "transaction_link", "refund_link", "created_at", "data_display"]
    readonly_fields = ["type_display", "transaction_link", "refund_link", "data_display"]
    inlines = [WebhookDeliveryInline]
    actions = ["resend"]
    # change_form.html adds the Resend button (a POST form to resend_view).
    change_form_template = "admin/payments/event/change_form.html"

    def get_queryset(self, request) -> QuerySet:  # type: ignore[no-untyped-def]
        return _with_delivery_counts(super().get_queryset(request))

    def has_resend_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return request.user.has_perm("payments.resend_event")

    def get_urls(self):  # type: ignore[no-untyped-def]
        name = f"{self.opts.app_label}_{self.opts.model_name}_resend"
        # Before the defaults: their "<path:object_id>/" would take ".../resend/" too.
        return [path("<path:object_id>/resend/", self.admin_site.admin_view(self.resend_view), name=name),
                *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):  # type: ignore[no-untyped-def]
        extra_context = {**(extra_context or {}), "has_resend_permission": self.has_resend_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def resend_view(self, request: HttpRequest, object_id: str):  # type: ignore[no-untyped-def]
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        event = self.get_object(request, unquote(object_id))
        if event is None:
            raise Http404("No such event.")
        if not self.has_resend_permission(request, event):
            raise PermissionDenied
        self._resend(request, [event])
        return HttpResponseRedirect(reverse("admin:payments_event_change", args=[event.pk]))

    def _resend(self, request: HttpRequest, events) -> None:  # type: ignore[no-untyped-def]
        for event in events:
            # The resend and its audit entry commit together (the deliveries are
            # queued after the commit).
            with transaction.atomic():
                count = outbox.event_resend(event_id=event.pk)
                audit_record(request=request, action=AuditAction.RESEND, obj=event,
                             message=f"queued for {count} endpoint(s)")
            if count:
                self.message_user(request, f"Event {event.public_id} queued for {count} endpoint(s).",
                                  messages.SUCCESS)
            else:
                self.message_user(request, f"Event {event.public_id} queued for 0 endpoint(s): its merchant "
                                  "has no active webhook endpoint.", messages.WARNING)

    @admin.action(description="Resend selected events", permissions=["resend"])
    def resend(self, request, queryset) -> None:  # type: ignore[no-untyped-def]
        self._resend(request, queryset)

    @admin.display(description="type", ordering="type")
    def type_display(self, obj: Event) -> str:
        return _event_type(obj)

    @admin.display(description="transaction", ordering="transaction_id")
    def transaction_link(self, obj: Event) -> str:
        return _transaction_link(obj.transaction_id)

    @admin.display(description="refund")
    def refund_link(self, obj: Event) -> str:
        if obj.refund_id is None:
            return ""
        return format_html('<a href="{}">refund {}</a>', reverse("admin:payments_refund_change", args=[obj.refund_id]),
                           obj.refund_id)

    @admin.display(description="created", ordering="created_at")
    def created_display(self, obj: Event) -> str:
        return _local(obj.created_at)

    @admin.display(description="deliveries")
    def deliveries_display(self, obj: Event) -> str:
        return _delivery_summary(
            getattr(obj, "delivery_total", 0), getattr(obj, "delivery_succeeded", 0), getattr(obj, "delivery_failed", 0)
        )

    @admin.display(description="data")
    def data_display(self, obj: Event) -> str:
        return format_html('<pre class="event-data">{}</pre>',
                           json.dumps(obj.data, indent=2, sort_keys=True, ensure_ascii=False))
