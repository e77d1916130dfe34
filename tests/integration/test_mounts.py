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
from shared.records import KmsRecord, utcnow
from shared.store import kms_op
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


def test_disabling_a_mount_with_a_key_is_refused_naming_keys(svc):
    svc.mounts.enable("withkey", "keymgmt")
    add_key(svc, "withkey")
    assert refusal(svc.mounts.disable, "withkey") == (
        "cannot disable mount withkey/: it still holds keys; delete them first"
    )
    after = svc.store.get_mount("withkey")
    assert after.state == "active"  # the mark was taken back
    add_key(svc, "withkey", "k2")  # and writes are accepted again
    assert svc.store.get_key("withkey", "k") is not None


def test_disabling_a_mount_with_a_provider_is_refused_naming_kms_providers(svc):
    svc.mounts.enable("withkms", "keymgmt")
    add_provider(svc, "withkms")
    assert refusal(svc.mounts.disable, "withkms") == (
        "cannot disable mount withkms/: it still holds KMS providers; delete them first"
    )
    assert svc.store.get_mount("withkms").state == "active"
    assert svc.kms.names("withkms") == ["p"]


def test_a_mount_holding_both_names_its_keys(svc):
    svc.mounts.enable("both", "keymgmt")
    add_provider(svc, "both")
    add_key(svc, "both")
    assert "it still holds keys;" in refusal(svc.mounts.disable, "both")


def test_once_emptied_the_mount_can_be_disabled(svc):
    svc.mounts.enable("emptied", "keymgmt")
    add_key(svc, "emptied")
    add_provider(svc, "emptied")
    with pytest.raises(InvalidRequest):
        svc.mounts.disable("emptied")
    svc.keys.delete("emptied", "k")
    assert "KMS providers" in refusal(svc.mounts.disable, "emptied")
    svc.kms.delete("emptied", "p")
    svc.mounts.disable("emptied")
    assert svc.store.get_mount("emptied") is None


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


def test_disable_undoes_a_disable_that_died_when_the_mount_holds_keys(svc):
    svc.mounts.enable("halffull", "keymgmt")
    add_key(svc, "halffull")
    mark_disabling(svc, "halffull")
    assert "still holds keys" in refusal(svc.mounts.disable, "halffull")
    assert svc.store.get_mount("halffull").state == "active"


def test_a_kms_written_after_the_mark_and_left_there_is_waited_for_then_refused(svc, monkeypatch):
    """A create that read the mount as active commits after the mark: the disable waits for
    it to take itself back. One that never does (its instance died) keeps the mount."""
    monkeypatch.setattr(mounts_module, "UNDO_WAIT_SECONDS", 0.3)
    svc.mounts.enable("late", "keymgmt")
    mark_disabling(svc, "late")
    raw_provider(svc, "late", "p")
    assert refusal(svc.mounts.disable, "late") == (
        "cannot disable mount late/: it still holds KMS providers; delete them first"
    )
    assert svc.store.get_mount("late").state == "active"


def test_a_late_provider_that_takes_itself_back_lets_the_disable_win(svc, monkeypatch):
    svc.mounts.enable("undo", "keymgmt")
    mark_disabling(svc, "undo")
    late = raw_provider(svc, "undo", "p")
    real_first_written = svc.store.first_written
    seen = []

    def first_written(mount, kind, *args, **kwargs):
        stamps = real_first_written(mount, kind, *args, **kwargs)
        if kind == "providers" and stamps and not seen:
            seen.append(stamps)
            # The racing create sees the mark after its commit and deletes its row (keeps()).
            assert not svc.mounts.keeps("undo", lambda: svc.store.kms_written("undo", "p"))
            svc.store.delete_kms(late)
        return stamps

    monkeypatch.setattr(svc.store, "first_written", first_written)
    svc.mounts.disable("undo")
    assert seen, "the disable saw the late provider"
    assert svc.store.get_mount("undo") is None


def test_a_row_written_before_the_mark_is_refused_at_the_first_look(svc, monkeypatch):
    svc.mounts.enable("early", "keymgmt")
    raw_provider(svc, "early", "p")
    real_first_written = svc.store.first_written
    looks = []

    def first_written(mount, kind, *args, **kwargs):
        looks.append(kind)
        return real_first_written(mount, kind, *args, **kwargs)

    monkeypatch.setattr(svc.store, "first_written", first_written)
    assert "still holds KMS providers" in refusal(svc.mounts.disable, "early")
    assert looks == ["keys", "providers"]  # looked once, did not wait for it to go


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
    mark_disabling(svc, "back")
    raw_provider(svc, "back", "after")
    assert not svc.mounts.keeps("back", lambda: svc.store.kms_written("back", "after"))
    svc.mounts.settle(older_than=0)  # holds a provider: made active again
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
def test_settle_reactivates_a_mount_left_disabling_that_holds_something(svc, holds):
    svc.mounts.enable("full", "keymgmt")
    (add_key if holds == "key" else add_provider)(svc, "full")
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
    Mounts(svc.store).disable("cached")  # another instance disables it
    assert svc.mounts.exists("cached") is True  # a read may trust the cache: it finds nothing
    assert svc.mounts.exists("cached", for_write=True) is False
    svc.mounts.forget()
    assert svc.mounts.exists("cached") is False


def test_exists_is_false_for_a_mount_never_enabled(svc):
    assert svc.mounts.exists("unknown") is False
    assert svc.mounts.exists("unknown", for_write=True) is False
