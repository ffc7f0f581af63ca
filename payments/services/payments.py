"""Payments: a terminal's sale with a token, card-not-present authorizations,
captures, voids, and esipay's payment confirmed by the merchant.

Shape of a payment (``payment_sale_with_token``, ``payment_authorize``), in
three phases that a caller may also run one by one (the terminal listener
does, so that none of its database threads waits for the acquirer):

1. Database (``payment_sale_start``): one transaction locks what the payment
   depends on (the token), applies the gateway's rules (``screening``), and
   records the attempt: a ``processing`` transaction with its operation in
   flight, or a ``declined`` one with the reason. A failed attempt still
   commits (it used a token try).
2. Acquirer (``payment_authorization_send`` / ``..._send_async``): outside
   any transaction, on the acquirer pool, with a deadline (``acquiring``).
3. Database (``payment_authorization_record``): one conditional UPDATE
   records the acquirer's answer, with its event. An answer that is unknown
   (the deadline passed, the connector cannot tell, the database failed
   while recording) is recorded as nothing: the row stays ``processing``
   for the resolver and the caller gets ``PaymentOutcomeUnknown``.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection
from django.db import transaction as db_transaction
from django.utils import timezone

from merchants.models import Merchant

from .. import cards, outbox
from ..acquirers.base import AcquirerResult, AuthorizationRequest, Outcome, get_acquirer
from ..errors import (
    AcquirerFailure,
    AmountExceedsRemaining,
    ConfirmationFailed,
    Declined,
    InvalidRequest,
    InvalidState,
    NotAuthorized,
    NotTheMerchantsCurrency,
    PaymentError,
    PaymentInProgress,
    PaymentOutcomeUnknown,
    TokenInvalid,
    TransactionNotFound,
)
from ..models import Transaction
from ..money import exponent, format_amount, in_currency, parse_amount
from ..states import LIVE_STATUSES, AcquirerOperation, Door, EventType, PaymentMethod, TransactionStatus
from .acquiring import acquirer_answer, acquirer_answer_async
from .screening import (
    CardDraft,
    RuleFacts,
    ScreenedCard,
    amount_or_none,
    card_decide,
    card_draft,
    card_facts_wanted,
    check_decide,
    rule_facts,
    screen_card,
)
from .sql import TXN, plain
from .tokens import ClaimedToken, token_claim_try, token_held

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuthorizationStep:
    """An authorization committed as ``processing``: what phase 2 sends to the
    acquirer and phase 3 records. Holds the card number in memory only."""

    transaction: Transaction
    request: AuthorizationRequest = field(repr=False)


def payment_sale_with_token(
    *,
    terminal_pk: int,
    token: object,
    method: PaymentMethod,
    amount: object,
    card_type: str = "",
    card_number: object = None,
    pin: object = None,
    check_number: object = None,
) -> Transaction:
    """A terminal's sale (authorize and capture at once), paid with a token.

    Returns the captured transaction, or raises the first failed rule. An
    attempt that fails after the token checks is committed as a declined
    transaction (when its amount is valid) and uses one try of the token.
    The three phases in a row (see the module docstring).
    """
    step = payment_sale_start(
        terminal_pk=terminal_pk, token=token, method=method, amount=amount, card_type=card_type,
        card_number=card_number, pin=pin, check_number=check_number,
    )
    return payment_authorization_record(step, payment_authorization_send(step))


def payment_sale_start(
    *,
    terminal_pk: int,
    token: object,
    method: PaymentMethod,
    amount: object,
    card_type: str = "",
    card_number: object = None,
    pin: object = None,
    check_number: object = None,
) -> AuthorizationStep:
    """Phase 1 of a terminal's sale: the token, the gateway's rules, and the
    attempt committed as ``processing`` (or as declined, raising its error).

    The threaded database path (Django's connection, any database); the
    async PostgreSQL path (``sale_async``) decides with the same ``sale_*``
    functions below on the same facts.
    """
    failure: PaymentError | None = None
    pan = ""
    try:
        with db_transaction.atomic():
            claimed = token_claim_try(terminal_pk=terminal_pk, value=token, method=method)
            txn = sale_transaction(terminal_pk=terminal_pk, token=claimed, method=method)
            try:
                try:
                    draft = sale_draft(
                        method=method, card_number=card_number, card_type=card_type, pin=pin,
                        check_number=check_number,
                    )
                except PaymentError:
                    if token_held(claimed.pk):
                        raise TokenInvalid() from None
                    raise
                facts = rule_facts(**sale_facts_wanted(draft), currency=claimed.currency, token_pk=claimed.pk)
                pan = sale_decide(txn, draft, facts, amount=amount)
                _txn_insert(txn)
            except TokenInvalid:
                raise  # not an attempt: rolls back, the try is not used
            except PaymentError as exc:
                failure = exc
                _record_declined(txn, exc, amount=amount, card_number=card_number)
    except IntegrityError as exc:
        # The partial unique index one_payment_per_token caught a race the
        # lock did not (it never should): the token is used.
        if "one_payment_per_token" in str(exc) or "token_id" in str(exc):
            raise TokenInvalid() from None
        raise
    if failure is not None:
        raise failure
    return sale_step(txn, pan=pan)


# --- A terminal sale's rules, shared by both database paths --------------------------------

SaleDraft = CardDraft | str  # a card's draft, or a valid check number


def sale_transaction(*, terminal_pk: int, token: ClaimedToken, method: PaymentMethod) -> Transaction:
    return Transaction(
        merchant_id=token.merchant_pk, terminal_id=terminal_pk, token_id=token.pk, door=Door.TERMINAL,
        method=method, currency=token.currency,
    )


def sale_draft(
    *, method: PaymentMethod, card_number: object, card_type: str, pin: object, check_number: object
) -> SaleDraft:
    """The sale's rules that need no database (104, 100; 105 for a check)."""
    if method == PaymentMethod.CHECK:
        return cards.check_validate(check_number)
    return card_draft(
        card_number=card_number, policy=cards.TERMINAL_PAN, card_type=card_type, pin=pin,
        require_pin=method == PaymentMethod.CARD, contactless=method == PaymentMethod.CONTACTLESS,
    )


def sale_facts_wanted(draft: SaleDraft) -> dict[str, object]:
    """What ``screening.facts_statement`` must read for this sale."""
    return {"check": draft} if isinstance(draft, str) else card_facts_wanted(draft)


def sale_decide(txn: Transaction, draft: SaleDraft, facts: RuleFacts, *, amount: object) -> str:
    """The sale's rules on the database's facts; fills ``txn`` as ``processing``
    (amount, card) and returns the card number to send, or raises the rule's error."""
    if isinstance(draft, str):
        txn.check_number = draft  # a well-formed check's number, kept on a declined attempt too: staff see it
        txn.check_number, txn.amount = check_decide(draft, facts, amount=amount, currency=txn.currency)
        pan = ""
    else:
        screened = card_decide(draft, facts, amount=amount, currency=txn.currency)
        _fill_card(txn, screened)
        txn.amount = screened.amount
        pan = screened.pan
    txn.status = TransactionStatus.PROCESSING
    txn.operation = AcquirerOperation.AUTHORIZE
    return pan


def sale_step(txn: Transaction, *, pan: str) -> AuthorizationStep:
    return _step(txn, pan=pan, capture=True)


def _step(txn: Transaction, *, pan: str, capture: bool, expiry: str = "", cvv: str = "") -> AuthorizationStep:
    return AuthorizationStep(
        transaction=txn,
        request=AuthorizationRequest(
            transaction_id=txn.pk,
            # A row read back (an IOTP continuation) holds 1200.00 JPY: the acquirer is asked 1200.
            amount=in_currency(txn.amount, txn.currency),
            currency=txn.currency,
            capture=capture,
            pan=pan,
            check_number=txn.check_number,
            expiry=expiry,
            cvv=cvv,
        ),
    )



_TXN_FIELDS = [f for f in Transaction._meta.concrete_fields if not f.primary_key]
_SQL_TXN_INSERT = (
    f"INSERT INTO {TXN} ({', '.join(f.column for f in _TXN_FIELDS)}) "
    f"VALUES ({', '.join(['%s'] * len(_TXN_FIELDS))}) RETURNING id"
)


def _txn_insert_processing(txn: Transaction) -> None:
    """INSERT a transaction whose authorization is about to be sent."""
    txn.status = TransactionStatus.PROCESSING
    txn.operation = AcquirerOperation.AUTHORIZE
    _txn_insert(txn)


def _txn_insert(txn: Transaction) -> None:
    """INSERT a transaction with one precompiled statement (the ORM's own
    field preparation, without its query compiler)."""
    values = [plain(f.get_db_prep_save(f.pre_save(txn, True), connection)) for f in _TXN_FIELDS]
    with connection.cursor() as cursor:
        cursor.execute(_SQL_TXN_INSERT, values)
        txn.pk = cursor.fetchone()[0]
    txn._state.adding = False


def payment_currency(merchant: Merchant, currency: str | None) -> str:
    """The currency of a payment to ``merchant``: its own, the only one it is paid in
    (limits, refunds and reports are in it). Every door that names a currency is held to it."""
    if currency and currency != merchant.currency:  # None or "": the door named none
        raise NotTheMerchantsCurrency(currency, merchant.currency)
    return merchant.currency


def payment_authorize(
    *,
    merchant_pk: int,
    door: Door,
    card_number: object,
    policy: cards.PanPolicy,
    amount: object,
    capture: bool,
    currency: str | None = None,
    expiry: str = "",
    cvv: str = "",
    merchant_reference: str = "",
) -> Transaction:
    """A card-not-present authorization (captured at once when ``capture``)."""
    merchant = Merchant.objects.filter(pk=merchant_pk, is_active=True).first()
    if merchant is None:
        raise NotAuthorized("Merchant not active")
    currency = payment_currency(merchant, currency)
    txn = Transaction(
        merchant=merchant,
        door=door,
        method=PaymentMethod.CARD,
        currency=currency,
        merchant_reference=merchant_reference,
    )
    try:
        screened = screen_card(card_number=card_number, policy=policy, amount=amount, currency=currency)
    except PaymentError as exc:
        _record_declined(txn, exc, amount=amount, card_number=card_number)
        raise
    _fill_card(txn, screened)
    txn.amount = screened.amount
    _txn_insert_processing(txn)
    step = _step(txn, pan=screened.pan, capture=capture, expiry=expiry, cvv=cvv)
    return payment_authorization_record(step, payment_authorization_send(step))


def _fill_card(txn: Transaction, screened: ScreenedCard) -> None:
    txn.card_fingerprint = screened.facts.fingerprint
    txn.card_bin = screened.facts.bin
    txn.card_last4 = screened.facts.last4
    txn.card_brand = screened.brand


def declined_fields(txn: Transaction, exc: PaymentError, *, amount: object, card_number: object) -> bool:
    """Fill ``txn`` as a declined attempt; False when there is no amount to show
    (then no row is kept)."""
    value = amount_or_none(amount, currency=txn.currency)
    if value is None:
        return False
    txn.amount = value
    if isinstance(card_number, str) and not txn.card_fingerprint:
        try:
            pan = cards.card_validate(card_number, cards.PanPolicy(10, 19, luhn=False))
        except PaymentError:
            pass
        else:
            facts = cards.card_facts(pan)
            txn.card_fingerprint, txn.card_bin, txn.card_last4 = facts.fingerprint, facts.bin, facts.last4
            txn.card_brand = cards.card_brand(pan)  # the number's, whatever the terminal claimed
    txn.status = TransactionStatus.DECLINED
    txn.operation = ""
    txn.failure_code = exc.code
    txn.failure_message = exc.message[:255]
    return True


def _record_declined(txn: Transaction, exc: PaymentError, *, amount: object, card_number: object) -> None:
    """Keep a declined attempt for staff, when there is an amount to show."""
    if not declined_fields(txn, exc, amount=amount, card_number=card_number):
        return
    with db_transaction.atomic():
        txn.save()
        outbox.event_emit(type=EventType.PAYMENT_FAILED, transaction=txn)
    exc.transaction_id = txn.pk


def payment_authorization_send(step: AuthorizationStep) -> AcquirerResult:
    """Phase 2: the acquirer's answer, within the deadline (never raises for a
    connector's failure: see ``acquiring.acquirer_answer``)."""
    return acquirer_answer(get_acquirer().authorize, step.request)


async def payment_authorization_send_async(step: AuthorizationStep) -> AcquirerResult:
    """Phase 2 for an event loop: awaited, no thread of the caller waits."""
    return await acquirer_answer_async(get_acquirer().authorize, step.request)


@dataclass(frozen=True)
class OutcomePlan:
    """How phase 3 records an acquirer's answer: the conditional UPDATE, and the
    event that commits with it (None: an authorization waiting for its capture)."""

    statement: str
    params: list[object]
    event: EventType | None


def outcome_plan(step: AuthorizationStep, result: AcquirerResult) -> OutcomePlan:
    """The acquirer's answer as changes of the transaction (applied to
    ``step.transaction`` for the event's data); PaymentOutcomeUnknown when the
    answer is unknown. Both database paths record through here."""
    txn, capture = step.transaction, step.request.capture
    if result.outcome is Outcome.UNKNOWN:
        logger.warning("payment %s: outcome unknown (%s), left to the resolver", txn.pk, result.reason)
        raise PaymentOutcomeUnknown(result.reason or "no answer from the acquirer", transaction_id=txn.pk)
    now = timezone.now()
    changes: dict[str, object] = {
        "acquirer_reference": result.reference[:64], "operation": "", "updated_at": now,
    }
    if result.approved:
        changes.update(
            status=TransactionStatus.CAPTURED if capture else TransactionStatus.AUTHORIZED,
            authorized_amount=txn.amount,
            captured_amount=txn.amount if capture else Decimal("0"),
            authorization_code=result.authorization_code[:12],
        )
    else:
        changes.update(
            status=TransactionStatus.DECLINED if result.outcome is Outcome.DECLINED else TransactionStatus.ERROR,
            failure_code=result.decline_code[:32],
            failure_message=result.reason[:255],
        )
    # The answer and its event commit together (the outbox). An authorization
    # waiting for its capture announces nothing yet: the capture will.
    event = None
    if not result.approved:
        event = EventType.PAYMENT_FAILED
    elif capture:
        event = EventType.PAYMENT_SUCCEEDED
    for name, value in changes.items():  # the event's data (if not applied, the caller gets an error)
        setattr(txn, name, value)
    update = _txn_outcome_statement(txn.pk, changes)
    return OutcomePlan(statement=update["statement"], params=update["params"], event=event)


def outcome_settled(step: AuthorizationStep, result: AcquirerResult, *, applied: bool) -> Transaction:
    """What the caller is told once the answer was recorded (``applied``) or not."""
    txn = step.transaction
    if not applied:
        logger.warning("payment %s: answered after the resolver took it over; its answer is the resolver's", txn.pk)
        raise PaymentOutcomeUnknown("the answer came too late", transaction_id=txn.pk)
    if result.outcome is Outcome.DECLINED:
        raise Declined(result.reason or "declined", decline_code=result.decline_code, transaction_id=txn.pk)
    if result.outcome is Outcome.ERROR:
        raise AcquirerFailure(result.reason or "technical error", transaction_id=txn.pk)
    logger.info(
        "payment approved transaction=%s door=%s amount=%s %s card=%s",
        txn.pk, txn.door, format_amount(txn.amount, txn.currency), txn.currency, txn.masked_card or txn.check_number,
    )
    return txn


def payment_authorization_record(step: AuthorizationStep, result: AcquirerResult) -> Transaction:
    """Phase 3: the acquirer's answer and its event, by one conditional UPDATE.

    Raises Declined or AcquirerFailure for a refusal, and PaymentOutcomeUnknown
    when the outcome is not known here: the answer is unknown, recording it
    failed, or the resolver has taken the row over. The row then stays
    ``processing`` for the resolver.
    """
    plan = outcome_plan(step, result)
    txn = step.transaction
    try:
        if plan.event is None:
            with connection.cursor() as cursor:
                cursor.execute(plan.statement, plan.params)
                applied = cursor.rowcount == 1
        else:
            applied = outbox.event_emit_with_change(
                statement=plan.statement, params=plan.params, type=plan.event, transaction=txn
            )
    except DatabaseError as exc:
        # Committed or not, nobody here can tell: the resolver will.
        logger.warning("payment %s: the acquirer's answer could not be recorded (%s)", txn.pk, exc)
        raise PaymentOutcomeUnknown("the answer could not be recorded", transaction_id=txn.pk) from exc
    return outcome_settled(step, result, applied=applied)


def _txn_outcome_statement(pk: int, changes: dict[str, object]) -> dict[str, object]:
    """The acquirer's answer on a processing transaction: one UPDATE, precompiled
    (the ORM's own field preparation, without its query compiler)."""
    fields = [Transaction._meta.get_field(name) for name in changes]
    # Still processing, and no resolver on it: else the answer is no longer this request's to record.
    sql = (
        f"UPDATE {TXN} SET {', '.join(f'{f.column} = %s' for f in fields)} "
        f"WHERE id = %s AND status = %s AND resolver_lease_until IS NULL"
    )
    values = [plain(f.get_db_prep_save(changes[f.name], connection)) for f in fields]
    return {"statement": sql, "params": [*values, pk, TransactionStatus.PROCESSING.value]}


def _claim(*, transaction_id: int, merchant_pk: int, expected: str, operation: AcquirerOperation) -> Transaction:
    """Move a transaction from ``expected`` to processing ``operation``, or explain why not.

    A conditional UPDATE is the claim: of two concurrent captures (or a
    capture and a void) exactly one matches a row.
    """
    claimed = Transaction.objects.filter(pk=transaction_id, merchant_id=merchant_pk, status=expected).update(
        status=TransactionStatus.PROCESSING, operation=operation, updated_at=timezone.now()
    )
    txn = Transaction.objects.filter(pk=transaction_id, merchant_id=merchant_pk).first()
    if txn is None:
        raise TransactionNotFound()
    if not claimed:
        raise InvalidState(f"Transaction is {txn.get_status_display().lower()}")
    return txn


def _record_operation(
    txn: Transaction, result: AcquirerResult, *, approved: dict[str, object], event: EventType,
    refused: dict[str, object] | None = None,
) -> Transaction:
    """The answer to a capture or void in flight: ``approved`` changes and ``event``,
    or ``refused`` (back to authorized by default). Unknown outcomes stay
    processing (PaymentOutcomeUnknown)."""
    if result.outcome is Outcome.UNKNOWN:
        logger.warning("transaction %s: %s outcome unknown (%s), left to the resolver", txn.pk, txn.operation,
                       result.reason)
        raise PaymentOutcomeUnknown(result.reason or "no answer from the acquirer", transaction_id=txn.pk)
    changes = approved if result.approved else (refused or {"status": TransactionStatus.AUTHORIZED})
    try:
        with db_transaction.atomic():
            applied = Transaction.objects.filter(
                pk=txn.pk, status=TransactionStatus.PROCESSING, resolver_lease_until__isnull=True
            ).update(**changes, operation="", updated_at=timezone.now())
            if applied:
                txn.refresh_from_db()
                if result.approved:
                    outbox.event_emit(type=event, transaction=txn)
    except DatabaseError as exc:
        logger.warning("transaction %s: the acquirer's answer could not be recorded (%s)", txn.pk, exc)
        raise PaymentOutcomeUnknown("the answer could not be recorded", transaction_id=txn.pk) from exc
    if not applied:
        raise PaymentOutcomeUnknown("the answer came too late", transaction_id=txn.pk)
    return txn


def payment_capture(*, transaction_id: int, merchant_pk: int, amount: object = None) -> Transaction:
    """Capture an authorization, all of it or less, once."""
    txn = Transaction.objects.filter(pk=transaction_id, merchant_id=merchant_pk).first()
    if txn is None:
        raise TransactionNotFound()
    value = txn.authorized_amount if amount is None else parse_amount(amount, currency=txn.currency)
    if txn.status == TransactionStatus.AUTHORIZED and value > txn.authorized_amount:
        raise AmountExceedsRemaining(txn.authorized_amount, places=exponent(txn.currency))
    txn = _claim(
        transaction_id=transaction_id, merchant_pk=merchant_pk, expected=TransactionStatus.AUTHORIZED,
        operation=AcquirerOperation.CAPTURE,
    )
    result = acquirer_answer(
        get_acquirer().capture, reference=txn.acquirer_reference, amount=value, currency=txn.currency,
        transaction_id=txn.pk,
    )
    txn = _record_operation(
        txn, result, approved={"status": TransactionStatus.CAPTURED, "captured_amount": value},
        event=EventType.PAYMENT_SUCCEEDED,
    )
    if not result.approved:
        raise AcquirerFailure(result.reason or "capture failed", transaction_id=txn.pk)
    return txn


def payment_void(*, transaction_id: int, merchant_pk: int) -> Transaction:
    """Cancel an authorization that was not captured."""
    txn = _claim(
        transaction_id=transaction_id, merchant_pk=merchant_pk, expected=TransactionStatus.AUTHORIZED,
        operation=AcquirerOperation.VOID,
    )
    result = acquirer_answer(get_acquirer().void, reference=txn.acquirer_reference, transaction_id=txn.pk)
    txn = _record_operation(
        txn, result, approved={"status": TransactionStatus.VOIDED}, event=EventType.PAYMENT_CANCELLED
    )
    if not result.approved:
        raise AcquirerFailure(result.reason or "void failed", transaction_id=txn.pk)
    return txn


# --- Payments confirmed by the merchant (esipay) ----------------------------------------


@dataclass(frozen=True)
class ConfirmedPayment:
    transaction: Transaction
    repeated: bool  # a repeat of an earlier approved request: nothing was charged


def payment_card_confirmed(
    *,
    merchant_pk: int,
    door: Door,
    reference: str,
    card_number: object,
    expiry_month: object,
    expiry_year: object,
    amount: object,
    policy: cards.PanPolicy,
    confirm: Callable[[Transaction], tuple[bool, str]],
) -> ConfirmedPayment:
    """A card-not-present sale that counts only once the merchant confirms it.

    esipay's rule: the payment is authorized, the merchant's return URL is
    called (``confirm``, outside any transaction), and only if it answers
    yes is the payment captured; otherwise the authorization is voided
    (``payment.cancelled``) and ConfirmationFailed raised.

    ``reference`` (esipay's cid) is idempotent: one live payment per
    merchant and reference (a partial unique index). A repeat of an approved
    payment with the same card and amount returns it (``repeated``) and
    charges nothing; with other data it is InvalidRequest. A repeat that
    arrives while the first is in flight waits for its outcome. After a
    declined or cancelled attempt the reference is free: a new attempt.
    """
    pan = cards.card_validate(card_number, policy)
    expiry = cards.expiry_validate(expiry_month, expiry_year, today=timezone.localdate())
    deadline = time.monotonic() + settings.ESIPAY_REPEAT_WAIT_SECONDS
    while True:
        earlier = _live_payment(merchant_pk=merchant_pk, reference=reference)
        if earlier is not None:
            settled = _repeat_of(earlier, pan=pan, amount=amount, deadline=deadline)
            if settled is not None:
                return ConfirmedPayment(settled, repeated=True)
            continue  # the earlier attempt was cancelled or declined meanwhile: a new attempt
        try:
            txn = payment_authorize(
                merchant_pk=merchant_pk, door=door, card_number=pan, policy=policy, amount=amount,
                capture=False, expiry=expiry, merchant_reference=reference,
            )
        except IntegrityError as exc:
            if "one_live_payment_per_reference" in str(exc) or "merchant_reference" in str(exc):
                continue  # a concurrent request with this reference won the race: wait for it
            raise
        break
    confirmed, reason = confirm(txn)
    if not confirmed:
        _void_unconfirmed(txn)
        logger.info("payment %s cancelled: the merchant did not confirm (%s)", txn.pk, reason)
        raise ConfirmationFailed(reason, transaction_id=txn.pk)
    try:
        return ConfirmedPayment(payment_capture(transaction_id=txn.pk, merchant_pk=merchant_pk), repeated=False)
    except AcquirerFailure:
        # A definite refusal: nothing was captured. (An unknown capture is not
        # voided: it may have happened; the resolver settles it.)
        _void_unconfirmed(txn)
        raise


def _void_unconfirmed(txn: Transaction) -> None:
    """Void an authorization that will not be captured. A void that fails or whose
    outcome is unknown is finished later (the unconfirmed-payment sweep, the
    resolver): the payment is cancelled all the same, never captured."""
    try:
        payment_void(transaction_id=txn.pk, merchant_pk=txn.merchant_id)
    except (AcquirerFailure, PaymentOutcomeUnknown) as exc:
        logger.warning("payment %s: void not done yet (%s); the sweep finishes it", txn.pk, exc.message)



def _live_payment(*, merchant_pk: int, reference: str) -> Transaction | None:
    return Transaction.objects.filter(
        merchant_id=merchant_pk, merchant_reference=reference, status__in=LIVE_STATUSES
    ).first()


def _repeat_of(earlier: Transaction, *, pan: str, amount: object, deadline: float) -> Transaction | None:
    """The earlier payment if this request repeats it, once it has settled.

    None when it ended cancelled or declined (the reference is free again);
    InvalidRequest when the card or amount differ; at the deadline,
    PaymentOutcomeUnknown when it is still processing after its acquirer's
    deadline (its answer was lost: the resolver settles it), else
    PaymentInProgress.
    """
    value = parse_amount(amount, currency=earlier.currency)
    if earlier.card_fingerprint != cards.card_facts(pan).fingerprint or earlier.amount != value:
        raise InvalidRequest(
            f"cid {earlier.merchant_reference!r} was already used for transaction {earlier.pk} "
            "with another card or amount"
        )
    while earlier.status in (TransactionStatus.PROCESSING, TransactionStatus.AUTHORIZED):
        if time.monotonic() >= deadline:
            lost = timezone.now() - timedelta(seconds=settings.ACQUIRER_TIMEOUT_SECONDS)
            if earlier.status == TransactionStatus.PROCESSING and earlier.updated_at < lost:
                raise PaymentOutcomeUnknown(
                    "the acquirer's answer to the first request was lost; the gateway settles it",
                    transaction_id=earlier.pk,
                )
            raise PaymentInProgress(transaction_id=earlier.pk)
        time.sleep(0.1)
        earlier.refresh_from_db()
    return earlier if earlier.status in LIVE_STATUSES else None


