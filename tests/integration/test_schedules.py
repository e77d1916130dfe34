"""The rotation sweep and the reconciler, in process, on Azurite and the Key Vault emulator."""

import datetime as dt
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared import schedules
from shared.store import key_op, upsert_op
from tests.fixtures.funchost import build_service


def build(azurite, prefix, **extra):
    return build_service(azurite, prefix, KEYMGMT_ALLOW_SHORT_ROTATION="true", **extra)


def create(svc, name, period, key_type="aes256-gcm96"):
    svc.keys.write(
        "keymgmt",
        name,
        key_type=key_type,
        min_enabled_version=None,
        deletion_allowed=None,
        auto_rotate_period=period,
    )


def sleep_until(moment):
    delay = (moment - dt.datetime.now(dt.UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay)


@pytest.fixture
def svc(azurite, table_prefix):
    return build(azurite, table_prefix)


def due_time(svc, name):
    return svc.store.get_key("keymgmt", name).next_rotation_time


def test_a_due_key_rotates_once_and_is_rescheduled(svc):
    create(svc, "a", 1)
    create(svc, "b", 86400)
    sleep_until(due_time(svc, "a") + dt.timedelta(seconds=1))
    summary = schedules.rotation_sweep(svc)
    assert (summary["due"], summary["rotated"], summary["failed"]) == (1, 1, 0)
    a = svc.store.get_key("keymgmt", "a")
    assert a.latest_version == 2 and a.next_rotation_time > dt.datetime.now(dt.UTC) - dt.timedelta(
        seconds=2
    )
    assert svc.store.get_key("keymgmt", "b").latest_version == 1
    assert svc.store.get_status("rotation")["rotated"] == 1


def test_two_sweeps_at_once_rotate_each_due_key_once(svc):
    names = [f"k{i}" for i in range(6)]
    for name in names:
        create(svc, name, 3600)
    # Make them due in the past by rescheduling through the engine's own index protocol.
    for name in names:
        key = svc.store.get_key("keymgmt", name)
        base = key.created - dt.timedelta(hours=2)
        updated, ops = svc.keys._reschedule(key, 3600, base)
        svc.keys._write_index(ops)
        svc.store.commit([key_op(updated)])
        svc.keys._drop_index(key, updated)
    barrier = threading.Barrier(2)

    def sweep():
        barrier.wait()
        return schedules.rotation_sweep(svc, past_due=True)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: sweep(), range(2)))
    # One run at a time: an overlapping run does nothing and says so (never a false failure).
    assert sum(r.get("rotated", 0) for r in results) == len(names)
    assert all(r.get("failed", 0) == 0 for r in results)
    assert all("rotated" in r or "another rotation sweep" in r["skipped_run"] for r in results)
    assert all(svc.store.get_key("keymgmt", n).latest_version == 2 for n in names)
    assert svc.store.get_status("rotation")["rotated"] == len(names)  # the run that ran
    # A late third run finds nothing due: none rotated twice for one due time.
    assert schedules.rotation_sweep(svc, past_due=True)["rotated"] == 0


def test_a_rotation_by_hand_at_the_same_moment_wins_without_a_double(svc):
    create(svc, "h", 1)
    sleep_until(due_time(svc, "h") + dt.timedelta(seconds=1))
    # The sweep has read the due entry when the rotation by hand lands...
    read_at = dt.datetime.now(dt.UTC)
    [(slot, _, _)] = svc.store.due_rotations(read_at)
    svc.keys.rotate("keymgmt", "h")  # by hand: moves the schedule forward
    # ...so its guarded rotation finds the key no longer at that slot,
    assert svc.keys.rotate("keymgmt", "h", expected_slot=slot) == (0, [])
    # and a sweep at that same moment finds nothing due (pinned: with a 1 s period the key is
    # due again a second later, which a slow machine reaches before the sweep runs).
    assert schedules.rotation_sweep(svc, now=read_at)["rotated"] == 0
    assert svc.store.get_key("keymgmt", "h").latest_version == 2


def test_a_failing_key_does_not_stop_the_sweep_and_is_retried(svc, monkeypatch):
    for name in ("f1", "f2", "f3"):
        create(svc, name, 1)
    sleep_until(max(due_time(svc, n) for n in ("f1", "f2", "f3")) + dt.timedelta(seconds=1))
    real_rotate = svc.keys.rotate

    def flaky(mount, name, **kwargs):
        if name == "f2":
            raise RuntimeError("Table Storage hiccup")
        return real_rotate(mount, name, **kwargs)

    monkeypatch.setattr(svc.keys, "rotate", flaky)
    # Both runs at one moment: with a 1 s period, f1 and f3 are due again a second later.
    moment = dt.datetime.now(dt.UTC)
    summary = schedules.rotation_sweep(svc, now=moment)
    assert (summary["rotated"], summary["failed"]) == (2, 1)
    monkeypatch.setattr(svc.keys, "rotate", real_rotate)
    summary = schedules.rotation_sweep(svc, now=moment)
    assert summary["rotated"] == 1
    assert [svc.store.get_key("keymgmt", n).latest_version for n in ("f1", "f2", "f3")] == [2, 2, 2]


def test_stale_index_entries_are_cleaned_up(svc):
    create(svc, "s", 1)
    svc.keys.write(
        "keymgmt",
        "s",
        key_type=None,
        min_enabled_version=None,
        deletion_allowed=True,
        auto_rotate_period=None,
    )
    slot = svc.store.get_key("keymgmt", "s").rotation_slot
    svc.store.commit(
        [
            upsert_op(
                {
                    "PartitionKey": "_rotation",
                    "RowKey": "000000000001:keymgmt:ghost",
                    "mount": "keymgmt",
                    "key": "ghost",
                }
            )
        ]
    )
    svc.keys.delete("keymgmt", "s")
    summary = schedules.rotation_sweep(svc)
    assert summary["rotated"] == 0 and summary["skipped"] >= 1
    assert svc.store.due_rotations(dt.datetime.now(dt.UTC) + dt.timedelta(days=1)) == []
    assert slot


@pytest.mark.slow
def test_sweep_cost_grows_with_due_keys_not_with_keys_held(svc):
    """2,000 keys with a schedule, 10 of them due: the sweep reads only the due entries."""

    def make(i):
        create(svc, f"bulk{i:04d}", 1 if i % 200 == 0 else 30 * 86400)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(make, range(2000)))
    due = [f"bulk{i:04d}" for i in range(0, 2000, 200)]
    assert len(due) == 10
    sleep_until(max(due_time(svc, n) for n in due) + dt.timedelta(seconds=1))

    store = svc.store
    before_requests, before_entities = store.request_count, store.entities_read
    index = store.due_rotations(dt.datetime.now(dt.UTC))
    assert len(index) == 10
    assert store.entities_read - before_entities == 10  # the index query itself
    summary = schedules.rotation_sweep(svc)
    assert summary["rotated"] == 10
    # The whole sweep (index, key rows, rotations, status) stays proportional to the 10 due
    # keys: a handful of reads each, far from the 2,000 held.
    sweep_entities = store.entities_read - before_entities - 10
    sweep_requests = store.request_count - before_requests - 1
    assert sweep_entities <= 10 * 5, sweep_entities
    assert sweep_requests <= 10 * 8, sweep_requests


def test_reconcile_with_nothing_distributed(svc):
    summary = schedules.reconcile_all(svc)
    assert summary["distributions"] == 0 and summary["drift"] == []
    assert svc.store.get_status("reconcile")["distributions"] == 0


def test_a_huge_status_is_cut_to_fit_one_table_string(svc):
    drift = [{"key": f"k{i}", "drift": "x" * 200} for i in range(500)]
    svc.store.put_status("reconcile", {"distributions": 500, "drift": drift})
    saved = svc.store.get_status("reconcile")
    assert saved["distributions"] == 500 and saved["details_truncated"] is True
    assert 0 < len(saved["drift"]) <= 50
