"""Event Grid posting, state across restarts, the standalone command line, conformance."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from azure.keyvault.keys import JsonWebKey, KeyClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from shared.byok import build_transfer_blob
from tests.emulator.conformance import Conformance
from tests.emulator.helpers import assert_conforms, system_identity_client, unique
from tools.kvemu import Emulator

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def receiver() -> Iterator[tuple[str, queue.Queue]]:
    """A tiny webhook: records (headers, body) of every POST."""
    received: queue.Queue = queue.Queue()

    @Request.application
    def app(request: Request) -> Response:
        received.put((dict(request.headers), json.loads(request.get_data())))
        return Response("", status=200)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}/events", received
    server.shutdown()
    server.server_close()


def _client(emulator: Emulator, vault: str, monkeypatch) -> KeyClient:
    """A client as the system identity, which this test's own emulator grants the role."""
    emulator.grant(vault, emulator.system_identity.object_id, "Key Vault Crypto Officer")
    return system_identity_client(emulator, vault, monkeypatch)


def test_event_grid_new_versions_and_on_demand_events(
    tmp_path, receiver, monkeypatch, conformance: Conformance | None
) -> None:
    url, received = receiver
    with Emulator(
        {"events-vault": 0}, cert_dir=tmp_path, eventgrid_webhook=url, record=True
    ) as emulator:
        client = _client(emulator, "events-vault", monkeypatch)
        name = unique("ev")
        created = client.create_ec_key(name, expires_on=None)
        rotated = client.rotate_key(name)
        kek = client.create_rsa_key(
            unique("kek"), size=2048, hardware_protected=True, key_operations=["import"]
        )
        target = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = rsa.RSAPublicNumbers(
            int.from_bytes(kek.key.e, "big"), int.from_bytes(kek.key.n, "big")
        ).public_key()
        pkcs8 = target.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        blob = build_transfer_blob(pkcs8, public, kek.id, generator="test")
        imported = client.import_key(name, JsonWebKey(kty="RSA-HSM", t=blob, key_ops=["sign"]))
        emulator.fire_event("events-vault", "KeyNearExpiry", name)

        events = [received.get(timeout=20) for _ in range(5)]
        assert_conforms(emulator, conformance)

    by_version: dict[str, list] = {}
    for headers, body in events:
        assert headers["Aeg-Event-Type"] == "Notification"
        assert headers["Content-Type"].startswith("application/json")
        assert isinstance(body, list) and len(body) == 1
        by_version.setdefault(body[0]["data"]["Version"], []).append(body[0])
    new_version = {
        v: e
        for v, es in by_version.items()
        for e in es
        if e["eventType"] == "Microsoft.KeyVault.KeyNewVersionCreated"
    }
    assert {
        created.properties.version,
        rotated.properties.version,
        imported.properties.version,
    } <= set(new_version)
    event = new_version[created.properties.version]
    assert event["subject"] == name
    assert event["topic"].endswith("/providers/Microsoft.KeyVault/vaults/events-vault")
    assert event["dataVersion"] == "1" and event["metadataVersion"] == "1"
    assert event["data"] == {
        "Id": created.id,
        "VaultName": "events-vault",
        "ObjectType": "Key",
        "ObjectName": name,
        "Version": created.properties.version,
        "NBF": None,
        "EXP": None,
    }
    near = [
        e
        for es in by_version.values()
        for e in es
        if e["eventType"] == "Microsoft.KeyVault.KeyNearExpiry"
    ]
    assert near and near[0]["data"]["Version"] == imported.properties.version


def test_unreachable_webhook_never_fails_the_key_operation(tmp_path, monkeypatch) -> None:
    with Emulator(
        {"quiet-vault": 0}, cert_dir=tmp_path, eventgrid_webhook="http://127.0.0.1:9/nothing"
    ) as emulator:
        client = _client(emulator, "quiet-vault", monkeypatch)
        assert client.create_ec_key(unique("nohook")).key.crv == "P-256"


@pytest.mark.parametrize("suffix", [".json", ".sqlite"])
def test_state_file_keeps_vaults_across_restarts(tmp_path, monkeypatch, suffix) -> None:
    state = tmp_path / f"state{suffix}"
    name = unique("keep")
    with Emulator(
        {"kept": 0}, cert_dir=tmp_path / "certs", state_path=state, delete_delay=0.2
    ) as first:
        key = _client(first, "kept", monkeypatch).create_rsa_key(name, size=2048, tags={"a": "b"})
        deleted_name = unique("gone")
        _client(first, "kept", monkeypatch).create_ec_key(deleted_name)
        _client(first, "kept", monkeypatch).begin_delete_key(
            deleted_name, _polling_interval=0
        ).wait()
    with Emulator({"kept": 0}, cert_dir=tmp_path / "certs", state_path=state) as second:
        client = _client(second, "kept", monkeypatch)
        again = client.get_key(name)
        assert again.key.n == key.key.n and again.properties.tags == {"a": "b"}
        assert again.properties.version == key.properties.version
        assert client.get_deleted_key(deleted_name).name == deleted_name


def test_standalone_command_line(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tools.kvemu",
            "--vault",
            "keyvault-name=0",
            "--vault",
            "other=0",
            "--identity-port",
            "0",
            "--cert-dir",
            str(tmp_path),
            "--role-assignment",
            "other:system:Key Vault Reader",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = {}
        while "control API" not in lines:
            line = process.stdout.readline()
            assert line, process.stderr.read() if process.stderr else "no output"
            key, _, value = line.strip().partition("=") if "=" in line else (line, "", "")
            lines["control API" if line.startswith("control API") else key] = value
        identity = next(k for k in lines if k.startswith("identity SystemAssigned "))
        assert identity.split()[-1] == (
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/kvemu"
            "/providers/Microsoft.Web/sites/kvemu-functions"
        )
        v1 = next(k for k in lines if k.startswith("openid-configuration v1.0 ")).split()[-1]
        metadata = requests.get(v1, verify=lines["KEYMGMT_KEYVAULT_CA_BUNDLE"], timeout=10)
        assert metadata.json()["issuer"].startswith("https://sts.windows.net/")
        urls = dict(p.split("=", 1) for p in lines["KEYMGMT_KEYVAULT_URLS"].split(","))
        assert set(urls) == {"keyvault-name", "other"}
        ca = lines["KEYMGMT_KEYVAULT_CA_BUNDLE"]
        challenge = requests.get(f"{urls['other']}/keys?api-version=7.6", verify=ca, timeout=10)
        assert challenge.status_code == 401
        token = requests.get(
            lines["IDENTITY_ENDPOINT"],
            params={"resource": "https://vault.azure.net", "api-version": "2019-08-01"},
            headers={"X-IDENTITY-HEADER": lines["IDENTITY_HEADER"]},
            timeout=10,
        ).json()["access_token"]
        listed = requests.get(
            f"{urls['other']}/keys?api-version=7.6",
            headers={"Authorization": f"Bearer {token}"},
            verify=ca,
            timeout=10,
        )
        assert listed.status_code == 200 and listed.json()["value"] == []
        refused = requests.get(  # no role on this vault: default deny
            f"{urls['keyvault-name']}/keys?api-version=7.6",
            headers={"Authorization": f"Bearer {token}"},
            verify=ca,
            timeout=10,
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["innererror"]["code"] == "ForbiddenByRbac"
    finally:
        process.terminate()
        process.wait(timeout=10)
