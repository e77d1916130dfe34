"""Azure addressing and credentials: clouds, vault URLs, the credential precedence, clients.

Credentials, first match wins (as Vault's keymgmt documents): the app's own environment
(``AZURE_CLIENT_ID`` + ``AZURE_CLIENT_SECRET``), then the provider's stored ``client_id`` +
``client_secret``, then the Function App's managed identity. ``tenant_id`` is required in
every case. The Azure SDKs are imported here only when a client is first built.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import InvalidRequest
from shared.settings import Settings


@dataclass(frozen=True)
class Cloud:
    name: str
    authority_host: str
    keyvault_suffix: str
    managedhsm_suffix: str | None


CLOUDS = {
    c.name.upper(): c
    for c in (
        Cloud(
            "AzurePublicCloud",
            "login.microsoftonline.com",
            "vault.azure.net",
            "managedhsm.azure.net",
        ),
        Cloud(
            "AzureUSGovernmentCloud",
            "login.microsoftonline.us",
            "vault.usgovcloudapi.net",
            "managedhsm.usgovcloudapi.net",
        ),
        Cloud("AzureChinaCloud", "login.chinacloudapi.cn", "vault.azure.cn", "managedhsm.azure.cn"),
        Cloud("AzureGermanCloud", "login.microsoftonline.de", "vault.microsoftazure.de", None),
    )
}
# The spellings Azure tools use (go-autorest, az cli, azure-identity's AzureAuthorityHosts).
ALIASES = {
    "AZURECLOUD": "AZUREPUBLICCLOUD",
    "PUBLIC": "AZUREPUBLICCLOUD",
    "AZUREUSGOVERNMENT": "AZUREUSGOVERNMENTCLOUD",
    "USGOVERNMENT": "AZUREUSGOVERNMENTCLOUD",
    "AZURE_GOVERNMENT": "AZUREUSGOVERNMENTCLOUD",
    "AZURECHINA": "AZURECHINACLOUD",
    "CHINA": "AZURECHINACLOUD",
    "AZURE_CHINA": "AZURECHINACLOUD",
    "AZUREGERMANY": "AZUREGERMANCLOUD",
    "GERMANY": "AZUREGERMANCLOUD",
    "AZURE_GERMANY": "AZUREGERMANCLOUD",
}
MANAGED_HSM_MARK = ".managedhsm"


def cloud(name: str | None) -> Cloud:
    if not name:
        return CLOUDS["AZUREPUBLICCLOUD"]
    key = name.strip().upper().replace(" ", "")
    key = ALIASES.get(key, key)
    found = CLOUDS.get(key)
    if found is None:
        raise InvalidRequest(
            # The value is not repeated: it arrives among credentials.
            "environment: unknown Azure cloud; allowed: "
            + ", ".join(c.name for c in CLOUDS.values())
        )
    return found


def vault_url(
    key_collection: str, environment: Cloud, overrides: Mapping[str, str] | None = None
) -> str:
    """``https://<key_collection>.<suffix>``; ``<name>.managedhsm`` addresses a Managed HSM."""
    name = key_collection.strip().lower()
    if overrides and name in overrides:
        return overrides[name]
    if name.endswith(MANAGED_HSM_MARK):
        if environment.managedhsm_suffix is None:
            raise InvalidRequest(f"{environment.name} has no Managed HSM")
        return f"https://{name.removesuffix(MANAGED_HSM_MARK)}.{environment.managedhsm_suffix}"
    return f"https://{name}.{environment.keyvault_suffix}"


def vault_scope(key_collection: str, environment: Cloud) -> str:
    """The token scope of the vault ``key_collection`` names: Key Vault's or Managed HSM's.
    Decided by the name, not the URL, which a setting may point anywhere (the local stack)."""
    suffix = environment.keyvault_suffix
    if key_collection.strip().lower().endswith(MANAGED_HSM_MARK):
        suffix = environment.managedhsm_suffix or suffix
    return f"https://{suffix}/.default"


@dataclass(frozen=True)
class CredentialChoice:
    """Which credential wins for a provider, without any secret in its repr."""

    source: str  # "environment" | "provider" | "managed_identity"
    tenant_id: str
    client_id: str | None
    authority_host: str

    @property
    def label(self) -> str:
        """Which credential, for error messages (never the secret)."""
        if self.source == "environment":
            return (
                "the app's AZURE_CLIENT_ID/AZURE_CLIENT_SECRET "
                f"(client secret of app {self.client_id})"
            )
        if self.source == "provider":
            return f"the provider's stored credentials (client secret of app {self.client_id})"
        if self.client_id:
            return f"the user-assigned managed identity {self.client_id}"
        return "the system-assigned managed identity"


def choose_credential(settings: Settings, stored: Mapping[str, str]) -> CredentialChoice:
    environment = cloud(stored.get("environment") or settings.azure_environment)
    authority = settings.azure_authority_host or environment.authority_host
    tenant = settings.azure_tenant_id or stored.get("tenant_id")
    if not tenant:
        raise InvalidRequest(
            "credentials: tenant_id is required (set credentials=tenant_id=<tenant> on the "
            "provider, or AZURE_TENANT_ID in the app settings), also with a managed identity"
        )
    if settings.azure_client_id and settings.azure_client_secret:
        return CredentialChoice("environment", tenant, settings.azure_client_id, authority)
    if stored.get("client_id") and stored.get("client_secret"):
        return CredentialChoice("provider", tenant, stored["client_id"], authority)
    client_id = settings.managed_identity_client_id or stored.get("client_id") or None
    return CredentialChoice("managed_identity", tenant, client_id, authority)


def build_credential(
    choice: CredentialChoice, settings: Settings, stored: Mapping[str, str]
) -> Any:
    transport = _transport_options(settings)
    if choice.source in ("environment", "provider"):
        from azure.identity import ClientSecretCredential

        secret = (
            settings.azure_client_secret
            if choice.source == "environment"
            else stored["client_secret"]
        )
        authority = choice.authority_host
        if "://" not in authority:
            authority = f"https://{authority}"
        if not choice.tenant_id or not choice.client_id or not secret:
            raise InvalidRequest("a client secret needs a client_id and a tenant_id")
        return ClientSecretCredential(
            choice.tenant_id,
            choice.client_id,
            secret,
            authority=authority,
            # Instance discovery asks the public cloud about the authority; sovereign clouds
            # and local test authorities are known, so skip it there.
            disable_instance_discovery=authority.rstrip("/") != "https://login.microsoftonline.com",
            **transport,
        )
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=choice.client_id, **transport)


def _transport_options(settings: Settings) -> dict[str, Any]:
    if settings.keyvault_ca_bundle:
        return {"connection_verify": settings.keyvault_ca_bundle}
    return {}


def key_client(url: str, credential: Any, settings: Settings) -> Any:
    from azure.keyvault.keys import KeyClient

    return KeyClient(
        url,
        credential,
        verify_challenge_resource=settings.keyvault_verify_challenge_resource,
        # Bounded retries of 429/5xx/connection errors with backoff (azure-core honours
        # Retry-After); 401/403 are never retried.
        retry_total=4,
        retry_backoff_factor=0.4,
        retry_backoff_max=8,
        connection_timeout=10,
        read_timeout=settings.keyvault_read_timeout,
        **_transport_options(settings),
    )


def crypto_client_factory(settings: Settings) -> Any:
    """key id → CryptographyClient with the app's own credential (the seal key)."""
    lock = threading.Lock()
    state: dict[str, Any] = {}

    def factory(key_id: str) -> Any:
        from azure.keyvault.keys.crypto import CryptographyClient

        with lock:
            if "credential" not in state:
                choice = choose_credential(settings, {})
                state["credential"] = build_credential(choice, settings, {})
        return CryptographyClient(
            key_id,
            state["credential"],
            verify_challenge_resource=settings.keyvault_verify_challenge_resource,
            retry_total=4,
            retry_backoff_factor=0.4,
            retry_backoff_max=8,
            **_transport_options(settings),
        )

    return factory


def describe_error(exc: Exception) -> tuple[int | None, str, str]:
    """(HTTP status, Key Vault error code, first line of the message) of an Azure SDK error."""
    status = getattr(exc, "status_code", None)
    error = getattr(exc, "error", None)
    # Key Vault puts the specific reason in innererror: "Forbidden" is ForbiddenByRbac,
    # ForbiddenByConnection, ...; the specific code is the one worth reporting and matching.
    inner = getattr(error, "innererror", None) or {}
    code = (inner.get("code") if isinstance(inner, Mapping) else None) or ""
    code = code or getattr(error, "code", None) or ""
    message = getattr(error, "message", None) or getattr(exc, "message", None) or str(exc)
    first = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
    return status, code, first


def brief_error(exc: Exception) -> str:
    """``<code>: <first line>`` of an Azure SDK error, for messages and logs."""
    _, code, message = describe_error(exc)
    return f"{code}: {message}" if code else message
