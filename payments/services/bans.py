"""The ban list: cards (by fingerprint), BINs, checks and PINs (by fingerprint)."""
from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import IntegrityError
from django.db import transaction as db_transaction

from .. import cards
from ..errors import PaymentError
from ..models import Ban
from ..states import BanKind


class BanValueError(ValueError):
    """A ban value that is not what its kind requires."""


def ban_fields(kind: str, value: str) -> dict[str, str]:
    """What a ban of ``kind`` stores for ``value`` (its lookup key, and BIN and
    last four for a card), or BanValueError. Forms use it to validate input."""
    value = value.strip()
    if kind == BanKind.CARD:
        if not (value.isdigit() and 10 <= len(value) <= 19):
            raise BanValueError("a card number is 10 to 19 digits")
        facts = cards.card_facts(value)
        return {"key": facts.fingerprint, "card_bin": facts.bin, "card_last4": facts.last4}
    if kind == BanKind.BIN:
        if not (value.isdigit() and 6 <= len(value) <= 8):
            raise BanValueError("a BIN is 6 to 8 digits")
        return {"key": value}
    if kind == BanKind.CHECK:
        try:
            return {"key": cards.check_validate(value)}
        except PaymentError:
            raise BanValueError("a check number is 11 letters or digits") from None
    if kind == BanKind.PIN:
        try:
            return {"key": cards.pin_fingerprint(cards.pin_validate(value))}
        except PaymentError:
            raise BanValueError("a PIN is 4 digits") from None
    raise BanValueError(f"unknown kind {kind!r}: use card, bin, check or pin")


def ban_add(*, kind: str, value: str, reason: str = "", created_by_id: int | None = None) -> tuple[Ban, bool]:
    """Put a card, BIN, check or PIN on the ban list; (ban, created)."""
    fields = ban_fields(kind, value)
    try:
        with db_transaction.atomic():
            return Ban.objects.get_or_create(
                kind=kind, key=fields["key"],
                defaults={**fields, "reason": reason[:255], "created_by_id": created_by_id},
            )
    except IntegrityError:  # a concurrent insert of the same ban
        return Ban.objects.get(kind=kind, key=fields["key"]), False


@dataclass(frozen=True)
class BanImportResult:
    imported: int
    skipped: int


class BanImportError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}")


def bans_import(lines: Iterable[str], *, created_by_id: int | None = None) -> BanImportResult:
    """Import a CSV (``kind,value,reason``): the whole file, or nothing.

    Every row is validated before anything is written; a bad row raises
    BanImportError with its line number (the header is line 1).
    """
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header[:3]] != ["kind", "value", "reason"]:
        raise BanImportError(1, "the header must be kind,value,reason")
    rows: list[tuple[str, dict[str, str], str]] = []
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) < 2:
            raise BanImportError(line, "expected kind,value[,reason]")
        kind, value = row[0].strip().lower(), row[1]
        try:
            fields = ban_fields(kind, value)
        except BanValueError as exc:
            raise BanImportError(line, str(exc)) from None
        rows.append((kind, fields, row[2].strip() if len(row) > 2 else ""))
    imported = skipped = 0
    with db_transaction.atomic():
        for kind, fields, reason in rows:
            _, created = Ban.objects.get_or_create(
                kind=kind, key=fields["key"],
                defaults={**fields, "reason": reason[:255], "created_by_id": created_by_id},
            )
            imported += created
            skipped += not created
    return BanImportResult(imported=imported, skipped=skipped)

