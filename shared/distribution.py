"""Distribution: putting engine keys into a KMS provider, and keeping them there as they rotate.

Every change that crosses Table Storage and the KMS is resumable. The distribution row is
written (with the key's list of KMS providers, in one transaction) before the first import;
versions are imported in order, each recorded while the next is sent (the last one in the
row's final write); imported versions carry tags naming mount, key and engine version (and the
import before them, if its record was in flight), so a retry finds what a crash left behind (at
most two imports: the remote key's latest version and the one it names) instead of importing it
twice.
What is still to do is derivable: engine versions 1..latest missing from the row's ``versions``.
One importer at a time per distribution, across instances: the import lease on its row.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from functools import partial

from shared import overlap
from shared.errors import (
    ConcurrentChange,
    EngineError,
    InvalidRequest,
    NotFound,
    RowTampered,
    SealError,
)
from shared.keys import active_key, unseal_version
from shared.kms import Kms
from shared.names import MAX_DURATION
from shared.providers import (
    ImportOutcomeUnknown,
    KmsClient,
    PermissionMissing,
    RemoteNameTaken,
    RemoteVersion,
    VersionImport,
    provider_type,
)
from shared.records import Distribution, KeyRecord, KmsRecord, utcnow
from shared.seal import Sealer
from shared.settings import Settings
from shared.store import (
    Store,
    delete_dist_op,
    dist_op,
    key_op,
    kms_op,
    optimistic,
)

log = logging.getLogger(__name__)

TAG_MOUNT, TAG_KEY, TAG_VERSION, TAG_NAME = (
    "keymgmt-mount",
    "keymgmt-key",
    "keymgmt-version",
    "key_name",
)
# On an import sent while the one before it was still being recorded: that one's Key Vault
# version id, so a crash that loses the record leaves it findable from the latest version.
TAG_PREVIOUS = "keymgmt-previous"

# The import lease: renewed by each recorded import, and before each import unless it was just
# written, so a live holder keeps it however many versions it imports, and a dead holder's lease
# runs out within this.
LEASE_SECONDS = 30
# Before an import, a lease written less than this long ago is not renewed again: it still has
# more than LEASE_SECONDS - RENEW_AFTER_SECONDS to run.
RENEW_AFTER_SECONDS = 5
# A caller waits this long for a holder: past a dead holder's expiry, so it takes over.
LEASE_WAIT_SECONDS = LEASE_SECONDS + 5
# After an import got no answer, give it this long to become visible before looking for it by
# its tags (the request itself already waited the client's read timeout).
IMPORT_SETTLE_SECONDS = 2.0


def is_ours(dist: Distribution, rv: RemoteVersion, version: int | None = None) -> bool:
    """Whether a remote version carries this distribution's tags (and, with ``version``, is
    that engine version's import). The one test of ownership: tags are only a claim, so
    callers still check the version against what the engine recorded."""
    tags = rv.tags
    if tags.get(TAG_MOUNT) != dist.tagged_mount or tags.get(TAG_KEY) != dist.key:
        return False
    return version is None or tags.get(TAG_VERSION) == str(version)


def claimed_version(dist: Distribution, rv: RemoteVersion) -> int | None:
    """The engine version a remote version's tags say it is an import of, if it carries this
    distribution's tags and names a version; None otherwise."""
    tag = rv.tags.get(TAG_VERSION, "")
    return int(tag) if tag.isdecimal() and is_ours(dist, rv) else None


def adoptable(dist: Distribution, rv: RemoteVersion) -> int | None:
    """The engine version ``rv`` is an unrecorded import of (ours by its tags, a version the
    row records neither by id nor by number: what a crash between an import and its record
    leaves), or None."""
    version = claimed_version(dist, rv)
    if version is None or version in dist.versions or rv.version_id in dist.versions.values():
        return None
    return version


class LeaseLost(EngineError):
    """This request's import lease ran out and another instance holds it now: that one
    finishes the work (it adopts what this one imported, by its tags)."""

    status = 409


class DistributionRemoved(NotFound):
    """The distribution was removed, or marked for removal, while this request worked on it.
    A distribute starts over (a new distribution); anything else stops and says so."""


@dataclass(frozen=True)
class DistributionStatus:
    """A distribution as ``kms/:name/key/:key_name`` shows it."""

    distribution: Distribution
    pending_versions: tuple[int, ...]  # engine versions the remote key does not hold yet


@dataclass(frozen=True)
class Seen:
    """The remote key's newest version as the caller saw it, when nothing could import into it
    since (the caller held the lease, or made the name and took the lease before anyone else
    wrote the row): an import to adopt need not be looked for again. None: no version that
    could be adopted."""

    latest: RemoteVersion | None


@dataclass(frozen=True)
class Completed:
    """What ``Distributor.complete`` did."""

    warnings: list[str]
    dist: Distribution  # the row as this call last wrote or read it
    key: KeyRecord  # the key as last read (by this call, else the caller's)
    imported: tuple[int, ...]  # engine versions this call recorded
    landed: Mapping[str, bool]  # remote version id → enabled, for each of those


@dataclass
class _Run:
    """What one ``complete`` call carries from one import to the next."""

    unreadable: dict[int, str] = field(default_factory=dict)  # material does not open: skipped
    imported: list[int] = field(default_factory=list)  # engine versions recorded by this call
    landed: dict[str, bool] = field(default_factory=dict)  # remote version id → enabled
    # The latest import, not recorded yet: recorded before anything else is imported, at the
    # latest with the row's last write (so at most one import is ever unrecorded, the remote
    # key's latest version, which a retry adopts by its tags).
    pending: dict[int, str] = field(default_factory=dict)
    # The import before the current one, being recorded while the current one is sent: the
    # write (the row as it leaves it) and what it records.
    recording: tuple[Future[Distribution], dict[int, str]] | None = None
    # Key material being unsealed ahead of its import, by engine version.
    ready: dict[int, Future[bytes]] = field(default_factory=dict)
    # The key, read again while the last import ran: (when the read started, the read).
    key_read: tuple[float, Future[KeyRecord | None]] | None = None


class Distributor:
    """Distributions: distribute, read, remove, and propagate rotations and
    ``min_enabled_version`` (the key engine's ``Propagator``). Its collaborators: the store
    (keys are read through it, so no key engine is needed), the settings, the sealer (key
    material) and the KMS providers (their records and clients)."""

    def __init__(self, store: Store, settings: Settings, sealer: Sealer, kms: Kms) -> None:
        self.store = store
        self.settings = settings
        self.sealer = sealer
        self.kms = kms

    # -- distribute ---------------------------------------------------------------------------

    def distribute(
        self,
        mount: str,
        kms: str,
        key_name: str,
        *,
        purpose: Sequence[str],
        protection: str,
        expiration_period: int = 0,
    ) -> list[str]:
        if not 0 <= expiration_period <= MAX_DURATION:
            raise InvalidRequest(
                f"expiration_period must be 0 (none) or a duration of at most "
                f"{MAX_DURATION // 86400}d"
            )
        purpose = tuple(sorted(set(purpose)))

        def attempt() -> tuple[
            Distribution, KeyRecord, KmsRecord, KmsClient, Seen | None, dict[int, Future[bytes]]
        ]:
            # Three independent point reads, overlapped; their answers are judged in order.
            key_read = overlap.start(lambda: active_key(self.store, mount, key_name))
            existing_read = overlap.start(lambda: self.store.get_distribution(mount, kms, key_name))
            record = self.store.get_kms(mount, kms)
            if record is None:
                raise InvalidRequest(f"KMS provider {kms!r} does not exist in mount {mount}/")
            ptype = provider_type(record.provider)
            ptype.check_key_name(key_name)
            try:
                key = key_read.result()
            except NotFound:
                raise InvalidRequest(f"key {key_name!r} does not exist in mount {mount}/") from None
            client = self.kms.client_for(record)
            ptype.check_compatible(key.key_type, purpose, protection)
            existing = existing_read.result()
            if existing is not None and existing.state != "removing":
                if (existing.purpose, existing.protection, existing.expiration_period) != (
                    purpose,
                    protection,
                    expiration_period,
                ):
                    raise InvalidRequest(
                        f"key {key_name!r} is already distributed to {kms!r} with "
                        f"purpose {','.join(existing.purpose)!r} and protection "
                        f"{existing.protection!r}; parameters cannot change once distributed: "
                        "remove it, then distribute again"
                    )
                return existing, key, record, client, None, {}
            if existing is not None:  # a removal that did not finish: finish it first
                self.finish_remove(existing, client, record)
                raise ConcurrentChange("an earlier removal was finished first")
            # The first version's material is unsealed while the name is checked and the rows
            # are written.
            ready = {1: overlap.start(partial(self._unseal, mount, key_name, 1))}
            now = utcnow()
            remote_name, owner_etag = self._free_name(
                record, mount, kms, key_name, client, int(now.timestamp())
            )
            dist = Distribution(
                mount=mount,
                kms=kms,
                key=key_name,
                remote_name=remote_name,
                purpose=purpose,
                protection=protection,
                distribution_time=now,
                versions={},
                state="distributing",
                expiration_period=expiration_period,
                # Created holding the import lease: no other importer can come in between.
                lease_owner=uuid.uuid4().hex,
                lease_until=now + dt.timedelta(seconds=LEASE_SECONDS),
            )
            updated_key = replace(key, kms=tuple(sorted({*key.kms, kms})))
            # The KMS provider's row is written unchanged, ETag-conditioned: one deleted (or
            # changed) meanwhile fails the transaction, so no distribution outlives its provider.
            try:
                dist_etag, key_etag, _ = self.store.commit(
                    [dist_op(dist, create=True), key_op(updated_key), kms_op(record)]
                )
            except ConcurrentChange:
                self._disown(record, dist.remote_name, owner_etag)  # lost: take the name back
                raise
            log.info("distributing %s/%s to %s as %s", mount, key_name, kms, remote_name)
            # The name holds no key (``_free_name`` asked): nothing to adopt from it.
            return (
                replace(dist, etag=dist_etag),
                replace(updated_key, etag=key_etag),
                record,
                client,
                Seen(None),
                ready,
            )

        what = f"the distribution of {key_name!r} to {kms!r}"
        for _ in range(3):
            dist, key, record, client, seen, ready = optimistic(attempt, what=what)
            try:
                # A new row (``seen`` given) was created holding the lease, in the transaction
                # that wrote the key: this call holds it, and lets go when done.
                return self.complete(
                    dist,
                    key,
                    client,
                    record,
                    seen=seen,
                    held=seen is not None,
                    release=True,
                    ready=ready,
                ).warnings
            except DistributionRemoved:
                continue  # a removal ran meanwhile: distribute again, as a later request would
        raise ConcurrentChange(f"{what} kept being removed concurrently; retry")

    def _free_name(
        self, record: KmsRecord, mount: str, kms: str, key_name: str, client: KmsClient, stamp: int
    ) -> tuple[str, str | None]:
        """``<key>-<unix seconds>``, moved on to the next second while the name is taken: by a
        key this engine ever created in that vault (the owner index keeps every name it used,
        so a name still being deleted is never picked), or by any key, live or soft-deleted.
        Returns the name and the ETag of the owner entry written for it (see ``_own``)."""
        for _ in range(10):
            name = f"{key_name}-{stamp}"
            # The owner index is read (and, if free, the entry written) while Key Vault is
            # asked; an entry written for a name Key Vault holds is taken back.
            owned = overlap.start(partial(self._own_if_free, record, name, mount, kms, key_name))
            try:
                in_use = client.name_in_use(name)
            except EngineError:
                taken, etag = owned.result()
                if not taken:
                    self._disown(record, name, etag)
                    raise
                in_use = True  # the index says taken: Key Vault's answer is not needed
            taken, etag = owned.result()
            if not taken and not in_use:
                return name, etag
            if not taken:
                self._disown(record, name, etag)
            stamp += 1
        raise InvalidRequest(
            f"Key Vault holds keys named {key_name}-<time> for the next seconds; retry later"
        )

    def _own_if_free(
        self, record: KmsRecord, name: str, mount: str, kms: str, key_name: str
    ) -> tuple[bool, str | None]:
        """(True, None) if the owner index has an entry for ``name``; else (False, the ETag of
        the entry now written for this distribution). The owner index lets Key Vault events
        find a distribution by its remote name. It is written before the name is used; an entry
        whose distribution never got recorded (or moved to another name) is ignored when read,
        taken back by the distribute that lost, and removed by the reconciler's clean-up
        otherwise."""
        if self.store.remote_owner(record.key_collection, name) is not None:
            return True, None
        return False, self.store.own_remote(record.key_collection, name, mount, kms, key_name)

    def _disown(self, record: KmsRecord, remote_name: str, etag: str | None) -> None:
        """Remove an owner entry as written (ETag): one rewritten since by another
        distribution of the same name is that one's, and stays."""
        try:
            self.store.disown_remote(record.key_collection, remote_name, etag)
        except EngineError as exc:  # the clean-up removes it later
            log.warning("owner entry of %s not removed: %s", remote_name, exc)

    def _rename(self, dist: Distribution, client: KmsClient, record: KmsRecord) -> Distribution:
        """Nothing landed under the name and Key Vault refuses it (a key of that name is being
        deleted or is deleted): move the distribution to a free name."""
        stamp = int(dist.remote_name.rsplit("-", 1)[-1]) + 1
        name, _ = self._free_name(record, dist.mount, dist.kms, dist.key, client, stamp)
        renamed = replace(dist, remote_name=name)
        log.info(
            "distribution of %s/%s: %s is taken in Key Vault, using %s",
            dist.mount,
            dist.key,
            dist.remote_name,
            renamed.remote_name,
        )
        # under the import lease nothing lands meanwhile; a row that has versions keeps its name
        return self.update(dist, lambda d: d if d.versions else replace(d, remote_name=name))

    # -- read, list, remove -------------------------------------------------------------------

    def read(self, mount: str, kms: str, key_name: str) -> DistributionStatus:
        dist = self.store.get_distribution(mount, kms, key_name)
        if dist is None or dist.state == "removing":
            raise NotFound()
        key = self.store.get_key(mount, key_name)
        pending: tuple[int, ...] = ()
        if key is not None and len(dist.versions) < key.latest_version:
            pending = tuple(v for v in range(1, key.latest_version + 1) if v not in dist.versions)
        return DistributionStatus(dist, pending)

    def exists(self, mount: str, kms: str, key_name: str) -> bool:
        """Whether the key is distributed to the provider (one point read; a removal in
        progress counts as gone): the API's existence check."""
        dist = self.store.get_distribution(mount, kms, key_name)
        return dist is not None and dist.state != "removing"

    def list_distributed(self, mount: str, kms: str) -> list[str]:
        return [d.key for d in self.store.list_distributions(mount, kms) if d.state != "removing"]

    def find_by_remote(self, vault: str, remote_name: str) -> Distribution | None:
        """The distribution that owns ``remote_name`` in vault ``vault``, if this engine made it."""
        owner = self.store.remote_owner(vault, remote_name)
        if owner is None:
            return None
        mount, kms, key_name = owner
        dist = self.store.get_distribution(mount, kms, key_name)
        if dist is None or dist.remote_name != remote_name:
            return None
        return dist

    def remove(self, mount: str, kms: str, key_name: str) -> None:
        dist = self.store.get_distribution(mount, kms, key_name)
        if dist is None:
            return
        if dist.state != "removing":
            try:
                dist = self.update(dist, lambda d: replace(d, state="removing"))
            except NotFound:
                return  # removed meanwhile
        record, client = self.kms.client(mount, kms)
        # Wait for an import in flight (it sees the mark and stops after its current version),
        # so the Key Vault key is deleted after, not under, it. Concurrent removals take turns.
        try:
            claimed = self.claim(dist)
        except DistributionRemoved:
            return  # another removal finished it
        removed = False
        try:
            removed = self.finish_remove(claimed or dist, client, record)
        finally:
            if claimed is not None and not removed:  # a removed row holds no lease
                self.release(claimed)

    def finish_remove(self, dist: Distribution, client: KmsClient, record: KmsRecord) -> bool:
        """Soft-delete the remote key, then drop the row and take the provider off the key,
        in one transaction. Idempotent: what is already gone is done. True if this call
        removed the row (so overlapping runs count a removal once). ``dist`` is the row as the
        caller last read or wrote it: it is tried first, and read again if it changed."""
        client.delete_key(dist.remote_name)
        removed = [False]
        known = [dist]

        def attempt() -> None:
            removed[0] = False
            current = known.pop() if known else None
            if current is None:
                current = self.store.get_distribution(dist.mount, dist.kms, dist.key)
            if current is not None and (
                current.state != "removing" or current.remote_name != dist.remote_name
            ):
                return  # distributed again meanwhile: that one stays
            ops = [] if current is None else [delete_dist_op(current)]
            key = self.store.get_key(dist.mount, dist.key)
            if key is not None and dist.kms in key.kms:
                remaining = tuple(p for p in key.kms if p != dist.kms)
                ops.append(key_op(replace(key, kms=remaining)))
            if ops:
                self.store.commit(ops)
                removed[0] = current is not None

        optimistic(attempt, what=f"the removal of {dist.key!r} from {dist.kms!r}")
        if removed[0]:
            # The remote key is being soft-deleted: its owner row keeps the name taken until
            # the deleted key shows (the clean-up removes the row after its grace period).
            self.store.release_owner(
                record.key_collection, dist.remote_name, dist.mount, dist.kms, dist.key
            )
        log.info(
            "removed %s/%s from %s (Key Vault key %s soft-deleted)",
            dist.mount,
            dist.key,
            dist.kms,
            dist.remote_name,
        )
        return removed[0]

    # -- propagation (called by the key engine) -----------------------------------------------

    def after_rotate(self, key: KeyRecord, version: int) -> list[str]:
        """Import the new version everywhere the key is distributed. ``key`` is the record the
        rotation just wrote; each import reads it again before it lets go of its lease."""
        return self._each_distribution(
            key,
            lambda dist, client, record: (
                self.complete(dist, key, client, record, raise_errors=False).warnings
            ),
        )

    def after_min_enabled_change(self, key: KeyRecord) -> list[str]:
        return self._each_distribution(
            key, lambda dist, client, _record: self._enforce_stored(dist, client)
        )

    def _each_distribution(
        self,
        key: KeyRecord,
        action: Callable[[Distribution, KmsClient, KmsRecord], list[str]],
    ) -> list[str]:
        warnings: list[str] = []
        for kms in key.kms:
            dist = self.store.get_distribution(key.mount, kms, key.name)
            if dist is None or dist.state == "removing":
                continue
            try:
                record, client = self.kms.client(key.mount, kms)
                warnings += action(dist, client, record)
            except EngineError as exc:
                warnings.append(f"KMS provider {kms!r}: {exc}")
        return warnings

    def _enforce_stored(self, dist: Distribution, client: KmsClient) -> list[str]:
        """Make the remote enabled flags follow the *stored* ``min_enabled_version``, under the
        distribution's lease: concurrent writers of the value take turns, and each applies what
        is stored when its turn comes, read again until it holds still. So when the last of
        them answers, the remote key agrees with the engine."""
        claimed = self.claim(dist)
        if claimed is None:
            return [
                f"KMS provider {dist.kms!r}: {dist.remote_name} is being updated by another "
                "instance, which applies the stored min_enabled_version before it lets go"
            ]
        dist, warnings, enforced = claimed, [], None
        try:
            for _ in range(10):
                key = self.store.get_key(dist.mount, dist.key)
                if key is None or key.min_enabled_version == enforced:
                    break
                enforced = key.min_enabled_version
                warnings = self.enforce_enabled(dist, key, client)[0]
        finally:
            self.release(dist, current=True)
        return warnings

    def enforce_enabled(
        self,
        dist: Distribution,
        key: KeyRecord,
        client: KmsClient,
        *,
        blind: bool = True,
        remote: Mapping[str, bool] | None = None,
    ) -> tuple[list[str], list[int]]:
        """Make the remote enabled flags follow ``min_enabled_version``; returns warnings and
        the engine versions whose flag was changed. ``remote`` (version id → enabled) is what
        the caller knows of the remote key; without it the versions are listed. With the
        ``list`` permission only the versions that differ are updated; without it, ``blind``
        updates every recorded version (idempotent: one request each), or, in the reconciler,
        nothing."""
        changed: list[int] = []
        try:
            if remote is None:
                try:
                    remote = {
                        rv.version_id: rv.enabled for rv in client.remote_versions(dist.remote_name)
                    }
                except PermissionMissing:
                    if not blind:
                        return [], []
            for version, version_id in sorted(dist.versions.items()):
                wanted = version >= key.min_enabled_version
                if remote is None or (version_id in remote and remote[version_id] != wanted):
                    client.set_enabled(dist.remote_name, version_id, wanted)
                    if remote is not None:
                        changed.append(version)
        except EngineError as exc:
            return [f"KMS provider {dist.kms!r}: {exc}; the reconciler will retry"], changed
        return [], changed

    # -- the import ---------------------------------------------------------------------------

    def complete(
        self,
        dist: Distribution,
        key: KeyRecord,
        client: KmsClient,
        record: KmsRecord,
        *,
        raise_errors: bool = True,
        held: bool = False,
        release: bool | None = None,
        seen: Seen | None = None,
        ready: Mapping[int, Future[bytes]] | None = None,
    ) -> Completed:
        """Import every engine version missing from the remote key, in order.

        Holds the distribution's import lease meanwhile (``held``: the caller holds it, took
        it on the row as it had read it, and read ``key`` after that row), so two rotations (or
        a rotation and the reconciler) never import the same version twice; a caller that
        cannot get the lease in time leaves the work to the holder, which reads the key again
        before letting go. The caller's ``key`` and ``seen`` serve until then if the lease was
        taken on the row as the caller read it, free: no other importer came in between.
        ``release``: let go of the lease at the end (default: when this call took it), in the
        same write that records the last import and the distribution's state. ``ready``: key
        material the caller started to unseal, by engine version.
        """
        if release is None:
            release = not held
        fresh_key = False  # whether ``key`` was read since this call holds the lease
        if held:
            claimed: Distribution | None = dist
        else:
            taken = self._take(dist, wait=True)
            claimed = None if taken is None else taken[0]
            if taken is not None and (not taken[1] or dist.lease_owner):
                # Another importer came in between (or died holding it): what the caller read
                # may be out of date.
                seen, fresh_key = None, True
                key = self.store.get_key(dist.mount, dist.key) or key
        if claimed is None:
            message = (
                f"KMS provider {dist.kms!r}: another import into "
                f"{dist.remote_name} is running; it or the reconciler will finish"
            )
            if raise_errors:
                raise InvalidRequest(message + "; retry later to see it done")
            return Completed([message], dist, key, (), {})
        dist = claimed
        run = _Run(ready=dict(ready or {}))
        warnings: list[str] = []
        current = False  # whether ``dist`` is the row as last written (the release reads it if not)
        released = not release  # whether nothing is left to let go of
        try:
            while True:
                if dist.state == "removing":
                    raise self._removed(dist)
                known = {**dist.versions, **run.pending}
                missing = [
                    v
                    for v in range(1, key.latest_version + 1)
                    if v not in known and v not in run.unreadable
                ]
                # A version older than one already in the remote key is not imported: it
                # would become the key's current version there.
                newest = max(known, default=0)
                behind = [v for v in missing if v < newest]
                missing = [v for v in missing if v > newest]
                if not missing:
                    if fresh_key:
                        break
                    key = self._key_again(dist, run) or key  # before letting go
                    fresh_key = True
                    continue
                dist = self._import_missing(dist, key, client, record, missing, seen, run)
                seen, fresh_key = Seen(None), False  # what is left to adopt was adopted
            problems = self._skipped(dist, run.pending, run.unreadable, behind)
            note = "; ".join(problems)
            if run.pending or not released or dist.state != "active" or dist.last_error != note:
                dist = self._finish(dist, run.pending, note, release=not released)
                run.pending, released, current = {}, True, True
                if dist.state == "removing":
                    raise self._removed(dist)
            warnings = [f"KMS provider {dist.kms!r}: {p}" for p in problems]
            current = True
        except DistributionRemoved:
            raise
        except EngineError as exc:
            fresh = self.store.get_distribution(dist.mount, dist.kms, dist.key)
            if fresh is None or fresh.state == "removing" or fresh.remote_name != dist.remote_name:
                raise self._removed(dist) from None  # the failure came from the removal
            dist, current = self._note_error(fresh, str(exc), run.pending), True
            if raise_errors:
                raise
            warnings = [f"KMS provider {dist.kms!r}: {exc}; the reconciler will finish the import"]
        finally:
            if not released:
                self.release(dist, current=current)
        return Completed(warnings, dist, key, tuple(run.imported), run.landed)

    def _key_again(self, dist: Distribution, run: _Run) -> KeyRecord | None:
        """The key, read again before the lease is let go of: the read made while the last
        import ran, if it started less than RENEW_AFTER_SECONDS ago (a rotation committed
        since then still waits for the lease, LEASE_WAIT_SECONDS, and imports its version
        itself), else a new read."""
        started, read = run.key_read or (0.0, None)
        run.key_read = None
        if read is not None and time.monotonic() - started < RENEW_AFTER_SECONDS:
            return read.result()
        return self.store.get_key(dist.mount, dist.key)

    def _finish(
        self, dist: Distribution, pending: Mapping[int, str], note: str, *, release: bool
    ) -> Distribution:
        """The row's last write of an import run: the import not recorded yet, the state
        (``active``, with ``note`` as its last error; never over a removal that started
        meanwhile) and, with ``release``, the lease let go of (if still this call's)."""
        owner = dist.lease_owner

        def change(d: Distribution) -> Distribution:
            if pending and owner and d.lease_owner != owner:
                raise self._lease_lost(dist)  # the new holder adopts it by its tags
            merged = self._recorded(d, pending)
            if d.state != "removing":
                merged = replace(merged, state="active", last_error=note)
            if owner and merged.lease_owner == owner:
                if release:
                    merged = replace(merged, lease_owner="", lease_until=None)
                elif pending:
                    merged = replace(
                        merged, lease_until=utcnow() + dt.timedelta(seconds=LEASE_SECONDS)
                    )
            return merged

        return self.update(dist, change)

    @staticmethod
    def _recorded(dist: Distribution, landed: Mapping[int, str]) -> Distribution:
        """``dist`` with the imports ``landed`` (engine version → remote version id) recorded."""
        if not landed:
            return dist
        return replace(
            dist,
            versions={**dist.versions, **landed},
            uncertain={v: t for v, t in dist.uncertain.items() if v not in landed},
        )

    @staticmethod
    def _removed(dist: Distribution) -> DistributionRemoved:
        return DistributionRemoved(
            f"the distribution of {dist.key!r} to {dist.kms!r} was removed meanwhile"
        )

    @staticmethod
    def _skipped(
        dist: Distribution,
        pending: Mapping[int, str],
        unreadable: Mapping[int, str],
        behind: Sequence[int],
    ) -> list[str]:
        problems = [
            f"version {v} of key {dist.key!r} was not imported into {dist.remote_name}: {why}"
            for v, why in sorted(unreadable.items())
        ]
        late = [v for v in behind if v not in unreadable]
        if late:
            problems.append(
                f"versions {late} of key {dist.key!r} are not in {dist.remote_name} and are not "
                "imported now: Key Vault makes the newest import the current version, and "
                f"{dist.remote_name} already holds version {max({**dist.versions, **pending})}; "
                "rotate the key instead"
            )
        return problems

    def _import_missing(
        self,
        dist: Distribution,
        key: KeyRecord,
        client: KmsClient,
        record: KmsRecord,
        missing: Sequence[int],
        seen: Seen | None,
        run: _Run,
    ) -> Distribution:
        """Import ``missing`` in order; returns the row as last written. Each import is
        recorded while the next one is sent (that one names it in its tags) and before any
        other is; the last one is left in ``run.pending`` for the caller's next write."""
        if run.pending:
            dist, run.pending = self._record(dist, run.pending), {}
        materials = self._materials(dist, missing, run.ready)
        # Versions are imported in order under the lease, so what an interrupted run (or an
        # import whose answer was lost) left unrecorded can only be the latest remote version
        # and the one its tags name: one read (``get``) unless the caller saw it, found by its
        # tags, never trusted blindly.
        latest = client.latest_version(dist.remote_name) if seen is None else seen.latest
        adopted: dict[int, RemoteVersion] = {}
        if latest is not None and (version := adoptable(dist, latest)) is not None:
            adopted[version] = latest
            adopted.update(self._named_by(dist, client, latest, version))
        for version in missing:
            previous = None
            if run.pending:  # the import before this one: recorded while this one is sent
                previous = list(run.pending.values())[-1]
                future = overlap.start(partial(self._record, dist, run.pending))
                run.recording, run.pending = (future, run.pending), {}
            if version in adopted:
                dist = self._settle(dist, run)
                version_id, enabled = adopted[version].version_id, adopted[version].enabled
            else:
                if version in dist.uncertain or not self._lease_fresh(dist):
                    dist = self._settle(dist, run)  # a write of the row comes first
                dist = self._before_reimport(dist, version)
                dist = self._renew(dist)  # the import may be slow: the lease outlasts it
                if version == missing[-1]:  # the key is read again meanwhile (see _key_again)
                    run.key_read = (
                        time.monotonic(),
                        overlap.start(partial(self.store.get_key, dist.mount, dist.key)),
                    )
                try:
                    result = self._import_one(
                        dist,
                        key,
                        client,
                        version,
                        materials(version),
                        run,
                        previous=previous if run.recording else None,
                    )
                except (SealError, RowTampered) as exc:
                    # One damaged version must not hold back the ones after it.
                    log.error(
                        "%s/%s v%d cannot be imported: %s", dist.mount, dist.key, version, exc
                    )
                    run.unreadable[version] = str(exc)
                    dist = self._settle(dist, run)
                    continue
                except BaseException:
                    # The record in flight lands first (or stays in run.pending, for the note).
                    with contextlib.suppress(Exception):
                        self._settle(dist, run)
                    raise
                dist = self._settle(dist, run)
                if result is None:  # the name was taken: moved to a free one, start over
                    return self._rename(dist, client, record)
                version_id, enabled = result
                log.info(
                    "imported %s/%s v%d into %s as %s/%s",
                    dist.mount,
                    dist.key,
                    version,
                    dist.kms,
                    dist.remote_name,
                    version_id,
                )
            run.pending = {version: version_id}
            run.imported.append(version)
            run.landed[version_id] = enabled
            if dist.state == "removing":
                raise self._removed(dist)  # the removal waits for the lease: stop here
        return dist

    def _settle(self, dist: Distribution, run: _Run) -> Distribution:
        """Wait for the record in flight, if any: the row as it left it (``dist`` if none).
        If it failed, what it recorded goes back to ``run.pending``."""
        recording, run.recording = run.recording, None
        if recording is None:
            return dist
        future, landed = recording
        try:
            return future.result()
        except BaseException:
            run.pending = {**landed, **run.pending}
            raise

    def _named_by(
        self, dist: Distribution, client: KmsClient, latest: RemoteVersion, version: int
    ) -> dict[int, RemoteVersion]:
        """The unrecorded import that ``latest`` (an unrecorded import of ``version``) names
        as sent before it, whose record was in flight when ``latest`` was sent: one ``get``,
        only after a crash in that window. Ours by its tags, for an earlier version."""
        previous_id = latest.tags.get(TAG_PREVIOUS, "")
        if not previous_id or previous_id in dist.versions.values():
            return {}
        rv = client.version(dist.remote_name, previous_id)
        earlier = None if rv is None else adoptable(dist, rv)
        if rv is None or earlier is None or earlier >= version:
            return {}
        return {earlier: rv}

    def _materials(
        self, dist: Distribution, versions: Sequence[int], ahead: dict[int, Future[bytes]]
    ) -> Callable[[int], bytes]:
        """``versions``' key material, each unsealed while the one before it is imported: one
        version ahead, so at most two are open at a time. ``ahead``: those already started."""

        def fetch(version: int) -> Future[bytes]:
            return overlap.start(partial(self._unseal, dist.mount, dist.key, version))

        if versions and versions[0] not in ahead:
            ahead[versions[0]] = fetch(versions[0])

        def material(version: int) -> bytes:
            future = ahead.pop(version, None) or fetch(version)
            ahead.clear()  # one fetched for a version not imported (adopted): not needed
            following = [v for v in versions if v > version]
            if following:
                ahead[following[0]] = fetch(following[0])
            return future.result()

        return material

    def _unseal(self, mount: str, key_name: str, version: int) -> bytes:
        return unseal_version(self.store, self.sealer, mount, key_name, version)

    def _before_reimport(self, dist: Distribution, version: int) -> Distribution:
        """An import that got no answer is not sent again until it had time to land."""
        since = dist.uncertain.get(version)
        if since is None:
            return dist
        waited = (utcnow() - since).total_seconds()
        wait = self.settings.unknown_import_wait
        if waited < wait:
            raise ImportOutcomeUnknown(
                f"KMS provider {dist.kms!r}: the import of version {version} into "
                f"{dist.remote_name} got no answer {int(waited)}s ago and has not appeared; it "
                f"is sent again {wait}s after the first try"
            )
        # Long enough: it did not land. If it still does, it is a duplicate of ours.
        return self.update(dist, lambda d: replace(d, retried=tuple(sorted({*d.retried, version}))))

    def _import_one(
        self,
        dist: Distribution,
        key: KeyRecord,
        client: KmsClient,
        version: int,
        material: bytes,
        run: _Run,
        *,
        previous: str | None,
    ) -> tuple[str, bool] | None:
        """Import one version (``material``, unsealed; ``previous``: the id of the import
        being recorded meanwhile): its remote version id and enabled flag, or None when the
        name is refused and nothing of ours holds it."""
        enabled = version >= key.min_enabled_version
        try:
            version_id = client.import_version(
                dist.remote_name,
                VersionImport(
                    key_type=key.key_type,
                    material=material,
                    purpose=dist.purpose,
                    protection=dist.protection,
                    tags={
                        TAG_MOUNT: dist.tagged_mount,  # as its other versions (a moved mount)
                        TAG_KEY: dist.key,
                        TAG_VERSION: str(version),
                        TAG_NAME: dist.remote_name,
                        **({TAG_PREVIOUS: previous} if previous else {}),
                    },
                    enabled=enabled,
                    expiration_period=dist.expiration_period,
                ),
            )
        except RemoteNameTaken:
            if dist.versions or dist.uncertain or run.imported:
                raise  # our own key of that name exists: not a name to move away from
            return None
        except ImportOutcomeUnknown:
            # No answer: it may have landed. Give it a moment, then look for it by its tags.
            time.sleep(IMPORT_SETTLE_SECONDS)
            found = client.latest_version(dist.remote_name)
            if found is not None and is_ours(dist, found, version):
                log.warning(
                    "import into %s got no answer but landed as %s",
                    dist.remote_name,
                    found.version_id,
                )
                return found.version_id, found.enabled
            when = utcnow()
            dist = self._settle(dist, run)  # the record in flight is written first
            self.update(dist, lambda d: replace(d, uncertain={**d.uncertain, version: when}))
            raise
        return version_id, enabled

    # -- the import lease ---------------------------------------------------------------------

    def claim(self, dist: Distribution, *, wait: bool = True) -> Distribution | None:
        """Take the distribution's import lease: at once if free or expired; else wait for
        the holder (``wait``) up to LEASE_WAIT_SECONDS, past a dead holder's expiry."""
        taken = self._take(dist, wait=wait)
        return None if taken is None else taken[0]

    def _take(self, dist: Distribution, *, wait: bool) -> tuple[Distribution, bool] | None:
        """``claim``, and whether the lease was taken on the row as given (no one wrote it
        since it was read)."""
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + (LEASE_WAIT_SECONDS if wait else 0)
        untouched = True
        while True:
            now = utcnow()
            if not dist.lease_owner or dist.lease_until is None or dist.lease_until < now:
                try:
                    claimed = self._save(
                        replace(
                            dist,
                            lease_owner=owner,
                            lease_until=now + dt.timedelta(seconds=LEASE_SECONDS),
                        )
                    )
                    return claimed, untouched
                except ConcurrentChange:
                    pass
            if time.monotonic() > deadline:
                return None
            time.sleep(random.uniform(0.05, 0.2))  # noqa: S311 (jitter)
            fresh = self.store.get_distribution(dist.mount, dist.kms, dist.key)
            if fresh is None or fresh.remote_name != dist.remote_name:
                raise self._removed(dist)
            dist, untouched = fresh, False

    def release(self, dist: Distribution, *, current: bool = False) -> None:
        """Let go of the lease ``dist`` holds. ``current``: ``dist`` is the row as this request
        last wrote it, so it is cleared without reading it first (read if that fails)."""
        owner = dist.lease_owner
        known = [dist if current else None]

        def attempt() -> None:
            fresh = known.pop() if known else None
            if fresh is None:
                fresh = self.store.get_distribution(dist.mount, dist.kms, dist.key)
            if fresh is None or fresh.lease_owner != owner:
                return
            self.store.commit([dist_op(replace(fresh, lease_owner="", lease_until=None))])

        try:
            optimistic(attempt, what="the import lease")
        except EngineError:
            pass  # the lease expires by itself

    def _renew(self, dist: Distribution) -> Distribution:
        """Extend this request's lease; LeaseLost if another instance took it over. A lease
        this request wrote less than RENEW_AFTER_SECONDS ago (taken, or renewed by a recorded
        import) is left as it is: no one else can hold it before it runs out."""
        owner = dist.lease_owner
        if self._lease_fresh(dist):
            return dist

        def change(d: Distribution) -> Distribution:
            if d.lease_owner != owner:
                raise self._lease_lost(dist)
            return replace(d, lease_until=utcnow() + dt.timedelta(seconds=LEASE_SECONDS))

        return self.update(dist, change) if owner else dist

    @staticmethod
    def _lease_fresh(dist: Distribution) -> bool:
        """Whether ``dist`` holds no lease, or one written less than RENEW_AFTER_SECONDS ago."""
        if not dist.lease_owner:
            return True
        if dist.lease_until is None:
            return False
        left = (dist.lease_until - utcnow()).total_seconds()
        return left > LEASE_SECONDS - RENEW_AFTER_SECONDS

    @staticmethod
    def _lease_lost(dist: Distribution) -> LeaseLost:
        return LeaseLost(
            f"the import into {dist.remote_name} passed to another instance (this one's lease "
            "ran out); that one finishes it"
        )

    # -- writing the row ----------------------------------------------------------------------

    def _record(self, dist: Distribution, landed: Mapping[int, str]) -> Distribution:
        """Record imported versions (and renew the import lease with each)."""
        owner = dist.lease_owner

        def change(d: Distribution) -> Distribution:
            if owner and d.lease_owner != owner:
                raise self._lease_lost(dist)  # the new holder adopts it by its tags
            merged = self._recorded(d, landed)
            if merged.lease_owner:
                merged = replace(merged, lease_until=utcnow() + dt.timedelta(seconds=LEASE_SECONDS))
            return merged

        return self.update(dist, change)

    def update(
        self, dist: Distribution, change: Callable[[Distribution], Distribution]
    ) -> Distribution:
        """Apply ``change`` to the row, ETag-conditioned; on a concurrent write, re-read and
        apply it again to what is there now."""
        current = [dist]

        def attempt() -> Distribution:
            try:
                return self._save(change(current[0]))
            except ConcurrentChange:
                fresh = self.store.get_distribution(dist.mount, dist.kms, dist.key)
                if fresh is None or fresh.remote_name != dist.remote_name:
                    raise self._removed(dist) from None
                current[0] = fresh
                raise

        return optimistic(attempt, what=f"the distribution of {dist.key!r} to {dist.kms!r}")

    def _save(self, dist: Distribution) -> Distribution:
        """Write the row (ETag-conditioned); the result carries the new ETag."""
        [etag] = self.store.commit([dist_op(dist)])
        return replace(dist, etag=etag)

    def _note_error(
        self, dist: Distribution, message: str, landed: Mapping[int, str] | None = None
    ) -> Distribution:
        """Note the error on the row, with an import that landed and is not recorded yet;
        returns the row as written (``dist`` if that failed)."""
        try:
            return self.update(
                dist, lambda d: replace(self._recorded(d, landed or {}), last_error=message)
            )
        except EngineError:
            return dist  # a note for the reader; the work itself is retried by the reconciler
