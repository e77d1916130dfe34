"""What every provider type implements, and what the engine shares with them.

A provider type (``ProviderType``) owns the rules of its KMS: the credential keys it takes, what
a ``key_collection`` may be, which key types and purposes it can hold, and how to build a
client. A client (``KmsClient``) talks to one configured KMS provider's remote service.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from shared.errors import EngineError, UpstreamUnavailable
from shared.records import KmsRecord
from shared.settings import Settings


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
    """An import got no answer (timeout, dropped connection, 5xx): it may have landed, or may
    still land, so it must not be sent again at once."""


PURPOSES = ("encrypt", "decrypt", "sign", "verify", "wrap", "unwrap")
PROTECTIONS = ("hsm", "software")


@dataclass(frozen=True)
class RemoteVersion:
    version_id: str
    enabled: bool
    tags: Mapping[str, str]
    expires_on: dt.datetime | None = None  # the version's ``exp``


@dataclass(frozen=True)
class VersionImport:
    """One engine version, as a provider imports it."""

    key_type: str
    material: bytes = field(repr=False)  # the private key (DER) or the AES key
    purpose: tuple[str, ...]
    protection: str
    tags: Mapping[str, str]  # what marks the remote version as the engine's (see is_ours)
    enabled: bool
    expiration_period: int  # seconds; 0: no ``exp``


@dataclass(frozen=True)
class Address:
    address: str
    private: bool  # within the private ranges (KEYMGMT_PRIVATE_RANGES)


@dataclass(frozen=True)
class Permissions:
    """What the optional permissions allow, probed with a harmless call."""

    missing: tuple[str, ...] = ()
    effect: str = ""  # what the missing ones leave undone
    probe_error: str = ""  # the probe failed for another reason


@dataclass(frozen=True)
class Health:
    """A KMS provider's reachability check (``kms/:name/health``). Only ``credential``,
    ``token`` and ``service`` are always known; the rest is what the check got to see."""

    credential: str  # which credential is used, or why none is usable
    token: str  # "ok", "failed: ...", or "not attempted"
    service: str  # whether the service answered: "ok", or what it said
    endpoint: str | None = None  # the URL the client talks to
    host: str | None = None
    private_ranges: tuple[str, ...] | None = None
    dns_error: str | None = None
    addresses: tuple[Address, ...] | None = None  # what ``host`` resolves to
    diagnosis: str | None = None
    permissions: Permissions | None = None

    @property
    def all_private(self) -> bool:
        return bool(self.addresses) and all(a.private for a in self.addresses or ())


class KmsClient(Protocol):
    """One configured KMS provider's remote service."""

    def remote_versions(self, remote_name: str) -> list[RemoteVersion]:
        """Every version of the remote key (empty: none live); may raise PermissionMissing."""

    def latest_version(self, remote_name: str) -> RemoteVersion | None:
        """The newest version of the live key, or None."""

    def version(self, remote_name: str, version_id: str | None) -> RemoteVersion | None:
        """One version of the live key (None: the latest), or None when it does not exist."""

    def name_in_use(self, remote_name: str) -> bool:
        """Whether a key (live or deleted but recoverable) holds the name."""

    def import_version(self, remote_name: str, version: VersionImport) -> str:
        """Import one version; returns its remote version id. ImportOutcomeUnknown when the
        service gave no answer (the caller looks for the import by its tags)."""

    def set_enabled(self, remote_name: str, version_id: str, enabled: bool) -> None: ...

    def delete_key(self, remote_name: str) -> None: ...

    def health(self) -> Health: ...


# A lease across instances, by name, for creating a remote object every instance may need at
# once (Azure's key exchange key); yields whether it is held.
CreationLock = Callable[[str], AbstractContextManager[bool]]


class ProviderType(Protocol):
    """A provider type: the value of a KMS provider's ``provider`` field, and its rules.
    Checks make no remote call; only ``client`` builds something that does."""

    name: str  # the ``provider`` value that selects it
    credential_keys: tuple[str, ...]  # the credential keys it takes; any other is refused
    key_collection_is: str  # what ``key_collection`` names, for messages

    def check_credentials(self, credentials: Mapping[str, str]) -> None:
        """Refuse a credential value it cannot use (InvalidRequest naming the key, never the
        value). What may also come from the app's settings is checked by ``client``."""

    def check_key_collection(self, key_collection: str) -> None:
        """Refuse a ``key_collection`` its service cannot have (InvalidRequest)."""

    def check_key_name(self, key_name: str) -> None:
        """Refuse an engine key whose name cannot name a remote key (InvalidRequest)."""

    def check_compatible(self, key_type: str, purpose: Sequence[str], protection: str) -> None:
        """Raise InvalidRequest naming what is allowed."""

    def client(
        self,
        record: KmsRecord,
        credentials: Mapping[str, str],
        settings: Settings,
        *,
        creation_lock: CreationLock,
    ) -> KmsClient:
        """A client for ``record`` with its opened ``credentials``; InvalidRequest when they
        (with the settings) cannot make one, e.g. a required credential missing everywhere."""
