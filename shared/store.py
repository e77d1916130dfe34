"""Table Storage repository: entities, ETags and transactions.

One table, ``<prefix>state``. Everything of one mount lives in the partition named after the
mount, so whatever must change together (a key row and its new version, a distribution and
the key's provider list) is one entity-group transaction with ETag conditions. Row keys:

    key:<name>:                       the key (type, latest and min enabled version, policy)
    key:<name>:<version, 10 digits>   one version: public key, sealed material
    name:<name>                       the list index: one small row per key
    kms:<provider>                    a KMS provider: provider, key_collection, sealed credentials
    dist:<provider>:<key>             a key distributed to a provider: names, versions, pending work

The partition ``_sys`` holds ``mount:<name>`` rows; ``_rotation`` holds the rotation index
(see docs/storage.md). Names never contain ``:``, so ``<prefix>:`` ranges are exact.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.errors import UpstreamUnavailable
from shared.seal import Sealed
from shared.settings import Settings

log = logging.getLogger(__name__)

SYS_PARTITION = "_sys"
ROTATION_PARTITION = "_rotation"
STATUS_PARTITION = "_status"  # last results of the rotation sweep and the reconciler
DRIFT_PARTITION = "_drift"  # drift reported by Key Vault events
REMOTE_PARTITION = "_remote"  # <vault>:<remote key name> → the distribution that owns it
MAX_TRANSACTION = 100  # Table Storage's limit per entity-group transaction


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    name: str
    type: str
    description: str
    uuid: str
    created: dt.datetime


@dataclass(frozen=True)
class KeyRecord:
    mount: str
    name: str
    type: str
    latest_version: int
    min_enabled_version: int
    deletion_allowed: bool
    created: dt.datetime
    state: str = "active"  # "active" | "deleting"
    auto_rotate_period: int = 0  # seconds; 0 = no scheduled rotation
    next_rotation_time: dt.datetime | None = None
    rotation_slot: str = ""  # RowKey of the rotation index entry, "" when none
    providers: tuple[str, ...] = ()
    etag: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class VersionRecord:
    version: int
    creation_time: dt.datetime
    public_key: str | None
    sealed: Sealed | None = None  # present only when read for unsealing


@dataclass(frozen=True)
class ProviderRecord:
    mount: str
    name: str
    provider: str
    key_collection: str
    credentials: Sealed | None
    generation: int
    created: dt.datetime
    etag: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Distribution:
    mount: str
    provider: str
    key: str
    remote_name: str
    purpose: tuple[str, ...]
    protection: str
    distribution_time: dt.datetime
    versions: dict[int, str]  # engine version → Key Vault version id
    state: str = "active"  # "distributing" | "active" | "removing"
    expiration_period: int = 0  # seconds; 0 = no exp on imported versions
    last_error: str = ""
    # Import lease: one importer per distribution at a time, across instances.
    lease_owner: str = ""
    lease_until: dt.datetime | None = None
    # Imports that got no answer: engine version → when. Not sent again until looked for.
    uncertain: dict[int, dt.datetime] = field(default_factory=dict)
    # Versions imported again after an unknown outcome: a late first try is a duplicate of ours.
    retried: tuple[int, ...] = ()
    # Key Vault versions this engine created twice, disabled and reported once.
    duplicates: tuple[str, ...] = ()
    etag: str | None = field(default=None, compare=False)


_KEY_COLUMNS = [
    "RowKey",
    "name",
    "type",
    "latest_version",
    "min_enabled_version",
    "deletion_allowed",
    "created",
    "state",
    "auto_rotate_period",
    "next_rotation_time",
    "rotation_slot",
    "providers",
]
_PUBLIC_VERSION_COLUMNS = ["version", "creation_time", "public_key"]


# -- entity mapping ----------------------------------------------------------------------------


def key_rk(name: str) -> str:
    # The key row sorts right before its versions, so one range query reads a key whole.
    return f"key:{name}:"


def version_rk(name: str, version: int) -> str:
    return f"key:{name}:{version:010d}"


def name_rk(name: str) -> str:
    return f"name:{name}"


def provider_rk(name: str) -> str:
    return f"kms:{name}"


def dist_rk(provider: str, key: str) -> str:
    return f"dist:{provider}:{key}"


def _int64(value: int) -> Any:
    from azure.data.tables import EdmType, EntityProperty

    return EntityProperty(value, EdmType.INT64)


def _plain_int(value: Any) -> int:
    return int(getattr(value, "value", value))


def _key_entity(k: KeyRecord) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": k.mount,
        "RowKey": key_rk(k.name),
        "name": k.name,
        "type": k.type,
        "latest_version": k.latest_version,
        "min_enabled_version": k.min_enabled_version,
        "deletion_allowed": k.deletion_allowed,
        "created": k.created,
        "state": k.state,
        "auto_rotate_period": _int64(k.auto_rotate_period),
        "rotation_slot": k.rotation_slot,
        "providers": json.dumps(list(k.providers)),
    }
    if k.next_rotation_time is not None:
        entity["next_rotation_time"] = k.next_rotation_time
    return entity


def _key_from(entity: Any, mount: str | None = None) -> KeyRecord:
    return KeyRecord(
        mount=mount or entity["PartitionKey"],
        name=entity["name"],
        type=entity["type"],
        latest_version=_plain_int(entity["latest_version"]),
        min_enabled_version=_plain_int(entity["min_enabled_version"]),
        deletion_allowed=bool(entity["deletion_allowed"]),
        created=entity["created"],
        state=entity.get("state", "active"),
        auto_rotate_period=_plain_int(entity.get("auto_rotate_period", 0)),
        next_rotation_time=entity.get("next_rotation_time"),
        rotation_slot=entity.get("rotation_slot", ""),
        providers=tuple(json.loads(entity.get("providers") or "[]")),
        etag=entity.metadata.get("etag"),
    )


def _sealed_fields(prefix: str, sealed: Sealed) -> dict[str, Any]:
    return {
        f"{prefix}_kid": sealed.seal_key_id,
        f"{prefix}_dek": sealed.wrapped_dek,
        f"{prefix}_ct": sealed.ciphertext,
    }


def _sealed_from(entity: Any, prefix: str) -> Sealed | None:
    if f"{prefix}_ct" not in entity:
        return None
    return Sealed(
        entity[f"{prefix}_kid"], bytes(entity[f"{prefix}_dek"]), bytes(entity[f"{prefix}_ct"])
    )


def _version_entity(mount: str, name: str, v: VersionRecord) -> dict[str, Any]:
    assert v.sealed is not None
    entity = {
        "PartitionKey": mount,
        "RowKey": version_rk(name, v.version),
        "version": v.version,
        "creation_time": v.creation_time,
        **_sealed_fields("seal", v.sealed),
    }
    if v.public_key is not None:
        entity["public_key"] = v.public_key
    return entity


def _version_from(entity: Any) -> VersionRecord:
    return VersionRecord(
        version=_plain_int(entity["version"]),
        creation_time=entity["creation_time"],
        public_key=entity.get("public_key"),
        sealed=_sealed_from(entity, "seal"),
    )


def _provider_entity(p: ProviderRecord) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": p.mount,
        "RowKey": provider_rk(p.name),
        "name": p.name,
        "provider": p.provider,
        "key_collection": p.key_collection,
        "generation": p.generation,
        "created": p.created,
    }
    if p.credentials is not None:
        entity.update(_sealed_fields("cred", p.credentials))
    return entity


def _provider_from(entity: Any) -> ProviderRecord:
    return ProviderRecord(
        mount=entity["PartitionKey"],
        name=entity["name"],
        provider=entity["provider"],
        key_collection=entity["key_collection"],
        credentials=_sealed_from(entity, "cred"),
        generation=_plain_int(entity.get("generation", 1)),
        created=entity["created"],
        etag=entity.metadata.get("etag"),
    )


def _dist_entity(d: Distribution) -> dict[str, Any]:
    return {
        "PartitionKey": d.mount,
        "RowKey": dist_rk(d.provider, d.key),
        "provider": d.provider,
        "key": d.key,
        "remote_name": d.remote_name,
        "purpose": ",".join(d.purpose),
        "protection": d.protection,
        "distribution_time": d.distribution_time,
        "versions": json.dumps({str(k): v for k, v in sorted(d.versions.items())}),
        "state": d.state,
        "expiration_period": _int64(d.expiration_period),
        "last_error": d.last_error[:4000],
        "lease_owner": d.lease_owner,
        **({"lease_until": d.lease_until} if d.lease_until else {}),
        "uncertain": json.dumps({str(k): rfc3339(v) for k, v in sorted(d.uncertain.items())}),
        "retried": ",".join(map(str, sorted(d.retried))),
        "duplicates": ",".join(d.duplicates),
    }


def _dist_from(entity: Any) -> Distribution:
    return Distribution(
        mount=entity["PartitionKey"],
        provider=entity["provider"],
        key=entity["key"],
        remote_name=entity["remote_name"],
        purpose=tuple(p for p in entity["purpose"].split(",") if p),
        protection=entity["protection"],
        distribution_time=entity["distribution_time"],
        versions={int(k): v for k, v in json.loads(entity.get("versions") or "{}").items()},
        state=entity.get("state", "active"),
        expiration_period=_plain_int(entity.get("expiration_period", 0)),
        last_error=entity.get("last_error", ""),
        lease_owner=entity.get("lease_owner", ""),
        lease_until=entity.get("lease_until"),
        uncertain={
            int(k): dt.datetime.fromisoformat(v)
            for k, v in json.loads(entity.get("uncertain") or "{}").items()
        },
        retried=tuple(int(v) for v in (entity.get("retried") or "").split(",") if v),
        duplicates=tuple(v for v in (entity.get("duplicates") or "").split(",") if v),
        etag=entity.metadata.get("etag"),
    )


# -- operations for transactions -----------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One entity-group operation: create, update (ETag-conditioned), upsert or delete."""

    kind: str
    entity: dict[str, Any]
    etag: str | None = None


def create_op(entity: dict[str, Any]) -> Op:
    return Op("create", entity)


def update_op(entity: dict[str, Any], etag: str | None) -> Op:
    return Op("update", entity, etag)


def upsert_op(entity: dict[str, Any]) -> Op:
    return Op("upsert", entity)


def delete_op(partition: str, row: str, etag: str | None = None) -> Op:
    return Op("delete", {"PartitionKey": partition, "RowKey": row}, etag)


def key_op(k: KeyRecord, *, create: bool = False) -> Op:
    return create_op(_key_entity(k)) if create else update_op(_key_entity(k), k.etag)


def name_op(k: KeyRecord, *, create: bool = False) -> Op:
    """The key's list index row; it carries the state so lists skip keys being deleted."""
    entity = {"PartitionKey": k.mount, "RowKey": name_rk(k.name), "name": k.name, "state": k.state}
    return create_op(entity) if create else upsert_op(entity)


def version_op(mount: str, name: str, v: VersionRecord) -> Op:
    return create_op(_version_entity(mount, name, v))


def provider_op(p: ProviderRecord, *, create: bool = False) -> Op:
    return create_op(_provider_entity(p)) if create else update_op(_provider_entity(p), p.etag)


def dist_op(d: Distribution, *, create: bool = False) -> Op:
    return create_op(_dist_entity(d)) if create else update_op(_dist_entity(d), d.etag)


class ConcurrentChange(Exception):
    """An ETag or existence condition failed: someone else changed the row first."""


# -- the store -----------------------------------------------------------------------------------


class Store:
    """The engine's view of Table Storage. Builds its client lazily."""

    def __init__(self, settings: Settings, *, table_client: Any = None) -> None:
        self.settings = settings
        self.table_name = f"{settings.table_prefix}state"
        self._table = table_client
        self.request_count = 0  # Table requests sent by this store (sweep cost tests read it)
        self.entities_read = 0

    @property
    def table(self) -> Any:
        if self._table is None:
            self._table = self._make_client()
        return self._table

    def _make_client(self) -> Any:
        from azure.core.exceptions import ResourceExistsError
        from azure.data.tables import TableServiceClient

        storage = self.settings.storage
        if storage.connection_string:
            service = TableServiceClient.from_connection_string(storage.connection_string)
        else:
            from azure.identity import ManagedIdentityCredential

            credential = ManagedIdentityCredential(client_id=storage.client_id)
            service = TableServiceClient(endpoint=storage.table_service_uri, credential=credential)
        try:
            service.create_table(self.table_name)
        except ResourceExistsError:
            pass
        except Exception as exc:
            raise UpstreamUnavailable(
                f"Table Storage is not reachable: {type(exc).__name__}"
            ) from None
        return service.get_table_client(self.table_name)

    # -- low level ---------------------------------------------------------------------------

    def _get(self, partition: str, row: str, select: Sequence[str] | None = None) -> Any | None:
        from azure.core.exceptions import ResourceNotFoundError

        self.request_count += 1
        try:
            entity = self.table.get_entity(partition, row, select=list(select) if select else None)
        except ResourceNotFoundError:
            return None
        self.entities_read += 1
        return entity

    def _query(
        self, flt: str, parameters: dict[str, Any], select: Sequence[str] | None = None
    ) -> Iterator[Any]:
        pages = self.table.query_entities(
            flt, parameters=parameters, select=list(select) if select else None
        ).by_page()
        for page in pages:
            self.request_count += 1
            for entity in page:
                self.entities_read += 1
                yield entity

    def _range(
        self, partition: str, prefix: str, select: Sequence[str] | None = None
    ) -> Iterator[Any]:
        # ';' sorts right after ':', so [prefix, prefix[:-1] + ';') is exactly the prefix range.
        assert prefix.endswith(":")
        return self._query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": partition, "lo": prefix, "hi": prefix[:-1] + ";"},
            select,
        )

    def commit(self, ops: Sequence[Op]) -> list[str | None]:
        """Apply ops atomically (one partition, at most 100); returns each row's new ETag.
        ConcurrentChange on a lost race."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
        from azure.data.tables import TableTransactionError, UpdateMode

        if not ops:
            return []
        if len(ops) > MAX_TRANSACTION:
            raise ValueError(f"a transaction holds at most {MAX_TRANSACTION} operations")
        batch: list[Any] = []
        for op in ops:
            options: dict[str, Any] = {}
            if op.kind == "update":
                options = {"mode": UpdateMode.REPLACE}
                if op.etag:
                    options.update(etag=op.etag, match_condition=MatchConditions.IfNotModified)
            elif op.kind == "upsert":
                options = {"mode": UpdateMode.REPLACE}
            elif op.kind == "delete" and op.etag:
                options = {"etag": op.etag, "match_condition": MatchConditions.IfNotModified}
            batch.append((op.kind, op.entity, options) if options else (op.kind, op.entity))
        self.request_count += 1
        try:
            results = self.table.submit_transaction(batch)
        except (TableTransactionError, ResourceModifiedError, ResourceExistsError) as exc:
            status = getattr(exc, "status_code", None)
            if status in (409, 412) or isinstance(
                exc, (ResourceModifiedError, ResourceExistsError)
            ):
                raise ConcurrentChange(str(exc).splitlines()[0]) from None
            if status == 404:
                raise ConcurrentChange(
                    "a row changed by this transaction no longer exists"
                ) from None
            raise
        return [result.get("etag") for result in results]

    def commit_many(self, ops: Sequence[Op]) -> None:
        """Apply ops in chunks of 100; each chunk is atomic, the whole is not."""
        for start in range(0, len(ops), MAX_TRANSACTION):
            self.commit(ops[start : start + MAX_TRANSACTION])

    # -- mounts ------------------------------------------------------------------------------

    def get_mount(self, name: str) -> Mount | None:
        entity = self._get(SYS_PARTITION, f"mount:{name}")
        if entity is None:
            return None
        return Mount(
            entity["name"],
            entity["type"],
            entity.get("description", ""),
            entity["uuid"],
            entity["created"],
        )

    def list_mounts(self) -> list[Mount]:
        return [
            Mount(e["name"], e["type"], e.get("description", ""), e["uuid"], e["created"])
            for e in self._range(SYS_PARTITION, "mount:")
        ]

    def create_mount(self, mount: Mount) -> None:
        self.commit(
            [
                create_op(
                    {
                        "PartitionKey": SYS_PARTITION,
                        "RowKey": f"mount:{mount.name}",
                        "name": mount.name,
                        "type": mount.type,
                        "description": mount.description,
                        "uuid": mount.uuid,
                        "created": mount.created,
                    }
                )
            ]
        )

    def delete_mount(self, name: str) -> None:
        self.commit([delete_op(SYS_PARTITION, f"mount:{name}")])

    def partition_has(self, mount: str, prefix: str) -> bool:
        pages = self.table.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": mount, "lo": prefix, "hi": prefix[:-1] + ";"},
            select=["RowKey"],
            results_per_page=1,
        ).by_page()
        self.request_count += 1
        return any(True for _ in next(pages, []))

    # -- keys --------------------------------------------------------------------------------

    def get_key(self, mount: str, name: str) -> KeyRecord | None:
        entity = self._get(mount, key_rk(name))
        return None if entity is None else _key_from(entity)

    def get_key_and_versions(
        self, mount: str, name: str
    ) -> tuple[KeyRecord | None, list[VersionRecord]]:
        """The key row and its versions' public parts, in one range query."""
        rows = list(
            self._query(
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                {"pk": mount, "lo": key_rk(name), "hi": f"key:{name};"},
                select=_KEY_COLUMNS + _PUBLIC_VERSION_COLUMNS,
            )
        )
        if not rows or rows[0]["RowKey"] != key_rk(name):
            return None, []
        return _key_from(rows[0], mount), [_version_from(e) for e in rows[1:]]

    def list_key_names(self, mount: str) -> list[str]:
        return [
            e["name"]
            for e in self._range(mount, "name:", select=["name", "state"])
            if e.get("state", "active") == "active"
        ]

    def list_versions(self, mount: str, name: str, *, min_version: int = 1) -> list[VersionRecord]:
        """Public parts only: the sealed columns are not even fetched."""
        rows = self._query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": mount, "lo": version_rk(name, max(min_version, 1)), "hi": f"key:{name};"},
            select=_PUBLIC_VERSION_COLUMNS,
        )
        return [_version_from(e) for e in rows]

    def get_sealed_version(self, mount: str, name: str, version: int) -> VersionRecord | None:
        entity = self._get(mount, version_rk(name, version))
        return None if entity is None else _version_from(entity)

    def version_row_keys(self, mount: str, name: str) -> list[str]:
        return [
            e["RowKey"]
            for e in self._range(mount, f"key:{name}:", select=["RowKey"])
            if e["RowKey"] != key_rk(name)
        ]

    # -- providers and distributions -------------------------------------------------------------

    def get_provider(self, mount: str, name: str) -> ProviderRecord | None:
        entity = self._get(mount, provider_rk(name))
        return None if entity is None else _provider_from(entity)

    def list_providers(self, mount: str) -> list[ProviderRecord]:
        return [_provider_from(e) for e in self._range(mount, "kms:")]

    def get_distribution(self, mount: str, provider: str, key: str) -> Distribution | None:
        entity = self._get(mount, dist_rk(provider, key))
        return None if entity is None else _dist_from(entity)

    def list_distributions(self, mount: str, provider: str | None = None) -> list[Distribution]:
        prefix = f"dist:{provider}:" if provider else "dist:"
        return [_dist_from(e) for e in self._range(mount, prefix)]

    def remote_owner(self, vault: str, remote_name: str) -> tuple[str, str, str] | None:
        entity = self._get(REMOTE_PARTITION, f"{vault.lower()}:{remote_name}")
        if entity is None:
            return None
        return entity["mount"], entity["provider"], entity["key"]

    def due_rotations(self, now: dt.datetime) -> list[tuple[str, str, str]]:
        """(slot, mount, key) of index entries due at ``now``: one range query, due ones only."""
        rows = self._query(
            "PartitionKey eq @pk and RowKey lt @hi",
            {"pk": ROTATION_PARTITION, "hi": f"{int(now.timestamp()):012d};"},
            select=["RowKey", "mount", "key"],
        )
        return [(e["RowKey"], e["mount"], e["key"]) for e in rows]

    def put_status(self, name: str, payload: dict[str, Any]) -> None:
        """Save a run's summary; long lists are cut so it fits one Table string (32K chars)."""
        text = json.dumps(payload, default=str)
        for keep in (50, 10, 0):
            if len(text) <= 30000:
                break
            payload = {k: (v[:keep] if isinstance(v, list) else v) for k, v in payload.items()}
            payload["details_truncated"] = True
            text = json.dumps(payload, default=str)
        self.commit([upsert_op({"PartitionKey": STATUS_PARTITION, "RowKey": name, "json": text})])

    def get_status(self, name: str) -> dict[str, Any] | None:
        entity = self._get(STATUS_PARTITION, name)
        if entity is None:
            return None
        return json.loads(entity["json"])

    def add_event_drift(self, row: str, payload: dict[str, Any]) -> None:
        self.commit(
            [
                upsert_op(
                    {
                        "PartitionKey": DRIFT_PARTITION,
                        "RowKey": row,
                        "json": json.dumps(payload, default=str),
                    }
                )
            ]
        )

    def event_drift(self, limit: int = 200) -> list[dict[str, Any]]:
        rows = []
        for entity in self._query("PartitionKey eq @pk", {"pk": DRIFT_PARTITION}):
            rows.append(json.loads(entity["json"]))
            if len(rows) >= limit:
                break
        return rows

    def all_distributions(self) -> Iterable[Distribution]:
        """Every distribution in every mount (the reconciler's work list)."""
        for mount in self.list_mounts():
            yield from self.list_distributions(mount.name)
