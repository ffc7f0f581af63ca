"""The payment core's data: tokens, transactions, refunds, bans, card limits.

Design overview
---------------
A **Token** is issued to one terminal for one payment type; it allows
``try_count`` attempts (-1: unlimited) until ``expires_at``. Every attempt
that passes the token checks uses a try (``tries_used``), approved or not.

A **Transaction** is one payment attempt through any door (``door``). It
carries the merchant (and terminal), the amount and currency, what may be
kept of the card (keyed fingerprint, BIN, last four, brand) or the check
number, and its ``status`` (see ``payments.states``: the fine-grained
status and its RFC 3867 process state). Money moves as
``authorized_amount >= captured_amount >= refunded_amount >= 0``.

While the acquirer is asked, a transaction is ``processing`` and
``operation`` says what is in flight (authorize, capture, void); both are
recorded before the call and cleared with its answer. **Unknown outcomes**:
when the answer is lost (no answer by ``ACQUIRER_TIMEOUT_SECONDS``, a
connector that cannot tell, the process killed, the database lost while
recording), the row simply stays ``processing``, holding its token and its
merchant reference; the caller is told the outcome is unknown, never
"declined". The resolver (``payments.services.reconciliation``, Celery
beat) takes every row ``processing`` for longer than
``PAYMENTS_RESOLVE_AFTER_SECONDS`` under a lease (``resolver_lease_until``),
asks the acquirer by transaction id, and records what it says:

- an authorization the acquirer never received: ``declined``,
  ``failure_code`` ``acquirer_no_record`` (after a reversal, so that a late
  arrival is refused), ``payment.failed``;
- declined / failed at the acquirer: ``declined`` / ``error`` with the
  acquirer's code, ``payment.failed``, as a direct answer would have been;
- **approved** (or already reversed): nobody was told, so it is reversed:
  ``voided``, ``authorized_amount`` = amount, ``captured_amount`` 0,
  ``failure_code`` ``reversed_unknown_outcome``, the acquirer's reference
  and authorization code kept, ``payment.cancelled``;
- a capture or void in flight: what the acquirer says (``captured`` with
  ``payment.succeeded``, ``voided`` with ``payment.cancelled``, or back to
  ``authorized`` with no event).

Until then the row's answer cannot be recorded by the request that sent it
either: the acquirer's answer is written only where ``status`` is still
``processing`` and no resolver holds the row.

A **Refund** returns part of a captured transaction. Accepting a refund
adds it to ``Transaction.refunded_amount`` at once (so concurrent refunds
can never together exceed the captured amount); a refund that finally
fails gives its amount back.

An **Event** announces a state change to the merchant (payment.succeeded,
payment.failed, payment.cancelled, refund.succeeded, refund.failed). It is
written in the same database transaction as the change (the outbox), with
one **WebhookDelivery** per active **WebhookEndpoint** of the merchant;
Celery delivers them, each try kept as a **DeliveryAttempt**.

A **Ban** names a card (by fingerprint), a BIN, a check or a PIN (by
fingerprint). A **CardLimit** caps one payment per brand or contactless.

Invariants, and where each is enforced
--------------------------------------
- One payment per token: partial unique index ``one_payment_per_token``
  on transactions holding a token; services lock the token row first.
- Unique token values: unique constraint ``token_value_unique``.
- ``tries_used <= try_count`` unless unlimited: check constraint.
- ``0 <= refunded <= captured <= authorized``, amounts > 0: check
  constraints; services lock the transaction row before changing them.
- One live payment per merchant reference (esipay ``cid``): partial unique
  index ``one_live_payment_per_reference``; declined and cancelled attempts
  free the reference.
- A ``processing`` transaction says which operation is in flight, and
  only it does: check constraint ``txn_operation_while_processing``.
- An unknown outcome is settled by one resolver at a time, and never also
  by the request that lost it: the lease ``resolver_lease_until``, taken
  by a conditional UPDATE; the request's own recording requires it empty.
- A refund or delivery is worked on by one worker at a time: a lease
  (``lease_until``) taken by a conditional UPDATE (``payments.outbox``).
- One delivery per (event, endpoint): unique constraint.
- One ban per (kind, key): unique constraint.
- One limit per (kind, currency): unique constraint.
- No card number, PIN or CVV in any column: only fingerprints, BIN, last
  four (``payments.cards.card_facts``).

Every write goes through ``payments.services``.
"""
from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from merchants.models import Merchant
from terminals.models import Terminal

from .states import (
    LIVE_STATUSES,
    AcquirerOperation,
    PROCESS_STATE,
    TOKEN_HOLDING_STATUSES,
    BanKind,
    CardBrand,
    DeliveryStatus,
    Door,
    EventType,
    LimitKind,
    PaymentMethod,
    ProcessState,
    RefundStatus,
    TransactionStatus,
)

AMOUNT = {"max_digits": 12, "decimal_places": 2}


class Token(models.Model):
    value = models.CharField(max_length=64, editable=False)  # unique: token_value_unique
    # Indexed by token_terminal_created (terminal first): no index of its own.
    terminal = models.ForeignKey(Terminal, on_delete=models.PROTECT, related_name="tokens", db_index=False)
    payment_type = models.CharField(max_length=16, choices=PaymentMethod.choices)
    try_count = models.IntegerField(help_text="Attempts allowed; -1 is unlimited.")
    tries_used = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["terminal", "-created_at"], name="token_terminal_created")]
        constraints = [
            # A constraint rather than unique=True: no extra LIKE-pattern index to write per token.
            models.UniqueConstraint(fields=["value"], name="token_value_unique"),
            models.CheckConstraint(condition=Q(try_count__gte=-1), name="token_try_count_domain"),
            models.CheckConstraint(
                condition=Q(try_count=-1) | Q(tries_used__lte=F("try_count")),
                name="token_tries_within_count",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.value[:12]}… ({self.get_payment_type_display()})"

    @property
    def unlimited(self) -> bool:
        return self.try_count == -1


class Transaction(models.Model):
    # Every index is written twice per payment (insert, then the acquirer's
    # answer changes the status), so there is none that a query does not need:
    # merchant and terminal are served by the composite indexes below, token by
    # the partial unique index one_payment_per_token (the held-token check asks
    # exactly its predicate).
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="transactions", db_index=False)
    terminal = models.ForeignKey(
        Terminal, on_delete=models.PROTECT, related_name="transactions", null=True, blank=True, db_index=False
    )
    token = models.ForeignKey(
        Token, on_delete=models.PROTECT, related_name="transactions", null=True, blank=True, db_index=False
    )
    door = models.CharField(max_length=16, choices=Door.choices)
    method = models.CharField(max_length=16, choices=PaymentMethod.choices)
    status = models.CharField(max_length=24, choices=TransactionStatus.choices)

    amount = models.DecimalField(**AMOUNT)
    currency = models.CharField(max_length=3)
    authorized_amount = models.DecimalField(**AMOUNT, default=Decimal("0"))
    captured_amount = models.DecimalField(**AMOUNT, default=Decimal("0"))
    refunded_amount = models.DecimalField(**AMOUNT, default=Decimal("0"))

    card_fingerprint = models.CharField(max_length=64, blank=True)
    card_bin = models.CharField("BIN", max_length=8, blank=True)
    card_last4 = models.CharField("last four", max_length=4, blank=True)  # indexed: txn_card_last4
    card_brand = models.CharField(max_length=16, choices=CardBrand.choices, blank=True)
    check_number = models.CharField(max_length=11, blank=True)

    merchant_reference = models.CharField(
        max_length=64, blank=True, help_text="The merchant's id of the payment (esipay cid, order id...)."
    )
    acquirer_reference = models.CharField(max_length=64, blank=True)
    authorization_code = models.CharField(max_length=12, blank=True)
    failure_code = models.CharField(max_length=32, blank=True)
    failure_message = models.CharField(max_length=255, blank=True)
    # What is in flight with the acquirer while processing (blank otherwise),
    # and the lease of the resolver settling a lost answer (payments.services.reconciliation).
    operation = models.CharField(max_length=16, choices=AcquirerOperation.choices, blank=True)
    resolver_lease_until = models.DateTimeField(null=True, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # While processing: when the operation in flight was sent (the resolver's clock).
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("refund_transaction", "Can refund a transaction"),
            ("void_transaction", "Can void an authorization"),
        ]
        indexes = [
            models.Index(fields=["merchant", "-created_at"], name="txn_merchant_created"),
            models.Index(fields=["terminal", "-created_at"], name="txn_terminal_created"),
            models.Index(fields=["card_last4"], name="txn_card_last4"),  # staff search by last four
            # The resolver's question, every period: a few rows, whatever the table's size.
            models.Index(
                fields=["updated_at"], name="txn_processing_since", condition=Q(status=TransactionStatus.PROCESSING)
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["token"],
                condition=Q(status__in=TOKEN_HOLDING_STATUSES),
                name="one_payment_per_token",
            ),
            models.UniqueConstraint(
                fields=["merchant", "merchant_reference"],
                condition=Q(status__in=LIVE_STATUSES) & ~Q(merchant_reference=""),
                name="one_live_payment_per_reference",
            ),
            models.CheckConstraint(
                condition=(Q(status=TransactionStatus.PROCESSING) & ~Q(operation=""))
                | (~Q(status=TransactionStatus.PROCESSING) & Q(operation="")),
                name="txn_operation_while_processing",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="txn_amount_positive"),
            models.CheckConstraint(condition=Q(refunded_amount__gte=0), name="txn_refunded_not_negative"),
            models.CheckConstraint(
                condition=Q(captured_amount__lte=F("authorized_amount")), name="txn_captured_within_authorized"
            ),
            models.CheckConstraint(
                condition=Q(refunded_amount__lte=F("captured_amount")), name="txn_refunded_within_captured"
            ),
            models.CheckConstraint(
                condition=Q(authorized_amount__lte=F("amount")), name="txn_authorized_within_amount"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.amount} {self.currency} {self.status}"

    @property
    def process_state(self) -> ProcessState:
        return PROCESS_STATE[self.status]

    @property
    def refundable_amount(self) -> Decimal:
        return self.captured_amount - self.refunded_amount

    @property
    def masked_card(self) -> str:
        if not self.card_last4:
            return ""
        return f"{self.card_bin}{'*' * 6}{self.card_last4}"


class Refund(models.Model):
    transaction = models.ForeignKey(Transaction, on_delete=models.PROTECT, related_name="refunds")
    amount = models.DecimalField(**AMOUNT)
    status = models.CharField(max_length=16, choices=RefundStatus.choices, default=RefundStatus.PENDING)
    reference = models.CharField(max_length=64, blank=True, help_text="The merchant's id of the refund.")
    acquirer_reference = models.CharField(max_length=64, blank=True)
    failure_message = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Carried out by a Celery task (payments.tasks.execute_refund): tries so far,
    # when the next is due (an acquirer's technical failure is retried), and the
    # lease of the worker on it.
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    swept_at = models.DateTimeField(null=True, blank=True, help_text="Last queued again by the outbox sweep.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="refund_due")]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            models.UniqueConstraint(
                fields=["transaction", "reference"], condition=~Q(reference=""), name="refund_reference_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"refund {self.amount} of #{self.transaction_id} ({self.status})"


class Ban(models.Model):
    kind = models.CharField(max_length=8, choices=BanKind.choices)
    # Lookup key: keyed fingerprint for cards and PINs, the value itself for BINs and checks.
    key = models.CharField(max_length=64, editable=False)
    card_bin = models.CharField("BIN", max_length=8, blank=True, editable=False)
    card_last4 = models.CharField("last four", max_length=4, blank=True, editable=False)
    reason = models.CharField(max_length=255, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "key"]
        constraints = [models.UniqueConstraint(fields=["kind", "key"], name="ban_unique_kind_key")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.display_value}"

    @property
    def display_value(self) -> str:
        if self.kind == BanKind.CARD:
            return f"{self.card_bin}******{self.card_last4}"
        if self.kind == BanKind.PIN:
            return "****"
        return self.key


class CardLimit(models.Model):
    kind = models.CharField(max_length=16, choices=LimitKind.choices)
    currency = models.CharField(max_length=3, default="EUR")
    max_amount = models.DecimalField(**AMOUNT)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "currency"], name="card_limit_unique_kind_currency"),
            models.CheckConstraint(condition=Q(max_amount__gt=0), name="card_limit_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.max_amount} {self.currency}"


class WebhookEndpoint(models.Model):
    """Where a merchant receives events. The signing secret is shown once and
    kept sealed (AES-GCM under PAYMENTS_MASTER_KEY): it must be read back to sign."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField("URL", max_length=500)
    description = models.CharField(max_length=120, blank=True)
    secret_sealed = models.TextField(editable=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["merchant", "url"]
        verbose_name = "webhook endpoint"
        permissions = [("rotate_webhookendpoint_secret", "Can rotate a webhook endpoint's signing secret")]

    def __str__(self) -> str:
        return f"{self.url} ({self.merchant})"


class Event(models.Model):
    """One state change announced to a merchant (the outbox row)."""

    public_id = models.CharField("event id", max_length=40, unique=True, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="events")
    type = models.CharField(max_length=32, choices=EventType.choices)
    transaction = models.ForeignKey(
        Transaction, on_delete=models.PROTECT, related_name="events", null=True, blank=True
    )
    refund = models.ForeignKey(Refund, on_delete=models.PROTECT, related_name="events", null=True, blank=True)
    data = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("resend_event", "Can resend a webhook event")]

    def __str__(self) -> str:
        return f"{self.type} {self.public_id}"


class WebhookDelivery(models.Model):
    """One event to one endpoint, until it is delivered or given up on."""

    # PROTECT: deliveries and their attempts are kept for staff; an endpoint
    # that is no longer wanted is deactivated, not deleted.
    event = models.ForeignKey(Event, on_delete=models.PROTECT, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, related_name="deliveries")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    # The 3 days of retries count from here: the event's time, or a resend.
    started_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    swept_at = models.DateTimeField(null=True, blank=True, help_text="Last queued again by the outbox sweep.")
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")]
        constraints = [models.UniqueConstraint(fields=["event", "endpoint"], name="delivery_unique_event_endpoint")]

    def __str__(self) -> str:
        return f"{self.event.type} to {self.endpoint.url} ({self.status})"


class DeliveryAttempt(models.Model):
    """One HTTP call of a delivery, kept for staff."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.PROTECT, related_name="attempts_log")
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    succeeded = models.BooleanField()
    error = models.CharField(max_length=255, blank=True)
    response_excerpt = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"attempt {self.started_at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error}"
