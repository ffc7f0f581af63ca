"""The decrypted bodies of the secure API: what requests carry in ``data=`` once
decrypted, and what answers carry inside their envelope.

Field names are the spec's (camelCase). Request serializers validate;
answer serializers only describe (the views build answers as dicts) so
that the OpenAPI schema shows exactly what a merchant decrypts.
"""
from __future__ import annotations

import re

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from payments.errors import InvalidAmount
from payments.money import CURRENCIES, parse_amount

# A currency with the most decimals of those accepted (the shape of any amount).
_MOST_DECIMALS = max(CURRENCIES, key=lambda code: CURRENCIES[code][1])

ORDER_ID = re.compile(r"\A[A-Za-z0-9._:-]{1,64}\Z")
_DIGITS = re.compile(r"[0-9]{1,4}\Z")


@extend_schema_field({"oneOf": [{"type": "number"}, {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"}],
                      "example": 10.5})
class AmountField(serializers.Field):
    """A positive amount as a JSON number (read as Decimal, never float) or a decimal string.

    Its shape is checked here (at most the decimals any accepted currency has);
    the core checks it against the merchant's own currency (``12.50`` is no
    amount of yen) when the payment or refund is made.
    """

    def to_internal_value(self, data):  # type: ignore[no-untyped-def]
        try:
            return parse_amount(data, currency=_MOST_DECIMALS)
        except InvalidAmount:
            raise serializers.ValidationError(
                "a positive amount with at most the currency's decimals (a JSON number or a decimal string)"
            ) from None

    def to_representation(self, value):  # type: ignore[no-untyped-def]
        return value


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string", "pattern": "^[0-9]{1,4}$"}], "example": 12})
class DigitsField(serializers.Field):
    """A month or year as a JSON integer or a string of digits."""

    def to_internal_value(self, data):  # type: ignore[no-untyped-def]
        if isinstance(data, bool) or not isinstance(data, (int, str)):
            raise serializers.ValidationError("expected an integer or a string of digits")
        text = str(data)
        if not _DIGITS.match(text):
            raise serializers.ValidationError("expected 1 to 4 digits")
        return text

    def to_representation(self, value):  # type: ignore[no-untyped-def]
        return value


# --- Requests ---------------------------------------------------------------------------


class AccountCreateRequest(serializers.Serializer):
    externalID = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    name = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True, default="")


class CardRequest(serializers.Serializer):
    number = serializers.CharField(max_length=19, trim_whitespace=False,
                                   help_text="12 to 19 digits with a valid Luhn check digit.")
    expMonth = DigitsField()
    expYear = DigitsField()
    holderName = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")
    cvv = serializers.CharField(max_length=4, required=False, allow_blank=True, default="", trim_whitespace=False,
                                help_text="When given, the card is verified with it; it is never stored.")


class PaymentInfoCreateRequest(serializers.Serializer):
    paymentType = serializers.ChoiceField(choices=["CreditCard"])
    card = CardRequest()


class CardUpdateRequest(serializers.Serializer):
    expMonth = DigitsField(required=False)
    expYear = DigitsField(required=False)
    holderName = serializers.CharField(max_length=120, required=False, allow_blank=True)


class PaymentInfoUpdateRequest(serializers.Serializer):
    card = CardUpdateRequest()


class CvvRequest(serializers.Serializer):
    cvv = serializers.CharField(max_length=4, trim_whitespace=False, help_text="3 or 4 digits.")


class ReverifyRequest(serializers.Serializer):
    cvv = serializers.CharField(max_length=4, required=False, allow_blank=True, default="", trim_whitespace=False)


class ChargeCardRequest(serializers.Serializer):
    cardCVVEncKey = serializers.CharField(max_length=32, required=False, allow_blank=True, default="",
                                          help_text="From POST .../paymentinfo/{id}/cvv: the CVV held for this charge.")


class ChargePaymentInfoRequest(serializers.Serializer):
    paymentType = serializers.ChoiceField(choices=["CreditCard"], required=False)
    card = ChargeCardRequest(required=False)


class ChargeRequest(serializers.Serializer):
    orderID = serializers.RegexField(ORDER_ID, help_text="Unique per merchant: a repeat replays the first answer.",
                                     error_messages={"invalid": "1 to 64 letters, digits or . _ : -"})
    applicationId = serializers.CharField(max_length=64, required=False, allow_blank=True)
    amount = AmountField()
    currencyCode = serializers.RegexField(r"\A[A-Z]{3}\Z", error_messages={"invalid": "an ISO 4217 code, like EUR"})
    ipAddr = serializers.IPAddressField(required=False, allow_blank=True)
    paymentInfoID = serializers.UUIDField()
    paymentInfo = ChargePaymentInfoRequest(required=False)


class TransactionsQuery(serializers.Serializer):
    """Carried encrypted in ``data=`` as a query string: ``pageNo=1&pageSize=10&fromDate=...``."""

    pageNo = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False, default=1)
    pageSize = serializers.IntegerField(min_value=1, max_value=100, required=False, default=10)
    fromDate = serializers.DateField(input_formats=["%Y%m%d"], required=False)
    toDate = serializers.DateField(input_formats=["%Y%m%d"], required=False)


class RefundRequest(serializers.Serializer):
    amount = AmountField(required=False, help_text="Default: all that remains.")


# --- Answers (inside {"data": ...}) ---------------------------------------------------------


class AccountAnswer(serializers.Serializer):
    uuid = serializers.UUIDField()
    externalID = serializers.CharField()
    name = serializers.CharField()
    email = serializers.CharField()
    createdDate = serializers.CharField(help_text="dd/MM/yyyy HH:mm:ss (UTC)")


class CardAnswer(serializers.Serializer):
    cardBrand = serializers.CharField()
    cardLastNum = serializers.CharField()
    expMonth = serializers.IntegerField()
    expYear = serializers.IntegerField()
    holderName = serializers.CharField()


class PaymentInfoAnswer(serializers.Serializer):
    paymentInfoID = serializers.UUIDField()
    paymentType = serializers.CharField()
    card = CardAnswer()
    verified = serializers.BooleanField()
    createdDate = serializers.CharField()


class PaymentInfoListAnswer(serializers.Serializer):
    paymentInfos = PaymentInfoAnswer(many=True)


class CvvAnswer(serializers.Serializer):
    cardCVVEncKey = serializers.CharField(help_text="32 hex; single use, valid 15 minutes.")
    expiresIn = serializers.IntegerField(help_text="seconds")


class ChargedCardAnswer(serializers.Serializer):
    cardBrand = serializers.CharField()
    cardLastNum = serializers.CharField()


class ChargedPaymentInfoAnswer(serializers.Serializer):
    paymentType = serializers.CharField()
    card = ChargedCardAnswer()


@extend_schema_field(OpenApiTypes.NUMBER)
class _Number(serializers.Field):
    pass


class ChargeAnswer(serializers.Serializer):
    uuid = serializers.UUIDField()
    orderID = serializers.CharField()
    transactionID = serializers.CharField()
    amount = _Number()
    currencyCode = serializers.CharField()
    paymentDate = serializers.CharField(help_text="dd/MM/yyyy HH:mm:ss (UTC)")
    paymentInfoID = serializers.UUIDField()
    paymentInfo = ChargedPaymentInfoAnswer()


class RefundAnswer(serializers.Serializer):
    refundID = serializers.CharField()
    transactionID = serializers.CharField()
    amount = _Number()
    currencyCode = serializers.CharField()
    status = serializers.ChoiceField(choices=["pending", "succeeded", "failed"],
                                     help_text="pending: accepted, the acquirer is being asked.")
    requestDate = serializers.CharField()


class FailureAnswer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class TransactionAnswer(serializers.Serializer):
    transactionID = serializers.CharField()
    orderID = serializers.CharField()
    uuid = serializers.UUIDField()
    paymentInfoID = serializers.UUIDField()
    amount = _Number()
    currencyCode = serializers.CharField()
    status = serializers.CharField(help_text="captured, partially_refunded, refunded, voided, declined, error, processing")
    paymentDate = serializers.CharField()
    refundedAmount = _Number()
    paymentInfo = ChargedPaymentInfoAnswer()
    failure = FailureAnswer(required=False, help_text="Why a declined payment was declined.")


class TransactionDetailAnswer(TransactionAnswer):
    refunds = RefundAnswer(many=True)


class TransactionPageAnswer(serializers.Serializer):
    pageNo = serializers.IntegerField()
    pageSize = serializers.IntegerField()
    totalCount = serializers.IntegerField()
    transactions = TransactionAnswer(many=True)


class ErrorObject(serializers.Serializer):
    code = serializers.IntegerField()
    message = serializers.CharField()
    detail = serializers.CharField(allow_null=True, help_text="What was wrong; starts with the field's name.")


class ErrorAnswer(serializers.Serializer):
    error = ErrorObject()
