"""The ``azurekeyvault`` provider type: its rules (``AzureKeyVault``) and its client
(``AzureKeyVaultClient``), BYOK (``protection=hsm``) or JWK (``software``) imports.

BYOK follows Microsoft's specification (see shared/byok.py): a key exchange key (RSA-HSM,
``key_ops == ["import"]``) is created once per vault and its public key cached; each version's
PKCS#8 bytes are wrapped without being parsed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import logging
import re
import socket
import threading
import time
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
from shared.providers.base import (
    PURPOSES,
    Address,
    CreationLock,
    Health,
    ImportOutcomeUnknown,
    PermissionMissing,
    Permissions,
    RemoteNameTaken,
    RemoteVersion,
    UpstreamRefused,
    VersionImport,
)
from shared.records import KmsRecord
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


# What each Key Vault call the engine makes needs: the access policy key permission (named in
# the REST API description of each operation) and the RBAC data action (docs/kvemu.md).
PERMISSIONS: dict[str, tuple[str, str]] = {
    "get": ("get", "Microsoft.KeyVault/vaults/keys/read"),
    "get_deleted": ("get", "Microsoft.KeyVault/vaults/keys/read"),
    "list_versions": ("list", "Microsoft.KeyVault/vaults/keys/read"),
    "create": ("create", "Microsoft.KeyVault/vaults/keys/create/action"),
    "import": ("import", "Microsoft.KeyVault/vaults/keys/import/action"),
    "update": ("update", "Microsoft.KeyVault/vaults/keys/update/action"),
    "delete": ("delete", "Microsoft.KeyVault/vaults/keys/delete"),
}
_REFUSED_CODES = ("ForbiddenByPolicy", "AccessDenied", "ForbiddenByRbac")
_NAME_TAKEN_CODES = ("ObjectIsBeingDeleted", "ObjectIsDeletedButRecoverable", "Conflict")
IMPORT_ATTEMPTS = 4
_VAULT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]")
_KEY_NAME = re.compile(r"[0-9A-Za-z-]+")


class AzureKeyVault:
    """The provider type ``azurekeyvault``: a Key Vault (or, ``<name>.managedhsm``, a Managed
    HSM) in the cloud that ``environment`` names.

    Credentials, first match wins: the app's own service principal, then the stored
    ``client_id`` + ``client_secret``, then the managed identity (shared/azure.py); ``tenant_id``
    is required in every case, stored or from ``AZURE_TENANT_ID``, so it is checked when a
    client is built, not when the provider is written.
    """

    name: str = "azurekeyvault"
    credential_keys: tuple[str, ...] = ("client_id", "client_secret", "tenant_id", "environment")
    key_collection_is: str = "the name of the Azure Key Vault"

    def check_credentials(self, credentials: Mapping[str, str]) -> None:
        if credentials.get("environment"):
            from shared.azure import cloud

            try:
                cloud(credentials["environment"])  # validates
            except InvalidRequest as exc:
                raise InvalidRequest(f"credentials.{exc}") from None

    def check_key_collection(self, key_collection: str) -> None:
        base = key_collection.removesuffix(".managedhsm")
        if not _VAULT_NAME.fullmatch(base) or "--" in base:
            raise InvalidRequest(
                f"key_collection: {key_collection!r} is not a Key Vault name (3-24 letters, "
                "digits and single dashes, starting with a letter; '<name>.managedhsm' for a "
                "Managed HSM)"
            )

    def check_key_name(self, key_name: str) -> None:
        """Key Vault key names allow only letters, digits and '-'."""
        if not _KEY_NAME.fullmatch(key_name):
            raise InvalidRequest(
                f"key name {key_name!r} cannot be distributed to Azure Key Vault, which allows "
                "only letters, digits and '-' in key names"
            )

    def check_compatible(self, key_type: str, purpose: Sequence[str], protection: str) -> None:
        # The values the API takes (PURPOSES, PROTECTIONS) are checked by its declarations;
        # this is what Key Vault holds of them.
        if not purpose:
            raise InvalidRequest(
                f"purpose: at least one is required; allowed: {', '.join(PURPOSES)}"
            )
        if key_type in RSA_TYPES:
            return
        if key_type in EC_TYPES:
            extra = sorted(set(purpose) - {"sign", "verify"})
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

    def client(
        self,
        record: KmsRecord,
        credentials: Mapping[str, str],
        settings: Settings,
        *,
        creation_lock: CreationLock,
    ) -> AzureKeyVaultClient:
        from shared.azure import build_credential, choose_credential, cloud, vault_scope, vault_url

        environment = cloud(credentials.get("environment") or settings.azure_environment)
        url = vault_url(record.key_collection, environment, settings.keyvault_url_overrides)
        choice = choose_credential(settings, credentials)
        credential = build_credential(choice, settings, credentials)
        log.info(
            "KMS provider %s/%s: vault %s, credential from %s",
            record.mount,
            record.name,
            url,
            choice.source,
        )
        return AzureKeyVaultClient(
            url,
            credential,
            settings,
            choice.label,
            scope=vault_scope(record.key_collection, environment),
            creation_lock=creation_lock,
        )


TYPE = AzureKeyVault()


def permission_hint(operation: str) -> str:
    permission, action = PERMISSIONS[operation]
    return (
        f"the key permission '{permission}' (access policy) or the data action {action} "
        "(RBAC, e.g. Key Vault Crypto Officer)"
    )


def upstream_error(
    vault: str, what: str, exc: Exception, credential: str = "", operation: str = ""
) -> EngineError:
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
        return UpstreamRefused(text)
    if status == 403 and code in _REFUSED_CODES and operation:
        who = credential or "the configured credential"
        permission, action = PERMISSIONS[operation]
        return PermissionMissing(
            f"{text} — {who} needs {permission_hint(operation)}", permission, action
        )
    if status == 409 and code in _NAME_TAKEN_CODES:
        return RemoteNameTaken(text)
    return UpstreamRefused(text)


_KEK_CACHE: dict[str, tuple[str, Any]] = {}  # vault URL → (KEK versioned kid, public key)
_KEK_LOCK = threading.Lock()


class AzureKeyVaultClient:
    """One vault, through the real ``azure-keyvault-keys`` client."""

    def __init__(
        self,
        url: str,
        credential: Any,
        settings: Settings,
        credential_label: str = "",
        *,
        scope: str,
        creation_lock: CreationLock | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        # Serializes creating a key every instance may need at once (the key exchange key)
        # across instances; shared/kms.py passes a lease in Table Storage.
        self._creation_lock = creation_lock or (lambda _name: contextlib.nullcontext(True))
        self.scope = scope  # shared.azure.vault_scope: decided by the vault's name
        self.credential = credential
        self.credential_label = credential_label
        self.settings = settings
        self.client = key_client(self.url, credential, settings)

    # -- remote operations --------------------------------------------------------------------

    def _error(self, what: str, exc: Exception, operation: str = "") -> EngineError:
        return upstream_error(self.url, what, exc, self.credential_label, operation)

    def remote_versions(self, remote_name: str) -> list[RemoteVersion]:
        """Every version of the name; empty when it holds no live key (the service answers
        200 and an empty list, not 404). Needs the ``list`` permission: PermissionMissing."""
        from azure.core.exceptions import AzureError

        try:
            return [
                RemoteVersion(p.version or "", bool(p.enabled), dict(p.tags or {}), p.expires_on)
                for p in self.client.list_properties_of_key_versions(remote_name)
            ]
        except AzureError as exc:
            raise self._error(f"listing versions of {remote_name}", exc, "list_versions") from None

    def latest_version(self, remote_name: str) -> RemoteVersion | None:
        """The newest version of a live key (``get``), or None when there is none."""
        return self.version(remote_name, None)

    def version(self, remote_name: str, version_id: str | None) -> RemoteVersion | None:
        """One version of a live key (``get``; None: the latest), or None when it does not
        exist. A disabled version is still read (only its private operations are refused)."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            key = self.client.get_key(remote_name, version_id)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise self._error(f"reading {remote_name}", exc, "get") from None
        props = key.properties
        return RemoteVersion(
            props.version or "", bool(props.enabled), dict(props.tags or {}), props.expires_on
        )

    def is_deleted(self, remote_name: str) -> bool:
        """Whether the name is held by a deleted (recoverable) key (``get`` covers it)."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            self.client.get_deleted_key(remote_name)
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise self._error(f"looking up deleted key {remote_name}", exc, "get_deleted") from None
        return True

    def name_in_use(self, remote_name: str) -> bool:
        """Whether a key, live or soft-deleted, holds the name (two reads, ``get`` only). A key
        still being deleted is visible to neither: the import's 409 (RemoteNameTaken) says it.
        The two reads overlap; a live key answers without waiting for (or failing on) the other."""
        from shared import overlap

        deleted = overlap.start(lambda: self.is_deleted(remote_name))
        return self.latest_version(remote_name) is not None or deleted.result()

    def _kek(self) -> tuple[str, Any]:
        from azure.core.exceptions import AzureError, ResourceNotFoundError
        from cryptography.hazmat.primitives.asymmetric import rsa

        with _KEK_LOCK:
            cached = _KEK_CACHE.get(self.url)
        if cached is not None:
            return cached
        creating = False
        try:
            try:
                kek = self.client.get_key(KEK_NAME)
            except ResourceNotFoundError:
                # One instance creates it; the others wait for the lease, then find it.
                with self._creation_lock(KEK_NAME):
                    try:
                        kek = self.client.get_key(KEK_NAME)
                    except ResourceNotFoundError:
                        creating = True
                        kek = self.client.create_rsa_key(
                            KEK_NAME,
                            size=KEK_SIZE,
                            hardware_protected=True,
                            key_operations=["import"],
                            tags={"keymgmt-role": "kek"},
                        )
        except AzureError as exc:
            operation = "create" if creating else "get"
            raise self._error("preparing the key exchange key", exc, operation) from None
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

    def import_version(self, remote_name: str, version: VersionImport) -> str:
        from azure.core.exceptions import AzureError
        from azure.keyvault.keys import JsonWebKey

        key_ops = [KEY_OPS[p] for p in sorted(version.purpose)]
        spec = KEY_TYPES[version.key_type]
        if version.protection == "hsm":
            kid, public = self._kek()
            blob = byok.build_transfer_blob(version.material, public, kid, generator=GENERATOR)
            fields: dict[str, Any] = {
                "kty": "RSA-HSM" if spec.family == "rsa" else "EC-HSM",
                "key_ops": key_ops,
                "t": blob,
            }
            if spec.family == "ec":
                fields["crv"] = spec.curve
            jwk = JsonWebKey(**fields)
        else:
            jwk = JsonWebKey(key_ops=key_ops, **software_jwk(version.material))
        expires_on = None
        if version.expiration_period:
            expires_on = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=version.expiration_period)
        for attempt in range(IMPORT_ATTEMPTS):
            try:
                imported = self.client.import_key(
                    remote_name,
                    jwk,
                    hardware_protected=version.protection == "hsm",
                    enabled=version.enabled,
                    tags=dict(version.tags),
                    expires_on=expires_on,
                    # An import is not idempotent: a retry after a lost answer adds a second
                    # version. Only a refusal that proves nothing landed is retried, below.
                    retry_total=0,
                )
                return imported.properties.version or ""
            except AzureError as exc:
                status = describe_error(exc)[0]
                if version.protection == "hsm":  # the KEK may have changed: fetch it afresh
                    with _KEK_LOCK:
                        _KEK_CACHE.pop(self.url, None)
                # Throttled, or the service unavailable: refused before anything was imported.
                if status in (429, 503):
                    if attempt + 1 < IMPORT_ATTEMPTS:
                        time.sleep(min(_retry_after(exc) or 0.5 * 2**attempt, 8.0))
                        continue
                    raise self._error(f"importing into {remote_name}", exc, "import") from None
                if status is not None and status < 500:
                    raise self._error(f"importing into {remote_name}", exc, "import") from None
                # No answer, or a server error: the import may have landed (or may still); the
                # caller looks for it by its version.tags (shared/distribution.py).
                raise ImportOutcomeUnknown(
                    f"Key Vault {self.url}: importing into {remote_name} got no answer "
                    f"({describe_error(exc)[2]}); the import may still land, so it is not "
                    "sent again until it is looked for by its version.tags"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def set_enabled(self, remote_name: str, version_id: str, enabled: bool) -> None:
        from azure.core.exceptions import AzureError

        try:
            self.client.update_key_properties(remote_name, version_id, enabled=enabled)
        except AzureError as exc:
            raise self._error(f"updating {remote_name}/{version_id}", exc, "update") from None

    def delete_key(self, remote_name: str) -> None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            # Soft delete: the key stays recoverable in the vault. The deletion completes in
            # the vault seconds later; nothing here waits for it (the poller only polls when
            # waited on), and a new distribution never reuses the name.
            self.client.begin_delete_key(remote_name)
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            if describe_error(exc)[1] == "KeyNotFound":
                return
            raise self._error(f"deleting {remote_name}", exc, "delete") from None

    # -- diagnostics --------------------------------------------------------------------------

    def permissions(self) -> Permissions:
        """What the optional permission (``list``) allows, probed with a harmless call."""
        try:
            self.remote_versions(KEK_NAME)
        except PermissionMissing:
            return Permissions(
                missing=("list",),
                effect="the reconciler cannot list versions: it checks only the latest "
                "version of each key for drift and does not enforce enabled states; "
                "distribution and rotation are unaffected (grant "
                f"{permission_hint('list_versions')} for full drift detection)",
            )
        except EngineError as exc:
            return Permissions(probe_error=str(exc))
        return Permissions()

    def health(self) -> Health:
        """Private endpoint check: DNS, private addresses, token, and whether the vault answers."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        host = urlsplit(self.url).hostname or ""
        port = urlsplit(self.url).port or 443
        ranges = [ipaddress.ip_network(r, strict=False) for r in self.settings.private_ranges]
        dns_error = None
        try:
            infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
            addresses = sorted({str(info[4][0]) for info in infos})
        except OSError as exc:
            addresses = []
            dns_error = str(exc)
        try:
            self.credential.get_token(self.scope)
            token = "ok"  # noqa: S105 (a status, not a secret)
        except Exception as exc:  # any credential failure is a diagnosis here
            token = f"failed: {describe_error(exc)[2]}"
        diagnosis = None
        try:
            # A read the seed's minimum permissions allow: 404 for a name that holds no key
            # proves the vault answers and this identity may read keys.
            try:
                self.client.get_key(KEK_NAME)
            except ResourceNotFoundError:
                pass
            service = "ok"
        except AzureError as exc:
            status, code, message = describe_error(exc)
            service = f"{status or 'no answer'} {code}: {message}".strip()
            if code in _REFUSED_CODES:
                service += f" — {self.credential_label} needs " + permission_hint("get")
            if code == "ForbiddenByConnection":
                diagnosis = (
                    "Key Vault refused a connection from a public address: the vault name "
                    "does not resolve to its private endpoint from here (check the "
                    "privatelink.vaultcore.azure.net zone and its link to the VNet)"
                )
        return Health(
            credential=self.credential_label,
            token=token,
            service=service,
            endpoint=self.url,
            host=host,
            private_ranges=tuple(self.settings.private_ranges),
            dns_error=dns_error,
            addresses=tuple(
                Address(
                    a,
                    any(
                        ipaddress.ip_address(a) in r
                        for r in ranges
                        if ipaddress.ip_address(a).version == r.version
                    ),
                )
                for a in addresses
            ),
            diagnosis=diagnosis,
            permissions=self.permissions() if service == "ok" else None,
        )


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def software_jwk(material: bytes) -> dict[str, Any]:
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
        numbers = key.private_numbers()
        size = (key.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[key.curve.name]
        return {
            "kty": "EC",
            "crv": crv,
            "x": b(numbers.public_numbers.x, size),
            "y": b(numbers.public_numbers.y, size),
            "d": b(numbers.private_value, size),
        }
    raise InvalidRequest("this key type cannot be imported as a software key")
