"""Calls to the acquirer: the one place that decides what a connector's failure means.

Connectors are called outside any database transaction (they may do
network I/O, asserted by the callers).
"""
from __future__ import annotations

import logging

from ..acquirers.base import AcquirerResult, Outcome

logger = logging.getLogger(__name__)


def acquirer_call(call, *args, **kwargs) -> AcquirerResult:  # type: ignore[no-untyped-def]
    """An acquirer call; an exception becomes a technical failure, never a crash."""
    try:
        return call(*args, **kwargs)
    except Exception:  # the connector's failure must not lose the transaction
        logger.exception("acquirer call %s failed", getattr(call, "__name__", call))
        return AcquirerResult(Outcome.ERROR, decline_code="acquirer_unavailable", reason="acquirer unavailable")
