"""Key reads keep the versions' public parts per instance (KeyEngine.versions): two engines on
one table stand for two Functions instances, and each must see what the other changed."""

import dataclasses
import datetime as dt

import pytest

from shared.errors import NotFound
from shared.keys import VersionCache
from shared.records import KeyRecord, VersionRecord
from shared.store import version_rk
from tools.localstack import engine_settings

MOUNT = "keymgmt"


@pytest.fixture
def pair(azurite, table_prefix):
    """Two instances: one app's settings (seal key included), one table."""
    from shared import service, settings

    app = settings.load(engine_settings(azurite, table_prefix))
    return service.build(app), service.build(app)


def write(engine, name, **changes):
    fields = {"key_type": "ecdsa-p256", "min_enabled_version": None}
    fields.update(changes)
    engine.keys.write(MOUNT, name, deletion_allowed=True, auto_rotate_period=None, **fields)


def versions(engine, name):
    return [v.version for v in engine.keys.read(MOUNT, name).versions]


def test_a_cached_read_is_one_point_read(pair):
    a, _ = pair
    write(a, "k")
    a.keys.rotate(MOUNT, "k")
    assert versions(a, "k") == [1, 2]
    before = a.store.request_count
    assert versions(a, "k") == [1, 2]
    assert a.store.request_count - before == 1  # the key row alone


def test_a_rotation_elsewhere_is_seen_and_only_the_new_version_is_read(pair):
    a, b = pair
    write(a, "k")
    assert versions(a, "k") == [1]
    b.keys.rotate(MOUNT, "k")
    b.keys.rotate(MOUNT, "k")
    before = a.store.entities_read
    read = a.keys.read(MOUNT, "k")
    assert [v.version for v in read.versions] == [1, 2, 3]
    assert read.key.latest_version == 3
    assert a.store.entities_read - before == 3  # the key row and versions 2 and 3
    fresh = b.keys.read(MOUNT, "k").versions
    assert [v.public_key for v in read.versions] == [v.public_key for v in fresh]


def test_min_enabled_version_set_elsewhere_is_seen(pair):
    a, b = pair
    write(a, "k")
    a.keys.rotate(MOUNT, "k")
    a.keys.rotate(MOUNT, "k")
    assert versions(a, "k") == [1, 2, 3]
    write(b, "k", key_type=None, min_enabled_version=3)
    assert versions(a, "k") == [3]
    write(b, "k", key_type=None, min_enabled_version=1)
    assert versions(a, "k") == [1, 2, 3]


def test_a_key_deleted_and_made_again_elsewhere_shows_its_own_versions(pair):
    a, b = pair
    write(a, "k")
    a.keys.rotate(MOUNT, "k")
    old = a.keys.read(MOUNT, "k")
    b.keys.delete(MOUNT, "k")
    with pytest.raises(NotFound):
        a.keys.read(MOUNT, "k")
    write(b, "k")
    new = a.keys.read(MOUNT, "k")
    assert [v.version for v in new.versions] == [1]
    assert new.versions[0].public_key != old.versions[0].public_key
    # Deleted and made again between two reads, with no read in between to notice.
    b.keys.delete(MOUNT, "k")
    write(b, "k")
    b.keys.rotate(MOUNT, "k")
    again = a.keys.read(MOUNT, "k")
    assert [v.public_key for v in again.versions] == [
        v.public_key for v in b.keys.read(MOUNT, "k").versions
    ]
    assert again.versions[0].public_key != new.versions[0].public_key


def test_a_cached_instance_serves_what_it_verified_not_a_changed_row(pair):
    """A row changed in storage after this instance read it: the instance answers with the
    public key it verified (never the changed one); an instance reading it now refuses."""
    from azure.data.tables import UpdateMode

    from shared.errors import RowTampered

    a, b = pair
    write(a, "k")
    verified = a.keys.read(MOUNT, "k").versions[0].public_key
    row = a.store.table.get_entity(MOUNT, version_rk("k", 1))
    row["public_key"] = row["public_key"].replace("A", "B", 1)
    a.store.table.upsert_entity(row, mode=UpdateMode.REPLACE)
    assert a.keys.read(MOUNT, "k").versions[0].public_key == verified
    with pytest.raises(RowTampered):
        b.keys.read(MOUNT, "k")


def test_the_cache_never_holds_sealed_material(pair):
    a, _ = pair
    write(a, "k")
    a.keys.read(MOUNT, "k")
    entry = a.keys.versions.get(MOUNT, "k")
    assert entry is not None
    assert all(v.sealed is None for v in entry.versions)


# -- the cache itself ------------------------------------------------------------------------

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def key(name: str, uid: str = "u") -> KeyRecord:
    return KeyRecord(
        mount=MOUNT,
        name=name,
        key_type="ecdsa-p256",
        latest_version=1,
        min_enabled_version=1,
        deletion_allowed=False,
        created=NOW,
        uid=uid,
    )


def record(version: int) -> VersionRecord:
    return VersionRecord(version, NOW, f"pem{version}")


def test_cache_evicts_the_least_recently_read_key_beyond_its_bound():
    cache = VersionCache(max_versions=5)
    cache.put(key("a"), [record(i) for i in (1, 2)])
    cache.put(key("b"), [record(i) for i in (1, 2)])
    assert cache.get(MOUNT, "a") is not None  # a is now the most recently read
    cache.put(key("c"), [record(i) for i in (1, 2)])
    assert cache.get(MOUNT, "b") is None
    assert cache.get(MOUNT, "a") is not None and cache.get(MOUNT, "c") is not None
    assert len(cache) == 4
    cache.put(key("huge"), [record(i) for i in range(1, 7)])  # larger than the bound: not kept
    assert cache.get(MOUNT, "huge") is None and len(cache) == 4


def test_cache_keeps_versions_ascending_and_replaces_an_entry():
    cache = VersionCache()
    sealed = dataclasses.replace(record(2), sealed=object())  # type: ignore[arg-type]
    kept = cache.put(key("a"), [sealed, record(1)])
    assert [v.version for v in kept] == [1, 2] and all(v.sealed is None for v in kept)
    entry = cache.get(MOUNT, "a")
    assert entry is not None and entry.newest == 2 and entry.uid == "u"
    cache.put(key("a", uid="v"), [record(1)])
    entry = cache.get(MOUNT, "a")
    assert entry is not None and entry.uid == "v" and entry.newest == 1 and len(cache) == 1
    cache.drop(MOUNT, "a")
    assert cache.get(MOUNT, "a") is None and len(cache) == 0


def test_a_create_through_the_api_reads_the_key_row_once(pair):
    """The existence check's read is the write's first attempt's read: a create is the mount
    row (writes look at it afresh), the key row, one transaction, and the mount row again
    (a disable racing the create, Mounts.keeps)."""
    from shared.api import handle
    from shared.api.routes import ALL
    from shared.vaultapi import ApiRequest

    a, _ = pair
    spec = next(s for s in ALL if s.route == "{mount}/key/{name}")

    def post(name, body):
        request = ApiRequest(
            method="POST",
            query={},
            headers={"x-vault-token": "root", "content-type": "application/json"},
            body=body,
            remote_address="127.0.0.1",
            path=f"{MOUNT}/key/{name}",
        )
        return handle(spec, request, {"mount": MOUNT, "name": name}, lambda: a)

    assert post("warm", b'{"type":"ecdsa-p256"}').status == 204  # the mount, the MAC key
    before = a.store.request_count
    assert post("k", b'{"type":"ecdsa-p256"}').status == 204
    assert a.store.request_count - before == 4
    before = a.store.request_count
    assert post("k", b'{"deletion_allowed":true}').status == 204  # an update: one read too
    assert a.store.request_count - before == 3
    assert a.keys.get(MOUNT, "k").deletion_allowed is True
