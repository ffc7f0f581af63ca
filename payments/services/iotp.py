"""IOTP payments (RFC 3867, Payment Handler role): the rules behind the door.

The door (``payments.doors.iotp``) parses XML and maps the exceptions below
to RFC 3867 error codes; everything a payment must obey is here:

- **PayIds.** ``PaymentHandlerPayId`` names one payment per merchant, for
  ever (``IotpPayment`` keeps a tombstone after RemovePaymentLog). A repeated
  start with the same data (a keyed fingerprint) is answered as the first
  was and charges nothing; with other data it is ``PayIdReused``.
- **Life cycle.** A start opens the ledger row and the session in one commit
  (``lifecycle.payment_open``), then, when card data came with it, continues
  at once (``lifecycle.payment_continue``); without it the payment waits,
  InProgress, for ContinueProcess. Suspend, resume and cancel are the
  lifecycle's moves; final states never change (ChangeProcessState reports
  them unchanged).
- **Receipts.** A final payment gets a receipt: base64 of JSON
  ``{"receipt": {...}, "kid": "v1", "sig": base64(HMAC-SHA256)}`` where the
  MAC is over the receipt object's canonical JSON (sorted keys, no spaces,
  ASCII) under ``keys.subkey("iotp-receipt-v1")`` (HKDF from
  PAYMENTS_MASTER_KEY). Only the gateway can make or check one
  (CheckPaymentReceipt); any changed byte of a field fails the check.
- **Challenge-response.** InquireAuthChallenge issues 32 fresh random bytes
  (hex), stored for ``IOTP_AUTH_CHALLENGE_SECONDS`` and bound to the merchant
  and AuthenticationId. The genuine party answers
  base64(HMAC-SHA256(key = the merchant's app_key, message =
  "IOTP-AUTH-1\\n" + AuthenticationId + "\\n" + challenge)): the secret only
  the merchant's own systems hold (the PLTOKEN signing key, any pair valid
  now). CheckAuthResponse uses the challenge up (one check each) and compares
  in constant time.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError
from django.db import transaction as db_transaction
from django.utils import timezone

from merchants.credentials import api_key_pairs_valid
from merchants.models import Merchant

from .. import cards, keys
from ..errors import AcquirerFailure, Declined, InvalidState, PaymentError
from ..iotp.models import IotpAuthChallenge, IotpMerchantBrands, IotpPayment
from ..models import CardLimit, Transaction
from ..money import format_amount
from ..states import FINAL_PROCESS_STATES, PROCESS_STATE, CardBrand, Door, ProcessState, TransactionStatus
from . import lifecycle

logger = logging.getLogger(__name__)

PROTOCOL_ID = "GatewayCard-1.0"
PROTOCOL_NAME = "Gateway card payment 1.0"
AUTH_ALGORITHM = "HMAC-SHA256"
# IOTP BrandId -> (the core's brand, the name shown to consumers)
BRANDS: dict[str, tuple[str, str]] = {
    "Visa": (CardBrand.VISA, "Visa"),
    "MasterCard": (CardBrand.MASTER, "MasterCard"),
    "VisaElectron": (CardBrand.ELECTRON, "Visa Electron"),
}
# A card's network decides which BrandIds it may pay under (Visa Electron is Visa).
_NETWORK = {CardBrand.VISA: "visa", CardBrand.ELECTRON: "visa", CardBrand.MASTER: "mastercard"}
_RECEIPT_KEY_ID = "v1"
_AUTH_DOMAIN = "IOTP-AUTH-1"
_PENDING_LIMIT = 1000
_PRUNE_ONE_IN = 100

# The core's failure codes as IOTP CompletionCodes (NMTOKEN, at most 14 characters).
_COMPLETION_CODES = {
    "card_declined": "CardDeclined",
    "insufficient_funds": "InsuffFunds",
    "expired_card": "CardExpired",
    "card_expired": "CardExpired",
    "invalid_card_expiry": "InvalidCard",
    "invalid_card_number": "InvalidCard",
    "card_banned": "CardBanned",
    "limit_exceeded": "LimitExceeded",
    "cancelled": "PaymCancelled",
}


# --- What the door gets back ----------------------------------------------------------


class IotpRefused(PaymentError):
    """An IOTP request the rules refuse; ``attribute`` names the culprit."""

    code = "iotp_refused"
    attribute = ""


class PayIdUnknown(IotpRefused):
    code = "iotp_pay_id_unknown"
    attribute = "PayId"
    default_message = "Unknown PayId: no payment of this merchant has it (or its log was removed)"


class PayIdReused(IotpRefused):
    code = "iotp_pay_id_reused"
    attribute = "PaymentHandlerPayId"
    default_message = "PaymentHandlerPayId already names a payment started with other data"


class BrandNotAccepted(IotpRefused):
    code = "iotp_brand_not_accepted"
    attribute = "BrandId"
    default_message = "BrandId is not a brand this merchant accepts"


class BrandMismatch(IotpRefused):
    code = "iotp_brand_mismatch"
    attribute = "BrandId"
    default_message = "The card is not of the brand named by BrandId"


class PaymentBeingProcessed(IotpRefused):
    code = "iotp_payment_being_processed"
    attribute = "PayId"
    default_message = "The payment is with the acquirer: ask again in a few seconds"


class ReceiptInvalid(IotpRefused):
    code = "iotp_receipt_invalid"
    attribute = "PayId"
    default_message = "The receipt is not one the gateway signed for this payment"


@dataclass(frozen=True)
class CardData:
    pan: str = field(repr=False)
    expiry: str = ""  # YYYYMM
    cvv: str = field(default="", repr=False)


@dataclass(frozen=True)
class IotpPaymentView:
    """One IOTP payment as the door reports it."""

    pay_id: str
    transaction_id: int
    status: str
    process_state: ProcessState
    percent_complete: int
    completion_code: str
    status_desc: str
    receipt: str  # base64, empty until final
    repeated: bool = False

    @property
    def final(self) -> bool:
        return self.process_state in FINAL_PROCESS_STATES


# --- Brands and limits ----------------------------------------------------------------


def iotp_brands_enabled(*, merchant_pk: int) -> list[str]:
    """The BrandIds the merchant accepts over IOTP (all of them unless staff chose)."""
    chosen = IotpMerchantBrands.objects.filter(merchant_id=merchant_pk).values_list("brands", flat=True).first()
    if chosen is None:
        return list(BRANDS)
    return [brand for brand in BRANDS if brand in chosen]


def iotp_brands_accepted(*, merchant_pk: int, currency: str, amount: Decimal) -> list[str]:
    """The merchant's brands that may pay ``amount`` ``currency``: a brand with
    no per-payment limit in that currency (the core refuses its payments) or
    whose limit is below the amount is left out."""
    limits = dict(
        CardLimit.objects.filter(currency=currency, kind__in=[core for core, _ in BRANDS.values()])
        .values_list("kind", "max_amount")
    )
    return [
        brand for brand in iotp_brands_enabled(merchant_pk=merchant_pk)
        if limits.get(BRANDS[brand][0]) is not None and amount <= limits[BRANDS[brand][0]]
    ]


def iotp_payment_limit(*, merchant_pk: int, brand_id: str) -> tuple[Decimal | None, str]:
    """The brand's per-payment limit in the merchant's currency (None: no limit set)."""
    currency = Merchant.objects.values_list("currency", flat=True).get(pk=merchant_pk)
    limit = CardLimit.objects.filter(kind=BRANDS[brand_id][0], currency=currency).values_list(
        "max_amount", flat=True
    ).first()
    return limit, currency


def _check_card_brand(card: CardData, brand_id: str) -> None:
    """A card of another network than BrandId's is refused before anything is
    recorded. A number of no known network (the banned 0000000000000000) or
    that is not a card number at all is left to the core's screening (a
    declined attempt, as at every door; the terminal contract's rule)."""
    pan = card.pan
    if not (pan.isascii() and pan.isdigit() and 12 <= len(pan) <= 19):
        return
    network = _NETWORK.get(cards.card_brand(pan))
    if network is not None and network != _NETWORK[BRANDS[brand_id][0]]:
        raise BrandMismatch(f"The card is not a {BRANDS[brand_id][1]} card")


# --- Views, receipts --------------------------------------------------------------------


_PERCENT = {
    TransactionStatus.PENDING: 0,
    TransactionStatus.AWAITING_CARD: 10,
    TransactionStatus.SUSPENDED: 10,
    TransactionStatus.PROCESSING: 50,
    TransactionStatus.AUTHORIZED: 75,
}


def _completion_code(session: IotpPayment, txn: Transaction) -> str:
    state = PROCESS_STATE[txn.status]
    if state not in (ProcessState.FAILED, ProcessState.PROCESS_ERROR):
        return ""
    if session.completion_code:
        return session.completion_code
    if state is ProcessState.PROCESS_ERROR:
        return "TechError"
    return _COMPLETION_CODES.get(txn.failure_code, "PaymDeclined")


def _status_desc(session: IotpPayment, txn: Transaction) -> str:
    status = txn.status
    if status == TransactionStatus.AWAITING_CARD:
        return "Waiting for the card data (ContinueProcess with a CardData packaged content)"
    if status == TransactionStatus.SUSPENDED:
        return "Suspended: ResumePaymentPaymentHandler resumes it"
    if status == TransactionStatus.PROCESSING:
        return "With the acquirer"
    money = f"{format_amount(txn.amount, txn.currency)} {txn.currency}"
    if PROCESS_STATE[status] is ProcessState.COMPLETED_OK:
        return f"Paid {money} with {BRANDS.get(session.brand_id, ('', 'a card'))[1]} {txn.masked_card}".strip()[:256]
    return (txn.failure_message or txn.get_status_display())[:256]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _canonical(data: dict[str, object]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _mac(data: dict[str, object]) -> bytes:
    return hmac.new(keys.subkey("iotp-receipt-" + _RECEIPT_KEY_ID), _canonical(data), hashlib.sha256).digest()


def _receipt_fields(session: IotpPayment, txn: Transaction) -> dict[str, object]:
    fields: dict[str, object] = {
        "PayId": session.pay_id,
        "MerchantOrgId": str(session.merchant.uuid),
        "BrandId": session.brand_id,
        "ProtocolId": session.protocol_id,
        "ProtocolTransId": str(txn.pk),
        "Amount": format_amount(txn.amount, txn.currency),
        "CurrCode": txn.currency,
        "CurrCodeType": "ISO4217-A",
        "PayDirection": session.pay_direction or "Debit",
        "TimeStamp": _iso(txn.updated_at),
        "ProcessState": str(PROCESS_STATE[txn.status]),
        "StatusDesc": _status_desc(session, txn),
    }
    if session.consumer_pay_id:
        fields["ConsumerPayId"] = session.consumer_pay_id
    if txn.masked_card:
        fields["PaymentInstrumentId"] = txn.masked_card
    if txn.authorization_code:
        fields["AuthorizationCode"] = txn.authorization_code
    if code := _completion_code(session, txn):
        fields["CompletionCode"] = code
    return fields


def _receipt_sign(fields: dict[str, object]) -> str:
    document = {"receipt": fields, "kid": _RECEIPT_KEY_ID, "sig": base64.b64encode(_mac(fields)).decode()}
    return base64.b64encode(_canonical(document)).decode()


def receipt_open(receipt: str) -> dict[str, object]:
    """The fields of a receipt the gateway signed, or ReceiptInvalid."""
    try:
        document = json.loads(base64.b64decode(receipt.strip(), validate=True))
        fields, sig = document["receipt"], base64.b64decode(document["sig"], validate=True)
    except (ValueError, TypeError, KeyError, binascii.Error, RecursionError):
        raise ReceiptInvalid("The receipt is not base64 of the gateway's signed JSON") from None
    if not isinstance(document, dict) or not isinstance(fields, dict) or document.get("kid") != _RECEIPT_KEY_ID:
        raise ReceiptInvalid("The receipt is not one the gateway signed")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items()):
        raise ReceiptInvalid("The receipt is not one the gateway signed")
    if not hmac.compare_digest(_mac(fields), sig):
        raise ReceiptInvalid("The receipt's signature does not match its content: it was changed")
    return fields


def _receipt_state(receipt: str) -> str:
    """The state a stored receipt records ('' when it no longer verifies, e.g.
    after a change of master key: a new one is then issued)."""
    try:
        return str(receipt_open(receipt).get("ProcessState", ""))
    except ReceiptInvalid:
        return ""


def _view(session: IotpPayment, *, repeated: bool = False) -> IotpPaymentView:
    """The payment as it stands; a final one gets (or keeps) its receipt."""
    txn = session.transaction
    state = PROCESS_STATE[txn.status]
    receipt = ""
    if state in FINAL_PROCESS_STATES:
        receipt = session.receipt
        if not receipt or _receipt_state(receipt) != state.value:
            receipt = _receipt_sign(_receipt_fields(session, txn))
            IotpPayment.objects.filter(pk=session.pk, removed_at__isnull=True).update(receipt=receipt)
            session.receipt = receipt
    return IotpPaymentView(
        pay_id=session.pay_id,
        transaction_id=txn.pk,
        status=str(txn.status),
        process_state=state,
        percent_complete=100 if state in FINAL_PROCESS_STATES else _PERCENT.get(txn.status, 50),
        completion_code=_completion_code(session, txn),
        status_desc=_status_desc(session, txn),
        receipt=receipt,
        repeated=repeated,
    )


def _session(*, merchant_pk: int, pay_id: str) -> IotpPayment:
    session = (
        IotpPayment.objects.select_related("transaction", "merchant")
        .filter(merchant_id=merchant_pk, pay_id=pay_id, removed_at__isnull=True)
        .first()
    )
    if session is None:
        raise PayIdUnknown()
    return session


def _reload(session: IotpPayment) -> IotpPayment:
    session.transaction.refresh_from_db()
    return session


# --- Starting and continuing ----------------------------------------------------------


@dataclass(frozen=True)
class StartRequest:
    """What StartPaymentPaymentHandler asks (validated by the door)."""

    pay_id: str
    brand_id: str
    currency: str
    amount: Decimal
    pay_direction: str
    protocol_id: str
    ok_from: datetime
    ok_to: datetime
    consumer_pay_id: str = ""


def _fingerprint(request: StartRequest, card: CardData | None) -> str:
    data = {
        "brand": request.brand_id, "currency": request.currency, "amount": format_amount(request.amount, request.currency),
        "direction": request.pay_direction, "protocol": request.protocol_id,
        "ok_from": _iso(request.ok_from), "ok_to": _iso(request.ok_to), "consumer": request.consumer_pay_id,
        # The card by number and expiry, under a keyed HMAC; never the CVV.
        "card": f"{card.pan}/{card.expiry}" if card else "",
    }
    return keys.fingerprint("iotp-start", _canonical(data).decode())


def iotp_payment_start(*, merchant_pk: int, request: StartRequest, card: CardData | None) -> IotpPaymentView:
    """StartPaymentPaymentHandler: open the payment and, with card data, pay it."""
    if request.brand_id not in iotp_brands_enabled(merchant_pk=merchant_pk):
        raise BrandNotAccepted()
    if card is not None:
        _check_card_brand(card, request.brand_id)
    fingerprint = _fingerprint(request, card)
    try:
        with db_transaction.atomic():
            txn = lifecycle.payment_open(
                merchant_pk=merchant_pk, door=Door.IOTP, amount=request.amount, currency=request.currency,
                merchant_reference=f"iotp:{request.pay_id}",
            )
            session = IotpPayment.objects.create(
                merchant_id=merchant_pk, pay_id=request.pay_id, transaction=txn,
                request_fingerprint=fingerprint, card_given=card is not None, brand_id=request.brand_id,
                protocol_id=request.protocol_id, consumer_pay_id=request.consumer_pay_id,
                pay_direction=request.pay_direction, currency=request.currency, amount=request.amount,
                ok_from=request.ok_from, ok_to=request.ok_to,
            )
    except IntegrityError:
        earlier = (
            IotpPayment.objects.select_related("transaction", "merchant")
            .filter(merchant_id=merchant_pk, pay_id=request.pay_id).first()
        )
        if earlier is None:
            raise
        return _repeat(earlier, fingerprint=fingerprint, card=card)
    session.merchant = session.transaction.merchant
    if card is None:
        return _view(session)
    return _continue(session, card)


def _repeat(session: IotpPayment, *, fingerprint: str, card: CardData | None) -> IotpPaymentView:
    """A start naming a PayId already used: the same request is answered as the
    first was (once it has settled); any other is PayIdReused."""
    if session.removed_at is not None or not hmac.compare_digest(session.request_fingerprint, fingerprint):
        raise PayIdReused()
    if card is not None and session.transaction.status == TransactionStatus.AWAITING_CARD:
        # The first request died between its commit and its continuation (or
        # is just about to continue): this one carries the same card, so it
        # may finish the payment; the claim lets only one of them do so.
        return _continue(session, card, repeated=True)
    return _settled(session, repeated=True)


def _settled(session: IotpPayment, *, repeated: bool) -> IotpPaymentView:
    """The payment once no request is with the acquirer for it, waiting a little."""
    deadline = time.monotonic() + settings.IOTP_REPEAT_WAIT_SECONDS
    while session.transaction.status == TransactionStatus.PROCESSING:
        if time.monotonic() >= deadline:
            raise PaymentBeingProcessed()
        time.sleep(0.1)
        _reload(session)
    return _view(session, repeated=repeated)


def _continue(
    session: IotpPayment, card: CardData, *, repeated: bool = False, wait_if_lost: bool = True
) -> IotpPaymentView:
    """Pay a waiting payment with ``card``. When another request claimed it
    first: a start (or its repeat) waits for that outcome and answers it; a
    ContinueProcess is told, as RFC 3867 §2.6.2 wants of a payment no longer
    pending, MsgBeingProc while it is with the acquirer and BusError after."""
    txn = session.transaction
    if session.ok_to is not None and timezone.now() > session.ok_to:
        # RFC 3867: OkTo ends the time in which the Payment Handler may accept the payment.
        try:
            lifecycle.payment_cancel_open(transaction_id=txn.pk, merchant_pk=txn.merchant_id, reason="OkTo has passed")
            IotpPayment.objects.filter(pk=session.pk).update(completion_code="OkToPassed")
            session.completion_code = "OkToPassed"
        except InvalidState:
            pass
        return _settled(_reload(session), repeated=repeated)
    try:
        lifecycle.payment_continue(
            transaction_id=txn.pk, merchant_pk=txn.merchant_id, card_number=card.pan, policy=cards.LUHN_PAN,
            expiry=card.expiry, cvv=card.cvv,
        )
    except InvalidState:
        # Not waiting any more: another request continued it first (answer its
        # outcome), or it was suspended or cancelled meanwhile (a business error).
        _reload(session)
        if session.transaction.status in lifecycle.OPEN_STATUSES:
            raise
        if not wait_if_lost:
            if session.transaction.status == TransactionStatus.PROCESSING:
                raise PaymentBeingProcessed() from None
            raise
        return _settled(session, repeated=repeated)
    except (Declined, AcquirerFailure):
        pass  # recorded on the transaction: a Failed (or ProcessError) payment, not an error
    except PaymentError as exc:
        if exc.transaction_id != txn.pk:
            raise
    return _view(_reload(session), repeated=repeated)


def iotp_payment_continue(*, merchant_pk: int, pay_id: str, card: CardData) -> IotpPaymentView:
    """ContinueProcess: the card data of a payment started without it."""
    session = _session(merchant_pk=merchant_pk, pay_id=pay_id)
    status = session.transaction.status
    if status == TransactionStatus.PROCESSING:
        raise PaymentBeingProcessed()
    if status != TransactionStatus.AWAITING_CARD:
        raise InvalidState(
            f"The payment is {PROCESS_STATE[status].value} ({session.transaction.get_status_display().lower()}): "
            "only a payment waiting for its card data can be continued"
        )
    _check_card_brand(card, session.brand_id)
    return _continue(session, card, wait_if_lost=False)


def iotp_payment_resume(*, merchant_pk: int, pay_id: str, card: CardData | None = None) -> IotpPaymentView:
    """ResumePaymentPaymentHandler: a suspended payment waits for its card data
    again (or, when the call brings it, is paid at once)."""
    session = _session(merchant_pk=merchant_pk, pay_id=pay_id)
    if card is not None:
        _check_card_brand(card, session.brand_id)
    txn = session.transaction
    lifecycle.payment_resume(transaction_id=txn.pk, merchant_pk=merchant_pk)
    _reload(session)
    if card is None:
        return _view(session)
    return _continue(session, card, wait_if_lost=False)


def iotp_payment_change_state(
    *, merchant_pk: int, pay_id: str, state: ProcessState, completion_code: str = ""
) -> IotpPaymentView:
    """ChangeProcessState: the application core asks for a state; the answer is
    the state the payment is in afterwards. A final state never changes, and a
    move the payment cannot make (complete a payment without card data, cancel
    one that is with the acquirer) leaves it as it was: RFC 3867 §4.3.6, the
    core reads the answer to see whether the bridge agreed."""
    session = _session(merchant_pk=merchant_pk, pay_id=pay_id)
    txn = session.transaction
    moves = {
        (TransactionStatus.AWAITING_CARD, ProcessState.SUSPENDED): lifecycle.payment_suspend,
        (TransactionStatus.SUSPENDED, ProcessState.IN_PROGRESS): lifecycle.payment_resume,
    }
    try:
        if (txn.status, state) in moves:
            moves[(txn.status, state)](transaction_id=txn.pk, merchant_pk=merchant_pk)
        elif txn.status in lifecycle.OPEN_STATUSES and state is ProcessState.FAILED:
            with db_transaction.atomic():
                lifecycle.payment_cancel_open(
                    transaction_id=txn.pk, merchant_pk=merchant_pk,
                    reason=f"Cancelled by the IOTP application core ({completion_code or 'PaymCancelled'})",
                )
                IotpPayment.objects.filter(pk=session.pk).update(completion_code=completion_code)
                session.completion_code = completion_code
        elif txn.status in lifecycle.OPEN_STATUSES and state is ProcessState.PROCESS_ERROR:
            with db_transaction.atomic():
                lifecycle.payment_fail(
                    transaction_id=txn.pk, merchant_pk=merchant_pk,
                    reason="Marked ProcessError by the IOTP application core",
                )
                IotpPayment.objects.filter(pk=session.pk).update(completion_code=completion_code)
                session.completion_code = completion_code
    except InvalidState:
        pass  # a concurrent change won: report where the payment is now
    return _view(_reload(session))


def iotp_payment_get(*, merchant_pk: int, pay_id: str) -> IotpPaymentView:
    """InquireProcessState / InquirePaymentStatus."""
    return _view(_session(merchant_pk=merchant_pk, pay_id=pay_id))


def iotp_payments_pending(*, merchant_pk: int) -> list[str]:
    """InquirePendingPayment: the PayIds of payments not yet final, oldest first."""
    open_statuses = [s for s, state in PROCESS_STATE.items() if state not in FINAL_PROCESS_STATES]
    return list(
        IotpPayment.objects.filter(
            merchant_id=merchant_pk, removed_at__isnull=True, transaction__status__in=open_statuses
        ).order_by("created_at", "id").values_list("pay_id", flat=True)[:_PENDING_LIMIT]
    )


def iotp_payment_log_remove(*, merchant_pk: int, pay_id: str) -> None:
    """RemovePaymentLog: forget the session of a final payment (the ledger row stays)."""
    session = _session(merchant_pk=merchant_pk, pay_id=pay_id)
    state = PROCESS_STATE[session.transaction.status]
    if state not in FINAL_PROCESS_STATES:
        raise InvalidState(f"The payment is {state.value}: only a final payment's log can be removed")
    IotpPayment.objects.filter(pk=session.pk, removed_at__isnull=True).update(
        removed_at=timezone.now(), request_fingerprint="", brand_id="", protocol_id="", consumer_pay_id="",
        pay_direction="", currency="", amount=None, ok_from=None, ok_to=None, receipt="", completion_code="",
    )
    logger.info("IOTP payment log removed: merchant=%s transaction=%s", merchant_pk, session.transaction_id)


def iotp_receipt_check(*, merchant_pk: int, pay_id: str, receipt: str) -> dict[str, object]:
    """CheckPaymentReceipt / ExpandPaymentReceipt: the receipt's fields when the
    gateway signed it for this merchant's payment ``pay_id``; ReceiptInvalid
    otherwise. A receipt stays checkable after RemovePaymentLog."""
    if not IotpPayment.objects.filter(merchant_id=merchant_pk, pay_id=pay_id).exists():
        raise PayIdUnknown()
    fields = receipt_open(receipt)
    merchant_uuid = str(Merchant.objects.values_list("uuid", flat=True).get(pk=merchant_pk))
    if fields.get("PayId") != pay_id or fields.get("MerchantOrgId") != merchant_uuid:
        raise ReceiptInvalid("The receipt was signed for another payment")
    return fields


# --- Challenge-response -------------------------------------------------------------------


def _auth_message(authentication_id: str, challenge: str) -> bytes:
    return f"{_AUTH_DOMAIN}\n{authentication_id}\n{challenge}".encode()


def iotp_auth_response(*, app_key: bytes, authentication_id: str, challenge: str) -> bytes:
    """What the genuine party answers to a challenge (its side: docs/iotp.md)."""
    return hmac.new(app_key, _auth_message(authentication_id, challenge), hashlib.sha256).digest()


def iotp_auth_challenge_issue(*, merchant_pk: int, authentication_id: str) -> str:
    """A fresh challenge (64 hex digits) for one CheckAuthResponse."""
    now = timezone.now()
    challenge = secrets.token_hex(32)
    IotpAuthChallenge.objects.create(
        merchant_id=merchant_pk, authentication_id=authentication_id, challenge=challenge,
        expires_at=now + timedelta(seconds=settings.IOTP_AUTH_CHALLENGE_SECONDS),
    )
    if random.randrange(_PRUNE_ONE_IN) == 0:
        IotpAuthChallenge.objects.filter(expires_at__lt=now - timedelta(days=1)).delete()
    return challenge


def iotp_auth_response_check(
    *, merchant_pk: int, authentication_id: str, challenge: str, response: bytes
) -> tuple[bool, str]:
    """(True, "") when ``response`` answers a live challenge of this merchant and
    AuthenticationId; else (False, why). The challenge is used up either way."""
    now = timezone.now()
    claimed = IotpAuthChallenge.objects.filter(
        merchant_id=merchant_pk, authentication_id=authentication_id, challenge=challenge,
        used_at__isnull=True, expires_at__gt=now,
    ).update(used_at=now)
    if not claimed:
        return False, "Unknown, expired or already used challenge: ask InquireAuthChallenge for a new one"
    merchant = Merchant.objects.get(pk=merchant_pk)
    matched = False
    for pair in api_key_pairs_valid(merchant=merchant):  # every pair tried, each in constant time
        expected = iotp_auth_response(app_key=pair.app_key, authentication_id=authentication_id, challenge=challenge)
        matched = hmac.compare_digest(expected, response) or matched
    if not matched:
        return False, "The response does not answer the challenge"
    return True, ""
