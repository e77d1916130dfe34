"""Audit devices over real HTTP: the local host writing to a file, to append blobs in Azurite's
Blob service and to the ``keymgmt.audit`` logger, the issue's sequence (a token-issuing
request with a JWT and a client secret in its body, key create, a KMS provider with
credentials, distribute, rotate, a 403, a 400), sys/audit, sys/audit-hash, the bao CLI and
hvac, and fail closed: a request no device can record is refused before it acts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest
import requests

from shared import audit
from shared import service as service_module
from shared import settings as settings_module
from shared.api import handle
from shared.api import keys as keys_api
from shared.audit import Broker, Sink
from shared.vaultapi import ApiRequest
from tests.fixtures.funchost import Api, FuncHost, emulator_settings, engine_settings, serving
from tests.fixtures.openbao import BaoCli
from tests.helpers import write_policy
from tools.kvemu import Emulator

VAULT = "keyvault-name"
OFFICER = "Key Vault Crypto Officer"
AUDIT_MARK = " keymgmt.audit: "
# One worker runs the module: its hosts start once.
pytestmark = [pytest.mark.xdist_group("audit")]


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def file_entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def blob_text(azurite: Any, device: str = "blob") -> str:
    from azure.storage.blob import BlobServiceClient

    container = BlobServiceClient.from_connection_string(
        azurite.connection_string
    ).get_container_client("audit")
    return "".join(
        container.download_blob(blob.name).readall().decode()
        for blob in container.list_blobs(name_starts_with=f"{device}/")
    )


def log_entries(host: FuncHost) -> list[dict[str, Any]]:
    return [
        json.loads(line.split(AUDIT_MARK, 1)[1])
        for line in host.logs().splitlines()
        if AUDIT_MARK in line
    ]


@dataclasses.dataclass
class Audited:
    host: FuncHost
    api: Api
    log: Path
    settings: dict[str, str]


@pytest.fixture(scope="module")
def audited(
    azurite: Any, kv_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Audited]:
    """A host with a file, a blob and a log device, wired to the Key Vault emulator."""
    log = tmp_path_factory.mktemp("audit") / "audit.log"
    devices = [
        {
            "path": "file",
            "type": "file",
            "description": "primary",
            "options": {"file_path": str(log)},
        },
        {"path": "blob", "type": "blob", "options": {"rotate": "hour"}},
        {"path": "log", "type": "log"},
    ]
    settings = engine_settings(
        azurite,
        f"au{os.getpid()}",
        KEYMGMT_AUDIT_DEVICES=json.dumps(devices),
        **emulator_settings(kv_emulator),
    )
    with serving(settings) as host:
        yield Audited(host, Api(host), log, settings)


def test_the_issue_sequence_is_recorded_on_every_device_with_no_secret_in_clear(
    audited: Audited, azurite: Any, kv: Emulator
):
    api = audited.api
    policy = uid("reader")
    write_policy(api.url, policy, 'path "keymgmt/key/*" { capabilities = ["read"] }')

    # The login: auth/azure with the Function App's managed-identity token for Resource
    # Manager, as a workload in Azure logs in. Its config carries a client secret (for the
    # method's own Graph/ARM calls in Vault); both are recorded hashed only.
    method = uid("az")
    assert api.post(f"sys/auth/{method}", json={"type": "azure"}).status_code == 204
    login_secret = f"login-secret-{uuid.uuid4().hex}"
    arm = "https://management.azure.com/"
    configured = api.post(
        f"auth/{method}/config",
        json={
            "tenant_id": kv.tenant_id,
            "resource": arm,
            "client_id": str(uuid.uuid4()),
            "client_secret": login_secret,
        },
    )
    assert configured.status_code == 204, configured.text
    principal = kv.system_identity
    role = api.post(
        f"auth/{method}/role/app",
        json={"bound_service_principal_ids": [principal.object_id], "token_policies": [policy]},
    )
    assert role.status_code == 204, role.text
    jwt, _ = kv.token_for(
        arm,
        object_id=principal.object_id,
        app_id=principal.client_id,
        client_auth="2",
        managed_identity=principal,
    )
    issued = requests.post(
        f"{api.url}/v1/auth/{method}/login", json={"role": "app", "jwt": jwt}, timeout=60
    )
    assert issued.status_code == 200, issued.text
    token, accessor = issued.json()["auth"]["client_token"], issued.json()["auth"]["accessor"]
    assert issued.json()["auth"]["policies"] == ["default", policy]

    key = uid("k")
    assert api.post(f"keymgmt/key/{key}", json={"type": "rsa-2048"}).status_code == 204
    client_id, kms_secret = str(uuid.uuid4()), f"kms-secret-{uuid.uuid4().hex}"
    kv.add_client(client_id, kms_secret)
    kv.grant(VAULT, client_id, OFFICER)
    provider = uid("kms")
    credentials = {"client_id": client_id, "client_secret": kms_secret, "tenant_id": kv.tenant_id}
    written = api.put(
        f"keymgmt/kms/{provider}",
        json={"provider": "azurekeyvault", "key_collection": VAULT, "credentials": credentials},
    )
    assert written.status_code == 204, written.text
    distributed = api.put(f"keymgmt/kms/{provider}/key/{key}", json={"purpose": "encrypt,decrypt"})
    assert distributed.status_code == 204, distributed.text
    assert api.post(f"keymgmt/key/{key}/rotate").status_code == 204
    denied = Api(audited.host, token).get("sys/mounts")
    assert denied.status_code == 403
    assert Api(audited.host, token).get(f"keymgmt/key/{key}").status_code == 200
    refused_key = uid("k")
    bad = api.post(f"keymgmt/key/{refused_key}", json={"type": "rsa-1"})
    assert bad.status_code == 400

    steps = [
        ("update", f"auth/{method}/login"),
        ("create", f"keymgmt/key/{key}"),
        ("create", f"keymgmt/kms/{provider}"),
        ("create", f"keymgmt/kms/{provider}/key/{key}"),
        ("update", f"keymgmt/key/{key}/rotate"),
        ("read", "sys/mounts"),
        ("update", f"keymgmt/key/{refused_key}"),  # refused by the field check: no lookup
    ]
    secrets = [jwt, login_secret, token, accessor, kms_secret]
    lines = {
        "file": file_entries(audited.log),
        "blob": [json.loads(line) for line in blob_text(azurite).splitlines()],
        "log": log_entries(audited.host),
    }
    for device, entries in lines.items():
        for operation, path in steps:
            mine = [
                e
                for e in entries
                if e["request"]["path"] == path and e["request"]["operation"] == operation
            ]
            assert [e["type"] for e in mine] == ["request", "response"], (device, path)
            assert mine[0]["request"]["id"] == mine[1]["request"]["id"]
        # The answer's request_id is the entries' request.id.
        assert issued.json()["request_id"] in {e["request"]["id"] for e in entries}
        text = json.dumps(entries)
        for secret in secrets:
            assert secret not in text, (device, secret[:12])

        def hashed(value: str, device: str = device) -> str:
            response = api.post(f"sys/audit-hash/{device}", json={"input": value})
            assert response.status_code == 200, response.text
            return str(response.json()["data"]["hash"])

        # The read its own policy allows: that policy, and not default, granted it.
        [granted, _] = [
            e
            for e in entries
            if e["request"]["path"] == f"keymgmt/key/{key}" and e["request"]["operation"] == "read"
        ]
        assert granted["auth"]["policy_results"] == {
            "allowed": True,
            "granting_policies": [{"name": policy, "namespace_id": "root", "type": "acl"}],
        }
        [denial, denial_response] = [e for e in entries if e["request"]["path"] == "sys/mounts"]
        assert denial["auth"]["client_token"] == hashed(token)
        assert denial["request"]["client_token_accessor"] == hashed(accessor)
        assert denial["auth"]["policy_results"] == {"allowed": False}
        assert denial_response["error"] == "1 error occurred:\n\t* permission denied\n\n"
        [login, login_response] = [
            e for e in entries if e["request"]["path"] == f"auth/{method}/login"
        ]
        assert login["request"]["data"]["jwt"] == hashed(jwt)
        assert login_response["response"]["auth"]["client_token"] == hashed(token)
        assert login["request"]["mount_type"] == "azure"
        [config] = [
            e
            for e in entries
            if e["type"] == "request" and e["request"]["path"] == f"auth/{method}/config"
        ]
        assert config["request"]["data"]["client_secret"] == hashed(login_secret)
        [kms] = [
            e
            for e in entries
            if e["type"] == "request" and e["request"]["path"] == f"keymgmt/kms/{provider}"
        ]
        assert kms["request"]["data"]["credentials"]["client_secret"] == hashed(kms_secret)
        [refused] = [
            e
            for e in entries
            if e["type"] == "response" and e["request"]["path"] == f"keymgmt/key/{refused_key}"
        ]
        assert refused["error"] == "1 error occurred:\n\t* invalid request\n\n"
        assert refused["response"]["data"]["error"].startswith("hmac-sha256:")
    # Each device has its own salt.
    file_hash = api.post("sys/audit-hash/file", json={"input": token}).json()["data"]["hash"]
    blob_hash = api.post("sys/audit-hash/blob", json={"input": token}).json()["data"]["hash"]
    assert file_hash != blob_hash
    # Nothing of the secrets in the host's own log either.
    for secret in secrets:
        assert secret not in audited.host.logs()


def test_the_unaudited_status_paths_write_nothing(audited: Audited):
    assert audited.api.get("sys/mounts").ok  # an audited request: the file is there
    before = audited.log.read_text()
    for path in ("sys/health", "sys/seal-status", "sys/leader", "sys/init"):
        assert requests.get(f"{audited.api.url}/v1/{path}", timeout=60).ok
    assert audited.log.read_text() == before


@pytest.mark.parametrize("mount", ["no-such-mount", "a%23b", "a%3Fb"])
def test_a_request_to_a_mount_that_cannot_exist_is_recorded_not_a_500(audited: Audited, mount):
    answer = audited.api.get(f"{mount}/key/x")
    assert answer.status_code in (400, 404), answer.text
    entries = file_entries(audited.log)
    assert entries[-1]["type"] == "response"
    assert "mount_point" not in entries[-1]["request"]


def test_an_unsupported_operation_is_recorded_with_vaults_error(audited: Audited):
    answer = audited.api.delete("sys/audit-hash/file")
    assert answer.status_code == 405
    request, response = file_entries(audited.log)[-2:]
    assert (request["type"], request["request"]["operation"]) == ("request", "delete")
    assert "error" not in request
    assert response["error"] == "1 error occurred:\n\t* unsupported operation\n\n"


def test_help_is_recorded_as_the_help_operation_on_every_path(audited: Audited):
    # As OpenBao (its core audits HelpOperation): the unaudited status paths' help too.
    for path, token in (("sys/health", None), ("sys/mounts", "root")):
        headers = {"X-Vault-Token": token} if token else {}
        answer = requests.get(
            f"{audited.api.url}/v1/{path}", params={"help": "1"}, headers=headers, timeout=60
        )
        assert answer.status_code == 200, answer.text
        request, response = file_entries(audited.log)[-2:]
        assert (request["type"], response["type"]) == ("request", "response")
        assert request["request"]["operation"] == response["request"]["operation"] == "help"
        assert request["request"]["path"] == path
        assert sorted(response["response"]["data"]) == ["help", "openapi", "see_also"]


def test_sys_audit_lists_the_declared_devices_in_vaults_shape(audited: Audited):
    answer = audited.api.get("sys/audit")
    assert answer.status_code == 200
    body = answer.json()
    expected = {
        "description": "primary",
        "local": False,
        "options": {"file_path": str(audited.log)},
        "path": "file/",
        "type": "file",
    }
    assert body["data"]["file/"] == expected
    assert body["file/"] == expected  # the legacy top-level copy
    assert set(body["data"]) == {"file/", "blob/", "log/"}


def test_devices_are_not_made_or_removed_through_the_api(audited: Audited):
    api = audited.api
    enable = api.put("sys/audit/other", json={"type": "file", "options": {"file_path": "/tmp/x"}})
    assert enable.status_code == 400
    assert enable.json() == {
        "errors": [
            "cannot enable audit device via API; use declarative, config-based audit device "
            "management instead"
        ]
    }
    declared = api.delete("sys/audit/file")
    assert declared.status_code == 400
    assert declared.json() == {"errors": ["cannot disable configuration-managed audit device"]}
    assert api.delete("sys/audit/unknown").status_code == 204  # OpenBao 2.7.2 answers so
    unknown = api.post("sys/audit-hash/nope", json={"input": "x"})
    assert unknown.status_code == 400
    assert unknown.json() == {"errors": ['unknown audit backend "nope/"']}
    missing = api.post("sys/audit-hash/file", json={})
    assert missing.status_code == 400 and "input is required" in missing.text


def test_sys_audit_needs_sudo_and_audit_hash_only_update(audited: Audited):
    api = audited.api
    policy = uid("hasher")
    write_policy(
        api.url,
        policy,
        'path "sys/audit-hash/*" { capabilities = ["update"] }\n'
        'path "sys/audit" { capabilities = ["read"] }',
    )
    token = api.post("auth/token/create", json={"policies": [policy]}).json()["auth"][
        "client_token"
    ]
    caller = Api(audited.host, token)
    assert caller.get("sys/audit").status_code == 403  # read without sudo
    hashed = caller.post("sys/audit-hash/file", json={"input": "root"})
    assert hashed.status_code == 200
    assert hashed.json()["hash"] == hashed.json()["data"]["hash"]  # legacy top-level copy


def test_bao_cli_and_hvac_list_devices_and_hash(audited: Audited, tmp_path: Path):
    bao = BaoCli(audited.api.url, tmp_path, token="root")
    listed = bao("audit", "list")
    assert "file/" in listed.stdout and "primary" in listed.stdout
    detailed = bao("audit", "list", "-detailed")
    assert f"file_path={audited.log}" in detailed.stdout
    client = hvac.Client(url=audited.api.url, token="root")
    devices = client.sys.list_enabled_audit_devices()
    assert set(devices["data"]) == {"file/", "blob/", "log/"}
    digest = client.sys.calculate_hash("file", "root")
    assert (
        digest["data"]["hash"]
        == audited.api.post("sys/audit-hash/file", json={"input": "root"}).json()["data"]["hash"]
    )


# -- fail closed -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_files(azurite: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audited]:
    """A host with two file devices, each in a folder of its own."""
    root = tmp_path_factory.mktemp("failclosed")
    devices = [
        {"path": name, "type": "file", "options": {"file_path": str(root / name / "audit.log")}}
        for name in ("first", "second")
    ]
    for name in ("first", "second"):
        (root / name).mkdir()
    settings = engine_settings(
        azurite, f"fc{os.getpid()}", KEYMGMT_AUDIT_DEVICES=json.dumps(devices)
    )
    with serving(settings) as host:
        yield Audited(host, Api(host), root, settings)


def test_one_failing_device_is_logged_and_the_others_carry_on_then_none_refuses(two_files):
    api, root = two_files.api, two_files.log
    assert api.get("sys/mounts").status_code == 200  # both devices open their files
    shutil.rmtree(root / "first")
    kept = uid("k")
    assert api.post(f"keymgmt/key/{kept}", json={"type": "rsa-2048"}).status_code == 204
    assert (
        "audit device first/ failed to log the request: FileNotFoundError" in two_files.host.logs()
    )
    assert f"keymgmt/key/{kept}" in (root / "second" / "audit.log").read_text()

    shutil.rmtree(root / "second")  # now no device can write
    refused_key = uid("k")
    refused = api.post(f"keymgmt/key/{refused_key}", json={"type": "rsa-2048"})
    assert refused.status_code == 503
    assert refused.json() == {"errors": [audit.NOT_RECORDED]}
    assert api.post(f"keymgmt/key/{kept}/rotate").status_code == 503
    # Nothing changed: the key was not made, the other not rotated.
    engine = service_module.build(settings_module.load(two_files.settings))
    assert engine.store.get_key("keymgmt", refused_key) is None
    stored = engine.store.get_key("keymgmt", kept)
    assert stored is not None and stored.latest_version == 1

    (root / "second").mkdir()  # the folder is back: requests are recorded and served again
    assert api.post(f"keymgmt/key/{kept}/rotate").status_code == 204
    assert f"keymgmt/key/{kept}/rotate" in (root / "second" / "audit.log").read_text()


class FailingAfter(Sink):
    """Takes ``good`` entries, then fails every write (or hangs for ``hang`` seconds)."""

    def __init__(self, good: int, hang: float = 0.0) -> None:
        self.good = good
        self.hang = hang
        self.lines: list[bytes] = []

    def write(self, line: bytes) -> None:
        if len(self.lines) >= self.good:
            if self.hang:
                time.sleep(self.hang)
            raise OSError("disk full")
        self.lines.append(line)


def engine_with_sink(azurite: Any, sink: Sink, **extra: str) -> Any:
    devices = json.dumps([{"path": "test", "type": "log"}])
    settings = settings_module.load(
        engine_settings(
            azurite, f"fs{uuid.uuid4().hex[:8]}", KEYMGMT_AUDIT_DEVICES=devices, **extra
        )
    )
    engine = service_module.build(settings)
    return dataclasses.replace(engine, audit=Broker(settings, engine.store, sinks={"test": sink}))


def create_key(engine: Any, name: str) -> Any:
    request = ApiRequest(
        "POST",
        headers={"x-vault-token": "root", "content-type": "application/json"},
        body=b'{"type": "rsa-2048"}',
    )
    return handle(keys_api.KEY, request, {"mount": "keymgmt", "name": name}, lambda: engine)


def test_a_response_entry_no_device_takes_turns_the_answer_into_a_503(azurite: Any):
    sink = FailingAfter(good=1)  # the request entry only
    engine = engine_with_sink(azurite, sink)
    answer = create_key(engine, "acted")
    assert answer.status == 503
    assert json.loads(answer.body) == {"errors": [audit.ANSWER_NOT_RECORDED]}
    # The action happened (documented in docs/audit.md): a retry finds the key and updates it.
    assert engine.store.get_key("keymgmt", "acted") is not None
    assert [json.loads(line)["type"] for line in sink.lines] == ["request"]


def test_a_hanging_device_is_bounded_by_the_write_timeout(azurite: Any):
    sink = FailingAfter(good=0, hang=30)
    engine = engine_with_sink(azurite, sink, KEYMGMT_AUDIT_WRITE_TIMEOUT="1")
    started = time.monotonic()
    answer = create_key(engine, "never")
    assert answer.status == 503
    assert time.monotonic() - started < 25  # not the sink's 30 s
    assert engine.store.get_key("keymgmt", "never") is None


def test_concurrent_instances_agree_on_one_salt(azurite: Any):
    from concurrent.futures import ThreadPoolExecutor

    settings = settings_module.load(engine_settings(azurite, f"salt{uuid.uuid4().hex[:8]}"))
    engines = [service_module.build(settings) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        salts = set(pool.map(lambda e: e.store.audit_salt("file"), engines))
    assert len(salts) == 1
    [salt] = salts
    assert uuid.UUID(salt) and salt != engines[0].store.audit_salt("other")


def test_the_log_device_writes_on_the_requests_own_thread(azurite: Any, caplog):
    # The Functions Python worker collects a record by the invocation of the thread that logs
    # it: a pool thread's line would be lost in Azure.
    import threading

    devices = json.dumps([{"path": "log", "type": "log"}])
    engine = service_module.build(
        settings_module.load(
            engine_settings(azurite, f"lt{uuid.uuid4().hex[:8]}", KEYMGMT_AUDIT_DEVICES=devices)
        )
    )
    with caplog.at_level("INFO", logger="keymgmt.audit"):
        assert create_key(engine, "logged").status == 204
    records = [r for r in caplog.records if r.name == "keymgmt.audit"]
    assert [json.loads(r.getMessage())["type"] for r in records] == ["request", "response"]
    assert {r.thread for r in records} == {threading.get_ident()}
