"""Challenge flow, token checks, identity endpoints and role grants."""

from __future__ import annotations

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.identity import ClientSecretCredential, ManagedIdentityCredential
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.emulator.helpers import StaticToken, error_of, raw, unique
from tools.kvemu import Emulator
from tools.kvemu.tokens import TokenIssuer


def test_tokenless_request_gets_the_challenge(kv: Emulator) -> None:
    response = raw(kv, "GET", "/keys")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer authorization="https://login.windows.net/{kv.tenant_id}", '
        'resource="https://vault.azure.net"'
    )
    assert error_of(response.json())[:1] == ("Unauthorized",)
    assert "AKV10000" in response.json()["error"]["message"]


def test_user_assigned_identity_by_client_id(kv: Emulator, kv_key_client, monkeypatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", kv.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", kv.identity_header)
    identity = kv.add_user_assigned_identity(unique("uami"))
    credential = ManagedIdentityCredential(client_id=identity.client_id)
    kv.clear_grants("keyvault-name")  # the baseline's system identity is no longer allowed
    kv.grant("keyvault-name", identity.object_id, "Key Vault Crypto Officer")
    key = kv_key_client(credential=credential).create_ec_key(unique("uamikey"))
    assert key.name.startswith("uamikey")
    # the system-assigned identity has no grant on this vault now
    with pytest.raises(HttpResponseError) as info:
        kv_key_client().create_ec_key(unique("denied"))
    assert info.value.status_code == 403
    assert error_of(info.value.response.json())[:2] == ("Forbidden", "ForbiddenByRbac")
    assert "Microsoft.KeyVault/vaults/keys/create/action" in info.value.error.message


def test_unknown_user_assigned_identity(kv: Emulator, monkeypatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", kv.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", kv.identity_header)
    credential = ManagedIdentityCredential(client_id="00000000-1111-2222-3333-444444444444")
    with pytest.raises(ClientAuthenticationError) as info:
        credential.get_token("https://vault.azure.net/.default")
    assert "Unable to load the proper Managed Identity" in str(info.value)


def test_identity_header_is_checked(kv: Emulator) -> None:
    response = requests.get(
        kv.identity_endpoint,
        params={"resource": "https://vault.azure.net", "api-version": "2019-08-01"},
        headers={"X-IDENTITY-HEADER": "wrong"},
        timeout=10,
    )
    assert response.status_code == 401 and response.json()["statusCode"] == 401


def test_client_secret_credential(kv: Emulator, kv_key_client) -> None:
    client_id = unique("app")
    app = kv.add_client(client_id, "correct horse")
    kv.grant("second-vault", app.object_id, "Key Vault Crypto Officer")
    credential = ClientSecretCredential(
        kv.tenant_id,
        client_id,
        "correct horse",
        authority=kv.authority_host,
        disable_instance_discovery=True,
        connection_verify=kv.ca_path,
    )
    key = kv_key_client("second-vault", credential=credential).create_rsa_key(
        unique("spkey"), size=2048
    )
    assert key.key.n


@pytest.mark.parametrize(
    ("register", "secret", "expected"),
    [(False, "whatever", "AADSTS700016"), (True, "wrong secret", "AADSTS7000215")],
    ids=["unknown-client", "wrong-secret"],
)
def test_client_secret_credential_errors(kv: Emulator, register, secret, expected) -> None:
    client_id = unique("app")
    if register:
        kv.add_client(client_id, "the real secret")
    credential = ClientSecretCredential(
        kv.tenant_id,
        client_id,
        secret,
        authority=kv.authority_host,
        disable_instance_discovery=True,
        connection_verify=kv.ca_path,
    )
    with pytest.raises(ClientAuthenticationError) as info:
        credential.get_token("https://vault.azure.net/.default")
    assert expected in str(info.value)


def test_expired_foreign_audience_and_forged_tokens_are_refused(kv: Emulator, kv_key_client):
    forger = TokenIssuer(
        kv.tenant_id, rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    forged, _ = forger.issue(audience="https://vault.azure.net", object_id="x", app_id="y")
    cases = {
        "expired": kv.issue_token(lifetime_seconds=-600),
        "storage audience": kv.issue_token(audience="https://storage.azure.com"),
        "forged": forged,
    }
    for label, token in cases.items():
        response = raw(kv, "GET", "/keys", token=token)
        assert response.status_code == 401, label
        assert "WWW-Authenticate" in response.headers
        with pytest.raises(ClientAuthenticationError):
            kv_key_client(credential=StaticToken(token)).get_key("anything")
    assert "audience" in raw(kv, "GET", "/keys", token=cases["storage audience"]).text


def test_token_for_scope_default_is_accepted(kv: Emulator) -> None:
    token = kv.issue_token(audience="https://vault.azure.net/.default")
    assert raw(kv, "GET", "/keys", token=token).status_code == 200


def test_reader_role_can_read_but_not_create(kv: Emulator, kv_key_client) -> None:
    name = unique("rd")
    kv_key_client().create_ec_key(name)
    kv.clear_grants("keyvault-name")
    kv.grant("keyvault-name", kv.system_identity.object_id, "Key Vault Reader")
    assert kv_key_client().get_key(name).name == name
    with pytest.raises(HttpResponseError) as info:
        kv_key_client().create_ec_key(unique("rd2"))
    assert info.value.status_code == 403
