"""Distribution into Azure Key Vault over real HTTP: the local host, Azurite, and the Key Vault
emulator driven by the real Azure SDK. Credentials, compatibility, BYOK and software imports,
rotation and ``min_enabled_version`` propagation, removal, crash recovery, throttling, outages,
private endpoint diagnostics.

Every test uses its own key and provider names; the emulator is shared within a worker and the
``kv`` fixture clears its faults and grants after each test.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from tests.fixtures.funchost import (
    Api,
    build_service,
    emulator_settings,
    engine_settings,
    serving,
)
from tests.fixtures.kvemu import keep_granted
from tests.helpers import error_text as errors
from tools.kvemu import Emulator

VAULT = "keyvault-name"
SECOND_VAULT = "second-vault"
OFFICER = "Key Vault Crypto Officer"
MOUNT = "keymgmt"


# -- helpers -----------------------------------------------------------------------------------


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def new_key(api: Api, key_type: str = "rsa-2048", versions: int = 1) -> str:
    name = uid("k")
    response = api.post(f"keymgmt/key/{name}", json={"type": key_type})
    assert response.status_code == 204, response.text
    for _ in range(versions - 1):
        assert api.post(f"keymgmt/key/{name}/rotate").status_code == 204
    return name


def new_provider(api: Api, credentials: dict[str, str] | None, vault: str = VAULT) -> str:
    name = uid("kms")
    body: dict[str, Any] = {"provider": "azurekeyvault", "key_collection": vault}
    if credentials is not None:
        body["credentials"] = credentials
    response = api.put(f"keymgmt/kms/{name}", json=body)
    assert response.status_code == 204, response.text
    return name


def mi_provider(api: Api, kv: Emulator, vault: str = VAULT) -> str:
    """A provider using the host's (system-assigned) managed identity."""
    return new_provider(api, {"tenant_id": kv.tenant_id}, vault)


def distribute(
    api: Api, provider: str, key: str, purpose: str = "encrypt,decrypt", **extra: Any
) -> Any:
    return api.put(f"keymgmt/kms/{provider}/key/{key}", json={"purpose": purpose, **extra})


def read_dist(api: Api, provider: str, key: str) -> dict[str, Any]:
    response = api.get(f"keymgmt/kms/{provider}/key/{key}")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def remote(kv: Emulator, name: str, vault: str = VAULT) -> list[dict[str, Any]] | None:
    """The emulator's versions of key ``name`` (metadata only), or None."""
    for entry in kv.describe():
        if entry["name"] == vault:
            for key in entry["keys"]:
                if key["name"] == name:
                    return key["versions"]
    return None


def remote_names(kv: Emulator, prefix: str) -> list[str]:
    names = []
    for entry in kv.describe():
        names += [k["name"] for k in entry["keys"] if k["name"].startswith(prefix)]
        names += [n for n in entry["deleted"] if n.startswith(prefix)]
    return names


def by_tag(versions: list[dict[str, Any]]) -> dict[str, str]:
    """engine version (tag) → Key Vault version id; fails on duplicates."""
    tags = [v["tags"]["keymgmt-version"] for v in versions]
    assert len(tags) == len(set(tags)), f"duplicate imports: {sorted(tags)}"
    return {v["tags"]["keymgmt-version"]: v["version"] for v in versions}


def wait_deleted(client: Any, name: str, timeout: float = 10.0) -> Any:
    """The deleted key once Key Vault shows it (a deletion completes a moment after DELETE)."""
    from azure.core.exceptions import ResourceNotFoundError

    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.get_deleted_key(name)
        except ResourceNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def engine_public(api: Api, key: str, version: str) -> Any:
    data = api.get(f"keymgmt/key/{key}").json()["data"]
    return serialization.load_pem_public_key(data["versions"][version]["public_key"].encode())


def responses(kv: Emulator, since: int, operation: str | None = None) -> list[Any]:
    return [r for r in kv.recorded()[since:] if operation is None or r.operation_id == operation]


@pytest.fixture(scope="module")
def env_client(kv_emulator: Emulator) -> tuple[str, str]:
    client_id, secret = str(uuid.uuid4()), uuid.uuid4().hex
    app = kv_emulator.add_client(client_id, secret)
    keep_granted(kv_emulator, app.object_id)
    return client_id, secret


@pytest.fixture(scope="module")
def env_api(azurite: Any, kv_emulator: Emulator, env_client: tuple[str, str]) -> Iterator[Api]:
    """A second host whose app settings carry a service principal (AZURE_CLIENT_ID/...) and
    treat loopback as private (KEYMGMT_PRIVATE_RANGES)."""
    client_id, secret = env_client
    settings = engine_settings(
        azurite,
        f"env{os.getpid()}",
        **emulator_settings(kv_emulator),
        AZURE_CLIENT_ID=client_id,
        AZURE_CLIENT_SECRET=secret,
        AZURE_TENANT_ID=kv_emulator.tenant_id,
        KEYMGMT_PRIVATE_RANGES="127.0.0.0/8",
    )
    with serving(settings) as host:
        yield Api(host)


@pytest.fixture(scope="module")
def uami(kv_emulator: Emulator) -> Any:
    return kv_emulator.add_user_assigned_identity(str(uuid.uuid4()))


@pytest.fixture(scope="module")
def uami_api(azurite: Any, kv_emulator: Emulator, uami: Any) -> Iterator[Api]:
    """A second host with a user-assigned managed identity (KEYMGMT_MANAGED_IDENTITY_CLIENT_ID)."""
    settings = engine_settings(
        azurite,
        f"uami{os.getpid()}",
        **emulator_settings(kv_emulator),
        KEYMGMT_MANAGED_IDENTITY_CLIENT_ID=uami.client_id,
    )
    with serving(settings) as host:
        yield Api(host)


# -- credentials: each source really used, first match wins -------------------------------------


def test_stored_client_secret_is_used_and_wins_over_managed_identity(kv_api: Api, kv: Emulator):
    client_id, secret = str(uuid.uuid4()), uuid.uuid4().hex
    kv.add_client(client_id, secret)
    kv.clear_grants(VAULT)
    kv.grant(VAULT, client_id, OFFICER)  # only this app may act on the vault now
    stored = new_provider(
        kv_api, {"client_id": client_id, "client_secret": secret, "tenant_id": kv.tenant_id}
    )
    key = new_key(kv_api)
    response = distribute(kv_api, stored, key)
    assert response.status_code == 204, response.text
    assert by_tag(remote(kv, read_dist(kv_api, stored, key)["name"])).keys() == {"1"}

    # The managed identity is not granted: a provider without a secret falls back to it, and
    # is refused, so the distribution above really used the stored client secret.
    fallback = mi_provider(kv_api, kv)
    other = new_key(kv_api)
    refused = distribute(kv_api, fallback, other)
    assert refused.status_code == 502, refused.text
    assert "ForbiddenByRbac" in errors(refused)
    assert remote_names(kv, f"{other}-") == []


def test_environment_credentials_win_over_stored_ones(
    env_api: Api, kv_api: Api, kv: Emulator, env_client: tuple[str, str]
):
    env_id, _ = env_client
    kv.clear_grants(VAULT)
    kv.grant(VAULT, env_id, OFFICER)
    bogus = {
        "client_id": str(uuid.uuid4()),  # not registered: unusable
        "client_secret": "not-the-secret",
        "tenant_id": kv.tenant_id,
    }
    provider = new_provider(env_api, bogus)
    key = new_key(env_api)
    response = distribute(env_api, provider, key)
    assert response.status_code == 204, response.text
    versions = remote(kv, read_dist(env_api, provider, key)["name"])
    assert by_tag(versions).keys() == {"1"}

    # Without the environment's service principal the stored (bogus) client is used: refused.
    provider = new_provider(kv_api, bogus)
    key = new_key(kv_api)
    refused = distribute(kv_api, provider, key)
    assert refused.status_code == 502, refused.text
    assert "AADSTS700016" in errors(refused) and "could not get an access token" in errors(refused)
    assert f"stored credentials (client secret of app {bogus['client_id']})" in errors(refused)
    assert remote_names(kv, f"{key}-") == []


def test_system_assigned_managed_identity_through_the_local_identity_endpoint(
    kv_api: Api, kv: Emulator
):
    kv.grant(VAULT, kv.system_identity.object_id, OFFICER)
    provider = mi_provider(kv_api, kv)
    key = new_key(kv_api)
    response = distribute(kv_api, provider, key)
    assert response.status_code == 204, response.text
    assert by_tag(remote(kv, read_dist(kv_api, provider, key)["name"])).keys() == {"1"}
    health = kv_api.get(f"keymgmt/kms/{provider}/health").json()["data"]
    assert health["token"] == "ok" and health["key_vault"] == "ok"


def test_user_assigned_managed_identity_from_the_setting(uami_api: Api, kv: Emulator, uami: Any):
    kv.clear_grants(VAULT)
    kv.grant(VAULT, uami.object_id, OFFICER)  # not the system identity
    provider = mi_provider(uami_api, kv)
    key = new_key(uami_api)
    response = distribute(uami_api, provider, key)
    assert response.status_code == 204, response.text
    assert by_tag(remote(kv, read_dist(uami_api, provider, key)["name"])).keys() == {"1"}

    kv.clear_grants()
    kv.grant(VAULT, kv.system_identity.object_id, OFFICER)  # now only the system identity
    other = new_key(uami_api)
    refused = distribute(uami_api, provider, other)
    assert refused.status_code == 502 and "ForbiddenByRbac" in errors(refused)


@pytest.mark.parametrize(
    "credentials",
    [None, {"client_id": "app", "client_secret": "secret"}, {"environment": "AzureCloud"}],
)
def test_missing_tenant_is_a_400_naming_it(kv_api: Api, kv: Emulator, credentials):
    provider = new_provider(kv_api, credentials)
    key = new_key(kv_api)
    since = len(kv.recorded())
    response = distribute(kv_api, provider, key)
    assert response.status_code == 400, response.text
    assert "tenant_id is required" in errors(response)
    assert "AZURE_TENANT_ID" in errors(response)
    assert responses(kv, since) == []  # no remote call at all
    assert kv_api.get(f"keymgmt/kms/{provider}/key/{key}").status_code == 404
    assert kv_api.list(f"keymgmt/key/{key}/kms").status_code == 404
    health = kv_api.get(f"keymgmt/kms/{provider}/health")
    assert health.status_code == 200
    assert "tenant_id is required" in health.json()["data"]["credential"]


def test_bad_secret_is_a_clear_refusal_and_a_fixed_secret_is_picked_up(kv_api: Api, kv: Emulator):
    client_id, secret = str(uuid.uuid4()), uuid.uuid4().hex
    kv.grant(VAULT, kv.add_client(client_id, secret).object_id, OFFICER)
    creds = {"client_id": client_id, "client_secret": "wrong-secret", "tenant_id": kv.tenant_id}
    provider = new_provider(kv_api, creds)
    key = new_key(kv_api)
    response = distribute(kv_api, provider, key)
    assert response.status_code == 502, response.text
    message = errors(response)
    assert "AADSTS7000215" in message and "could not get an access token" in message
    assert f"the provider's stored credentials (client secret of app {client_id})" in message
    assert "wrong-secret" not in response.text
    assert kv_api.get(f"keymgmt/kms/{provider}/key/{key}").status_code == 404
    assert remote_names(kv, f"{key}-") == []
    health = kv_api.get(f"keymgmt/kms/{provider}/health").json()["data"]
    assert health["token"].startswith("failed") and "AADSTS7000215" in health["token"]

    # Updating the credentials rebuilds the cached credential.
    fixed = kv_api.put(
        f"keymgmt/kms/{provider}", json={"credentials": {**creds, "client_secret": secret}}
    )
    assert fixed.status_code == 204
    response = distribute(kv_api, provider, key)
    assert response.status_code == 204, response.text


# -- compatibility: refused before any remote call ----------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "body", "says"),
    [
        (
            "aes256-gcm96",
            {"purpose": "encrypt,decrypt"},
            "allowed: rsa-2048, rsa-3072, rsa-4096 (any purpose), and ecdsa-p256, ecdsa-p384, "
            "ecdsa-p521 (sign, verify)",
        ),
        ("ecdsa-p256", {"purpose": "encrypt"}, "sign and verify only, not encrypt"),
        ("ecdsa-p384", {"purpose": "sign,wrap"}, "sign and verify only, not wrap"),
        (
            "rsa-2048",
            {"purpose": "encrypt,frobnicate"},
            "invalid purpose: allowed are encrypt, decrypt",
        ),
        ("rsa-2048", {"purpose": ""}, "purpose: at least one is required"),
        ("rsa-2048", {"purpose": []}, "purpose: at least one is required"),
        ("rsa-2048", {}, "purpose is required"),
        (
            "rsa-2048",
            {"purpose": "sign", "protection": "fast"},
            "invalid protection: allowed are hsm, software",
        ),
        ("rsa-2048", {"purpose": "sign", "protection": 7}, "protection"),
        ("rsa-2048", {"purpose": {"a": 1}}, "purpose"),
        ("rsa-2048", {"purpose": "sign", "expiration_period": "soon"}, "expiration_period"),
        ("rsa-2048", {"purpose": "sign", "expiration_period": -5}, "expiration_period"),
    ],
)
def test_incompatible_requests_are_400_and_create_nothing(
    kv_api: Api, kv: Emulator, key_type, body, says
):
    provider = mi_provider(kv_api, kv)
    key = new_key(kv_api, key_type)
    since = len(kv.recorded())
    response = kv_api.put(f"keymgmt/kms/{provider}/key/{key}", json=body)
    assert response.status_code == 400, response.text
    assert says in errors(response)
    assert responses(kv, since) == []
    assert kv_api.get(f"keymgmt/kms/{provider}/key/{key}").status_code == 404
    assert kv_api.list(f"keymgmt/kms/{provider}/key").status_code == 404
    assert kv_api.list(f"keymgmt/key/{key}/kms").status_code == 404
    assert remote_names(kv, f"{key}-") == []


def test_a_key_name_key_vault_cannot_hold_is_refused_before_any_remote_call(
    kv_api: Api, kv: Emulator
):
    provider = mi_provider(kv_api, kv)
    key = f"k_{uuid.uuid4().hex[:10]}"  # a valid engine name; Key Vault allows no '_'
    assert kv_api.post(f"keymgmt/key/{key}", json={"type": "rsa-2048"}).status_code == 204
    since = len(kv.recorded())
    response = distribute(kv_api, provider, key)
    assert response.status_code == 400, response.text
    assert "allows only letters, digits and '-'" in errors(response)
    assert responses(kv, since) == []


def test_ecdsa_p256_for_sign_verify_is_an_ec_hsm_key(kv_api: Api, kv: Emulator, kv_crypto_client):
    from azure.keyvault.keys.crypto import SignatureAlgorithm

    provider = mi_provider(kv_api, kv)
    key = new_key(kv_api, "ecdsa-p256")
    response = distribute(kv_api, provider, key, purpose="verify,sign")
    assert response.status_code == 204, response.text
    dist = read_dist(kv_api, provider, key)
    assert dist["purpose"] == "sign,verify" and dist["protection"] == "hsm"
    (version,) = remote(kv, dist["name"])
    assert (version["kty"], version["crv"]) == ("EC-HSM", "P-256")
    assert sorted(version["key_ops"]) == ["sign", "verify"]

    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"distributed")
    digest = digest.finalize()
    kid = f"{kv.vault_url(VAULT)}/keys/{dist['name']}/{dist['versions']['1']}"
    raw = kv_crypto_client(kid).sign(SignatureAlgorithm.es256, digest).signature
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    engine_public(kv_api, key, "1").verify(
        utils.encode_dss_signature(r, s), digest, ec.ECDSA(utils.Prehashed(hashes.SHA256()))
    )


def test_software_protection_imports_a_plain_rsa_key(kv_api: Api, kv: Emulator, kv_key_client):
    provider = mi_provider(kv_api, kv)
    key = new_key(kv_api)
    response = distribute(kv_api, provider, key, purpose="wrap,unwrap", protection="software")
    assert response.status_code == 204, response.text
    dist = read_dist(kv_api, provider, key)
    assert dist["protection"] == "software" and dist["purpose"] == "unwrap,wrap"
    (version,) = remote(kv, dist["name"])
    assert version["kty"] == "RSA"  # not RSA-HSM
    assert sorted(version["key_ops"]) == ["unwrapKey", "wrapKey"]
    fetched = kv_key_client().get_key(dist["name"], dist["versions"]["1"])
    numbers = engine_public(kv_api, key, "1").public_numbers()
    assert int.from_bytes(fetched.key.n, "big") == numbers.n
    assert int.from_bytes(fetched.key.e, "big") == numbers.e


# -- propagation -------------------------------------------------------------------------------


def test_min_enabled_version_toggles_key_vault_versions(kv_api: Api, kv: Emulator):
    provider = mi_provider(kv_api, kv)
    key = new_key(kv_api)
    assert distribute(kv_api, provider, key).status_code == 204
    for _ in range(2):  # rotation imports each new version
        assert kv_api.post(f"keymgmt/key/{key}/rotate").status_code == 204
    dist = read_dist(kv_api, provider, key)
    assert by_tag(remote(kv, dist["name"])) == dist["versions"]
    assert sorted(dist["versions"]) == ["1", "2", "3"] and "pending_versions" not in dist

    def enabled() -> dict[str, bool]:
        return {v["tags"]["keymgmt-version"]: v["enabled"] for v in remote(kv, dist["name"])}

    assert kv_api.post(f"keymgmt/key/{key}", json={"min_enabled_version": 3}).status_code == 204
    assert enabled() == {"1": False, "2": False, "3": True}
    assert read_dist(kv_api, provider, key)["versions"] == dist["versions"]  # disabled included
    assert kv_api.post(f"keymgmt/key/{key}", json={"min_enabled_version": 1}).status_code == 204
    assert enabled() == {"1": True, "2": True, "3": True}
    # A rotation below a raised minimum imports the new version enabled, the old ones disabled.
    assert kv_api.post(f"keymgmt/key/{key}", json={"min_enabled_version": 2}).status_code == 204
    assert kv_api.post(f"keymgmt/key/{key}/rotate").status_code == 204
    assert enabled() == {"1": False, "2": True, "3": True, "4": True}
    assert sorted(read_dist(kv_api, provider, key)["versions"]) == ["1", "2", "3", "4"]


def test_a_key_distributed_to_two_providers_rotates_into_both(kv_api: Api, kv: Emulator):
    first = mi_provider(kv_api, kv)
    second = mi_provider(kv_api, kv, SECOND_VAULT)
    key = new_key(kv_api)
    assert distribute(kv_api, first, key).status_code == 204
    assert distribute(kv_api, second, key, protection="software").status_code == 204
    assert kv_api.list(f"keymgmt/key/{key}/kms").json()["data"]["keys"] == sorted([first, second])
    assert kv_api.post(f"keymgmt/key/{key}/rotate").status_code == 204
    for provider, vault in ((first, VAULT), (second, SECOND_VAULT)):
        dist = read_dist(kv_api, provider, key)
        assert by_tag(remote(kv, dist["name"], vault)) == dist["versions"]
        assert sorted(dist["versions"]) == ["1", "2"]


def test_a_version_added_in_key_vault_with_odd_tags_does_not_break_rotation(
    kv_api: Api, kv: Emulator, kv_key_client
):
    provider = mi_provider(kv_api, kv)
    key = new_key(kv_api)
    assert distribute(kv_api, provider, key).status_code == 204
    name = read_dist(kv_api, provider, key)["name"]
    tags = {"keymgmt-mount": "keymgmt", "keymgmt-key": key, "keymgmt-version": "latest"}
    foreign = kv_key_client().create_rsa_key(name, size=2048, tags=tags)
    rotated = kv_api.post(f"keymgmt/key/{key}/rotate")
    assert rotated.status_code == 204, rotated.text
    dist = read_dist(kv_api, provider, key)
    assert sorted(dist["versions"]) == ["1", "2"]
    assert foreign.properties.version not in dist["versions"].values()
    assert len(remote(kv, name)) == 3


# -- removal, redistribution, refusals ---------------------------------------------------------


def test_remove_then_distribute_again_under_a_new_name(kv_api: Api, kv: Emulator, kv_key_client):
    provider = mi_provider(kv_api, kv)
    key = new_key(kv_api, versions=2)
    assert distribute(kv_api, provider, key).status_code == 204
    first = read_dist(kv_api, provider, key)
    assert sorted(first["versions"]) == ["1", "2"]

    # Refused while distributed: deleting the key (even when allowed) or the provider.
    assert kv_api.post(f"keymgmt/key/{key}", json={"deletion_allowed": True}).status_code == 204
    refused = kv_api.delete(f"keymgmt/key/{key}")
    assert refused.status_code == 400 and provider in errors(refused)
    refused = kv_api.delete(f"keymgmt/kms/{provider}")
    assert refused.status_code == 400 and key in errors(refused)

    assert kv_api.delete(f"keymgmt/kms/{provider}/key/{key}").status_code == 204
    deleted = wait_deleted(kv_key_client(), first["name"])  # soft-deleted, recoverable
    assert deleted.recovery_id and remote(kv, first["name"]) is None
    assert kv_api.get(f"keymgmt/key/{key}").json()["data"]["latest_version"] == 2
    assert kv_api.list(f"keymgmt/key/{key}/kms").status_code == 404
    assert kv_api.get(f"keymgmt/kms/{provider}/key/{key}").status_code == 404
    assert kv_api.list(f"keymgmt/kms/{provider}/key").status_code == 404
    # Removing again is harmless.
    assert kv_api.delete(f"keymgmt/kms/{provider}/key/{key}").status_code == 204

    # Again, right away (usually within the same second): the name must differ.
    assert distribute(kv_api, provider, key).status_code == 204
    second = read_dist(kv_api, provider, key)
    assert second["name"] != first["name"]
    assert second["name"].startswith(f"{key}-")
    assert by_tag(remote(kv, second["name"])) == second["versions"]
    assert sorted(second["versions"]) == ["1", "2"]
    assert set(second["versions"].values()).isdisjoint(first["versions"].values())

    # Once removed, the key and then the provider can be deleted.
    assert kv_api.delete(f"keymgmt/kms/{provider}/key/{key}").status_code == 204
    assert kv_api.delete(f"keymgmt/key/{key}").status_code == 204
    assert kv_api.delete(f"keymgmt/kms/{provider}").status_code == 204


def test_repeating_a_distribution_is_idempotent_and_parameters_cannot_change(
    kv_api: Api, kv: Emulator
):
    provider = mi_provider(kv_api, kv)
    key = new_key(kv_api)
    assert distribute(kv_api, provider, key, purpose="encrypt,decrypt").status_code == 204
    dist = read_dist(kv_api, provider, key)
    again = distribute(kv_api, provider, key, purpose="decrypt,encrypt,encrypt")
    assert again.status_code == 204, again.text
    assert read_dist(kv_api, provider, key) == dist
    assert len(remote(kv, dist["name"])) == 1
    for changed in (
        {"purpose": "encrypt"},
        {"purpose": "encrypt,decrypt", "protection": "software"},
    ):
        response = kv_api.put(f"keymgmt/kms/{provider}/key/{key}", json=changed)
        assert response.status_code == 400, response.text
        assert "parameters cannot change once distributed" in errors(response)
    assert read_dist(kv_api, provider, key) == dist
    assert len(remote(kv, dist["name"])) == 1


# -- crash after the second of three imports, in process ----------------------------------------


# -- the engine in process: a provider and a key of N versions ---------------------------------


def provider_for(service: Any, kv: Emulator) -> str:
    """An azurekeyvault provider on VAULT, with a client secret granted Crypto Officer there."""
    client_id, secret = str(uuid.uuid4()), uuid.uuid4().hex
    kv.grant(VAULT, kv.add_client(client_id, secret).object_id, OFFICER)
    name = uid("kms")
    service.kms.write(
        MOUNT,
        name,
        provider="azurekeyvault",
        key_collection=VAULT,
        credentials={"client_id": client_id, "client_secret": secret, "tenant_id": kv.tenant_id},
    )
    return name


def key_with(service: Any, versions: int, key_type: str = "ecdsa-p256") -> str:
    name = uid("k")
    service.keys.write(
        MOUNT,
        name,
        key_type=key_type,
        min_enabled_version=None,
        deletion_allowed=True,
        auto_rotate_period=None,
    )
    for _ in range(versions - 1):
        service.keys.rotate(MOUNT, name)
    return name


class SimulatedCrash(Exception):
    """The process died here (not an EngineError: nothing catches it)."""


class CrashOnThirdImport:
    """Wraps the real client; the third import crashes before or after the remote call."""

    def __init__(self, real: Any, when: str) -> None:
        self.real, self.when, self.imports = real, when, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def import_version(self, remote_name: str, version: Any) -> str:
        self.imports += 1
        if self.imports == 3 and self.when == "before":
            raise SimulatedCrash
        version_id = self.real.import_version(remote_name, version)
        if self.imports == 3 and self.when == "after":
            raise SimulatedCrash
        return version_id


@pytest.fixture
def service(azurite: Any, kv: Emulator) -> Any:
    return build_service(azurite, f"ip{uuid.uuid4().hex[:12]}", **emulator_settings(kv))


@pytest.mark.parametrize(("when", "finish"), [("before", "redistribute"), ("after", "reconcile")])
def test_crash_after_the_second_of_three_imports_then_completion_without_duplicates(
    service: Any, kv: Emulator, when: str, finish: str
):
    from shared.api.kms import render_distribution
    from shared.distribution import Distributor
    from shared.kms import Kms
    from shared.reconcile import Reconciler

    def parts(kms: Kms) -> tuple[Distributor, Reconciler]:
        distributor = Distributor(service.store, service.settings, service.sealer, kms)
        return distributor, Reconciler(service.store, kms, distributor)

    mount = "keymgmt"
    client_id, secret = str(uuid.uuid4()), uuid.uuid4().hex
    kv.grant(VAULT, kv.add_client(client_id, secret).object_id, OFFICER)
    base_kms = Kms(service.store, service.settings, service.sealer, service.mounts)
    base, _ = parts(base_kms)
    provider, key = uid("kms"), uid("k")
    base_kms.write(
        mount,
        provider,
        provider="azurekeyvault",
        key_collection=VAULT,
        credentials={"client_id": client_id, "client_secret": secret, "tenant_id": kv.tenant_id},
    )
    service.keys.write(
        mount,
        key,
        key_type="rsa-2048",
        min_enabled_version=None,
        deletion_allowed=None,
        auto_rotate_period=None,
    )
    service.keys.rotate(mount, key)
    service.keys.rotate(mount, key)

    wrappers: list[CrashOnThirdImport] = []

    def crashing_factory(record: Any, credentials: Any) -> Any:
        wrappers.append(CrashOnThirdImport(base_kms.build_client(record, credentials), when))
        return wrappers[-1]

    crashing, _ = parts(
        Kms(
            service.store,
            service.settings,
            service.sealer,
            service.mounts,
            client_factory=crashing_factory,
        )
    )
    with pytest.raises(SimulatedCrash):
        crashing.distribute(mount, provider, key, purpose=["sign", "verify"], protection="hsm")
    assert wrappers[0].imports == 3
    half = render_distribution(base.read(mount, provider, key))
    assert sorted(half["versions"]) == ["1", "2"] and half["pending_versions"] == [3]
    landed = by_tag(remote(kv, half["name"]))
    assert sorted(landed) == (["1", "2"] if when == "before" else ["1", "2", "3"])

    fresh, reconciler = parts(  # the restarted process
        Kms(service.store, service.settings, service.sealer, service.mounts)
    )
    if finish == "redistribute":
        assert (
            fresh.distribute(mount, provider, key, purpose=["verify", "sign"], protection="hsm")
            == []
        )
    else:
        report = reconciler.reconcile(service.store.get_distribution(mount, provider, key))
        assert report["imported"] == [3] and report["errors"] == [], report
    done = render_distribution(base.read(mount, provider, key))
    assert done["name"] == half["name"] and "pending_versions" not in done
    versions = remote(kv, done["name"])
    assert len(versions) == 3
    assert by_tag(versions) == done["versions"]
    assert sorted(done["versions"]) == ["1", "2", "3"]
    if when == "after":  # the version that landed before the crash was adopted, not re-imported
        assert done["versions"]["3"] == landed["3"]
    # Nothing left to do: a second reconcile imports nothing and reports no drift.
    report = reconciler.reconcile(service.store.get_distribution(mount, provider, key))
    assert (report["imported"], report["drift"], report["errors"]) == ([], [], [])


@pytest.mark.parametrize("finish", ["redistribute", "reconcile"])
def test_two_imports_left_unrecorded_are_both_adopted_from_the_latest_ones_tags(
    service: Any, kv: Emulator, finish: str
):
    """Each import is recorded while the next one is sent, so a crash can leave two unrecorded:
    the latest remote version, and the one before it, which the latest names in its tags."""
    from dataclasses import replace

    from shared.distribution import TAG_PREVIOUS
    from shared.store import dist_op

    mount = MOUNT
    provider, key = provider_for(service, kv), key_with(service, 3, "rsa-2048")
    assert (
        service.distribution.distribute(mount, provider, key, purpose=["sign"], protection="hsm")
        == []
    )
    dist = service.store.get_distribution(mount, provider, key)
    ids = {str(v): vid for v, vid in dist.versions.items()}
    versions = remote(kv, dist.remote_name)
    assert by_tag(versions) == ids
    chain = {v["tags"]["keymgmt-version"]: v["tags"].get(TAG_PREVIOUS) for v in versions}
    assert chain == {"1": None, "2": ids["1"], "3": ids["2"]}

    # What a crash leaves when version 2's record is lost while version 3 lands.
    service.store.commit(
        [dist_op(replace(dist, versions={1: dist.versions[1]}, state="distributing"))]
    )
    since = len(kv.recorded())
    if finish == "redistribute":
        assert (
            service.distribution.distribute(
                mount, provider, key, purpose=["sign"], protection="hsm"
            )
            == []
        )
    else:
        report = service.reconciler.reconcile(service.store.get_distribution(mount, provider, key))
        assert report["imported"] == [2, 3] and report["errors"] == [], report
    done = service.store.get_distribution(mount, provider, key)
    assert {str(v): vid for v, vid in done.versions.items()} == ids  # adopted, not re-imported
    assert done.state == "active" and not done.lease_owner
    assert by_tag(remote(kv, dist.remote_name)) == ids
    assert not responses(kv, since, "ImportKey")


# -- transient faults, outages, refusals --------------------------------------------------------


@pytest.mark.parametrize("retry_after", [None, 1])
def test_throttling_is_absorbed_by_retries(kv_api: Api, kv: Emulator, retry_after):
    provider = mi_provider(kv_api, kv)
    key = new_key(kv_api)
    since = len(kv.recorded())
    kv.fault(VAULT, "throttle", "import", times=2, retry_after=retry_after)
    response = distribute(kv_api, provider, key)
    assert response.status_code == 204, response.text
    imports = [r.status for r in responses(kv, since, "ImportKey")]
    assert imports == [429, 429, 200]
    assert by_tag(remote(kv, read_dist(kv_api, provider, key)["name"])).keys() == {"1"}


def test_a_provider_down_during_rotation_then_caught_up(kv_api: Api, kv: Emulator):
    provider = mi_provider(kv_api, kv)
    key = new_key(kv_api)
    assert distribute(kv_api, provider, key).status_code == 204
    name = read_dist(kv_api, provider, key)["name"]

    kv.fault(VAULT, "server_error", "import", status=503)
    since = len(kv.recorded())
    rotated = kv_api.post(f"keymgmt/key/{key}/rotate")
    failed = [r.status for r in responses(kv, since, "ImportKey")]
    assert 2 <= len(failed) <= 5 and set(failed) == {503}  # retried, within a bound
    assert rotated.status_code == 200, rotated.text
    (warning,) = rotated.json()["warnings"]
    assert provider in warning and "ServiceUnavailable" in warning, warning
    assert "the reconciler will finish the import" in warning
    assert kv_api.get(f"keymgmt/key/{key}").json()["data"]["latest_version"] == 2
    pending = read_dist(kv_api, provider, key)
    assert pending["pending_versions"] == [2] and sorted(pending["versions"]) == ["1"]
    assert by_tag(remote(kv, name)).keys() == {"1"}

    kv.clear_faults()
    assert distribute(kv_api, provider, key).status_code == 204  # the same request: catch up
    done = read_dist(kv_api, provider, key)
    assert "pending_versions" not in done and sorted(done["versions"]) == ["1", "2"]
    assert by_tag(remote(kv, name)) == done["versions"]


def test_forbidden_by_connection_is_reported_clearly_with_a_health_diagnosis(
    kv_api: Api, kv: Emulator
):
    provider = mi_provider(kv_api, kv)
    key = new_key(kv_api)
    kv.fault(VAULT, "forbidden_by_connection")
    response = distribute(kv_api, provider, key)
    assert response.status_code == 502, response.text
    message = errors(response)
    assert "ForbiddenByConnection" in message
    assert "private endpoint" in message and "kms/:name/health" in message
    assert remote_names(kv, f"{key}-") == []

    health = kv_api.get(f"keymgmt/kms/{provider}/health")
    assert health.status_code == 200, health.text
    data = health.json()["data"]
    assert data["vault_url"] == kv.vault_url(VAULT)
    assert data["addresses"] == [{"address": "127.0.0.1", "private": False}]  # loopback ≠ RFC 1918
    assert data["all_private"] is False
    assert data["private_ranges"] == ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
    assert data["token"] == "ok"
    assert "403" in data["key_vault"] and "ForbiddenByConnection" in data["key_vault"]
    assert "private endpoint" in data["diagnosis"]

    kv.clear_faults()
    assert distribute(kv_api, provider, key).status_code == 204
    healthy = kv_api.get(f"keymgmt/kms/{provider}/health").json()["data"]
    assert healthy["key_vault"] == "ok" and "diagnosis" not in healthy
    assert kv_api.get(f"keymgmt/kms/{uid('missing')}/health").status_code == 404


def test_private_ranges_setting_decides_what_is_private(env_api: Api, kv: Emulator):
    provider = new_provider(env_api, {"tenant_id": kv.tenant_id})
    data = env_api.get(f"keymgmt/kms/{provider}/health").json()["data"]
    assert data["private_ranges"] == ["127.0.0.0/8"]
    assert data["addresses"] == [{"address": "127.0.0.1", "private": True}]
    assert data["all_private"] is True
    assert data["token"] == "ok" and data["key_vault"] == "ok"


def test_forbidden_by_rbac_is_reported_with_its_code_and_not_retried(kv_api: Api, kv: Emulator):
    kv.clear_grants(VAULT)
    kv.grant(VAULT, str(uuid.uuid4()), OFFICER)  # someone else
    provider = mi_provider(kv_api, kv)
    key = new_key(kv_api)
    since = len(kv.recorded())
    response = distribute(kv_api, provider, key)
    assert response.status_code == 502, response.text
    assert "ForbiddenByRbac" in errors(response)
    assert "the system-assigned managed identity needs the key permission 'get'" in errors(response)
    assert "Microsoft.KeyVault/vaults/keys/read" in errors(response)
    refusals = [r for r in responses(kv, since) if r.status == 403]
    # The name check's two reads (the live key, a deleted one) go out together; each is refused
    # once: no retry.
    assert sorted(r.operation_id for r in refusals) == ["GetDeletedKey", "GetKey"]
    assert kv_api.get(f"keymgmt/kms/{provider}/key/{key}").status_code == 404
    assert kv_api.list(f"keymgmt/key/{key}/kms").status_code == 404


def test_concurrent_rotations_of_a_distributed_key_import_each_version_once(
    kv_api: Api, kv: Emulator
):
    """Rotations racing each other (and their propagation) never import a version twice."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    provider = mi_provider(kv_api, kv)
    key = new_key(kv_api, "ecdsa-p256")
    assert distribute(kv_api, provider, key, "sign,verify").status_code == 204

    def rotate(_: int) -> int:
        with requests.Session() as session:
            return session.post(
                f"{kv_api.url}/v1/keymgmt/key/{key}/rotate",
                headers={"X-Vault-Token": "root"},
                timeout=120,
            ).status_code

    with ThreadPoolExecutor(6) as pool:
        assert sorted(pool.map(rotate, range(6))) == [204] * 6
    dist = read_dist(kv_api, provider, key)
    assert sorted(dist["versions"], key=int) == [str(v) for v in range(1, 8)]
    assert "pending_versions" not in dist
    versions = remote(kv, dist["name"])
    assert sorted(by_tag(versions), key=int) == [str(v) for v in range(1, 8)]
    assert len(versions) == 7


def test_reconcile_reports_a_version_with_our_tags_that_the_engine_did_not_record(
    kv_api: Api, kv: Emulator, kv_key_client
):
    import requests
    from azure.keyvault.keys import JsonWebKey
    from cryptography.hazmat.primitives.asymmetric import ec

    provider = mi_provider(kv_api, kv)
    key = new_key(kv_api, "ecdsa-p256")
    assert distribute(kv_api, provider, key, "sign,verify").status_code == 204
    name = read_dist(kv_api, provider, key)["name"]
    # Someone imports a version by hand and copies our tags onto it, with version "1" taken.
    private = ec.generate_private_key(ec.SECP256R1()).private_numbers()
    jwk = JsonWebKey(
        kty="EC",
        crv="P-256",
        key_ops=["sign", "verify"],
        x=private.public_numbers.x.to_bytes(32, "big"),
        y=private.public_numbers.y.to_bytes(32, "big"),
        d=private.private_value.to_bytes(32, "big"),
    )
    forged = kv_key_client().import_key(
        name, jwk, tags={"keymgmt-mount": "keymgmt", "keymgmt-key": key, "keymgmt-version": "1"}
    )
    assert requests.post(f"{kv_api.url}/admin/functions/reconciler", timeout=120).status_code == 202
    drift = kv_api.get("sys/keymgmt/reconcile").json()["data"]["drift"]
    mine = [d["drift"] for d in drift if d["key"] == key]
    assert any(forged.properties.version in d and "carries this engine's tags" in d for d in mine)
    assert read_dist(kv_api, provider, key)["versions"].keys() == {"1"}  # nothing adopted
