"""Key lifecycle: create, read, update, rotate, delete, versions and rotation policy.

Knows nothing of HTTP: names and field values arrive checked (``shared/api`` declares them),
and reads return records, which the API renders. Every change that must be atomic is one
transaction in the key's mount partition, conditioned on the key row's ETag; a lost race is
retried with fresh state.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from shared import keytypes
from shared.errors import KEY_NOT_FOUND, ConcurrentChange, InvalidRequest, NotFound
from shared.mounts import no_route
from shared.names import MAX_DURATION
from shared.records import KeyRecord, KeyVersions, VersionRecord, utcnow
from shared.seal import Sealer, material_context
from shared.store import (
    Op,
    Store,
    delete_key_op,
    delete_name_op,
    key_op,
    name_op,
    optimistic,
    rotation_entry_op,
    version_op,
)

log = logging.getLogger(__name__)

MIN_ROTATE_PERIOD = 3600


class Propagator(Protocol):
    """What the key engine tells distribution about (implemented by shared.distribution)."""

    def after_rotate(self, key: KeyRecord, version: int) -> list[str]: ...

    def after_min_enabled_change(self, key: KeyRecord) -> list[str]: ...


# The class has a method named ``list``: annotations inside it use these names.
Warnings = list[str]
Ops = list[Op]


class Unread:
    """The type of ``UNREAD``: a row not read yet (None means read, and absent)."""


UNREAD = Unread()

MAX_CACHED_VERSIONS = 20_000  # about 12 MB of rsa-2048 public keys


@dataclass(frozen=True)
class CachedVersions:
    uid: str  # the incarnation of the key (KeyRecord.uid) the versions belong to
    versions: tuple[VersionRecord, ...]  # ascending, public parts only

    @property
    def newest(self) -> int:
        return self.versions[-1].version if self.versions else 0


class VersionCache:
    """The public parts of the key versions this instance has read, per key incarnation.

    Safe to share between Functions instances' views of one table because nothing it holds
    can change: a version row is written once (rotation), and removed only with its key,
    whose next incarnation has another ``uid``. What may change (which versions exist and are
    enabled, whether the key exists) is in the key row, which every read reads afresh. Bounded
    by the number of versions held, least recently read keys evicted first."""

    def __init__(self, max_versions: int = MAX_CACHED_VERSIONS) -> None:
        self.max_versions = max_versions
        self._entries: OrderedDict[tuple[str, str], CachedVersions] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, mount: str, name: str) -> CachedVersions | None:
        with self._lock:
            entry = self._entries.get((mount, name))
            if entry is not None:
                self._entries.move_to_end((mount, name))
            return entry

    def put(self, key: KeyRecord, versions: Iterable[VersionRecord]) -> tuple[VersionRecord, ...]:
        """Keep ``versions`` (of ``key``'s incarnation) for ``key``; returns them, ascending."""
        public = tuple(
            sorted(
                (v if v.sealed is None else replace(v, sealed=None) for v in versions),
                key=lambda v: v.version,
            )
        )
        with self._lock:
            self._pop((key.mount, key.name))
            if len(public) <= self.max_versions:
                self._entries[(key.mount, key.name)] = CachedVersions(key.uid, public)
                self._size += len(public)
                while self._size > self.max_versions:
                    _, evicted = self._entries.popitem(last=False)
                    self._size -= len(evicted.versions)
        return public

    def drop(self, mount: str, name: str) -> None:
        with self._lock:
            self._pop((mount, name))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0

    def __len__(self) -> int:
        return self._size

    def _pop(self, item: tuple[str, str]) -> None:
        old = self._entries.pop(item, None)
        if old is not None:
            self._size -= len(old.versions)


def rotation_slot(when: dt.datetime, mount: str, name: str) -> str:
    return f"{int(when.timestamp()):012d}:{mount}:{name}"


class KeyEngine:
    def __init__(
        self,
        store: Store,
        sealer: Sealer,
        *,
        allow_short_rotation: bool = False,
        propagator: Propagator | None = None,
        mount_keeps: Callable[[str, Callable[[], dt.datetime | None]], bool] | None = None,
    ) -> None:
        self.store = store
        self.sealer = sealer
        self.allow_short_rotation = allow_short_rotation
        self.propagator = propagator
        # Asked again after a create: a mount disabled meanwhile gets no key (see Mounts.disable).
        self.mount_keeps = mount_keeps
        self.versions = VersionCache()
        store.on_table_lost.append(self.versions.clear)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, mount: str, name: str) -> KeyRecord:
        return active_key(self.store, mount, name)

    def exists(self, mount: str, name: str) -> bool:
        """Whether the key exists (one point read): the API's existence check, which makes a
        write to ``key/:name`` Vault's create or update operation."""
        key = self.lookup(mount, name)
        return key is not None and key.state == "active"

    def lookup(self, mount: str, name: str) -> KeyRecord | None:
        """The key row as stored (any state), or None: what ``write(known=...)`` takes."""
        return self.store.get_key(mount, name)

    def read(self, mount: str, name: str) -> KeyVersions:
        """The key and its enabled versions (NotFound if none).

        The key row is read afresh every time: it says which versions exist and are enabled,
        and which incarnation of the name this is. A version's public parts never change once
        written, so they come from ``self.versions`` when this instance has read them before:
        one point read then, plus a range query over only the versions a rotation added since.
        A first read is one range query over the key and its versions."""
        entry = self.versions.get(mount, name)
        if entry is None:
            key, rows = self.store.get_key_and_versions(mount, name)
            if key is None or key.state != "active":
                raise NotFound()
            versions = self.versions.put(key, rows)
        else:
            key = self.store.get_key(mount, name)
            if key is None or key.state != "active":
                self.versions.drop(mount, name)
                raise NotFound()
            if entry.uid != key.uid:  # the name was deleted and made again meanwhile
                versions = self.versions.put(
                    key, self.store.list_versions(mount, name, uid=key.uid)
                )
            elif entry.newest < key.latest_version:  # rotated since: read only what is new
                added = self.store.list_versions(
                    mount, name, min_version=entry.newest + 1, uid=key.uid
                )
                versions = self.versions.put(key, [*entry.versions, *added])
            else:
                versions = entry.versions
        low, high = key.min_enabled_version, key.latest_version
        return KeyVersions(key, tuple(v for v in versions if low <= v.version <= high))

    def list(self, mount: str) -> Warnings:
        return self.store.list_key_names(mount)

    # -- create and update -------------------------------------------------------------------

    def write(
        self,
        mount: str,
        name: str,
        *,
        key_type: str | None,
        min_enabled_version: int | None,
        deletion_allowed: bool | None,
        auto_rotate_period: int | None,
        known: KeyRecord | Unread | None = UNREAD,
    ) -> Warnings:
        """POST key/:name: create the key if absent, else update it. Returns warnings.

        ``known``: the key row (or None) as ``lookup`` read it just before, in the same
        request (the API's existence check), taken for the first attempt instead of a second
        read. Every write is conditioned on what it read, so a row that changed since only
        costs a retry, which reads afresh.

        Everything is checked before anything is written. A create that loses its race to
        another create of the name is answered as a later request would be: an update of the
        key that won (refused if the types differ). ``key_type`` is one of
        keytypes.KEY_TYPES and min_enabled_version is not negative: the API's field
        declarations check that; the rules that depend on settings or on the key, and the
        range of dates a period yields, are checked here."""
        if auto_rotate_period is not None:
            self._check_period(auto_rotate_period)
        material: list[keytypes.KeyMaterial] = []  # generated once, on the first create attempt
        outcome: dict[str, Any] = {}

        first = [known]

        def attempt() -> None:
            given = first.pop() if first else UNREAD
            existing = self.store.get_key(mount, name) if isinstance(given, Unread) else given
            if existing is not None and existing.state == "deleting":
                self.finish_delete(existing)
                raise ConcurrentChange("a deleted key of that name was still being removed")
            if existing is None:
                if min_enabled_version not in (None, 0, 1):
                    raise InvalidRequest(
                        f"min_enabled_version must be between 1 and latest_version (1), got "
                        f"{min_enabled_version}"
                    )
                wanted = key_type or keytypes.DEFAULT_TYPE
                if not material:
                    material.append(keytypes.generate(wanted))
                outcome["created"] = self._create(
                    mount, name, wanted, material[0], deletion_allowed, auto_rotate_period
                )
                return
            if key_type is not None and key_type != existing.key_type:
                raise InvalidRequest(
                    f"type cannot be changed: key {name!r} is {existing.key_type}, not {key_type}; "
                    "create a key under another name instead"
                )
            outcome.update(
                self._update_once(
                    existing, min_enabled_version, deletion_allowed, auto_rotate_period
                )
            )

        optimistic(attempt, what=f"key {name!r}")
        created = outcome.get("created")
        if (
            created is not None
            and self.mount_keeps is not None
            and not self.mount_keeps(mount, lambda: self.store.key_listed(mount, name))
        ):
            self._undo_create(created)
            raise no_route(mount)
        updated: KeyRecord | None = outcome.get("key")
        if updated is not None and outcome.get("min_changed") and self.propagator and updated.kms:
            return self.propagator.after_min_enabled_change(updated)
        return []

    def _check_period(self, period: int) -> None:
        # The API's declaration refuses these first, with its message; this guards the dates
        # the engine computes from a period, whoever the caller.
        if not 0 <= period <= MAX_DURATION:
            raise InvalidRequest(
                f"auto_rotate_period must be 0 (off) or a positive duration of at most "
                f"{MAX_DURATION // 86400}d ({MAX_DURATION} seconds)"
            )
        if 0 < period < MIN_ROTATE_PERIOD and not self.allow_short_rotation:
            raise InvalidRequest(
                f"auto_rotate_period must be at least 1h ({MIN_ROTATE_PERIOD} seconds), or 0 to "
                f"turn scheduled rotation off; got {period} seconds"
            )

    def _create(
        self,
        mount: str,
        name: str,
        key_type: str,
        material: keytypes.KeyMaterial,
        deletion_allowed: bool | None,
        period: int | None,
    ) -> KeyRecord:
        """One attempt: ConcurrentChange if the name was taken meanwhile."""
        now = utcnow()
        version = VersionRecord(
            1,
            now,
            material.public_pem,
            self.sealer.seal(material.private, material_context(mount, name, 1)),
        )
        key = KeyRecord(
            mount=mount,
            name=name,
            key_type=key_type,
            latest_version=1,
            min_enabled_version=1,
            deletion_allowed=bool(deletion_allowed),
            created=now,
            uid=uuid.uuid4().hex,
        )
        key, index_ops = self._reschedule(key, period or 0, now)
        self._write_index(index_ops)
        try:
            etag, _, _ = self.store.commit(
                [key_op(key, create=True), name_op(key, create=True), version_op(key, version)]
            )
        except ConcurrentChange:
            # Our index entry may point to nothing now: take it back, unless the key that won
            # holds that very slot (same due second and period), which makes it its entry.
            if index_ops:
                winner = self.store.get_key(mount, name)
                if winner is None or winner.rotation_slot != key.rotation_slot:
                    self.store.drop_rotation_entry(key.rotation_slot)
            raise
        log.info("created key %s/%s type %s", mount, name, key_type)
        return replace(key, etag=etag)

    def _undo_create(self, key: KeyRecord) -> None:
        """Take back a key just created in a mount that was disabled meanwhile."""

        def mark() -> KeyRecord | None:
            current = self.store.get_key(key.mount, key.name)
            if current is None or current.uid != key.uid:
                return None
            marked = replace(current, state="deleting")
            etag, _ = self.store.commit([key_op(marked), name_op(marked)])
            return replace(marked, etag=etag)

        marked = optimistic(mark, what=f"key {key.name!r}")
        if marked is not None:
            self.finish_delete(marked)
        log.info("key %s/%s undone: the mount was disabled meanwhile", key.mount, key.name)

    def _update_once(
        self,
        key: KeyRecord,
        min_enabled_version: int | None,
        deletion_allowed: bool | None,
        period: int | None,
    ) -> dict[str, Any]:
        """One attempt at changing ``key`` as read: ConcurrentChange if it changed meanwhile."""
        changes: dict[str, Any] = {}
        if min_enabled_version is not None:
            wanted = max(min_enabled_version, 1)  # 0 means "all versions", i.e. 1
            if wanted > key.latest_version:
                raise InvalidRequest(
                    f"min_enabled_version must be between 1 and latest_version "
                    f"({key.latest_version}), got {min_enabled_version}"
                )
            changes["min_enabled_version"] = wanted
        if deletion_allowed is not None:
            changes["deletion_allowed"] = deletion_allowed
        updated = replace(key, **changes)
        index_ops: Ops = []
        if period is not None and period != key.auto_rotate_period:
            base = self._last_rotation(key)
            updated, index_ops = self._reschedule(updated, period, base)
        if updated == key:
            return {}
        self._write_index(index_ops)
        self.store.commit([key_op(updated)])
        self._drop_index(key, updated)
        return {
            "key": updated,
            "min_changed": updated.min_enabled_version != key.min_enabled_version,
        }

    # -- rotation ----------------------------------------------------------------------------

    def rotate(
        self,
        mount: str,
        name: str,
        *,
        expected_slot: str | None = None,
        expected_latest: int | None = None,
        known: KeyRecord | None = None,
    ) -> tuple[int, Warnings]:
        """Add a version. With ``expected_slot``, only while the key is still due at that slot
        (the sweep's guard against double rotation); with ``expected_latest``, only while that
        is still the latest version (an expiry event's guard). Returns (0, []) when skipped.
        ``known`` is a record the caller just read (saves a read; the key is read again after
        the slow key generation, right before the conditioned write)."""
        key = known if known is not None and known.name == name else self._rotatable(mount, name)
        material = keytypes.generate(key.key_type)  # slow part first, outside the race window
        result: dict[str, Any] = {}

        def attempt() -> None:
            current = self._rotatable(mount, name)
            if (expected_slot is not None and current.rotation_slot != expected_slot) or (
                expected_latest is not None and current.latest_version != expected_latest
            ):
                result["skipped"] = True
                return
            result.pop("skipped", None)
            version = current.latest_version + 1
            now = utcnow()
            record = VersionRecord(
                version,
                now,
                material.public_pem,
                self.sealer.seal(material.private, material_context(mount, name, version)),
            )
            updated = replace(current, latest_version=version)
            updated, index_ops = self._reschedule(updated, current.auto_rotate_period, now)
            self._write_index(index_ops)
            self.store.commit([key_op(updated), version_op(current, record)])
            self._drop_index(current, updated)
            result["key"] = updated
            result["version"] = version

        optimistic(attempt, what=f"key {name!r}")
        if result.get("skipped"):
            return 0, []
        key, version = result["key"], result["version"]
        log.info("rotated key %s/%s to version %d", mount, name, version)
        warnings: list[str] = []
        if self.propagator and key.kms:
            warnings = self.propagator.after_rotate(key, version)
        return version, warnings

    def _rotatable(self, mount: str, name: str) -> KeyRecord:
        """The key to rotate. A missing one is a refused write with a text, as Vault's transit
        answers it (400 ``key not found``), not a read's empty 404 the CLI shows as nothing."""
        try:
            return self.get(mount, name)
        except NotFound:
            raise InvalidRequest(KEY_NOT_FOUND) from None

    # -- delete ------------------------------------------------------------------------------

    def delete(self, mount: str, name: str, *, with_mount: bool = False) -> None:
        """Delete a key: mark it ``deleting`` (it disappears from reads and lists at once),
        then remove its rows. Idempotent: a key already gone, or gone half-way, is done.
        ``with_mount``: the mount is being disabled, which drops its keys whatever their
        deletion_allowed (as Vault drops a disabled mount's data); a distributed key is still
        refused."""

        def mark() -> KeyRecord | None:
            key = self.store.get_key(mount, name)
            if key is None or key.state != "active":
                return key
            if not key.deletion_allowed and not with_mount:
                raise InvalidRequest(
                    f"key {name!r} cannot be deleted: deletion_allowed is false; "
                    "set deletion_allowed=true first"
                )
            if key.kms:
                raise InvalidRequest(
                    f"key {name!r} cannot be deleted: it is distributed to KMS providers "
                    f"{sorted(key.kms)}; remove it from them first"
                )
            marked = replace(key, state="deleting")
            etag, _ = self.store.commit([key_op(marked), name_op(marked)])
            return replace(marked, etag=etag)

        key = optimistic(mark, what=f"key {name!r}")
        if key is None:
            return
        self.finish_delete(key)
        log.info("deleted key %s/%s", mount, name)

    def finish_delete(self, key: KeyRecord) -> None:
        """Remove a key marked deleting: versions first, the key row (which hides them) last.
        Safe to run from several places at once, and after a crash at any step."""
        self.versions.drop(key.mount, key.name)  # memory only: reads check the key row

        def finish() -> None:
            current = self.store.get_key(key.mount, key.name)
            if current is None or current.state != "deleting" or current.uid != key.uid:
                return  # finished by someone else (and maybe created again since)
            self.store.delete_rows(current.mount, self.store.version_rows(current))
            if current.rotation_slot:
                self.store.drop_rotation_entry(current.rotation_slot)
            try:
                self.store.commit(
                    [
                        delete_key_op(current),
                        delete_name_op(current),
                    ]
                )
            except ConcurrentChange:
                again = self.store.get_key(key.mount, key.name)
                if again is None or again.etag != current.etag:
                    raise  # it changed: look again
                # Unchanged, so the list row is what is missing: the key row goes alone.
                self.store.commit([delete_key_op(current)])

        optimistic(finish, what=f"the removal of key {key.name!r}")

    # -- rotation schedule -------------------------------------------------------------------

    def _last_rotation(self, key: KeyRecord) -> dt.datetime:
        versions = self.store.list_versions(key.mount, key.name, min_version=key.latest_version)
        return versions[-1].creation_time if versions else key.created

    def _reschedule(self, key: KeyRecord, period: int, base: dt.datetime) -> tuple[KeyRecord, Ops]:
        """The key with its next rotation time and index slot for ``period`` from ``base``."""
        if not period:
            return replace(key, auto_rotate_period=0, next_rotation_time=None, rotation_slot=""), []
        when = base + dt.timedelta(seconds=period)
        slot = rotation_slot(when, key.mount, key.name)
        updated = replace(
            key, auto_rotate_period=period, next_rotation_time=when, rotation_slot=slot
        )
        return updated, [rotation_entry_op(slot, key.mount, key.name)]

    def _write_index(self, ops: Ops) -> None:
        # The index entry goes first: a crash before the key commit leaves only a stale entry,
        # which the sweep recognises (the key's rotation_slot differs) and removes.
        if ops:
            self.store.commit(ops)

    def _drop_index(self, before: KeyRecord, after: KeyRecord) -> None:
        if before.rotation_slot and before.rotation_slot != after.rotation_slot:
            self.store.drop_rotation_entry(before.rotation_slot)

    # -- material (distribution only) --------------------------------------------------------

    def unseal(self, mount: str, name: str, version: int) -> bytes:
        return unseal_version(self.store, self.sealer, mount, name, version)


def active_key(store: Store, mount: str, name: str) -> KeyRecord:
    """The key, if it exists and is not being deleted (NotFound otherwise)."""
    key = store.get_key(mount, name)
    if key is None or key.state != "active":
        raise NotFound()
    return key


def unseal_version(store: Store, sealer: Sealer, mount: str, name: str, version: int) -> bytes:
    """One version's key material (distribution only: never on a read path)."""
    record = store.get_sealed_version(mount, name, version)
    if record is None or record.sealed is None:
        raise NotFound(f"key {name!r} has no version {version}")
    return sealer.open(record.sealed, material_context(mount, name, version))
