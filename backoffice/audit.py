"""Recording staff actions in the audit log.

``audit_record`` writes one entry; call it inside the database transaction
of the change it describes, so the change and its entry commit together or
not at all. ``snapshot`` and ``changes_between`` turn model instances into
the before/after of the fields that changed.

What is never written: the value of a field whose name says it is a secret
(``secret``, ``digest``, ``sealed``, ``fingerprint``, ``password``, ``key``,
``pin``, ``cvv``, ``pan``, ``card_number``...): such a field is recorded as
changed (``redacted``), without its value. Any other value goes through
``_scrub``, which replaces a run of 10 or more digits (a card number is 10
to 19 digits) by its last four, should a card number ever reach a free-text
field.
"""
from __future__ import annotations

import datetime
import decimal
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import models
from django.http import HttpRequest

from .models import AuditAction, AuditEntry

# Words that make a field's value unfit for the log, whatever the model.
SECRET_WORDS = frozenset({
    "secret", "secrets", "digest", "sealed", "fingerprint", "password", "key", "keys", "pin", "cvv", "cvc",
    "cvv2", "pan", "track", "token",
})
SECRET_NAMES = frozenset({"card_number", "cardnumber", "value"})
_LONG_DIGITS = re.compile(r"\d{10,}")
_MAX_TEXT = 200


def is_secret_field(name: str) -> bool:
    lowered = name.lower()
    return lowered in SECRET_NAMES or bool(SECRET_WORDS.intersection(lowered.split("_")))


def _scrub_text(text: str, limit: int = _MAX_TEXT) -> str:
    text = _LONG_DIGITS.sub(lambda match: "*" * (len(match.group()) - 4) + match.group()[-4:], text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _scrub(value: Any) -> Any:
    """A JSON value of ``value`` with nothing card-like in it."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return _scrub(str(value)) if value >= 10**9 else value
    if isinstance(value, (str, decimal.Decimal, float, uuid.UUID)):
        return _scrub_text(str(value))
    if isinstance(value, datetime.datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): (None if is_secret_field(str(key)) else _scrub(item)) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_scrub(item) for item in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    return _scrub_text(str(value))


def snapshot(obj: models.Model, *, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of ``obj`` as staff would read them: foreign keys and
    many-to-many as the text of the related objects, secrets as ``None``
    (their change is still seen, through ``secret_fingerprint``)."""
    skipped = set(exclude)
    data: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        if field.primary_key or field.name in skipped:
            continue
        if getattr(field, "auto_now", False):
            continue  # moves with every save: noise
        if is_secret_field(field.name):
            # Compared, never written: audit entries say "changed" for it.
            data[field.name] = _SecretMarker(field.value_from_object(obj))
            continue
        if field.is_relation:
            related = getattr(obj, field.name, None)
            data[field.name] = None if related is None else str(related)
        else:
            data[field.name] = field.value_from_object(obj)
    if obj.pk is not None:
        for field in obj._meta.many_to_many:
            if field.name not in skipped:
                data[field.name] = sorted(str(related) for related in getattr(obj, field.name).all())
    return data


class _SecretMarker:
    """A secret's value held only to compare two snapshots in memory."""

    __slots__ = ("_value",)

    def __init__(self, value: object) -> None:
        self._value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _SecretMarker) and self._value == other._value

    def __hash__(self) -> int:
        return hash(repr(self._value))

    def __repr__(self) -> str:
        return "<secret>"


def changes_between(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The fields whose value differs, as ``{"field", "before", "after"}``;
    a secret as ``{"field", "redacted": True}``. ``before`` is None for an
    addition, ``after`` for a deletion."""
    before, after = before or {}, after or {}
    out: list[dict[str, Any]] = []
    for name in [*before, *(name for name in after if name not in before)]:
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if isinstance(old, _SecretMarker) or isinstance(new, _SecretMarker) or is_secret_field(name):
            out.append({"field": name, "redacted": True})
            continue
        if old in (None, "", [], {}) and new in (None, "", [], {}):
            continue
        out.append({"field": name, "before": _scrub(old), "after": _scrub(new)})
    return out


def object_type_of(obj: models.Model | type[models.Model]) -> str:
    return obj._meta.label_lower


def _client_address(request: HttpRequest | None) -> str | None:
    # REMOTE_ADDR: the peer as Django sees it (a deployment behind a proxy sets it).
    return (request.META.get("REMOTE_ADDR") or None) if request is not None else None


def audit_record(
    *,
    request: HttpRequest | None = None,
    actor: Any = None,
    action: AuditAction | str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: object = "",
    object_repr: str = "",
    changes: list[dict[str, Any]] | None = None,
    message: str = "",
) -> AuditEntry:
    """Append one entry: who (``request.user`` or ``actor``), what, on which object."""
    user = actor if actor is not None else getattr(request, "user", None)
    if obj is not None:
        object_type = object_type or object_type_of(obj)
        object_id = object_id or obj.pk
        object_repr = object_repr or str(obj)
    entry = AuditEntry(
        actor=user if user is not None and getattr(user, "pk", None) else None,
        actor_username=(user.get_username() if user is not None and getattr(user, "pk", None) else "(system)")[:150],
        ip_address=_client_address(request),
        action=str(action),
        object_type=object_type[:100],
        object_id=str(object_id or "")[:64],
        object_repr=_scrub_text(object_repr),
        changes=json.loads(json.dumps(changes or [], default=str)),
        message=_scrub_text(message, 500),
    )
    entry.save(force_insert=True)
    return entry
