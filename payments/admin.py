"""The payment core in the back office: transactions, tokens, bans, limits.

Transactions and tokens are read-only here (they change only through
payments.services); bans are added through ``ban_add`` so a card entered by
number is stored as fingerprint + BIN + last four, never in clear.
"""
from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone
from django.utils.html import format_html

from . import services
from .models import Ban, CardLimit, Refund, Token, Transaction
from .money import CURRENCIES
from .states import PROCESS_STATE, TOKEN_HOLDING_STATUSES, BanKind, ProcessState, statuses_in


class ReadOnlyAdmin(admin.ModelAdmin):
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
    fields = ["created_at", "amount", "status", "reference", "failure_message", "completed_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


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
    inlines = [RefundInline]
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
        return f"{obj.amount} {obj.currency}"


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
class BanAdmin(admin.ModelAdmin):
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
class CardLimitAdmin(admin.ModelAdmin):
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


