"""Keys derived from PAYMENTS_MASTER_KEY, and the keyed fingerprints built on them.

One master key (a setting, never in the database) is stretched with HKDF
into one sub-key per purpose, so a fingerprint key can never decrypt, nor
a terminal-secret digest be compared with a card fingerprint.
"""
from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


@lru_cache(maxsize=16)
def _derive(master: str, purpose: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"payment-gateway/v1",
        info=purpose.encode(),
    ).derive(master.encode())


def subkey(purpose: str) -> bytes:
    return _derive(settings.PAYMENTS_MASTER_KEY, purpose)


def fingerprint(kind: str, value: str) -> str:
    """Keyed HMAC-SHA256 of a card number, PIN or other secret, as hex.

    Equal values give equal fingerprints (so bans, limits and idempotency
    work) but nobody without the master key can test a guess against one.
    """
    return hmac.new(subkey("fingerprint"), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def secret_digest(secret: str) -> str:
    """Digest under which a high-entropy credential (terminal secret) is stored."""
    return hmac.new(subkey("credential"), secret.encode(), hashlib.sha256).hexdigest()


def secret_matches(secret: str, digest: str) -> bool:
    return hmac.compare_digest(secret_digest(secret), digest)
