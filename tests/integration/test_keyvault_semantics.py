"""The engine against Key Vault as the live service behaves (docs/kvemu.md): the seed's five
access-policy permissions only, deletions that take seconds, imports whose answer is lost.

Each test starts its own host when it needs settings the session host does not have.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.fixtures.funchost import Api, emulator_settings, engine_settings, serving
from tests.fixtures.kvemu import VAULT
from tests.integration.test_distribution import (
    by_tag,
    distribute,
    errors,
    new_key,
    new_provider,
    read_dist,
    remote,
)
from tools.kvemu import Emulator

SEED_PERMISSIONS = ["create", "delete", "get", "import", "update"]
OWNER_PERMISSIONS = [*SEED_PERMISSIONS, "list", "recover", "purge", "sign", "verify", "rotate"]


@pytest.fixture
def policy_vault(kv: Emulator) -> Iterator[str]:
    """``second-vault`` switched to access policies for this test (the kv fixture resets it)."""
    kv.configure_vault("second-vault", permission_model="access_policy")
    kv.clear_grants("second-vault")
    # the vault owner (the tests' own client) holds every key permission, as in the seed
    kv.set_access_policy("second-vault", kv.system_identity.object_id, OWNER_PERMISSIONS)
    yield "second-vault"


def sp_provider(api: Api, kv: Emulator, vault: str, permissions: list[str]) -> str:
    """A provider with its own service principal holding exactly ``permissions``."""
    client_id, secret = str(uuid.uuid4()), uuid.uuid4().hex
    kv.add_client(client_id, secret)
    kv.set_access_policy(vault, client_id, permissions)
    return new_provider(
        api,
        {"client_id": client_id, "client_secret": secret, "tenant_id": kv.tenant_id},
        vault,
    )


def reconcile(api: Api) -> dict[str, Any]:
    assert requests.post(f"{api.url}/admin/functions/reconciler", timeout=120).status_code == 202
    return api.get("sys/keymgmt/reconcile").json()["data"]


def test_everything_works_with_the_seed_permissions_and_list_is_reported_missing(
    kv_api: Api, kv: Emulator, policy_vault: str, kv_key_client
):
    provider = sp_provider(kv_api, kv, policy_vault, SEED_PERMISSIONS)
    key = new_key(kv_api, versions=2)
    assert distribute(kv_api, provider, key).status_code == 204
    assert kv_api.post(f"keymgmt/key/{key}/rotate").status_code == 204
    assert kv_api.post(f"keymgmt/key/{key}", json={"min_enabled_version": 2}).status_code == 204
    dist = read_dist(kv_api, provider, key)
    versions = remote(kv, dist["name"], policy_vault)
    assert by_tag(versions) == dist["versions"] and len(versions) == 3
    assert [v["enabled"] for v in versions] == [False, True, True]

    health = kv_api.get(f"keymgmt/kms/{provider}/health").json()["data"]
    assert health["key_vault"] == "ok" and health["permissions"]["missing"] == ["list"]
    status = reconcile(kv_api)
    mine = [d for d in status["details"] if d["key"] == key]
    assert mine and mine[0]["missing_permissions"] == ["list"] and not mine[0]["errors"]
    assert any(
        p["provider"] == provider and p["missing"] == ["list"]
        for p in status["missing_permissions"]
    )
    # a version added in Key Vault by hand is still seen: it is the latest one
    foreign = kv_key_client(policy_vault).rotate_key(dist["name"])
    drift = [d["drift"] for d in reconcile(kv_api)["drift"] if d["key"] == key]
    assert any(foreign.properties.version in d and "not created by" in d for d in drift)

    # removal (delete) and a new distribution right away, while the old name is being deleted
    kv.configure_vault(policy_vault, delete_delay=3)
    assert kv_api.delete(f"keymgmt/kms/{provider}/key/{key}").status_code == 204
    again = distribute(kv_api, provider, key)
    assert again.status_code == 204, again.text
    second = read_dist(kv_api, provider, key)
    assert second["name"] != dist["name"] and sorted(second["versions"]) == ["1", "2", "3"]


def test_a_missing_permission_is_named_in_the_refusal(kv_api: Api, kv: Emulator, policy_vault):
    provider = sp_provider(kv_api, kv, policy_vault, ["get", "create", "update", "delete"])
    key = new_key(kv_api)
    refused = distribute(kv_api, provider, key)
    assert refused.status_code == 502, refused.text
    message = errors(refused)
    assert "ForbiddenByPolicy" in message and "the key permission 'import'" in message
    assert "Microsoft.KeyVault/vaults/keys/import/action" in message
    assert kv_api.get(f"keymgmt/kms/{provider}/key/{key}").json()["data"]["versions"] == {}


def test_a_name_being_deleted_outside_the_engine_is_moved_past(
    kv_api: Api, kv: Emulator, kv_key_client
):
    """Key Vault hides a key that is being deleted from GET and GET deleted, and refuses the
    name with 409 ObjectIsBeingDeleted: the first import moves the distribution to a free name."""
    from tests.integration.test_distribution import mi_provider

    provider = mi_provider(kv_api, kv)
    key = new_key(kv_api)
    client = kv_key_client(VAULT)
    kv.configure_vault(VAULT, delete_delay=5)
    now = int(time.time())
    taken = [f"{key}-{now + i}" for i in range(4)]
    for name in taken:
        client.create_ec_key(name)
        client.begin_delete_key(name)
    response = distribute(kv_api, provider, key)
    assert response.status_code == 204, response.text
    dist = read_dist(kv_api, provider, key)
    assert dist["name"] not in taken and int(dist["name"].rsplit("-", 1)[1]) > now + 3
    assert by_tag(remote(kv, dist["name"])).keys() == {"1"}


@pytest.fixture
def impatient_api(azurite: Any, kv_emulator: Emulator, kv: Emulator) -> Iterator[Api]:
    """A host that gives Key Vault 1 s to answer and a lost import 2 s to land."""
    settings = engine_settings(
        azurite,
        f"slow{os.getpid()}{uuid.uuid4().hex[:4]}",
        **emulator_settings(kv_emulator),
        KEYMGMT_KEYVAULT_READ_TIMEOUT="1",
        KEYMGMT_UNKNOWN_IMPORT_WAIT="2",
    )
    with serving(settings) as host:
        yield Api(host)


def test_an_import_slower_than_the_read_timeout_lands_once(impatient_api: Api, kv: Emulator):
    from tests.integration.test_distribution import mi_provider

    api = impatient_api
    provider = mi_provider(api, kv)
    key = new_key(api)
    since = len(kv.recorded())
    kv.fault(VAULT, "latency", "import", times=1, delay=4)
    first = distribute(api, provider, key)
    assert first.status_code == 503, first.text  # honest: the outcome is not known yet
    assert "may still land" in errors(first)
    time.sleep(3)  # the slow import lands meanwhile
    again = distribute(api, provider, key)
    assert again.status_code == 204, again.text
    dist = read_dist(api, provider, key)
    assert by_tag(remote(kv, dist["name"])) == dist["versions"]
    assert len(remote(kv, dist["name"])) == 1
    imports = [r for r in kv.recorded()[since:] if r.operation_id == "ImportKey"]
    assert len(imports) == 1  # sent once: never retried blindly


def test_a_lost_import_that_lands_after_its_retry_is_disabled_and_reported_once(
    impatient_api: Api, kv: Emulator
):
    from tests.integration.test_distribution import mi_provider

    api = impatient_api
    provider = mi_provider(api, kv)
    key = new_key(api)
    kv.fault(VAULT, "latency", "import", times=1, delay=8)
    assert distribute(api, provider, key).status_code == 503
    time.sleep(2.5)  # past the wait: the import is sent again (and lands at once)
    assert distribute(api, provider, key).status_code == 204
    dist = read_dist(api, provider, key)
    deadline = time.monotonic() + 15
    while len(remote(kv, dist["name"]) or []) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)  # the first try lands late: a duplicate of engine version 1
    versions = remote(kv, dist["name"])
    assert len(versions) == 2
    first = [d["drift"] for d in reconcile(api)["drift"] if d["key"] == key]
    assert len(first) == 1 and "duplicate import of engine version 1" in first[0]
    duplicate = next(v for v in versions if v["version"] != dist["versions"]["1"])
    after = {v["version"]: v["enabled"] for v in remote(kv, dist["name"])}
    assert after == {dist["versions"]["1"]: True, duplicate["version"]: False}
    assert not [d for d in reconcile(api)["drift"] if d["key"] == key]  # reported once
    assert read_dist(api, provider, key)["versions"] == dist["versions"]
