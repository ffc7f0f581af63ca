"""Log hygiene: nothing card-like reaches a log line (PCI DSS 3.4).

The code never logs card numbers on purpose (it logs masks); this filter is
the safety net for what it does not control: exception messages, library
logs, a developer's debug line. Any run of 12–19 digits (spaces or dashes
allowed between them) is masked to its first 6 and last 4 digits.
"""
from __future__ import annotations

import logging
import re

_PAN_LIKE = re.compile(r"(?<!\d)(?:\d[ -]?){11,18}\d(?!\d)")
# esipay carries the card number in the path, and accepts 10- and 11-digit
# numbers that the pattern above would not catch: in anything that looks like
# an esipay path (access logs, Django's "Bad Request: /cardpay/..." and "Not
# Found" lines, tracebacks), every run of 10 or more digits is masked, whatever
# segment it is in (a truncated or malformed path shifts the segments).
_ESIPAY_PATH = re.compile(r"/cardpay/\S*")
_LONG_DIGITS = re.compile(r"\d{10,}")


def _mask(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def redact(text: str) -> str:
    text = _ESIPAY_PATH.sub(lambda m: _LONG_DIGITS.sub(lambda d: "*" * len(d.group(0)), m.group(0)), text)
    return _PAN_LIKE.sub(_mask, text)


class RedactCardNumbers(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
