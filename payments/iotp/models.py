"""IOTP session data, kept beside the ledger (RFC 3867's "payment log").

Design overview
---------------
An **IotpPayment** is the Payment Handler's record of one IOTP payment: the
``PaymentHandlerPayId`` (``pay_id``, unique per merchant), the parameters the
IOTP application core started it with (brand, protocol, currency, amount,
OkFrom/OkTo, ConsumerPayId), a keyed fingerprint of the start request (a
repeat with the same data is answered as before, with other data refused),
and the signed receipt once the payment is final. Its money, card facts and
state are the ledger's: ``transaction`` (payments.Transaction, door IOTP);
the process state is always ``PROCESS_STATE[transaction.status]``.

RemovePaymentLog forgets a final payment's session: every field but the
merchant, the PayId and the link to the ledger row is cleared and
``removed_at`` set. The row stays as a tombstone so that the PayId can never
name a second payment (the unique constraint), while every call naming it
answers "unknown PayId". The ledger row is untouched.

An **IotpAuthChallenge** is one challenge of InquireAuthChallenge: 32 random
bytes, bound to the merchant and the AuthenticationId, valid for
``IOTP_AUTH_CHALLENGE_SECONDS`` and for one CheckAuthResponse only
(``used_at``, claimed by a conditional UPDATE).

An **IotpMerchantBrands** row lists the card brands a merchant accepts over
IOTP; a merchant without one accepts every brand the gateway knows.

Invariants, and where each is enforced
--------------------------------------
- One session per (merchant, PayId), removed or not: unique constraint
  ``iotp_payment_unique_pay_id``.
- One session per ledger row: one-to-one field.
- A challenge is checked once: ``used_at`` set by ``UPDATE ... WHERE used_at IS NULL``.
- No card number, CVV or expiry in any column: the request fingerprint is a
  keyed HMAC (payments.keys) and the receipt shows the masked card only.

Every write goes through ``payments.services``.
"""
from __future__ import annotations

from django.db import models

from merchants.models import Merchant
from payments.models import AMOUNT, Transaction


class IotpPayment(models.Model):
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="iotp_payments", db_index=False)
    pay_id = models.CharField("PaymentHandlerPayId", max_length=50)
    transaction = models.OneToOneField(Transaction, on_delete=models.PROTECT, related_name="iotp_payment")
    request_fingerprint = models.CharField(max_length=64, blank=True, editable=False)
    card_given = models.BooleanField(default=False, help_text="The start request carried card data.")
    brand_id = models.CharField("BrandId", max_length=32, blank=True)
    protocol_id = models.CharField("ProtocolId", max_length=64, blank=True)
    consumer_pay_id = models.CharField("ConsumerPayId", max_length=64, blank=True)
    pay_direction = models.CharField("PayDirection", max_length=8, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    amount = models.DecimalField(**AMOUNT, null=True, blank=True)
    ok_from = models.DateTimeField("OkFrom", null=True, blank=True)
    ok_to = models.DateTimeField("OkTo", null=True, blank=True)
    completion_code = models.CharField(
        "CompletionCode", max_length=14, blank=True, help_text="Given by ChangeProcessState when it ended the payment."
    )
    receipt = models.TextField(blank=True, help_text="The signed receipt (base64), once the payment is final.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    removed_at = models.DateTimeField(null=True, blank=True, help_text="When RemovePaymentLog forgot it.")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "IOTP payment"
        constraints = [models.UniqueConstraint(fields=["merchant", "pay_id"], name="iotp_payment_unique_pay_id")]

    def __str__(self) -> str:
        return f"{self.pay_id} ({self.merchant_id})"


class IotpAuthChallenge(models.Model):
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="iotp_challenges")
    authentication_id = models.CharField(max_length=64)
    challenge = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "IOTP authentication challenge"

    def __str__(self) -> str:
        return f"challenge {self.challenge[:8]}… for {self.authentication_id}"


class IotpMerchantBrands(models.Model):
    merchant = models.OneToOneField(Merchant, on_delete=models.CASCADE, related_name="iotp_brands")
    brands = models.JSONField(default=list, help_text="IOTP BrandIds accepted: Visa, MasterCard, VisaElectron.")

    class Meta:
        verbose_name = "IOTP accepted brands"
        verbose_name_plural = "IOTP accepted brands"

    def __str__(self) -> str:
        return f"{self.merchant}: {', '.join(self.brands) or 'none'}"
