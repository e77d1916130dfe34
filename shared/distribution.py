"""KMS providers and distribution: putting engine keys into Key Vault, and keeping them there.

Every change that crosses Table Storage and Key Vault is resumable. The distribution row is
written (with the key's provider list, in one transaction) before the first remote call; each
imported version is recorded as it lands; imported versions carry tags naming mount, key and
engine version, so a retry finds what a crash left behind instead of importing it twice.
What is still to do is derivable: engine versions 1..latest missing from the row's ``versions``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from shared.errors import (
    ConcurrentChange,
    EngineError,
    InvalidRequest,
    NotFound,
    RowTampered,
    SealError,
)
from shared.keys import active_key, unseal_version
from shared.mounts import Mounts, no_route
from shared.names import MAX_DURATION, check_azure_key_name, check_name
from shared.providers import (
    PROVIDERS,
    ImportOutcomeUnknown,
    KmsProvider,
    PermissionMissing,
    RemoteNameTaken,
    RemoteVersion,
)
from shared.records import Distribution, KeyRecord, ProviderRecord, rfc3339, utcnow
from shared.seal import Sealer, credentials_context
from shared.settings import Settings
from shared.store import (
    Store,
    delete_dist_op,
    dist_op,
    key_op,
    optimistic,
    provider_op,
)

log = logging.getLogger(__name__)

CREDENTIAL_KEYS = ("client_id", "client_secret", "tenant_id", "environment")
TAG_MOUNT, TAG_KEY, TAG_VERSION, TAG_NAME = (
    "keymgmt-mount",
    "keymgmt-key",
    "keymgmt-version",
    "key_name",
)

# The import lease: renewed before each import and by each recorded one, so a live holder keeps
# it however many versions it imports, and a dead holder's lease runs out within this.
LEASE_SECONDS = 30
# A caller waits this long for a holder: past a dead holder's expiry, so it takes over.
LEASE_WAIT_SECONDS = LEASE_SECONDS + 5

ProviderFactory = Callable[[ProviderRecord, Mapping[str, str]], KmsProvider]


def is_ours(dist: Distribution, rv: RemoteVersion, version: int | None = None) -> bool:
    """Whether a Key Vault version carries this distribution's tags (and, with ``version``,
    is that engine version's import). The one test of ownership: tags are only a claim, so
    callers still check the version against what the engine recorded."""
    tags = rv.tags
    if tags.get(TAG_MOUNT) != dist.mount or tags.get(TAG_KEY) != dist.key:
        return False
    return version is None or tags.get(TAG_VERSION) == str(version)


class LeaseLost(EngineError):
    """This request's import lease ran out and another instance holds it now: that one
    finishes the work (it adopts what this one imported, by its tags)."""

    status = 409


class DistributionRemoved(NotFound):
    """The distribution was removed, or marked for removal, while this request worked on it.
    A distribute starts over (a new distribution); anything else stops and says so."""


class Distributor:
    """KMS providers and distributions. Its collaborators are explicit: the store, the
    settings, the sealer (credentials and key material) and the mounts (a create in a mount
    being disabled is taken back); it reads keys through the store, so it needs no key engine,
    and the key engine tells it about rotations through the ``Propagator`` it implements."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        sealer: Sealer,
        mounts: Mounts,
        *,
        provider_factory: ProviderFactory | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.sealer = sealer
        self.mounts = mounts
        self._factory = provider_factory or self._azure_provider
        self._cache: dict[tuple[str, str], tuple[tuple[Any, ...], KmsProvider]] = {}
        self._lock = threading.Lock()

    def forget(self) -> None:
        """Drop cached provider clients (the table was lost and recreated)."""
        with self._lock:
            self._cache.clear()

    # -- provider records -------------------------------------------------------------------

    def write_provider(
        self,
        mount: str,
        name: str,
        *,
        provider: str | None,
        key_collection: str | None,
        credentials: Mapping[str, str] | None,
    ) -> None:
        """Create a KMS provider, or update its credentials. Everything is checked before
        anything is written; a create that loses a race becomes the update it would be."""
        check_name(name, "KMS provider")
        if credentials is not None:
            unknown = sorted(set(credentials) - set(CREDENTIAL_KEYS))
            if unknown:
                # A key is shown only when it looks like a misspelt field name: a secret pasted
                # without its name ("c2VjcmV0==") must not come back in the answer.
                shown = [k for k in unknown if _FIELD_NAME.fullmatch(k)]
                if len(shown) < len(unknown):
                    shown.append(f"{len(unknown) - len(shown)} not shown")
                raise InvalidRequest(
                    f"credentials: unknown key(s) {', '.join(shown[:10])}; allowed: "
                    f"{', '.join(CREDENTIAL_KEYS)}"
                )
            if credentials.get("environment"):
                from shared.azure import cloud

                try:
                    cloud(credentials["environment"])  # validates
                except InvalidRequest as exc:
                    raise InvalidRequest(f"credentials.{exc}") from None
        if key_collection:
            _check_vault_name(key_collection)
        sealed = self._seal_credentials(mount, name, credentials) if credentials else None

        def attempt() -> None:
            existing = self.store.get_provider(mount, name)
            if existing is None:
                if not provider:
                    raise InvalidRequest(f"provider is required; allowed: {', '.join(PROVIDERS)}")
                if provider not in PROVIDERS:
                    raise InvalidRequest(f"provider: unsupported; allowed: {', '.join(PROVIDERS)}")
                if not key_collection:
                    raise InvalidRequest(
                        "key_collection is required: the name of the Azure Key Vault"
                    )
                record = ProviderRecord(
                    mount=mount,
                    name=name,
                    provider=provider,
                    key_collection=key_collection,
                    credentials=sealed,
                    generation=1,
                    created=utcnow(),
                )
                [etag] = self.store.commit([provider_op(record, create=True)])
                created.append(replace(record, etag=etag))
                return
            if provider and provider != existing.provider:
                raise InvalidRequest(
                    f"provider cannot be changed: {name!r} is {existing.provider!r}; create "
                    "another KMS provider instead"
                )
            if key_collection and key_collection != existing.key_collection:
                raise InvalidRequest(
                    f"key_collection cannot be changed: {name!r} uses "
                    f"{existing.key_collection!r}; create another KMS provider instead"
                )
            if credentials is not None:
                updated = replace(existing, credentials=sealed, generation=existing.generation + 1)
                self.store.commit([provider_op(updated)])

        created: list[ProviderRecord] = []
        optimistic(attempt, what=f"KMS provider {name!r}")
        if created and not self.mounts.keeps(
            mount, lambda: self.store.provider_written(mount, name)
        ):
            # The mount was disabled meanwhile (see Mounts.disable): take the provider back.
            self.store.delete_provider(created[0])
            raise no_route(mount)

    def read_provider(self, mount: str, name: str) -> dict[str, Any]:
        record = self.store.get_provider(mount, check_name(name, "KMS provider"))
        if record is None:
            raise NotFound()
        return {"provider": record.provider, "key_collection": record.key_collection}

    def list_providers(self, mount: str) -> list[str]:
        return [p.name for p in self.store.list_providers(mount)]

    def delete_provider(self, mount: str, name: str) -> None:
        check_name(name, "KMS provider")

        def attempt() -> None:
            record = self.store.get_provider(mount, name)
            if record is None:
                return
            held = [d.key for d in self.store.list_distributions(mount, name)]
            if held:
                raise InvalidRequest(
                    f"KMS provider {name!r} cannot be deleted: keys {sorted(held)} are "
                    "distributed to it; remove them first"
                )
            self.store.delete_provider(record)
            if self.store.get_provider(mount, name) is not None:
                raise ConcurrentChange("the provider changed while it was being deleted")

        optimistic(attempt, what=f"KMS provider {name!r}")
        with self._lock:
            self._cache.pop((mount, name), None)

    def _seal_credentials(self, mount: str, name: str, credentials: Mapping[str, str]) -> Any:
        if not credentials:
            return None
        plaintext = json.dumps(dict(credentials), sort_keys=True).encode()
        return self.sealer.seal(plaintext, credentials_context(mount, name))

    def _open_credentials(self, record: ProviderRecord) -> dict[str, str]:
        if record.credentials is None:
            return {}
        plaintext = self.sealer.open(
            record.credentials, credentials_context(record.mount, record.name)
        )
        credentials: dict[str, str] = json.loads(plaintext)
        return credentials

    # -- provider clients -------------------------------------------------------------------

    def provider(self, mount: str, name: str) -> tuple[ProviderRecord, KmsProvider]:
        record = self.store.get_provider(mount, name)
        if record is None:
            raise InvalidRequest(f"KMS provider {name!r} does not exist in mount {mount}/")
        return record, self._client(record)

    def _client(self, record: ProviderRecord) -> KmsProvider:
        fingerprint = (record.generation, record.provider, record.key_collection)
        with self._lock:
            cached = self._cache.get((record.mount, record.name))
            if cached is not None and cached[0] == fingerprint:
                return cached[1]
        client = self._factory(record, self._open_credentials(record))
        with self._lock:
            self._cache[(record.mount, record.name)] = (fingerprint, client)
        return client

    def _azure_provider(
        self, record: ProviderRecord, credentials: Mapping[str, str]
    ) -> KmsProvider:
        from shared.azure import build_credential, choose_credential, cloud, vault_scope, vault_url
        from shared.providers.azurekeyvault import AzureKeyVaultProvider

        environment = cloud(credentials.get("environment") or self.settings.azure_environment)
        url = vault_url(record.key_collection, environment, self.settings.keyvault_url_overrides)
        choice = choose_credential(self.settings, credentials)
        credential = build_credential(choice, self.settings, credentials)
        log.info(
            "KMS provider %s/%s: vault %s, credential from %s",
            record.mount,
            record.name,
            url,
            choice.source,
        )
        vault = record.key_collection.lower()
        return AzureKeyVaultProvider(
            url,
            credential,
            self.settings,
            choice.label,
            scope=vault_scope(record.key_collection, environment),
            creation_lock=lambda name: self.store.lock(f"{vault}:{name}", ttl=60, wait=45),
        )

    # -- distribution -----------------------------------------------------------------------

    def distribute(
        self,
        mount: str,
        provider_name: str,
        key_name: str,
        *,
        purpose: Sequence[str],
        protection: str,
        expiration_period: int = 0,
    ) -> list[str]:
        check_name(key_name, "key")
        check_name(provider_name, "KMS provider")
        if not 0 <= expiration_period <= MAX_DURATION:
            raise InvalidRequest(
                f"expiration_period must be 0 (none) or a duration of at most "
                f"{MAX_DURATION // 86400}d"
            )
        purpose = tuple(sorted(set(purpose)))
        check_azure_key_name(key_name)

        def attempt() -> tuple[Distribution, KeyRecord, KmsProvider]:
            record = self.store.get_provider(mount, provider_name)
            if record is None:
                raise InvalidRequest(
                    f"KMS provider {provider_name!r} does not exist in mount {mount}/"
                )
            try:
                key = active_key(self.store, mount, key_name)
            except NotFound:
                raise InvalidRequest(f"key {key_name!r} does not exist in mount {mount}/") from None
            provider = self._client(record)
            provider.check_compatible(key.type, purpose, protection)
            existing = self.store.get_distribution(mount, provider_name, key_name)
            if existing is not None and existing.state != "removing":
                if (existing.purpose, existing.protection, existing.expiration_period) != (
                    purpose,
                    protection,
                    expiration_period,
                ):
                    raise InvalidRequest(
                        f"key {key_name!r} is already distributed to {provider_name!r} with "
                        f"purpose {','.join(existing.purpose)!r} and protection "
                        f"{existing.protection!r}; parameters cannot change once distributed: "
                        "remove it, then distribute again"
                    )
                return existing, key, provider
            if existing is not None:  # a removal that did not finish: finish it first
                self._finish_remove(existing, provider)
                raise ConcurrentChange("an earlier removal was finished first")
            now = utcnow()
            remote_name = self._free_name(record, key_name, provider, int(now.timestamp()))
            dist = Distribution(
                mount=mount,
                provider=provider_name,
                key=key_name,
                remote_name=remote_name,
                purpose=purpose,
                protection=protection,
                distribution_time=now,
                versions={},
                state="distributing",
                expiration_period=expiration_period,
            )
            owner_etag = self._own(record, dist)
            updated_key = replace(key, providers=tuple(sorted({*key.providers, provider_name})))
            # The provider row is written unchanged, ETag-conditioned: a provider deleted (or
            # changed) meanwhile fails the transaction, so no distribution outlives its provider.
            try:
                dist_etag, key_etag, _ = self.store.commit(
                    [dist_op(dist, create=True), key_op(updated_key), provider_op(record)]
                )
            except ConcurrentChange:
                self._disown(record, dist.remote_name, owner_etag)  # lost: take the name back
                raise
            log.info("distributing %s/%s to %s as %s", mount, key_name, provider_name, remote_name)
            return replace(dist, etag=dist_etag), replace(updated_key, etag=key_etag), provider

        what = f"the distribution of {key_name!r} to {provider_name!r}"
        for _ in range(3):
            dist, key, provider = optimistic(attempt, what=what)
            try:
                return self._complete(dist, key, provider)
            except DistributionRemoved:
                continue  # a removal ran meanwhile: distribute again, as a later request would
        raise ConcurrentChange(f"{what} kept being removed concurrently; retry")

    def _free_name(
        self, record: ProviderRecord, key_name: str, provider: KmsProvider, stamp: int
    ) -> str:
        """``<key>-<unix seconds>``, moved on to the next second while the name is taken: by a
        key this engine ever created in that vault (the owner index keeps every name it used,
        so a name still being deleted is never picked), or by any key, live or soft-deleted."""
        for _ in range(10):
            name = f"{key_name}-{stamp}"
            if self.store.remote_owner(
                record.key_collection, name
            ) is None and not provider.name_in_use(name):
                return name
            stamp += 1
        raise InvalidRequest(
            f"Key Vault holds keys named {key_name}-<time> for the next seconds; retry later"
        )

    def _own(self, record: ProviderRecord, dist: Distribution) -> str | None:
        """The owner index lets Key Vault events find a distribution by its remote name. It is
        written before the name is used; an entry whose distribution never got recorded (or
        moved to another name) is ignored when read, taken back by the distribute that lost,
        and removed by the reconciler's clean-up otherwise. Returns the entry's ETag."""
        return self.store.own_remote(
            record.key_collection, dist.remote_name, dist.mount, dist.provider, dist.key
        )

    def _disown(self, record: ProviderRecord | None, remote_name: str, etag: str | None) -> None:
        """Remove an owner entry as written (ETag): one rewritten since by another
        distribution of the same name is that one's, and stays."""
        if record is None:
            return
        try:
            self.store.disown_remote(record.key_collection, remote_name, etag)
        except EngineError as exc:  # the clean-up removes it later
            log.warning("owner entry of %s not removed: %s", remote_name, exc)

    def _rename(self, dist: Distribution, provider: KmsProvider) -> Distribution:
        """Nothing landed under the name and Key Vault refuses it (a key of that name is being
        deleted or is deleted): move the distribution to a free name."""
        record = self.store.get_provider(dist.mount, dist.provider)
        if record is None:
            raise NotFound(f"KMS provider {dist.provider!r} was deleted")
        stamp = int(dist.remote_name.rsplit("-", 1)[-1]) + 1
        name = self._free_name(record, dist.key, provider, stamp)
        renamed = replace(dist, remote_name=name)
        self._own(record, renamed)
        log.info(
            "distribution of %s/%s: %s is taken in Key Vault, using %s",
            dist.mount,
            dist.key,
            dist.remote_name,
            renamed.remote_name,
        )
        # under the import lease nothing lands meanwhile; a row that has versions keeps its name
        return self._update(dist, lambda d: d if d.versions else replace(d, remote_name=name))

    def _complete(
        self,
        dist: Distribution,
        key: KeyRecord,
        provider: KmsProvider,
        *,
        raise_errors: bool = True,
        held: bool = False,
        imported: list[int] | None = None,
    ) -> list[str]:
        """Import every engine version missing from Key Vault, in order; ``imported`` gets
        the versions this call recorded.

        Holds the distribution's import lease meanwhile (``held``: the caller holds it), so two
        rotations (or a rotation and the reconciler) never import the same version twice; a
        caller that cannot get the lease in time leaves the work to the holder, which re-reads
        the key before letting go.
        """
        claimed = dist if held else self._claim(dist)
        if claimed is None:
            message = (
                f"KMS provider {dist.provider!r}: another import into "
                f"{dist.remote_name} is running; it or the reconciler will finish"
            )
            if raise_errors:
                raise InvalidRequest(message + "; retry later to see it done")
            return [message]
        dist = claimed
        unreadable: dict[int, str] = {}  # versions whose material does not open: skipped
        try:
            while True:
                if dist.state == "removing":
                    raise self._removed(dist)
                key = self.store.get_key(dist.mount, dist.key) or key
                missing = [
                    v
                    for v in range(1, key.latest_version + 1)
                    if v not in dist.versions and v not in unreadable
                ]
                # A version older than one already in Key Vault is not imported: it would
                # become the key's current version there.
                newest = max(dist.versions, default=0)
                behind = [v for v in missing if v < newest]
                missing = [v for v in missing if v > newest]
                if not missing:
                    break
                dist = self._import_missing(dist, key, provider, missing, unreadable, imported)
            problems = self._skipped(dist, unreadable, behind)
            note = "; ".join(problems)
            if dist.state != "active" or dist.last_error != note:
                # Never back to active over a removal that started meanwhile.
                dist = self._update(
                    dist,
                    lambda d: (
                        d if d.state == "removing" else replace(d, state="active", last_error=note)
                    ),
                )
                if dist.state == "removing":
                    raise self._removed(dist)
            if problems:
                return [f"KMS provider {dist.provider!r}: {p}" for p in problems]
        except DistributionRemoved:
            raise
        except EngineError as exc:
            fresh = self.store.get_distribution(dist.mount, dist.provider, dist.key)
            if fresh is None or fresh.state == "removing" or fresh.remote_name != dist.remote_name:
                raise self._removed(dist) from None  # the failure came from the removal
            self._note_error(dist, str(exc))
            if raise_errors:
                raise
            return [f"KMS provider {dist.provider!r}: {exc}; the reconciler will finish the import"]
        finally:
            if not held:
                self._release(dist)
        return []

    @staticmethod
    def _removed(dist: Distribution) -> DistributionRemoved:
        return DistributionRemoved(
            f"the distribution of {dist.key!r} to {dist.provider!r} was removed meanwhile"
        )

    @staticmethod
    def _skipped(
        dist: Distribution, unreadable: Mapping[int, str], behind: Sequence[int]
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
                f"{dist.remote_name} already holds version {max(dist.versions)}; rotate the key "
                "instead"
            )
        return problems

    def _import_missing(
        self,
        dist: Distribution,
        key: KeyRecord,
        provider: KmsProvider,
        missing: Sequence[int],
        unreadable: dict[int, str],
        imported: list[int] | None = None,
    ) -> Distribution:
        # Versions are imported in order under the lease, so what an interrupted run (or an
        # import whose answer was lost) left unrecorded can only be the latest version in Key
        # Vault: one read (``get``), found by its tags, which are never trusted blindly.
        adopted: dict[int, str] = {}
        latest = provider.latest_version(dist.remote_name)
        if latest is not None and latest.version_id not in dist.versions.values():
            tag = latest.tags.get(TAG_VERSION, "")
            if is_ours(dist, latest) and tag.isdigit() and int(tag) in missing:
                adopted[int(tag)] = latest.version_id
        for version in missing:
            version_id = adopted.get(version)
            if version_id is None:
                dist = self._before_reimport(dist, version)
                dist = self._renew(dist)  # the import may be slow: the lease outlasts it
                try:
                    version_id = self._import_one(dist, key, provider, version)
                except (SealError, RowTampered) as exc:
                    # One damaged version must not hold back the ones after it.
                    log.error(
                        "%s/%s v%d cannot be imported: %s", dist.mount, dist.key, version, exc
                    )
                    unreadable[version] = str(exc)
                    continue
                if version_id is None:  # the name was taken: moved to a free one, start over
                    return self._rename(dist, provider)
                log.info(
                    "imported %s/%s v%d into %s as %s/%s",
                    dist.mount,
                    dist.key,
                    version,
                    dist.provider,
                    dist.remote_name,
                    version_id,
                )
            dist = self._record(dist, {version: version_id})
            if imported is not None:
                imported.append(version)
        return dist

    def _before_reimport(self, dist: Distribution, version: int) -> Distribution:
        """An import that got no answer is not sent again until it had time to land."""
        since = dist.uncertain.get(version)
        if since is None:
            return dist
        waited = (utcnow() - since).total_seconds()
        wait = self.settings.unknown_import_wait
        if waited < wait:
            raise ImportOutcomeUnknown(
                f"KMS provider {dist.provider!r}: the import of version {version} into "
                f"{dist.remote_name} got no answer {int(waited)}s ago and has not appeared; it "
                f"is sent again {wait}s after the first try"
            )
        # Long enough: it did not land. If it still does, it is a duplicate of ours.
        return self._update(
            dist, lambda d: replace(d, retried=tuple(sorted({*d.retried, version})))
        )

    def _import_one(
        self, dist: Distribution, key: KeyRecord, provider: KmsProvider, version: int
    ) -> str | None:
        material = unseal_version(self.store, self.sealer, dist.mount, dist.key, version)
        try:
            return provider.import_version(
                dist.remote_name,
                key_type=key.type,
                material=material,
                purpose=dist.purpose,
                protection=dist.protection,
                tags={
                    TAG_MOUNT: dist.mount,
                    TAG_KEY: dist.key,
                    TAG_VERSION: str(version),
                    TAG_NAME: dist.remote_name,
                },
                enabled=version >= key.min_enabled_version,
                expiration_period=dist.expiration_period,
            )
        except RemoteNameTaken:
            if dist.versions or dist.uncertain:
                raise  # our own key of that name exists: not a name to move away from
            return None
        except ImportOutcomeUnknown:
            when = utcnow()
            self._update(dist, lambda d: replace(d, uncertain={**d.uncertain, version: when}))
            raise

    def _claim(self, dist: Distribution, *, wait: bool = True) -> Distribution | None:
        """Take the distribution's import lease: at once if free or expired; else wait for
        the holder (``wait``) up to LEASE_WAIT_SECONDS, past a dead holder's expiry."""
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + (LEASE_WAIT_SECONDS if wait else 0)
        while True:
            now = utcnow()
            if not dist.lease_owner or dist.lease_until is None or dist.lease_until < now:
                try:
                    return self._save(
                        replace(
                            dist,
                            lease_owner=owner,
                            lease_until=now + dt.timedelta(seconds=LEASE_SECONDS),
                        )
                    )
                except ConcurrentChange:
                    pass
            if time.monotonic() > deadline:
                return None
            time.sleep(random.uniform(0.05, 0.2))  # noqa: S311 (jitter)
            fresh = self.store.get_distribution(dist.mount, dist.provider, dist.key)
            if fresh is None or fresh.remote_name != dist.remote_name:
                raise self._removed(dist)
            dist = fresh

    def _release(self, dist: Distribution) -> None:
        owner = dist.lease_owner

        def attempt() -> None:
            fresh = self.store.get_distribution(dist.mount, dist.provider, dist.key)
            if fresh is None or fresh.lease_owner != owner:
                return
            self.store.commit([dist_op(replace(fresh, lease_owner="", lease_until=None))])

        try:
            optimistic(attempt, what="the import lease")
        except EngineError:
            pass  # the lease expires by itself

    def _renew(self, dist: Distribution) -> Distribution:
        """Extend this request's lease; LeaseLost if another instance took it over."""
        owner = dist.lease_owner

        def change(d: Distribution) -> Distribution:
            if d.lease_owner != owner:
                raise self._lease_lost(dist)
            return replace(d, lease_until=utcnow() + dt.timedelta(seconds=LEASE_SECONDS))

        return self._update(dist, change) if owner else dist

    @staticmethod
    def _lease_lost(dist: Distribution) -> LeaseLost:
        return LeaseLost(
            f"the import into {dist.remote_name} passed to another instance (this one's lease "
            "ran out); that one finishes it"
        )

    def _record(self, dist: Distribution, landed: Mapping[int, str]) -> Distribution:
        """Record imported versions (and renew the import lease with each)."""
        owner = dist.lease_owner

        def change(d: Distribution) -> Distribution:
            if owner and d.lease_owner != owner:
                raise self._lease_lost(dist)  # the new holder adopts it by its tags
            merged = replace(
                d,
                versions={**d.versions, **landed},
                uncertain={v: t for v, t in d.uncertain.items() if v not in landed},
            )
            if merged.lease_owner:
                merged = replace(merged, lease_until=utcnow() + dt.timedelta(seconds=LEASE_SECONDS))
            return merged

        return self._update(dist, change)

    def _update(
        self, dist: Distribution, change: Callable[[Distribution], Distribution]
    ) -> Distribution:
        """Apply ``change`` to the row, ETag-conditioned; on a concurrent write, re-read and
        apply it again to what is there now."""
        current = [dist]

        def attempt() -> Distribution:
            try:
                return self._save(change(current[0]))
            except ConcurrentChange:
                fresh = self.store.get_distribution(dist.mount, dist.provider, dist.key)
                if fresh is None or fresh.remote_name != dist.remote_name:
                    raise self._removed(dist) from None
                current[0] = fresh
                raise

        return optimistic(attempt, what=f"the distribution of {dist.key!r} to {dist.provider!r}")

    def _save(self, dist: Distribution) -> Distribution:
        """Write the row (ETag-conditioned); the result carries the new ETag."""
        [etag] = self.store.commit([dist_op(dist)])
        return replace(dist, etag=etag)

    def _note_error(self, dist: Distribution, message: str) -> None:
        try:
            self._update(dist, lambda d: replace(d, last_error=message))
        except EngineError:
            pass  # a note for the reader; the work itself is retried by the reconciler

    def read_distribution(self, mount: str, provider_name: str, key_name: str) -> dict[str, Any]:
        dist = self.store.get_distribution(
            mount, check_name(provider_name, "KMS provider"), check_name(key_name, "key")
        )
        if dist is None or dist.state == "removing":
            raise NotFound()
        data: dict[str, Any] = {
            "distribution_time": rfc3339(dist.distribution_time),
            "name": dist.remote_name,
            "protection": dist.protection,
            "purpose": ",".join(sorted(dist.purpose)),
            "versions": {str(v): vid for v, vid in sorted(dist.versions.items())},
        }
        if dist.expiration_period:
            data["expiration_period"] = dist.expiration_period
        key = self.store.get_key(mount, key_name)
        if key is not None and len(dist.versions) < key.latest_version:
            data["pending_versions"] = [
                v for v in range(1, key.latest_version + 1) if v not in dist.versions
            ]
        return data

    def list_distributed(self, mount: str, provider_name: str) -> list[str]:
        check_name(provider_name, "KMS provider")
        return [
            d.key
            for d in self.store.list_distributions(mount, provider_name)
            if d.state != "removing"
        ]

    def remove(self, mount: str, provider_name: str, key_name: str) -> None:
        dist = self.store.get_distribution(
            mount, check_name(provider_name, "KMS provider"), check_name(key_name, "key")
        )
        if dist is None:
            return
        if dist.state != "removing":
            try:
                dist = self._update(dist, lambda d: replace(d, state="removing"))
            except NotFound:
                return  # removed meanwhile
        _, provider = self.provider(mount, provider_name)
        # Wait for an import in flight (it sees the mark and stops after its current version),
        # so the Key Vault key is deleted after, not under, it. Concurrent removals take turns.
        try:
            claimed = self._claim(dist)
        except DistributionRemoved:
            return  # another removal finished it
        try:
            self._finish_remove(claimed or dist, provider)
        finally:
            if claimed is not None:
                self._release(claimed)

    def _finish_remove(self, dist: Distribution, provider: KmsProvider) -> bool:
        """Soft-delete the Key Vault key, then drop the row and take the provider off the key,
        in one transaction. Idempotent: what is already gone is done. True if this call
        removed the row (so overlapping runs count a removal once)."""
        provider.delete_key(dist.remote_name)
        removed = [False]

        def attempt() -> None:
            removed[0] = False
            current = self.store.get_distribution(dist.mount, dist.provider, dist.key)
            if current is not None and (
                current.state != "removing" or current.remote_name != dist.remote_name
            ):
                return  # distributed again meanwhile: that one stays
            ops = [] if current is None else [delete_dist_op(current)]
            key = self.store.get_key(dist.mount, dist.key)
            if key is not None and dist.provider in key.providers:
                providers = tuple(p for p in key.providers if p != dist.provider)
                ops.append(key_op(replace(key, providers=providers)))
            if ops:
                self.store.commit(ops)
                removed[0] = current is not None

        optimistic(attempt, what=f"the removal of {dist.key!r} from {dist.provider!r}")
        record = self.store.get_provider(dist.mount, dist.provider) if removed[0] else None
        if record is not None:
            # The Key Vault key is soft-deleted: it holds its name itself from now on.
            self.store.release_owner(
                record.key_collection, dist.remote_name, dist.mount, dist.provider, dist.key
            )
        log.info(
            "removed %s/%s from %s (Key Vault key %s soft-deleted)",
            dist.mount,
            dist.key,
            dist.provider,
            dist.remote_name,
        )
        return removed[0]

    # -- propagation (called by the key engine) -------------------------------------------------

    def after_rotate(self, key: KeyRecord, version: int) -> list[str]:
        return self._each_distribution(
            key,
            lambda dist, provider: self._complete(
                dist, active_key(self.store, key.mount, key.name), provider, raise_errors=False
            ),
        )

    def after_min_enabled_change(self, key: KeyRecord) -> list[str]:
        return self._each_distribution(key, self._enforce_stored)

    def _enforce_stored(self, dist: Distribution, provider: KmsProvider) -> list[str]:
        """Make Key Vault's enabled flags follow the *stored* ``min_enabled_version``, under the
        distribution's lease: concurrent writers of the value take turns, and each applies what
        is stored when its turn comes, read again until it holds still. So when the last of
        them answers, Key Vault agrees with the engine."""
        claimed = self._claim(dist)
        if claimed is None:
            return [
                f"KMS provider {dist.provider!r}: {dist.remote_name} is being updated by another "
                "instance, which applies the stored min_enabled_version before it lets go"
            ]
        dist, warnings, enforced = claimed, [], None
        try:
            for _ in range(10):
                key = self.store.get_key(dist.mount, dist.key)
                if key is None or key.min_enabled_version == enforced:
                    break
                enforced = key.min_enabled_version
                warnings = self._enforce_enabled(dist, key, provider)[0]
        finally:
            self._release(dist)
        return warnings

    def _enforce_enabled(
        self, dist: Distribution, key: KeyRecord, provider: KmsProvider, *, blind: bool = True
    ) -> tuple[list[str], list[int]]:
        """Make Key Vault's enabled flags follow ``min_enabled_version``; returns warnings and
        the engine versions whose flag was changed. With the ``list`` permission only the
        versions that differ are updated; without it, ``blind`` updates every recorded version
        (idempotent: one request each), or, in the reconciler, nothing."""
        changed: list[int] = []
        try:
            try:
                remote: dict[str, bool] | None = {
                    rv.version_id: rv.enabled for rv in provider.remote_versions(dist.remote_name)
                }
            except PermissionMissing:
                if not blind:
                    return [], []
                remote = None
            for version, version_id in sorted(dist.versions.items()):
                wanted = version >= key.min_enabled_version
                if remote is None or (version_id in remote and remote[version_id] != wanted):
                    provider.set_enabled(dist.remote_name, version_id, wanted)
                    if remote is not None:
                        changed.append(version)
        except EngineError as exc:
            return [f"KMS provider {dist.provider!r}: {exc}; the reconciler will retry"], changed
        return [], changed

    def _each_distribution(
        self, key: KeyRecord, action: Callable[[Distribution, KmsProvider], list[str]]
    ) -> list[str]:
        warnings: list[str] = []
        for provider_name in key.providers:
            dist = self.store.get_distribution(key.mount, provider_name, key.name)
            if dist is None or dist.state == "removing":
                continue
            try:
                _, provider = self.provider(key.mount, provider_name)
                warnings += action(dist, provider)
            except EngineError as exc:
                warnings.append(f"KMS provider {provider_name!r}: {exc}")
        return warnings

    # -- reconciliation and events -----------------------------------------------------------

    def find_by_remote(self, vault: str, remote_name: str) -> Distribution | None:
        """The distribution that owns ``remote_name`` in vault ``vault``, if this engine made it."""
        owner = self.store.remote_owner(vault, remote_name)
        if owner is None:
            return None
        mount, provider_name, key_name = owner
        dist = self.store.get_distribution(mount, provider_name, key_name)
        if dist is None or dist.remote_name != remote_name:
            return None
        return dist

    def reconcile(self, dist: Distribution) -> dict[str, Any]:
        """Finish pending work for one distribution and report drift; never deletes anything
        it did not create (removal of a key the user asked to remove is finished, though)."""
        report: dict[str, Any] = {
            "mount": dist.mount,
            "provider": dist.provider,
            "key": dist.key,
            "name": dist.remote_name,
            "imported": [],
            "enabled_changed": [],
            "drift": [],
            "errors": [],
        }
        try:
            _, provider = self.provider(dist.mount, dist.provider)
            if dist.state == "removing":
                report["removed"] = self._finish_remove(dist, provider)
                return report
            key = self.store.get_key(dist.mount, dist.key)
            if key is None or key.state != "active":
                report["drift"].append("the engine key no longer exists")
                return report
            # The whole check runs under the lease, without waiting: a distribution another
            # instance is importing into is that instance's to finish (a dead one's lease runs
            # out within LEASE_SECONDS, and the next run takes it).
            claimed = self._claim(dist, wait=False)
            if claimed is None:
                report["busy"] = True
                return report
            try:
                self._reconcile_held(claimed, key, provider, report)
            finally:
                self._release(claimed)
        except EngineError as exc:
            report["errors"].append(str(exc))
        return report

    def _reconcile_held(
        self, dist: Distribution, key: KeyRecord, provider: KmsProvider, report: dict[str, Any]
    ) -> None:
        try:
            remote: list[RemoteVersion] | None = provider.remote_versions(dist.remote_name)
        except PermissionMissing as exc:
            remote = None  # degrade: the latest version is all that can be seen
            report["missing_permissions"] = [exc.permission]
        if remote is None:
            self._check_latest(dist, provider, report)
        elif not remote:
            if dist.versions:
                report["drift"].append(
                    f"Key Vault key {dist.remote_name} has no live versions: it was deleted "
                    "outside the engine; remove the distribution and distribute again (or "
                    "recover the key in Key Vault)"
                )
                return
        else:
            dist = self._check_versions(dist, provider, remote, report)
        imported: list[int] = []
        report["errors"] += self._complete(
            dist, key, provider, raise_errors=False, held=True, imported=imported
        )
        report["imported"] = sorted(imported)  # what this run did, not what another did
        if remote is not None:
            fresh = self.store.get_distribution(dist.mount, dist.provider, dist.key) or dist
            key = self.store.get_key(dist.mount, dist.key) or key
            errors, report["enabled_changed"] = self._enforce_enabled(
                fresh, key, provider, blind=False
            )
            report["errors"] += errors

    def _check_latest(
        self, dist: Distribution, provider: KmsProvider, report: dict[str, Any]
    ) -> None:
        """Drift seen without ``list``: the latest version, and whether the key is gone."""
        latest = provider.latest_version(dist.remote_name)
        if latest is None:
            if dist.versions:
                report["drift"].append(
                    f"Key Vault key {dist.remote_name} was deleted outside the engine; remove "
                    "the distribution and distribute again (or recover the key in Key Vault)"
                )
            return
        if latest.version_id in dist.versions.values() or latest.version_id in dist.duplicates:
            return
        tag = latest.tags.get(TAG_VERSION, "")
        if is_ours(dist, latest) and tag.isdigit() and int(tag) not in dist.versions:
            return  # an import a crash left unrecorded: adopted by _complete
        report["drift"].append(
            f"Key Vault version {latest.version_id} of {dist.remote_name} (the latest) was not "
            "created by this engine"
        )

    def _check_versions(
        self,
        dist: Distribution,
        provider: KmsProvider,
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
            tag = rv.tags.get(TAG_VERSION, "")
            tagged = is_ours(dist, rv)
            if tagged and tag.isdigit() and int(tag) not in dist.versions:
                continue  # an import a crash left unrecorded: adopted by _complete
            if tagged and tag.isdigit() and int(tag) in dist.retried:
                # The first try of an import that got no answer landed after its retry: ours.
                if rv.enabled:
                    provider.set_enabled(dist.remote_name, rv.version_id, False)
                duplicates.append(rv.version_id)
                report["drift"].append(
                    f"Key Vault version {rv.version_id} of {dist.remote_name} is a duplicate "
                    f"import of engine version {tag} (a slow import that landed after its "
                    "retry); disabled, and not reported again"
                )
            elif tagged:
                report["drift"].append(
                    f"Key Vault version {rv.version_id} of {dist.remote_name} carries this "
                    f"engine's tags (version {tag!r}) but is not one the engine recorded"
                )
            else:
                report["drift"].append(
                    f"Key Vault version {rv.version_id} of {dist.remote_name} was not "
                    "created by this engine"
                )
        if duplicates:
            dist = self._update(dist, lambda d: replace(d, duplicates=(*d.duplicates, *duplicates)))
        missing = [v for v, vid in sorted(dist.versions.items()) if vid not in ids]
        if missing:
            report["drift"].append(
                f"engine versions {missing} are missing in Key Vault; re-importing them"
            )
            dist = self._update(
                dist,
                lambda d: replace(
                    d, versions={v: vid for v, vid in d.versions.items() if v not in missing}
                ),
            )
        return dist

    # -- health (ext) -----------------------------------------------------------------------

    def health(self, mount: str, provider_name: str) -> dict[str, Any]:
        if self.store.get_provider(mount, check_name(provider_name, "KMS provider")) is None:
            raise NotFound()  # a read of something absent: 404, as for kms/:name
        try:
            _, provider = self.provider(mount, provider_name)
        except InvalidRequest as exc:  # a diagnosis, not a refusal: say what is wrong
            return {
                "credential": f"not usable: {exc}",
                "token": "not attempted",
                "key_vault": "not attempted",
            }
        return provider.health()


_FIELD_NAME = re.compile(r"[a-z]{1,16}(_[a-z]{1,16}){0,2}")


def _check_vault_name(name: str) -> None:
    base = name.removesuffix(".managedhsm")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]", base) or "--" in base:
        raise InvalidRequest(
            f"key_collection: {name!r} is not a Key Vault name (3-24 letters, digits and "
            "single dashes, starting with a letter; '<name>.managedhsm' for a Managed HSM)"
        )
