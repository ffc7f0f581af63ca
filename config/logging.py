"""Log hygiene: nothing card-like reaches a log line (PCI DSS 3.4, 3.3.1).

The code never logs card numbers, PINs or CVVs on purpose (it logs masks);
this filter is the safety net for what it does not control: exception
messages, library logs, a developer's debug line, request paths. It masks:

- **the card segment of an esipay path, by its position** — not by what it
  looks like: in ``/cardpay/<uuid>/<cid>/<card>/<month>/<year>/<amount>``
  everything between the cid and the last three segments is replaced by
  ``****``, whatever it holds (digits with spaces, ``%20``-encoded, 8 digits,
  letters, slashes). Segments that are kept are kept only when they have
  their expected shape (a uuid, a cid, 1–2 digits, 4 digits, an amount);
  anything else in those places is masked too, and a path of a shape no
  esipay URL has is masked whole after the uuid. Paths are found in Django's
  request lines (``"GET /cardpay/… HTTP/1.1" 400 58``, percent-encoded) and
  request warnings (``Not Found: /cardpay/…``, decoded: spaces, quotes and
  newlines may be in it), where the filter knows from the record's
  arguments where a path ends;
- **PIN and CVV fields** in JSON (``"pin": "1234"``), Python reprs
  (``'cvv': '123'``), forms and key=value text (``pin=1234&cvv2=123``);
- **any run of 12–19 digits** (spaces or dashes allowed between them) and
  any run of 10–11 digits standing alone, by the same rule as every other
  mask (``payments.cards.mask_pan``): first 6 and last 4 from 15 digits, the
  last 4 only below (a short number's first six plus its last four would
  leave too few digits hidden: with the Luhn digit they rebuild it).
  Separators are allowed only in the long runs: a date and an hour
  (``2026-12-02 21``) make 10 digits with separators, and are not a card.
"""
from __future__ import annotations

import logging
import re

from payments.cards import mask_pan

# --- esipay paths, masked by position ----------------------------------------------------

CARDPAY = "/cardpay/"
MASK = "****"
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\Z")
_CID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
_MONTH = re.compile(r"[0-9]{1,2}\Z")
_YEAR = re.compile(r"[0-9]{4}\Z")
# At most 9 integer digits: a 10-digit "amount" is as long as the shortest card number.
_AMOUNT = re.compile(r"[0-9]{1,9}(\.[0-9]{1,6})?\Z")
_TRANSACTION = re.compile(r"[0-9]{1,9}\Z")
_REQUEST_VERSION = re.compile(r" HTTP/[0-9.]*")
# Where a path ends in free text: whitespace, a quote or bracket, or the end.
_FREE_TEXT_END = re.compile(r"[\s\"'<>()\[\]]")


def _kept(segment: str, shape: re.Pattern[str]) -> str:
    return segment if shape.match(segment) else MASK


def _query_item(item: str) -> str:
    """esipay's query has one parameter, ref (a merchant id); any other value is masked."""
    name, sep, value = item.partition("=")
    if name == "ref" and (not sep or _CID.match(value)):
        return item
    return MASK


def _mask_segments(path: str, *, query_allowed: bool) -> str:
    """``path`` is what follows ``/cardpay/``, up to where the path ends."""
    query = ""
    if query_allowed and "?" in path:  # a raw request target: what follows ? is its query
        path, query = path.split("?", 1)
        query = "?" + "&".join(_query_item(item) for item in query.split("&"))
    segments = path.split("/")
    kept = [_kept(segments[0], _UUID)]
    rest = segments[1:]
    if len(rest) >= 5:
        # /<uuid>/<cid>/<card...>/<month>/<year>/<amount>: the card is whatever lies
        # between the cid and the last three segments (decoded slashes included).
        kept += [_kept(rest[0], _CID), MASK, _kept(rest[-3], _MONTH), _kept(rest[-2], _YEAR),
                 _kept(rest[-1], _AMOUNT)]
    elif 1 <= len(rest) <= 2:
        # /<uuid>/<transaction>[/<amount>]: a refund (or a card path cut short).
        kept += [_kept(rest[0], _TRANSACTION), *([_kept(rest[1], _AMOUNT)] if len(rest) == 2 else [])]
    elif rest:
        kept.append(MASK)  # no esipay URL has this shape: nothing after the uuid is shown
    return "/".join(kept) + query


def mask_esipay_paths(text: str, *, whole: bool = False) -> str:
    """Every esipay path in ``text`` with its card segment masked by position.

    A path ends at the end of the text when ``whole`` (the text is one path,
    decoded, as Django's request warnings pass it), else at the last
    `` HTTP/`` of its line (a request line, whose target may hold raw spaces),
    else at the first whitespace, quote or bracket.
    """
    out: list[str] = []
    position = 0
    while (start := text.find(CARDPAY, position)) != -1:
        begin = start + len(CARDPAY)
        line_end = text.find("\n", begin)
        versions = list(_REQUEST_VERSION.finditer(text, begin, len(text) if line_end == -1 else line_end))
        if whole:
            end, query_allowed = len(text), False
        elif versions:
            end, query_allowed = versions[-1].start(), True
        else:
            found = _FREE_TEXT_END.search(text, begin)
            end, query_allowed = (found.start() if found else len(text)), True
        out += [text[position:begin], _mask_segments(text[begin:end], query_allowed=query_allowed)]
        position = end
    out.append(text[position:])
    return "".join(out)


# --- PIN and CVV fields ---------------------------------------------------------------------

_SECRET_FIELDS = r"pin|pin_?block|cvv2?|cvc2?|cav2|cvn|csc|cid_?code|security_?code|card_?security_?code|secret"
# A quoted key (JSON, a Python repr, JSON inside a string with \"), ':' or '=',
# then a quoted value or a bare one.
_QUOTED_FIELD = re.compile(
    rf"""(?P<key>(?P<q>\\?["'])(?:{_SECRET_FIELDS})(?P=q)\s*[:=]\s*)"""
    r"""(?P<value>\\?"(?:[^"\\]|\\.)*?\\?"|'[^']*'|[^\s,;&}\])]+)""",
    re.IGNORECASE,
)
# key=value (forms, query strings, kwargs reprs, log text).
_BARE_FIELD = re.compile(
    rf"""(?P<key>(?<![\w"'\\])(?:{_SECRET_FIELDS})(?:=|%3D))"""
    r"""(?P<value>"[^"]*"|'[^']*'|[^\s,;&}\])"']+)""",
    re.IGNORECASE,
)


def _hide_value(match: re.Match[str]) -> str:
    value = match.group("value")
    quote = value[0] if value[:1] in ("'", '"') else ("\\\"" if value.startswith('\\"') else "")
    return f"{match.group('key')}{quote}{MASK}{quote}"


def _mask_fields(text: str) -> str:
    return _BARE_FIELD.sub(_hide_value, _QUOTED_FIELD.sub(_hide_value, text))


# --- Anything that looks like a card number -----------------------------------------------

# 12–19 digits, separators allowed; or 10–11 digits with nothing alphanumeric around them
# (a short run glued to letters is a hex id or a token, and short card numbers are not
# written in groups).
_PAN_LIKE = re.compile(r"(?<!\d)(?:\d[ -]?){11,18}\d(?!\d)|(?<![0-9A-Za-z])\d{10,11}(?![0-9A-Za-z])")
# Uuids (merchant ids, event ids) are not card numbers, though their digit
# groups joined by dashes can look like one: the digit rule skips them.
_UUID_IN_TEXT = re.compile(
    r"(?<![0-9A-Za-z-])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![0-9A-Za-z-])"
)


def _mask_digits(match: re.Match[str]) -> str:
    return mask_pan(re.sub(r"\D", "", match.group(0)))


def _mask_pan_like(text: str) -> str:
    out: list[str] = []
    position = 0
    for uuid in _UUID_IN_TEXT.finditer(text):
        out += [_PAN_LIKE.sub(_mask_digits, text[position:uuid.start()]), uuid.group(0)]
        position = uuid.end()
    out.append(_PAN_LIKE.sub(_mask_digits, text[position:]))
    return "".join(out)


def redact(text: str, *, whole_path: bool = False) -> str:
    return _mask_pan_like(_mask_fields(mask_esipay_paths(text, whole=whole_path)))


def _redact_argument(value: object) -> object:
    # An argument of its own is a whole value: a path that is one argument
    # (Django's "Not Found: %s") ends where the argument ends, spaces and all.
    if isinstance(value, str):
        return redact(value, whole_path=value.startswith(CARDPAY))
    return value


class RedactCardNumbers(logging.Filter):
    """Installed on every handler (config/settings/base.py LOGGING)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_redact_argument(arg) for arg in record.args)
        elif isinstance(record.args, dict) and record.args:
            record.args = {key: _redact_argument(arg) for key, arg in record.args.items()}
        message = record.getMessage()
        redacted = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
