"""KMS providers. A provider knows its service's key types, import format and operations;
distribution (shared/distribution.py) drives it and records what landed.

A new provider (AWS KMS, GCP Cloud KMS) is one module implementing ``KmsProvider`` and one
entry in ``PROVIDERS``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

PURPOSES = ("encrypt", "decrypt", "sign", "verify", "wrap", "unwrap")
PROTECTIONS = ("hsm", "software")


@dataclass(frozen=True)
class RemoteVersion:
    version_id: str
    enabled: bool
    tags: Mapping[str, str]


class KmsProvider(Protocol):
    name: str

    def check_compatible(self, key_type: str, purposes: Sequence[str], protection: str) -> None:
        """Raise InvalidRequest naming what is allowed; no remote call."""

    def remote_versions(self, remote_name: str) -> list[RemoteVersion] | None:
        """Versions of the remote key, or None when it does not exist."""

    def name_in_use(self, remote_name: str) -> bool:
        """Whether a key (live or deleted but recoverable) holds the name."""

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
        """Import one version; returns its remote version id."""

    def set_enabled(self, remote_name: str, version_id: str, enabled: bool) -> None: ...

    def delete_key(self, remote_name: str) -> None: ...

    def health(self) -> dict[str, Any]: ...


PROVIDERS = ("azurekeyvault",)
