"""factory_boy factories for the gateway's models (through the services where secrets are involved)."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from merchants.models import Merchant
from payments.keys import secret_digest
from payments.models import CardLimit, Token, Transaction
from payments.states import Door, PaymentMethod, TransactionStatus
from terminals.models import Terminal


class MerchantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Merchant

    name = factory.Sequence(lambda n: f"Merchant {n}")
    currency = "EUR"
    allowed_ips = factory.LazyFunction(lambda: ["127.0.0.1"])


class TerminalFactory(factory.django.DjangoModelFactory):
    """A terminal whose clear secret (default "s3cret-<id>", or ``secret=...``) is on
    the instance as ``.secret``; the database keeps only its digest."""

    class Meta:
        model = Terminal

    merchant = factory.SubFactory(MerchantFactory)
    terminal_id = factory.Sequence(lambda n: f"T{n:011d}")
    label = factory.Sequence(lambda n: f"Till {n}")
    secret = factory.LazyAttribute(lambda o: f"s3cret-{o.terminal_id}")
    secret_digest = factory.LazyAttribute(lambda o: secret_digest(o.secret))

    @classmethod
    def _create(cls, model_class, *args, **kwargs):  # type: ignore[no-untyped-def]
        secret = kwargs.pop("secret")
        obj = super()._create(model_class, *args, **kwargs)
        obj.secret = secret
        return obj

    @classmethod
    def _build(cls, model_class, *args, **kwargs):  # type: ignore[no-untyped-def]
        secret = kwargs.pop("secret")
        obj = super()._build(model_class, *args, **kwargs)
        obj.secret = secret
        return obj


class TokenFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Token

    value = factory.Sequence(lambda n: f"{n:064x}")
    terminal = factory.SubFactory(TerminalFactory)
    payment_type = PaymentMethod.CARD
    try_count = 3
    created_at = factory.LazyFunction(timezone.now)
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(seconds=180))


class CapturedTransactionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Transaction

    merchant = factory.SubFactory(MerchantFactory)
    door = Door.ESIPAY
    method = PaymentMethod.CARD
    status = TransactionStatus.CAPTURED
    amount = Decimal("100.00")
    authorized_amount = factory.SelfAttribute("amount")
    captured_amount = factory.SelfAttribute("amount")
    currency = "EUR"
    card_bin = "424242"
    card_last4 = "4242"
    acquirer_reference = "sbx_test"


class CardLimitFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CardLimit
        django_get_or_create = ["kind", "currency"]

    kind = "VISA"
    currency = "EUR"
    max_amount = Decimal("2500.00")


class AuthorizedTransactionFactory(CapturedTransactionFactory):
    status = TransactionStatus.AUTHORIZED
    captured_amount = Decimal("0")
