"""Secrets engine mounts (``sys/mounts``): only the ``keymgmt`` type exists here."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from shared.errors import InvalidRequest
from shared.names import check_mount
from shared.store import ConcurrentChange, Mount, Store, utcnow

log = logging.getLogger(__name__)
ENGINE_TYPE = "keymgmt"


class Mounts:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._known: set[str] = set()

    def enable(self, path: str, engine_type: str, description: str = "") -> None:
        name = check_mount(path)
        if engine_type != ENGINE_TYPE:
            raise InvalidRequest(
                f"unsupported secrets engine type {engine_type!r}; this server offers only "
                f"{ENGINE_TYPE!r}"
            )
        if self.store.get_mount(name) is not None or not self._create(name, description):
            raise InvalidRequest(f"path is already in use at {name}/")
        log.info("enabled mount %s", name)

    def _create(self, name: str, description: str) -> bool:
        """Create the mount row; False if it exists already (created concurrently)."""
        try:
            self.store.create_mount(
                Mount(name, ENGINE_TYPE, description, str(uuid.uuid4()), utcnow())
            )
        except ConcurrentChange:
            return False
        return True

    def ensure(self, path: str) -> None:
        """Enable a mount if it is not there yet (the setting that pre-enables mounts)."""
        name = check_mount(path)
        if self.store.get_mount(name) is None:
            self._create(name, "")

    def disable(self, path: str) -> None:
        name = check_mount(path)
        if self.store.get_mount(name) is None:
            return
        for prefix, what in (("name:", "keys"), ("kms:", "KMS providers")):
            if self.store.partition_has(name, prefix):
                raise InvalidRequest(
                    f"cannot disable mount {name}/: it still holds {what}; delete them first"
                )
        self.store.delete_mount(name)
        self._known.discard(name)
        log.info("disabled mount %s", name)

    def forget(self) -> None:
        """Drop the cache of known mounts (the table was lost and recreated)."""
        self._known.clear()

    def exists(self, path: str, *, for_write: bool = False) -> bool:
        # Reads may trust the cache: a disabled mount holds no keys, so they find nothing.
        # Writes always look, so nothing is written under a mount another instance disabled.
        if path in self._known and not for_write:
            return True
        if self.store.get_mount(path) is not None:
            self._known.add(path)
            return True
        return False

    def list(self) -> dict[str, Any]:
        result = {}
        for mount in self.store.list_mounts():
            result[f"{mount.name}/"] = {
                "type": mount.type,
                "description": mount.description,
                "accessor": f"{mount.type}_{mount.uuid[:8]}",
                "uuid": mount.uuid,
                "config": {"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": False},
                "options": None,
                "local": False,
                "seal_wrap": False,
                "external_entropy_access": False,
                "plugin_version": "",
                "running_plugin_version": "",
                "running_sha256": "",
                "deprecation_status": "supported",
            }
        return result
