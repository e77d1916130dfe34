"""``sys/remount`` (``bao secrets move``): a mount moved to a new path with everything it holds.

Everything of a mount lives in the partition named after it, and sealed material is bound to
its mount by the AEAD context, so a move copies each row into the new partition (resealing key
material and credentials for the new name), then removes the old ones. It is resumable: a
migration row (``Remount``) records the phase, both mounts are ``moving`` (writes refused) until
the target is live, every copy is an upsert, and each source row is marked or removed only
after its copy is written, conditioned on the ETag it was copied with (a write that won the
race is copied again). ``Mounts.settle`` resumes a move whose instance died.

The Key Vault copies keep their tags (``keymgmt-mount`` names the old mount): each moved
distribution records the name its tags carry (``Distribution.tag_mount``), so reconciliation,
adoption and Event Grid events still match them, and later imports carry the same tag as the
earlier versions of the same Key Vault key. Retagging instead would need Key Vault reachable
for the move to finish, one call per version, and would race events already in flight.
"""

from __future__ import annotations

import functools
import logging
import uuid
from dataclasses import replace

from shared.errors import ConcurrentChange, EngineError, InvalidRequest, NotFound
from shared.keys import rotation_slot
from shared.mounts import Mounts
from shared.names import RESERVED_MOUNTS, check_mount
from shared.records import Remount, utcnow
from shared.seal import Sealer, credentials_context, material_context
from shared.store import Store, key_op, name_op, optimistic, rotation_entry_op

log = logging.getLogger(__name__)
RESUME_AFTER_SECONDS = 300  # a move in progress for longer than this is taken over by settle()
QUEUED = (
    "Mount move has been queued. Progress will be reported in the server log, tagged with the "
    "returned migration_id"
)


def _path(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest("both 'from' and 'to' path must be specified as a string")
    if value != value.rstrip():
        raise InvalidRequest(f"'{what}' path cannot contain trailing whitespace")
    return value


def _shown(path: str) -> str:
    path = path.strip("/")[:64]
    return (path if path.isprintable() else path.encode("unicode_escape").decode()) + "/"


class Mover:
    def __init__(self, store: Store, sealer: Sealer, mounts: Mounts) -> None:
        self.store = store
        self.sealer = sealer
        self.mounts = mounts

    def start(self, source: object, target: object) -> Remount:
        """Check the request as Vault does, claim both paths, and move."""
        source_path, target_path = _path(source, "from"), _path(target, "to")
        if not source_path or not target_path:
            raise InvalidRequest("both 'from' and 'to' path must be specified as a string")
        first = target_path.strip("/").split("/")[0].lower()
        if "/" in target_path.strip("/") and first in RESERVED_MOUNTS:
            raise InvalidRequest(f"cannot remount to destination {_shown(target_path)}")
        src = self.mounts.get(source_path)
        if src is None:
            raise InvalidRequest(f'no matching mount at "{_shown(source_path)}"')
        target_name = check_mount(target_path)
        if self.store.get_mount(target_name) is not None:
            raise InvalidRequest(f'path already in use at "{target_name}/"')
        if src.state != "active":
            raise InvalidRequest(
                f"mount {src.name}/ is being {'disabled' if src.state == 'disabling' else 'moved'}"
                "; try again once that is done"
            )
        record = self.store.put_remount(
            Remount(str(uuid.uuid4()), src.name, target_name, "in-progress", "copying", utcnow()),
            create=True,
        )
        try:  # the target's row first: it claims the path (a concurrent enable loses)
            self.store.create_mount(
                replace(src, name=target_name, state="moving", moving=record.id, changed=utcnow())
            )
        except ConcurrentChange:
            self._fail(record, "the target path was taken meanwhile")
            raise InvalidRequest(f'path already in use at "{target_name}/"') from None

        def mark() -> None:
            mount = self.store.get_mount(src.name)
            if mount is None or mount.state != "active":
                raise NotFound()
            self.store.update_mount(
                replace(mount, state="moving", moving=record.id, changed=utcnow())
            )

        try:
            optimistic(mark, what=f"mount {src.name}/")
        except NotFound:
            target_row = self.store.get_mount(target_name)
            if target_row is not None and target_row.moving == record.id:
                self.store.delete_mount(target_row)
            self._fail(record, "the source mount changed meanwhile")
            raise InvalidRequest(f'no matching mount at "{src.name}/"') from None
        log.info("moving mount %s to %s (migration %s)", src.name, target_name, record.id)
        self.run(record)
        return self.store.get_remount(record.id) or record

    def status(self, migration_id: str) -> Remount | None:
        try:
            uuid.UUID(migration_id)
        except ValueError:
            return None
        return self.store.get_remount(migration_id)

    def run(self, record: Remount) -> None:
        """Carry a move on from its recorded phase (a fresh one, or one resumed)."""
        self.mounts.forget()
        if record.phase == "copying":
            target = self.store.get_mount(record.target)
            source = self.store.get_mount(record.source)
            if target is None or target.moving != record.id:
                # Died before the target was claimed: nothing was copied.
                if source is not None and source.moving == record.id:
                    self.store.update_mount(replace(source, state="active", moving=""))
                self._fail(record, "the move did not start")
                return
            if source is not None and source.moving == record.id:
                self._copy(record)
            record = self.store.put_remount(replace(record, phase="cleaning"))
        if record.phase == "cleaning":
            self._finish(record)

    # -- copying -------------------------------------------------------------------------------

    def _copy(self, record: Remount) -> None:
        src, dst = record.source, record.target
        for provider in self.store.list_kms(src):
            move_provider = functools.partial(self._move_provider, src, dst, provider.name)
            optimistic(move_provider, what=f"KMS provider {provider.name!r}")
        for name in self.store.list_key_names(src):
            optimistic(functools.partial(self._move_key, src, dst, name), what=f"key {name!r}")
        for dist in self.store.list_distributions(src):
            move_dist = functools.partial(self._move_distribution, src, dst, dist.kms, dist.key)
            optimistic(move_dist, what=f"the distribution of {dist.key!r} to {dist.kms!r}")
        for row in self.store.owner_rows():
            if row.mount == src:
                repoint = functools.partial(self.store.repoint_owner, row, dst)
                optimistic(repoint, what=f"owner row {row}")

    def _move_provider(self, src: str, dst: str, name: str) -> None:
        record = self.store.get_kms(src, name)
        if record is None:
            return
        credentials = record.credentials
        if credentials is not None:
            plain = self.sealer.open(credentials, credentials_context(src, name))
            credentials = self.sealer.seal(plain, credentials_context(dst, name))
        self.store.put_moved_kms(replace(record, mount=dst, credentials=credentials, etag=None))
        self.store.delete_kms(record)  # as copied (ETag): ConcurrentChange if it changed since
        if self.store.get_kms(src, name) is not None:
            raise ConcurrentChange("the provider changed while it was moved")

    def _move_key(self, src: str, dst: str, name: str) -> None:
        key, versions = self.store.key_with_sealed_versions(src, name)
        if key is None or key.state != "active":
            return  # copied already (marked), or being deleted: the clean-up finishes it
        resealed = []
        for v in versions:
            assert v.sealed is not None
            material = self.sealer.open(v.sealed, material_context(src, name, v.version))
            resealed.append(
                replace(
                    v, sealed=self.sealer.seal(material, material_context(dst, name, v.version))
                )
            )
        slot = ""
        if key.rotation_slot and key.next_rotation_time is not None:
            slot = rotation_slot(key.next_rotation_time, dst, name)
            self.store.commit([rotation_entry_op(slot, dst, name)])  # before the key names it
        moved = replace(key, mount=dst, rotation_slot=slot, etag=None)
        self.store.put_moved_key(moved, resealed)
        # Copied as read: the source key is marked deleting on that ETag, so an update that won
        # the race makes this fail, and the key is copied again with it.
        marked = replace(key, state="deleting")
        self.store.commit([key_op(marked), name_op(marked)])

    def _move_distribution(self, src: str, dst: str, kms: str, key: str) -> None:
        dist = self.store.get_distribution(src, kms, key)
        if dist is None:
            return
        self.store.put_moved_distribution(
            replace(dist, mount=dst, tag_mount=dist.tagged_mount, etag=None)
        )
        self.store.delete_distribution(dist)

    # -- finishing -----------------------------------------------------------------------------

    def _finish(self, record: Remount) -> None:
        def activate() -> None:
            target = self.store.get_mount(record.target)
            if target is not None and target.moving == record.id:
                self.store.update_mount(
                    replace(target, state="active", moving="", changed=utcnow())
                )

        optimistic(activate, what=f"mount {record.target}/")
        contents = self.mounts.contents
        source = self.store.get_mount(record.source)
        if source is not None and source.moving == record.id:
            if contents is not None:
                for name in self.store.deleting_keys(record.source):
                    contents.finish_key(record.source, name)
            self.store.delete_mount(source)
        self.store.put_remount(replace(record, status="success", phase="done"))
        self.mounts.forget()
        log.info("moved mount %s to %s (migration %s)", record.source, record.target, record.id)

    def _fail(self, record: Remount, why: str) -> None:
        current = self.store.get_remount(record.id) or record
        self.store.put_remount(replace(current, status="failure", phase="done", error=why))

    def settle(self, older_than: float = RESUME_AFTER_SECONDS) -> list[str]:
        """Resume the moves whose instance died (in progress for longer than ``older_than``)."""
        done = []
        for record in self.store.list_remounts():
            if record.status != "in-progress":
                continue
            if (utcnow() - record.started).total_seconds() < older_than:
                continue
            try:
                self.run(record)
            except EngineError as exc:
                done.append(f"move {record.source}/ to {record.target}/: not resumed yet: {exc}")
                continue
            done.append(
                f"move {record.source}/ to {record.target}/: a move that did not finish was "
                "finished"
            )
        return done
