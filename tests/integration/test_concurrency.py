"""The audit's races, on the engine over Azurite: each answer is what a request made alone
would get, nothing half-written is left, and no store exception escapes as a 500."""

from __future__ import annotations

import datetime as dt
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.api.keys import render_key
from shared.errors import EngineError, InvalidRequest, NotFound
from shared.store import ROTATION_PARTITION
from tests.fixtures.funchost import build_service

MOUNT = "keymgmt"


@pytest.fixture
def svc(azurite, table_prefix):
    return build_service(azurite, table_prefix)


def write(svc, name, key_type=None, **options):
    return svc.keys.write(
        MOUNT,
        name,
        key_type=key_type,
        min_enabled_version=options.get("min_enabled_version"),
        deletion_allowed=options.get("deletion_allowed"),
        auto_rotate_period=options.get("auto_rotate_period"),
    )


def outcome(call):
    """What a request would answer: "ok", or the engine error's status."""
    try:
        call()
    except EngineError as exc:
        return exc.status
    return "ok"


def rows_of(svc, name):
    """Every row of the key in every partition: key, versions, list index, rotation index."""
    table = svc.store.table
    found = [
        e["RowKey"]
        for e in table.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": MOUNT, "lo": f"key:{name}:", "hi": f"key:{name};"},
        )
    ]
    found += [
        e["RowKey"]
        for e in table.query_entities(f"PartitionKey eq '{MOUNT}' and RowKey eq 'name:{name}'")
    ]
    found += [
        e["RowKey"]
        for e in table.query_entities(f"PartitionKey eq '{ROTATION_PARTITION}'")
        if e["RowKey"].endswith(f":{MOUNT}:{name}")
    ]
    return found


def test_concurrent_deletes_all_succeed_and_leave_nothing(svc):
    name = f"d{uuid.uuid4().hex[:8]}"
    write(svc, name, "ecdsa-p256", deletion_allowed=True)
    for _ in range(5):
        svc.keys.rotate(MOUNT, name)
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda _: outcome(lambda: svc.keys.delete(MOUNT, name)), range(24)))
    assert results == ["ok"] * 24
    assert rows_of(svc, name) == []


def test_delete_racing_create_of_one_name(svc):
    name = f"r{uuid.uuid4().hex[:8]}"
    write(svc, name, "ecdsa-p256", deletion_allowed=True)

    def create():
        return outcome(lambda: write(svc, name, "ecdsa-p256", deletion_allowed=True))

    def delete():
        return outcome(lambda: svc.keys.delete(MOUNT, name))

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(create if i % 2 else delete) for i in range(16)]
        results = [f.result() for f in futures]
    assert set(results) == {"ok"}, results  # every create and every delete succeeds
    try:
        key = render_key(svc.keys.read(MOUNT, name))
    except NotFound:
        assert rows_of(svc, name) == []
    else:
        # A key that exists is whole: its versions are 1..latest, and its list row is there.
        assert list(key["versions"]) == [str(v) for v in range(1, key["latest_version"] + 1)]
        assert name in svc.keys.list(MOUNT)


def test_the_loser_of_a_create_race_gets_the_answer_a_later_request_would(svc):
    name = f"c{uuid.uuid4().hex[:8]}"

    def create(key_type):
        return key_type, outcome(lambda: write(svc, name, key_type))

    types = ["rsa-2048"] * 8 + ["aes256-gcm96"] * 8
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(create, types))
    final = svc.keys.read(MOUNT, name).key.key_type
    for key_type, result in results:
        assert result == ("ok" if key_type == final else 400), (key_type, result, final)
    assert svc.keys.read(MOUNT, name).key.latest_version == 1


def test_a_scheduled_key_whose_index_row_is_gone_can_still_be_deleted(svc):
    name = f"s{uuid.uuid4().hex[:8]}"
    write(svc, name, "ecdsa-p256", deletion_allowed=True, auto_rotate_period=86400)
    key = svc.store.get_key(MOUNT, name)
    svc.store.table.delete_entity(ROTATION_PARTITION, key.rotation_slot)  # as the sweep does
    svc.keys.delete(MOUNT, name)
    assert rows_of(svc, name) == []
    with pytest.raises(NotFound):
        svc.keys.read(MOUNT, name)


def test_concurrent_rotations_and_updates_keep_versions_consecutive(svc):
    name = f"v{uuid.uuid4().hex[:8]}"
    write(svc, name, "ecdsa-p256")

    def work(i):
        if i % 3 == 0:
            return outcome(lambda: write(svc, name, deletion_allowed=bool(i % 2)))
        return outcome(lambda: svc.keys.rotate(MOUNT, name))

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(work, range(24)))
    assert set(results) == {"ok"}
    key = render_key(svc.keys.read(MOUNT, name))
    assert key["latest_version"] == 1 + sum(1 for i in range(24) if i % 3)
    assert list(key["versions"]) == [str(v) for v in range(1, key["latest_version"] + 1)]


def test_a_provider_created_by_many_at_once_is_created_once_and_updated(svc):
    name = f"p{uuid.uuid4().hex[:8]}"

    def create(i):
        return outcome(
            lambda: svc.kms.write(
                MOUNT,
                name,
                provider="azurekeyvault",
                key_collection="keyvault-name",
                credentials={"client_id": f"c{i}"},
            )
        )

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(create, range(8))) == ["ok"] * 8
    assert svc.store.get_kms(MOUNT, name).generation == 8  # one create, seven updates


def test_a_duration_too_long_for_a_date_is_refused_by_the_engine_too(svc):
    with pytest.raises(InvalidRequest, match="at most 36500d"):
        write(svc, "x", "ecdsa-p256", auto_rotate_period=2**53)
    assert svc.store.get_key(MOUNT, "x") is None
    assert svc.store.due_rotations(dt.datetime.max.replace(tzinfo=dt.UTC)) == []
