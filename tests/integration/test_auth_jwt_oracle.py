"""auth/jwt and sys/auth against the oracle: each case runs on a real OpenBao dev server and
on the local stack over HTTP, and both must answer with the same statuses, texts and shapes.

Known, deliberate differences are tested in test_auth_api.py instead: token ids (``s.``
there, ``hvs.`` here), batch tokens (refused here), the renewal of a token whose role is gone
(OpenBao 500, here 400 with the same text), the text for a token that is not a JWT (Go's JSON
parser's there), and the azure type (not in OpenBao).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt as pyjwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"
AUDIENCE = "api://azure-keymgmt"
OID = "11111111-2222-3333-4444-555555555555"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = (
    KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def token(
    key: Any = KEY, alg: str = "RS256", headers: dict[str, Any] | None = None, **claims: Any
) -> str:
    now = int(time.time())
    body = {
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "tid": TENANT,
        "oid": OID,
        "sub": OID,
        "azp": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "roles": ["KeyOperator", "Other"],
        "ver": "2.0",
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return pyjwt.encode(body, key, algorithm=alg, headers=headers or {"kid": "test-kid-1"})


def unsigned(**claims: Any) -> str:
    """alg none: header and payload, no signature."""

    def part(value: Any) -> str:
        return pyjwt.utils.base64url_encode(json.dumps(value).encode()).decode()

    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "oid": OID, "exp": now + 3600, **claims}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(body)}."


@dataclass(frozen=True)
class Approx:
    """Seconds that may differ by a tick or two between the two runs."""

    value: int

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Approx) and abs(self.value - other.value) <= 3

    def __hash__(self) -> int:
        return 0


class Side:
    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url
        self.session = requests.Session()

    def call(self, method: str, path: str, body: Any = None, token: str | None = "root") -> Any:
        headers = {"X-Vault-Token": token} if token else {}
        return self.session.request(
            method, f"{self.url}/v1/{path}", headers=headers, json=body, timeout=60
        )


def observe(response: requests.Response) -> Any:
    """What must agree: status, errors, warnings, and the body's data and auth shapes."""
    if response.status_code == 204:
        return 204
    body = response.json()
    seen: dict[str, Any] = {"status": response.status_code}
    if "errors" in body:
        seen["errors"] = body["errors"]
        return seen
    seen["warnings"] = body.get("warnings")
    data = body.get("data")
    if isinstance(data, dict):
        seen["data"] = _data(data)
    if body.get("auth"):
        auth = dict(body["auth"])
        auth["client_token"] = bool(auth["client_token"])
        auth["accessor"] = bool(auth["accessor"])
        auth["entity_id"] = bool(auth["entity_id"])
        seen["auth"] = auth
        seen["auth_keys"] = list(body["auth"])
    return seen


def _data(data: dict[str, Any]) -> dict[str, Any]:
    shown = {}
    for key, value in data.items():
        if key in (
            "accessor",
            "uuid",
            "running_plugin_version",
            "id",
            "creation_time",
            "expire_time",
            "issue_time",
            "entity_id",
        ):
            shown[key] = bool(value)
        elif key in ("ttl", "creation_ttl") and isinstance(value, int):
            shown[key] = Approx(value)
        elif isinstance(value, dict) and key.endswith("/"):
            shown[key] = _data(value)
        else:
            shown[key] = value
    return shown


def _mount(s: Side, mount: str) -> None:
    assert s.call("POST", f"sys/auth/{mount}", {"type": "jwt"}).status_code == 204
    response = s.call(
        "POST",
        f"auth/{mount}/config",
        {"jwt_validation_pubkeys": [PUBLIC_PEM], "bound_issuer": ISSUER},
    )
    assert response.status_code == 204, (s.name, response.text)


ROLE = {
    "role_type": "jwt",
    "bound_audiences": [AUDIENCE],
    "user_claim": "oid",
    "bound_claims": {"tid": TENANT, "roles": ["KeyOperator"]},
    "claim_mappings": {"azp": "client_app"},
    "token_policies": ["kms-admin"],
    "token_ttl": "15m",
    "token_max_ttl": "1h",
    "token_type": "service",
}


def sys_auth(s: Side, mount: str) -> list[Any]:
    listed_before = s.call("GET", "sys/auth").json()
    out: list[Any] = [
        sorted(listed_before["data"]["token/"]),
        _data(listed_before["data"]["token/"]) | {"running_plugin_version": None},
        "token/" in listed_before,  # the legacy top-level copy
        observe(s.call("POST", f"sys/auth/{mount}", {"type": "jwt", "description": "d"})),
        observe(s.call("POST", f"sys/auth/{mount}", {"type": "jwt"})),
        observe(s.call("POST", f"sys/auth/{mount}x", {"type": "nope"})),
        observe(s.call("POST", f"sys/auth/{mount}y", {})),
        observe(s.call("DELETE", "sys/auth/token")),
        observe(s.call("GET", f"sys/auth/{mount}-missing")),
    ]
    listed = s.call("GET", "sys/auth").json()
    entry = listed["data"][f"{mount}/"]
    out += [sorted(entry), _data(entry) | {"running_plugin_version": None}, f"{mount}/" in listed]
    read = s.call("GET", f"sys/auth/{mount}").json()
    out += [sorted(read["data"]), "type" in read]
    out += [
        observe(s.call("DELETE", f"sys/auth/{mount}")),
        f"{mount}/" in s.call("GET", "sys/auth").json()["data"],
        observe(s.call("DELETE", f"sys/auth/{mount}")),
        observe(s.call("POST", f"auth/{mount}/login", {"role": "r", "jwt": "x"}, token=None)),
    ]
    return out


def config(s: Side, mount: str) -> list[Any]:
    assert s.call("POST", f"sys/auth/{mount}", {"type": "jwt"}).status_code == 204
    path = f"auth/{mount}/config"
    out = [
        observe(s.call("GET", path)),
        observe(s.call("POST", path, {})),
        observe(
            s.call("POST", path, {"jwt_validation_pubkeys": [PUBLIC_PEM], "jwks_url": "https://x"})
        ),
        observe(
            s.call(
                "POST",
                path,
                {"jwt_validation_pubkeys": [PUBLIC_PEM], "jwt_supported_algs": ["HS256"]},
            )
        ),
        observe(
            s.call(
                "POST", path, {"jwt_validation_pubkeys": [PUBLIC_PEM], "oidc_client_secret": "s"}
            )
        ),
        observe(
            s.call(
                "POST",
                path,
                {
                    "jwt_validation_pubkeys": [PUBLIC_PEM],
                    "bound_issuer": ISSUER,
                    "jwt_supported_algs": ["RS256", "ES256"],
                    "default_role": "kms-operator",
                },
            )
        ),
        observe(s.call("GET", path)),
    ]
    return out


def roles(s: Side, mount: str) -> list[Any]:
    _mount(s, mount)
    path = f"auth/{mount}/role"
    cases = [
        {"role_type": "jwt", "user_claim": "oid"},
        {"role_type": "jwt", "bound_audiences": ["a"]},
        {"user_claim": "oid", "bound_audiences": ["a"]},
        {"role_type": "foo", "user_claim": "oid", "bound_audiences": ["a"]},
        {
            "role_type": "jwt",
            "user_claim": "oid",
            "bound_audiences": ["a"],
            "bound_claims_type": "x",
        },
        {
            "role_type": "jwt",
            "user_claim": "oid",
            "bound_audiences": ["a"],
            "token_ttl": "2h",
            "token_max_ttl": "1h",
        },
        {
            "role_type": "jwt",
            "user_claim": "oid",
            "bound_audiences": ["a"],
            "token_bound_cidrs": ["nope"],
        },
        {"role_type": "jwt", "user_claim": "oid", "bound_audiences": ["a"], "token_num_uses": -1},
        {
            "role_type": "jwt",
            "user_claim": "oid",
            "bound_audiences": ["a"],
            "token_period": "100000h",
        },
    ]
    out = [observe(s.call("POST", f"{path}/bad", body)) for body in cases]
    out.append(observe(s.call("GET", f"{path}/bad")))
    out.append(observe(s.call("POST", f"{path}/kms-operator", ROLE)))
    out.append(observe(s.call("GET", f"{path}/kms-operator")))
    out.append(
        observe(
            s.call(
                "POST",
                f"{path}/kms-operator",
                {"token_ttl": 600, "token_bound_cidrs": "127.0.0.1,10.0.0.0/8"},
            )
        )
    )
    out.append(
        observe(
            s.call(
                "POST",
                f"{path}/kms-operator",
                {"role_type": "jwt", "token_ttl": 600, "token_bound_cidrs": "127.0.0.1,10.0.0.0/8"},
            )
        )
    )
    out.append(observe(s.call("GET", f"{path}/kms-operator")))
    out.append(
        observe(
            s.call(
                "POST",
                f"{path}/glob",
                {**ROLE, "bound_claims_type": "glob", "bound_claims": {"sub": "1111*"}},
            )
        )
    )
    out.append(observe(s.call("GET", f"{path}?list=true")))  # Azure routes no LIST verb
    out.append(observe(s.call("DELETE", f"{path}/glob")))
    out.append(observe(s.call("GET", f"{path}/glob")))
    return out


def logins(s: Side, mount: str) -> list[Any]:
    _mount(s, mount)
    path = f"auth/{mount}"
    s.call("POST", f"{path}/role/kms-operator", ROLE)
    s.call("POST", f"{path}/role/nobind", {**ROLE, "bound_audiences": [], "bound_subject": OID})
    s.call("POST", f"{path}/role/subject", {**ROLE, "bound_subject": "someone-else"})
    s.call(
        "POST",
        f"{path}/role/browser",
        {"role_type": "oidc", "user_claim": "oid", "allowed_redirect_uris": ["http://x"]},
    )
    s.call("POST", f"{path}/role/upn", {**ROLE, "user_claim": "upn"})
    s.call("POST", f"{path}/role/listmap", {**ROLE, "claim_mappings": {"roles": "r"}})
    s.call(
        "POST",
        f"{path}/role/glob",
        {**ROLE, "bound_claims_type": "glob", "bound_claims": {"sub": "1111*"}},
    )
    s.call("POST", f"{path}/role/groups", {**ROLE, "groups_claim": "groups"})

    def login(role: str | None, jwt_: str | None) -> Any:
        body = {k: v for k, v in {"role": role, "jwt": jwt_}.items() if v is not None}
        return observe(s.call("POST", f"{path}/login", body, token=None))

    now = int(time.time())
    ec_key = ec.generate_private_key(ec.SECP256R1())
    out = [
        login("kms-operator", token()),
        login("kms-operator", token(aud="api://other")),
        # No aud: refused here too, by the stricter required-claims rule (tests/unit/test_auth.py)
        login("kms-operator", token(iss=f"https://sts.windows.net/{TENANT}/")),
        login("kms-operator", token(roles=["Reader"])),
        login("kms-operator", token(tid=None)),
        login("kms-operator", token(exp=now - 3600)),
        login("kms-operator", token(exp=now - 100)),  # within the default leeways
        login("kms-operator", token(nbf=now + 600)),
        login("kms-operator", token(iat=now + 600)),
        login("kms-operator", token(oid=None)),
        login("kms-operator", token(key=OTHER_KEY)),
        login("kms-operator", token(key="guessed-secret-guessed-secret-32b", alg="HS256")),
        login("kms-operator", token(key=ec_key, alg="ES256")),
        login("kms-operator", unsigned()),
        login("kms-operator", None),
        login("nope", token()),
        login(None, token()),  # default_role is unset
        login("nobind", token()),
        login("subject", token()),
        login("browser", token()),
        login("upn", token()),
        login("listmap", token()),
        login("glob", token()),
        login("glob", token(sub="2222")),
        login("groups", token()),
        login("KMS-OPERATOR", token()),
    ]
    response = s.call("POST", f"{path}/login", {"role": "kms-operator", "jwt": token()}, token=None)
    issued = response.json()["auth"]["client_token"]
    out.append(observe(s.call("GET", "auth/token/lookup-self", token=issued)))
    out.append(observe(s.call("POST", "auth/token/renew-self", {"increment": "20m"}, token=issued)))
    return out


CASES: list[Callable[[Side, str], list[Any]]] = [sys_auth, config, roles, logins]


@pytest.fixture(scope="module")
def sides(openbao: Any, funchost: Any) -> tuple[Side, Side]:
    return Side("openbao", openbao.url), Side("local", funchost.url)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_auth_jwt_answers_as_openbao_does(sides: tuple[Side, Side], case: Any) -> None:
    oracle, local = sides
    mount = f"j{uuid.uuid4().hex[:8]}"
    expected = case(oracle, mount)
    got = case(local, mount)
    assert len(expected) == len(got)
    for index, (want, have) in enumerate(zip(expected, got, strict=True)):
        assert have == want, f"{case.__name__} step {index}: {have!r} != {want!r}"
