"""What a dead instance can leave behind, finished or removed by the reconciler.

Every multi-step change is safe to finish from anywhere, so this only has to find the
leftovers: a key delete that did not finish, a mount disable that did not finish, owner index
rows whose distribution never got recorded (or was removed), and rotation index entries that
point to nothing. Each item is isolated: one that fails is reported, the rest go on.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.errors import EngineError
from shared.records import utcnow

if TYPE_CHECKING:
    from shared.keys import KeyEngine
    from shared.service import Service
    from shared.store import OwnerRow, Store

log = logging.getLogger(__name__)

# An owner row is written before its distribution (and kept while Key Vault deletes a removed
# key, which takes seconds): one older than this that no distribution matches is a leftover.
OWNER_ROW_GRACE = dt.timedelta(minutes=10)


def cleanup(service: Service) -> dict[str, list[str]]:
    done: list[str] = []
    errors: list[str] = []

    def attempt(what: str, action: Callable[[], Any]) -> None:
        try:
            action()
        except EngineError as exc:
            errors.append(f"{what}: {exc}")
        except Exception as exc:
            log.exception("cleanup of %s failed", what)
            errors.append(f"{what}: internal error ({type(exc).__name__})")

    attempt("mounts", lambda: done.extend(service.mounts.settle()))
    attempt("auth methods", lambda: done.extend(service.auth.settle()))
    store, keys = service.store, service.keys
    for mount in store.list_mounts():
        for name in store.deleting_keys(mount.name):
            attempt(
                f"key {mount.name}/{name}",
                functools.partial(_finish, keys, store, mount.name, name, done),
            )
    now = utcnow()
    for row in store.owner_rows():
        if row.written is not None and now - row.written < OWNER_ROW_GRACE:
            continue
        attempt(f"owner row {row}", functools.partial(_owner, store, row, done))
    for slot, entry_mount, key in store.rotation_entries():
        attempt(
            f"rotation entry {slot}",
            functools.partial(_rotation, store, slot, entry_mount, key, done),
        )
    return {"done": done, "errors": errors}


def _finish(keys: KeyEngine, store: Store, mount: str, name: str, done: list[str]) -> None:
    key = store.get_key(mount, name)
    if key is not None and key.state == "deleting":
        keys.finish_delete(key)
        done.append(f"key {mount}/{name}: a delete that did not finish was finished")


def _owner(store: Store, row: OwnerRow, done: list[str]) -> None:
    dist = store.get_distribution(row.mount, row.kms, row.key)
    if dist is not None and dist.remote_name == row.remote_name:
        return
    store.drop_owner_row(row)
    done.append(f"owner row {row}: no distribution uses that name; removed")


def _rotation(store: Store, slot: str, mount: str, name: str, done: list[str]) -> None:
    key = store.get_key(mount, name)
    if key is not None and key.state == "active" and key.rotation_slot == slot:
        return
    store.drop_rotation_entry(slot)
    done.append(f"rotation entry {slot}: its key moved on; removed")
