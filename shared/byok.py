"""Microsoft's BYOK transfer blob (CKM_RSA_AES_KEY_WRAP), built from key bytes. Pure functions.

The target key travels as given (PKCS#8 DER for RSA/EC, raw bytes for symmetric keys): it is
never parsed here. Wrapping, as the Key Vault BYOK specification defines it:

1. a fresh random 32-byte AES key;
2. that AES key encrypted to the KEK public key with RSA-OAEP, SHA-1, MGF1-SHA-1, no label;
3. the target bytes wrapped under the AES key with AES Key Wrap with Padding (RFC 5649);
4. ciphertext = RSA part (modulus length) || key-wrap part, base64url without padding, in
   ``{"schema_version": "1.0.0", "header": {"kid", "alg": "dir", "enc":
   "CKM_RSA_AES_KEY_WRAP"}, "ciphertext", "generator"}``.

The blob bytes become ``JsonWebKey(kty="RSA-HSM", t=blob, ...)`` for ``KeyClient.import_key``.
"""

from __future__ import annotations

import base64
import json
import os
from typing import TYPE_CHECKING

# cryptography's OAEP and key wrap load on the first distribution (every cold start imports
# this module through the provider registry; a read never builds a blob).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

SCHEMA_VERSION = "1.0.0"
ALG = "dir"
ENC = "CKM_RSA_AES_KEY_WRAP"
AES_KEY_BYTES = 32
KEK_SIZES = (2048, 3072, 4096)


def b64url(data: bytes) -> str:
    """base64url without padding, as the blob's ``ciphertext`` uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def build_transfer_blob(
    target_pkcs8_or_raw: bytes,
    kek_public_key: rsa.RSAPublicKey,
    kek_kid: str,
    *,
    generator: str,
) -> bytes:
    """Wrap the target key bytes for the KEK ``kek_kid``; return the UTF-8 JSON blob bytes."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

    if not isinstance(kek_public_key, rsa.RSAPublicKey):
        raise TypeError("kek_public_key must be an RSA public key")
    if kek_public_key.key_size not in KEK_SIZES:
        raise ValueError(
            f"the KEK must be RSA 2048, 3072 or 4096 bits, not {kek_public_key.key_size}"
        )
    if not target_pkcs8_or_raw:
        raise ValueError("the target key bytes are empty")
    if not kek_kid.startswith("https://") or "/keys/" not in kek_kid:
        raise ValueError("kek_kid must be the KEK's full versioned key id")
    if not generator:
        raise ValueError("generator must name the tool and version")
    aes_key = os.urandom(AES_KEY_BYTES)
    rsa_part = kek_public_key.encrypt(
        aes_key,
        padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None),  # noqa: S303 - the BYOK specification's mechanism
    )
    wrap_part = aes_key_wrap_with_padding(aes_key, target_pkcs8_or_raw)
    blob = {
        "schema_version": SCHEMA_VERSION,
        "header": {"kid": kek_kid, "alg": ALG, "enc": ENC},
        "ciphertext": b64url(rsa_part + wrap_part),
        "generator": generator,
    }
    return json.dumps(blob, separators=(",", ":")).encode("utf-8")
