"""SET requests onto the payment core: one synchronous function per message.

``set_request_handle(merchant_pk, body)`` takes the DER body of one
``application/set-payment`` message of an authenticated merchant and
returns the DER of its answer; it never raises (a bug is ErrorMsg 9). The
listener runs it in a database thread, several at once per connection.

The contract's meaning of each request:
- AuthReq → ``payment_authorize`` (door SET, 12–19 digits with Luhn, the
  same bans, limits and events as every door), captured too with
  ``captureNow``. Declined with the rule's or the acquirer's reason.
- CapReq → ``payment_capture`` (up to the authorized amount, once).
- CredReq → ``refund_request`` with ``reference = credId`` (up to what was
  captured and not refunded; each credId once).
- RevReq → ``payment_void`` (an authorization not captured).
- InqReq → the payment's RFC 3867 process state and amounts, as they are now.

Idempotency: ``transId`` is the merchant's reference of the payment. A
request that changed a payment is recorded (``SetExchange``, unique per
merchant, kind, transId and credId) with a keyed digest of its data and its
answer: a repeat with the same data gets that answer and changes nothing;
with other data it is ErrorMsg 3. A request that changed nothing (an
invalid field, an unknown transId, a refused capture) is not recorded: a
repeat is evaluated again, against a state it did not change. A request
whose process died half-way leaves its record without an answer; when its
lease has run out, a repeat takes it over and answers from the payment's
state (never authorizing twice): an acquirer answer that was lost is the
core's resolver's to settle (by inquiry), and until then the repeat gets
ErrorMsg 9 "in progress".
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection
from django.db import transaction as db_transaction
from django.utils import timezone

from merchants.models import Merchant
from payments import cards, errors, keys, services
from payments.money import CURRENCIES
from payments.states import Door, ProcessState, TransactionStatus

from . import payload
from .models import ExchangeKind, SetExchange
from .payload import (
    AuthReq,
    AuthRes,
    CapReq,
    CapRes,
    CredReq,
    CredRes,
    CurrencyAmount,
    ErrorMsg,
    InqReq,
    InqRes,
    RevReq,
    RevRes,
)

logger = logging.getLogger(__name__)

APPROVED, DECLINED, FAILED = "approved", "declined", "failed"

_PROCESS_STATE = {
    ProcessState.NOT_YET_STARTED: "notYetStarted",
    ProcessState.IN_PROGRESS: "inProgress",
    ProcessState.SUSPENDED: "suspended",
    ProcessState.COMPLETED_OK: "completedOk",
    ProcessState.FAILED: "failed",
    ProcessState.PROCESS_ERROR: "processError",
}
# An authorization that went through (even if later captured, refunded or reversed).
_AUTHORIZED_ONCE = frozenset({
    TransactionStatus.AUTHORIZED, TransactionStatus.CAPTURED, TransactionStatus.PARTIALLY_REFUNDED,
    TransactionStatus.REFUNDED, TransactionStatus.VOIDED,
})
_CAPTURED = frozenset({TransactionStatus.CAPTURED, TransactionStatus.PARTIALLY_REFUNDED, TransactionStatus.REFUNDED})


class _Answer(Exception):
    """An answer decided before the core is asked (ErrorMsg 2, 4, 5...): changes nothing."""

    def __init__(self, message: payload.Response) -> None:
        self.message = message
        super().__init__(getattr(message, "reason", ""))


# What to do with the request's record once it is answered.
STORE = "store"  # it changed a payment: repeats get this answer
FORGET = "forget"  # it changed nothing: the ids stay free
HOLD = "hold"  # unknown yet (the acquirer's outcome): the next repeat settles it


@dataclass(frozen=True)
class _Outcome:
    answer: payload.Response
    keep: str
    transaction_id: int | None = None


# --- Entry point ----------------------------------------------------------------------------


def set_request_handle(*, merchant_pk: int, body: bytes) -> bytes:
    """The DER answer to the DER request ``body`` of merchant ``merchant_pk``."""
    try:
        message = payload.decode(body)
    except payload.PayloadError as exc:
        return payload.encode(ErrorMsg(exc.code, exc.reason, exc.trans_id))
    trans_id = getattr(message, "trans_id", None)
    try:
        answer = set_request_answer(merchant_pk=merchant_pk, message=message)
    except Exception:
        logger.exception("SET %s of merchant %s failed", message.KIND, merchant_pk)
        answer = ErrorMsg(payload.INTERNAL, "internal error: nothing was changed, or ask with InqReq", trans_id)
    return payload.encode(answer)


def set_request_answer(*, merchant_pk: int, message: payload.Message) -> payload.Response:
    """The answer to one decoded SET request."""
    if isinstance(message, InqReq):
        try:
            return _inquire(merchant_pk, message)
        except _Answer as answer:
            return answer.message
    handler = _HANDLERS.get(type(message))
    if handler is None:
        return ErrorMsg(payload.INVALID_FIELD, f"invalid field message: {message.KIND} is not a request",
                        getattr(message, "trans_id", None))
    kind, digest_of, work = handler
    try:
        digest = digest_of(merchant_pk, message)
    except _Answer as answer:
        return answer.message
    return _exchange(merchant_pk=merchant_pk, kind=kind, message=message, digest=digest, work=work)


# --- Amounts and currencies ---------------------------------------------------------------


def _currency_code(numeric: int) -> tuple[str, int] | None:
    """ISO 4217 numeric → (alpha code, minor unit exponent), for the currencies the gateway knows."""
    for code, (number, exponent) in CURRENCIES.items():
        if number == numeric:
            return code, exponent
    return None


def _numeric(code: str) -> tuple[int, int]:
    number, exponent = CURRENCIES[code]
    return number, exponent


_CURRENCY_CACHE: dict[int, tuple[str, float]] = {}
CURRENCY_CACHE_SECONDS = 5.0


def _merchant_currency(merchant_pk: int) -> str:
    """The merchant's currency, read at most every few seconds per process: a look-up
    per request would cost a round trip for a setting staff almost never change."""
    now = time.monotonic()
    cached = _CURRENCY_CACHE.get(merchant_pk)
    if cached is not None and cached[1] > now:
        return cached[0]
    currency = Merchant.objects.filter(pk=merchant_pk).values_list("currency", flat=True).first() or "EUR"
    _CURRENCY_CACHE[merchant_pk] = (currency, now + CURRENCY_CACHE_SECONDS)
    return currency


def _accepted_currency(merchant_pk: int, amount: CurrencyAmount, trans_id: str) -> str:
    """The merchant's currency, if that is what the amount is in; ErrorMsg 5 otherwise."""
    known = _currency_code(amount.currency)
    merchant_currency = _merchant_currency(merchant_pk)
    if known is None or known[0] != merchant_currency:
        raise _Answer(ErrorMsg(payload.CURRENCY_NOT_ACCEPTED,
                               f"currency {amount.currency} not accepted: this merchant is paid in "
                               f"{merchant_currency} ({_numeric(merchant_currency)[0]})", trans_id))
    return known[0]


def _value(amount: CurrencyAmount) -> str:
    """The amount's value, written once whatever its exponent (1000e-2 and 10e0 are the same)."""
    return f"{amount.value.normalize():f}"


def _amount(value: Decimal, currency: str) -> CurrencyAmount:
    number, exponent = _numeric(currency)
    return CurrencyAmount.of(value, currency=number, exponent=exponent)


def _digest(*parts: object) -> str:
    # Keyed: the digest of an authorization covers its card number, and must not let anyone test a guess.
    return keys.fingerprint("set-request", "|".join(str(part) for part in parts))


def _invalid(field: str, detail: str, trans_id: str) -> _Answer:
    return _Answer(ErrorMsg(payload.INVALID_FIELD, f"invalid field {field}: {detail}", trans_id))


# --- The request record: claim, settle, answer -------------------------------------------------


def _exchange(*, merchant_pk: int, kind: str, message: payload.Request, digest: str,
              work: Callable[[int, payload.Request, SetExchange, bool], _Outcome]) -> payload.Response:
    trans_id = message.trans_id
    cred_id = getattr(message, "cred_id", "")
    row, answer, recovering = _claim(merchant_pk=merchant_pk, kind=kind, trans_id=trans_id, cred_id=cred_id,
                                     digest=digest)
    if answer is not None or row is None:
        return answer or ErrorMsg(payload.INTERNAL, "internal error: send it again", trans_id)
    try:
        outcome = work(merchant_pk, message, row, recovering)
    except _Answer as early:
        outcome = _Outcome(early.message, FORGET)
    except BaseException:
        # A bug: release the ids; the payment's own state is safe (the core's transactions).
        SetExchange.objects.filter(pk=row.pk, lease_until=row.lease_until).update(lease_until=None)
        raise
    _settle(row, outcome)
    return outcome.answer


def _claim(*, merchant_pk: int, kind: str, trans_id: str, cred_id: str,
           digest: str) -> tuple[SetExchange | None, payload.Response | None, bool]:
    """(our record, None, recovering) when this request is to be worked on;
    (None, answer, False) when it is a repeat that is answered already."""
    deadline = time.monotonic() + settings.SET_REPEAT_WAIT_SECONDS
    ids = {"merchant_id": merchant_pk, "kind": kind, "trans_id": trans_id, "cred_id": cred_id}
    first = True
    while True:
        now = timezone.now()
        lease = now + timedelta(seconds=settings.SET_REQUEST_LEASE_SECONDS)
        # Most requests are new: insert first (one round trip), look only when the ids are taken.
        row = None if first else SetExchange.objects.filter(**ids).first()
        first = False
        if row is None:
            try:
                # Alone, one statement needs no BEGIN/COMMIT; inside a transaction (tests), a savepoint.
                with db_transaction.atomic() if connection.in_atomic_block else nullcontext():
                    row = SetExchange.objects.create(**ids, digest=digest, lease_until=lease)
            except IntegrityError:
                continue  # a repeat, or a concurrent first request: look at it
            return row, None, False
        if row.digest != digest:
            what = f"credId {cred_id!r} of transId {trans_id!r}" if cred_id else f"transId {trans_id!r}"
            return None, ErrorMsg(payload.TRANS_ID_REUSED,
                                  f"{what} was already used for a {row.get_kind_display().lower()} "
                                  "with other data", trans_id), False
        if row.response is not None:
            return None, payload.decode(bytes(row.response)), False
        if row.lease_until is None or row.lease_until <= now:
            taken = SetExchange.objects.filter(pk=row.pk, response__isnull=True, lease_until=row.lease_until) \
                .update(lease_until=lease)
            if taken:
                row.lease_until = lease
                return row, None, True
            continue
        if time.monotonic() >= deadline:
            return None, ErrorMsg(payload.INTERNAL, f"{row.get_kind_display()} {trans_id!r} is still being "
                                  "processed: send it again in a few seconds", trans_id), False
        time.sleep(0.05)


def _settle(row: SetExchange, outcome: _Outcome) -> None:
    mine = SetExchange.objects.filter(pk=row.pk, lease_until=row.lease_until)
    if outcome.keep == STORE:
        done = mine.update(response=payload.encode(outcome.answer), transaction_id=outcome.transaction_id,
                           summary=_summary(outcome.answer)[:255], lease_until=None, completed_at=timezone.now())
    elif outcome.keep == FORGET:
        done, _ = mine.delete()
    else:
        done = mine.update(transaction_id=outcome.transaction_id, lease_until=None,
                           summary=_summary(outcome.answer)[:255])
    if not done:
        logger.warning("SET %s %s: its lease ran out before it was answered (another request took it over)",
                       row.kind, row.trans_id)


def _summary(answer: payload.Response) -> str:
    if isinstance(answer, ErrorMsg):
        return f"ErrorMsg {answer.code}: {answer.reason}"
    status = getattr(answer, "status", "")
    reason = getattr(answer, "reason", None)
    return f"{status}: {reason}" if reason else status


# --- AuthReq ----------------------------------------------------------------------------------


def _auth_digest(merchant_pk: int, req: AuthReq) -> str:
    currency = _accepted_currency(merchant_pk, req.amount, req.trans_id)
    return _digest("auth", req.trans_id, req.pan, req.card_expiry, currency, _value(req.amount), req.capture_now)


def _expiry(req: AuthReq) -> str:
    """``YYYYMM`` checked as the core checks every expiry; a past month is a decline."""
    try:
        return cards.expiry_validate(req.card_expiry[4:], req.card_expiry[:4], today=timezone.localdate())
    except errors.CardExpired:
        raise _Answer(AuthRes(req.trans_id, DECLINED, reason="Card expired")) from None
    except errors.InvalidCardExpiry as exc:
        raise _invalid("cardExpiry", exc.message, req.trans_id) from None


def _auth_answer(txn: object, trans_id: str) -> AuthRes | None:
    """The answer an authorization's state gives; None while it is with the acquirer."""
    status = txn.status  # type: ignore[attr-defined]
    if status == TransactionStatus.VOIDED and txn.failure_code:  # type: ignore[attr-defined]
        # Not a merchant's reversal: the resolver reversed an approval whose answer was
        # lost (nothing is charged). The authorization failed.
        return AuthRes(trans_id, FAILED, gateway_trans_id=str(txn.pk),  # type: ignore[attr-defined]
                       reason=txn.failure_message or "reversed: nothing is charged")  # type: ignore[attr-defined]
    if status in _AUTHORIZED_ONCE:
        code = txn.authorization_code  # type: ignore[attr-defined]
        return AuthRes(trans_id, APPROVED, gateway_trans_id=str(txn.pk),  # type: ignore[attr-defined]
                       auth_code=code if code and payload._PRINTABLE.match(code) else None)
    if status == TransactionStatus.DECLINED:
        return AuthRes(trans_id, DECLINED, gateway_trans_id=str(txn.pk),  # type: ignore[attr-defined]
                       reason=txn.failure_message or "declined")  # type: ignore[attr-defined]
    if status == TransactionStatus.ERROR:
        return AuthRes(trans_id, FAILED, gateway_trans_id=str(txn.pk),  # type: ignore[attr-defined]
                       reason=txn.failure_message or "acquirer failure")  # type: ignore[attr-defined]
    return None


def _in_progress(what: str, trans_id: str) -> ErrorMsg:
    return ErrorMsg(payload.INTERNAL, f"{what} {trans_id!r} is in progress with the acquirer: its outcome is "
                    "not known yet; send it again later (InqReq reports its state)", trans_id)


def _authorize(merchant_pk: int, req: AuthReq, row: SetExchange, recovering: bool) -> _Outcome:
    currency = _currency_code(req.amount.currency)[0]  # type: ignore[index]  # the merchant's: checked by the digest
    expiry = _expiry(req)

    if recovering:
        # Its first attempt died half-way: did it record a payment? Then that is the answer,
        # once known (a lost acquirer answer is settled by the core's resolver, by inquiry).
        earlier = services.payment_by_reference(merchant_pk=merchant_pk, door=Door.SET, reference=req.trans_id)
        if earlier is not None and earlier.created_at >= row.created_at - timedelta(seconds=1) \
                and earlier.card_fingerprint == cards.card_facts(req.pan).fingerprint \
                and earlier.amount == req.amount.value:
            answer = _auth_answer(earlier, req.trans_id)
            if answer is None:
                return _Outcome(_in_progress("authorization", req.trans_id), HOLD, earlier.pk)
            return _Outcome(answer, STORE, earlier.pk)
    try:
        txn = services.payment_authorize(
            merchant_pk=merchant_pk, door=Door.SET, card_number=req.pan, policy=cards.LUHN_PAN,
            amount=req.amount.value, capture=req.capture_now, currency=currency, expiry=expiry,
            merchant_reference=req.trans_id,
        )
    except errors.PaymentOutcomeUnknown as exc:
        return _Outcome(_in_progress("authorization", req.trans_id), HOLD, exc.transaction_id)
    except (errors.UnsupportedCurrency, errors.LimitsNotConfigured) as exc:
        raise _Answer(ErrorMsg(payload.CURRENCY_NOT_ACCEPTED, f"currency not accepted: {exc.message}",
                               req.trans_id)) from None
    except errors.InvalidCardNumber as exc:
        raise _invalid("pan", exc.message, req.trans_id) from None
    except errors.InvalidAmount as exc:
        raise _invalid("amount", exc.message, req.trans_id) from None
    except errors.NotAuthorized as exc:
        return _Outcome(ErrorMsg(payload.INTERNAL, exc.message, req.trans_id), FORGET)
    except errors.AcquirerFailure as exc:
        return _Outcome(AuthRes(req.trans_id, FAILED, gateway_trans_id=_id(exc.transaction_id), reason=exc.message),
                        STORE if exc.transaction_id else FORGET, exc.transaction_id)
    except errors.PaymentError as exc:  # the gateway's rules (bans, limits) or the acquirer said no
        return _Outcome(AuthRes(req.trans_id, DECLINED, gateway_trans_id=_id(exc.transaction_id), reason=exc.message),
                        STORE if exc.transaction_id else FORGET, exc.transaction_id)
    except IntegrityError as exc:
        if "one_live_payment_per_reference" in str(exc) or "merchant_reference" in str(exc):
            # Another door's payment already carries this reference.
            return _Outcome(ErrorMsg(payload.TRANS_ID_REUSED, f"transId {req.trans_id!r} already names a payment",
                                     req.trans_id), FORGET)
        raise
    answer = _auth_answer(txn, req.trans_id)
    if answer is None:  # the core returns a transaction with its outcome: never processing
        return _Outcome(_in_progress("authorization", req.trans_id), HOLD, txn.pk)
    return _Outcome(answer, STORE, txn.pk)


def _id(pk: int | None) -> str | None:
    return str(pk) if pk is not None else None


# --- CapReq, CredReq, RevReq ---------------------------------------------------------------


def _payment(merchant_pk: int, trans_id: str):  # type: ignore[no-untyped-def]
    txn = services.payment_by_reference(merchant_pk=merchant_pk, door=Door.SET, reference=trans_id)
    if txn is None:
        raise _Answer(ErrorMsg(payload.UNKNOWN_TRANS_ID, f"unknown transId {trans_id!r}", trans_id))
    return txn


def _same_currency(txn, amount: CurrencyAmount, trans_id: str) -> None:  # type: ignore[no-untyped-def]
    if _currency_code(amount.currency) is None or _currency_code(amount.currency)[0] != txn.currency:  # type: ignore[index]
        raise _Answer(ErrorMsg(payload.CURRENCY_NOT_ACCEPTED, f"currency {amount.currency} not accepted: "
                               f"the payment is in {txn.currency} ({_numeric(txn.currency)[0]})", trans_id))


def _cap_digest(merchant_pk: int, req: CapReq) -> str:
    return _digest("cap", req.trans_id, req.amount.currency, _value(req.amount))


def _capture(merchant_pk: int, req: CapReq, row: SetExchange, recovering: bool) -> _Outcome:
    txn = _payment(merchant_pk, req.trans_id)
    _same_currency(txn, req.amount, req.trans_id)
    if recovering:
        if txn.status in _CAPTURED and txn.captured_amount == req.amount.value:
            return _Outcome(CapRes(req.trans_id, APPROVED), STORE, txn.pk)
        if txn.status == TransactionStatus.PROCESSING:
            return _Outcome(_in_progress("capture", req.trans_id), HOLD, txn.pk)
    try:
        txn = services.payment_capture(transaction_id=txn.pk, merchant_pk=merchant_pk, amount=req.amount.value)
    except errors.PaymentOutcomeUnknown as exc:
        return _Outcome(_in_progress("capture", req.trans_id), HOLD, exc.transaction_id)
    except errors.InvalidAmount as exc:
        raise _invalid("amount", exc.message, req.trans_id) from None
    except errors.AcquirerFailure as exc:
        return _Outcome(CapRes(req.trans_id, FAILED, reason=exc.message), FORGET)
    except errors.PaymentError as exc:  # not capturable (state), more than authorized
        return _Outcome(CapRes(req.trans_id, DECLINED, reason=exc.message), FORGET)
    return _Outcome(CapRes(req.trans_id, APPROVED), STORE, txn.pk)


def _cred_digest(merchant_pk: int, req: CredReq) -> str:
    return _digest("cred", req.trans_id, req.cred_id, req.amount.currency, _value(req.amount))


def _refund(merchant_pk: int, req: CredReq, row: SetExchange, recovering: bool) -> _Outcome:
    # refund_request is idempotent by reference itself: a recovering repeat simply asks again.
    txn = _payment(merchant_pk, req.trans_id)
    _same_currency(txn, req.amount, req.trans_id)
    try:
        services.refund_request(transaction_id=txn.pk, merchant_pk=merchant_pk, amount=req.amount.value,
                                reference=req.cred_id)
    except errors.InvalidAmount as exc:
        raise _invalid("amount", exc.message, req.trans_id) from None
    except errors.InvalidRequest:
        return _Outcome(ErrorMsg(payload.TRANS_ID_REUSED, f"credId {req.cred_id!r} was already used with another "
                                 "amount", req.trans_id), FORGET)
    except errors.PaymentError as exc:  # nothing captured, or more than what remains
        return _Outcome(CredRes(req.trans_id, req.cred_id, DECLINED, reason=exc.message), FORGET)
    return _Outcome(CredRes(req.trans_id, req.cred_id, APPROVED), STORE, txn.pk)


def _rev_digest(merchant_pk: int, req: RevReq) -> str:
    return _digest("rev", req.trans_id)


def _reverse(merchant_pk: int, req: RevReq, row: SetExchange, recovering: bool) -> _Outcome:
    txn = _payment(merchant_pk, req.trans_id)
    if recovering:
        if txn.status == TransactionStatus.VOIDED:
            return _Outcome(RevRes(req.trans_id, APPROVED), STORE, txn.pk)
        if txn.status == TransactionStatus.PROCESSING:
            return _Outcome(_in_progress("reversal", req.trans_id), HOLD, txn.pk)
    try:
        txn = services.payment_void(transaction_id=txn.pk, merchant_pk=merchant_pk)
    except errors.PaymentOutcomeUnknown as exc:
        return _Outcome(_in_progress("reversal", req.trans_id), HOLD, exc.transaction_id)
    except errors.AcquirerFailure as exc:
        return _Outcome(RevRes(req.trans_id, FAILED, reason=exc.message), FORGET)
    except errors.PaymentError as exc:  # captured, declined, voided already...
        return _Outcome(RevRes(req.trans_id, DECLINED, reason=exc.message), FORGET)
    return _Outcome(RevRes(req.trans_id, APPROVED), STORE, txn.pk)


# --- InqReq --------------------------------------------------------------------------------------


def _inquire(merchant_pk: int, req: InqReq) -> InqRes:
    txn = services.payment_by_reference(merchant_pk=merchant_pk, door=Door.SET, reference=req.trans_id)
    if txn is None:
        pending = SetExchange.objects.filter(merchant_id=merchant_pk, kind=ExchangeKind.AUTHORIZE,
                                             trans_id=req.trans_id, response__isnull=True).exists()
        if not pending:
            raise _Answer(ErrorMsg(payload.UNKNOWN_TRANS_ID, f"unknown transId {req.trans_id!r}", req.trans_id))
        zero = _amount(Decimal("0"), _merchant_currency(merchant_pk))
        return InqRes(req.trans_id, "notYetStarted", zero, zero, zero)
    return InqRes(
        req.trans_id,
        _PROCESS_STATE[txn.process_state],
        _amount(txn.authorized_amount, txn.currency),
        _amount(txn.captured_amount, txn.currency),
        _amount(txn.refunded_amount, txn.currency),
    )


_HANDLERS: dict[type, tuple[str, Callable, Callable]] = {
    AuthReq: (ExchangeKind.AUTHORIZE, _auth_digest, _authorize),
    CapReq: (ExchangeKind.CAPTURE, _cap_digest, _capture),
    CredReq: (ExchangeKind.REFUND, _cred_digest, _refund),
    RevReq: (ExchangeKind.REVERSE, _rev_digest, _reverse),
}
