"""KMS provider types, a registry keyed by the ``provider`` field of a KMS provider.

Each type (``ProviderType``, in shared/providers/base.py) owns its credential keys, its
``key_collection`` rules, its compatibility table and its client factory; the engine
(shared/kms.py, shared/distribution.py, shared/reconcile.py) only looks a type up here. A new
type (AWS KMS, GCP Cloud KMS, Managed HSM on its own) is one module and one entry in
``PROVIDERS``.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.errors import InvalidRequest
from shared.providers import azurekeyvault
from shared.providers.base import (
    PROTECTIONS,
    PURPOSES,
    Address,
    CreationLock,
    Health,
    ImportOutcomeUnknown,
    KmsClient,
    PermissionMissing,
    Permissions,
    ProviderType,
    RemoteNameTaken,
    RemoteVersion,
    UpstreamRefused,
    VersionImport,
)

__all__ = [
    "PROTECTIONS",
    "PROVIDERS",
    "PURPOSES",
    "Address",
    "CreationLock",
    "Health",
    "ImportOutcomeUnknown",
    "KmsClient",
    "PermissionMissing",
    "Permissions",
    "ProviderType",
    "RemoteNameTaken",
    "RemoteVersion",
    "UpstreamRefused",
    "VersionImport",
    "provider_type",
]

PROVIDERS: Mapping[str, ProviderType] = {
    azurekeyvault.TYPE.name: azurekeyvault.TYPE,
}


def provider_type(name: str | None) -> ProviderType:
    """The registered type called ``name``; InvalidRequest naming the allowed ones."""
    if not name:
        raise InvalidRequest(f"provider is required; allowed: {', '.join(PROVIDERS)}")
    found = PROVIDERS.get(name)
    if found is None:
        raise InvalidRequest(f"provider: unsupported; allowed: {', '.join(PROVIDERS)}")
    return found
