"""Key types: generation and encoding (PKCS#8 DER private keys, SPKI PEM public keys).

Private keys are generated, encoded once as PKCS#8 and never parsed back on a hot path:
loading an RSA private key with validation costs tens of milliseconds and holds the GIL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

# cryptography's key generation and serialization load on the first create or rotate: every
# cold start imports this module (for KEY_TYPES), a read never generates a key.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa


@dataclass(frozen=True)
class KeyType:
    name: str
    family: str  # "rsa" | "ec" | "aes"
    size: int  # RSA modulus bits, EC field bits, AES key bits
    curve: str | None = None  # JWK crv name for EC


KEY_TYPES: dict[str, KeyType] = {
    t.name: t
    for t in (
        KeyType("aes256-gcm96", "aes", 256),
        KeyType("rsa-2048", "rsa", 2048),
        KeyType("rsa-3072", "rsa", 3072),
        KeyType("rsa-4096", "rsa", 4096),
        KeyType("ecdsa-p256", "ec", 256, "P-256"),
        KeyType("ecdsa-p384", "ec", 384, "P-384"),
        KeyType("ecdsa-p521", "ec", 521, "P-521"),
    )
}
DEFAULT_TYPE = "rsa-2048"


@dataclass(frozen=True)
class KeyMaterial:
    """One version's material: private bytes (PKCS#8 DER, or raw AES) and the public PEM."""

    private: bytes
    public_pem: str | None

    def __repr__(self) -> str:  # never show key bytes in logs or tracebacks
        return f"KeyMaterial(private=<{len(self.private)} bytes>, public_pem=...)"


def generate(key_type: str) -> KeyMaterial:
    spec = KEY_TYPES[key_type]
    if spec.family == "aes":
        return KeyMaterial(os.urandom(spec.size // 8), None)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if spec.family == "rsa":
        private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = rsa.generate_private_key(
            public_exponent=65537, key_size=spec.size
        )
    else:
        assert spec.curve is not None
        curves: dict[str, ec.EllipticCurve] = {
            "P-256": ec.SECP256R1(),
            "P-384": ec.SECP384R1(),
            "P-521": ec.SECP521R1(),
        }
        private_key = ec.generate_private_key(curves[spec.curve])
    der = private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyMaterial(der, pem.decode())
