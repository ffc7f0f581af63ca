"""Secrets the gateway must read back (webhook signing secrets, later the card
vault), encrypted with AES-GCM under a key derived from PAYMENTS_MASTER_KEY.

The stored text is ``v1:<key id>:<base64url(nonce || ciphertext+tag)>``. The
key id names the master key that sealed it, so that after a rotation a value
sealed under another key fails loudly instead of decrypting to garbage. The
purpose (``webhook-secret``...) is bound as associated data: a ciphertext
moved to another column does not open.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import keys

_VERSION = "v1"


class VaultError(ValueError):
    """A sealed value that cannot be opened (other key, tampered, malformed)."""


def key_id(keyring: str = "vault") -> str:
    """A short public name of the current encryption key (not the key)."""
    return hmac.new(keys.subkey(f"{keyring}-key-id"), b"id", hashlib.sha256).hexdigest()[:8]


def seal(plaintext: str, *, purpose: str, keyring: str = "vault") -> str:
    """``keyring`` names the sub-key of PAYMENTS_MASTER_KEY (the card vault has its own)."""
    nonce = os.urandom(12)
    sealed = AESGCM(keys.subkey(keyring)).encrypt(nonce, plaintext.encode(), purpose.encode())
    return f"{_VERSION}:{key_id(keyring)}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def unseal(stored: str, *, purpose: str, keyring: str = "vault") -> str:
    try:
        version, kid, payload = stored.split(":", 2)
        blob = base64.urlsafe_b64decode(payload.encode())
    except (ValueError, TypeError):
        raise VaultError("not a sealed value") from None
    if version != _VERSION:
        raise VaultError(f"unknown vault version {version!r}")
    if kid != key_id(keyring):
        raise VaultError(
            f"sealed under key {kid}, the current key is {key_id(keyring)}: was PAYMENTS_MASTER_KEY rotated?"
        )
    try:
        return AESGCM(keys.subkey(keyring)).decrypt(blob[:12], blob[12:], purpose.encode()).decode()
    except InvalidTag:
        raise VaultError("the sealed value was tampered with or belongs elsewhere") from None
