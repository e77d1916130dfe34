"""Leases across instances and the reconciler's clean-up of what a dead instance left."""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import replace

import pytest

from shared import cleanup, schedules
from shared.errors import NotFound
from shared.records import utcnow
from shared.store import REMOTE_PARTITION, ROTATION_PARTITION, key_op, name_op, upsert_op
from tests.fixtures.funchost import build_service

MOUNT = "keymgmt"


@pytest.fixture
def svc(azurite, table_prefix):
    return build_service(azurite, table_prefix)


def create(svc, name, period=None, **options):
    svc.keys.write(
        MOUNT,
        name,
        key_type="ecdsa-p256",
        min_enabled_version=None,
        deletion_allowed=options.get("deletion_allowed", True),
        auto_rotate_period=period,
    )


def test_a_lock_is_held_by_one_at_a_time_and_a_dead_holder_s_expires(svc):
    inside, overlaps = [], []

    def worker():
        with svc.store.lock("t", ttl=30, wait=10) as held:
            assert held
            if inside:
                overlaps.append(1)
            inside.append(1)
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    # A holder that never lets go (a dead instance): the next one waits out its ttl, no more.
    dead = svc.store.lock("d", ttl=1, wait=0)
    assert dead.__enter__() is True  # never exited
    with svc.store.lock("d", ttl=30, wait=0) as held:
        assert held is False
    with svc.store.lock("d", ttl=30, wait=5) as held:
        assert held is True  # taken over once the dead holder's ttl ran out


def test_a_delete_that_did_not_finish_is_finished_by_the_reconciler(svc):
    create(svc, "half")
    for _ in range(3):
        svc.keys.rotate(MOUNT, "half")
    key = svc.store.get_key(MOUNT, "half")
    marked = replace(key, state="deleting")
    svc.store.commit([key_op(marked), name_op(marked)])  # the instance died right after
    summary = schedules.reconcile_all(svc)
    assert any("key keymgmt/half" in line for line in summary["cleaned_up"])
    assert svc.store.get_key(MOUNT, "half") is None
    rows = list(
        svc.store.table.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": MOUNT, "lo": "key:half:", "hi": "key:half;"},
        )
    )
    assert rows == []


def test_orphan_owner_rows_and_stale_index_entries_are_removed(svc, monkeypatch):
    create(svc, "sched", 86400)
    stale = f"{int(time.time()) + 999999:012d}:{MOUNT}:sched"
    svc.store.commit(
        [
            upsert_op(
                {
                    "PartitionKey": ROTATION_PARTITION,
                    "RowKey": stale,
                    "mount": MOUNT,
                    "key": "sched",
                }
            )
        ]
    )
    svc.store.commit(
        [
            upsert_op(
                {
                    "PartitionKey": REMOTE_PARTITION,
                    "RowKey": "keyvault-name:sched-1",
                    "mount": MOUNT,
                    "provider": "gone",
                    "key": "sched",
                }
            )
        ]
    )
    # Within the grace period an owner row stays (its distribution may be being written).
    assert "keyvault-name:sched-1" in [str(r) for r in svc.store.owner_rows()]
    result = cleanup.cleanup(svc)
    assert "keyvault-name:sched-1" in [str(r) for r in svc.store.owner_rows()]
    assert any(stale in line for line in result["done"])
    monkeypatch.setattr(cleanup, "OWNER_ROW_GRACE", dt.timedelta(0))
    result = cleanup.cleanup(svc)
    assert [str(r) for r in svc.store.owner_rows()] == []
    live = svc.store.get_key(MOUNT, "sched").rotation_slot
    assert [e[0] for e in svc.store.rotation_entries()] == [live]  # the live one stays


def test_a_disable_that_died_is_settled(svc):
    svc.mounts.enable("empty", "keymgmt")
    svc.mounts.enable("full", "keymgmt")
    create_in = svc.keys.write
    create_in(
        "full", "k", key_type=None, min_enabled_version=None, deletion_allowed=None,
        auto_rotate_period=None,
    )  # fmt: skip
    for name in ("empty", "full"):
        mount = svc.store.get_mount(name)
        svc.store.update_mount(
            replace(mount, state="disabling", changed=utcnow() - dt.timedelta(hours=1))
        )
    # Meanwhile writes are refused, reads still answer.
    with pytest.raises(NotFound, match="no handler for route"):
        svc.kms.write(
            "full", "p", provider="azurekeyvault", key_collection="kv-one", credentials=None
        )
    done = svc.mounts.settle()
    assert len(done) == 2
    assert svc.store.get_mount("empty") is None
    assert svc.store.get_mount("full") is None  # finished: its key went with it
    assert svc.store.get_key("full", "k") is None


@pytest.mark.parametrize("mark", ["before the commit", "after the commit"])
def test_a_create_racing_a_disable_stays_only_if_the_disable_will_see_it(svc, monkeypatch, mark):
    """The create read the mount as active; the disable's mark lands before or after the
    create's commit. Before: the key takes itself back when it sees the mark (404). After: the
    create succeeded (204) and the disable removes the key with the mount."""
    svc.mounts.enable("m", "keymgmt")
    real_create = svc.keys._create

    def disable_mark():
        mount = svc.store.get_mount("m")
        svc.store.update_mount(replace(mount, state="disabling", changed=utcnow()))

    def racing(*args, **kwargs):
        if mark == "before the commit":
            disable_mark()
        key = real_create(*args, **kwargs)
        if mark == "after the commit":
            disable_mark()
        return key

    monkeypatch.setattr(svc.keys, "_create", racing)

    def create():
        svc.keys.write(
            "m", "k", key_type=None, min_enabled_version=None, deletion_allowed=None,
            auto_rotate_period=None,
        )  # fmt: skip

    if mark == "before the commit":
        with pytest.raises(NotFound, match='no handler for route "m/"'):
            create()
        assert svc.store.get_key("m", "k") is None
        assert not svc.store.partition_has("m", "key:")
        assert not svc.store.partition_has("m", "name:")
    else:
        create()
        assert svc.store.get_key("m", "k") is not None
        svc.mounts.disable("m")  # the disable that marked sees the key and removes it
        assert svc.store.get_key("m", "k") is None
        assert svc.store.get_mount("m") is None


def test_disable_removes_the_keys_of_the_mount(svc):
    svc.mounts.enable("busy", "keymgmt")
    svc.keys.write(
        "busy", "k", key_type=None, min_enabled_version=None, deletion_allowed=None,
        auto_rotate_period=None,
    )  # fmt: skip
    svc.mounts.disable("busy")
    assert svc.store.get_mount("busy") is None
    assert svc.store.get_key("busy", "k") is None
