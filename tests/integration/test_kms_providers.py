"""KMS provider records over real HTTP: no remote call is needed for any of these."""

import json
import uuid

import pytest

from tests.fixtures.funchost import Api
from tests.helpers import errors


def pname():
    return f"kms-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize(
    "credentials",
    [
        {"client_id": "c", "client_secret": "s3cr3t-value", "tenant_id": "t"},
        ["client_id=c", "client_secret=s3cr3t-value", "tenant_id=t"],
        "client_secret=s3cr3t-value",
    ],
)
def test_create_read_list_delete_with_each_credentials_form(api: Api, credentials):
    name = pname()
    response = api.put(
        f"keymgmt/kms/{name}",
        json={
            "provider": "azurekeyvault",
            "key_collection": "keyvault-name",
            "credentials": credentials,
        },
    )
    assert response.status_code == 204, response.text
    read = api.get(f"keymgmt/kms/{name}")
    assert read.status_code == 200
    assert read.json()["data"] == {"provider": "azurekeyvault", "key_collection": "keyvault-name"}
    assert "s3cr3t" not in read.text
    assert name in api.list("keymgmt/kms").json()["data"]["keys"]
    assert api.list(f"keymgmt/kms/{name}/key").status_code == 404
    assert api.delete(f"keymgmt/kms/{name}").status_code == 204
    assert api.get(f"keymgmt/kms/{name}").status_code == 404


def test_credentials_are_sealed_at_rest(api: Api, azurite):
    from azure.data.tables import TableServiceClient

    name = pname()
    api.put(
        f"keymgmt/kms/{name}",
        json={
            "provider": "azurekeyvault",
            "key_collection": "keyvault-name",
            "credentials": {"client_id": "c", "client_secret": "s3cr3t-at-rest", "tenant_id": "t"},
        },
    )
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    found = False
    for table in service.list_tables():
        for entity in service.get_table_client(table.name).list_entities():
            if entity.get("RowKey") == f"kms:{name}":
                found = True
                blob = json.dumps({k: str(v) for k, v in entity.items()}).encode()
                assert b"s3cr3t-at-rest" not in blob
                assert (
                    any(
                        b"s3cr3t-at-rest" in bytes(v)
                        for v in entity.values()
                        if isinstance(v, bytes)
                    )
                    is False
                )
    assert found


def test_update_may_omit_immutable_fields_but_not_change_them(api: Api):
    name = pname()
    api.put(
        f"keymgmt/kms/{name}", json={"provider": "azurekeyvault", "key_collection": "keyvault-name"}
    )
    # Terraform re-sends provider and omits key_collection on update.
    ok = api.put(
        f"keymgmt/kms/{name}", json={"provider": "azurekeyvault", "credentials": {"tenant_id": "t"}}
    )
    assert ok.status_code == 204
    changed = api.put(f"keymgmt/kms/{name}", json={"key_collection": "other-vault"})
    assert changed.status_code == 400 and "key_collection cannot be changed" in errors(changed)[0]
    changed = api.put(f"keymgmt/kms/{name}", json={"provider": "awskms"})
    # A type that is not registered is refused by the field's declaration, before the engine.
    assert changed.status_code == 400 and "invalid provider: allowed are" in errors(changed)[0]
    assert api.get(f"keymgmt/kms/{name}").json()["data"]["key_collection"] == "keyvault-name"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"key_collection": "keyvault-name"}, "provider is required"),
        (
            {"provider": "awskms", "key_collection": "keyvault-name"},
            "invalid provider: allowed are azurekeyvault",
        ),
        ({"provider": "azurekeyvault"}, "key_collection is required"),
        ({"provider": "azurekeyvault", "key_collection": "bad_name!"}, "not a Key Vault name"),
        (
            {"provider": "azurekeyvault", "key_collection": "kv-a", "credentials": ["nokeyvalue"]},
            'credentials: an item is not "key=value"',
        ),
        (
            {"provider": "azurekeyvault", "key_collection": "kv-a", "credentials": {"colour": "x"}},
            "unknown key(s) colour",
        ),
        (
            {
                "provider": "azurekeyvault",
                "key_collection": "kv-a",
                "credentials": {"environment": "Mars"},
            },
            "environment: unknown Azure cloud; allowed: ",
        ),
    ],
)
def test_bad_provider_writes_name_the_field(api: Api, body, says):
    name = pname()
    response = api.put(f"keymgmt/kms/{name}", json=body)
    assert response.status_code == 400 and says in errors(response)[0]
    assert api.get(f"keymgmt/kms/{name}").status_code == 404


def test_distribution_needs_existing_provider_and_key(api: Api):
    response = api.put(f"keymgmt/kms/{pname()}/key/nokey", json={"purpose": "sign"})
    assert response.status_code == 400 and "does not exist" in errors(response)[0]
    name = pname()
    api.put(
        f"keymgmt/kms/{name}", json={"provider": "azurekeyvault", "key_collection": "keyvault-name"}
    )
    response = api.put(f"keymgmt/kms/{name}/key/nokey", json={"purpose": "sign"})
    assert response.status_code == 400 and "key 'nokey' does not exist" in errors(response)[0]
    assert api.get(f"keymgmt/kms/{name}/key/nokey").status_code == 404


def test_a_provider_cannot_change_to_another_registered_type(azurite, table_prefix, monkeypatch):
    """With a second provider type registered, a KMS provider still keeps the type it was
    created with (the HTTP field only takes registered types, so this is the engine's rule)."""
    from shared import kms as kms_module
    from shared.errors import InvalidRequest
    from shared.providers import PROVIDERS
    from tests.fixtures.funchost import build_service

    azure = PROVIDERS["azurekeyvault"]
    monkeypatch.setattr(kms_module, "PROVIDERS", {**PROVIDERS, "otherkms": azure})
    svc = build_service(azurite, table_prefix)
    name = pname()
    svc.kms.write(
        "keymgmt", name, provider="azurekeyvault", key_collection="keyvault-name", credentials=None
    )
    with pytest.raises(InvalidRequest, match="provider cannot be changed"):
        svc.kms.write("keymgmt", name, provider="otherkms", key_collection=None, credentials=None)
    assert svc.kms.read("keymgmt", name).provider == "azurekeyvault"
