"""The ``azurekeyvault`` provider: BYOK (``protection=hsm``) or JWK (``software``) imports.

BYOK follows Microsoft's specification (see shared/byok.py): a key exchange key (RSA-HSM,
``key_ops == ["import"]``) is created once per vault and its public key cached; each version's
PKCS#8 bytes are wrapped without being parsed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from shared import byok
from shared.azure import describe_error, key_client
from shared.errors import (
    EngineError,
    InvalidRequest,
    UpstreamThrottled,
    UpstreamUnavailable,
)
from shared.keytypes import KEY_TYPES
from shared.providers import PROTECTIONS, PURPOSES, RemoteVersion
from shared.settings import Settings

log = logging.getLogger(__name__)

KEK_NAME = "keymgmt-kek"
KEK_SIZE = 4096
GENERATOR = "azure-keymgmt 0.1.0"
RSA_TYPES = ("rsa-2048", "rsa-3072", "rsa-4096")
EC_TYPES = ("ecdsa-p256", "ecdsa-p384", "ecdsa-p521")
KEY_OPS = {
    "encrypt": "encrypt",
    "decrypt": "decrypt",
    "sign": "sign",
    "verify": "verify",
    "wrap": "wrapKey",
    "unwrap": "unwrapKey",
}


class UpstreamRefused(EngineError):
    """Key Vault refused (401/403/other 4xx): configuration, not a passing fault."""

    status = 502


def upstream_error(vault: str, what: str, exc: Exception, credential: str = "") -> EngineError:
    from azure.core.exceptions import ClientAuthenticationError

    status, code, message = describe_error(exc)
    if isinstance(exc, ClientAuthenticationError) and status is None:
        # No token: the credential itself failed (wrong secret, unknown app or tenant, no
        # managed identity). Configuration, not an outage: say which credential, no retry hint.
        return UpstreamRefused(
            f"Key Vault {vault}: could not get an access token with "
            f"{credential or 'the configured credential'} ({what}): {message}"
        )
    text = f"Key Vault {vault}: {what} failed: {code + ': ' if code else ''}{message}"
    if status == 429:
        return UpstreamThrottled(text + " (still throttled after retries)")
    if status is None or status >= 500:
        return UpstreamUnavailable(text)
    if code == "ForbiddenByConnection":
        text += (
            " — the vault accepts only private traffic: check that its name resolves to "
            "the private endpoint from this app (kms/:name/health shows what it resolves to)"
        )
    elif code == "ForbiddenByRbac" and credential:
        text += f" — {credential} needs a Key Vault role on this vault (Key Vault Crypto Officer)"
    return UpstreamRefused(text)


_KEK_CACHE: dict[str, tuple[str, Any]] = {}  # vault URL → (KEK versioned kid, public key)
_KEK_LOCK = threading.Lock()


class AzureKeyVaultProvider:
    name = "azurekeyvault"

    def __init__(
        self, url: str, credential: Any, settings: Settings, credential_label: str = ""
    ) -> None:
        self.url = url.rstrip("/")
        self.credential = credential
        self.credential_label = credential_label
        self.settings = settings
        self.client = key_client(self.url, credential, settings)

    # -- compatibility (no remote call) -------------------------------------------------------

    def check_compatible(self, key_type: str, purposes: Sequence[str], protection: str) -> None:
        if protection not in PROTECTIONS:
            raise InvalidRequest(
                f"protection: invalid value {protection!r}; allowed: hsm, software"
            )
        if not purposes:
            raise InvalidRequest(
                f"purpose: at least one is required; allowed: {', '.join(PURPOSES)}"
            )
        unknown = [p for p in purposes if p not in PURPOSES]
        if unknown:
            raise InvalidRequest(
                f"purpose: invalid {', '.join(map(repr, unknown))}; allowed: {', '.join(PURPOSES)}"
            )
        if key_type in RSA_TYPES:
            return
        if key_type in EC_TYPES:
            extra = sorted(set(purposes) - {"sign", "verify"})
            if extra:
                raise InvalidRequest(
                    f"purpose: Azure Key Vault holds {key_type} keys for sign and verify only, "
                    f"not {', '.join(extra)}"
                )
            return
        raise InvalidRequest(
            f"key type {key_type} cannot be distributed to Azure Key Vault; allowed: "
            f"{', '.join(RSA_TYPES)} (any purpose), and {', '.join(EC_TYPES)} (sign, verify)"
        )

    # -- remote operations --------------------------------------------------------------------

    def _error(self, what: str, exc: Exception) -> EngineError:
        return upstream_error(self.url, what, exc, self.credential_label)

    def remote_versions(self, remote_name: str) -> list[RemoteVersion] | None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            return [
                RemoteVersion(p.version or "", bool(p.enabled), dict(p.tags or {}))
                for p in self.client.list_properties_of_key_versions(remote_name)
            ]
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            if describe_error(exc)[1] == "KeyNotFound":
                return None
            raise self._error(f"listing versions of {remote_name}", exc) from None

    def name_in_use(self, remote_name: str) -> bool:
        """Whether the name is held by a key, live or soft-deleted (then taken until purged)."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        if self.remote_versions(remote_name) is not None:
            return True
        try:
            self.client.get_deleted_key(remote_name)
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            if describe_error(exc)[1] == "KeyNotFound":
                return False
            raise self._error(f"looking up deleted key {remote_name}", exc) from None
        return True

    def _kek(self) -> tuple[str, Any]:
        from azure.core.exceptions import AzureError, ResourceNotFoundError
        from cryptography.hazmat.primitives.asymmetric import rsa

        with _KEK_LOCK:
            cached = _KEK_CACHE.get(self.url)
        if cached is not None:
            return cached
        try:
            try:
                kek = self.client.get_key(KEK_NAME)
            except ResourceNotFoundError:
                kek = self.client.create_rsa_key(
                    KEK_NAME,
                    size=KEK_SIZE,
                    hardware_protected=True,
                    key_operations=["import"],
                    tags={"keymgmt-role": "kek"},
                )
        except AzureError as exc:
            raise self._error("preparing the key exchange key", exc) from None
        ops = sorted(str(getattr(op, "value", op)) for op in (kek.key_operations or []))
        if ops != ["import"] or not kek.properties.enabled:
            raise UpstreamRefused(
                f"Key Vault {self.url}: key {KEK_NAME} exists but is not a usable key exchange "
                f"key (key_ops {ops}, enabled {kek.properties.enabled}); it must be an enabled "
                'RSA-HSM key with key_ops ["import"]'
            )
        jwk = kek.key
        public = rsa.RSAPublicNumbers(
            int.from_bytes(jwk.e, "big"), int.from_bytes(jwk.n, "big")
        ).public_key()
        entry = (kek.id, public)
        with _KEK_LOCK:
            _KEK_CACHE[self.url] = entry
        return entry

    def import_version(
        self,
        remote_name: str,
        *,
        key_type: str,
        material: bytes,
        purposes: Sequence[str],
        protection: str,
        tags: Mapping[str, str],
        enabled: bool,
        expires_in: int,
    ) -> str:
        from azure.core.exceptions import AzureError
        from azure.keyvault.keys import JsonWebKey

        key_ops = [KEY_OPS[p] for p in sorted(purposes)]
        spec = KEY_TYPES[key_type]
        if protection == "hsm":
            kid, public = self._kek()
            blob = byok.build_transfer_blob(material, public, kid, generator=GENERATOR)
            fields: dict[str, Any] = {
                "kty": "RSA-HSM" if spec.family == "rsa" else "EC-HSM",
                "key_ops": key_ops,
                "t": blob,
            }
            if spec.family == "ec":
                fields["crv"] = spec.curve
            jwk = JsonWebKey(**fields)
        else:
            jwk = JsonWebKey(key_ops=key_ops, **_software_jwk(material))
        expires_on = None
        if expires_in:
            expires_on = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in)
        try:
            imported = self.client.import_key(
                remote_name,
                jwk,
                hardware_protected=protection == "hsm",
                enabled=enabled,
                tags=dict(tags),
                expires_on=expires_on,
            )
        except AzureError as exc:
            if protection == "hsm":  # the KEK may have changed under us: fetch it afresh next time
                with _KEK_LOCK:
                    _KEK_CACHE.pop(self.url, None)
            raise self._error(f"importing into {remote_name}", exc) from None
        return imported.properties.version or ""

    def set_enabled(self, remote_name: str, version_id: str, enabled: bool) -> None:
        from azure.core.exceptions import AzureError

        try:
            self.client.update_key_properties(remote_name, version_id, enabled=enabled)
        except AzureError as exc:
            raise self._error(f"updating {remote_name}/{version_id}", exc) from None

    def delete_key(self, remote_name: str) -> None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            # Soft delete: the key stays recoverable in the vault. No need to wait for the
            # poller: the name is deleted when the call returns.
            self.client.begin_delete_key(remote_name)
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            if describe_error(exc)[1] == "KeyNotFound":
                return
            raise self._error(f"deleting {remote_name}", exc) from None

    # -- diagnostics --------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Private endpoint check: DNS, private addresses, token, and whether the vault answers."""
        from azure.core.exceptions import AzureError

        host = urlsplit(self.url).hostname or ""
        port = urlsplit(self.url).port or 443
        ranges = [ipaddress.ip_network(r, strict=False) for r in self.settings.private_ranges]
        result: dict[str, Any] = {
            "vault_url": self.url,
            "host": host,
            "private_ranges": list(self.settings.private_ranges),
            "credential": self.credential_label,
        }
        try:
            infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
            addresses = sorted({info[4][0] for info in infos})
        except OSError as exc:
            addresses = []
            result["dns_error"] = str(exc)
        result["addresses"] = [
            {
                "address": a,
                "private": any(
                    ipaddress.ip_address(a) in r
                    for r in ranges
                    if ipaddress.ip_address(a).version == r.version
                ),
            }
            for a in addresses
        ]
        result["all_private"] = bool(addresses) and all(a["private"] for a in result["addresses"])
        try:
            self.credential.get_token(_scope(self.url))
            result["token"] = "ok"  # noqa: S105 (a status, not a secret)
        except Exception as exc:  # any credential failure is a diagnosis here
            result["token"] = f"failed: {describe_error(exc)[2]}"
        try:
            next(iter(self.client.list_properties_of_keys(max_page_size=1)), None)
            result["key_vault"] = "ok"
        except AzureError as exc:
            status, code, message = describe_error(exc)
            result["key_vault"] = f"{status or 'no answer'} {code}: {message}".strip()
            if code == "ForbiddenByConnection":
                result["diagnosis"] = (
                    "Key Vault refused a connection from a public address: the vault name "
                    "does not resolve to its private endpoint from here (check the "
                    "privatelink.vaultcore.azure.net zone and its link to the VNet)"
                )
        return result


def _scope(url: str) -> str:
    host = urlsplit(url).hostname or ""
    if host.endswith("managedhsm.azure.net"):
        return "https://managedhsm.azure.net/.default"
    suffix = host.split(".", 1)[1] if "." in host else "vault.azure.net"
    if not suffix.startswith("vault.") and not suffix.startswith("managedhsm."):
        suffix = "vault.azure.net"
    return f"https://{suffix}/.default"


def _software_jwk(material: bytes) -> dict[str, Any]:
    """Plain JWK private members for a software import (parses the key: distribution only)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    # The bytes are the engine's own key, opened from an authenticated seal: RSA validation
    # (~30 ms for rsa-2048) proves nothing new, and Key Vault checks the key on import anyway.
    key = serialization.load_der_private_key(
        material, password=None, unsafe_skip_rsa_key_validation=True
    )

    def b(n: int, length: int | None = None) -> bytes:
        return n.to_bytes(length or (n.bit_length() + 7) // 8, "big")

    if isinstance(key, rsa.RSAPrivateKey):
        priv = key.private_numbers()
        pub = priv.public_numbers
        return {
            "kty": "RSA",
            "n": b(pub.n),
            "e": b(pub.e),
            "d": b(priv.d),
            "p": b(priv.p),
            "q": b(priv.q),
            "dp": b(priv.dmp1),
            "dq": b(priv.dmq1),
            "qi": b(priv.iqmp),
        }
    if isinstance(key, ec.EllipticCurvePrivateKey):
        priv = key.private_numbers()
        size = (key.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[key.curve.name]
        return {
            "kty": "EC",
            "crv": crv,
            "x": b(priv.public_numbers.x, size),
            "y": b(priv.public_numbers.y, size),
            "d": b(priv.private_value, size),
        }
    raise InvalidRequest("this key type cannot be imported as a software key")
