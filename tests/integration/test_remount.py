"""shared/remount.py's Mover on Azurite: a mount moved with its keys (resealed for the new
path), KMS providers, distributions and index rows; Vault's refusals; a move resumed after its
instance died at each phase; an update racing the copy."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest

from shared.errors import InvalidRequest, SealError
from shared.records import Distribution, MountSettings, utcnow
from shared.remount import Mover
from shared.seal import material_context
from shared.store import dist_op, key_op
from tests.fixtures.funchost import build_service

CREDENTIALS = {"client_id": "id", "client_secret": "s3cret", "tenant_id": "t"}


@pytest.fixture
def svc(azurite, table_prefix):
    return build_service(azurite, table_prefix)


def mover(svc: Any) -> Mover:
    assert svc.mounts.mover is not None
    return svc.mounts.mover


def refusal(call, *args) -> str:
    with pytest.raises(InvalidRequest) as caught:
        call(*args)
    [message] = caught.value.messages
    return message


def fill(svc: Any, mount: str) -> dict[str, Any]:
    """A mount with settings, two keys (one rotated and scheduled), a provider with
    credentials, a distribution and its owner row; what each holds, to compare after."""
    svc.mounts.enable(
        mount, "keymgmt", "team", MountSettings(default_lease_ttl=60, options=(("o", "1"),))
    )
    svc.keys.write(
        mount, "sched", key_type="ecdsa-p256", min_enabled_version=None, deletion_allowed=False,
        auto_rotate_period=86400,
    )  # fmt: skip
    svc.keys.rotate(mount, "sched")
    svc.keys.write(
        mount, "plain", key_type="rsa-2048", min_enabled_version=None, deletion_allowed=True,
        auto_rotate_period=None,
    )  # fmt: skip
    svc.kms.write(
        mount, "p", provider="azurekeyvault", key_collection="kv-one", credentials=CREDENTIALS
    )
    key = svc.store.get_key(mount, "plain")
    dist = Distribution(
        mount=mount, kms="p", key="plain", remote_name="plain-1", purpose=("sign",),
        protection="hsm", distribution_time=utcnow(), versions={1: "a" * 32},
    )  # fmt: skip
    svc.store.commit([dist_op(dist, create=True), key_op(replace(key, kms=("p",)))])
    svc.store.own_remote("kv-one", "plain-1", mount, "p", "plain")
    return {
        "mount": svc.store.get_mount(mount),
        "material": {
            (name, v): svc.keys.unseal(mount, name, v)
            for name, v in (("sched", 1), ("sched", 2), ("plain", 1))
        },
    }


def test_a_move_takes_everything_to_the_new_path(svc):
    before = fill(svc, "old")
    record = mover(svc).start("old", "new/")
    assert (record.status, record.phase, record.source, record.target) == (
        "success", "done", "old", "new",
    )  # fmt: skip
    # The mount: same entry (uuid, settings, description) under the new name; the old is gone.
    moved = svc.store.get_mount("new")
    assert moved.state == "active" and moved.moving == ""
    assert (moved.uuid, moved.description, moved.settings) == (
        before["mount"].uuid, "team", before["mount"].settings,
    )  # fmt: skip
    assert svc.store.get_mount("old") is None
    for prefix in ("key:", "name:", "kms:", "dist:"):
        assert not svc.store.partition_has("old", prefix), prefix
    # Keys: every version opens under the new path, and only there (resealed for it).
    assert svc.store.list_key_names("new") == ["plain", "sched"]
    for (name, version), material in before["material"].items():
        assert svc.keys.unseal("new", name, version) == material
    sealed = svc.store.get_sealed_version("new", "sched", 1).sealed
    with pytest.raises(SealError):
        svc.sealer.open(sealed, material_context("old", "sched", 1))  # not the old context any more
    sched = svc.store.get_key("new", "sched")
    assert sched.latest_version == 2 and sched.deletion_allowed is False
    # The rotation index: one entry, for the new path.
    entries = [(m, k) for _, m, k in svc.store.rotation_entries()]
    assert entries.count(("new", "sched")) == 1 and ("old", "sched") not in entries
    assert sched.rotation_slot.endswith(":new:sched")
    # The provider, its credentials resealed; the distribution; the owner row.
    record_p = svc.store.get_kms("new", "p")
    assert svc.kms._open_credentials(record_p) == CREDENTIALS
    dist = svc.store.get_distribution("new", "p", "plain")
    assert (dist.remote_name, dist.versions, dist.tag_mount) == ("plain-1", {1: "a" * 32}, "old")
    assert dist.tagged_mount == "old"  # the Key Vault tags still say old: they still match
    assert svc.store.get_key("new", "plain").kms == ("p",)
    assert svc.store.remote_owner("kv-one", "plain-1") == ("new", "p", "plain")
    assert mover(svc).status(record.id).status == "success"


def test_a_second_move_keeps_the_first_name_the_tags_carry(svc):
    fill(svc, "one")
    mover(svc).start("one", "two")
    mover(svc).start("two", "three")
    assert svc.store.get_distribution("three", "p", "plain").tag_mount == "one"


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("nope", "x", 'no matching mount at "nope/"'),
        ("src", "taken", 'path already in use at "taken/"'),
        ("src", "src", 'path already in use at "src/"'),
        ("src", "sys/x", "cannot remount to destination sys/x/"),
        ("src", "auth/x", "cannot remount to destination auth/x/"),
        (None, "x", "both 'from' and 'to' path must be specified as a string"),
        ("src", "", "both 'from' and 'to' path must be specified as a string"),
        ("src ", "x", "'from' path cannot contain trailing whitespace"),
        ("src", "x ", "'to' path cannot contain trailing whitespace"),
        ("src", "a/b", "invalid mount path 'a/b'"),
    ],
)  # fmt: skip
def test_refusals_change_nothing(svc, source, target, message):
    svc.mounts.enable("src", "keymgmt")
    svc.mounts.enable("taken", "keymgmt")
    assert refusal(mover(svc).start, source, target).startswith(message)
    assert svc.store.get_mount("src").state == "active"
    assert [r for r in svc.store.list_remounts() if r.status == "in-progress"] == []


def test_a_mount_being_disabled_is_not_moved(svc):
    svc.mounts.enable("closing", "keymgmt")
    mount = svc.store.get_mount("closing")
    svc.store.update_mount(replace(mount, state="disabling", changed=utcnow()))
    assert "being disabled" in refusal(mover(svc).start, "closing", "elsewhere")
    assert svc.store.get_mount("elsewhere") is None


def test_a_mount_being_moved_refuses_writes_and_disable(svc, monkeypatch):
    fill(svc, "busy")
    seen = {}

    def finish(record):
        seen["write"] = svc.mounts.exists("busy", for_write=True)
        seen["target write"] = svc.mounts.exists("dest", for_write=True)
        seen["disable"] = refusal(svc.mounts.disable, "busy")
        raise RuntimeError("the instance died")

    monkeypatch.setattr(mover(svc), "_finish", finish)
    with pytest.raises(RuntimeError):
        mover(svc).start("busy", "dest")
    assert seen == {
        "write": False,
        "target write": False,
        "disable": "mount busy/ is being moved; try again once that is done",
    }


def _age(svc: Any, migration_id: str) -> None:
    record = svc.store.get_remount(migration_id)
    svc.store.put_remount(replace(record, started=utcnow() - dt.timedelta(hours=1)))


@pytest.mark.parametrize("dies", ["after the first key", "before cleaning"])
def test_a_move_that_died_is_resumed_by_settle(svc, monkeypatch, dies):
    before = fill(svc, "half")
    m = mover(svc)
    if dies == "after the first key":
        real = m._move_key
        calls = []

        def move_key(*args):
            if calls:
                raise RuntimeError("the instance died")
            calls.append(args)
            real(*args)

        monkeypatch.setattr(m, "_move_key", move_key)
    else:
        monkeypatch.setattr(m, "_finish", lambda record: (_ for _ in ()).throw(RuntimeError()))
    with pytest.raises(RuntimeError):
        m.start("half", "whole")
    [record] = svc.store.list_remounts()
    assert m.status(record.id).status == "in-progress"
    monkeypatch.undo()
    assert m.settle() == []  # too young: its instance may still be at it
    _age(svc, record.id)
    assert m.settle() == ["move half/ to whole/: a move that did not finish was finished"]
    assert m.status(record.id).status == "success"
    assert svc.store.get_mount("half") is None
    assert svc.store.get_mount("whole").state == "active"
    for (name, version), material in before["material"].items():
        assert svc.keys.unseal("whole", name, version) == material
    assert svc.store.remote_owner("kv-one", "plain-1") == ("whole", "p", "plain")


def test_an_update_racing_the_copy_is_copied_again(svc, monkeypatch):
    """The key changed after it was read for the copy (a rotation that had passed its mount
    check before the move began): the mark on the copied ETag fails and the key is copied
    again, with the new version."""
    fill(svc, "racy")
    store = svc.store
    real = store.put_moved_key
    rotated = []

    def put_moved_key(key, versions):
        real(key, versions)
        if key.name == "plain" and not rotated:
            rotated.append(True)
            svc.keys.rotate("racy", "plain")  # lands on the source, after the copy was written

    monkeypatch.setattr(store, "put_moved_key", put_moved_key)
    mover(svc).start("racy", "calm")
    assert store.get_key("calm", "plain").latest_version == 2
    assert svc.keys.unseal("calm", "plain", 2)


def test_status_of_an_unknown_migration_is_none(svc):
    assert mover(svc).status("0b1e4c2e-0000-4000-8000-000000000000") is None
    assert mover(svc).status("not-a-uuid") is None
