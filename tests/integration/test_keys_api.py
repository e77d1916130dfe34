"""The keys API over real HTTP: local host → engine → Azurite."""

import datetime as dt
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.fixtures.funchost import Api
from tests.helpers import errors


def name(prefix="k"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize(
    ("key_type", "family", "size"),
    [
        ("rsa-2048", rsa.RSAPublicKey, 2048),
        ("rsa-3072", rsa.RSAPublicKey, 3072),
        ("ecdsa-p256", ec.EllipticCurvePublicKey, 256),
        ("ecdsa-p384", ec.EllipticCurvePublicKey, 384),
        ("ecdsa-p521", ec.EllipticCurvePublicKey, 521),
    ],
)
def test_create_and_read_every_asymmetric_type(api: Api, key_type, family, size):
    key = name()
    assert api.post(f"keymgmt/key/{key}", json={"type": key_type}).status_code == 204
    response = api.get(f"keymgmt/key/{key}")
    assert response.status_code == 200
    data = response.json()["data"]
    assert set(data) == {
        "name",
        "type",
        "deletion_allowed",
        "latest_version",
        "min_enabled_version",
        "versions",
    }
    assert data["name"] == key and data["type"] == key_type
    assert data["latest_version"] == 1 and data["min_enabled_version"] == 1
    assert data["deletion_allowed"] is False
    version = data["versions"]["1"]
    public = serialization.load_pem_public_key(version["public_key"].encode())
    assert isinstance(public, family) and public.key_size == size
    assert version["public_key"].startswith("-----BEGIN PUBLIC KEY-----\n")
    created = dt.datetime.fromisoformat(version["creation_time"].replace("Z", "+00:00"))
    assert abs(dt.datetime.now(dt.UTC) - created) < dt.timedelta(minutes=5)


@pytest.mark.slow
def test_rsa_4096(api: Api):
    key = name()
    assert api.post(f"keymgmt/key/{key}", json={"type": "rsa-4096"}).status_code == 204
    pem = api.get(f"keymgmt/key/{key}").json()["data"]["versions"]["1"]["public_key"]
    assert serialization.load_pem_public_key(pem.encode()).key_size == 4096


def test_aes_has_no_public_key_and_default_type_is_rsa_2048(api: Api):
    aes, default = name(), name()
    assert api.put(f"keymgmt/key/{aes}", json={"type": "aes256-gcm96"}).status_code == 204
    assert api.get(f"keymgmt/key/{aes}").json()["data"]["versions"]["1"].keys() == {"creation_time"}
    assert api.put(f"keymgmt/key/{default}", data="null").status_code == 204
    assert api.get(f"keymgmt/key/{default}").json()["data"]["type"] == "rsa-2048"


def test_rotate_update_and_min_enabled_version(api: Api):
    key = name()
    api.post(f"keymgmt/key/{key}", json={"type": "ecdsa-p256"})
    assert api.put(f"keymgmt/key/{key}/rotate", data="null").status_code == 204
    assert api.post(f"keymgmt/key/{key}/rotate", json={}).status_code == 204
    data = api.get(f"keymgmt/key/{key}").json()["data"]
    assert data["latest_version"] == 3 and sorted(data["versions"]) == ["1", "2", "3"]
    pems = {v["public_key"] for v in data["versions"].values()}
    assert len(pems) == 3, "each version has new material"

    # The CLI sends strings.
    assert api.put(f"keymgmt/key/{key}", json={"min_enabled_version": "2"}).status_code == 204
    data = api.get(f"keymgmt/key/{key}").json()["data"]
    assert data["min_enabled_version"] == 2 and sorted(data["versions"]) == ["2", "3"]
    assert data["latest_version"] == 3
    assert api.put(f"keymgmt/key/{key}", json={"min_enabled_version": 1}).status_code == 204
    assert sorted(api.get(f"keymgmt/key/{key}").json()["data"]["versions"]) == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (4, "between 1 and latest_version (3), got 4"),
        (-1, "min_enabled_version must be 0 (all versions) or a version number"),
        ("two", "min_enabled_version must be an integer"),
    ],
)
def test_bad_min_enabled_version_changes_nothing(api: Api, value, says):
    key = name()
    api.post(f"keymgmt/key/{key}", json={"type": "ecdsa-p256"})
    api.post(f"keymgmt/key/{key}/rotate")
    api.post(f"keymgmt/key/{key}/rotate")
    response = api.put(
        f"keymgmt/key/{key}", json={"min_enabled_version": value, "deletion_allowed": True}
    )
    assert response.status_code == 400 and says in errors(response)[0]
    data = api.get(f"keymgmt/key/{key}").json()["data"]
    assert data["min_enabled_version"] == 1 and data["deletion_allowed"] is False


def test_type_cannot_change_and_unknown_type_is_named(api: Api):
    key = name()
    api.post(f"keymgmt/key/{key}", json={"type": "rsa-2048"})
    response = api.post(f"keymgmt/key/{key}", json={"type": "ecdsa-p256"})
    assert response.status_code == 400
    assert "type cannot be changed" in errors(response)[0] and "rsa-2048" in errors(response)[0]
    assert api.post(f"keymgmt/key/{key}", json={"type": "rsa-2048"}).status_code == 204
    response = api.post(f"keymgmt/key/{name()}", json={"type": "rsa-1024"})
    assert response.status_code == 400
    assert "invalid type: allowed are aes256-gcm96, rsa-2048" in errors(response)[0]
    assert "rsa-1024" not in errors(response)[0]  # the input is named, not repeated
    assert "aes256-gcm96" in errors(response)[0] and "ecdsa-p521" in errors(response)[0]


def test_delete_rules(api: Api):
    key = name()
    api.post(f"keymgmt/key/{key}", json={"type": "ecdsa-p256"})
    response = api.delete(f"keymgmt/key/{key}")
    assert response.status_code == 400 and "deletion_allowed" in errors(response)[0]
    assert api.get(f"keymgmt/key/{key}").status_code == 200
    assert api.put(f"keymgmt/key/{key}", json={"deletion_allowed": "true"}).status_code == 204
    assert api.get(f"keymgmt/key/{key}").json()["data"]["deletion_allowed"] is True
    assert api.delete(f"keymgmt/key/{key}").status_code == 204
    missing = api.get(f"keymgmt/key/{key}")
    assert missing.status_code == 404 and missing.json() == {"errors": []}
    assert key not in (api.list("keymgmt/key").json()["data"]["keys"])
    assert api.delete(f"keymgmt/key/{key}").status_code == 204, "deleting nothing is fine"
    # The name can be used again, from version 1.
    api.post(f"keymgmt/key/{key}", json={"type": "ecdsa-p256"})
    assert api.get(f"keymgmt/key/{key}").json()["data"]["latest_version"] == 1


def test_list_forms(api: Api):
    keys = sorted(name("list") for _ in range(3))
    for key in keys:
        api.post(f"keymgmt/key/{key}", json={"type": "ecdsa-p256"})
    for params in ({"list": "true"}, {"list": "True"}, {"list": "1"}):
        listed = api.get("keymgmt/key/", params=params).json()["data"]["keys"]
        assert set(keys) <= set(listed) and listed == sorted(listed)
    assert api.get("keymgmt/key", params={"list": "nope"}).status_code == 400
    assert api.get(f"keymgmt/key/{keys[0]}/kms", params={"list": "true"}).status_code == 404


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("keymgmt/key/a%23b", 400),  # '#'
        ("keymgmt/key/a%3Fb", 400),  # '?'
        ("keymgmt/key/" + "a" * 101, 400),  # too long
        ("keymgmt/key/a%2Fb", None),  # '/' never becomes part of a name
        ("keymgmt/key/-lead", 400),
    ],
)
def test_bad_names_are_refused(api: Api, path, status):
    response = api.post(path, json={"type": "ecdsa-p256"})
    if status is None:
        assert response.status_code in (400, 404, 405)
    else:
        assert response.status_code == status
        assert "name" in errors(response)[0]


def test_malformed_and_oversized_bodies(api: Api):
    key = name()
    response = api.post(f"keymgmt/key/{key}", data="{not json")
    assert response.status_code == 400 and "JSON" in errors(response)[0]
    response = api.post(f"keymgmt/key/{key}", data="[1]")
    assert response.status_code == 400 and "JSON object" in errors(response)[0]
    big = json.dumps({"type": "rsa-2048", "pad": "x" * (2 * 1024 * 1024)})
    response = api.post(f"keymgmt/key/{key}", data=big)
    assert response.status_code == 413 and "too large" in errors(response)[0]
    assert api.get(f"keymgmt/key/{key}").status_code == 404, "nothing was created"


def test_unknown_fields_are_ignored_and_the_write_answers_204(api: Api):
    # As OpenBao: the ignored-fields warning rides only on an answer the handler gives; a
    # write that answers nothing else is 204 (so the CLI prints "Success!").
    key = name()
    response = api.post(f"keymgmt/key/{key}", json={"type": "ecdsa-p256", "colour": "red"})
    assert response.status_code == 204 and response.content == b""
    assert api.get(f"keymgmt/key/{key}").json()["data"]["type"] == "ecdsa-p256"


def test_tokens(api: Api):
    url = f"{api.url}/v1/keymgmt/key"
    assert requests.get(url, params={"list": "true"}, timeout=30).status_code == 403
    wrong = requests.get(
        url, params={"list": "true"}, headers={"X-Vault-Token": "nope"}, timeout=30
    )
    assert wrong.status_code == 403 and wrong.json() == {"errors": ["permission denied"]}
    bearer = requests.get(
        f"{api.url}/v1/auth/token/lookup-self", headers={"Authorization": "Bearer root"}, timeout=30
    )
    assert bearer.status_code == 200 and bearer.json()["data"]["policies"] == ["root"]
    # Vault shows the caller its own token (bao login stores it from here).
    assert bearer.json()["data"]["id"] == "root"


def test_unsupported_operation_and_unknown_mount(api: Api):
    response = api.delete("keymgmt/key/x/rotate")
    assert response.status_code == 405
    response = api.get(f"nomount{uuid.uuid4().hex[:6]}/key", params={"list": "true"})
    assert response.status_code == 404 and "no handler for route" in errors(response)[0]


def test_auto_rotate_period(api: Api):
    key = name()
    api.post(f"keymgmt/key/{key}", json={"type": "ecdsa-p256"})
    response = api.post(f"keymgmt/key/{key}", json={"auto_rotate_period": "30m"})
    assert response.status_code == 400 and "at least 1h" in errors(response)[0]
    assert api.post(f"keymgmt/key/{key}", json={"auto_rotate_period": "24h"}).status_code == 204
    data = api.get(f"keymgmt/key/{key}").json()["data"]
    assert data["auto_rotate_period"] == 86400
    created = dt.datetime.fromisoformat(
        data["versions"]["1"]["creation_time"].replace("Z", "+00:00")
    )
    nxt = dt.datetime.fromisoformat(data["next_rotation_time"].replace("Z", "+00:00"))
    assert abs((nxt - created) - dt.timedelta(hours=24)) < dt.timedelta(seconds=2)
    assert api.post(f"keymgmt/key/{key}", json={"auto_rotate_period": 0}).status_code == 204
    assert "auto_rotate_period" not in api.get(f"keymgmt/key/{key}").json()["data"]


def test_sixteen_concurrent_rotations_give_consecutive_versions(api: Api):
    key = name("race")
    api.post(f"keymgmt/key/{key}", json={"type": "ecdsa-p256"})

    def rotate(_):
        with requests.Session() as s:
            return s.post(
                f"{api.url}/v1/keymgmt/key/{key}/rotate",
                headers={"X-Vault-Token": "root"},
                timeout=120,
            ).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(rotate, range(16)))
    assert statuses == [204] * 16
    data = api.get(f"keymgmt/key/{key}").json()["data"]
    assert data["latest_version"] == 17
    assert sorted(map(int, data["versions"])) == list(range(1, 18))
    assert len({v["public_key"] for v in data["versions"].values()}) == 17


def test_mounts(api: Api):
    mount = f"m{uuid.uuid4().hex[:8]}"
    # A write to a path ending in "/" is refused, as OpenBao refuses it.
    slashed = api.post(f"sys/mounts/{mount}/", json={"type": "keymgmt"})
    assert slashed.status_code == 400
    assert errors(slashed) == ["cannot write to a path ending in '/'"]
    assert (
        api.post(
            f"sys/mounts/{mount}", json={"type": "keymgmt", "description": None, "config": None}
        ).status_code
        == 204
    )
    again = api.post(f"sys/mounts/{mount}", json={"type": "keymgmt"})
    assert again.status_code == 400 and "already in use" in errors(again)[0]
    listed = api.get("sys/mounts").json()
    assert listed[f"{mount}/"]["type"] == "keymgmt" and f"{mount}/" in listed["data"]
    assert api.get(f"{mount}/key", params={"list": "true"}).status_code == 404
    api.post(f"{mount}/key/k1", json={"type": "ecdsa-p256"})
    assert api.get(f"{mount}/key", params={"list": "true"}).json()["data"]["keys"] == ["k1"]
    # A disable removes the mount with its keys (deletion_allowed or not), as Vault drops a
    # disabled mount's data; refused only while a key is distributed (test_mounts_api.py).
    assert api.delete(f"sys/mounts/{mount}/").status_code == 204
    assert f"{mount}/" not in api.get("sys/mounts").json()
    assert api.post(f"sys/mounts/{mount}", json={"type": "keymgmt"}).status_code == 204
    assert api.get(f"{mount}/key", params={"list": "true"}).status_code == 404


@pytest.mark.parametrize(
    ("mount", "body", "says"),
    [
        ("kv", {"type": "kv"}, "unsupported secrets engine type 'kv'"),
        ("admin", {"type": "keymgmt"}, "reserved"),
        ("runtime", {"type": "keymgmt"}, "reserved"),
        ("x", {}, "type"),
    ],
)
def test_mount_refusals(api: Api, mount, body, says):
    response = api.post(f"sys/mounts/{mount}", json=body)
    assert response.status_code == 400 and says in errors(response)[0]


def test_sys_endpoints(api: Api):
    health = requests.get(f"{api.url}/v1/sys/health", timeout=30)
    assert health.status_code == 200 and health.json()["initialized"] is True
    assert health.json()["sealed"] is False and isinstance(health.json()["server_time_utc"], int)
    assert requests.head(f"{api.url}/v1/sys/health", timeout=30).status_code == 200
    assert requests.get(f"{api.url}/v1/sys/health?activecode=299", timeout=30).status_code == 299
    assert requests.get(f"{api.url}/v1/sys/seal-status", timeout=30).json()["sealed"] is False
    assert requests.get(f"{api.url}/v1/sys/leader", timeout=30).json()["ha_enabled"] is False
