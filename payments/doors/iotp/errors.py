"""RFC 3867 §3.1 errors: ErrorCode, Severity, ErrorLocation (ElementRef / AttName)."""
from __future__ import annotations

from dataclasses import dataclass

HARD = "HardError"
TRANSIENT = "TransientError"


@dataclass
class IotpError(Exception):
    """One ErrorResponse. ``element`` and ``attribute`` fill its ErrorLocation:
    our elements have no ID attributes, so ElementRef names the element."""

    code: str
    desc: str
    severity: str = HARD
    element: str = ""
    attribute: str = ""
    min_retry_secs: int | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.desc}"


def att_missing(element: str, attribute: str) -> IotpError:
    return IotpError("AttMissing", f"{element} needs the attribute {attribute}", element=element, attribute=attribute)


def att_illegal(element: str, attribute: str, why: str) -> IotpError:
    return IotpError("AttValIllegal", f"{attribute}: {why}", element=element, attribute=attribute)


def el_missing(parent: str, element: str, why: str) -> IotpError:
    return IotpError("ElMissing", why, element=element or parent)


def bus_error(element: str, why: str, attribute: str = "PayId") -> IotpError:
    return IotpError("BusError", why, element=element, attribute=attribute)
