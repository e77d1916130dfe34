"""auth/azure's login end to end in the engine (Azurite, the emulator's signing keys and
managed-identity tokens), through the tenant's v1.0 metadata document.

Until the emulator serves the v1.0 document (the identity branch), a small local server
answers it here in Entra's real shape (issuer ``https://sts.windows.net/<tid>/``, jwks_uri on
the authority), pointing at the emulator's own key set; the tests over HTTP in
tests/e2e/test_auth_clients.py use the emulator's document and are xfail until then.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import jwt as pyjwt
import pytest

from shared.api.auth import AZURE_CONFIG_FIELDS, AZURE_LOGIN_FIELDS, AZURE_ROLE_FIELDS
from shared.auth import keys
from shared.errors import InvalidRequest, PermissionDenied
from shared.vaultapi import FieldData
from tests.fixtures.funchost import build_service

ARM = "https://management.azure.com"
SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
MIRID = f"/subscriptions/{SUB}/resourcegroups/apps/providers/Microsoft.Web/sites/keymgmt-func"


@pytest.fixture(scope="module")
def authority(kv_emulator: Any) -> Iterator[str]:
    tenant = kv_emulator.tenant_id

    class Metadata(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != f"/{tenant}/.well-known/openid-configuration":
                self.send_response(404)
                self.end_headers()
                return
            body = {
                "issuer": f"https://sts.windows.net/{tenant}/",
                "jwks_uri": f"{kv_emulator.authority_host}/{tenant}/discovery/v2.0/keys",
                "token_endpoint": f"https://login.microsoftonline.com/{tenant}/oauth2/token",
                "id_token_signing_alg_values_supported": ["RS256"],
            }
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body).encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        keys.forget_cached()


@pytest.fixture(scope="module")
def service(azurite: Any, kv_emulator: Any, authority: str) -> Any:
    return build_service(
        azurite,
        f"az{os.getpid()}",
        AZURE_AUTHORITY_HOST=authority,
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


def test_resource_binding_uses_the_signed_xms_mirid(service: Any, kv_emulator: Any) -> None:
    kv = kv_emulator
    mount = method(
        service,
        bound_service_principal_ids=kv.system_identity.object_id,
        bound_subscription_ids=SUB,
        bound_resource_groups="apps",
    )
    token = crafted(kv, xms_mirid=MIRID)
    issued = login(
        service, mount, token, subscription_id=SUB, resource_group_name="Apps", resource_id=MIRID
    )
    assert issued.meta["resource_id"] == MIRID
    with pytest.raises(InvalidRequest, match="does not match resource_group_name"):
        login(service, mount, token, subscription_id=SUB, resource_group_name="other")
    with pytest.raises(InvalidRequest, match="xms_az_rid and xms_mirid claims are missing"):
        login(service, mount, crafted(kv), subscription_id=SUB, resource_group_name="apps")


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
