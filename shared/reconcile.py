"""The reconciler's work on one distribution: finish what is pending, enforce the enabled
flags, report drift. It never deletes what it did not create (a removal the user asked for is
finished, though). The timer that runs it over every distribution is shared/schedules.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from shared.distribution import (
    TAG_VERSION,
    Distributor,
    Seen,
    adoptable,
    claimed_version,
    is_ours,
)
from shared.errors import EngineError
from shared.kms import Kms
from shared.providers import KmsClient, PermissionMissing, RemoteVersion
from shared.records import Distribution, KeyRecord, KmsRecord
from shared.store import Store


class Reconciler:
    """Its collaborators: the store, the KMS providers (clients) and the distributor (the
    import, its lease, removal and the enabled flags)."""

    def __init__(self, store: Store, kms: Kms, distributor: Distributor) -> None:
        self.store = store
        self.kms = kms
        self.distributor = distributor

    def reconcile(self, dist: Distribution) -> dict[str, Any]:
        """Finish pending work for one distribution and report drift."""
        report: dict[str, Any] = {
            "mount": dist.mount,
            "provider": dist.kms,
            "key": dist.key,
            "name": dist.remote_name,
            "imported": [],
            "enabled_changed": [],
            "drift": [],
            "errors": [],
        }
        try:
            record, client = self.kms.client(dist.mount, dist.kms)
            if dist.state == "removing":
                report["removed"] = self.distributor.finish_remove(dist, client, record)
                return report
            key = self.store.get_key(dist.mount, dist.key)
            if key is None or key.state != "active":
                report["drift"].append("the engine key no longer exists")
                return report
            # The whole check runs under the lease, without waiting: a distribution another
            # instance is importing into is that instance's to finish (a dead one's lease runs
            # out within LEASE_SECONDS, and the next run takes it).
            claimed = self.distributor.claim(dist, wait=False)
            if claimed is None:
                report["busy"] = True
                return report
            done: Distribution | None = None
            try:
                done = self._reconcile_held(claimed, key, client, record, report)
            finally:
                self.distributor.release(done or claimed, current=done is not None)
        except EngineError as exc:
            report["errors"].append(str(exc))
        return report

    def _reconcile_held(
        self,
        dist: Distribution,
        key: KeyRecord,
        client: KmsClient,
        record: KmsRecord,
        report: dict[str, Any],
    ) -> Distribution:
        """Returns the row as last written. The remote versions are listed once: what this
        run imports is known without listing them again."""
        try:
            remote: list[RemoteVersion] | None = client.remote_versions(dist.remote_name)
        except PermissionMissing as exc:
            remote = None  # degrade: the latest version is all that can be seen
            report["missing_permissions"] = [exc.permission]
        seen: Seen | None
        if remote is None:
            latest = client.latest_version(dist.remote_name)
            self._check_latest(dist, latest, report)
            seen = Seen(latest)
        elif not remote:
            if dist.versions:
                report["drift"].append(
                    f"Key Vault key {dist.remote_name} has no live versions: it was deleted "
                    "outside the engine; remove the distribution and distribute again (or "
                    "recover the key in Key Vault)"
                )
                return dist
            seen = Seen(None)
        else:
            dist = self._check_versions(dist, client, remote, report)
            # The latest version is among those listed: unless one of them is an import to
            # adopt, there is nothing for the import to look for.
            unrecorded = any(adoptable(dist, rv) is not None for rv in remote)
            seen = None if unrecorded else Seen(None)
        done = self.distributor.complete(
            dist, key, client, record, raise_errors=False, held=True, seen=seen
        )
        report["errors"] += done.warnings
        report["imported"] = sorted(done.imported)  # what this run did, not what another did
        if remote is not None:
            enabled = {rv.version_id: rv.enabled for rv in remote} | dict(done.landed)
            errors, report["enabled_changed"] = self.distributor.enforce_enabled(
                done.dist, done.key, client, blind=False, remote=enabled
            )
            report["errors"] += errors
        return done.dist

    @staticmethod
    def _check_latest(
        dist: Distribution, latest: RemoteVersion | None, report: dict[str, Any]
    ) -> None:
        """Drift seen without ``list``: the latest version, and whether the key is gone."""
        if latest is None:
            if dist.versions:
                report["drift"].append(
                    f"Key Vault key {dist.remote_name} was deleted outside the engine; remove "
                    "the distribution and distribute again (or recover the key in Key Vault)"
                )
            return
        if latest.version_id in dist.versions.values() or latest.version_id in dist.duplicates:
            return
        if adoptable(dist, latest) is not None:
            return  # an import a crash left unrecorded: adopted by complete
        report["drift"].append(
            f"Key Vault version {latest.version_id} of {dist.remote_name} (the latest) was not "
            "created by this engine"
        )

    def _check_versions(
        self,
        dist: Distribution,
        client: KmsClient,
        remote: Sequence[RemoteVersion],
        report: dict[str, Any],
    ) -> Distribution:
        """Drift seen with ``list``: foreign versions, our own duplicates, lost versions."""
        ids = {rv.version_id for rv in remote}
        ours = set(dist.versions.values())
        duplicates: list[str] = []
        for rv in remote:
            if rv.version_id in ours or rv.version_id in dist.duplicates:
                continue
            if adoptable(dist, rv) is not None:
                continue  # an import a crash left unrecorded: adopted by complete
            tag = rv.tags.get(TAG_VERSION, "")  # as it reads, for the report
            if claimed_version(dist, rv) in dist.retried:
                # The first try of an import that got no answer landed after its retry: ours.
                if rv.enabled:
                    client.set_enabled(dist.remote_name, rv.version_id, False)
                duplicates.append(rv.version_id)
                report["drift"].append(
                    f"Key Vault version {rv.version_id} of {dist.remote_name} is a duplicate "
                    f"import of engine version {tag} (a slow import that landed after its "
                    "retry); disabled, and not reported again"
                )
            elif is_ours(dist, rv):
                report["drift"].append(
                    f"Key Vault version {rv.version_id} of {dist.remote_name} carries this "
                    f"engine's tags (version {tag!r}) but is not one the engine recorded"
                )
            else:
                report["drift"].append(
                    f"Key Vault version {rv.version_id} of {dist.remote_name} was not "
                    "created by this engine"
                )
        update = self.distributor.update
        if duplicates:
            dist = update(dist, lambda d: replace(d, duplicates=(*d.duplicates, *duplicates)))
        missing = [v for v, vid in sorted(dist.versions.items()) if vid not in ids]
        if missing:
            report["drift"].append(
                f"engine versions {missing} are missing in Key Vault; re-importing them"
            )
            dist = update(
                dist,
                lambda d: replace(
                    d, versions={v: vid for v, vid in d.versions.items() if v not in missing}
                ),
            )
        return dist
