"""Behaviours of the live service that the engine depends on (sources in docs/kvemu.md):
default-deny permissions in both models, versions of a name that holds no key, the deletion
delay, purge protection, and Managed HSM's own audience."""

from __future__ import annotations

import time

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from tests.emulator.helpers import error_of, raw, system_identity_client, unique
from tests.fixtures.kvemu import PURGEABLE_VAULT
from tools.kvemu import Emulator

SEED_PERMISSIONS = ["create", "delete", "get", "import", "update"]


def _forbidden(call) -> tuple[str, str | None, str]:
    with pytest.raises(HttpResponseError) as info:
        call()
    assert info.value.status_code == 403
    return error_of(info.value.response.json())


def test_versions_of_a_name_without_a_key_is_an_empty_list(kv: Emulator, kv_key_client) -> None:
    client = kv_key_client()
    assert list(client.list_properties_of_key_versions(unique("never"))) == []
    body = raw(kv, "GET", f"/keys/{unique('never')}/versions", token=kv.issue_token()).json()
    assert body == {"value": [], "nextLink": None}
    with pytest.raises(ResourceNotFoundError):  # GET of the key itself is 404
        client.get_key(unique("never"))


def test_a_caller_without_a_role_is_refused(kv: Emulator, kv_key_client) -> None:
    kv.clear_grants("keyvault-name")
    code, inner, message = _forbidden(lambda: kv_key_client().get_key("anything"))
    assert (code, inner) == ("Forbidden", "ForbiddenByRbac")
    assert "Action: 'Microsoft.KeyVault/vaults/keys/read'" in message
    assert kv.system_identity.object_id in message


@pytest.mark.parametrize(
    ("role", "allowed", "refused"),
    [
        ("Key Vault Crypto Officer", {"create", "list", "delete", "purge"}, set()),
        ("Key Vault Crypto User", {"list"}, {"create", "delete"}),
        ("Key Vault Crypto Service Encryption User", {"list"}, {"create", "delete"}),
        ("Key Vault Reader", {"list"}, {"create", "delete"}),
    ],
)
def test_builtin_roles_by_their_data_actions(
    kv: Emulator, kv_key_client, role, allowed, refused
) -> None:
    setup = kv_key_client(PURGEABLE_VAULT)
    doomed = setup.create_ec_key(unique("doomed")).name
    kv.clear_grants(PURGEABLE_VAULT)
    kv.grant(PURGEABLE_VAULT, kv.system_identity.object_id, role)
    client = kv_key_client(PURGEABLE_VAULT)
    calls = {
        "create": lambda: client.create_ec_key(unique("role")),
        "list": lambda: list(client.list_properties_of_key_versions(doomed)),
        "delete": lambda: client.begin_delete_key(doomed, _polling_interval=0).wait(),
        "purge": lambda: client.purge_deleted_key(doomed),
    }
    for op in ("create", "list", "delete", "purge"):
        if op in allowed:
            calls[op]()
        elif op in refused:
            assert _forbidden(calls[op])[1] == "ForbiddenByRbac", (role, op)


def test_access_policy_vault_with_the_seed_permissions(tmp_path, monkeypatch) -> None:
    """An access-policy vault: permissions by name, case-insensitive; list is not implied."""
    with Emulator(
        {"policy-vault": 0}, cert_dir=tmp_path, access_policy_vaults=["policy-vault"]
    ) as emu:
        client = system_identity_client(emu, "policy-vault", monkeypatch)
        # no policy entry at all
        code, inner, message = _forbidden(lambda: client.get_key("x"))
        assert (code, inner) == ("Forbidden", "AccessDenied")
        assert "does not have keys get permission on key vault 'policy-vault;" in message
        with pytest.raises(ValueError):
            emu.grant("policy-vault", emu.system_identity.object_id, "Key Vault Crypto Officer")
        # Terraform spells them capitalised
        emu.set_access_policy(
            "policy-vault", emu.system_identity.client_id, [p.title() for p in SEED_PERMISSIONS]
        )
        key = client.create_rsa_key(unique("pol"), size=2048)
        assert client.get_key(key.name).id == key.id
        client.update_key_properties(key.name, key.properties.version, enabled=False)
        code, inner, message = _forbidden(
            lambda: list(client.list_properties_of_key_versions(key.name))
        )
        assert (code, inner) == ("Forbidden", "ForbiddenByPolicy")
        assert "does not have keys list permission" in message
        assert _forbidden(lambda: client.rotate_key(key.name))[1] == "ForbiddenByPolicy"
        client.begin_delete_key(key.name, _polling_interval=0).wait()  # get covers deleted keys
        assert client.get_deleted_key(key.name).name == key.name
        with pytest.raises(ValueError):
            emu.set_access_policy("policy-vault", emu.system_identity.object_id, ["getsecret"])


def test_deletion_completes_after_the_delay(kv: Emulator, kv_key_client) -> None:
    kv.configure_vault("keyvault-name", delete_delay=1.5)
    client = kv_key_client()
    name = client.create_ec_key(unique("slow")).name
    started = time.monotonic()
    client.begin_delete_key(name)  # answered at once
    refused = []
    while time.monotonic() - started < 1.2:
        with pytest.raises(ResourceNotFoundError):
            client.get_deleted_key(name)
        with pytest.raises(ResourceExistsError) as info:
            client.create_ec_key(name)
        refused.append(error_of(info.value.response.json())[1])
        time.sleep(0.2)
    assert refused and set(refused) == {"ObjectIsBeingDeleted"}
    with pytest.raises(ResourceNotFoundError):  # a second DELETE meanwhile
        client.begin_delete_key(name)
    time.sleep(0.5)
    assert client.get_deleted_key(name).name == name
    [vault] = [v for v in kv.describe() if v["name"] == "keyvault-name"]
    assert name in vault["deleted"] and name not in vault["deleting"]


def test_purge_protection_refuses_purge(kv: Emulator, kv_key_client) -> None:
    client = kv_key_client()  # keyvault-name: purge protection on, as our Terraform sets it
    name = client.create_ec_key(unique("keep")).name
    deleted = client.begin_delete_key(name, _polling_interval=0)
    assert deleted.result().recovery_id
    deleted.wait()
    code, _, message = _forbidden(lambda: client.purge_deleted_key(name))
    assert code == "Forbidden" and 'Operation "purge" is not allowed' in message
    assert client.get_deleted_key(name).properties.recovery_level == "Recoverable"
    assert kv_key_client(PURGEABLE_VAULT).create_ec_key(unique("p")).properties.recovery_level == (
        "Recoverable+Purgeable"
    )
    with pytest.raises(ValueError):  # as in Azure: once on, it cannot be turned off
        kv.configure_vault("keyvault-name", purge_protection=False)


def test_managed_hsm_has_its_own_audience(tmp_path, monkeypatch) -> None:
    with Emulator(hsm_vaults={"an-hsm": 0}, cert_dir=tmp_path) as emu:
        emu.grant("an-hsm", emu.system_identity.object_id, "Key Vault Crypto Officer")
        unauthenticated = raw(emu, "GET", "/keys", vault="an-hsm")
        assert unauthenticated.status_code == 401
        assert unauthenticated.headers["WWW-Authenticate"] == (
            f'Bearer authorization="https://login.microsoftonline.com/{emu.tenant_id}", '
            'resource="https://managedhsm.azure.net"'
        )
        vault_token = emu.issue_token(audience="https://vault.azure.net")
        refused = raw(emu, "GET", "/keys", vault="an-hsm", token=vault_token)
        assert refused.status_code == 401
        assert "expected aud=https://managedhsm.azure.net" in refused.text
        hsm_token = emu.issue_token(audience="https://managedhsm.azure.net/.default")
        assert raw(emu, "GET", "/keys", vault="an-hsm", token=hsm_token).status_code == 200
        # the real SDK follows the challenge to the right scope by itself
        client = system_identity_client(emu, "an-hsm", monkeypatch)
        assert client.create_rsa_key(unique("h"), size=2048).key_type == "RSA-HSM"
