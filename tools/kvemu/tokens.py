"""Access tokens: compact JWS (RS256) signed by the emulator's Entra-like issuer.

Shaped as Entra ID access tokens (see docs/kvemu.md, "Entra ID tokens and metadata"):
version 1.0 (``iss`` ``https://sts.windows.net/<tenant>/``, ``appid``/``appidacr``) for
first-party resources and apps that accept v1 tokens, version 2.0 (``iss``
``<authority>/<tenant>/v2.0``, ``aud`` the API's client id, ``azp``/``azpacr``) for apps with
``accessTokenAcceptedVersion: 2``. Signing keys carry a self-signed certificate, as Entra's
do (``kid`` = ``x5t`` = base64url SHA-1 thumbprint), and roll over with a next and previous
key published beside the current one.
"""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

KEYVAULT_AUDIENCE = "https://vault.azure.net"
MANAGED_HSM_AUDIENCE = "https://managedhsm.azure.net"
CLOCK_SKEW_SECONDS = 60
# The subject of Entra ID's token-signing certificates (as their x5c shows).
SIGNING_CERT_SUBJECT = "accounts.accesscontrol.windows.net"
# Fixed validity, so that a key's certificate (and so its kid) is the same at every start.
_CERT_NOT_BEFORE = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
_CERT_NOT_AFTER = datetime.datetime(2044, 1, 1, tzinfo=datetime.UTC)


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


def resource_of(resource_or_scope: str) -> str:
    """The resource a request names: a scope loses its ``/.default``; the rest is kept as
    sent (Entra's v1 ``aud`` is the requested string, trailing slash included)."""
    value = resource_or_scope.strip()
    if value.endswith("/.default"):
        value = value[: -len("/.default")]
    return value


def scope_to_audience(resource_or_scope: str) -> str:
    """``https://vault.azure.net/.default`` and ``https://vault.azure.net/`` both name the
    audience ``https://vault.azure.net`` (for comparing audiences, as Key Vault does)."""
    return resource_of(resource_or_scope).rstrip("/")


class SigningKey:
    """An RSA key with the self-signed certificate its JWK publishes (``x5c``)."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self.private_key = private_key
        public = private_key.public_key()
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        digest = hashes.Hash(hashes.SHA256())
        digest.update(der)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SIGNING_CERT_SUBJECT)])
        # Every field fixed and PKCS#1 v1.5 deterministic: the same key gives the same
        # certificate, thumbprint and kid after a restart.
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(int.from_bytes(digest.finalize()[:16], "big") >> 1)
            .not_valid_before(_CERT_NOT_BEFORE)
            .not_valid_after(_CERT_NOT_AFTER)
            .sign(private_key, hashes.SHA256())
        )
        self.certificate_der = certificate.public_bytes(serialization.Encoding.DER)
        # x5t (RFC 7517) is the certificate's SHA-1 thumbprint; Entra uses it as the kid too.
        self.kid = b64url_encode(certificate.fingerprint(hashes.SHA1()))  # noqa: S303

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("a token-signing key must be RSA")
        return cls(key)

    def private_pem(self) -> bytes:
        """For persisting in the caller's private state dir only."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def jwk(self, *, issuer: str | None = None) -> dict[str, Any]:
        numbers = self.private_key.public_key().public_numbers()
        jwk: dict[str, Any] = {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": b64url_encode(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": b64url_encode(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
            "x5c": [base64.b64encode(self.certificate_der).decode("ascii")],
        }
        if issuer is not None:
            jwk["issuer"] = issuer
        return jwk


class TokenIssuer:
    """Signs and verifies the emulator's access tokens; holds the published signing keys:
    the current one (signs), pre-published next ones, and previous ones kept after a
    rollover (until retired, or until their ``until`` time passes)."""

    def __init__(
        self,
        tenant_id: str,
        signing_key: rsa.RSAPrivateKey | SigningKey | None = None,
        *,
        authority: str = "https://login.microsoftonline.com",
    ) -> None:
        self.tenant_id = tenant_id
        self.authority = authority.rstrip("/")
        if signing_key is None:
            signing_key = SigningKey.generate()
        elif isinstance(signing_key, rsa.RSAPrivateKey):
            signing_key = SigningKey(signing_key)
        self.current = signing_key
        self.next: list[SigningKey] = []
        self.previous: list[tuple[SigningKey, float | None]] = []
        self._lock = threading.Lock()

    # --- keys ---------------------------------------------------------------------------------

    @property
    def key_id(self) -> str:
        return self.current.kid

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.current.private_key.public_key()

    def published(self) -> list[SigningKey]:
        """The keys the keys documents list: current, next, then unexpired previous ones."""
        now = time.time()
        with self._lock:
            self.previous = [(k, t) for k, t in self.previous if t is None or t > now]
            return [self.current, *self.next, *(k for k, _ in self.previous)]

    def prepare_next(self) -> SigningKey:
        """Publish a key that does not sign yet; the next rollover promotes it."""
        key = SigningKey.generate()
        with self._lock:
            self.next.append(key)
        return key

    def rotate(self, *, previous_seconds: float | None = None) -> SigningKey:
        """The next key (or a new one) signs from now on; the old key stays published, for
        ``previous_seconds`` or until ``retire_previous``."""
        fresh = None if self.next else SigningKey.generate()  # RSA generation outside the lock
        until = None if previous_seconds is None else time.time() + previous_seconds
        with self._lock:
            new = self.next.pop(0) if self.next else (fresh or SigningKey.generate())
            self.previous.insert(0, (self.current, until))
            self.current = new
        return new

    def retire_previous(self) -> list[str]:
        with self._lock:
            retired = [k.kid for k, _ in self.previous]
            self.previous = []
        return retired

    def to_state(self) -> dict[str, Any]:
        """Private key material, for the emulator's own state file only."""
        return {
            "current": self.current.private_pem().decode("ascii"),
            "next": [k.private_pem().decode("ascii") for k in self.next],
            "previous": [
                {"key": k.private_pem().decode("ascii"), "until": until}
                for k, until in self.previous
            ],
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.current = SigningKey.from_pem(str(state["current"]).encode("ascii"))
        self.next = [SigningKey.from_pem(str(p).encode("ascii")) for p in state.get("next", [])]
        self.previous = [
            (SigningKey.from_pem(str(p["key"]).encode("ascii")), p.get("until"))
            for p in state.get("previous", [])
        ]

    def signing_key_pem(self) -> bytes:
        """For persisting the issuer key in the caller's private state dir only."""
        return self.current.private_pem()

    # --- issuers ------------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        """The v1.0 issuer (first-party resources, Key Vault among them)."""
        return f"https://sts.windows.net/{self.tenant_id}/"

    @property
    def issuer_v2(self) -> str:
        return f"{self.authority}/{self.tenant_id}/v2.0"

    # --- tokens -------------------------------------------------------------------------------

    def issue(
        self,
        *,
        audience: str,
        object_id: str,
        app_id: str,
        lifetime_seconds: int = 3600,
        now: int | None = None,
        version: int = 1,
        client_auth: str = "1",
        extra: Mapping[str, Any] | None = None,
    ) -> tuple[str, int]:
        """Return ``(token, expires_on)``. ``audience`` goes into ``aud`` as given (a scope's
        ``/.default`` removed); ``client_auth`` is ``appidacr``/``azpacr`` ("1" secret, "2"
        certificate or managed identity); ``extra`` adds claims (roles, groups, xms_mirid)."""
        issued = int(time.time()) if now is None else now
        expires_on = issued + lifetime_seconds
        claims: dict[str, Any] = {
            "aud": resource_of(audience),
            "iss": self.issuer if version == 1 else self.issuer_v2,
            "iat": issued,
            "nbf": issued - 5 if lifetime_seconds > 0 else issued - 2 * CLOCK_SKEW_SECONDS - 600,
            "exp": expires_on,
        }
        if version == 1:
            claims.update(appid=app_id, appidacr=client_auth, idp=self.issuer)
        else:
            claims.update(azp=app_id, azpacr=client_auth)
        claims.update(
            idtyp="app",
            oid=object_id,
            sub=object_id,
            tid=self.tenant_id,
            uti=b64url_encode(uuid.uuid4().bytes),
            ver="1.0" if version == 1 else "2.0",
        )
        claims.update(extra or {})
        # v1.0 tokens carry the legacy x5t header beside kid; v2.0 tokens only kid.
        key = self.current  # one key for the header and the signature, even mid-rollover
        header: dict[str, Any] = {"typ": "JWT", "alg": "RS256"}
        if version == 1:
            header["x5t"] = key.kid
        header["kid"] = key.kid
        signing_input = (
            b64url_encode(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = key.private_key.sign(
            signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{b64url_encode(signature)}", expires_on

    def verify(self, token: str, *, audience: str = KEYVAULT_AUDIENCE) -> Principal:
        """As Key Vault does: signature by a published key, v1 issuer and tenant, audience
        and lifetime; return the caller."""
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
        key = next((k for k in self.published() if k.kid == header.get("kid")), None)
        if header.get("alg") != "RS256" or key is None:
            raise TokenError("The token was not issued by a trusted issuer (unknown signing key).")
        try:
            key.private_key.public_key().verify(
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
