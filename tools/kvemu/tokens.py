"""Access tokens: compact JWS (RS256) signed and verified by the emulator's own issuer key.

Shaped like Entra ID v1 access tokens for Key Vault: ``aud``, ``iss``
(``https://sts.windows.net/<tenant>/``), ``tid``, ``oid``, ``appid``, ``iat``, ``nbf``, ``exp``.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

KEYVAULT_AUDIENCE = "https://vault.azure.net"
MANAGED_HSM_AUDIENCE = "https://managedhsm.azure.net"
CLOCK_SKEW_SECONDS = 60


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding (standard base64 alphabet tolerated)."""
    cleaned = text.strip().replace("+", "-").replace("/", "_").rstrip("=")
    return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))


class TokenError(Exception):
    """The bearer token is malformed, forged, expired or for another audience/tenant."""


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    object_id: str
    app_id: str
    issuer: str


def scope_to_audience(resource_or_scope: str) -> str:
    """``https://vault.azure.net/.default`` and ``https://vault.azure.net/`` both name the
    audience ``https://vault.azure.net``."""
    value = resource_or_scope.strip()
    if value.endswith("/.default"):
        value = value[: -len("/.default")]
    return value.rstrip("/")


class TokenIssuer:
    """Signs and verifies the emulator's access tokens."""

    def __init__(self, tenant_id: str, signing_key: rsa.RSAPrivateKey | None = None) -> None:
        self.tenant_id = tenant_id
        self._key = signing_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        digest = hashes.Hash(hashes.SHA256())
        digest.update(der)
        self.key_id = b64url_encode(digest.finalize()[:15])

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self._key.public_key()

    @property
    def issuer(self) -> str:
        return f"https://sts.windows.net/{self.tenant_id}/"

    def signing_key_pem(self) -> bytes:
        """For persisting the issuer key in the caller's private state dir only."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def issue(
        self,
        *,
        audience: str,
        object_id: str,
        app_id: str,
        lifetime_seconds: int = 3600,
        now: int | None = None,
    ) -> tuple[str, int]:
        """Return ``(token, expires_on)``."""
        issued = int(time.time()) if now is None else now
        expires_on = issued + lifetime_seconds
        claims: dict[str, Any] = {
            "aud": scope_to_audience(audience),
            "iss": self.issuer,
            "iat": issued,
            "nbf": issued - 5 if lifetime_seconds > 0 else issued - 2 * CLOCK_SKEW_SECONDS - 600,
            "exp": expires_on,
            "tid": self.tenant_id,
            "oid": object_id,
            "sub": object_id,
            "appid": app_id,
            "appidacr": "1",
            "idtyp": "app",
            "uti": uuid.uuid4().hex,
            "ver": "1.0",
        }
        header = {"alg": "RS256", "typ": "JWT", "kid": self.key_id}
        signing_input = (
            b64url_encode(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = self._key.sign(
            signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{b64url_encode(signature)}", expires_on

    def verify(self, token: str, *, audience: str = KEYVAULT_AUDIENCE) -> Principal:
        """Check signature, issuer, tenant, audience and lifetime; return the caller."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("The token is not a JWT.")
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
        except (ValueError, TypeError) as exc:
            raise TokenError("The token is not a JWT.") from exc
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise TokenError("The token is not a JWT.")
        if header.get("alg") != "RS256" or header.get("kid") != self.key_id:
            raise TokenError("The token was not issued by a trusted issuer (unknown signing key).")
        try:
            self._key.public_key().verify(
                signature,
                f"{parts[0]}.{parts[1]}".encode("ascii"),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature as exc:
            raise TokenError("The token signature is invalid.") from exc
        if claims.get("iss") != self.issuer or claims.get("tid") != self.tenant_id:
            raise TokenError(
                f"AKV10032: Invalid issuer. Expected one of {self.issuer}, found "
                f"{claims.get('iss')}."
            )
        aud = claims.get("aud")
        if not isinstance(aud, str) or scope_to_audience(aud) != scope_to_audience(audience):
            if audience == MANAGED_HSM_AUDIENCE:
                raise TokenError(f"Found token with aud={aud}, but expected aud={audience}")
            raise TokenError(f"AKV10022: Invalid audience. Expected {audience}, found: {aud}.")
        now = int(time.time())
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int) or exp + CLOCK_SKEW_SECONDS < now:
            raise TokenError("The access token has expired.")
        if isinstance(nbf, int) and nbf - CLOCK_SKEW_SECONDS > now:
            raise TokenError("The token is not yet valid.")
        return Principal(
            tenant_id=str(claims.get("tid")),
            object_id=str(claims.get("oid", "")),
            app_id=str(claims.get("appid", "")),
            issuer=str(claims.get("iss")),
        )
