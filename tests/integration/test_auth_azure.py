"""auth/azure's login end to end in the engine (Azurite, and the emulator's Entra-like
authority: the tenant's v1.0 metadata, its signing keys, managed-identity tokens with
``xms_mirid`` for first-party audiences)."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import jwt as pyjwt
import pytest

from shared.api.auth import AZURE_CONFIG_FIELDS, AZURE_LOGIN_FIELDS, AZURE_ROLE_FIELDS
from shared.errors import InvalidRequest, PermissionDenied
from shared.vaultapi import FieldData
from tests.fixtures.funchost import build_service

ARM = "https://management.azure.com"


@pytest.fixture(scope="module")
def service(azurite: Any, kv_emulator: Any) -> Any:
    return build_service(
        azurite,
        f"az{os.getpid()}",
        AZURE_AUTHORITY_HOST=kv_emulator.authority_host,
        KEYMGMT_KEYVAULT_CA_BUNDLE=kv_emulator.ca_path,
        AZURE_TENANT_ID=kv_emulator.tenant_id,
        AZURE_AD_RESOURCE=ARM,
    )


def method(service: Any, **role: Any) -> Any:
    path = f"az{uuid.uuid4().hex[:6]}"
    service.auth.enable(path, "azure")
    mount = service.auth.mount(path)
    service.auth.write_config(mount, FieldData({}, AZURE_CONFIG_FIELDS))  # the settings' values
    service.auth.write_role(mount, "app", FieldData(role, AZURE_ROLE_FIELDS))
    return mount


def login(service: Any, mount: Any, token: str, **fields: str) -> Any:
    data = FieldData({"role": "app", "jwt": token, **fields}, AZURE_LOGIN_FIELDS)
    issued, _ = service.auth.login(mount, data, "")
    return issued


def crafted(kv: Any, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "aud": ARM,
        "iss": kv.issuer.issuer,
        "iat": now,
        "nbf": now - 5,
        "exp": now + 600,
        "oid": kv.system_identity.object_id,
        "appid": kv.system_identity.client_id,
        "tid": kv.tenant_id,
        **claims,
    }
    return pyjwt.encode(
        {k: v for k, v in body.items() if v is not None},
        kv.issuer.signing_key_pem(),
        algorithm="RS256",
        headers={"kid": kv.issuer.key_id},
    )


def test_a_managed_identity_logs_in(
    service: Any, kv_emulator: Any, kv_managed_identity: Any
) -> None:
    oid = kv_emulator.system_identity.object_id
    mount = method(service, bound_service_principal_ids=oid, token_policies="kms-admin")
    token = kv_managed_identity.get_token(f"{ARM}/.default").token
    issued = login(service, mount, token)
    assert issued.policies == ("default", "kms-admin")
    assert issued.display_name == f"{mount.path}-{oid}"
    assert issued.path == f"auth/{mount.path}/login" and issued.orphan
    assert issued.meta == {
        "role": "app",
        "resource_group_name": "",
        "subscription_id": "",
        "app_id": kv_emulator.system_identity.client_id,
    }
    assert service.tokens.check(issued.id).policies == ("default", "kms-admin")


def test_refusals_in_the_plugins_order(service: Any, kv_emulator: Any) -> None:
    kv = kv_emulator
    mount = method(service, bound_service_principal_ids=kv.system_identity.object_id)
    other = str(uuid.uuid4())
    cases = [
        (crafted(kv, aud=ARM + "/"), f'oidc: expected audience "{ARM}" got ["{ARM}/"]'),
        (
            crafted(kv, iss=f"https://login.microsoftonline.com/{kv.tenant_id}/v2.0"),
            "oidc: id token issued by a different provider",
        ),
        (crafted(kv, exp=int(time.time()) - 10), "oidc: token is expired"),
        (crafted(kv, nbf=int(time.time()) + 600), "token is not yet valid"),
        (crafted(kv, oid=other), f"service principal not authorized: {other}"),
    ]
    for token, text in cases:
        with pytest.raises(InvalidRequest) as caught:
            login(service, mount, token)
        assert str(caught.value).startswith(text), (text, str(caught.value))
        assert token not in str(caught.value)


def test_resource_binding_uses_the_signed_xms_mirid(
    service: Any, kv_emulator: Any, kv_managed_identity: Any
) -> None:
    identity = kv_emulator.system_identity
    sub, group = identity.subscription_id, identity.resource_group
    mount = method(
        service,
        bound_service_principal_ids=identity.object_id,
        bound_subscription_ids=sub,
        bound_resource_groups=group.upper(),  # compared case-insensitively
    )
    token = kv_managed_identity.get_token(f"{ARM}/.default").token  # carries xms_mirid
    issued = login(
        service,
        mount,
        token,
        subscription_id=sub,
        resource_group_name=group,
        resource_id=identity.resource_id,
    )
    assert issued.meta["resource_id"] == identity.resource_id
    with pytest.raises(InvalidRequest, match="does not match resource_group_name"):
        login(service, mount, token, subscription_id=sub, resource_group_name="other")
    with pytest.raises(InvalidRequest, match="does not match vm_name"):
        login(service, mount, token, subscription_id=sub, resource_group_name=group, vm_name="vm1")
    without = crafted(kv_emulator)  # a token without the claim
    with pytest.raises(InvalidRequest, match="xms_az_rid and xms_mirid claims are missing"):
        login(service, mount, without, subscription_id=sub, resource_group_name=group)


def test_bound_cidrs_at_login(service: Any, kv_emulator: Any) -> None:
    mount = method(
        service,
        bound_service_principal_ids=kv_emulator.system_identity.object_id,
        token_bound_cidrs="10.0.0.0/8",
    )
    data = FieldData({"role": "app", "jwt": crafted(kv_emulator)}, AZURE_LOGIN_FIELDS)
    with pytest.raises(PermissionDenied):
        service.auth.login(mount, data, "192.0.2.1")
    issued, _ = service.auth.login(mount, data, "10.1.2.3")
    with pytest.raises(PermissionDenied):
        service.tokens.check(issued.id, "192.0.2.1")
    assert service.tokens.check(issued.id, "10.1.2.3").id == issued.id
