"""Logging in over real HTTP with the clients people use: the bao CLI and hvac, against the
local Functions host wired to the Key Vault emulator's Entra-like authority.

The happy paths use a real managed-identity token, fetched from the emulator's MSI endpoint
by azure-identity's ManagedIdentityCredential as a Function App would. Refusals use tokens
signed with the emulator's own issuer key (or another key, or none) carrying the defect.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import jwt as pyjwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.fixtures.funchost import ROOT_TOKEN
from tests.fixtures.openbao import BaoCli
from tests.helpers import errors, wait_until, write_policy

AUDIENCE = "api://azure-keymgmt"
# What azure-identity asks for with the scope https://management.azure.com/.default: the aud
# of the token, which auth/azure's resource must equal exactly.
ARM = "https://management.azure.com"
APP_CLIENT_ID = "6a5c1a7e-0b7f-4c47-8f43-6b65796d676d"  # azure-keymgmt's app registration
POLICY = 'path "sys/mounts" { capabilities = ["read"] }'


@pytest.fixture(scope="module")
def url(kv_funchost: Any) -> str:
    return str(kv_funchost.url)


@pytest.fixture(scope="module")
def root(url: str, kv_emulator: Any) -> requests.Session:
    # Entra issues tokens only for a registered API: azure-keymgmt's app registration (v1
    # tokens, as an app whose manifest leaves accessTokenAcceptedVersion null gets).
    kv_emulator.register_app(client_id=APP_CLIENT_ID, identifier_uris=[AUDIENCE])
    session = requests.Session()
    session.headers["X-Vault-Token"] = ROOT_TOKEN
    session.base = url  # type: ignore[attr-defined]
    write_policy(url, "mounts-reader", POLICY)
    return session


def call(session: requests.Session, method: str, path: str, **kwargs: Any) -> requests.Response:
    return session.request(method, f"{session.base}/v1/{path}", timeout=60, **kwargs)  # type: ignore[attr-defined]


def mi_token(kv: Any, monkeypatch: pytest.MonkeyPatch, resource: str) -> str:
    """A managed-identity access token, as ManagedIdentityCredential gets it on App Service."""
    from azure.identity import ManagedIdentityCredential

    monkeypatch.setenv("IDENTITY_ENDPOINT", kv.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", kv.identity_header)
    for name in ("MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    return str(ManagedIdentityCredential().get_token(resource + "/.default").token)


def crafted(
    kv: Any, key: Any = None, alg: str = "RS256", kid: str | None = None, **claims: Any
) -> str:
    """A token signed with the emulator's issuer key (or ``key``), with ``claims`` changed."""
    now = int(time.time())
    body = {
        "aud": AUDIENCE,
        "iss": kv.issuer.issuer,
        "iat": now,
        "nbf": now - 5,
        "exp": now + 3600,
        "tid": kv.tenant_id,
        "oid": kv.system_identity.object_id,
        "sub": kv.system_identity.object_id,
        "appid": kv.system_identity.client_id,
        "roles": ["KeyOperator"],
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    signing = key if key is not None else kv.issuer.signing_key_pem()
    return pyjwt.encode(body, signing, algorithm=alg, headers={"kid": kid or kv.issuer.key_id})


def jwks_mount(root: requests.Session, kv: Any, audience: str = AUDIENCE, **role: Any) -> str:
    """A jwt method on the emulator's key set, with role ``r`` for the system identity."""
    mount = f"jwt{uuid.uuid4().hex[:6]}"
    assert call(root, "POST", f"sys/auth/{mount}", json={"type": "jwt"}).status_code == 204
    response = call(
        root,
        "POST",
        f"auth/{mount}/config",
        json={
            "jwks_url": f"{kv.authority_host}/{kv.tenant_id}/discovery/v2.0/keys",
            "jwks_ca_pem": Path(kv.ca_path).read_text(),
            "bound_issuer": kv.issuer.issuer,
        },
    )
    assert response.status_code == 204, response.text
    body = {
        "role_type": "jwt",
        "user_claim": "oid",
        "bound_audiences": [audience],
        "bound_claims": {"tid": kv.tenant_id},
        "claim_mappings": {"appid": "client_app"},
        "token_policies": ["mounts-reader"],
        "token_ttl": "10m",
        **role,
    }
    response = call(root, "POST", f"auth/{mount}/role/r", json=body)
    assert response.status_code in (200, 204), response.text
    return mount


def login(url: str, mount: str, jwt_: str, role: str = "r", **extra: Any) -> requests.Response:
    return requests.post(
        f"{url}/v1/auth/{mount}/login", json={"role": role, "jwt": jwt_, **extra}, timeout=60
    )


# -- the CLI ---------------------------------------------------------------------------------


def test_bao_enables_lists_and_disables_auth_methods(url: str, root: Any, tmp_path: Path) -> None:
    bao = BaoCli(url, tmp_path, token=ROOT_TOKEN)
    bao("auth", "enable", "-path=cli-jwt", "-description=for CI", "jwt")
    listed = json.loads(bao("auth", "list", "-format=json").stdout)
    assert listed["cli-jwt/"]["type"] == "jwt"
    assert listed["cli-jwt/"]["description"] == "for CI"
    assert listed["token/"]["type"] == "token"
    refused = bao("auth", "enable", "-path=cli-x", "userpass", ok=False)
    assert "plugin not found in the catalog: userpass" in refused.stderr
    role = tmp_path / "role.json"  # maps (bound_claims) need a JSON body, as with Vault's CLI
    role.write_text(
        json.dumps(
            {
                "role_type": "jwt",
                "user_claim": "oid",
                "bound_audiences": ["api://azure-keymgmt"],
                "bound_claims": {"roles": ["KeyOperator"]},
                "token_policies": ["kms-admin"],
            }
        )
    )
    pem = tmp_path / "key.pem"
    pem.write_text(
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    bao("write", "auth/cli-jwt/config", f"jwt_validation_pubkeys=@{pem}")
    bao("write", "auth/cli-jwt/role/kms-operator", f"@{role}")
    read = json.loads(bao("read", "-format=json", "auth/cli-jwt/role/kms-operator").stdout)
    assert read["data"]["bound_claims"] == {"roles": ["KeyOperator"]}
    assert json.loads(bao("list", "-format=json", "auth/cli-jwt/role").stdout) == ["kms-operator"]
    bao("auth", "disable", "cli-jwt")
    assert "cli-jwt/" not in json.loads(bao("auth", "list", "-format=json").stdout)


def test_bao_logs_in_with_a_managed_identity_token(
    url: str, root: Any, kv: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mount = jwks_mount(root, kv, audience=AUDIENCE)
    token = mi_token(kv, monkeypatch, AUDIENCE)
    bao = BaoCli(url, tmp_path)
    out = json.loads(
        bao("write", "-format=json", f"auth/{mount}/login", "role=r", f"jwt={token}").stdout
    )
    auth = out["auth"]
    assert auth["policies"] == ["default", "mounts-reader"]
    assert auth["metadata"] == {"role": "r", "client_app": kv.system_identity.client_id}
    assert auth["orphan"] is True and auth["lease_duration"] == 600
    as_user = BaoCli(url, tmp_path, token=auth["client_token"])
    looked = json.loads(as_user("token", "lookup", "-format=json").stdout)["data"]
    assert looked["display_name"] == f"{mount}-{kv.system_identity.object_id}"
    assert looked["path"] == f"auth/{mount}/login"
    as_user("read", "sys/mounts")  # its policy allows this
    denied = as_user("read", "sys/policies/acl/default", ok=False)
    assert "Code: 403" in denied.stderr


# -- hvac ------------------------------------------------------------------------------------


def test_hvac_jwt_login_gets_a_token_its_policies_govern(
    url: str, root: Any, kv: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount = jwks_mount(root, kv)
    client = hvac.Client(url=url)
    result = client.auth.jwt.jwt_login("r", mi_token(kv, monkeypatch, AUDIENCE), path=mount)
    assert client.token == result["auth"]["client_token"]
    assert client.sys.list_mounted_secrets_engines()["data"]  # allowed by mounts-reader
    with pytest.raises(hvac.exceptions.Forbidden):
        client.sys.read_acl_policy("default")
    # The same principal always gets the same entity id from the same method.
    again = client.auth.jwt.jwt_login("r", mi_token(kv, monkeypatch, AUDIENCE), path=mount)
    assert again["auth"]["entity_id"] == result["auth"]["entity_id"]


@pytest.mark.xdist_group("signing-key-rotation")
def test_a_rotated_signing_key_is_fetched_and_the_previous_one_still_verifies(
    url: str, root: Any, kv: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount = jwks_mount(root, kv)
    before = mi_token(kv, monkeypatch, AUDIENCE)
    assert login(url, mount, before).status_code == 200  # the host caches the key set now
    old_kid = pyjwt.get_unverified_header(before)["kid"]
    new_kid = kv.rotate_signing_key()  # unannounced: not in the host's cached set
    assert new_kid != old_kid
    after = crafted(kv)  # signed with the new current key
    assert pyjwt.get_unverified_header(after)["kid"] == new_kid
    # The unknown kid makes the host fetch the set again (rate-limited: within seconds).
    wait_until(lambda: login(url, mount, after).status_code == 200, 30, "the new key used")
    assert login(url, mount, before).status_code == 200  # the previous key is still published


def test_jwt_login_through_oidc_discovery(url: str, root: Any, kv: Any) -> None:
    mount = f"oidc{uuid.uuid4().hex[:6]}"
    issuer = f"{kv.authority_host}/{kv.tenant_id}/v2.0"
    assert call(root, "POST", f"sys/auth/{mount}", json={"type": "oidc"}).status_code == 204
    response = call(
        root,
        "POST",
        f"auth/{mount}/config",
        json={
            "oidc_discovery_url": issuer,
            "oidc_discovery_ca_pem": Path(kv.ca_path).read_text(),
            "bound_issuer": issuer,
        },
    )
    assert response.status_code == 204, response.text
    call(
        root,
        "POST",
        f"auth/{mount}/role/r",
        json={"role_type": "jwt", "user_claim": "oid", "bound_audiences": [AUDIENCE]},
    )
    assert login(url, mount, crafted(kv, iss=issuer)).status_code == 200
    refused = login(url, mount, crafted(kv))  # the v1 issuer
    assert errors(refused) == ["error validating token: invalid issuer (iss) claim"]
    wrong_ca = call(
        root, "POST", f"auth/{mount}/config", json={"oidc_discovery_url": issuer}
    )  # the system's CAs do not trust the emulator
    assert wrong_ca.status_code == 400
    assert errors(wrong_ca)[0].startswith("error checking oidc discovery URL: ")


NOW = int(time.time())
REFUSALS = [
    (
        "wrong audience",
        {"aud": "api://other"},
        "error validating token: invalid audience (aud) claim: audience claim does not match any "
        "expected audience",
    ),
    (
        "wrong issuer",
        {"iss": "https://login.microsoftonline.com/x/v2.0"},
        "error validating token: invalid issuer (iss) claim",
    ),
    (
        "expired",
        {"exp": NOW - 3600, "nbf": NOW - 7200, "iat": NOW - 7200},
        "error validating token: invalid expiration time (exp) claim: token is expired",
    ),
    (
        "not yet valid",
        {"nbf": NOW + 3600, "iat": NOW},
        "error validating token: invalid not before (nbf) claim: token not yet valid",
    ),
    (
        "claim mismatch",
        {"tid": "00000000-0000-0000-0000-000000000000"},
        'error validating claims: claim "tid" does not match any associated bound claim values',
    ),
    ("no user claim", {"oid": None}, 'claim "oid" not found in token'),
]


@pytest.mark.parametrize(("defect", "claims", "text"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_jwt_login_refusals(
    url: str, root: Any, kv: Any, defect: str, claims: Any, text: str
) -> None:
    mount = jwks_mount(root, kv)
    token = crafted(kv, **claims)
    response = login(url, mount, token)
    assert response.status_code == 400
    assert errors(response) == [text]
    assert token not in response.text


def test_jwt_login_refuses_foreign_keys_and_unsigned_tokens(url: str, root: Any, kv: Any) -> None:
    mount = jwks_mount(root, kv)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    no_key = (
        "error validating token: error verifying token signature: no known key successfully "
        "validated the token signature"
    )
    header = pyjwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    good = crafted(kv)
    payload = good.split(".")[1]
    for token in (
        crafted(kv, key=other),  # another key, with the emulator's kid
        crafted(kv, key=other, kid="unknown-kid"),  # another key and kid: the set is refetched
        f"{header}.{payload}.",  # alg none
        crafted(kv, key="a-guessed-shared-secret-32-bytes!", alg="HS256"),
    ):
        response = login(url, mount, token)
        assert (response.status_code, errors(response)) == (400, [no_key])
    assert login(url, mount, good).status_code == 200


def test_renewal_rechecks_the_role(url: str, root: Any, kv: Any) -> None:
    mount = jwks_mount(root, kv)
    token = login(url, mount, crafted(kv)).json()["auth"]["client_token"]
    headers = {"X-Vault-Token": token}
    call(root, "POST", f"auth/{mount}/role/r", json={"role_type": "jwt", "token_ttl": "20m"})
    renewed = requests.post(f"{url}/v1/auth/token/renew-self", headers=headers, timeout=60)
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["auth"]["lease_duration"] == 1200  # the role's new TTL
    assert call(root, "DELETE", f"auth/{mount}/role/r").status_code == 204
    refused = requests.post(f"{url}/v1/auth/token/renew-self", headers=headers, timeout=60)
    assert refused.status_code == 400  # OpenBao: 500 with the same text
    assert errors(refused) == [
        "1 error occurred:\n\t* failed to renew entry: role r does not exist during renewal\n\n"
    ]


def test_disabling_a_method_revokes_its_tokens_and_forgets_it(url: str, root: Any, kv: Any) -> None:
    mount = jwks_mount(root, kv)
    tokens = [login(url, mount, crafted(kv)).json()["auth"]["client_token"] for _ in range(3)]
    assert call(root, "DELETE", f"sys/auth/{mount}").status_code == 204
    for token in tokens:
        looked = requests.get(
            f"{url}/v1/auth/token/lookup-self", headers={"X-Vault-Token": token}, timeout=60
        )
        assert looked.status_code == 403
    assert call(root, "DELETE", f"sys/auth/{mount}").status_code == 204  # again: no error
    assert call(root, "POST", f"sys/auth/{mount}", json={"type": "jwt"}).status_code == 204
    assert call(root, "GET", f"auth/{mount}/config").status_code == 404  # starts empty
    assert call(root, "GET", f"auth/{mount}/role/r").status_code == 404


def test_sys_auth_needs_sudo(url: str, root: Any) -> None:
    write_policy(
        url,
        "auth-writer",
        'path "sys/auth/*" { capabilities = ["create", "update", "read", "delete"] }',
    )
    created = call(root, "POST", "auth/token/create", json={"policies": ["auth-writer"]})
    token = created.json()["auth"]["client_token"]
    response = requests.post(
        f"{url}/v1/sys/auth/nosudo",
        json={"type": "jwt"},
        headers={"X-Vault-Token": token},
        timeout=60,
    )
    assert response.status_code == 403


# -- bound CIDRs, end to end ------------------------------------------------------------------


def _from(
    url: str, source: str, method: str, path: str, body: Any = None, headers: Any = None
) -> tuple[int, Any]:
    """A request sent from the loopback address ``source`` (127.0.0.0/8 all reach the host)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60, source_address=(source, 0))
    try:
        connection.request(
            method, f"/v1/{path}", body=json.dumps(body) if body else None, headers=headers or {}
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def test_bound_cidrs_hold_against_spoofed_headers(url: str, root: Any, kv: Any) -> None:
    mount = jwks_mount(root, kv, token_bound_cidrs=["127.0.0.2/32"])
    token = crafted(kv)
    assert login(url, mount, token).status_code == 403  # sent from 127.0.0.1
    spoofed = {"X-Forwarded-For": "127.0.0.2", "client-ip": "127.0.0.2:443"}
    status, _ = _from(
        url, "127.0.0.1", "POST", f"auth/{mount}/login", {"role": "r", "jwt": token}, spoofed
    )
    assert status == 403
    status, body = _from(
        url, "127.0.0.2", "POST", f"auth/{mount}/login", {"role": "r", "jwt": token}
    )
    assert status == 200, body
    issued = body["auth"]["client_token"]
    status, looked = _from(
        url, "127.0.0.2", "GET", "auth/token/lookup-self", headers={"X-Vault-Token": issued}
    )
    assert status == 200 and looked["data"]["bound_cidrs"] == ["127.0.0.2"]
    status, refused = _from(
        url,
        "127.0.0.1",
        "GET",
        "auth/token/lookup-self",
        headers={"X-Vault-Token": issued, **spoofed},
    )
    assert (status, refused) == (403, {"errors": ["permission denied"]})


# -- auth/azure ---------------------------------------------------------------------------------


@pytest.fixture
def azure_mount(root: Any, kv: Any) -> Iterator[str]:
    mount = f"az{uuid.uuid4().hex[:6]}"
    assert call(root, "POST", f"sys/auth/{mount}", json={"type": "azure"}).status_code == 204
    response = call(
        root,
        "POST",
        f"auth/{mount}/config",
        json={
            "tenant_id": kv.tenant_id,
            "resource": ARM,
            "client_id": "c",
            "client_secret": "hush-hush",
        },
    )
    assert response.status_code == 204, response.text
    response = call(
        root,
        "POST",
        f"auth/{mount}/role/app",
        json={
            "bound_service_principal_ids": [kv.system_identity.object_id],
            "token_policies": "mounts-reader",
        },
    )
    assert response.status_code == 204, response.text
    yield mount
    call(root, "DELETE", f"sys/auth/{mount}")


def test_azure_config_and_roles(url: str, root: Any, kv: Any, azure_mount: str) -> None:
    config = call(root, "GET", f"auth/{azure_mount}/config")
    assert config.json()["data"]["tenant_id"] == kv.tenant_id
    assert "client_secret" not in config.json()["data"] and "hush-hush" not in config.text
    for field in ("bound_locations", "bound_scale_sets"):
        refused = call(
            root,
            "POST",
            f"auth/{azure_mount}/role/vm",
            json={field: "westeurope", "bound_group_ids": "g"},
        )
        assert refused.status_code == 400 and errors(refused)[0].startswith(
            f"{field} is not supported"
        )
    empty = call(root, "POST", f"auth/{azure_mount}/role/none", json={"token_ttl": 60})
    assert errors(empty) == [
        "must have at least one bound constraint when creating/updating a role"
    ]
    role = call(root, "GET", f"auth/{azure_mount}/role/app").json()["data"]
    assert role["bound_service_principal_ids"] == [kv.system_identity.object_id]
    assert role["token_policies"] == ["mounts-reader"]


def test_azure_login_refusals_before_verification(url: str, kv: Any, azure_mount: str) -> None:
    cases = [
        ({"role": "app"}, "jwt is required"),
        ({"jwt": "x"}, "role is required"),
        ({"role": "nope", "jwt": "x"}, 'invalid role name "nope"'),
        (
            {"role": "app", "jwt": "x", "subscription_id": "not-a-guid"},
            'invalid subscription id "not-a-guid"',
        ),
    ]
    for body, text in cases:
        response = requests.post(f"{url}/v1/auth/{azure_mount}/login", json=body, timeout=60)
        assert (response.status_code, errors(response)) == (400, [text])


def test_hvac_azure_login_with_a_managed_identity_token(
    url: str, kv: Any, azure_mount: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = hvac.Client(url=url)
    result = client.auth.azure.login("app", mi_token(kv, monkeypatch, ARM), mount_point=azure_mount)
    assert result["auth"]["policies"] == ["default", "mounts-reader"]
    assert client.sys.list_mounted_secrets_engines()["data"]
    with pytest.raises(hvac.exceptions.Forbidden):
        client.sys.read_acl_policy("default")


def test_azure_login_refuses_an_unbound_principal(
    url: str, root: Any, kv: Any, azure_mount: str
) -> None:
    other = str(uuid.uuid4())
    token = crafted(kv, aud=ARM, oid=other)
    response = login(url, azure_mount, token, role="app")
    assert errors(response) == [f"service principal not authorized: {other}"]


def test_hvac_configures_both_methods(url: str, kv: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client = hvac.Client(url=url, token=ROOT_TOKEN)
    path = f"hv{uuid.uuid4().hex[:6]}"
    client.sys.enable_auth_method("jwt", path=path)
    client.auth.jwt.configure(
        jwks_url=f"{kv.authority_host}/{kv.tenant_id}/discovery/v2.0/keys",
        jwks_ca_pem=Path(kv.ca_path).read_text(),
        bound_issuer=kv.issuer.issuer,
        path=path,
    )
    created = client.auth.jwt.create_role(
        "ci",
        user_claim="oid",
        allowed_redirect_uris=None,
        bound_audiences=[AUDIENCE],
        token_policies=["mounts-reader"],
        path=path,
    )
    assert created.status_code == 204  # no warning about the name hvac also sends
    assert client.auth.jwt.read_role("ci", path=path)["data"]["bound_audiences"] == [AUDIENCE]
    assert client.auth.jwt.read_config(path=path)["data"]["bound_issuer"] == kv.issuer.issuer
    # hvac's list_roles sends the LIST verb, which Azure Functions does not route (README).
    listed = requests.get(
        f"{url}/v1/auth/{path}/role?list=true", headers={"X-Vault-Token": ROOT_TOKEN}, timeout=60
    )
    assert listed.json()["data"]["keys"] == ["ci"]
    login = hvac.Client(url=url).auth.jwt.jwt_login(
        "ci", mi_token(kv, monkeypatch, AUDIENCE), path=path
    )
    assert login["auth"]["policies"] == ["default", "mounts-reader"]

    azure_path = f"hz{uuid.uuid4().hex[:6]}"
    client.sys.enable_auth_method("azure", path=azure_path)
    client.auth.azure.configure(
        tenant_id=kv.tenant_id, resource=ARM, client_secret="s3cr3t-value", mount_point=azure_path
    )
    client.auth.azure.create_role(
        "app",
        policies=["mounts-reader"],
        ttl="10m",
        bound_service_principal_ids=[kv.system_identity.object_id],
        mount_point=azure_path,
    )
    role = client.auth.azure.read_role("app", mount_point=azure_path)
    assert role["token_policies"] == ["mounts-reader"] and role["token_ttl"] == 600
    config = client.auth.azure.read_config(mount_point=azure_path)
    assert config["tenant_id"] == kv.tenant_id and "client_secret" not in config
    methods = client.sys.list_auth_methods()
    assert methods[f"{path}/"]["type"] == "jwt" and methods[f"{azure_path}/"]["type"] == "azure"
    client.sys.disable_auth_method(path)
    client.sys.disable_auth_method(azure_path)
