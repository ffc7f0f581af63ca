"""Accounts and their cards on file: create, verify, keep, charge (the secure API's rules).

A merchant's end customer is an ``Account``; a card kept for it is a
``StoredCard`` whose number lives only in the card vault. Everything that
moves money goes through ``payments.services``: a card is verified by
``card_verify`` (a zero-amount authorization) before it is kept, and a
charge is ``payment_authorize`` (captured at once) of the number opened from
the vault for that call only. A CVV may be held for one charge
(``cvv_hold`` → ``cardCVVEncKey``): sealed, single use, 15 minutes, deleted
by the charge that takes it (``cvv_take``).

No network I/O happens inside a database transaction: the acquirer is asked
before a card row is written, and a charge's link to its account is written
after the core has recorded the payment.
"""
from __future__ import annotations

import logging
import random
import re
import secrets
from datetime import date, timedelta

from django.conf import settings
from django.db import IntegrityError
from django.db import transaction as db_transaction
from django.db.models import QuerySet
from django.utils import timezone

from payments import card_vault, cards, services
from payments.db import insert_flushed_later
from payments.errors import (
    CardExpired,
    Declined,
    InvalidRequest,
    PaymentError,
    PaymentInProgress,
    TransactionNotFound,
)
from payments.models import Refund, Transaction
from payments.money import parse_amount
from payments.states import LIVE_STATUSES, Door, TransactionStatus

from .models import Account, AccountCharge, HeldCvv, Merchant, StoredCard

logger = logging.getLogger(__name__)

_CVV = re.compile(r"[0-9]{3,4}\Z")
_CVV_KEY = re.compile(r"[0-9a-f]{32}\Z")
# One cvv_hold() in this many also deletes every expired held CVV (the periodic
# task does it too): an expired CVV is unusable at once, and gone soon after.
_PRUNE_ONE_IN = 50


class CvvKeyInvalid(PaymentError):
    """The ``cardCVVEncKey`` is unknown, already used, expired, or another card's."""

    code = "cvv_key_invalid"
    default_message = "CVV key unknown, used or expired: hold the CVV again"


class CardAlreadyOnFile(PaymentError):
    code = "card_already_on_file"

    def __init__(self, card: StoredCard) -> None:
        self.card_uuid = str(card.uuid)
        super().__init__(f"This card is already on file for the account as paymentInfoID {card.uuid}")


class CardInUse(PaymentError):
    """A charge of the card is still with the acquirer: its outcome is not known yet."""

    code = "card_in_use"
    default_message = "A charge of this card is still being processed: delete it once it is answered"


# --- Accounts ------------------------------------------------------------------------------


def account_create(*, merchant: Merchant, external_id: str = "", name: str = "", email: str = "") -> Account:
    return Account.objects.create(merchant=merchant, external_id=external_id, name=name, email=email)


def account_get(*, merchant: Merchant, uuid: str) -> Account | None:
    """The merchant's account; None for an unknown one and for another merchant's."""
    return Account.objects.filter(merchant=merchant, uuid=uuid).first()


# --- Cards on file -------------------------------------------------------------------------


def stored_cards(*, account: Account) -> QuerySet[StoredCard]:
    return StoredCard.objects.filter(account=account, deleted_at__isnull=True).order_by("created_at", "id")


def stored_card_get(*, account: Account, uuid: str) -> StoredCard | None:
    return stored_cards(account=account).filter(uuid=uuid).first()


def stored_card_of(*, merchant: Merchant, account_uuid: str, card_uuid: str) -> StoredCard | None:
    """The merchant's account's live card, with its account, in one query (a charge's lookup)."""
    return StoredCard.objects.select_related("account").filter(
        account__merchant=merchant, account__uuid=account_uuid, uuid=card_uuid, deleted_at__isnull=True
    ).first()


def _expiry_text(card: StoredCard) -> tuple[str, str]:
    return f"{card.exp_month:02d}", f"{card.exp_year:04d}"


def stored_card_create(
    *, account: Account, number: object, exp_month: object, exp_year: object, holder_name: str = "", cvv: str = "",
) -> StoredCard:
    """Verify a card with the acquirer, then keep it (number sealed in the vault).

    Raises InvalidCardNumber / InvalidCardExpiry / CardExpired (the card's
    data), CardBanned, Declined or AcquirerFailure (not verified), or
    CardAlreadyOnFile. Nothing is kept unless the card was verified.
    """
    if cvv and not _CVV.match(cvv):
        raise InvalidRequest("cvv: expected 3 or 4 digits")
    pan = cards.card_validate(number, cards.LUHN_PAN)
    earlier = stored_cards(account=account).filter(fingerprint=cards.card_facts(pan).fingerprint).first()
    if earlier is not None:  # before asking the acquirer: nothing to verify
        raise CardAlreadyOnFile(earlier)
    verified = services.card_verify(
        card_number=pan, policy=cards.LUHN_PAN, expiry_month=exp_month, expiry_year=exp_year,
        currency=account.merchant.currency, cvv=cvv,
    )
    card = StoredCard(
        account=account, fingerprint=verified.facts.fingerprint, card_bin=verified.facts.bin,
        card_last4=verified.facts.last4, brand=verified.brand, exp_month=int(verified.expiry[4:]),
        exp_year=int(verified.expiry[:4]), holder_name=holder_name, verified=True, verified_at=timezone.now(),
    )
    card.pan_sealed = card_vault.pan_seal(pan, card_uuid=str(card.uuid))
    try:
        with db_transaction.atomic():
            card.save()
    except IntegrityError:  # the same card stored by a concurrent request
        earlier = stored_cards(account=account).filter(fingerprint=card.fingerprint).first()
        if earlier is None:
            raise
        raise CardAlreadyOnFile(earlier) from None
    logger.info("card %s stored for account %s (%s)", card.uuid, account.uuid, cards.mask_pan(pan))
    return card


def stored_card_update(
    *, card: StoredCard, exp_month: object = None, exp_year: object = None, holder_name: str | None = None,
) -> StoredCard:
    """New expiry (not past: CardExpired) or holder name. A new expiry makes the
    card unverified until it is reverified."""
    fields = ["updated_at"]
    if exp_month is not None or exp_year is not None:
        month, year = _expiry_text(card)
        expiry = cards.expiry_validate(
            month if exp_month is None else exp_month, year if exp_year is None else exp_year,
            today=timezone.now().date(),
        )
        new_year, new_month = int(expiry[:4]), int(expiry[4:])
        if (new_year, new_month) != (card.exp_year, card.exp_month):
            card.exp_year, card.exp_month, card.verified, card.verified_at = new_year, new_month, False, None
            fields += ["exp_year", "exp_month", "verified", "verified_at"]
    if holder_name is not None:
        card.holder_name = holder_name
        fields.append("holder_name")
    card.save(update_fields=fields)
    return card


def stored_card_delete(*, card: StoredCard) -> StoredCard:
    """Destroy the card's number (and any CVV held for it); the row stays for its charges."""
    in_flight = Transaction.objects.filter(
        account_charge__card=card, status=TransactionStatus.PROCESSING
    ).exists()
    if in_flight:
        raise CardInUse()
    with db_transaction.atomic():
        HeldCvv.objects.filter(card=card).delete()
        card.pan_sealed = ""
        card.deleted_at = timezone.now()
        card.save(update_fields=["pan_sealed", "deleted_at", "updated_at"])
    logger.info("card %s of account %s deleted: its number was destroyed", card.uuid, card.account.uuid)
    return card


def _open_number(card: StoredCard) -> str:
    try:
        return card_vault.pan_open(card.pan_sealed, card_uuid=str(card.uuid))
    except card_vault.CardVaultError:
        logger.error("card %s: the sealed number does not open (master key rotated?)", card.uuid)
        raise


def stored_card_reverify(*, card: StoredCard, cvv: str = "") -> StoredCard:
    """Verify the card again (zero-amount authorization); it is unverified if that fails."""
    if cvv and not _CVV.match(cvv):
        raise InvalidRequest("cvv: expected 3 or 4 digits")
    month, year = _expiry_text(card)
    try:
        services.card_verify(
            card_number=_open_number(card), policy=cards.LUHN_PAN, expiry_month=month, expiry_year=year,
            currency=card.account.merchant.currency, cvv=cvv,
        )
    except PaymentError:
        StoredCard.objects.filter(pk=card.pk).update(verified=False, verified_at=None, updated_at=timezone.now())
        raise
    card.verified, card.verified_at = True, timezone.now()
    card.save(update_fields=["verified", "verified_at", "updated_at"])
    return card


# --- CVVs held for one charge ----------------------------------------------------------------


def cvv_hold(*, card: StoredCard, cvv: object) -> str:
    """Hold a CVV for the next charge of ``card``; returns its ``cardCVVEncKey``."""
    if not isinstance(cvv, str) or not _CVV.match(cvv):
        raise InvalidRequest("cvv: expected a string of 3 or 4 digits")
    key = secrets.token_hex(16)
    HeldCvv.objects.create(
        key_digest=card_vault.cvv_key_digest(key), card=card,
        cvv_sealed=card_vault.cvv_seal(cvv, cvv_key=key, card_uuid=str(card.uuid)),
        expires_at=timezone.now() + timedelta(seconds=settings.SECURE_API_CVV_TTL_SECONDS),
    )
    if random.randrange(_PRUNE_ONE_IN) == 0:
        held_cvvs_prune()
    return key


def cvv_take(*, card: StoredCard, key: object) -> str:
    """The CVV held under ``key`` for ``card``, deleted as it is taken (single use)."""
    if not isinstance(key, str) or not _CVV_KEY.match(key):
        raise CvvKeyInvalid()
    with db_transaction.atomic():
        held = HeldCvv.objects.select_for_update().filter(key_digest=card_vault.cvv_key_digest(key)).first()
        if held is None or held.card_id != card.pk:
            raise CvvKeyInvalid()
        held.delete()
    if held.expires_at <= timezone.now():
        raise CvvKeyInvalid()
    return card_vault.cvv_open(held.cvv_sealed, cvv_key=key, card_uuid=str(card.uuid))


def held_cvvs_prune() -> int:
    deleted, _ = HeldCvv.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted


# --- Charges -----------------------------------------------------------------------------


def _outcome_of(txn: Transaction) -> Transaction:
    """An earlier attempt under the same orderID, answered as it was answered."""
    if txn.status == TransactionStatus.PROCESSING:
        raise PaymentInProgress(transaction_id=txn.pk)
    if txn.status in (TransactionStatus.DECLINED, TransactionStatus.ERROR):
        raise Declined(txn.failure_message or "declined", decline_code=txn.failure_code, transaction_id=txn.pk)
    return txn


def _link(*, account: Account, card: StoredCard, order_id: str, transaction_id: int) -> None:
    # Flushed later: the payment itself is committed (flushed) by the core; a link
    # lost with a crash of the database is written again by the repeat of the
    # order, which finds the live payment by its orderID.
    try:
        insert_flushed_later(AccountCharge(
            merchant_id=account.merchant_id, account=account, card=card, order_id=order_id,
            transaction_id=transaction_id,
        ))
    except IntegrityError:
        # A repeat of the order after a crash between the payment and this link,
        # which already wrote it: nothing to do.
        logger.info("order %s: charge link already recorded", order_id)


def account_charge(
    *, account: Account, card: StoredCard, order_id: str, amount: object, currency: str, cvv_key: str = "",
) -> Transaction:
    """Charge a stored card once per ``order_id`` (authorized and captured at once).

    A repeat of an order that was already charged (the request that made it
    died before answering) gets the first attempt's outcome and charges
    nothing; with another account or card it is InvalidRequest. The held
    CVV, if any, is taken (and deleted) just before the authorization.
    """
    merchant = account.merchant
    earlier = AccountCharge.objects.filter(merchant=merchant, order_id=order_id).select_related("transaction").first()
    if earlier is not None:
        if earlier.account_id != account.pk or earlier.card_id != card.pk:
            raise InvalidRequest(f"orderID: {order_id!r} was already used for another charge")
        return _outcome_of(earlier.transaction)
    month, year = _expiry_text(card)
    try:
        expiry = cards.expiry_validate(month, year, today=timezone.now().date())
    except CardExpired:
        raise CardExpired(f"Card expired (end of {year}-{month}): update its expiry") from None
    # A malformed amount is the request's fault, not a use of the card: refused before the
    # held CVV is taken, so the caller can correct the amount and charge with the same key.
    # (The core parses it again with the same rule; anything it refuses later used the card.)
    parse_amount(amount, currency=currency)
    cvv = cvv_take(card=card, key=cvv_key) if cvv_key else ""
    pan = _open_number(card)
    try:
        txn = services.payment_authorize(
            merchant_pk=merchant.pk, door=Door.SECURE_API, card_number=pan, policy=cards.LUHN_PAN, amount=amount,
            capture=True, currency=currency, expiry=expiry, cvv=cvv, merchant_reference=order_id,
        )
    except PaymentError as exc:
        if exc.transaction_id is not None:
            _link(account=account, card=card, order_id=order_id, transaction_id=exc.transaction_id)
        raise
    except IntegrityError as exc:
        if "one_live_payment_per_reference" not in str(exc) and "merchant_reference" not in str(exc):
            raise
        # A live payment with this orderID that has no link yet (its request died
        # after the core recorded it): this is a repeat of it.
        live = Transaction.objects.filter(
            merchant=merchant, merchant_reference=order_id, status__in=LIVE_STATUSES
        ).first()
        if live is None:
            raise
        _link(account=account, card=card, order_id=order_id, transaction_id=live.pk)
        return _outcome_of(live)
    _link(account=account, card=card, order_id=order_id, transaction_id=txn.pk)
    return txn


def account_transactions(
    *, account: Account, from_date: date | None = None, to_date: date | None = None
) -> QuerySet[Transaction]:
    """The account's payments, newest first; dates are UTC days, both included."""
    found = Transaction.objects.filter(account_charge__account=account).select_related(
        "account_charge", "account_charge__card"
    )
    if from_date is not None:
        found = found.filter(created_at__date__gte=from_date)
    if to_date is not None:
        found = found.filter(created_at__date__lte=to_date)
    return found.order_by("-created_at", "-id")


def account_transaction(*, account: Account, transaction_id: int) -> Transaction | None:
    return account_transactions(account=account).filter(pk=transaction_id).first()


def account_refund(*, account: Account, transaction_id: int, amount: object = None, reference: str = "") -> Refund:
    """Refund (part of) an account's payment; a repeated ``reference`` returns the first refund."""
    if account_transaction(account=account, transaction_id=transaction_id) is None:
        raise TransactionNotFound()
    return services.refund_request(
        transaction_id=transaction_id, merchant_pk=account.merchant_id, amount=amount, reference=reference
    )


def account_cancel(*, account: Account, transaction_id: int) -> Transaction:
    """Cancel an account's payment that is not settled yet."""
    if account_transaction(account=account, transaction_id=transaction_id) is None:
        raise TransactionNotFound()
    return services.payment_cancel(transaction_id=transaction_id, merchant_pk=account.merchant_id)
