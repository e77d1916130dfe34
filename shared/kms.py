"""KMS providers (``kms/:name``): their records, sealed credentials and clients.

A KMS provider is a name in a mount, a provider type (``provider``, looked up in
shared/providers) and what that type takes: a ``key_collection`` and credentials. Credentials
are sealed before they are stored and opened only to build a client; a client is built once
per provider generation and cached.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace

from shared.errors import ConcurrentChange, InvalidRequest, NotFound
from shared.mounts import Mounts, no_route
from shared.providers import PROVIDERS, Health, KmsClient, ProviderType, provider_type
from shared.records import KmsRecord, utcnow
from shared.seal import Sealed, Sealer, credentials_context
from shared.settings import Settings
from shared.store import Store, kms_op, optimistic

log = logging.getLogger(__name__)

ClientFactory = Callable[[KmsRecord, Mapping[str, str]], KmsClient]

# A credential key is shown in a refusal only when it looks like a misspelt field name: a
# secret pasted without its name ("c2VjcmV0==") must not come back in the answer.
_FIELD_NAME = re.compile(r"[a-z]{1,16}(_[a-z]{1,16}){0,2}")


class Kms:
    """The KMS providers of every mount. Its collaborators: the store, the settings (for
    clients), the sealer (credentials) and the mounts (a create in a mount being disabled is
    taken back). ``client_factory`` replaces the provider types' own (tests wrap clients)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        sealer: Sealer,
        mounts: Mounts,
        *,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.sealer = sealer
        self.mounts = mounts
        self._factory = client_factory or self.build_client
        self._cache: dict[tuple[str, str], tuple[tuple[int, str, str], KmsClient]] = {}
        self._lock = threading.Lock()

    def forget(self) -> None:
        """Drop cached clients (the table was lost and recreated)."""
        with self._lock:
            self._cache.clear()

    # -- records ------------------------------------------------------------------------------

    def write(
        self,
        mount: str,
        name: str,
        *,
        provider: str | None,
        key_collection: str | None,
        credentials: Mapping[str, str] | None,
    ) -> None:
        """Create a KMS provider, or update its credentials. Everything is checked before
        anything is written (against the type named, else the stored one's); a create that
        loses a race becomes the update it would be."""
        named = PROVIDERS.get(provider) if provider else None
        if named is not None:
            self._check(named, key_collection, credentials)
        sealed: list[Sealed | None] = []  # sealed once, when a write needs it

        def seal() -> Sealed | None:
            if not sealed:
                sealed.append(self._seal_credentials(mount, name, credentials or {}))
            return sealed[0]

        def attempt() -> None:
            existing = self.store.get_kms(mount, name)
            if existing is None:
                ptype = provider_type(provider)
                if not key_collection:
                    raise InvalidRequest(f"key_collection is required: {ptype.key_collection_is}")
                record = KmsRecord(
                    mount=mount,
                    name=name,
                    provider=ptype.name,
                    key_collection=key_collection,
                    credentials=seal(),
                    generation=1,
                    created=utcnow(),
                )
                [etag] = self.store.commit([kms_op(record, create=True)])
                created.append(replace(record, etag=etag))
                return
            if named is None:
                self._check(provider_type(existing.provider), key_collection, credentials)
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
                updated = replace(existing, credentials=seal(), generation=existing.generation + 1)
                self.store.commit([kms_op(updated)])

        created: list[KmsRecord] = []
        optimistic(attempt, what=f"KMS provider {name!r}")
        if created and not self.mounts.keeps(mount, lambda: self.store.kms_written(mount, name)):
            # The mount was disabled meanwhile (see Mounts.disable): take the provider back.
            self.store.delete_kms(created[0])
            raise no_route(mount)

    @staticmethod
    def _check(
        ptype: ProviderType, key_collection: str | None, credentials: Mapping[str, str] | None
    ) -> None:
        if credentials is not None:
            unknown = sorted(set(credentials) - set(ptype.credential_keys))
            if unknown:
                shown = [k for k in unknown if _FIELD_NAME.fullmatch(k)]
                if len(shown) < len(unknown):
                    shown.append(f"{len(unknown) - len(shown)} not shown")
                raise InvalidRequest(
                    f"credentials: unknown key(s) {', '.join(shown[:10])}; allowed: "
                    f"{', '.join(ptype.credential_keys)}"
                )
            ptype.check_credentials(credentials)
        if key_collection:
            ptype.check_key_collection(key_collection)

    def exists(self, mount: str, name: str) -> bool:
        """Whether the KMS provider exists (one point read): the API's existence check."""
        return self.store.get_kms(mount, name) is not None

    def read(self, mount: str, name: str) -> KmsRecord:
        record = self.store.get_kms(mount, name)
        if record is None:
            raise NotFound()
        return record

    def names(self, mount: str) -> list[str]:
        return [p.name for p in self.store.list_kms(mount)]

    def delete(self, mount: str, name: str) -> None:
        """Delete a KMS provider that holds no key (refused while one is distributed to it)."""

        def attempt() -> None:
            record = self.store.get_kms(mount, name)
            if record is None:
                return
            held = [d.key for d in self.store.list_distributions(mount, name)]
            if held:
                raise InvalidRequest(
                    f"KMS provider {name!r} cannot be deleted: keys {sorted(held)} are "
                    "distributed to it; remove them first"
                )
            self.store.delete_kms(record)
            if self.store.get_kms(mount, name) is not None:
                raise ConcurrentChange("the provider changed while it was being deleted")

        optimistic(attempt, what=f"KMS provider {name!r}")
        with self._lock:
            self._cache.pop((mount, name), None)

    def _seal_credentials(
        self, mount: str, name: str, credentials: Mapping[str, str]
    ) -> Sealed | None:
        if not credentials:
            return None
        plaintext = json.dumps(dict(credentials), sort_keys=True).encode()
        return self.sealer.seal(plaintext, credentials_context(mount, name))

    def _open_credentials(self, record: KmsRecord) -> dict[str, str]:
        if record.credentials is None:
            return {}
        plaintext = self.sealer.open(
            record.credentials, credentials_context(record.mount, record.name)
        )
        credentials: dict[str, str] = json.loads(plaintext)
        return credentials

    # -- clients ------------------------------------------------------------------------------

    def client(self, mount: str, name: str) -> tuple[KmsRecord, KmsClient]:
        """The KMS provider's record (one read) and its client."""
        record = self.store.get_kms(mount, name)
        if record is None:
            raise InvalidRequest(f"KMS provider {name!r} does not exist in mount {mount}/")
        return record, self.client_for(record)

    def client_for(self, record: KmsRecord) -> KmsClient:
        """The client of a record already read: cached while the record's generation holds."""
        fingerprint = (record.generation, record.provider, record.key_collection)
        with self._lock:
            cached = self._cache.get((record.mount, record.name))
            if cached is not None and cached[0] == fingerprint:
                return cached[1]
        client = self._factory(record, self._open_credentials(record))
        with self._lock:
            self._cache[(record.mount, record.name)] = (fingerprint, client)
        return client

    def build_client(self, record: KmsRecord, credentials: Mapping[str, str]) -> KmsClient:
        """A new client, from the record's provider type (not cached)."""
        vault = record.key_collection.lower()
        return provider_type(record.provider).client(
            record,
            credentials,
            self.settings,
            creation_lock=lambda name: self.store.lock(f"{vault}:{name}", ttl=60, wait=45),
        )

    # -- health (ext) -------------------------------------------------------------------------

    def health(self, mount: str, name: str) -> Health:
        record = self.read(mount, name)  # absent: 404, as for kms/:name
        try:
            client = self.client_for(record)
        except InvalidRequest as exc:  # a diagnosis, not a refusal: say what is wrong
            return Health(
                credential=f"not usable: {exc}",
                token="not attempted",  # noqa: S106 (a status, not a secret)
                service="not attempted",
            )
        return client.health()
