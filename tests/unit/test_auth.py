"""Pure parts of the auth methods: JWT claim checks, azure verification and resource
binding, bound CIDRs, the client address, names; and the key fetcher's failure modes."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from functions._http import client_address
from shared.auth import azure, common, jwt, keys
from shared.errors import InvalidRequest, UpstreamUnavailable
from shared.tokens import address_allowed
from shared.vaultapi import FieldData

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
V1_ISSUER = f"https://sts.windows.net/{TENANT}/"
ARM = "https://management.azure.com/"
OID = "9fe92d44-7aad-46a0-8338-4581a3fcbe13"
MIRID = (
    "/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourcegroups/Apps/providers/"
    "Microsoft.Web/sites/keymgmt-func"
)


def sign(key: Any = KEY, alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": V1_ISSUER, "aud": ARM, "oid": OID, "iat": now, "nbf": now, "exp": now + 600}
    body.update(claims)
    return pyjwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg)


# -- jwt: signatures and time claims -------------------------------------------------------------

CONFIG = {"jwt_validation_pubkeys": [], "jwt_supported_algs": [], "bound_issuer": ""}
ROLE = {"bound_audiences": [ARM], "clock_skew_leeway": 0}


def validate(token: str, role: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
    pem = KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    merged = {**CONFIG, "jwt_validation_pubkeys": [pem], **config}
    return jwt.validate(token, merged, {**ROLE, **(role or {})})


def test_a_good_token_validates():
    assert validate(sign())["oid"] == OID


@pytest.mark.parametrize(
    ("claims", "text"),
    [
        ({"exp": int(time.time()) - 600}, "invalid expiration time (exp) claim: token is expired"),
        ({"nbf": int(time.time()) + 600}, "invalid not before (nbf) claim: token not yet valid"),
        ({"nbf": None, "iat": int(time.time()) + 600}, "invalid not before (nbf) claim"),
        (
            {"iat": int(time.time()) + 600, "nbf": int(time.time())},
            "invalid issued at (iat) claim: token issued in the future",
        ),
        ({"exp": "tomorrow"}, "invalid expiration time (exp) claim: not a number"),
    ],
)
def test_time_claims_as_openbao_checks_them(claims: dict[str, Any], text: str):
    with pytest.raises(
        InvalidRequest,
        match=r"^error validating token: " + text.replace("(", r"\(").replace(")", r"\)"),
    ):
        validate(sign(**claims))


@pytest.mark.parametrize("claim", jwt.REQUIRED_CLAIMS)
def test_every_login_token_must_carry_exp_iat_iss_and_aud(claim: str):
    # Stricter than Vault (which checks only the claims present): docs/auth.md.
    with pytest.raises(InvalidRequest, match=f"^error validating token: the token has no {claim} "):
        validate(sign(**{claim: None}))
    assert validate(sign(nbf=None))["oid"] == OID  # nbf may be missing: iat is the start


def test_with_discovery_the_token_must_come_from_the_discovered_issuer(monkeypatch):
    pem = KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    monkeypatch.setattr(
        jwt, "_key_set", lambda config, token: ([keys.load_public_key(pem)], V1_ISSUER)
    )
    assert validate(sign())["iss"] == V1_ISSUER
    with pytest.raises(InvalidRequest, match=r"invalid issuer \(iss\) claim"):
        validate(sign(iss="https://login.microsoftonline.com/other/v2.0"))


def test_the_clock_skew_leeway_is_60_seconds_unless_set():
    stale = sign(exp=int(time.time()) - 30)
    assert validate(stale)["oid"] == OID
    with pytest.raises(InvalidRequest, match="token is expired"):
        validate(stale, {"clock_skew_leeway": -1})
    assert validate(sign(exp=int(time.time()) - 200), {"clock_skew_leeway": 300})


@pytest.mark.parametrize(
    "token",
    [
        sign(key=OTHER),
        sign(key="a-shared-secret-of-32-bytes-long", alg="HS256"),
        sign(key=ec.generate_private_key(ec.SECP256R1()), alg="ES256"),
        pyjwt.encode({"oid": OID, "exp": int(time.time()) + 60}, None, algorithm="none"),
    ],
    ids=["other key", "HS256", "ES256 not allowed by config", "alg none"],
)
def test_unverifiable_signatures_are_refused(token: str):
    with pytest.raises(InvalidRequest, match="no known key successfully validated"):
        validate(token, jwt_supported_algs=["RS256"])


def test_a_token_that_is_not_a_jwt_is_refused_without_echo():
    with pytest.raises(InvalidRequest) as caught:
        validate("abc.def.ghi-secret-looking")
    assert "ghi-secret" not in str(caught.value)
    assert str(caught.value).startswith("error validating token: error verifying token signature")


def test_bound_claims_string_glob_and_lists():
    role = {
        "bound_claims": {"roles": ["KeyOperator"], "tid": TENANT},
        "bound_claims_type": "string",
    }
    jwt.check_bound_claims({"roles": ["Other", "KeyOperator"], "tid": TENANT}, role)
    with pytest.raises(InvalidRequest, match=r'claim "roles" does not match'):
        jwt.check_bound_claims({"roles": ["Reader"], "tid": TENANT}, role)
    with pytest.raises(InvalidRequest, match=r'claim "tid" is missing'):
        jwt.check_bound_claims({"roles": ["KeyOperator"]}, role)
    globbed = {
        "bound_claims": {"sub": "repo:org/app:ref:refs/heads/*"},
        "bound_claims_type": "glob",
    }
    jwt.check_bound_claims({"sub": "repo:org/app:ref:refs/heads/main"}, globbed)
    with pytest.raises(InvalidRequest):
        jwt.check_bound_claims({"sub": "repo:org/app:pull_request"}, globbed)
    # Only * is special (go-glob): ? and [ match themselves.
    literal = {"bound_claims": {"sub": "a?[b]*"}, "bound_claims_type": "glob"}
    jwt.check_bound_claims({"sub": "a?[b]c"}, literal)
    with pytest.raises(InvalidRequest):
        jwt.check_bound_claims({"sub": "ax[b]c"}, literal)


def test_identity_user_claim_and_mappings():
    role = {
        "bound_audiences": ["a"],
        "user_claim": "oid",
        "claim_mappings": {"azp": "app", "n": "num"},
    }
    found = jwt.login_identity({"aud": "a", "oid": OID, "azp": "x", "n": 3}, role)
    assert (found.name, found.metadata) == (OID, {"app": "x", "num": "3"})
    with pytest.raises(InvalidRequest, match="error converting claim 'azp' to string"):
        jwt.login_identity({"aud": "a", "oid": OID, "azp": ["x"]}, role)
    with pytest.raises(InvalidRequest, match="audience claim found in JWT but no audiences"):
        jwt.login_identity({"aud": "a", "oid": OID}, {**role, "bound_audiences": []})


def _role_data(body: dict[str, Any]) -> FieldData:
    from shared.api.auth import JWT_ROLE_FIELDS

    return FieldData(body, JWT_ROLE_FIELDS)


def test_role_rules():
    base = {"role_type": "jwt", "user_claim": "oid", "bound_audiences": "a"}
    role, _ = jwt.role_from(_role_data(base), {}, system_max=768 * 3600)
    assert role["bound_audiences"] == ["a"] and role["token_type"] == "default"
    for extra, text in [
        ({"token_type": "batch"}, "batch tokens are not supported"),
        ({"claim_mappings": {"x": "role"}}, 'metadata key "role" is reserved'),
        ({"clock_skew_leeway": "2h"}, "clock_skew_leeway must be"),
        ({"token_bound_cidrs": "10.0.0.0/33"}, 'error parsing address "10.0.0.0/33"'),
    ]:
        with pytest.raises(InvalidRequest, match=text):
            jwt.role_from(_role_data({**base, **extra}), {}, system_max=768 * 3600)


# -- azure ---------------------------------------------------------------------------------------

DISCOVERY = keys.Discovery(V1_ISSUER, "https://login.example/keys")
EFFECTIVE = azure.Effective(TENANT, ARM, "https://login.microsoftonline.com")


def verify(token: str, now: float | None = None) -> dict[str, Any]:
    return azure.verify(token, EFFECTIVE, DISCOVERY, [KEY.public_key()], now or time.time())


def test_azure_verifies_as_go_oidc_does():
    assert verify(sign())["oid"] == OID
    with pytest.raises(
        InvalidRequest,
        match=r'^oidc: expected audience "https://management.azure.com/" got \["https://management.azure.com"\]$',
    ):
        verify(sign(aud=ARM.rstrip("/")))  # the trailing slash matters (plugin issue #9)
    with pytest.raises(InvalidRequest, match=r"^oidc: id token issued by a different provider"):
        verify(sign(iss=f"https://login.microsoftonline.com/{TENANT}/v2.0"))
    with pytest.raises(InvalidRequest, match=r"^oidc: token is expired \(Token Expiry: "):
        verify(sign(exp=int(time.time()) - 1))
    with pytest.raises(InvalidRequest, match=r"^token is not yet valid \(Token Not Before: "):
        verify(sign(nbf=int(time.time()) + 60))
    with pytest.raises(InvalidRequest, match=r"^failed to verify signature"):
        verify(sign(key=OTHER))
    with pytest.raises(InvalidRequest, match="unsupported algorithm"):
        verify(
            sign(key=rsa.generate_private_key(public_exponent=65537, key_size=2048), alg="PS256")
        )


def test_azure_role_binding_at_login():
    role = {"bound_service_principal_ids": [OID], "bound_group_ids": []}
    azure.check_role({"oid": OID}, role)
    with pytest.raises(InvalidRequest, match=r"^service principal not authorized: someone$"):
        azure.check_role({"oid": "someone"}, role)
    with pytest.raises(InvalidRequest, match="expected specific bound_group_ids"):
        azure.check_role({"oid": OID}, {"bound_service_principal_ids": ["*"]})
    groups = {"bound_group_ids": ["g1"]}
    azure.check_role({"oid": OID, "groups": ["g0", "g1"]}, groups)
    with pytest.raises(InvalidRequest, match=r"^groups not authorized: \[g0\]$"):
        azure.check_role({"oid": OID, "groups": ["g0"]}, groups)


def request(**fields: str) -> azure.Request:
    base = {
        "subscription_id": "",
        "resource_group_name": "",
        "vm_name": "",
        "vmss_name": "",
        "resource_id": "",
    }
    return azure.Request(**{**base, **fields})


def test_azure_resource_binding_against_xms_mirid():
    sub = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
    role = {"bound_subscription_ids": [sub], "bound_resource_groups": ["apps"]}
    claims = {"xms_mirid": MIRID}
    azure.check_resource(claims, role, request(subscription_id=sub, resource_group_name="APPS"))
    azure.check_resource(
        claims,
        role,
        request(subscription_id=sub, resource_group_name="apps", resource_id=MIRID.lower()),
    )
    for fields, text in [
        ({"subscription_id": sub}, "subscription_id and resource_group_name are required"),
        (
            {"subscription_id": sub, "resource_group_name": "other"},
            "does not match resource_group_name",
        ),
        (
            {"subscription_id": sub, "resource_group_name": "apps", "vm_name": "vm1"},
            "does not match vm_name",
        ),
        (
            {"subscription_id": sub, "resource_group_name": "apps", "resource_id": MIRID + "x"},
            "does not match resource_id",
        ),
    ]:
        with pytest.raises(InvalidRequest, match=text):
            azure.check_resource(claims, role, request(**fields))
    with pytest.raises(InvalidRequest, match="xms_az_rid and xms_mirid claims are missing"):
        azure.check_resource({}, role, request(subscription_id=sub, resource_group_name="apps"))
    with pytest.raises(InvalidRequest, match=r"^resource group not authorized$"):
        azure.check_resource(
            claims,
            {"bound_resource_groups": ["prod"]},
            request(subscription_id=sub, resource_group_name="apps"),
        )
    azure.check_resource(
        {}, {"bound_service_principal_ids": [OID]}, request()
    )  # no binding: no check


def test_azure_request_formats():
    with pytest.raises(InvalidRequest, match=r'^invalid subscription id "x"$'):
        azure.check_request(request(subscription_id="x"))
    with pytest.raises(InvalidRequest, match=r'^invalid vm name "a b"$'):
        azure.check_request(request(vm_name="a b"))


def test_azure_settings_fallbacks():
    from shared.settings import load as load_settings

    def load(env: dict[str, str]) -> Any:
        return load_settings({"KEYMGMT_STORAGE": "UseDevelopmentStorage=true", **env})

    app = load(
        {
            "AZURE_TENANT_ID": "t-env",
            "AZURE_AD_RESOURCE": "r-env",
            "AZURE_AUTHORITY_HOST": "https://127.0.0.1:9",
        }
    )
    assert azure.effective({}, app) == azure.Effective("t-env", "r-env", "https://127.0.0.1:9")
    assert azure.effective({"tenant_id": "t", "resource": "r"}, app).tenant_id == "t"  # config wins
    gov = azure.effective(
        {"tenant_id": "t", "resource": "r", "environment": "AzureUSGovernmentCloud"}, load({})
    )
    assert gov.authority == "https://login.microsoftonline.us"
    with pytest.raises(InvalidRequest, match=r"^tenant_id is required$"):
        azure.effective({}, load({}))


# -- addresses and names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "address"),
    [
        ({"client-ip": "203.0.113.7:50123"}, "203.0.113.7"),
        ({"client-ip": "[2001:db8::1]:443"}, "2001:db8::1"),
        (
            {"x-forwarded-for": "10.9.9.9, 203.0.113.7:50123"},
            "203.0.113.7",
        ),  # the front end's is last
        ({"client-ip": "203.0.113.7:1", "x-forwarded-for": "10.9.9.9"}, "203.0.113.7"),
        ({"x-forwarded-for": "garbage"}, ""),
        ({}, ""),
    ],
)
def test_client_address(headers: dict[str, str], address: str):
    assert client_address(headers) == address


def test_bound_cidrs():
    assert address_allowed("10.1.2.3", ["10.0.0.0/8"])
    assert not address_allowed("11.1.2.3", ["10.0.0.0/8"])
    assert not address_allowed("", ["0.0.0.0/0"])  # an unknown address is in no network
    assert address_allowed("::ffff:10.1.2.3", ["10.0.0.0/8"])
    assert common.shown_cidrs(common.parse_cidrs(["127.0.0.1", "10.0.0.0/8", "::1"])) == [
        "127.0.0.1",
        "10.0.0.0/8",
        "::1",
    ]


def test_display_name_and_entity_id():
    assert common.display_name("jwt", "user@example.com") == "jwt-user-example-com"
    assert common.entity_id("auth_jwt_1", OID) == common.entity_id("auth_jwt_1", OID)
    assert common.entity_id("auth_jwt_1", OID) != common.entity_id("auth_jwt_2", OID)


# -- fetching keys -------------------------------------------------------------------------------


def test_an_unreachable_issuer_is_a_503_not_a_hang():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UpstreamUnavailable, match="could not be reached"):
        keys.fetch_json(f"http://127.0.0.1:{port}/keys", keys.tls_context(""))
    client = keys.jwks_client(f"http://127.0.0.1:{port}/keys", "")
    with pytest.raises(UpstreamUnavailable, match="signing keys could not be fetched"):
        keys.jwks_keys(client, sign())


def test_redirects_and_huge_documents_are_refused():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/big")
                self.end_headers()
                return
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"[" + b"0," * keys.MAX_DOCUMENT + b"0]")

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        with pytest.raises(UpstreamUnavailable, match="answered 302"):
            keys.fetch_json(f"{base}/redirect", keys.tls_context(""))
        with pytest.raises(UpstreamUnavailable, match="more than"):
            keys.fetch_json(f"{base}/big", keys.tls_context(""))
    finally:
        server.shutdown()
        server.server_close()


def test_a_key_set_that_is_not_one_is_a_503():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            if self.path == "/big":
                self.wfile.write(b'{"keys": [' + b"{}," * keys.MAX_DOCUMENT + b"{}]}")
            else:
                self.wfile.write(
                    b"<html>not json</html>" if self.path == "/html" else b'{"keys": []}'
                )

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for path in ("/html", "/empty", "/big"):
            client = keys.jwks_client(f"http://127.0.0.1:{server.server_port}{path}", "")
            with pytest.raises(UpstreamUnavailable):
                keys.jwks_keys(client, sign())
    finally:
        server.shutdown()
        server.server_close()


def test_a_role_cannot_give_the_root_policy():
    base = {"role_type": "jwt", "user_claim": "oid", "bound_audiences": "a"}
    with pytest.raises(InvalidRequest, match="root policy cannot be given"):
        jwt.role_from(_role_data({**base, "token_policies": "a,ROOT"}), {}, system_max=3600)


def test_bound_claims_and_mappings_take_json_pointers():
    claims = {"aud": "a", "oid": OID, "address": {"country": "NL"}, "a/b": "slash"}
    role = {"bound_claims": {"/address/country": "NL", "/a~1b": "slash"}}
    jwt.check_bound_claims(claims, role)
    with pytest.raises(InvalidRequest, match=r'claim "/address/country" does not match'):
        jwt.check_bound_claims({**claims, "address": {"country": "BE"}}, role)
    mapped = {
        "bound_audiences": ["a"],
        "user_claim": "oid",
        "claim_mappings": {"/address/country": "c"},
    }
    assert jwt.login_identity(claims, mapped).metadata == {"c": "NL"}
