"""The card vault: card numbers kept on file, and CVVs held for one authorization.

The only place a card number or a CVV is ever stored (PCI DSS 3.2, 3.5;
``shared`` architecture: "only where a card is kept on file, the number
encrypted"). Both are sealed with AES-256-GCM under sub-keys of
PAYMENTS_MASTER_KEY of their own ("card-vault", "card-vault-cvv"), never
the key that seals webhook secrets, and carry the key id that sealed them
(``payments.vault``'s format), so a value sealed under a rotated master key
fails loudly instead of decrypting to garbage.

- A card number is bound to its row: the stored card's uuid is the
  associated data, so a ciphertext copied onto another card does not open.
- A CVV is sealed under a key derived from the merchant's ``cardCVVEncKey``
  as well as the master key: the gateway keeps only a keyed digest of that
  key, so a copy of the database and the master key together still cannot
  open a held CVV. It is opened once, by the authorization that uses it,
  and its row is deleted in the same step (``merchants.accounts.cvv_take``).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import keys, vault

PAN_KEYRING = "card-vault"
_CVV_KEYRING = "card-vault-cvv"
_CVV_VERSION = "c1"


class CardVaultError(vault.VaultError):
    """A sealed card value that cannot be opened (other key, tampered, another row)."""


def pan_seal(pan: str, *, card_uuid: str) -> str:
    return vault.seal(pan, purpose=f"pan:{card_uuid}", keyring=PAN_KEYRING)


def pan_open(sealed: str, *, card_uuid: str) -> str:
    try:
        return vault.unseal(sealed, purpose=f"pan:{card_uuid}", keyring=PAN_KEYRING)
    except vault.VaultError as exc:
        raise CardVaultError(str(exc)) from None


def pan_key_id() -> str:
    """The id of the key card numbers are sealed under now (shown to staff, stored in each row)."""
    return vault.key_id(PAN_KEYRING)


def cvv_key_digest(cvv_key: str) -> str:
    """What the database keeps of a ``cardCVVEncKey``: a keyed digest, to find the held CVV."""
    return keys.fingerprint("cvv-key", cvv_key)


def _cvv_aead(cvv_key: str) -> AESGCM:
    return AESGCM(hmac.new(keys.subkey(_CVV_KEYRING), cvv_key.encode(), hashlib.sha256).digest())


def cvv_seal(cvv: str, *, cvv_key: str, card_uuid: str) -> str:
    nonce = os.urandom(12)
    sealed = _cvv_aead(cvv_key).encrypt(nonce, cvv.encode(), f"cvv:{card_uuid}".encode())
    return f"{_CVV_VERSION}:{vault.key_id(_CVV_KEYRING)}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def cvv_open(sealed: str, *, cvv_key: str, card_uuid: str) -> str:
    try:
        version, kid, payload = sealed.split(":", 2)
        blob = base64.urlsafe_b64decode(payload.encode())
    except (ValueError, TypeError):
        raise CardVaultError("not a sealed CVV") from None
    if version != _CVV_VERSION or kid != vault.key_id(_CVV_KEYRING):
        raise CardVaultError(f"CVV sealed under key {kid}, not the current one: was PAYMENTS_MASTER_KEY rotated?")
    try:
        return _cvv_aead(cvv_key).decrypt(blob[:12], blob[12:], f"cvv:{card_uuid}".encode()).decode()
    except InvalidTag:
        raise CardVaultError("the held CVV does not open with this key") from None
