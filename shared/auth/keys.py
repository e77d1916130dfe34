"""Where a login's signing keys come from: PEM public keys, a JWKS URL, or an OIDC
discovery document; and the signature check itself (PyJWT).

Network fetches are bounded (timeout, size, no redirects), TLS is verified (against the CA
PEM the method's config names, else the system's), and what was fetched is cached per
process: a JWKS for ``JWKS_LIFESPAN`` seconds and fetched again for an unknown ``kid`` at
most every ``JWKS_COOLDOWN`` seconds (PyJWKClient's own rate limit); a discovery document for
``DISCOVERY_LIFESPAN`` seconds. An unreachable issuer is a 503, never a 500 or a hang.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from shared.errors import InvalidRequest, UpstreamUnavailable

# Asymmetric algorithms only (OpenBao's AllowedJWTSignatureAlgorithmsBao): never none or HS*.
ALLOWED_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
    "EdDSA",
)
FETCH_TIMEOUT = 10.0  # seconds, per request
MAX_DOCUMENT = 1024 * 1024  # bytes: a discovery document or key set is a few KB
JWKS_LIFESPAN = 300.0
JWKS_COOLDOWN = 5.0  # an unannounced key rotation is seen at most this long after a fetch
DISCOVERY_LIFESPAN = 3600.0

NO_KEY = "error verifying token signature: no known key successfully validated the token signature"
MALFORMED = (
    "error verifying token signature: the token is not a JWT (three base64url parts: a "
    "JSON header, a JSON payload, a signature)"
)


class SignatureError(Exception):
    """The token's signature could not be verified; the text is safe to show."""


def tls_context(ca_pem: str) -> ssl.SSLContext:
    """Certificate-verifying TLS: the given CA PEM, or the system's trust store."""
    context = ssl.create_default_context()
    if ca_pem:
        try:
            context = ssl.create_default_context(cadata=ca_pem)
        except (ssl.SSLError, ValueError):
            raise InvalidRequest("could not parse the CA PEM: expect PEM certificates") from None
    return context


def tls_context_file(ca_file: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is answered as the error it then is


def fetch_json(url: str, context: ssl.SSLContext) -> Any:
    """GET a JSON document over HTTPS (or HTTP only for loopback test issuers, as given);
    UpstreamUnavailable when it cannot be had."""
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=context))
    if not url.lower().startswith(("https://", "http://")):
        raise UpstreamUnavailable("only https:// (or http://) URLs are fetched")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    try:
        with opener.open(request, timeout=FETCH_TIMEOUT) as response:
            body = response.read(MAX_DOCUMENT + 1)
    except urllib.error.HTTPError as exc:
        raise UpstreamUnavailable(f"{url} answered {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UpstreamUnavailable(f"{url} could not be reached: {reason}") from None
    if len(body) > MAX_DOCUMENT:
        raise UpstreamUnavailable(f"{url} answered more than {MAX_DOCUMENT} bytes")
    try:
        return json.loads(body)
    except ValueError:
        raise UpstreamUnavailable(f"{url} did not answer JSON") from None


@dataclass(frozen=True)
class Discovery:
    issuer: str
    jwks_uri: str


_lock = threading.Lock()
_discovery: dict[tuple[str, str], tuple[float, Discovery]] = {}
_jwks: dict[tuple[str, str], jwt.PyJWKClient] = {}


def discover(document_url: str, ca_pem: str, *, context: ssl.SSLContext | None = None) -> Discovery:
    """The OpenID provider metadata at ``document_url``: its issuer and jwks_uri (cached)."""
    key = (document_url, ca_pem)
    with _lock:
        cached = _discovery.get(key)
    if cached is not None and time.monotonic() - cached[0] < DISCOVERY_LIFESPAN:
        return cached[1]
    document = fetch_json(document_url, context or tls_context(ca_pem))
    issuer = document.get("issuer") if isinstance(document, dict) else None
    jwks_uri = document.get("jwks_uri") if isinstance(document, dict) else None
    if not isinstance(issuer, str) or not isinstance(jwks_uri, str) or not jwks_uri:
        raise UpstreamUnavailable(f"{document_url} is not an OpenID provider metadata document")
    found = Discovery(issuer, jwks_uri)
    with _lock:
        _discovery[key] = (time.monotonic(), found)
    return found


class _BoundedJWKClient(jwt.PyJWKClient):
    """PyJWKClient (its caches and kid refetch rate limit) fetching through ``fetch_json``, so
    a key set answer is bounded in size as every other fetch is (PyJWT reads all of it)."""

    def __init__(self, uri: str, *, context: ssl.SSLContext, **options: Any) -> None:
        super().__init__(uri, ssl_context=context, **options)
        self._context = context

    def fetch_data(self) -> Any:
        try:
            data = fetch_json(self.uri, self._context)
        except UpstreamUnavailable as exc:
            raise jwt.PyJWKClientConnectionError(str(exc)) from None
        if not isinstance(data, dict):
            raise jwt.PyJWKClientError("The JWKS endpoint did not return a JSON object")
        if self.jwk_set_cache is not None:
            self.jwk_set_cache.put(data)
        # What PyJWT 2.15.1's own fetch_data records for its refetch cooldown (pinned).
        self._last_successful_fetch = time.monotonic()
        return data


def jwks_client(uri: str, ca_pem: str, *, context: ssl.SSLContext | None = None) -> jwt.PyJWKClient:
    """One PyJWKClient per key set URL (and CA) per process: its cache is the JWKS cache."""
    key = (uri, ca_pem)
    with _lock:
        client = _jwks.get(key)
        if client is None:
            client = _BoundedJWKClient(
                uri,
                context=context or tls_context(ca_pem),
                cache_keys=False,
                cache_jwk_set=True,
                lifespan=JWKS_LIFESPAN,
                timeout=FETCH_TIMEOUT,
                cooldown_duration=JWKS_COOLDOWN,
            )
            _jwks[key] = client
    return client


def forget_cached() -> None:
    """Drop every cached discovery document and key set (tests; a rotated CA)."""
    with _lock:
        _discovery.clear()
        _jwks.clear()


def load_public_key(pem: str) -> Any:
    """A PEM public key or certificate (its key), as Vault's jwt_validation_pubkeys take."""
    data = pem.strip().encode()
    try:
        if b"CERTIFICATE" in data.split(b"\n", 1)[0]:
            return x509.load_pem_x509_certificate(data).public_key()
        return serialization.load_pem_public_key(data)
    except ValueError:
        raise InvalidRequest(
            "error parsing public key: expect a PEM public key or certificate"
        ) from None


def _fits(key: Any, algorithm: str) -> bool:
    if algorithm.startswith(("RS", "PS")):
        return isinstance(key, rsa.RSAPublicKey)
    if algorithm.startswith("ES"):
        curves = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(
            key.curve, curves[algorithm]
        )
    return isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey))


def header(token: str) -> dict[str, Any]:
    try:
        found = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise SignatureError(MALFORMED) from None
    return found


def verified_claims(token: str, keys: Sequence[Any], algorithms: Sequence[str]) -> dict[str, Any]:
    """The token's claims if one of ``keys`` verifies its signature under one of
    ``algorithms`` (pinned by config, never taken from the token); no claim is checked here."""
    alg = header(token).get("alg")
    if alg not in algorithms:
        raise SignatureError(NO_KEY)
    for key in keys:
        if not _fits(key, str(alg)):
            continue
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[str(alg)],
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.DecodeError:
            raise SignatureError(MALFORMED) from None
        except (jwt.PyJWTError, ValueError, TypeError):
            continue
        return claims
    raise SignatureError(NO_KEY)


def jwks_keys(client: jwt.PyJWKClient, token: str) -> list[Any]:
    """The keys of a JWKS that may have signed ``token``: the one its ``kid`` names (the set
    fetched again, rate-limited, when the kid is unknown: a rotation), else every signing
    key. A set that cannot be fetched is a 503."""
    kid = header(token).get("kid")
    try:
        if isinstance(kid, str) and kid:
            try:
                return [client.get_signing_key(kid).key]
            except jwt.PyJWKClientConnectionError:
                raise
            except jwt.PyJWKClientError:
                return []
        return [k.key for k in client.get_signing_keys()]
    except jwt.PyJWKClientConnectionError as exc:
        raise UpstreamUnavailable(
            f"error validating token: the signing keys could not be fetched: {exc}"
        ) from None
    except jwt.PyJWKClientError:
        return []
    except (jwt.PyJWTError, ValueError):  # not JSON, or a set without one usable key
        raise UpstreamUnavailable(
            "error validating token: the signing keys could not be read: the key set URL did "
            "not answer a JWK Set with usable keys"
        ) from None
