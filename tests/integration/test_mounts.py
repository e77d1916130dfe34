"""shared/mounts.py's Mounts on Azurite: enable, list and disable, the refusals and their
messages, the ``disabling`` mark (``keeps``) and the clean-up of a disable that died
(``settle``). See docs/storage.md, "A mount disabled during a create"."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest

from shared import mounts as mounts_module
from shared.api.sys import render_mounts
from shared.errors import InvalidRequest, NotFound
from shared.mounts import Mounts
from shared.records import Distribution, KmsRecord, utcnow
from shared.store import dist_op, key_op, kms_op
from tests.fixtures.funchost import build_service
from tests.unit.test_api import MOUNT_ENTRY_FIELDS

ENTRY_FIELDS = set(MOUNT_ENTRY_FIELDS)  # Vault's, listed once in the unit tests


def mounts_of(svc: Any) -> dict[str, Any]:
    """``sys/mounts`` as the API renders the engine's records."""
    return render_mounts(svc.mounts.list())


@pytest.fixture
def svc(azurite, table_prefix):
    return build_service(azurite, table_prefix)


def refusal(call, *args) -> str:
    with pytest.raises(InvalidRequest) as caught:
        call(*args)
    [message] = caught.value.messages
    return message


def add_key(svc, mount: str, name: str = "k") -> None:
    svc.keys.write(
        mount, name, key_type="ecdsa-p256", min_enabled_version=None, deletion_allowed=True,
        auto_rotate_period=None,
    )  # fmt: skip


def add_provider(svc, mount: str, name: str = "p") -> None:
    svc.kms.write(mount, name, provider="azurekeyvault", key_collection="kv-one", credentials=None)


def raw_provider(svc, mount: str, name: str) -> KmsRecord:
    """A provider row written straight to the table: what a create that read the mount as
    active a moment before the ``disabling`` mark commits after it."""
    record = KmsRecord(mount, name, "azurekeyvault", "kv-one", None, 1, utcnow())
    [etag] = svc.store.commit([kms_op(record, create=True)])
    return replace(record, etag=etag)


def mark_disabling(svc, name: str, ago: dt.timedelta = dt.timedelta(0)) -> None:
    """What a disable writes first, as if the instance doing it died right after."""
    mount = svc.store.get_mount(name)
    svc.store.update_mount(replace(mount, state="disabling", changed=utcnow() - ago))


# -- enable and list ----------------------------------------------------------------------------


def test_the_default_mount_is_there_from_the_start(svc):
    assert list(mounts_of(svc)) == ["keymgmt/"]


def test_enable_then_list_shows_the_mount_as_vault_does(svc):
    svc.mounts.enable("team-a", "keymgmt", "Team A's keys")
    listed = mounts_of(svc)
    assert set(listed) == {"keymgmt/", "team-a/"}
    entry = listed["team-a/"]
    assert set(entry) == ENTRY_FIELDS
    stored = svc.store.get_mount("team-a")
    assert stored.state == "active" and stored.type == "keymgmt"
    assert entry["type"] == "keymgmt"
    assert entry["description"] == "Team A's keys"
    assert entry["uuid"] == stored.uuid
    assert entry["accessor"] == f"keymgmt_{stored.uuid[:8]}"
    assert entry["config"] == {"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": False}
    assert listed["keymgmt/"]["uuid"] != entry["uuid"]  # each mount has its own
    assert svc.mounts.exists("team-a") and svc.mounts.exists("team-a", for_write=True)


def test_enable_takes_the_path_with_slashes_and_lists_it_once(svc):
    svc.mounts.enable("/slashed/", "keymgmt")
    assert "slashed/" in mounts_of(svc)
    assert svc.store.get_mount("slashed") is not None


def test_a_new_mount_accepts_keys_and_providers(svc):
    svc.mounts.enable("fresh", "keymgmt")
    add_key(svc, "fresh")
    add_provider(svc, "fresh")
    assert svc.store.list_key_names("fresh") == ["k"]
    assert svc.kms.names("fresh") == ["p"]


@pytest.mark.parametrize("engine_type", ["kv", "transit", "KEYMGMT", "keymgmt ", ""])
def test_the_type_must_be_keymgmt(svc, engine_type):
    assert refusal(svc.mounts.enable, "other", engine_type) == (
        f"unsupported secrets engine type {engine_type!r}; this server offers only 'keymgmt'"
    )
    assert svc.store.get_mount("other") is None
    assert "other/" not in mounts_of(svc)


@pytest.mark.parametrize("path", ["sys", "SYS", "/auth/", "Admin", "runtime", "identity"])
def test_reserved_paths_are_refused(svc, path):
    shown = path.strip("/")
    assert refusal(svc.mounts.enable, path, "keymgmt") == (
        f"mount path {shown!r} is reserved; choose another path"
    )
    assert svc.store.get_mount(shown) is None


def test_the_path_is_checked_before_the_type(svc):
    assert "reserved" in refusal(svc.mounts.enable, "sys", "kv")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "mount path is required"),
        ("/", "mount path is required"),
        ("a/b", "invalid mount path 'a/b': use one path segment of letters, digits, '-' and '_'"),
        ("a.b", "invalid mount path 'a.b': use one path segment of letters, digits, '-' and '_'"),
        ("a:b", "invalid mount path 'a:b': use one path segment of letters, digits, '-' and '_'"),
        ("m" * 65, "mount path is too long: 65 characters, at most 64"),
    ],
)
def test_invalid_paths_are_refused_and_nothing_is_written(svc, path, message):
    before = svc.store.list_mounts()
    assert refusal(svc.mounts.enable, path, "keymgmt") == message
    assert svc.store.list_mounts() == before


def test_the_longest_path_is_accepted(svc):
    svc.mounts.enable("m" * 64, "keymgmt")
    assert f"{'m' * 64}/" in mounts_of(svc)


def test_enabling_twice_is_refused_and_keeps_the_first(svc):
    svc.mounts.enable("twice", "keymgmt", "first")
    first = svc.store.get_mount("twice")
    assert refusal(svc.mounts.enable, "twice", "keymgmt", "second") == (
        "path is already in use at twice/"
    )
    assert refusal(svc.mounts.enable, "/twice/", "keymgmt") == "path is already in use at twice/"
    assert svc.store.get_mount("twice") == first
    assert mounts_of(svc)["twice/"]["description"] == "first"


def test_enabling_the_default_mount_again_is_refused(svc):
    assert refusal(svc.mounts.enable, "keymgmt", "keymgmt") == "path is already in use at keymgmt/"


def test_mount_names_are_case_sensitive(svc):
    svc.mounts.enable("Case", "keymgmt")
    svc.mounts.enable("case", "keymgmt")
    assert {"Case/", "case/"} <= set(mounts_of(svc))


def test_a_path_being_disabled_is_still_in_use(svc):
    svc.mounts.enable("busy", "keymgmt")
    mark_disabling(svc, "busy")
    assert refusal(svc.mounts.enable, "busy", "keymgmt") == "path is already in use at busy/"


def test_ensure_creates_a_missing_mount_and_leaves_an_existing_one(svc):
    svc.mounts.ensure("ensured")
    created = svc.store.get_mount("ensured")
    assert created is not None and created.description == ""
    svc.mounts.ensure("/ensured/")  # no error, no change
    assert svc.store.get_mount("ensured") == created
    with pytest.raises(InvalidRequest, match="reserved"):
        svc.mounts.ensure("sys")


# -- disable ------------------------------------------------------------------------------------


def test_disable_an_empty_mount_removes_it(svc):
    svc.mounts.enable("gone", "keymgmt")
    assert svc.mounts.exists("gone")  # now cached as known
    svc.mounts.disable("gone/")
    assert svc.store.get_mount("gone") is None
    assert "gone/" not in mounts_of(svc)
    assert not svc.mounts.exists("gone")  # its own cache forgot it
    with pytest.raises(NotFound, match='no handler for route "gone/"'):
        add_key(svc, "gone")
    svc.mounts.enable("gone", "keymgmt")  # the path is free again
    assert svc.store.get_mount("gone").state == "active"


def test_disable_a_mount_that_does_not_exist_does_nothing(svc):
    before = svc.store.list_mounts()
    svc.mounts.disable("never-enabled")
    assert svc.store.list_mounts() == before


def test_disable_checks_the_path(svc):
    assert "reserved" in refusal(svc.mounts.disable, "sys")
    assert refusal(svc.mounts.disable, "a/b").startswith("invalid mount path 'a/b'")


def test_disable_removes_the_mounts_keys_and_providers(svc):
    """As Vault drops a disabled mount's data: keys (deletion_allowed or not, their versions
    and rotation index entries) and KMS providers go with the mount."""
    svc.mounts.enable("full", "keymgmt")
    svc.keys.write(
        "full", "kept", key_type="ecdsa-p256", min_enabled_version=None, deletion_allowed=False,
        auto_rotate_period=86400,
    )  # fmt: skip
    svc.keys.rotate("full", "kept")
    add_key(svc, "full", "k2")
    add_provider(svc, "full")
    assert any(entry[1] == "full" for entry in svc.store.rotation_entries())
    svc.mounts.disable("full")
    assert svc.store.get_mount("full") is None
    for prefix in ("key:", "name:", "kms:", "dist:"):
        assert not svc.store.partition_has("full", prefix), prefix
    assert not any(entry[1] == "full" for entry in svc.store.rotation_entries())
    svc.mounts.enable("full", "keymgmt")  # enabled again: empty
    assert svc.store.list_key_names("full") == []
    assert svc.kms.names("full") == []


def raw_distribution(svc, mount: str, key: str, kms: str) -> None:
    """A distribution as the distributor commits one: its row and the key's provider list."""
    record = svc.store.get_key(mount, key)
    dist = Distribution(
        mount=mount, kms=kms, key=key, remote_name=f"{key}-1", purpose=("sign",),
        protection="hsm", distribution_time=utcnow(), versions={1: "a" * 32},
    )  # fmt: skip
    svc.store.commit([dist_op(dist, create=True), key_op(replace(record, kms=(*record.kms, kms)))])


def test_disable_is_refused_naming_each_distributed_key_and_its_providers(svc):
    svc.mounts.enable("dist", "keymgmt")
    add_key(svc, "dist", "a")
    add_key(svc, "dist", "b")
    add_key(svc, "dist", "free")
    add_provider(svc, "dist", "p1")
    add_provider(svc, "dist", "p2")
    raw_distribution(svc, "dist", "a", "p1")
    raw_distribution(svc, "dist", "a", "p2")
    raw_distribution(svc, "dist", "b", "p2")
    assert refusal(svc.mounts.disable, "dist") == (
        "cannot disable mount dist/: keys are still distributed to KMS providers: a (in p1, "
        "p2), b (in p2); remove them from the providers first (their Key Vault copies would be "
        "left behind)"
    )
    # Nothing changed: the mount is active, every key and provider is there.
    assert svc.store.get_mount("dist").state == "active"
    assert svc.store.list_key_names("dist") == ["a", "b", "free"]
    assert svc.kms.names("dist") == ["p1", "p2"]
    add_key(svc, "dist", "after")  # and writes are accepted


def test_a_key_distributed_after_the_first_look_stops_the_disable_and_the_mount_stays(
    svc, monkeypatch
):
    """The distributor committed between the disable's look and its deletes: the key's
    delete sees the provider and refuses, the mark is taken back."""
    svc.mounts.enable("racy", "keymgmt")
    add_key(svc, "racy", "k")
    add_provider(svc, "racy", "p")
    real_delete = svc.mounts.contents.delete_key
    done = []

    def delete_key(mount, name):
        if not done:
            done.append(name)
            raw_distribution(svc, mount, name, "p")
        real_delete(mount, name)

    monkeypatch.setattr(svc.mounts, "contents", replace(svc.mounts.contents, delete_key=delete_key))
    assert refusal(svc.mounts.disable, "racy") == (
        "key 'k' cannot be deleted: it is distributed to KMS providers ['p']; remove it from "
        "them first"
    )
    assert svc.store.get_mount("racy").state == "active"
    assert svc.store.get_key("racy", "k").kms == ("p",)


def test_disabling_mounts_are_refused_for_writes_but_not_for_reads(svc):
    svc.mounts.enable("closing", "keymgmt")
    add_key(svc, "closing")
    mark_disabling(svc, "closing")
    other = Mounts(svc.store)  # another instance: no cache
    assert other.exists("closing") is True
    assert other.exists("closing", for_write=True) is False
    with pytest.raises(NotFound, match='no handler for route "closing/"'):
        add_key(svc, "closing", "k2")
    assert svc.store.get_key("closing", "k2") is None
    assert svc.store.get_key("closing", "k") is not None  # reads still answer


def test_disable_finishes_a_disable_that_died_when_the_mount_is_empty(svc):
    svc.mounts.enable("half", "keymgmt")
    mark_disabling(svc, "half")
    svc.mounts.disable("half")
    assert svc.store.get_mount("half") is None


def test_disable_finishes_a_disable_that_died_half_way_through_the_keys(svc):
    svc.mounts.enable("halffull", "keymgmt")
    add_key(svc, "halffull", "left")
    add_key(svc, "halffull", "marked")
    marked = svc.store.get_key("halffull", "marked")
    svc.store.commit([key_op(replace(marked, state="deleting"))])  # died after this mark
    mark_disabling(svc, "halffull")
    svc.mounts.disable("halffull")
    assert svc.store.get_mount("halffull") is None
    assert not svc.store.partition_has("halffull", "key:")
    assert not svc.store.partition_has("halffull", "name:")


def test_a_disable_that_died_is_undone_by_a_disable_refused_for_a_distributed_key(svc):
    svc.mounts.enable("stuck", "keymgmt")
    add_key(svc, "stuck")
    add_provider(svc, "stuck")
    raw_distribution(svc, "stuck", "k", "p")
    mark_disabling(svc, "stuck")
    assert "k (in p)" in refusal(svc.mounts.disable, "stuck")
    assert svc.store.get_mount("stuck").state == "active"
    assert svc.mounts.exists("stuck", for_write=True)


def test_a_provider_written_after_the_mark_goes_with_the_mount(svc):
    """A create that read the mount as active commits after the mark (and its instance died
    before it could take itself back): the disable removes it too."""
    svc.mounts.enable("late", "keymgmt")
    mark_disabling(svc, "late")
    raw_provider(svc, "late", "p")
    svc.mounts.disable("late")
    assert svc.store.get_mount("late") is None
    assert not svc.store.partition_has("late", "kms:")


def test_rows_that_keep_coming_back_end_the_disable_with_a_refusal(svc, monkeypatch):
    monkeypatch.setattr(mounts_module, "UNDO_WAIT_SECONDS", 0.3)
    svc.mounts.enable("stubborn", "keymgmt")
    add_provider(svc, "stubborn")
    # A provider delete that never lands (as if each were undone by a writer at once).
    stuck = replace(svc.mounts.contents, delete_provider=lambda mount, name: None)
    monkeypatch.setattr(svc.mounts, "contents", stuck)
    assert refusal(svc.mounts.disable, "stubborn") == (
        "cannot disable mount stubborn/: keys or KMS providers keep being written to it; try again"
    )
    assert svc.store.get_mount("stubborn").state == "active"


# -- keeps --------------------------------------------------------------------------------------


def test_keeps_everything_while_the_mount_is_active_without_asking_when(svc):
    svc.mounts.enable("active", "keymgmt")

    def never():
        pytest.fail("an active mount keeps the row whenever it was written")

    assert svc.mounts.keeps("active", never) is True


def test_keeps_nothing_in_a_mount_that_is_gone(svc):
    assert svc.mounts.keeps("nowhere", lambda: utcnow()) is False
    assert svc.mounts.keeps("nowhere", lambda: None) is False


def test_keeps_in_a_disabling_mount_only_rows_written_before_the_mark(svc):
    svc.mounts.enable("marked", "keymgmt")
    add_provider(svc, "marked", "before")
    mark_disabling(svc, "marked")
    raw_provider(svc, "marked", "after")
    store = svc.store
    written_before = store.kms_written("marked", "before")
    written_after = store.kms_written("marked", "after")
    mark = store.get_mount("marked").written
    assert written_before < mark <= written_after  # the storage's own clock orders them
    assert svc.mounts.keeps("marked", lambda: store.kms_written("marked", "before")) is True
    assert svc.mounts.keeps("marked", lambda: store.kms_written("marked", "after")) is False
    # A row already gone (taken back, or never written) does not stay either.
    assert svc.mounts.keeps("marked", lambda: store.kms_written("marked", "absent")) is False


def test_keeps_follows_the_mount_back_to_active(svc):
    svc.mounts.enable("back", "keymgmt")
    add_key(svc, "back")
    add_provider(svc, "back", "p")
    raw_distribution(svc, "back", "k", "p")
    mark_disabling(svc, "back")
    raw_provider(svc, "back", "after")
    assert not svc.mounts.keeps("back", lambda: svc.store.kms_written("back", "after"))
    svc.mounts.settle(older_than=0)  # holds a distributed key: made active again
    assert svc.mounts.keeps("back", lambda: svc.store.kms_written("back", "after"))


# -- settle -------------------------------------------------------------------------------------


def test_settle_leaves_active_mounts_alone(svc):
    svc.mounts.enable("calm", "keymgmt")
    before = svc.store.get_mount("calm")
    assert svc.mounts.settle(older_than=0) == []
    assert svc.store.get_mount("calm") == before
    assert svc.store.get_mount("keymgmt").state == "active"


def test_settle_deletes_an_empty_mount_left_disabling(svc):
    svc.mounts.enable("empty", "keymgmt")
    mark_disabling(svc, "empty", dt.timedelta(minutes=10))
    assert svc.mounts.settle() == ["mount empty/: a disable that did not finish was finished"]
    assert svc.store.get_mount("empty") is None
    assert svc.mounts.settle() == []  # nothing left to do


@pytest.mark.parametrize("holds", ["key", "provider"])
def test_settle_finishes_a_disable_that_died_with_keys_or_providers_left(svc, holds):
    svc.mounts.enable("full", "keymgmt")
    (add_key if holds == "key" else add_provider)(svc, "full")
    mark_disabling(svc, "full", dt.timedelta(minutes=10))
    assert svc.mounts.settle() == ["mount full/: a disable that did not finish was finished"]
    assert svc.store.get_mount("full") is None
    assert not svc.store.partition_has("full", "name:")
    assert not svc.store.partition_has("full", "kms:")


def test_settle_reactivates_a_mount_left_disabling_with_a_distributed_key(svc):
    svc.mounts.enable("full", "keymgmt")
    add_key(svc, "full")
    add_provider(svc, "full")
    raw_distribution(svc, "full", "k", "p")
    mark_disabling(svc, "full", dt.timedelta(minutes=10))
    assert svc.mounts.settle() == ["mount full/: a disable that did not finish was undone"]
    assert svc.store.get_mount("full").state == "active"
    assert svc.mounts.exists("full", for_write=True)
    add_key(svc, "full", "after-settle")  # writes are accepted again
    assert svc.mounts.settle() == []


def test_settle_leaves_a_disable_younger_than_older_than(svc):
    svc.mounts.enable("recent", "keymgmt")
    mark_disabling(svc, "recent", dt.timedelta(seconds=60))
    assert svc.mounts.settle() == []  # the default: 300 s
    assert svc.mounts.settle(older_than=3600) == []
    assert svc.store.get_mount("recent").state == "disabling"
    assert svc.mounts.settle(older_than=30) == [
        "mount recent/: a disable that did not finish was finished"
    ]
    assert svc.store.get_mount("recent") is None


def test_settle_handles_each_mount_on_its_own(svc):
    for name in ("s-empty", "s-key", "s-young", "s-active"):
        svc.mounts.enable(name, "keymgmt")
    add_key(svc, "s-key")
    add_provider(svc, "s-key")
    raw_distribution(svc, "s-key", "k", "p")
    mark_disabling(svc, "s-empty", dt.timedelta(hours=1))
    mark_disabling(svc, "s-key", dt.timedelta(hours=1))
    mark_disabling(svc, "s-young", dt.timedelta(seconds=1))
    assert sorted(svc.mounts.settle()) == [
        "mount s-empty/: a disable that did not finish was finished",
        "mount s-key/: a disable that did not finish was undone",
    ]
    assert svc.store.get_mount("s-empty") is None
    assert svc.store.get_mount("s-key").state == "active"
    assert svc.store.get_mount("s-young").state == "disabling"
    assert svc.store.get_mount("s-active").state == "active"


# -- the cache of known mounts ------------------------------------------------------------------


def test_reads_trust_the_cache_writes_always_look(svc):
    svc.mounts.enable("cached", "keymgmt")
    assert svc.mounts.exists("cached")
    other = Mounts(svc.store)  # another instance disables it
    other.contents = svc.mounts.contents
    other.disable("cached")
    assert svc.mounts.exists("cached") is True  # a read may trust the cache: it finds nothing
    assert svc.mounts.exists("cached", for_write=True) is False
    svc.mounts.forget()
    assert svc.mounts.exists("cached") is False


def test_exists_is_false_for_a_mount_never_enabled(svc):
    assert svc.mounts.exists("unknown") is False
    assert svc.mounts.exists("unknown", for_write=True) is False
