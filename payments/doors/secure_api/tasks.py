"""The secure API's housekeeping, run by Celery beat (``prune-secure-api``): what is
past its window is deleted (nonces, Idempotency-Keys, expired held CVVs, old call log)."""
from __future__ import annotations

import logging

from celery import shared_task

from merchants.accounts import held_cvvs_prune
from merchants.credentials import api_nonces_prune

from .calls import calls_prune
from .idempotency import prune as idempotency_prune

logger = logging.getLogger(__name__)


@shared_task(name="secure_api.prune")
def prune() -> dict[str, int]:
    done = {
        "nonces": api_nonces_prune(),
        "idempotency_keys": idempotency_prune(),
        "held_cvvs": held_cvvs_prune(),
        "api_calls": calls_prune(),
    }
    logger.info("secure API pruned: %s", done)
    return done
