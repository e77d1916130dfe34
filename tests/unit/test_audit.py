"""Audit entries, pure: the HMAC walk, the entry format, device options, the settings that
declare devices, and the file sink's file handling."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from shared import audit, settings
from shared.audit import FileSink, Mount, Record, format_entry, hash_walk, hmac_value
from shared.records import TokenInfo
from shared.settings import AuditDevice, SettingsError

SALT = "8a9b5e5c-6f7e-4c2b-9f55-0d3f0d1f2e3a"
CONN = "UseDevelopmentStorage=true"


def h(value: str) -> str:
    return "hmac-sha256:" + hmac.new(SALT.encode(), value.encode(), hashlib.sha256).hexdigest()


# -- the HMAC walk -------------------------------------------------------------------------------


def test_hmac_is_hmac_sha256_keyed_with_the_salt_and_prefixed():
    assert hmac_value(SALT, "root") == h("root")
    assert hmac_value("another-salt", "root") != h("root")
    assert re.fullmatch(r"hmac-sha256:[0-9a-f]{64}", h("x"))


def test_every_string_at_any_depth_is_hashed_keys_and_other_types_are_not():
    # The reference's observed body (§6.4): arr, nested, nul, ratio, numbers, booleans.
    data = {
        "arr": ["a", 1, True],
        "min_enabled_version": 2,
        "nested": {"x": "y", "deeper": [{"z": "w"}]},
        "nul": None,
        "ratio": 0.5,
        "type": "rsa-2048",
        "deletion_allowed": False,
    }
    assert hash_walk(data, SALT) == {
        "arr": [h("a"), 1, True],
        "min_enabled_version": 2,
        "nested": {"x": h("y"), "deeper": [{"z": h("w")}]},
        "nul": None,
        "ratio": 0.5,
        "type": h("rsa-2048"),
        "deletion_allowed": False,
    }


@pytest.mark.parametrize(
    "value",
    [
        "2026-12-01T19:48:50Z",
        "2026-12-01T19:48:50.883506098Z",
        "2026-12-01T19:48:50+01:00",
        "2026-12-01T19:48:50.5-07:30",
    ],
)
def test_a_string_that_parses_as_rfc3339_stays_in_clear(value):
    assert audit.is_rfc3339(value)
    assert hash_walk({"expire_time": value}, SALT) == {"expire_time": value}


@pytest.mark.parametrize(
    "value",
    [
        "2026-12-01",  # a date alone
        "2026-12-01 19:48:50Z",  # no T
        "2026-12-01T19:48Z",  # no seconds
        "2026-13-01T19:48:50Z",  # month 13
        "2026-02-30T19:48:50Z",  # no such day
        "2026-12-01T24:00:00Z",
        "2026-12-01T19:48:50",  # no zone
        "x2026-12-01T19:48:50Z",
    ],
)
def test_a_string_that_is_not_rfc3339_is_hashed(value):
    assert not audit.is_rfc3339(value)
    assert hash_walk(value, SALT) == h(value)


# -- entries ---------------------------------------------------------------------------------------

TOKEN = TokenInfo(
    id="hvs.CAESIJ2token0000000000000",
    accessor="accessor000000000000000",
    display_name="token-ci",
    policies=("default", "kms-admin"),
    path="auth/token/create",
    ttl=3600,
    issue_time=dt.datetime(2026, 12, 1, 19, 48, 50, tzinfo=dt.UTC),
    meta={"team": "kms"},
)
KEYMGMT = Mount("keymgmt/", "keymgmt", "keymgmt_1234abcd", "secret")


def device(**options: str) -> AuditDevice:
    declared = {"file_path": "stdout", **options}
    loaded = settings.load(
        {
            "KEYMGMT_STORAGE": CONN,
            "KEYMGMT_AUDIT_DEVICES": json.dumps(
                [{"path": "file", "type": "file", "options": declared}]
            ),
        }
    )
    return loaded.audit_devices[0]


def record(**overrides: object) -> Record:
    fields: dict[str, object] = {
        "id": "7c84a1c5-564e-c0c0-0549-b61be7cf6a24",
        "operation": "create",
        "path": "keymgmt/key/k1",
        "mount": KEYMGMT,
        "token": TOKEN,
        "presented_token": TOKEN.id,
        "allowed": True,
        "granting_policies": ["kms-admin"],
        "data": {"type": "rsa-2048", "deletion_allowed": True},
        "remote_address": "127.0.0.1:44934",
    }
    fields.update(overrides)
    return Record(**fields)  # type: ignore[arg-type]


def test_a_request_entry_in_vaults_shape_with_tokens_and_data_hashed():
    entry = format_entry("request", record(), device(), SALT)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", entry.pop("time"))
    assert entry == {
        "type": "request",
        "auth": {
            "client_token": h(TOKEN.id),
            "accessor": h(TOKEN.accessor),
            "display_name": "token-ci",
            "policies": ["default", "kms-admin"],
            "token_policies": ["default", "kms-admin"],
            "policy_results": {
                "allowed": True,
                "granting_policies": [{"name": "kms-admin", "namespace_id": "root", "type": "acl"}],
            },
            "metadata": {"team": "kms"},
            "token_type": "service",
            "token_ttl": 3600,
            "token_issue_time": "2026-12-01T19:48:50Z",
        },
        "request": {
            "id": "7c84a1c5-564e-c0c0-0549-b61be7cf6a24",
            "operation": "create",
            "mount_point": "keymgmt/",
            "mount_type": "keymgmt",
            "mount_accessor": "keymgmt_1234abcd",
            "mount_class": "secret",
            "client_token": h(TOKEN.id),
            "client_token_accessor": h(TOKEN.accessor),
            "namespace": {"id": "root"},
            "path": "keymgmt/key/k1",
            "data": {"type": h("rsa-2048"), "deletion_allowed": True},
            "remote_address": "127.0.0.1",
            "remote_port": 44934,
        },
    }


def test_an_invalid_token_has_only_the_default_auth_and_its_token_still_hashed():
    entry = format_entry(
        "request",
        record(token=None, presented_token="s.bogus", allowed=None, error="permission denied"),
        device(),
        SALT,
    )
    assert entry["auth"] == {"token_type": "default"}
    assert entry["request"]["client_token"] == h("s.bogus")
    assert "client_token_accessor" not in entry["request"]
    assert entry["error"] == "permission denied"


def test_a_denied_response_carries_the_error_twice_hashed_in_data_only():
    text = "1 error occurred:\n\t* permission denied\n\n"
    entry = format_entry(
        "response",
        record(allowed=False, response_error=text, response_message=text),
        device(),
        SALT,
    )
    assert entry["auth"]["policy_results"] == {"allowed": False}
    assert entry["error"] == text
    assert entry["response"]["data"] == {"error": h(text)}
    assert entry["response"]["mount_point"] == "keymgmt/"


def test_a_token_issuing_response_hashes_the_new_token_not_its_policies():
    body = {
        "request_id": "x",
        "data": None,
        "warnings": ["Endpoint ignored these unrecognized parameters: [jwt]"],
        "auth": {
            "client_token": "hvs.newtoken000000000000",
            "accessor": "newaccessor0000000000000",
            "policies": ["default"],
            "token_policies": ["default"],
            "metadata": None,
            "lease_duration": 600,
            "renewable": True,
            "entity_id": "",
            "token_type": "service",
            "orphan": False,
            "num_uses": 0,
        },
    }
    response = format_entry("response", record(response=body), device(), SALT)["response"]
    assert response["auth"] == {
        "client_token": h("hvs.newtoken000000000000"),
        "accessor": h("newaccessor0000000000000"),
        "policies": ["default"],
        "token_policies": ["default"],
        "token_type": "service",
        "token_ttl": 600,
    }
    assert response["warnings"] == body["warnings"]  # warnings are not hashed
    assert "data" not in response  # null: omitted


def test_hmac_accessor_false_leaves_accessors_in_clear_and_tokens_hashed():
    entry = format_entry("request", record(), device(hmac_accessor="false"), SALT)
    assert entry["auth"]["accessor"] == TOKEN.accessor
    assert entry["request"]["client_token_accessor"] == TOKEN.accessor
    assert entry["auth"]["client_token"] == h(TOKEN.id)


def test_log_raw_hashes_nothing():
    body = {"request_id": "x", "data": {"keys": ["k1"]}, "auth": None}
    entry = format_entry("response", record(response=body), device(log_raw="true"), SALT)
    assert entry["auth"]["client_token"] == TOKEN.id
    assert entry["request"]["data"] == {"type": "rsa-2048", "deletion_allowed": True}
    assert entry["response"]["data"] == {"keys": ["k1"]}


def test_elide_list_responses_replaces_keys_by_their_count():
    body = {"request_id": "x", "data": {"keys": ["a", "b", "c"], "key_info": {"a": {}}}}
    listed = record(operation="list", path="keymgmt/key/", data=None, response=body)
    elided = format_entry("response", listed, device(elide_list_responses="true"), SALT)
    assert elided["response"]["data"] == {"keys": 3, "key_info": 1}
    plain = format_entry("response", listed, device(), SALT)
    assert plain["response"]["data"]["keys"] == [h("a"), h("b"), h("c")]


def test_empty_values_are_omitted_as_gos_omitempty():
    bare = record(
        token=None, presented_token=None, allowed=None, data=None, remote_address="", mount=Mount()
    )
    assert format_entry("request", bare, device(), SALT)["request"] == {
        "id": bare.id,
        "operation": "create",
        "namespace": {"id": "root"},
        "path": "keymgmt/key/k1",
    }


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("", ("", 0)),
        ("10.1.2.3", ("10.1.2.3", 0)),
        ("10.1.2.3:5000", ("10.1.2.3", 5000)),
        ("[2001:db8::1]:443", ("2001:db8::1", 443)),
        ("2001:db8::1", ("2001:db8::1", 0)),
        ("[::1]", ("::1", 0)),
    ],
)
def test_the_client_address_in_every_form_the_adapter_may_give(remote, expected):
    assert audit.split_address(remote) == expected


def test_time_is_rfc3339_nano_in_utc_without_trailing_zeros():
    assert audit.rfc3339_nano(1764618530.5) == "2025-12-01T19:48:50.5Z"
    assert audit.rfc3339_nano(1764618530.0) == "2025-12-01T19:48:50Z"


def test_a_line_is_compact_json_with_one_newline():
    line = audit.encode_entry({"a": "é", "b": [1]})
    assert line == '{"a":"é","b":[1]}\n'.encode()


def test_blob_names_per_day_or_hour_and_rolled_parts():
    when = dt.datetime(2026, 3, 4, 5, 6, tzinfo=dt.UTC)
    assert audit.blob_name("blob", "day", when) == "blob/2026/03/04.log"
    assert audit.blob_name("blob", "hour", when) == "blob/2026/03/04/05.log"
    assert audit.blob_name("blob", "day", when, 2) == "blob/2026/03/04-2.log"


# -- declaring devices -------------------------------------------------------------------------


def load(devices: object, **env: str) -> settings.Settings:
    return settings.load(
        {"KEYMGMT_STORAGE": CONN, "KEYMGMT_AUDIT_DEVICES": json.dumps(devices), **env}
    )


def test_devices_with_their_defaults_and_options_as_declared():
    devices = load(
        [
            {
                "path": "file",
                "type": "file",
                "description": "primary",
                "options": {"file_path": "x"},
            },
            {"path": "blob", "type": "blob", "options": {"rotate": "hour"}},
            {"path": "log", "type": "log"},
        ]
    ).audit_devices
    file, blob, log = devices
    assert (file.file_path, file.mode, file.hmac_accessor, file.log_raw) == (
        "x",
        0o600,
        True,
        False,
    )
    assert file.options == {"file_path": "x"} and file.description == "primary"
    assert (blob.container, blob.rotate) == ("audit", "hour")
    assert log.type == "log" and log.options == {}
    assert settings.load({"KEYMGMT_STORAGE": CONN}).audit_devices == ()


def test_exec_bits_of_a_file_mode_are_stripped():
    [file] = load(
        [{"path": "f", "type": "file", "options": {"file_path": "x", "mode": "0755"}}]
    ).audit_devices
    assert file.mode == 0o644


@pytest.mark.parametrize(
    ("devices", "says"),
    [
        ("nope", "must be a JSON array"),
        ([{"path": "s", "type": "socket"}], 'device "s": type must be one of file, blob, log'),
        ([{"path": "f", "type": "file"}], 'device "f" \\(file\\): file_path is required'),
        (
            [{"path": "f", "type": "file", "options": {"file_path": "x", "prefix": "p"}}],
            "unknown options \\['prefix'\\]; allowed are log_raw",
        ),
        ([{"path": "l", "type": "log", "options": {"log_raw": "yes"}}], 'log_raw must be "true"'),
        (
            [{"path": "f", "type": "file", "options": {"file_path": "x", "mode": "rw"}}],
            "mode must be octal",
        ),
        ([{"path": "b", "type": "blob", "options": {"rotate": "week"}}], 'rotate must be "day"'),
        ([{"path": "b", "type": "blob", "options": {"container": "A_"}}], "container must be"),
        ([{"path": "b", "type": "log", "options": {"n": 1}}], "options must be an object of str"),
        ([{"path": "a/b", "type": "log"}], "path must be"),
        ([{"path": "l", "type": "log"}, {"path": "l/", "type": "log"}], '"l" is declared twice'),
        ([{"path": "l", "type": "log", "filter": "x"}], "unknown keys \\['filter'\\]"),
    ],
)
def test_a_bad_declaration_is_refused_at_startup_naming_device_and_option(devices, says):
    with pytest.raises(SettingsError, match=says):
        load(devices)


def test_a_blob_device_needs_the_blob_endpoint_with_identity_based_storage():
    env = {
        "KEYMGMT_STORAGE__tableServiceUri": "https://acct.table.core.windows.net",
        "KEYMGMT_AUDIT_DEVICES": json.dumps([{"path": "b", "type": "blob"}]),
    }
    with pytest.raises(SettingsError, match="KEYMGMT_STORAGE__blobServiceUri"):
        settings.load(env)
    uri = "https://acct.blob.core.windows.net/"
    loaded = settings.load({**env, "KEYMGMT_STORAGE__blobServiceUri": uri})
    assert loaded.storage.blob_service_uri == uri.rstrip("/")


# -- the file sink -------------------------------------------------------------------------------


def test_the_file_is_created_private_and_appended(tmp_path: Path):
    path = tmp_path / "audit.log"
    path.write_bytes(b"earlier\n")
    path.chmod(0o644)
    sink = FileSink(str(path), 0o600)
    sink.write(b"one\n")
    sink.write(b"two\n")
    assert path.read_bytes() == b"earlier\none\ntwo\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # an existing file gets the mode too
    sink.close()


def test_a_file_rotated_away_or_deleted_is_reopened_at_its_path(tmp_path: Path):
    path = tmp_path / "audit.log"
    sink = FileSink(str(path), 0o600)
    sink.write(b"one\n")
    path.rename(tmp_path / "audit.log.1")  # logrotate's move
    sink.write(b"two\n")
    assert path.read_bytes() == b"two\n"
    assert (tmp_path / "audit.log.1").read_bytes() == b"one\n"
    path.unlink()
    sink.write(b"three\n")
    assert path.read_bytes() == b"three\n"
    sink.close()


def test_a_deleted_directory_makes_the_device_fail(tmp_path: Path):
    folder = tmp_path / "logs"
    folder.mkdir()
    sink = FileSink(str(folder / "audit.log"), 0o600)
    sink.write(b"one\n")
    shutil.rmtree(folder)
    with pytest.raises(OSError):
        sink.write(b"two\n")
    folder.mkdir()  # back: the next write works again
    sink.write(b"three\n")
    assert (folder / "audit.log").read_bytes() == b"three\n"
    sink.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any mode")
def test_an_unwritable_directory_makes_a_new_file_fail(tmp_path: Path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            FileSink(str(folder / "audit.log"), 0o600).write(b"x\n")
    finally:
        folder.chmod(0o700)


# -- the blob sink's roll-over (a stand-in for the service's documented 409) ---------------------


class _Blob:
    """Append blob semantics the sink relies on (Put Blob with If-None-Match: *, Append Block
    and its 409 BlockCountExceedsLimit), with the limit made small."""

    def __init__(self, store: dict[str, list[bytes]], name: str, limit: int) -> None:
        self.store, self.name, self.limit = store, name, limit

    def create_append_blob(self, *, if_none_match: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        assert if_none_match == "*"
        if self.name in self.store:
            raise ResourceExistsError("BlobAlreadyExists")
        self.store[self.name] = []

    def append_block(self, data: bytes) -> None:
        from azure.core.exceptions import ResourceExistsError

        if len(self.store[self.name]) >= self.limit:
            error = ResourceExistsError("The committed block count cannot exceed the maximum")
            error.error_code = "BlockCountExceedsLimit"
            raise error
        self.store[self.name].append(data)


class _Container:
    def __init__(self, limit: int) -> None:
        self.blobs: dict[str, list[bytes]] = {}
        self.limit = limit

    def get_blob_client(self, name: str) -> _Blob:
        return _Blob(self.blobs, name, self.limit)


class _Service:
    def __init__(self, container: _Container) -> None:
        self.container = container

    def get_container_client(self, name: str) -> _Container:
        assert name == "audit"
        return self.container


def test_a_full_append_blob_rolls_to_a_numbered_one_and_an_existing_blob_is_kept():
    [blob_device] = load([{"path": "blob", "type": "blob"}]).audit_devices
    container = _Container(limit=2)
    container.blobs["blob/2026/03/04.log"] = [b"an earlier run\n"]
    when = dt.datetime(2026, 3, 4, 5, 6, tzinfo=dt.UTC)
    sink = audit.BlobSink(blob_device, lambda: _Service(container), lambda: when)
    for n in range(4):
        sink.write(f"{n}\n".encode())
    assert container.blobs == {
        "blob/2026/03/04.log": [b"an earlier run\n", b"0\n"],
        "blob/2026/03/04-1.log": [b"1\n", b"2\n"],
        "blob/2026/03/04-2.log": [b"3\n"],
    }
    with pytest.raises(ValueError, match="4 MiB"):
        sink.write(b"x" * (audit.MAX_BLOCK + 1))


def test_stdout_is_a_file_path(capsys):
    FileSink("stdout", 0o600).write(b'{"type":"request"}\n')
    assert capsys.readouterr().out == '{"type":"request"}\n'


# -- response wrapping -----------------------------------------------------------------------------

WRAPPED = {
    "request_id": "",
    "lease_id": "",
    "renewable": False,
    "lease_duration": 0,
    "data": None,
    "wrap_info": {
        "token": "hvs.wrappingtoken0000000000",
        "accessor": "wrapaccessor000000000000",
        "ttl": 300,
        "creation_time": "2026-12-02T04:46:22.792169495Z",
        "creation_path": "auth/token/create",
        "wrapped_accessor": "wrappedaccessor000000000",
    },
    "warnings": None,
    "auth": None,
}


def test_a_wrapped_answer_is_audited_with_its_wrap_info_hmacd_as_vault_hashes_it():
    """HashWrapInfo: the token always HMAC'd, both accessors when hmac_accessor; the TTL, time
    and path in the clear; the request's wrap_ttl on both entries (OpenBao's audit format)."""
    entry = format_entry("response", record(response=WRAPPED, wrap_ttl=300), device(), SALT)
    assert entry["response"]["wrap_info"] == {
        "ttl": 300,
        "token": h("hvs.wrappingtoken0000000000"),
        "accessor": h("wrapaccessor000000000000"),
        "creation_time": "2026-12-02T04:46:22.792169495Z",
        "creation_path": "auth/token/create",
        "wrapped_accessor": h("wrappedaccessor000000000"),
    }
    assert "hvs.wrappingtoken0000000000" not in json.dumps(entry)
    assert entry["request"]["wrap_ttl"] == 300
    request = format_entry("request", record(wrap_ttl=300), device(), SALT)
    assert request["request"]["wrap_ttl"] == 300
    assert "wrap_ttl" not in format_entry("request", record(), device(), SALT)["request"]

    clear = format_entry("response", record(response=WRAPPED), device(hmac_accessor="false"), SALT)
    info = clear["response"]["wrap_info"]
    assert info["token"] == h("hvs.wrappingtoken0000000000")
    assert (info["accessor"], info["wrapped_accessor"]) == (
        "wrapaccessor000000000000",
        "wrappedaccessor000000000",
    )
    raw = format_entry("response", record(response=WRAPPED), device(log_raw="true"), SALT)
    assert raw["response"]["wrap_info"]["token"] == "hvs.wrappingtoken0000000000"
