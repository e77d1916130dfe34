"""KMS providers. A provider knows its service's key types, import format and operations;
distribution (shared/distribution.py) drives it and records what landed.

A new provider (AWS KMS, GCP Cloud KMS) is one module implementing ``KmsProvider`` and one
entry in ``PROVIDERS``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shared.errors import EngineError, UpstreamUnavailable


class UpstreamRefused(EngineError):
    """The provider refused (401/403/other 4xx): configuration, not a passing fault."""

    status = 502


class PermissionMissing(UpstreamRefused):
    """The caller lacks the permission a call needs: by its access-policy name and its RBAC
    data action, so the operator can grant it in either model."""

    def __init__(self, message: str, permission: str, data_action: str) -> None:
        super().__init__(message)
        self.permission = permission
        self.data_action = data_action


class RemoteNameTaken(UpstreamRefused):
    """The name is held by a key being deleted, or deleted but recoverable (409)."""


class ImportOutcomeUnknown(UpstreamUnavailable):
    """An import got no answer (timeout, dropped connection, 5xx) and is not visible yet: it may
    still land, so it must not be sent again at once."""


PURPOSES = ("encrypt", "decrypt", "sign", "verify", "wrap", "unwrap")
PROTECTIONS = ("hsm", "software")


@dataclass(frozen=True)
class RemoteVersion:
    version_id: str
    enabled: bool
    tags: Mapping[str, str]
    expires_on: dt.datetime | None = None  # the version's ``exp``


class KmsProvider(Protocol):
    name: str

    def check_compatible(self, key_type: str, purpose: Sequence[str], protection: str) -> None:
        """Raise InvalidRequest naming what is allowed; no remote call."""

    def remote_versions(self, remote_name: str) -> list[RemoteVersion]:
        """Every version of the remote key (empty: none live); may raise PermissionMissing."""

    def latest_version(self, remote_name: str) -> RemoteVersion | None:
        """The newest version of the live key, or None."""

    def version(self, remote_name: str, version_id: str | None) -> RemoteVersion | None:
        """One version of the live key (None: the latest), or None when it does not exist."""

    def name_in_use(self, remote_name: str) -> bool:
        """Whether a key (live or deleted but recoverable) holds the name."""

    def import_version(
        self,
        remote_name: str,
        *,
        key_type: str,
        material: bytes,
        purpose: Sequence[str],
        protection: str,
        tags: Mapping[str, str],
        enabled: bool,
        expiration_period: int,
    ) -> str:
        """Import one version; returns its remote version id."""

    def set_enabled(self, remote_name: str, version_id: str, enabled: bool) -> None: ...

    def delete_key(self, remote_name: str) -> None: ...

    def health(self) -> dict[str, Any]: ...


PROVIDERS = ("azurekeyvault",)
