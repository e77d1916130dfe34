"""The emulator's Entra ID: metadata, token versions, claims, key rollover.

Tokens come from the real azure-identity credentials (``ManagedIdentityCredential`` through
the App Service MSI protocol, ``ClientSecretCredential`` through the authority) and are
validated with PyJWT against the published metadata, as the engine validates them.
"""

from __future__ import annotations

import base64
import ssl
import time
import uuid
from typing import Any

import jwt
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential, ManagedIdentityCredential
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.emulator.helpers import raw, unique
from tools.kvemu import Emulator


def _b64url_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def _get(emu: Emulator, path: str) -> requests.Response:
    return requests.get(f"{emu.authority_host}/{path}", verify=emu.ca_path, timeout=30)


def _metadata(emu: Emulator, version: str) -> dict[str, Any]:
    prefix = "v2.0/" if version == "2.0" else ""
    response = _get(emu, f"{emu.tenant_id}/{prefix}.well-known/openid-configuration")
    assert response.status_code == 200
    return response.json()


def _validate(emu: Emulator, token: str, *, version: str, audience: str) -> dict[str, Any]:
    """What the engine does: issuer and jwks_uri from the tenant's metadata, the key by kid."""
    metadata = _metadata(emu, version)
    keys = jwt.PyJWKClient(
        metadata["jwks_uri"],
        ssl_context=ssl.create_default_context(cafile=emu.ca_path),
        cooldown_duration=0,
    )
    return jwt.decode(
        token,
        keys.get_signing_key_from_jwt(token),
        algorithms=["RS256"],
        audience=audience,
        issuer=metadata["issuer"],
        options={"require": ["exp", "iat", "nbf", "iss", "aud"]},
        leeway=60,
    )


def _control(emu: Emulator, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, f"{emu.control_url}{path}", json=body, timeout=30)


def _client(emu: Emulator, secret: str = "s3cret value") -> tuple[str, ClientSecretCredential]:
    client_id = str(uuid.uuid4())
    emu.add_client(client_id, secret)
    return client_id, ClientSecretCredential(
        emu.tenant_id,
        client_id,
        secret,
        authority=emu.authority_host,
        disable_instance_discovery=True,
        connection_verify=emu.ca_path,
    )


# --- metadata ---------------------------------------------------------------------------------


def test_v1_and_v2_metadata_are_different_documents(kv: Emulator) -> None:
    base = f"{kv.authority_host}/{kv.tenant_id}"
    v1, v2 = _metadata(kv, "1.0"), _metadata(kv, "2.0")
    assert v1["issuer"] == f"https://sts.windows.net/{kv.tenant_id}/"
    assert v1["jwks_uri"] == f"{base}/discovery/keys"
    assert v1["token_endpoint"] == f"{base}/oauth2/token"
    assert v1["authorization_endpoint"] == f"{base}/oauth2/authorize"
    assert v2["issuer"] == f"{base}/v2.0"
    assert v2["jwks_uri"] == f"{base}/discovery/v2.0/keys"
    assert v2["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    for doc in (v1, v2):
        assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
        assert doc["subject_types_supported"] == ["pairwise"]
    # the tenant-independent aliases serve the tenant's documents
    assert _get(kv, "organizations/.well-known/openid-configuration").json() == v1


def test_keys_documents_publish_the_signing_certificate(kv: Emulator) -> None:
    v1 = _get(kv, f"{kv.tenant_id}/discovery/keys").json()["keys"]
    v2 = _get(kv, f"{kv.tenant_id}/discovery/v2.0/keys").json()["keys"]
    assert [k["kid"] for k in v1] == [k["kid"] for k in v2] and v1
    for jwk in v1:
        assert set(jwk) == {"kty", "use", "kid", "x5t", "n", "e", "x5c"}
    for jwk in v2:
        assert jwk.pop("issuer") == f"{kv.authority_host}/{kv.tenant_id}/v2.0"
    assert v1 == v2
    jwk = v1[0]
    assert (jwk["kty"], jwk["use"], jwk["e"]) == ("RSA", "sig", "AQAB")
    certificate = x509.load_der_x509_certificate(base64.b64decode(jwk["x5c"][0]))
    thumbprint = certificate.fingerprint(hashes.SHA1())  # noqa: S303 - x5t is SHA-1
    assert jwk["kid"] == jwk["x5t"] == base64.urlsafe_b64encode(thumbprint).rstrip(b"=").decode()
    public = certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers().n == _b64url_int(jwk["n"])


# --- managed identity: v1 tokens for first-party resources, xms_mirid --------------------------


def test_managed_identity_arm_token_validates_against_v1_metadata(
    kv: Emulator, kv_managed_identity: ManagedIdentityCredential
) -> None:
    token = kv_managed_identity.get_token("https://management.azure.com/.default").token
    claims = _validate(kv, token, version="1.0", audience="https://management.azure.com")
    system = kv.system_identity
    assert claims["iss"] == f"https://sts.windows.net/{kv.tenant_id}/"
    assert (claims["oid"], claims["sub"], claims["tid"]) == (
        system.object_id,
        system.object_id,
        kv.tenant_id,
    )
    assert (claims["appid"], claims["appidacr"], claims["idtyp"], claims["ver"]) == (
        system.client_id,
        "2",
        "app",
        "1.0",
    )
    assert claims["xms_mirid"] == (
        f"/subscriptions/{kv.subscription_id}/resourcegroups/{kv.resource_group}"
        f"/providers/Microsoft.Web/sites/{system.name}"
    )
    assert "xms_az_rid" not in claims and "azp" not in claims and "roles" not in claims
    header = jwt.get_unverified_header(token)
    assert header["x5t"] == header["kid"]


def test_v1_audience_is_the_resource_as_requested(kv: Emulator) -> None:
    for resource in ("https://management.azure.com/", "https://management.core.windows.net/"):
        response = requests.get(
            kv.identity_endpoint,
            params={"resource": resource, "api-version": "2019-08-01"},
            headers={"X-IDENTITY-HEADER": kv.identity_header},
            timeout=30,
        )
        assert response.status_code == 200 and response.json()["resource"] == resource
        token = response.json()["access_token"]
        assert _validate(kv, token, version="1.0", audience=resource)["aud"] == resource


def test_user_assigned_identity_carries_its_own_resource_id(kv: Emulator, monkeypatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", kv.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", kv.identity_header)
    identity = kv.add_user_assigned_identity(
        str(uuid.uuid4()), name=unique("uami"), resource_group="identities-rg"
    )
    credential = ManagedIdentityCredential(client_id=identity.client_id)
    claims = _validate(
        kv,
        credential.get_token("https://vault.azure.net/.default").token,
        version="1.0",
        audience="https://vault.azure.net",
    )
    assert claims["xms_mirid"] == (
        f"/subscriptions/{kv.subscription_id}/resourcegroups/identities-rg/providers/"
        f"Microsoft.ManagedIdentity/userAssignedIdentities/{identity.name}"
    )
    assert (claims["oid"], claims["appid"]) == (identity.object_id, identity.client_id)
    # mi_res_id names it by its ARM id (resourceGroups, any case)
    by_resource_id = requests.get(
        kv.identity_endpoint,
        params={
            "resource": "https://vault.azure.net",
            "api-version": "2019-08-01",
            "mi_res_id": identity.resource_id.lower(),
        },
        headers={"X-IDENTITY-HEADER": kv.identity_header},
        timeout=30,
    )
    assert by_resource_id.json()["client_id"] == identity.client_id


# --- app registrations: the resource decides the version --------------------------------------


def test_v2_app_gets_v2_tokens_with_roles_and_groups(
    kv: Emulator, kv_managed_identity: ManagedIdentityCredential
) -> None:
    uri = f"api://{unique('keymgmt')}"
    created = _control(
        kv,
        "POST",
        "/apps",
        {
            "client_id": str(uuid.uuid4()),
            "identifier_uris": [uri],
            "access_token_version": 2,
            "app_roles": ["KeyOperator", {"value": "Auditor"}],
            "group_membership_claims": "SecurityGroup",
        },
    )
    assert created.status_code == 201, created.text
    app = created.json()
    assert [r["value"] for r in app["app_roles"]] == ["KeyOperator", "Auditor"]
    system = kv.system_identity
    assigned = _control(
        kv,
        "POST",
        "/app-role-assignments",
        {"app": uri, "principal": system.client_id, "role": "KeyOperator"},
    )
    assert assigned.status_code == 201, assigned.text
    group = _control(kv, "POST", "/groups", {"members": [system.object_id]}).json()["group_id"]

    token = kv_managed_identity.get_token(f"{uri}/.default").token
    with pytest.raises(jwt.InvalidAudienceError):  # v2.0: aud is the client id, never the URI
        _validate(kv, token, version="2.0", audience=uri)
    with pytest.raises(jwt.InvalidIssuerError):  # and the v1.0 metadata's issuer is not its own
        _validate(kv, token, version="1.0", audience=app["client_id"])
    claims = _validate(kv, token, version="2.0", audience=app["client_id"])
    assert claims["iss"] == f"{kv.authority_host}/{kv.tenant_id}/v2.0"
    assert (claims["azp"], claims["azpacr"], claims["ver"], claims["oid"]) == (
        system.client_id,
        "2",
        "2.0",
        system.object_id,
    )
    assert claims["roles"] == ["KeyOperator"] and claims["groups"] == [group]
    assert not {"appid", "appidacr", "xms_mirid", "idp"} & set(claims)
    assert "x5t" not in jwt.get_unverified_header(token)

    # a client-credentials caller without an assignment: no roles; azpacr 1 (secret)
    client_id, credential = _client(kv)
    other = _validate(
        kv,
        credential.get_token(f"{app['client_id']}/.default").token,
        version="2.0",
        audience=app["client_id"],
    )
    assert (other["azp"], other["azpacr"]) == (client_id, "1")
    assert "roles" not in other and "groups" not in other


def test_v1_app_audience_and_no_groups_unless_the_app_asks(
    kv: Emulator, kv_managed_identity: ManagedIdentityCredential
) -> None:
    uri = f"api://{unique('legacy')}"
    app = kv.register_app(identifier_uris=[uri], app_roles=["Reader"])  # accepted version: null
    kv.assign_app_role(app.client_id, kv.system_identity.object_id, "Reader")
    kv.add_group_members(str(uuid.uuid4()), [kv.system_identity.client_id])
    by_uri = kv_managed_identity.get_token(f"{uri}/.default").token
    claims = _validate(kv, by_uri, version="1.0", audience=uri)
    assert claims["ver"] == "1.0" and claims["roles"] == ["Reader"]
    assert "groups" not in claims  # groupMembershipClaims is null
    assert "xms_mirid" not in claims  # only first-party audiences get it
    by_id = kv_managed_identity.get_token(f"{app.client_id}/.default").token
    assert _validate(kv, by_id, version="1.0", audience=app.client_id)["aud"] == app.client_id


def test_a_v2_token_is_not_a_key_vault_token(kv: Emulator) -> None:
    app = kv.register_app(identifier_uris=[f"api://{unique('x')}"], access_token_version=2)
    _, credential = _client(kv)
    token = credential.get_token(f"{app.client_id}/.default").token
    assert raw(kv, "GET", "/keys", token=token).status_code == 401


def test_unknown_resource_is_refused_as_entra_does(
    kv: Emulator, kv_managed_identity: ManagedIdentityCredential
) -> None:
    resource = f"api://{unique('nobody')}"
    with pytest.raises(ClientAuthenticationError) as info:
        kv_managed_identity.get_token(f"{resource}/.default")
    assert "AADSTS500011" in str(info.value) and resource in str(info.value)
    msi = requests.get(
        kv.identity_endpoint,
        params={"resource": resource, "api-version": "2019-08-01"},
        headers={"X-IDENTITY-HEADER": kv.identity_header},
        timeout=30,
    )
    assert msi.status_code == 400
    assert set(msi.json()) == {"statusCode", "message", "correlationId"}
    assert msi.json()["message"].startswith(
        f"AADSTS500011: The resource principal named {resource} was not found in the tenant"
    )
    client_id, credential = _client(kv, "another secret")
    with pytest.raises(ClientAuthenticationError) as info:
        credential.get_token(f"{resource}/.default")
    assert "AADSTS500011" in str(info.value)
    direct = requests.post(
        f"{kv.authority_host}/{kv.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": "another secret",
            "scope": f"{resource}/.default",
        },
        verify=kv.ca_path,
        timeout=30,
    )
    assert direct.status_code == 400
    assert (direct.json()["error"], direct.json()["error_codes"]) == ("invalid_resource", [500011])
    assert "another secret" not in direct.text


def test_v1_token_endpoint_takes_a_resource(kv: Emulator) -> None:
    client_id, _ = _client(kv, "v1 secret")
    url = f"{kv.authority_host}/{kv.tenant_id}/oauth2/token"
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": "v1 secret",
    }
    missing = requests.post(url, data=form, verify=kv.ca_path, timeout=30)
    assert missing.status_code == 400 and missing.json()["error_codes"] == [900144]
    ok = requests.post(
        url, data={**form, "resource": "https://vault.azure.net"}, verify=kv.ca_path, timeout=30
    )
    assert ok.status_code == 200, ok.text
    token = ok.json()["access_token"]
    assert (
        _validate(kv, token, version="1.0", audience="https://vault.azure.net")["appidacr"] == "1"
    )


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"client_id": "not-a-guid"}, "client_id"),
        ({"access_token_version": 3}, "access_token_version"),
        ({"identifier_uris": "api://x"}, "identifier_uris"),
        ({"identifier_uris": ["https://vault.azure.net/"]}, "identifierUris"),
        ({"app_roles": [""]}, "app role"),
        ({"group_membership_claims": "Everything"}, "group_membership_claims"),
    ],
)
def test_app_registration_refuses_bad_input(kv: Emulator, body: dict[str, Any], named: str):
    response = _control(kv, "POST", "/apps", body)
    assert response.status_code == 400
    assert named in response.json()["error"]["message"]


def test_app_role_assignment_refuses_unknown_apps_and_roles(kv: Emulator) -> None:
    app = kv.register_app(identifier_uris=[f"api://{unique('r')}"], app_roles=["A"])
    principal = kv.system_identity.object_id
    for body, named in (
        ({"app": app.client_id, "principal": principal, "role": "B"}, "no app role 'B'"),
        ({"app": "api://nothing-here", "principal": principal, "role": "A"}, "no registered app"),
        ({"app": app.client_id, "role": "A"}, "principal"),
    ):
        response = _control(kv, "POST", "/app-role-assignments", body)
        assert response.status_code == 400 and named in response.json()["error"]["message"]


# --- signing-key rollover ---------------------------------------------------------------------


def test_signing_key_rollover(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", "unset")
    with Emulator({"vault-a": 0}, cert_dir=tmp_path) as emu:
        emu.grant("vault-a", emu.system_identity.object_id, "Key Vault Reader")
        monkeypatch.setenv("IDENTITY_ENDPOINT", emu.identity_endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", emu.identity_header)
        keys_url = f"{emu.authority_host}/{emu.tenant_id}/discovery/keys"
        cached = jwt.PyJWKClient(  # the engine's kind of cache: refetch on an unknown kid
            keys_url,
            ssl_context=ssl.create_default_context(cafile=emu.ca_path),
            lifespan=3600,
            cooldown_duration=0,
        )

        def kids() -> list[str]:
            document = requests.get(keys_url, verify=emu.ca_path, timeout=30).json()
            return [k["kid"] for k in document["keys"]]

        def token() -> str:
            return ManagedIdentityCredential().get_token("https://vault.azure.net/.default").token

        def vault_accepts(t: str) -> bool:
            return raw(emu, "GET", "/keys", vault="vault-a", token=t).status_code == 200

        old_token = token()
        old_kid = jwt.get_unverified_header(old_token)["kid"]
        assert cached.get_signing_key_from_jwt(old_token).key_id == old_kid

        # Entra publishes the next key before it signs with it
        prepared = _control(emu, "POST", "/signing-keys/next").json()
        assert prepared["current"] == old_kid and len(prepared["next"]) == 1
        assert kids() == [old_kid, prepared["next"][0]]

        rotated = _control(emu, "POST", "/signing-keys/rotate", {}).json()
        assert rotated == {"current": prepared["next"][0], "next": [], "previous": [old_kid]}
        new_token = token()
        assert jwt.get_unverified_header(new_token)["kid"] == rotated["current"]
        assert set(kids()) == {old_kid, rotated["current"]}
        assert vault_accepts(old_token) and vault_accepts(new_token)
        assert cached.get_signing_key_from_jwt(new_token).key_id == rotated["current"]
        for t in (old_token, new_token):
            _validate(emu, t, version="1.0", audience="https://vault.azure.net")

        # the keys survive a restart (cached tokens stay valid)
        emu.stop()
        emu.start()
        assert emu.signing_keys() == rotated

        # retired: the old key leaves the documents and its tokens are refused
        assert _control(emu, "DELETE", "/signing-keys/previous").json()["previous"] == []
        assert kids() == [rotated["current"]]
        assert not vault_accepts(old_token) and vault_accepts(new_token)
        with pytest.raises(jwt.PyJWKClientError):
            jwt.PyJWKClient(
                keys_url, ssl_context=ssl.create_default_context(cafile=emu.ca_path)
            ).get_signing_key_from_jwt(old_token)

        # a rollover with a time limit: the previous key is gone once it has passed
        emu.rotate_signing_key(previous_seconds=0)
        assert kids() == [emu.signing_keys()["current"]]
        assert not vault_accepts(new_token)
        bad = _control(emu, "POST", "/signing-keys/rotate", {"previous_seconds": "soon"})
        assert bad.status_code == 400 and "previous_seconds" in bad.text


def test_command_line_registers_apps_and_refuses_bad_ones(tmp_path, capsys) -> None:
    from tools.kvemu.__main__ import main

    for bad in ("[1]", '{"access_token_version": 5}', '{"unknown_field": 1}'):
        with pytest.raises(SystemExit) as info:
            main(["--vault", "v=0", "--cert-dir", str(tmp_path), "--app", bad])
        assert info.value.code == 2
        assert "--app" in capsys.readouterr().err


def test_hand_made_tokens_for_refusal_tests(kv: Emulator) -> None:
    """What a validator must refuse, signed by the real published key."""
    aud = "https://management.azure.com"
    later = int(time.time()) + 3600
    with pytest.raises(jwt.ImmatureSignatureError):
        _validate(kv, kv.issue_token(audience=aud, issued_at=later), version="1.0", audience=aud)
    with pytest.raises(jwt.ExpiredSignatureError):
        _validate(
            kv, kv.issue_token(audience=aud, lifetime_seconds=-600), version="1.0", audience=aud
        )
    wrong_issuer = kv.issue_token(audience=aud, claims={"iss": "https://sts.windows.net/other/"})
    with pytest.raises(jwt.InvalidIssuerError):
        _validate(kv, wrong_issuer, version="1.0", audience=aud)
    v2 = kv.issue_token(audience=str(uuid.uuid4()), version=2)
    assert jwt.decode(v2, options={"verify_signature": False})["iss"] == (
        f"{kv.authority_host}/{kv.tenant_id}/v2.0"
    )
