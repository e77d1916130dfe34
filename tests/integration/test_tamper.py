"""Every stored row is tamper-evident: a change to any column, a column added or removed, or a
row copied under another row key is refused by the read that would use it, naming the row.

The rows are written by the engine itself (keys, versions, providers, distributions, the
rotation index, the owner index, status and drift reports), then changed in the table the way
someone with write access to the storage account could.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from azure.data.tables import EntityProperty, UpdateMode

from shared.errors import RowTampered
from shared.records import Distribution, utcnow
from shared.store import (
    DRIFT_PARTITION,
    REMOTE_PARTITION,
    ROTATION_PARTITION,
    STATUS_PARTITION,
    SYS_PARTITION,
    Store,
    dist_op,
)
from tests.fixtures.funchost import build_service

MOUNT = "keymgmt"


@pytest.fixture
def engine(azurite, table_prefix):
    svc = build_service(azurite, table_prefix)
    svc.keys.write(
        MOUNT,
        "k",
        key_type="rsa-2048",
        min_enabled_version=None,
        deletion_allowed=True,
        auto_rotate_period=7 * 86400,
    )
    svc.keys.rotate(MOUNT, "k")
    svc.kms.write(
        MOUNT,
        "p",
        provider="azurekeyvault",
        key_collection="keyvault-name",
        credentials={"client_id": "id", "client_secret": "s3cret", "tenant_id": "t"},
    )
    now = utcnow()
    svc.store.commit(
        [
            dist_op(
                Distribution(
                    mount=MOUNT,
                    kms="p",
                    key="k",
                    remote_name="k-1",
                    purpose=("sign", "verify"),
                    protection="hsm",
                    distribution_time=now,
                    versions={1: "a" * 32},
                    expiration_period=86400,
                    lease_until=now,
                    uncertain={2: now},
                ),
                create=True,
            )
        ]
    )
    record = svc.store.get_kms(MOUNT, "p")
    svc.store.own_remote(record.key_collection, "k-1", MOUNT, "p", "k")  # the owner index row
    svc.store.put_status("reconcile", {"time": "now", "errors": 0, "drift": []})
    svc.store.add_event_drift("keyvault-name:k-1:b", {"version": "b", "key": "k"})
    return svc


def fresh_read(svc: Any, mount: str, name: str) -> object:
    svc.keys.versions.clear()
    return svc.keys.read(mount, name)


# Each stored row, and the engine read that uses it.
READERS: dict[str, tuple[str, str, Callable[[Any], object]]] = {
    "mount": (SYS_PARTITION, "mount:keymgmt", lambda s: s.store.get_mount(MOUNT)),
    "key": (MOUNT, "key:k:", lambda s: s.keys.read(MOUNT, "k")),
    # As an instance that has not read the key before: one that has serves the public parts
    # it verified then, whatever the row says now (tests/integration/test_read_cache.py).
    "version": (MOUNT, "key:k:0000000002", lambda s: fresh_read(s, MOUNT, "k")),
    "sealed version": (MOUNT, "key:k:0000000001", lambda s: s.keys.unseal(MOUNT, "k", 1)),
    "list index": (MOUNT, "name:k", lambda s: s.keys.list(MOUNT)),
    "provider": (MOUNT, "kms:p", lambda s: s.kms.read(MOUNT, "p")),
    "distribution": (
        MOUNT,
        "dist:p:k",
        lambda s: s.distribution.read(MOUNT, "p", "k"),
    ),
    "owner index": (
        REMOTE_PARTITION,
        "keyvault-name:k-1",
        lambda s: s.store.remote_owner("keyvault-name", "k-1"),
    ),
    "status": (STATUS_PARTITION, "reconcile", lambda s: s.store.get_status("reconcile")),
    "drift": (DRIFT_PARTITION, "keyvault-name:k-1:b", lambda s: s.store.event_drift()),
}


# Reads that select their columns (to leave sealed blobs behind) never see an added column.
SELECTED_READS = {"key", "version", "list index"}


def rotation_reader(svc: Any) -> object:
    return svc.store.due_rotations(utcnow() + dt.timedelta(days=365))


def changed(value: Any) -> Any:
    """The same kind of value, different."""
    if isinstance(value, EntityProperty):
        return EntityProperty(value.value + 1, value.edm_type)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 1.0
    if isinstance(value, dt.datetime):
        return value + dt.timedelta(seconds=1)
    if isinstance(value, (bytes, bytearray)):
        flipped = bytearray(value)
        flipped[-1] ^= 1
        return bytes(flipped)
    assert isinstance(value, str), type(value)
    return value + "x" if value else "x"


def columns_of(svc: Any, partition: str, row: str) -> list[str]:
    entity = svc.store.table.get_entity(partition, row)
    return sorted(c for c in entity if c not in ("PartitionKey", "RowKey", "mac"))


def tampered(svc: Any, partition: str, row: str, change: Callable[[dict], None]) -> dict:
    table = svc.store.table
    original = table.get_entity(partition, row)
    entity = dict(original)
    change(entity)
    table.upsert_entity(entity, mode=UpdateMode.REPLACE)
    return dict(original)


def restore(svc: Any, original: dict) -> None:
    svc.store.table.upsert_entity(original, mode=UpdateMode.REPLACE)


def rows() -> list[tuple[str, str, str, Callable[[Any], object]]]:
    return [(kind, *spec) for kind, spec in READERS.items()]


@pytest.mark.parametrize(("kind", "partition", "row", "reader"), rows(), ids=list(READERS))
def test_every_column_of_every_row_is_checked(engine, kind, partition, row, reader):
    reader(engine)  # untouched, it reads
    columns = columns_of(engine, partition, row)
    assert columns, kind
    for column in columns:
        original = tampered(
            engine, partition, row, lambda e, c=column: e.__setitem__(c, changed(e[c]))
        )
        if column.endswith(("_kid", "_dek", "_ct")) and kind != "sealed version":
            # Sealed blobs are checked by the reads that open them (their digest is in the
            # MAC'd columns); a read that does not fetch them does not need them.
            restore(engine, original)
            continue
        with pytest.raises(RowTampered, match=f"{partition}/{row}"):
            reader(engine)
        restore(engine, original)
        reader(engine)  # restored, it reads again


@pytest.mark.parametrize(("kind", "partition", "row", "reader"), rows(), ids=list(READERS))
def test_a_column_added_or_removed_is_refused(engine, kind, partition, row, reader):
    original = tampered(engine, partition, row, lambda e: e.__setitem__("extra", "x"))
    if kind in SELECTED_READS:
        reader(engine)  # the read names its columns: one it does not know is never fetched
    else:
        with pytest.raises(RowTampered, match=f"{partition}/{row}"):
            reader(engine)
    restore(engine, original)
    removable = [c for c in columns_of(engine, partition, row) if not c.endswith("_ct")]
    original = tampered(engine, partition, row, lambda e: e.pop(removable[0]))
    with pytest.raises(RowTampered, match=f"{partition}/{row}"):
        reader(engine)
    restore(engine, original)
    reader(engine)


def test_every_column_of_a_rotation_index_entry_is_checked(engine):
    [(slot, _, _)] = rotation_reader(engine)
    for column in columns_of(engine, ROTATION_PARTITION, slot):
        original = tampered(
            engine, ROTATION_PARTITION, slot, lambda e, c=column: e.__setitem__(c, changed(e[c]))
        )
        with pytest.raises(RowTampered, match=f"{ROTATION_PARTITION}/{slot}"):
            rotation_reader(engine)
        restore(engine, original)
    assert rotation_reader(engine)


def test_a_row_copied_under_another_row_key_is_refused(engine):
    table = engine.store.table
    engine.keys.write(
        MOUNT,
        "other",
        key_type="aes256-gcm96",
        min_enabled_version=None,
        deletion_allowed=None,
        auto_rotate_period=None,
    )
    source = dict(table.get_entity(MOUNT, "key:k:"))
    table.upsert_entity(
        {**source, "RowKey": "key:other:", "name": "other"}, mode=UpdateMode.REPLACE
    )
    with pytest.raises(RowTampered, match="keymgmt/key:other:"):
        engine.keys.read(MOUNT, "other")


def test_a_changed_type_is_never_acted_on(engine):
    """The audit's case: a rsa-2048 key's type changed in the table, then rotated."""
    original = tampered(engine, MOUNT, "key:k:", lambda e: e.__setitem__("type", "rsa-4096"))
    with pytest.raises(RowTampered):
        engine.keys.rotate(MOUNT, "k")
    restore(engine, original)
    assert engine.keys.read(MOUNT, "k").key.latest_version == 2  # nothing was added


def test_a_replaced_row_integrity_key_refuses_everything(engine, azurite, table_prefix):
    table = engine.store.table
    original = dict(table.get_entity(SYS_PARTITION, "row-mac-key"))
    other = build_service(azurite, table_prefix + "b")  # another deployment's key row
    other.keys.list(MOUNT)
    foreign = dict(other.store.table.get_entity(SYS_PARTITION, "row-mac-key"))
    table.upsert_entity({**foreign, "PartitionKey": SYS_PARTITION}, mode=UpdateMode.REPLACE)
    fresh = Store(engine.settings, engine.sealer)  # a new instance reads the key afresh
    with pytest.raises(RowTampered, match="row integrity key"):
        fresh.get_key(MOUNT, "k")
    table.upsert_entity(original, mode=UpdateMode.REPLACE)
    assert Store(engine.settings, engine.sealer).get_key(MOUNT, "k").latest_version == 2


@pytest.mark.parametrize("column", ["seal_ct", "seal_dek"])
def test_a_truncated_row_integrity_key_is_refused_by_name(engine, column):
    """A sealed value cut shorter than a nonce is tampering too, not a crypto library error."""
    table = engine.store.table
    original = dict(table.get_entity(SYS_PARTITION, "row-mac-key"))
    cut = {**original, "PartitionKey": SYS_PARTITION, column: original[column][:5]}
    table.upsert_entity(cut, mode=UpdateMode.REPLACE)
    try:
        with pytest.raises(RowTampered, match="row-mac-key"):
            Store(engine.settings, engine.sealer).get_key(MOUNT, "k")
    finally:
        table.upsert_entity(original, mode=UpdateMode.REPLACE)
    assert Store(engine.settings, engine.sealer).get_key(MOUNT, "k").latest_version == 2


def test_a_deleted_row_integrity_key_refuses_every_old_row(engine):
    engine.store.table.delete_entity(SYS_PARTITION, "row-mac-key")
    fresh = Store(engine.settings, engine.sealer)  # makes a new key: old rows do not match
    with pytest.raises(RowTampered, match="keymgmt/key:k:"):
        fresh.get_key(MOUNT, "k")


def test_the_api_refuses_a_tampered_row_by_name_without_a_traceback(engine):
    from shared.api import handle
    from shared.api.keys import KEY
    from shared.vaultapi import ApiRequest

    tampered(engine, MOUNT, "key:k:0000000002", lambda e: e.__setitem__("public_key", "x"))
    response = handle(
        KEY,
        ApiRequest("GET", headers={"x-vault-token": "root"}),
        {"mount": MOUNT, "name": "k"},
        lambda: engine,
    )
    assert response.status == 500
    assert b"keymgmt/key:k:0000000002 failed its integrity check" in response.body
    assert b"Traceback" not in response.body
