"""IOTP sessions in the back office: the payment log (read-only: it changes
only through payments.services) and, per merchant, the brands accepted."""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from backoffice.admin_mixins import AuditedModelAdmin
from payments.states import PROCESS_STATE

from .models import IotpMerchantBrands, IotpPayment

BRAND_CHOICES = [("Visa", "Visa"), ("MasterCard", "MasterCard"), ("VisaElectron", "Visa Electron")]


@admin.register(IotpPayment)
class IotpPaymentAdmin(AuditedModelAdmin):
    list_display = ["pay_id", "merchant", "transaction_link", "process_state_display", "brand_id", "amount",
                    "created_at", "removed_at"]
    list_filter = ["merchant", "brand_id", "created_at"]
    search_fields = ["=pay_id", "=consumer_pay_id", "merchant__name"]
    list_select_related = ["merchant", "transaction"]
    exclude = ["request_fingerprint", "receipt"]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    @admin.display(description="transaction")
    def transaction_link(self, obj: IotpPayment) -> str:
        url = reverse("admin:payments_transaction_change", args=[obj.transaction_id])
        return format_html('<a href="{}">#{}</a>', url, obj.transaction_id)

    @admin.display(description="process state")
    def process_state_display(self, obj: IotpPayment) -> str:
        state = PROCESS_STATE[obj.transaction.status].value
        return format_html('<span class="process-state process-state-{}">{}</span>', state, state)


class BrandsForm(forms.ModelForm):
    brands = forms.MultipleChoiceField(choices=BRAND_CHOICES, widget=forms.CheckboxSelectMultiple, required=False)

    class Meta:
        model = IotpMerchantBrands
        fields = ["merchant", "brands"]


@admin.register(IotpMerchantBrands)
class IotpMerchantBrandsAdmin(AuditedModelAdmin):
    form = BrandsForm
    list_display = ["merchant", "brands_display"]

    @admin.display(description="brands accepted over IOTP")
    def brands_display(self, obj: IotpMerchantBrands) -> str:
        return ", ".join(obj.brands) or "none"
