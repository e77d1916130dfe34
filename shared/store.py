"""Table Storage repository: entities, ETags and transactions.

One table, ``<prefix>state``. Everything of one mount lives in the partition named after the
mount, so whatever must change together (a key row and its new version, a distribution and
the key's list of KMS providers) is one entity-group transaction with ETag conditions. Row keys:

    key:<name>:                       the key (type, latest and min enabled version, policy)
    key:<name>:<version, 10 digits>   one version: public key, sealed material
    name:<name>                       the list index: one small row per key
    kms:<kms>                         a KMS provider: its type, key_collection, sealed credentials
    dist:<kms>:<key>                  a key in that KMS provider: names, versions, pending work

The partition ``_sys`` holds ``mount:<name>`` rows; ``_rotation`` holds the rotation index.
Tokens live in ``_token:<salted id>`` (the token row and its ``child:`` index),
``_token_accessor`` and ``_token_expiry``, named by salted ids only (see docs/storage.md).
Names never contain ``:``, so ``<prefix>:`` ranges are exact.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from shared.errors import (
    ConcurrentChange,
    InvalidRequest,
    RowTampered,
    SealError,
    StorageLost,
    UpstreamUnavailable,
)
from shared.records import (
    AuthItem,
    AuthMount,
    Distribution,
    KeyRecord,
    KmsRecord,
    Mount,
    MountSettings,
    PolicyRecord,
    Remount,
    TokenEntry,
    VersionRecord,
    WrappedResponse,
    rfc3339,
    utcnow,
)
from shared.seal import Sealed, Sealer
from shared.settings import Settings

T = TypeVar("T")

log = logging.getLogger(__name__)

SYS_PARTITION = "_sys"
ROTATION_PARTITION = "_rotation"
STATUS_PARTITION = "_status"  # last results of the rotation sweep and the reconciler
POLICY_PARTITION = "_policy"  # ACL policies: acl:<name> → the policy text
DRIFT_PARTITION = "_drift"  # drift reported by Key Vault events
REMOTE_PARTITION = "_remote"  # <vault>:<remote key name> → the distribution that owns it
MAX_TRANSACTION = 100  # Table Storage's limit per entity-group transaction
# Table Storage's property limits: a string of at most 32K UTF-16 code units, binary 64 KiB.
MAX_STRING_PROPERTY = 32 * 1024
MAX_BINARY_PROPERTY = 64 * 1024
MAC_KEY_ROW = "row-mac-key"  # in SYS_PARTITION: the row MAC key, sealed (AEAD-protected)
TOKEN_SALT_ROW = "token-salt"  # in SYS_PARTITION: the token store's salt, sealed
AUDIT_SALT_ROW_PREFIX = "audit-salt:"  # in SYS_PARTITION: + device path: its HMAC salt, sealed
# Tokens: each in a partition of its own, named by its salted id (the row "token", and one
# "child:<salted id>" row per child); accessors and the expiry index in one partition each.
TOKEN_PARTITION_PREFIX = "_token:"
TOKEN_ROW = "token"
WRAPPED_ROW = "wrapped"  # in a response-wrapping token's partition: the response, sealed
TOKEN_ACCESSOR_PARTITION = "_token_accessor"
TOKEN_EXPIRY_PARTITION = "_token_expiry"
AUTH_PARTITION = "_auth"  # auth methods: mount:<path>, config:<uuid>, role:<uuid>:<name>
AUTH_TOKENS_PREFIX = "_auth_tokens:"  # + mount uuid: one row per token the method issued
MAC_COLUMN = "mac"
SEALED_PREFIXES = ("seal", "cred")  # each sealed value is <prefix>_kid, _dek, _ct (+ _sha)
_BLOB_COLUMNS = frozenset(f"{p}_{part}" for p in SEALED_PREFIXES for part in ("kid", "dek", "ct"))
MAX_ATTEMPTS = 60
_KIND_PREFIX = {"keys": "name:", "providers": "kms:"}  # what a mount holds, by row prefix


@dataclass(frozen=True)
class OwnerRow:
    """One row of the owner index: the remote key ``remote_name`` in ``vault`` belongs to the
    distribution (mount, kms, key)."""

    vault: str
    remote_name: str
    mount: str
    kms: str
    key: str
    written: dt.datetime | None

    def __str__(self) -> str:
        return f"{self.vault}:{self.remote_name}"


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


# Statuses Table Storage answers when it is throttling or failing, and a retry may succeed
# (Table service error codes: ServerBusy 503, InternalError and OperationTimedOut 500).
STORAGE_BUSY_STATUSES = frozenset({429, 500, 502, 503, 504})
# The SDK's retries of those and of connection errors: three, backing off 0.4 s, 0.8 s, 1.6 s
# (Retry-After is honoured), at most 4 s apart. The SDK's default (factor 0.8, up to 120 s
# apart) holds a request, and one of the instance's few HTTP slots (docs/performance.md), for
# several seconds; a client of a Vault API retries a 503 itself.
TABLE_RETRIES = {"retry_total": 3, "retry_backoff_factor": 0.4, "retry_backoff_max": 4}

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
    "uid",
]
_PUBLIC_VERSION_COLUMNS = ["version", "creation_time", "public_key", "seal_sha", "key_uid"]


# -- entity mapping ----------------------------------------------------------------------------


def key_rk(name: str) -> str:
    # The key row sorts right before its versions, so one range query reads a key whole.
    return f"key:{name}:"


def version_rk(name: str, version: int) -> str:
    return f"key:{name}:{version:010d}"


def name_rk(name: str) -> str:
    return f"name:{name}"


def kms_rk(name: str) -> str:
    return f"kms:{name}"


def dist_rk(kms: str, key: str) -> str:
    return f"dist:{kms}:{key}"


def _owner_rk(vault: str, remote_name: str) -> str:
    return f"{vault.lower()}:{remote_name}"


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
        "type": k.key_type,
        "latest_version": k.latest_version,
        "min_enabled_version": k.min_enabled_version,
        "deletion_allowed": k.deletion_allowed,
        "created": k.created,
        "state": k.state,
        "auto_rotate_period": _int64(k.auto_rotate_period),
        "rotation_slot": k.rotation_slot,
        "providers": json.dumps(list(k.kms)),
        "uid": k.uid,
    }
    if k.next_rotation_time is not None:
        entity["next_rotation_time"] = k.next_rotation_time
    return entity


def _key_from(entity: Any, mount: str | None = None) -> KeyRecord:
    return KeyRecord(
        mount=mount or entity["PartitionKey"],
        name=entity["name"],
        key_type=entity["type"],
        latest_version=_plain_int(entity["latest_version"]),
        min_enabled_version=_plain_int(entity["min_enabled_version"]),
        deletion_allowed=bool(entity["deletion_allowed"]),
        created=entity["created"],
        state=entity.get("state", "active"),
        auto_rotate_period=_plain_int(entity.get("auto_rotate_period", 0)),
        next_rotation_time=entity.get("next_rotation_time"),
        rotation_slot=entity.get("rotation_slot", ""),
        kms=tuple(json.loads(entity.get("providers") or "[]")),
        uid=entity.get("uid") or "",
        etag=entity.metadata.get("etag"),
    )


def _mount_entity(m: Mount) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": SYS_PARTITION,
        "RowKey": f"mount:{m.name}",
        "name": m.name,
        "type": m.type,
        "description": m.description,
        "uuid": m.uuid,
        "created": m.created,
        "state": m.state,
    }
    if m.changed is not None:
        entity["changed"] = m.changed
    if m.moving:
        entity["moving"] = m.moving
    if m.settings != MountSettings():
        entity["settings"] = json.dumps(dataclasses.asdict(m.settings), sort_keys=True)
    return entity


def _remount_entity(r: Remount) -> dict[str, Any]:
    return {
        "PartitionKey": SYS_PARTITION,
        "RowKey": f"remount:{r.id}",
        "source": r.source,
        "target": r.target,
        "status": r.status,
        "phase": r.phase,
        "started": r.started,
        "error": r.error[:1000],
    }


def _remount_from(entity: Any) -> Remount:
    return Remount(
        id=entity["RowKey"].removeprefix("remount:"),
        source=entity["source"],
        target=entity["target"],
        status=entity["status"],
        phase=entity["phase"],
        started=entity["started"],
        error=entity.get("error", ""),
        etag=entity.metadata.get("etag"),
    )


def _mount_settings_from(text: str | None) -> MountSettings:
    """The mount's settings column (absent on a mount that never set any): JSON lists become
    tuples again, unknown names (a newer version's) are left out."""
    if not text:
        return MountSettings()
    raw = json.loads(text)
    known = {f.name for f in dataclasses.fields(MountSettings)}
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in known:
            continue
        if name == "options":
            value = tuple((str(k), str(v)) for k, v in value)
        elif isinstance(value, list):
            value = tuple(value)
        values[name] = value
    return MountSettings(**values)


def _mount_from(entity: Any) -> Mount:
    return Mount(
        entity["name"],
        entity["type"],
        entity.get("description", ""),
        entity["uuid"],
        entity["created"],
        state=entity.get("state", "active"),
        changed=entity.get("changed"),
        settings=_mount_settings_from(entity.get("settings")),
        moving=entity.get("moving", ""),
        written=entity.metadata.get("timestamp"),
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


def _version_entity(mount: str, name: str, v: VersionRecord, key_uid: str) -> dict[str, Any]:
    assert v.sealed is not None
    entity = {
        "PartitionKey": mount,
        "RowKey": version_rk(name, v.version),
        "key_uid": key_uid,
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


def _kms_entity(p: KmsRecord) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": p.mount,
        "RowKey": kms_rk(p.name),
        "name": p.name,
        "provider": p.provider,
        "key_collection": p.key_collection,
        "generation": p.generation,
        "created": p.created,
    }
    if p.credentials is not None:
        entity.update(_sealed_fields("cred", p.credentials))
    return entity


def _kms_from(entity: Any) -> KmsRecord:
    return KmsRecord(
        mount=entity["PartitionKey"],
        name=entity["name"],
        provider=entity["provider"],
        key_collection=entity["key_collection"],
        credentials=_sealed_from(entity, "cred"),
        generation=_plain_int(entity.get("generation", 1)),
        created=entity["created"],
        etag=entity.metadata.get("etag"),
    )


def _policy_from(entity: Any) -> PolicyRecord:
    return PolicyRecord(
        name=entity["name"],
        text=entity["text"],
        version=_plain_int(entity["version"]),
        modified=entity["modified"],
        etag=entity.metadata.get("etag"),
    )


def _dist_entity(d: Distribution) -> dict[str, Any]:
    return {
        "PartitionKey": d.mount,
        "RowKey": dist_rk(d.kms, d.key),
        "provider": d.kms,  # the column is named "provider"; it holds the KMS provider's name
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
        **({"tag_mount": d.tag_mount} if d.tag_mount else {}),
    }


def _dist_from(entity: Any) -> Distribution:
    return Distribution(
        mount=entity["PartitionKey"],
        kms=entity["provider"],
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
        tag_mount=entity.get("tag_mount", ""),
        etag=entity.metadata.get("etag"),
    )


def _token_pk(salted_id: str) -> str:
    return TOKEN_PARTITION_PREFIX + salted_id


def _optional_time(entity: dict[str, Any], name: str, value: dt.datetime | None) -> None:
    if value is not None:
        entity[name] = value


def _token_entity(t: TokenEntry) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": _token_pk(t.salted_id),
        "RowKey": TOKEN_ROW,
        "accessor": t.accessor,
        "parent": t.parent,
        "parent_root": t.parent_root,
        "policies": json.dumps(list(t.policies)),
        "path": t.path,
        "display_name": t.display_name,
        "num_uses": _int64(t.num_uses),
        "creation_time": _int64(t.creation_time),
        "creation_ttl": _int64(t.creation_ttl),
        "lease_ttl": _int64(t.lease_ttl),
        "explicit_max_ttl": _int64(t.explicit_max_ttl),
        "period": _int64(t.period),
        "renewable": t.renewable,
        "issue_time": t.issue_time,
        "expiry_slot": t.expiry_slot,
        "type": t.type,
        "entity_id": t.entity_id,
    }
    if t.meta is not None:
        entity["meta"] = json.dumps(dict(t.meta), sort_keys=True)
    if t.max_ttl:
        entity["max_ttl"] = _int64(t.max_ttl)
    if t.bound_cidrs:
        entity["bound_cidrs"] = json.dumps(list(t.bound_cidrs))
    if t.internal is not None:
        entity["internal"] = json.dumps(dict(t.internal), sort_keys=True)
    _optional_time(entity, "expire_time", t.expire_time)
    _optional_time(entity, "cap", t.cap)
    _optional_time(entity, "last_renewal", t.last_renewal)
    return entity


def _token_from(entity: Any, salted_id: str) -> TokenEntry:
    meta = entity.get("meta")
    return TokenEntry(
        salted_id=salted_id,
        accessor=entity["accessor"],
        parent=entity.get("parent") or "",
        parent_root=bool(entity.get("parent_root", False)),
        policies=tuple(json.loads(entity["policies"])),
        path=entity["path"],
        display_name=entity["display_name"],
        meta=None if meta is None else json.loads(meta),
        num_uses=_plain_int(entity["num_uses"]),
        creation_time=_plain_int(entity["creation_time"]),
        creation_ttl=_plain_int(entity["creation_ttl"]),
        lease_ttl=_plain_int(entity["lease_ttl"]),
        explicit_max_ttl=_plain_int(entity["explicit_max_ttl"]),
        period=_plain_int(entity["period"]),
        renewable=bool(entity["renewable"]),
        issue_time=entity["issue_time"],
        expire_time=entity.get("expire_time"),
        cap=entity.get("cap"),
        last_renewal=entity.get("last_renewal"),
        expiry_slot=entity.get("expiry_slot") or "",
        type=entity.get("type", "service"),
        entity_id=entity.get("entity_id") or "",
        max_ttl=_plain_int(entity.get("max_ttl", 0)),
        bound_cidrs=tuple(json.loads(entity.get("bound_cidrs") or "[]")),
        internal=None if entity.get("internal") is None else json.loads(entity["internal"]),
        etag=entity.metadata.get("etag"),
    )


def _wrapped_entity(w: WrappedResponse) -> dict[str, Any]:
    return {
        "PartitionKey": _token_pk(w.salted_id),
        "RowKey": WRAPPED_ROW,
        "creation_ttl": _int64(w.creation_ttl),
        "creation_time": w.creation_time,
        "creation_path": w.creation_path,
        **_sealed_fields("seal", w.response),
    }


def _wrapped_from(entity: Any, salted_id: str) -> WrappedResponse:
    sealed = _sealed_from(entity, "seal")
    if sealed is None:
        raise RowTampered(f"{_token_pk(salted_id)}/{WRAPPED_ROW}: the sealed response is missing")
    return WrappedResponse(
        salted_id=salted_id,
        creation_ttl=_plain_int(entity["creation_ttl"]),
        creation_time=entity["creation_time"],
        creation_path=entity["creation_path"],
        response=sealed,
        etag=entity.metadata.get("etag"),
    )


def _auth_mount_entity(m: AuthMount) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": AUTH_PARTITION,
        "RowKey": f"mount:{m.path}",
        "path": m.path,
        "type": m.type,
        "description": m.description,
        "accessor": m.accessor,
        "uuid": m.uuid,
        "created": m.created,
        "state": m.state,
    }
    _optional_time(entity, "changed", m.changed)
    if m.settings != MountSettings():
        entity["settings"] = json.dumps(dataclasses.asdict(m.settings), sort_keys=True)
    return entity


def _auth_mount_from(entity: Any) -> AuthMount:
    return AuthMount(
        path=entity["path"],
        type=entity["type"],
        description=entity.get("description", ""),
        accessor=entity["accessor"],
        uuid=entity["uuid"],
        created=entity["created"],
        state=entity.get("state", "active"),
        changed=entity.get("changed"),
        settings=_mount_settings_from(entity.get("settings")),
        etag=entity.metadata.get("etag"),
    )


def _auth_item_rk(mount_uuid: str, name: str) -> str:
    return f"role:{mount_uuid}:{name}" if name else f"config:{mount_uuid}"


def _auth_item_entity(item: AuthItem) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": AUTH_PARTITION,
        "RowKey": _auth_item_rk(item.mount_uuid, item.name),
        "mount_uuid": item.mount_uuid,
        "name": item.name,
        "json": json.dumps(dict(item.settings), sort_keys=True),
    }
    if item.secret is not None:
        entity.update(_sealed_fields("cred", item.secret))
    return entity


def _auth_item_from(entity: Any) -> AuthItem:
    return AuthItem(
        mount_uuid=entity["mount_uuid"],
        name=entity.get("name") or "",
        settings=json.loads(entity["json"]),
        secret=_sealed_from(entity, "cred"),
        etag=entity.metadata.get("etag"),
    )


@dataclass(frozen=True)
class ExpiryEntry:
    """One row of the token expiry index: the token (salted) that ends at ``slot``'s time,
    with its accessor and parent (salted) so leftovers of a create that died can go too."""

    slot: str
    token: str
    accessor: str
    parent: str


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


def delete_key_op(k: KeyRecord) -> Op:
    """The key row, conditioned on the ETag it was read with."""
    return delete_op(k.mount, key_rk(k.name), k.etag)


def delete_name_op(k: KeyRecord) -> Op:
    """The key's list-index row (unconditioned: it carries nothing to lose)."""
    return delete_op(k.mount, name_rk(k.name))


def delete_dist_op(d: Distribution) -> Op:
    """The distribution row, conditioned on the ETag it was read with."""
    return delete_op(d.mount, dist_rk(d.kms, d.key), d.etag)


def rotation_entry_op(slot: str, mount: str, key: str) -> Op:
    """The rotation index entry of a key due at ``slot`` (written before the key points to it)."""
    return upsert_op(
        {"PartitionKey": ROTATION_PARTITION, "RowKey": slot, "mount": mount, "key": key}
    )


def key_op(k: KeyRecord, *, create: bool = False) -> Op:
    return create_op(_key_entity(k)) if create else update_op(_key_entity(k), k.etag)


def name_op(k: KeyRecord, *, create: bool = False) -> Op:
    """The key's list index row; it carries the state so lists skip keys being deleted."""
    entity = {"PartitionKey": k.mount, "RowKey": name_rk(k.name), "name": k.name, "state": k.state}
    return create_op(entity) if create else upsert_op(entity)


def version_op(key: KeyRecord, v: VersionRecord) -> Op:
    return create_op(_version_entity(key.mount, key.name, v, key.uid))


def kms_op(p: KmsRecord, *, create: bool = False) -> Op:
    return create_op(_kms_entity(p)) if create else update_op(_kms_entity(p), p.etag)


def dist_op(d: Distribution, *, create: bool = False) -> Op:
    return create_op(_dist_entity(d)) if create else update_op(_dist_entity(d), d.etag)


def optimistic(operation: Callable[[], T], *, what: str, attempts: int = MAX_ATTEMPTS) -> T:
    """Run an optimistic read-modify-write until it wins its ETag race: the one retry helper.

    ``operation`` must read what it changes afresh on each call. Retries are bounded and
    jittered; a row that changed under every attempt ends in ConcurrentChange (409)."""
    for attempt in range(attempts):
        try:
            return operation()
        except ConcurrentChange:
            if attempt == attempts - 1:
                break
            time.sleep(random.uniform(0, min(0.2, 0.005 * 2 ** min(attempt, 6))))  # noqa: S311
    raise ConcurrentChange(f"{what} kept changing concurrently ({attempts} attempts); retry")


# -- row integrity -------------------------------------------------------------------------------


def _canonical_value(value: Any) -> Any:
    value = getattr(value, "value", value)  # EntityProperty (Int64, typed values)
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, int):
        return ["i", str(value)]
    if isinstance(value, float):
        return ["f", repr(value)]
    if isinstance(value, dt.datetime):
        return ["t", value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")]
    if isinstance(value, (bytes, bytearray)):
        return ["x", base64.b64encode(bytes(value)).decode()]
    if isinstance(value, str):
        return ["s", value]
    raise TypeError(f"cannot authenticate a column of type {type(value).__name__}")


def _sealed_digest(entity: Any, prefix: str) -> str:
    parts = [
        str(entity[f"{prefix}_kid"]).encode(),
        bytes(entity[f"{prefix}_dek"]),
        bytes(entity[f"{prefix}_ct"]),
    ]
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


class RowMac:
    """HMAC-SHA256 over a row's identity (PartitionKey, RowKey) and every column, type-tagged.

    Sealed values are covered by their own AEAD and, through a ``<prefix>_sha`` column holding
    their digest, by the MAC too, so a read that does not fetch the blobs still checks the row
    and a read that does checks the blobs belong to it."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.fingerprint = hashlib.sha256(b"azure-keymgmt/row-mac-id" + key).hexdigest()[:16]

    def tag(self, entity: Any, partition: str | None = None, row: str | None = None) -> str:
        pk = partition if partition is not None else entity["PartitionKey"]
        rk = row if row is not None else entity["RowKey"]
        columns = sorted(
            [name, _canonical_value(value)]
            for name, value in entity.items()
            if value is not None
            and name not in (MAC_COLUMN, "PartitionKey", "RowKey", "Timestamp")
            and name not in _BLOB_COLUMNS
        )
        message = json.dumps([pk, rk, columns], separators=(",", ":"), ensure_ascii=False)
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def check(self, entity: Any, partition: str, row: str) -> None:
        stored = entity.get(MAC_COLUMN)
        refused = RowTampered(
            f"stored row {partition}/{row} failed its integrity check: it was changed outside "
            "the engine; refusing to use it (restore it from a backup, or delete it)"
        )
        if not isinstance(stored, str) or not hmac.compare_digest(
            stored, self.tag(entity, partition, row)
        ):
            raise refused
        for prefix in SEALED_PREFIXES:
            if entity.get(f"{prefix}_ct") is not None and not hmac.compare_digest(
                str(entity.get(f"{prefix}_sha") or ""), _sealed_digest(entity, prefix)
            ):
                raise refused


# -- the store -----------------------------------------------------------------------------------


class Store:
    """The engine's view of Table Storage. Builds its client lazily."""

    def __init__(self, settings: Settings, sealer: Sealer, *, table_client: Any = None) -> None:
        self.settings = settings
        self.table_name = f"{settings.table_prefix}state"
        self._table = table_client
        self._service_client: Any = None
        self._sealer = sealer
        self._mac: RowMac | None = None
        self._mac_lock = threading.Lock()
        self._mac_checked = 0.0  # when the integrity key was last read again
        self._token_salt: tuple[bytes, dt.datetime] | None = None
        self._token_salt_read = 0.0  # when the salt was last read (monotonic)
        # A token not found reads the salt again, at most this often: another instance may
        # have recreated a lost table, and with it the salt (see reload_token_salt).
        self.token_salt_recheck = 30.0
        # Called after the table was found missing and recreated: whoever caches state drops it.
        self.on_table_lost: list[Callable[[], None]] = []
        self.request_count = 0  # Table requests sent by this store (sweep cost tests read it)
        self.entities_read = 0

    @property
    def table(self) -> Any:
        if self._table is None:
            self._table = self._make_client()
        return self._table

    def _make_client(self) -> Any:
        from azure.data.tables import TableServiceClient

        from shared.transport import requests_transport

        storage = self.settings.storage
        options = {"transport": requests_transport(), **TABLE_RETRIES}
        if storage.connection_string:
            service = TableServiceClient.from_connection_string(
                storage.connection_string, **options
            )
        else:
            from azure.identity import ManagedIdentityCredential

            if not storage.table_service_uri:
                raise UpstreamUnavailable("no Table Storage endpoint is configured")
            credential = ManagedIdentityCredential(client_id=storage.client_id)
            service = TableServiceClient(
                endpoint=storage.table_service_uri, credential=credential, **options
            )
        self._service_client = service
        self._create_table()
        return service.get_table_client(self.table_name)

    def _create_table(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            self._service_client.create_table(self.table_name)
        except ResourceExistsError:
            pass
        except Exception as exc:
            raise UpstreamUnavailable(
                f"Table Storage is not reachable: {type(exc).__name__}"
            ) from None

    # -- the table going away ----------------------------------------------------------------

    @staticmethod
    def _is_table_missing(exc: Exception) -> bool:
        code = getattr(exc, "error_code", None)
        code = getattr(code, "value", code)  # an error code enum, or its string
        if code is None and getattr(exc, "status_code", None) == 404:
            code = "TableNotFound" if "TableNotFound" in str(exc) else None
        return code == "TableNotFound"

    def _table_lost(self) -> StorageLost:
        """The table is gone: recreate it, drop every cache, and say so (503)."""
        log.error(
            "Table Storage table %s was not found: it was deleted, or the storage emulator "
            "restarted without persistence; recreating it (data written before is gone unless "
            "restored)",
            self.table_name,
        )
        with self._mac_lock:
            self._mac = None
            self._token_salt = None
        if self._service_client is not None:
            self._create_table()
        for listener in list(self.on_table_lost):
            try:
                listener()
            except Exception:
                log.exception("a cache could not be reset after the table was lost")
        return StorageLost(
            f"Table Storage table {self.table_name} was not found (deleted, or the storage "
            "emulator restarted without persistence); it was recreated empty: retry the request"
        )

    # -- row integrity -----------------------------------------------------------------------

    def _row_mac(self) -> RowMac:
        with self._mac_lock:
            if self._mac is None:
                self._mac = RowMac(self._load_mac_key())
            return self._mac

    def _load_mac_key(self) -> bytes:
        """The row MAC key: 256 random bits, sealed in ``_sys/row-mac-key`` (its AEAD binds it
        to this table), created by the first instance that needs it."""
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        context = f"azure-keymgmt/v1/row-mac-key/{self.table_name}"
        for _ in range(3):
            try:
                entity = self.table.get_entity(SYS_PARTITION, MAC_KEY_ROW)
            except ResourceNotFoundError as exc:
                if self._is_table_missing(exc):
                    raise self._table_lost() from None
                entity = None
            except Exception as exc:
                raise self._unavailable(exc) from None
            self.request_count += 1
            if entity is not None:
                sealed = _sealed_from(entity, "seal")
                if sealed is None:
                    raise RowTampered(f"stored row {SYS_PARTITION}/{MAC_KEY_ROW} is damaged")
                try:
                    return self._sealer.open(sealed, context)
                except SealError:
                    raise RowTampered(
                        f"stored row {SYS_PARTITION}/{MAC_KEY_ROW} (the row integrity key) does "
                        "not open with the seal key: it was replaced, or the seal key changed"
                    ) from None
            key = os.urandom(32)
            row = {
                "PartitionKey": SYS_PARTITION,
                "RowKey": MAC_KEY_ROW,
                **_sealed_fields("seal", self._sealer.seal(key, context)),
            }
            try:
                self.request_count += 1
                self.table.create_entity(row)
                return key
            except ResourceExistsError:
                continue  # another instance made it first: use theirs
            except Exception as exc:
                raise self._unavailable(exc) from None
        raise UpstreamUnavailable("the row integrity key could not be read or created")

    def _verified(self, entity: Any, partition: str | None = None) -> Any:
        pk = partition if partition is not None else entity["PartitionKey"]
        try:
            self._row_mac().check(entity, pk, entity["RowKey"])
        except RowTampered:
            # Another instance may have recreated a lost table (and its integrity key): look
            # at the key row again, at most every few seconds, before calling the row bad.
            if not self._reload_mac():
                raise
            self._row_mac().check(entity, pk, entity["RowKey"])
        return entity

    def _reload_mac(self) -> bool:
        """Read the integrity key again; True if it changed."""
        with self._mac_lock:
            if time.monotonic() - self._mac_checked < 5:
                return False
            self._mac_checked = time.monotonic()
            before = self._mac
            self._mac = None
        fresh = self._row_mac()
        changed = before is None or fresh.fingerprint != before.fingerprint
        if changed:  # the table was recreated: its token salt is new too
            with self._mac_lock:
                self._token_salt = None
        return changed

    def _authenticate(self, entity: dict[str, Any]) -> dict[str, Any]:
        """The entity as written: size-checked, with its sealed digests and MAC."""
        for name, value in entity.items():
            raw = getattr(value, "value", value)
            # At most 2 UTF-16 code units a character: only a long string needs encoding.
            if (
                isinstance(raw, str)
                and len(raw) > MAX_STRING_PROPERTY // 2
                and len(raw.encode("utf-16-le")) > 2 * MAX_STRING_PROPERTY
            ):
                raise InvalidRequest(
                    f"{name} is too long to store: {len(raw)} characters; Table Storage allows "
                    f"{MAX_STRING_PROPERTY} per value"
                )
            if isinstance(raw, (bytes, bytearray)) and len(raw) > MAX_BINARY_PROPERTY:
                raise InvalidRequest(
                    f"{name} is too large to store: {len(raw)} bytes; Table Storage allows "
                    f"{MAX_BINARY_PROPERTY} per value"
                )
        entity = dict(entity)
        for prefix in SEALED_PREFIXES:
            if f"{prefix}_ct" in entity:
                entity[f"{prefix}_sha"] = _sealed_digest(entity, prefix)
        entity[MAC_COLUMN] = self._row_mac().tag(entity)
        return entity

    # -- low level ---------------------------------------------------------------------------

    def _get(self, partition: str, row: str, select: Sequence[str] | None = None) -> Any | None:
        from azure.core.exceptions import ResourceNotFoundError

        self.request_count += 1
        try:
            entity = self.table.get_entity(
                partition, row, select=[*select, "RowKey", MAC_COLUMN] if select else None
            )
        except ResourceNotFoundError as exc:
            if self._is_table_missing(exc):
                raise self._table_lost() from None
            return None
        except Exception as exc:
            raise self._unavailable(exc) from None
        self.entities_read += 1
        return self._verified(entity, partition)

    def _unavailable(self, exc: Exception) -> Exception:
        """The engine's error for an SDK failure: the table gone, or Table Storage out of
        reach (503); anything else as it is."""
        from azure.core.exceptions import (
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )

        if isinstance(exc, HttpResponseError) and self._is_table_missing(exc):
            return self._table_lost()
        if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
            return UpstreamUnavailable(
                f"Table Storage is unavailable ({type(exc).__name__}); retry later"
            )
        # Throttling (503 ServerBusy, 429) and the service's own failures (500 InternalError,
        # OperationTimedOut), still there after the SDK's retries: the request may be retried.
        status = getattr(exc, "status_code", None)
        if isinstance(exc, HttpResponseError) and status in STORAGE_BUSY_STATUSES:
            code = getattr(exc, "error_code", None)
            code = getattr(code, "value", code) or status
            return UpstreamUnavailable(f"Table Storage is busy or failing ({code}); retry later")
        return exc

    def _query(
        self,
        flt: str,
        parameters: dict[str, Any],
        select: Sequence[str] | None = None,
        *,
        verify: bool = True,
        on_tampered: Callable[[RowTampered], None] | None = None,
        page_size: int | None = None,
    ) -> Iterator[Any]:
        """Rows matching ``flt``, each checked against its MAC (``select`` must then name every
        column the rows have). ``on_tampered``: report a bad row and go on instead of raising."""
        from azure.core.exceptions import AzureError

        if select:
            select = list(dict.fromkeys([*select, "PartitionKey", "RowKey", MAC_COLUMN]))
        pages = self.table.query_entities(
            flt,
            parameters=parameters,
            select=list(select) if select else None,
            **({"results_per_page": page_size} if page_size else {}),
        ).by_page()
        try:
            for page in pages:
                self.request_count += 1
                for entity in page:
                    self.entities_read += 1
                    if verify:
                        try:
                            self._verified(entity)
                        except RowTampered as exc:
                            if on_tampered is None:
                                raise
                            on_tampered(exc)
                            continue
                    yield entity
        except AzureError as exc:
            translated = self._unavailable(exc)
            if translated is exc:
                raise
            raise translated from None

    def _range(
        self,
        partition: str,
        prefix: str,
        select: Sequence[str] | None = None,
        **options: Any,
    ) -> Iterator[Any]:
        # ';' sorts right after ':', so [prefix, prefix[:-1] + ';') is exactly the prefix range.
        assert prefix.endswith(":")
        return self._query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": partition, "lo": prefix, "hi": prefix[:-1] + ";"},
            select,
            **options,
        )

    def commit(self, ops: Sequence[Op]) -> list[str | None]:
        """Apply ops atomically (one partition, at most 100); returns each row's new ETag.
        ConcurrentChange on a lost race."""
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError
        from azure.data.tables import UpdateMode

        if not ops:
            return []
        if len(ops) > MAX_TRANSACTION:
            raise ValueError(f"a transaction holds at most {MAX_TRANSACTION} operations")
        batch: list[Any] = []
        for op in ops:
            entity = op.entity if op.kind == "delete" else self._authenticate(op.entity)
            options: dict[str, Any] = {}
            if op.kind == "update":
                options = {"mode": UpdateMode.REPLACE}
                if op.etag:
                    options.update(etag=op.etag, match_condition=MatchConditions.IfNotModified)
            elif op.kind == "upsert":
                options = {"mode": UpdateMode.REPLACE}
            elif op.kind == "delete" and op.etag:
                options = {"etag": op.etag, "match_condition": MatchConditions.IfNotModified}
            batch.append((op.kind, entity, options) if options else (op.kind, entity))
        self.request_count += 1
        if len(batch) == 1 and ops[0].kind != "delete":
            return [self._write_one(*batch[0])]
        try:
            results = self.table.submit_transaction(batch)
        except AzureError as exc:
            translated = self._write_failure(exc)
            if translated is exc:
                raise
            raise translated from None
        return [result.get("etag") for result in results]

    def _write_one(
        self, kind: str, entity: dict[str, Any], options: dict[str, Any] | None = None
    ) -> str | None:
        """One create, update or upsert: the single-entity operation, which is atomic by itself
        (a batch of one costs a multipart request, several times slower on Azurite). The same
        answers as a transaction of one; returns the row's new ETag."""
        from azure.core.exceptions import AzureError

        try:
            if kind == "create":
                result = self.table.create_entity(entity)
            elif kind == "update":
                result = self.table.update_entity(entity, **(options or {}))
            else:
                result = self.table.upsert_entity(entity, **(options or {}))
        except AzureError as exc:
            translated = self._write_failure(exc)
            if translated is exc:
                raise
            raise translated from None
        etag: str | None = result.get("etag")
        return etag

    def _write_failure(self, exc: Exception) -> Exception:
        """The engine's error for a failed write, a transaction or one entity alike: the table
        gone; a lost race (409, 412: a row changed; 404: a row this write changes is gone) as
        ConcurrentChange, which the optimistic helper retries; else as ``_unavailable``."""
        from azure.core.exceptions import (
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )
        from azure.data.tables import TableTransactionError

        if self._is_table_missing(exc):
            return self._table_lost()
        status = getattr(exc, "status_code", None)
        in_batch = isinstance(exc, TableTransactionError)
        if isinstance(exc, (ResourceModifiedError, ResourceExistsError)) or (
            in_batch and status in (409, 412)
        ):
            return ConcurrentChange("a row changed concurrently: " + _first_line(exc))
        if isinstance(exc, ResourceNotFoundError) or (in_batch and status == 404):
            return ConcurrentChange("a row changed by this transaction no longer exists")
        return self._unavailable(exc)

    def delete_rows(self, partition: str, rows: Sequence[tuple[str, str | None]]) -> None:
        """Delete rows (RowKey, ETag or None), in transactions of 100. A row already gone is
        done; a row whose ETag no longer matches (recreated meanwhile) is left alone."""
        pending = list(rows)
        while pending:
            chunk, pending = pending[:MAX_TRANSACTION], pending[MAX_TRANSACTION:]
            try:
                self.commit([delete_op(partition, rk, etag) for rk, etag in chunk])
            except ConcurrentChange:
                # One row of the chunk is gone or changed: settle each row alone.
                for rk, etag in chunk:
                    try:
                        self.commit([delete_op(partition, rk, etag)])
                    except ConcurrentChange:
                        pass

    def commit_many(self, ops: Sequence[Op]) -> None:
        """Apply ops in chunks of 100; each chunk is atomic, the whole is not."""
        for start in range(0, len(ops), MAX_TRANSACTION):
            self.commit(ops[start : start + MAX_TRANSACTION])

    # -- locks across instances ---------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str, *, ttl: float, wait: float) -> Iterator[bool]:
        """A lease across instances: the row ``_sys/lock:<name>``, created (or taken over once
        expired) with an ETag condition. Yields whether it is held; waits up to ``wait``
        seconds for a live holder. A holder that dies leaves it to expire after ``ttl``."""
        row = f"lock:{name}"
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + wait
        etag: str | None = None
        while etag is None:
            until = utcnow() + dt.timedelta(seconds=ttl)
            entity = {"PartitionKey": SYS_PARTITION, "RowKey": row, "owner": owner, "until": until}
            current = self._get(SYS_PARTITION, row)
            try:
                if current is None:
                    [etag] = self.commit([create_op(entity)])
                elif current["until"] < utcnow():
                    [etag] = self.commit([update_op(entity, current.metadata.get("etag"))])
            except ConcurrentChange:
                etag = None
            if etag is None:
                if time.monotonic() >= deadline:
                    break
                time.sleep(random.uniform(0.05, 0.25))  # noqa: S311 (jitter)
        try:
            yield etag is not None
        finally:
            if etag is not None:
                self.delete_rows(SYS_PARTITION, [(row, etag)])

    # -- mounts ------------------------------------------------------------------------------

    def get_mount(self, name: str) -> Mount | None:
        entity = self._get(SYS_PARTITION, f"mount:{name}")
        return None if entity is None else _mount_from(entity)

    def list_mounts(self) -> list[Mount]:
        return [_mount_from(e) for e in self._range(SYS_PARTITION, "mount:")]

    def create_mount(self, mount: Mount) -> None:
        self.commit([create_op(_mount_entity(mount))])

    def update_mount(self, mount: Mount) -> Mount:
        [etag] = self.commit([update_op(_mount_entity(mount), mount.etag)])
        return replace(mount, etag=etag)

    def delete_mount(self, mount: Mount) -> None:
        self.delete_rows(SYS_PARTITION, [(f"mount:{mount.name}", mount.etag)])

    # -- moving a mount (shared.remount) ------------------------------------------------------

    def get_remount(self, migration_id: str) -> Remount | None:
        entity = self._get(SYS_PARTITION, f"remount:{migration_id}")
        return None if entity is None else _remount_from(entity)

    def list_remounts(self) -> list[Remount]:
        return [_remount_from(e) for e in self._range(SYS_PARTITION, "remount:")]

    def put_remount(self, record: Remount, *, create: bool = False) -> Remount:
        entity = _remount_entity(record)
        [etag] = self.commit([create_op(entity) if create else update_op(entity, record.etag)])
        return replace(record, etag=etag)

    def key_with_sealed_versions(
        self, mount: str, name: str
    ) -> tuple[KeyRecord | None, list[VersionRecord]]:
        """The key row and its versions whole (sealed material too), in one range query."""
        rows = list(self._range(mount, key_rk(name)))
        if not rows or rows[0]["RowKey"] != key_rk(name):
            return None, []
        key = _key_from(rows[0], mount)
        return key, [_version_from(e) for e in rows[1:] if (e.get("key_uid") or "") == key.uid]

    def put_moved_key(self, key: KeyRecord, versions: Sequence[VersionRecord]) -> None:
        """A key copied into its new mount (``key.mount``): the versions first, then the key
        and list rows together (the key row is what makes the versions readable). Upserts: a
        copy that is repeated (a move resumed) writes the same rows again."""
        self.commit_many(
            [upsert_op(_version_entity(key.mount, key.name, v, key.uid)) for v in versions]
        )
        list_row = name_op(key)  # an upsert
        self.commit([upsert_op(_key_entity(key)), list_row])

    def put_moved_kms(self, record: KmsRecord) -> None:
        self.commit([upsert_op(_kms_entity(record))])

    def put_moved_distribution(self, dist: Distribution) -> None:
        self.commit([upsert_op(_dist_entity(dist))])

    def delete_distribution(self, dist: Distribution) -> None:
        """The row as read (its ETag): ConcurrentChange if it changed since."""
        self.commit([delete_dist_op(dist)])

    def repoint_owner(self, row: OwnerRow, mount: str) -> None:
        """An owner index row names the distribution's new mount (a moved mount)."""
        entity = self._get(REMOTE_PARTITION, _owner_rk(row.vault, row.remote_name))
        if entity is None or entity["mount"] != row.mount:
            return
        fields = {k: v for k, v in entity.items() if k != MAC_COLUMN}
        fields.update(PartitionKey=REMOTE_PARTITION, RowKey=_owner_rk(row.vault, row.remote_name))
        fields["mount"] = mount
        self.commit([update_op(fields, entity.metadata.get("etag"))])

    def _written(self, partition: str, row: str) -> dt.datetime | None:
        """When the storage last wrote a row (its Timestamp), or None if there is none."""
        entity = self._get(partition, row)
        return None if entity is None else entity.metadata.get("timestamp")

    def key_listed(self, mount: str, name: str) -> dt.datetime | None:
        """When the key's list-index row was written, or None without one."""
        return self._written(mount, name_rk(name))

    def kms_written(self, mount: str, name: str) -> dt.datetime | None:
        """When the KMS provider's row was last written, or None without one."""
        return self._written(mount, kms_rk(name))

    def holds(self, mount: str, kind: str) -> bool:
        """Whether the mount holds any keys or providers (``kind``)."""
        return self.partition_has(mount, _KIND_PREFIX[kind])

    def partition_has(self, mount: str, prefix: str) -> bool:
        rows = self._query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": mount, "lo": prefix, "hi": prefix[:-1] + ";"},
            select=["RowKey"],
            verify=False,
            page_size=1,
        )
        return next(rows, None) is not None

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
        key = _key_from(rows[0], mount)
        # Rows a deleted incarnation of the name left (a delete still finishing) are not its.
        return key, [_version_from(e) for e in rows[1:] if (e.get("key_uid") or "") == key.uid]

    def list_key_names(self, mount: str) -> list[str]:
        return [
            e["name"]
            for e in self._range(mount, "name:", select=["name", "state"])
            if e.get("state", "active") == "active"
        ]

    def list_versions(
        self, mount: str, name: str, *, min_version: int = 1, uid: str | None = None
    ) -> list[VersionRecord]:
        """Public parts only: the sealed columns are not even fetched. ``uid``: only the
        rows of that incarnation of the key (``KeyRecord.uid``)."""
        rows = self._query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": mount, "lo": version_rk(name, max(min_version, 1)), "hi": f"key:{name};"},
            select=_PUBLIC_VERSION_COLUMNS,
        )
        return [_version_from(e) for e in rows if uid is None or (e.get("key_uid") or "") == uid]

    def get_sealed_version(self, mount: str, name: str, version: int) -> VersionRecord | None:
        entity = self._get(mount, version_rk(name, version))
        return None if entity is None else _version_from(entity)

    def version_rows(self, key: KeyRecord) -> list[tuple[str, str | None]]:
        """(RowKey, ETag) of the version rows of this incarnation of a key (for deletion)."""
        return [
            (e["RowKey"], e.metadata.get("etag"))
            for e in self._range(
                key.mount, f"key:{key.name}:", select=["RowKey", "key_uid"], verify=False
            )
            if e["RowKey"] != key_rk(key.name) and (e.get("key_uid") or "") == key.uid
        ]

    # -- providers and distributions -------------------------------------------------------------

    def delete_kms(self, record: KmsRecord) -> None:
        """The KMS provider's row, if it still has the ETag it was read with."""
        self.delete_rows(record.mount, [(kms_rk(record.name), record.etag)])

    def get_kms(self, mount: str, name: str) -> KmsRecord | None:
        entity = self._get(mount, kms_rk(name))
        return None if entity is None else _kms_from(entity)

    def list_kms(self, mount: str) -> list[KmsRecord]:
        return [_kms_from(e) for e in self._range(mount, "kms:")]

    def get_distribution(self, mount: str, kms: str, key: str) -> Distribution | None:
        entity = self._get(mount, dist_rk(kms, key))
        return None if entity is None else _dist_from(entity)

    def list_distributions(
        self,
        mount: str,
        kms: str | None = None,
        *,
        on_tampered: Callable[[RowTampered], None] | None = None,
    ) -> list[Distribution]:
        prefix = f"dist:{kms}:" if kms else "dist:"
        return [_dist_from(e) for e in self._range(mount, prefix, on_tampered=on_tampered)]

    def drop_rotation_entry(self, slot: str) -> None:
        """Remove a rotation index entry; one already gone is fine."""
        self.delete_rows(ROTATION_PARTITION, [(slot, None)])

    def own_remote(
        self, vault: str, remote_name: str, mount: str, kms: str, key: str
    ) -> str | None:
        """Record which distribution uses ``remote_name`` in ``vault``; returns the row's ETag."""
        [etag] = self.commit(
            [
                upsert_op(
                    {
                        "PartitionKey": REMOTE_PARTITION,
                        "RowKey": _owner_rk(vault, remote_name),
                        "mount": mount,
                        "provider": kms,  # the KMS provider's name
                        "key": key,
                    }
                )
            ]
        )
        return etag

    def disown_remote(self, vault: str, remote_name: str, etag: str | None) -> None:
        """Remove an owner row as written (ETag), or whatever is there (None); gone is fine."""
        self.delete_rows(REMOTE_PARTITION, [(_owner_rk(vault, remote_name), etag)])

    def drop_owner_row(self, row: OwnerRow) -> None:
        self.delete_rows(REMOTE_PARTITION, [(_owner_rk(row.vault, row.remote_name), None)])

    def release_owner(self, vault: str, remote_name: str, mount: str, kms: str, key: str) -> None:
        """A removed distribution's owner row, if it still names that distribution, is written
        again (one read, then an ETag-conditioned update): it keeps the name taken while Key
        Vault finishes deleting the key, which hides it from every read meanwhile, and the
        reconciler's clean-up removes it once it is older than its grace period."""
        entity = self._get(REMOTE_PARTITION, _owner_rk(vault, remote_name))
        if entity is None or (entity["mount"], entity["provider"], entity["key"]) != (
            mount,
            kms,
            key,
        ):
            return
        fields = {
            "PartitionKey": REMOTE_PARTITION,
            "RowKey": _owner_rk(vault, remote_name),
            "mount": mount,
            "provider": kms,
            "key": key,
            "released": rfc3339(utcnow()),
        }
        try:
            self.commit([update_op(fields, entity.metadata.get("etag"))])
        except ConcurrentChange:
            pass  # rewritten by a distribution that took the name since: that one's now

    def remote_owner(self, vault: str, remote_name: str) -> tuple[str, str, str] | None:
        entity = self._get(REMOTE_PARTITION, _owner_rk(vault, remote_name))
        if entity is None:
            return None
        return entity["mount"], entity["provider"], entity["key"]

    def deleting_keys(self, mount: str) -> list[str]:
        """Names of keys marked ``deleting`` (a delete that has not finished)."""
        return [
            e["name"]
            for e in self._range(mount, "name:", select=["name", "state"])
            if e.get("state") == "deleting"
        ]

    def owner_rows(self) -> list[OwnerRow]:
        """Every owner index row."""
        rows = []
        for e in self._query("PartitionKey eq @pk", {"pk": REMOTE_PARTITION}):
            vault, _, remote_name = e["RowKey"].partition(":")
            rows.append(
                OwnerRow(
                    vault,
                    remote_name,
                    e["mount"],
                    e["provider"],
                    e["key"],
                    e.metadata.get("timestamp"),
                )
            )
        return rows

    def rotation_entries(self) -> list[tuple[str, str, str]]:
        """Every rotation index entry (slot, mount, key), due or not."""
        return [
            (e["RowKey"], e["mount"], e["key"])
            for e in self._query("PartitionKey eq @pk", {"pk": ROTATION_PARTITION})
        ]

    def due_rotations(
        self, now: dt.datetime, *, on_tampered: Callable[[RowTampered], None] | None = None
    ) -> list[tuple[str, str, str]]:
        """(slot, mount, key) of index entries due at ``now``: one range query, due ones only."""
        rows = self._query(
            "PartitionKey eq @pk and RowKey lt @hi",
            {"pk": ROTATION_PARTITION, "hi": f"{int(now.timestamp()):012d};"},
            select=["RowKey", "mount", "key"],
            on_tampered=on_tampered,
        )
        return [(e["RowKey"], e["mount"], e["key"]) for e in rows]

    # -- ACL policies --------------------------------------------------------------------------

    def get_policy(self, name: str) -> PolicyRecord | None:
        entity = self._get(POLICY_PARTITION, f"acl:{name}")
        return None if entity is None else _policy_from(entity)

    def list_policies(self) -> list[PolicyRecord]:
        return [_policy_from(e) for e in self._range(POLICY_PARTITION, "acl:")]

    def put_policy(self, record: PolicyRecord) -> None:
        """Create the policy (no ETag on the record) or replace the one read (its ETag)."""
        entity = {
            "PartitionKey": POLICY_PARTITION,
            "RowKey": f"acl:{record.name}",
            "name": record.name,
            "text": record.text,
            "version": _int64(record.version),
            "modified": record.modified,
        }
        self.commit([update_op(entity, record.etag) if record.etag else create_op(entity)])

    def delete_policy(self, record: PolicyRecord) -> None:
        self.delete_rows(POLICY_PARTITION, [(f"acl:{record.name}", record.etag)])

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
        status: dict[str, Any] = json.loads(entity["json"])
        return status

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

    def all_distributions(
        self, *, on_tampered: Callable[[RowTampered], None] | None = None
    ) -> Iterable[Distribution]:
        """Every distribution in every mount (the reconciler's work list). With
        ``on_tampered``, a row that fails its check is reported and the rest still come."""
        for mount in self.list_mounts():
            yield from self.list_distributions(mount.name, on_tampered=on_tampered)

    # -- tokens ------------------------------------------------------------------------------
    # Every row names tokens, accessors and parents by their salted ids only.

    def token_salt(self) -> tuple[bytes, dt.datetime]:
        """The token store's salt (32 random bytes) and when it was made: sealed in
        ``_sys/token-salt`` (its AEAD binds it to this table), created by the first instance
        that needs it, read once per process."""
        with self._mac_lock:
            cached = self._token_salt
        if cached is not None:
            return cached
        context = f"azure-keymgmt/v1/token-salt/{self.table_name}"
        for _ in range(3):
            entity = self._get(SYS_PARTITION, TOKEN_SALT_ROW)
            if entity is not None:
                sealed = _sealed_from(entity, "seal")
                if sealed is None:
                    raise RowTampered(f"stored row {SYS_PARTITION}/{TOKEN_SALT_ROW} is damaged")
                try:
                    salt = self._sealer.open(sealed, context)
                except SealError:
                    raise RowTampered(
                        f"stored row {SYS_PARTITION}/{TOKEN_SALT_ROW} (the token salt) does not "
                        "open with the seal key: it was replaced, or the seal key changed"
                    ) from None
                loaded = (salt, entity["created"])
                break
            salt, created = os.urandom(32), utcnow()
            row = {
                "PartitionKey": SYS_PARTITION,
                "RowKey": TOKEN_SALT_ROW,
                "created": created,
                **_sealed_fields("seal", self._sealer.seal(salt, context)),
            }
            try:
                self.commit([create_op(row)])
            except ConcurrentChange:
                continue  # another instance made it first: use theirs
            loaded = (salt, created)
            break
        else:
            raise UpstreamUnavailable("the token salt could not be read or created")
        with self._mac_lock:
            self._token_salt, self._token_salt_read = loaded, time.monotonic()
        return loaded

    def reload_token_salt(self) -> bool:
        """Read the token salt again, unless it was read within ``token_salt_recheck``
        seconds; True if it changed. Another instance that found the table lost recreated it
        with a new salt: tokens made since are salted with that one."""
        with self._mac_lock:
            cached = self._token_salt
            if cached is None or time.monotonic() - self._token_salt_read < self.token_salt_recheck:
                return False
            self._token_salt = None
        fresh = self.token_salt()
        return not hmac.compare_digest(fresh[0], cached[0])

    def audit_salt(self, device: str) -> str:
        """The audit device ``device``'s HMAC salt: a random UUID string, as Vault's, sealed
        in ``_sys/audit-salt:<device>`` (its AEAD binds it to this table and device). The
        first instance that needs it creates it; one that loses that race reads the winner's,
        so every instance hashes alike. Callers cache it."""
        row_key = AUDIT_SALT_ROW_PREFIX + device
        context = f"azure-keymgmt/v1/audit-salt/{self.table_name}/{device}"
        for _ in range(3):
            entity = self._get(SYS_PARTITION, row_key)
            if entity is not None:
                sealed = _sealed_from(entity, "seal")
                if sealed is None:
                    raise RowTampered(f"stored row {SYS_PARTITION}/{row_key} is damaged")
                try:
                    return self._sealer.open(sealed, context).decode()
                except (SealError, UnicodeDecodeError):
                    raise RowTampered(
                        f"stored row {SYS_PARTITION}/{row_key} (an audit salt) does not open "
                        "with the seal key: it was replaced, or the seal key changed"
                    ) from None
            salt = str(uuid.uuid4())
            row = {
                "PartitionKey": SYS_PARTITION,
                "RowKey": row_key,
                "created": utcnow(),
                **_sealed_fields("seal", self._sealer.seal(salt.encode(), context)),
            }
            try:
                self.commit([create_op(row)])
            except ConcurrentChange:
                continue  # another instance made it first: use theirs
            return salt
        raise UpstreamUnavailable(f"the salt of audit device {device} could not be read or created")

    def get_token(self, salted_id: str) -> TokenEntry | None:
        """One point read: the token's row, or None."""
        entity = self._get(_token_pk(salted_id), TOKEN_ROW)
        return None if entity is None else _token_from(entity, salted_id)

    def create_token(self, token: TokenEntry) -> TokenEntry:
        """The token's row (ConcurrentChange if one exists under that id already)."""
        [etag] = self.commit([create_op(_token_entity(token))])
        return replace(token, etag=etag)

    def update_token(self, token: TokenEntry) -> TokenEntry:
        """Replace the token's row if it still has the ETag it was read with."""
        [etag] = self.commit([update_op(_token_entity(token), token.etag)])
        return replace(token, etag=etag)

    def delete_token(self, token: TokenEntry, *, conditional: bool = False) -> None:
        """The token's row (if unchanged since read, with ``conditional``); gone is fine
        unless conditional, where it is a ConcurrentChange."""
        if conditional:
            self.commit([delete_op(_token_pk(token.salted_id), TOKEN_ROW, token.etag)])
        else:
            self.delete_rows(_token_pk(token.salted_id), [(TOKEN_ROW, None)])

    def put_wrapped(self, wrapped: WrappedResponse) -> None:
        """The response a wrapping token holds, in the token's partition (written before the
        token's row; ConcurrentChange if one is there already)."""
        self.commit([create_op(_wrapped_entity(wrapped))])

    def get_wrapped(self, salted_id: str) -> WrappedResponse | None:
        entity = self._get(_token_pk(salted_id), WRAPPED_ROW)
        return None if entity is None else _wrapped_from(entity, salted_id)

    def drop_wrapped(self, salted_id: str) -> None:
        """The response a wrapping token held (gone is fine)."""
        self.delete_rows(_token_pk(salted_id), [(WRAPPED_ROW, None)])

    def add_token_child(self, parent: str, child: str) -> None:
        """Record ``child`` under ``parent`` (both salted), for revoking parent trees."""
        self.commit([upsert_op({"PartitionKey": _token_pk(parent), "RowKey": f"child:{child}"})])

    def drop_token_child(self, parent: str, child: str) -> None:
        self.delete_rows(_token_pk(parent), [(f"child:{child}", None)])

    def token_children(self, parent: str) -> list[str]:
        """The salted ids recorded as ``parent``'s children: one range query."""
        return [
            e["RowKey"].removeprefix("child:")
            for e in self._range(_token_pk(parent), "child:", select=["RowKey"])
        ]

    def put_token_accessor(self, accessor: str, token: str) -> None:
        self.commit(
            [
                upsert_op(
                    {"PartitionKey": TOKEN_ACCESSOR_PARTITION, "RowKey": accessor, "token": token}
                )
            ]
        )

    def token_by_accessor(self, accessor: str) -> str | None:
        """The salted id an accessor (salted) names, or None."""
        entity = self._get(TOKEN_ACCESSOR_PARTITION, accessor)
        return None if entity is None else str(entity["token"])

    def drop_token_accessor(self, accessor: str) -> None:
        self.delete_rows(TOKEN_ACCESSOR_PARTITION, [(accessor, None)])

    def put_token_expiry(self, entry: ExpiryEntry) -> None:
        self.commit(
            [
                upsert_op(
                    {
                        "PartitionKey": TOKEN_EXPIRY_PARTITION,
                        "RowKey": entry.slot,
                        "token": entry.token,
                        "accessor": entry.accessor,
                        "parent": entry.parent,
                    }
                )
            ]
        )

    def drop_token_expiry(self, slot: str) -> None:
        self.delete_rows(TOKEN_EXPIRY_PARTITION, [(slot, None)])

    def due_token_expiries(
        self, now: dt.datetime, *, on_tampered: Callable[[RowTampered], None] | None = None
    ) -> list[ExpiryEntry]:
        """Expiry index entries due at ``now``: one range query over the due ones only."""
        rows = self._query(
            "PartitionKey eq @pk and RowKey lt @hi",
            {"pk": TOKEN_EXPIRY_PARTITION, "hi": f"{int(now.timestamp()):012d};"},
            select=["RowKey", "token", "accessor", "parent"],
            on_tampered=on_tampered,
        )
        return [ExpiryEntry(e["RowKey"], e["token"], e["accessor"], e["parent"]) for e in rows]

    # -- auth methods --------------------------------------------------------------------------

    def get_auth_mount(self, path: str) -> AuthMount | None:
        entity = self._get(AUTH_PARTITION, f"mount:{path}")
        return None if entity is None else _auth_mount_from(entity)

    def list_auth_mounts(self) -> list[AuthMount]:
        return [_auth_mount_from(e) for e in self._range(AUTH_PARTITION, "mount:")]

    def create_auth_mount(self, mount: AuthMount) -> None:
        """ConcurrentChange if a method is enabled at that path already."""
        self.commit([create_op(_auth_mount_entity(mount))])

    def update_auth_mount(self, mount: AuthMount) -> AuthMount:
        [etag] = self.commit([update_op(_auth_mount_entity(mount), mount.etag)])
        return replace(mount, etag=etag)

    def delete_auth_mount(self, mount: AuthMount) -> None:
        self.delete_rows(AUTH_PARTITION, [(f"mount:{mount.path}", mount.etag)])

    def get_auth_item(self, mount_uuid: str, name: str = "") -> AuthItem | None:
        """A method's config (``name`` empty) or one of its roles."""
        entity = self._get(AUTH_PARTITION, _auth_item_rk(mount_uuid, name))
        return None if entity is None else _auth_item_from(entity)

    def put_auth_item(self, item: AuthItem) -> AuthItem:
        """Create the item (no ETag on the record) or replace the one read (its ETag)."""
        entity = _auth_item_entity(item)
        [etag] = self.commit([update_op(entity, item.etag) if item.etag else create_op(entity)])
        return replace(item, etag=etag)

    def delete_auth_item(self, mount_uuid: str, name: str = "") -> None:
        self.delete_rows(AUTH_PARTITION, [(_auth_item_rk(mount_uuid, name), None)])

    def auth_role_names(self, mount_uuid: str) -> list[str]:
        prefix = f"role:{mount_uuid}:"
        return [
            e["RowKey"].removeprefix(prefix)
            for e in self._range(AUTH_PARTITION, prefix, select=["RowKey"], verify=False)
        ]

    def add_auth_token(self, mount_uuid: str, salted_id: str) -> None:
        """File a token (salted id) under the method that issues it, before it exists."""
        self.commit(
            [upsert_op({"PartitionKey": AUTH_TOKENS_PREFIX + mount_uuid, "RowKey": salted_id})]
        )

    def auth_tokens(self, mount_uuid: str) -> list[str]:
        """The salted ids of the tokens filed under a method (one partition query)."""
        return [
            e["RowKey"]
            for e in self._query(
                "PartitionKey eq @pk", {"pk": AUTH_TOKENS_PREFIX + mount_uuid}, select=["RowKey"]
            )
        ]

    def drop_auth_tokens(self, mount_uuid: str, salted_ids: Sequence[str]) -> None:
        self.delete_rows(AUTH_TOKENS_PREFIX + mount_uuid, [(s, None) for s in salted_ids])
