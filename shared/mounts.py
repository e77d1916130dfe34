"""Secrets engine mounts (``sys/mounts``): only the ``keymgmt`` type exists here.

The mount path is checked here, not by the route (``sys/mounts/:path`` declares no parameter
rule): Vault's route takes any path, a read of one that cannot be a mount answers that there is
no mount there, and an enable checks the engine type before the path."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace

from shared.errors import ConcurrentChange, InvalidRequest, NotFound
from shared.names import check_mount
from shared.records import Mount, utcnow
from shared.store import Store, optimistic

log = logging.getLogger(__name__)
ENGINE_TYPE = "keymgmt"
UNDO_WAIT_SECONDS = 10  # how long a disable waits for creates that raced it to take themselves back


def no_route(mount: str) -> NotFound:
    """Vault's answer for a path under no mount (reads and writes alike)."""
    shown = mount[:64] if mount.isprintable() else "?"
    return NotFound(f'no handler for route "{shown}/". route entry not found.')


MountList = list[Mount]  # the class has a method named ``list``: its annotations use this


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
        """Disable an empty mount. Marked ``disabling`` first (new writes are refused from
        then on), then checked for keys and providers, then deleted. A write that read the
        mount as active before the mark checks it again after its commit and undoes itself
        (``keeps``), so no key outlives its mount."""
        name = check_mount(path)

        def mark() -> Mount | None:
            mount = self.store.get_mount(name)
            if mount is None or mount.state == "disabling":
                return mount
            return self.store.update_mount(replace(mount, state="disabling", changed=utcnow()))

        if optimistic(mark, what=f"mount {name}/") is None:
            return
        mount = self.store.get_mount(name)  # read again: when the storage wrote the mark
        if mount is None:
            return
        self._known.discard(name)
        try:
            self._wait_empty(mount)
        except InvalidRequest:
            self._reactivate(name)
            raise
        self.store.delete_mount(mount)
        log.info("disabled mount %s", name)

    def _wait_empty(self, mount: Mount) -> None:
        """Refuse a mount that holds keys or providers. One written after the mark is a create
        that read the mount as active a moment before: it takes itself back when it sees the
        mark, so it is waited for (briefly), and the disable wins."""
        deadline = time.monotonic() + UNDO_WAIT_SECONDS
        while True:
            late_only = True
            for kind, what in (("keys", "keys"), ("providers", "KMS providers")):
                stamps = self.store.first_written(mount.name, kind)
                if not stamps:
                    continue
                if mount.written is None or any(t is None or t < mount.written for t in stamps):
                    late_only = False
                if not late_only or time.monotonic() > deadline:
                    raise InvalidRequest(
                        f"cannot disable mount {mount.name}/: it still holds {what}; delete "
                        "them first"
                    )
                break
            else:
                return  # empty
            time.sleep(0.1)

    def _reactivate(self, name: str) -> None:
        def attempt() -> None:
            mount = self.store.get_mount(name)
            if mount is not None and mount.state == "disabling":
                self.store.update_mount(replace(mount, state="active", changed=utcnow()))

        optimistic(attempt, what=f"mount {name}/")

    def keeps(self, name: str, written: Callable[[], dt.datetime | None]) -> bool:
        """After a create that may be the first in the mount: may the created row stay
        (``written`` tells when the storage wrote it)? Yes while the mount is active. Once it
        is being disabled, only if the storage wrote the row before the mark: then the disable
        sees it and refuses. A row written after the mark (or a mount already gone) must go:
        the disable is waiting for that."""
        mount = self.store.get_mount(name)
        if mount is not None and mount.state == "active":
            return True
        if mount is None or mount.written is None:
            return False
        written_at = written()
        return written_at is not None and written_at < mount.written

    def settle(self, older_than: float = 300) -> list[str]:
        """Finish what a disable that died left: a mount ``disabling`` for longer than
        ``older_than`` seconds is deleted if empty, made active again otherwise."""
        done = []
        for mount in self.store.list_mounts():
            if mount.state != "disabling" or mount.changed is None:
                continue
            if (utcnow() - mount.changed).total_seconds() < older_than:
                continue
            if self.store.holds(mount.name, "keys") or self.store.holds(mount.name, "providers"):
                self._reactivate(mount.name)
                done.append(f"mount {mount.name}/: a disable that did not finish was undone")
            else:
                self.store.delete_mount(mount)
                done.append(f"mount {mount.name}/: a disable that did not finish was finished")
        return done

    def forget(self) -> None:
        """Drop the cache of known mounts (the table was lost and recreated)."""
        self._known.clear()

    def exists(self, path: str, *, for_write: bool = False) -> bool:
        # Reads may trust the cache: a disabled mount holds no keys, so they find nothing.
        # Writes always look, so nothing is written under a mount another instance disabled
        # or is disabling.
        if path in self._known and not for_write:
            return True
        mount = self.store.get_mount(path)
        if mount is None or (for_write and mount.state != "active"):
            return False
        self._known.add(path)
        return True

    def list(self) -> MountList:
        """Every mount, as storage lists them (``disabling`` ones too, until they are gone)."""
        return self.store.list_mounts()
