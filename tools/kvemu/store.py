"""Vaults and their keys: versions, attributes, soft delete. Knows nothing of HTTP.

State lives in memory; ``StateFile`` optionally keeps it in a JSON or SQLite file so a local
stack keeps its vaults across restarts (private keys included: that file is the emulator's
own, in a git-ignored folder, and never served).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import keys as keymod
from .errors import KvError, bad_parameter, key_not_found
from .tokens import KEYVAULT_AUDIENCE, MANAGED_HSM_AUDIENCE

NAME_RE = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
VERSION_RE = re.compile(r"^[0-9a-f]{32}$")
MAX_TAGS = 15
MAX_TAG_LEN = 256
DEFAULT_RECOVERABLE_DAYS = 90
# A deleted key becomes visible under /deletedkeys a few seconds after DELETE answers; until
# then its name can be neither read nor reused (409 ObjectIsBeingDeleted). docs/kvemu.md.
DEFAULT_DELETE_DELAY = 3.0


def now() -> int:
    return int(time.time())


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise bad_parameter(
            f"The request URI contains an invalid name: {name}. Key names are 1-127 characters "
            "of 0-9, a-z, A-Z and -."
        )


def _check_time(attributes: dict[str, Any], member: str) -> int | None:
    value = attributes.get(member)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_parameter(f"The attribute {member} must be an integer (Unix seconds).")
    return value


def check_tags(tags: Any) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise bad_parameter("The parameter tags must be an object of string values.")
    if len(tags) > MAX_TAGS:
        raise bad_parameter(f"A key can have at most {MAX_TAGS} tags; {len(tags)} were given.")
    for k, v in tags.items():
        if len(k) > MAX_TAG_LEN or len(v) > MAX_TAG_LEN:
            raise bad_parameter(f"Tag names and values are at most {MAX_TAG_LEN} characters.")
    return dict(tags)


@dataclass
class KeyVersion:
    name: str
    version: str
    kty: str
    key_ops: list[str]
    material: keymod.KeyMaterial = field(repr=False)
    enabled: bool = True
    nbf: int | None = None
    exp: int | None = None
    created: int = field(default_factory=now)
    updated: int = field(default_factory=now)
    tags: dict[str, str] = field(default_factory=dict)

    def to_state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "kty": self.kty,
            "key_ops": self.key_ops,
            "material": keymod.material_to_text(self.material),
            "enabled": self.enabled,
            "nbf": self.nbf,
            "exp": self.exp,
            "created": self.created,
            "updated": self.updated,
            "tags": self.tags,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> KeyVersion:
        fields = dict(data)
        fields["material"] = keymod.material_from_text(fields["material"])
        return cls(**fields)


@dataclass
class KeyEntry:
    """A key name and its versions (oldest first)."""

    name: str
    versions: list[KeyVersion] = field(default_factory=list)
    deleted_date: int | None = None
    scheduled_purge_date: int | None = None
    visible_at: float = 0.0  # monotonic time the deletion completes (deleting → deleted)

    @property
    def latest(self) -> KeyVersion:
        return self.versions[-1]

    def find(self, version: str | None) -> KeyVersion | None:
        if not version:
            return self.latest
        version = version.lower()
        return next((v for v in self.versions if v.version == version), None)


class Vault:
    """One vault's keys. All methods are thread-safe."""

    def __init__(
        self,
        name: str,
        *,
        managed_hsm: bool = False,
        recoverable_days: int = DEFAULT_RECOVERABLE_DAYS,
        purge_protection: bool = True,
        delete_delay: float = DEFAULT_DELETE_DELAY,
        permission_model: str = "rbac",
        on_change: Callable[[Vault], None] | None = None,
        on_new_version: Callable[[Vault, KeyVersion], None] | None = None,
    ) -> None:
        self.name = name
        self.managed_hsm = managed_hsm
        self.recoverable_days = recoverable_days
        self.purge_protection = purge_protection
        self.delete_delay = delete_delay
        self.permission_model = permission_model
        self._keys: dict[str, KeyEntry] = {}
        self._deleting: dict[str, KeyEntry] = {}
        self._deleted: dict[str, KeyEntry] = {}
        self._lock = threading.RLock()
        self._on_change = on_change or (lambda vault: None)
        self._on_new_version = on_new_version or (lambda vault, version: None)

    @property
    def audience(self) -> str:
        """The token audience (and challenge resource) of this kind of vault."""
        return MANAGED_HSM_AUDIENCE if self.managed_hsm else KEYVAULT_AUDIENCE

    @property
    def recovery_level(self) -> str:
        if self.recoverable_days == 0:
            return "Purgeable"
        prefix = "Recoverable" if self.recoverable_days >= 90 else "CustomizedRecoverable"
        return prefix if self.purge_protection else f"{prefix}+Purgeable"

    # --- state ------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        with self._lock:

            def entry(e: KeyEntry) -> dict[str, Any]:
                return {
                    "name": e.name,
                    "deleted_date": e.deleted_date,
                    "scheduled_purge_date": e.scheduled_purge_date,
                    "versions": [v.to_state() for v in e.versions],
                }

            return {
                "managed_hsm": self.managed_hsm,
                "keys": [entry(e) for e in self._keys.values()],
                # a deletion in progress is saved as done: a restart does not replay the delay
                "deleted": [entry(e) for e in [*self._deleted.values(), *self._deleting.values()]],
            }

    def load_state(self, data: dict[str, Any]) -> None:
        with self._lock:
            for bucket, target in (("keys", self._keys), ("deleted", self._deleted)):
                for e in data.get(bucket, []):
                    ke = KeyEntry(
                        name=e["name"],
                        versions=[KeyVersion.from_state(v) for v in e["versions"]],
                        deleted_date=e.get("deleted_date"),
                        scheduled_purge_date=e.get("scheduled_purge_date"),
                    )
                    target[ke.name.lower()] = ke

    # --- lookups ----------------------------------------------------------------------------

    def _settle(self) -> None:
        """Finish deletions whose delay has passed; purge what is past its purge date."""
        moment = time.monotonic()
        for key, entry in list(self._deleting.items()):
            if entry.visible_at <= moment:
                del self._deleting[key]
                if self.recoverable_days:
                    self._deleted[key] = entry
        current = now()
        for key, entry in list(self._deleted.items()):
            if entry.scheduled_purge_date is not None and entry.scheduled_purge_date <= current:
                del self._deleted[key]

    def _active(self, name: str) -> KeyEntry:
        self._settle()
        entry = self._keys.get(name.lower())
        if entry is None:
            raise key_not_found(name)
        return entry

    def get(self, name: str, version: str | None) -> KeyVersion:
        with self._lock:
            found = self._active(name).find(version)
            if found is None:
                raise key_not_found(f"{name}/{version}")
            return found

    def list_keys(self) -> list[KeyEntry]:
        with self._lock:
            self._settle()
            return sorted(self._keys.values(), key=lambda e: e.name.lower())

    def list_versions(self, name: str) -> list[KeyVersion]:
        """The versions of a name; none (not an error) for a name that holds no key."""
        with self._lock:
            self._settle()
            entry = self._keys.get(name.lower())
            return list(entry.versions) if entry is not None else []

    def get_deleted(self, name: str) -> KeyEntry:
        with self._lock:
            self._settle()
            entry = self._deleted.get(name.lower())
            if entry is None:
                raise KvError(404, "KeyNotFound", f"Deleted Key not found: {name}")
            return entry

    def list_deleted(self) -> list[KeyEntry]:
        with self._lock:
            self._settle()
            return sorted(self._deleted.values(), key=lambda e: e.name.lower())

    def list_deleting(self) -> list[KeyEntry]:
        """Keys whose deletion has not completed yet (inspection only)."""
        with self._lock:
            self._settle()
            return sorted(self._deleting.values(), key=lambda e: e.name.lower())

    # --- writes -----------------------------------------------------------------------------

    def _check_not_deleting(self, name: str, *, recreate: bool = False) -> None:
        if name.lower() in self._deleting:
            raise KvError(
                409,
                "Conflict",
                f"Key {name} is currently being deleted and cannot be re-created; retry later."
                if recreate
                else "Key is currently being deleted.",
                inner="ObjectIsBeingDeleted",
            )

    def _check_writable(self, name: str) -> None:
        check_name(name)
        self._settle()
        self._check_not_deleting(name, recreate=True)
        if name.lower() in self._deleted:
            raise KvError(
                409,
                "Conflict",
                f"Key {name} is currently in a deleted but recoverable state, and its name "
                "cannot be reused; in this state, the key can only be recovered or purged.",
                inner="ObjectIsDeletedButRecoverable",
            )

    def add_version(
        self,
        name: str,
        *,
        kty: str,
        key_ops: list[str],
        material: keymod.KeyMaterial,
        attributes: dict[str, Any] | None,
        tags: dict[str, str],
    ) -> KeyVersion:
        attributes = attributes or {}
        enabled = attributes.get("enabled", True)
        if not isinstance(enabled, bool):
            raise bad_parameter("The attribute enabled must be a boolean.")
        if attributes.get("exportable"):
            raise bad_parameter(
                "Exportable keys need a release policy; the emulator does not support key release."
            )
        nbf, exp = _check_time(attributes, "nbf"), _check_time(attributes, "exp")
        with self._lock:
            self._check_writable(name)
            entry = self._keys.setdefault(name.lower(), KeyEntry(name=name))
            version = KeyVersion(
                name=entry.name,
                version=uuid.uuid4().hex,
                kty=kty,
                key_ops=key_ops,
                material=material,
                enabled=enabled,
                nbf=nbf,
                exp=exp,
                tags=tags,
            )
            entry.versions.append(version)
            self._on_change(self)
        self._on_new_version(self, version)
        return version

    def rotate(self, name: str) -> KeyVersion:
        with self._lock:
            latest = self._active(name).latest
            _, size, crv = keymod.describe(latest.material)
            material = keymod.generate(latest.kty, key_size=size, crv=crv, public_exponent=None)
            return self.add_version(
                latest.name,
                kty=latest.kty,
                key_ops=list(latest.key_ops),
                material=material,
                attributes={"enabled": True},
                tags=dict(latest.tags),
            )

    def update(
        self,
        name: str,
        version: str | None,
        *,
        attributes: dict[str, Any] | None,
        key_ops: list[str] | None,
        tags: dict[str, str] | None,
    ) -> KeyVersion:
        with self._lock:
            target = self.get(name, version)
            if key_ops is not None:
                target.key_ops = keymod.validate_key_ops(target.kty, key_ops)
            if attributes:
                if "enabled" in attributes and attributes["enabled"] is not None:
                    if not isinstance(attributes["enabled"], bool):
                        raise bad_parameter("The attribute enabled must be a boolean.")
                    target.enabled = attributes["enabled"]
                if "nbf" in attributes:
                    target.nbf = _check_time(attributes, "nbf")
                if "exp" in attributes:
                    target.exp = _check_time(attributes, "exp")
            if tags is not None:
                target.tags = tags
            target.updated = now()
            self._on_change(self)
            return target

    def delete(self, name: str) -> KeyEntry:
        """Soft delete: answered at once, visible under /deletedkeys after ``delete_delay``."""
        with self._lock:
            entry = self._active(name)
            del self._keys[name.lower()]
            entry.deleted_date = now()
            entry.scheduled_purge_date = entry.deleted_date + self.recoverable_days * 86400
            entry.visible_at = time.monotonic() + self.delete_delay
            self._deleting[name.lower()] = entry
            self._settle()
            self._on_change(self)
            return entry

    def recover(self, name: str) -> KeyEntry:
        with self._lock:
            self._settle()
            self._check_not_deleting(name)
            entry = self.get_deleted(name)
            del self._deleted[name.lower()]
            entry.deleted_date = entry.scheduled_purge_date = None
            self._keys[name.lower()] = entry
            self._on_change(self)
            return entry

    def purge(self, name: str) -> None:
        with self._lock:
            self._settle()
            self._check_not_deleting(name)
            self.get_deleted(name)
            if self.purge_protection:
                raise KvError(
                    403,
                    "Forbidden",
                    'Operation "purge" is not allowed because purge protection is enabled for '
                    "this vault. Key Vault service will automatically purge it after the "
                    f"retention period has passed.\r\nVault: {self.name};location=local",
                )
            del self._deleted[name.lower()]
            self._on_change(self)


class StateFile:
    """Whole-state snapshots in a JSON file (``.json``) or SQLite database (anything else)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._sqlite = self.path.suffix.lower() != ".json"

    def load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        if not self._sqlite:
            return json.loads(self.path.read_text("utf-8"))
        with sqlite3.connect(self.path) as db:
            db.execute("CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, data TEXT)")
            return {
                name: json.loads(data) for name, data in db.execute("SELECT name, data FROM state")
            }

    def save(self, state: dict[str, Any]) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self._sqlite:
                tmp = self.path.with_suffix(".json.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(state, fh)
                os.replace(tmp, self.path)
                return
            with sqlite3.connect(self.path) as db:
                db.execute("CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, data TEXT)")
                db.executemany(
                    "INSERT OR REPLACE INTO state (name, data) VALUES (?, ?)",
                    [(name, json.dumps(data)) for name, data in state.items()],
                )
