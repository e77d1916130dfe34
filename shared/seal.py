"""Envelope encryption of key material and credentials at rest.

Each sealed value gets a fresh 256-bit data key; the value is encrypted with AES-256-GCM under
it, with the row's identity (mount, key, version, purpose) as associated data, so a row copied
to another key or version fails to open. The data key is wrapped by the seal key: a 256-bit key
from settings (development) or a Key Vault key through wrapKey/unwrapKey (production).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import SealError, UpstreamUnavailable

_NONCE = 12
_MIN_SEALED = _NONCE + 16  # nonce and AES-GCM tag: anything shorter was cut
_DEK_AAD = b"azure-keymgmt/dek/v1"


class SealKey(Protocol):
    """Wraps and unwraps data keys. ``key_id`` names the exact key (version) that wrapped."""

    def wrap(self, dek: bytes) -> tuple[bytes, str]: ...

    def unwrap(self, wrapped: bytes, key_id: str) -> bytes: ...


class LocalSealKey:
    """A 256-bit AES key from settings, for development and tests."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the local seal key must be 32 bytes")
        self._aead = AESGCM(key)
        self.key_id = "local:" + hashlib.sha256(b"azure-keymgmt/kid" + key).hexdigest()[:16]

    def wrap(self, dek: bytes) -> tuple[bytes, str]:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, dek, _DEK_AAD), self.key_id

    def unwrap(self, wrapped: bytes, key_id: str) -> bytes:
        if key_id != self.key_id:
            raise SealError(
                f"sealed with another seal key ({key_id}); this service has {self.key_id}"
            )
        if len(wrapped) < _MIN_SEALED:
            raise SealError("the wrapped data key is truncated")
        try:
            return self._aead.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], _DEK_AAD)
        except InvalidTag:
            raise SealError("the wrapped data key does not open with the seal key") from None


class KeyVaultSealKey:
    """A Key Vault RSA key; data keys are wrapped with RSA-OAEP-256 inside Key Vault."""

    def __init__(self, key_id: str, crypto_client_factory: Any) -> None:
        self.key_id = key_id
        self._factory = crypto_client_factory  # key id → CryptographyClient
        self._clients: dict[str, Any] = {}

    def _client(self, key_id: str) -> Any:
        client = self._clients.get(key_id)
        if client is None:
            client = self._clients[key_id] = self._factory(key_id)
        return client

    def wrap(self, dek: bytes) -> tuple[bytes, str]:
        from azure.core.exceptions import AzureError
        from azure.keyvault.keys.crypto import KeyWrapAlgorithm

        from shared.azure import brief_error

        try:
            result = self._client(self.key_id).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, dek)
        except AzureError as exc:
            raise UpstreamUnavailable(
                f"seal key {self.key_id}: wrapKey failed: {brief_error(exc)}"
            ) from None
        return result.encrypted_key, result.key_id or self.key_id

    def unwrap(self, wrapped: bytes, key_id: str) -> bytes:
        from azure.core.exceptions import AzureError
        from azure.keyvault.keys.crypto import KeyWrapAlgorithm

        from shared.azure import brief_error

        try:
            result = self._client(key_id).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped)
        except AzureError as exc:
            raise SealError(f"seal key {key_id}: unwrapKey failed: {brief_error(exc)}") from None
        return bytes(result.key)


@dataclass(frozen=True)
class Sealed:
    """What a table row stores for one sealed value."""

    seal_key_id: str
    wrapped_dek: bytes
    ciphertext: bytes  # nonce || AES-GCM ciphertext and tag

    def __repr__(self) -> str:
        return f"Sealed(seal_key_id={self.seal_key_id!r}, ...)"


class Sealer:
    def __init__(self, seal_key: SealKey) -> None:
        self.seal_key = seal_key

    def seal(self, plaintext: bytes, context: str) -> Sealed:
        dek = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE)
        ciphertext = nonce + AESGCM(dek).encrypt(nonce, plaintext, context.encode())
        wrapped, key_id = self.seal_key.wrap(dek)
        return Sealed(key_id, wrapped, ciphertext)

    def open(self, sealed: Sealed, context: str) -> bytes:
        dek = self.seal_key.unwrap(sealed.wrapped_dek, sealed.seal_key_id)
        ct = sealed.ciphertext
        if len(ct) < _MIN_SEALED:
            raise SealError(f"sealed data for {context} is truncated: the row was tampered with")
        try:
            return AESGCM(dek).decrypt(ct[:_NONCE], ct[_NONCE:], context.encode())
        except InvalidTag:
            raise SealError(
                f"sealed data does not open for {context}: the row was tampered with or "
                "moved from another key or version"
            ) from None


def material_context(mount: str, key: str, version: int) -> str:
    return f"azure-keymgmt/v1/key-material/{mount}/{key}/{version}"


def credentials_context(mount: str, provider: str) -> str:
    return f"azure-keymgmt/v1/kms-credentials/{mount}/{provider}"
