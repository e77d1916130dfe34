"""The token store's paths over real HTTP: local host → engine → Azurite.

Every path and rule, with Vault's texts spelled out (test_tokens_oracle.py checks the same
answers against a real OpenBao server); here also what is deliberately this server's own: its
token format, the root token from settings, no batch tokens, no token in a URL.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from azure.data.tables import TableServiceClient

from tests.fixtures.funchost import Api
from tests.helpers import TOKEN_ADMIN_POLICY, errors, wait_until, write_policy


@pytest.fixture(scope="module", autouse=True)
def ops_policy(funchost):
    """``ops``: the non-root parent these tests use may manage tokens (the ACL allows the
    paths; the token store's rules are what is tested)."""
    keys = 'path "keymgmt/key/*" { capabilities = ["create", "read", "update"] }'
    write_policy(funchost.url, "ops", f"{TOKEN_ADMIN_POLICY}\n{keys}\n")


def create(api: Api, token: str | None = None, **body: Any) -> dict[str, Any]:
    response = call(api, "POST", "auth/token/create", token, body)
    assert response.status_code == 200, response.text
    auth: dict[str, Any] = response.json()["auth"]
    return auth


def call(api: Api, method: str, path: str, token: str | None = None, body: Any = None):
    headers = {} if token is None else {"X-Vault-Token": token}
    return api.request(method, path, json=body, headers=headers)


def lookup_self(api: Api, token: str):
    return call(api, "GET", "auth/token/lookup-self", token)


# -- create ------------------------------------------------------------------------------------


def test_create_answers_vaults_auth_block(api):
    response = call(
        api,
        "POST",
        "auth/token/create",
        body={
            "policies": ["default"],
            "ttl": "1h",
            "display_name": "my app",
            "meta": {"team": "kms"},
            "num_uses": 0,
            "renewable": True,
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert list(body) == [
        "request_id",
        "lease_id",
        "renewable",
        "lease_duration",
        "data",
        "wrap_info",
        "warnings",
        "auth",
    ]
    assert (body["lease_id"], body["renewable"], body["lease_duration"], body["data"]) == (
        "",
        False,
        0,
        None,
    )
    auth = body["auth"]
    assert list(auth) == [
        "client_token",
        "accessor",
        "policies",
        "token_policies",
        "metadata",
        "lease_duration",
        "renewable",
        "entity_id",
        "token_type",
        "orphan",
        "mfa_requirement",
        "num_uses",
    ]
    assert auth["client_token"].startswith("hvs.") and len(auth["client_token"]) == 28
    assert len(auth["accessor"]) == 24
    assert auth["policies"] == auth["token_policies"] == ["default"]
    assert auth["metadata"] == {"team": "kms"} and auth["lease_duration"] == 3600
    assert auth["renewable"] is True and auth["orphan"] is False
    assert auth["token_type"] == "service" and auth["mfa_requirement"] is None
    data = lookup_self(api, auth["client_token"]).json()["data"]
    assert data["display_name"] == "token-my-app" and data["path"] == "auth/token/create"


def test_create_by_root_with_nothing_is_a_root_token_that_never_expires(api):
    auth = create(api)
    assert auth["policies"] == ["root"] and auth["lease_duration"] == 0
    assert auth["renewable"] is False
    data = lookup_self(api, auth["client_token"]).json()["data"]
    assert data["expire_time"] is None and data["ttl"] == 0


@pytest.mark.parametrize(
    ("body", "policies", "lease", "warnings"),
    [
        (
            {"policies": ["default", "foo"], "ttl": "10m"},
            ["default", "foo"],
            600,
            ['Policy "foo" does not exist'],
        ),
        ({"policies": "a,b"}, ["a,b", "default"], 2764800, ['Policy "a,b" does not exist']),
        ({"policies": ["B", "root"]}, ["root"], 0, None),
        (
            {"period": "30m", "policies": ["p1"]},
            ["default", "p1"],
            1800,
            ['Policy "p1" does not exist'],
        ),
        ({"ttl": 90, "policies": ["default"]}, ["default"], 90, None),
        ({"ttl": "90", "policies": ["default"]}, ["default"], 90, None),
        (
            {"ttl": "1h0m0s", "explicit_max_ttl": "0s", "policies": ["default"]},
            ["default"],
            3600,
            None,
        ),
        (
            {"ttl": "2h", "explicit_max_ttl": "20m", "policies": ["default"]},
            ["default"],
            1200,
            [
                'TTL of "2h" exceeded the effective max_ttl of "20m"; TTL value is capped '
                "accordingly"
            ],
        ),
        ({"explicit_max_ttl": "1h"}, ["root"], 3600, None),
        (
            {"policies": ["default"], "bogus": 1},
            ["default"],
            2764800,
            ["Endpoint ignored these unrecognized parameters: [bogus]"],
        ),
    ],
)
def test_create_applies_vaults_policy_and_ttl_rules(api, body, policies, lease, warnings):
    response = call(api, "POST", "auth/token/create", body=body)
    assert response.status_code == 200, response.text
    assert response.json()["auth"]["policies"] == policies
    assert response.json()["auth"]["lease_duration"] == lease
    assert response.json()["warnings"] == warnings


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"type": "bogus"}, "invalid 'token_type' value"),
        ({"num_uses": -1}, "number of uses cannot be negative"),
        ({"ttl": "bogus"}, 'time: invalid duration "bogus"'),
        ({"ttl": "-5s"}, "ttl must be positive"),
        ({"explicit_max_ttl": "-1h"}, "explicit_max_ttl must be positive"),
        ({"period": "-1m"}, "period must be positive"),
        ({"entity_alias": "x"}, "'entity_alias' is only allowed in combination with token role"),
        ({"id": "s.custom"}, "custom token ID cannot have the 's.' prefix"),
        ({"id": "hvs.custom"}, "custom token ID cannot have the 'hvs.' prefix"),
        ({"id": "a.b"}, "custom token ID cannot have a '.' in the value"),
        (
            {"type": "batch"},
            "batch tokens are not supported by this server: create a service token "
            "(type=service, the default)",
        ),
    ],
)
def test_create_refuses_with_vaults_texts(api, body, message):
    response = call(api, "POST", "auth/token/create", body=body)
    assert response.status_code == 400 and errors(response) == [message]


def test_a_caller_without_root_gets_vaults_parent_rules(api):
    parent = create(api, policies=["ops"], ttl="1h")["client_token"]
    for body, message in (
        ({"policies": ["reader"]}, "child policies must be subset of parent"),
        ({"policies": ["root"]}, "child policies must be subset of parent"),
        ({"no_parent": True}, "root or sudo privileges required to create orphan token"),
        ({"period": "1h"}, "root or sudo privileges required to create periodic token"),
        ({"id": "custom"}, "root or sudo privileges required to specify token id"),
    ):
        response = call(api, "POST", "auth/token/create", parent, body)
        assert response.status_code == 400 and errors(response) == [message], body
    child = create(api, parent)
    assert child["policies"] == ["default", "ops"] and child["orphan"] is False
    assert create(api, parent, no_default_policy=True)["policies"] == ["ops"]
    # Its child may live longer than it; its expiry ends the child anyway (see below).
    assert create(api, parent, ttl="2h")["lease_duration"] == 7200
    orphan = call(api, "POST", "auth/token/create-orphan", parent, {})
    assert orphan.status_code == 200 and orphan.json()["auth"]["orphan"] is True
    assert orphan.json()["auth"]["lease_duration"] == 2764800


def test_an_expiring_root_token_cannot_make_a_lasting_one(api):
    expiring = create(api, ttl="1h")["client_token"]
    response = call(api, "POST", "auth/token/create", expiring, {})
    assert errors(response) == ["expiring root tokens cannot create non-expiring root tokens"]
    assert create(api, expiring, ttl="10m")["lease_duration"] == 600


def test_a_limited_use_token_cannot_make_children(api):
    limited = create(api, policies=["ops"], num_uses=3)["client_token"]
    response = call(api, "POST", "auth/token/create", limited, {})
    assert errors(response) == ["restricted use token cannot generate child tokens"]


def test_create_orphan_makes_an_orphan_as_hvac_calls_it(api):
    response = call(
        api, "POST", "auth/token/create-orphan", body={"policies": ["default"], "role_name": "r"}
    )
    assert response.status_code == 200
    assert response.json()["auth"]["orphan"] is True
    assert response.json()["warnings"] == [
        "Endpoint ignored these unrecognized parameters: [role_name]"
    ]
    data = lookup_self(api, response.json()["auth"]["client_token"]).json()["data"]
    assert data["path"] == "auth/token/create-orphan" and data["orphan"] is True


# -- lookup ------------------------------------------------------------------------------------


def test_lookup_self_shows_the_callers_own_token_and_counts_its_use(api):
    auth = create(api, policies=["default"], ttl="1h", num_uses=2, meta={"env": "dev"})
    token = auth["client_token"]
    data = lookup_self(api, token).json()["data"]
    assert data["id"] == token and data["accessor"] == auth["accessor"]
    assert data["num_uses"] == 1 and data["meta"] == {"env": "dev"}
    assert data["creation_ttl"] == 3600 and 3590 <= data["ttl"] <= 3600
    assert data["expire_time"].endswith("Z") and data["issue_time"].endswith("Z")
    assert list(data) == sorted(data)
    assert lookup_self(api, token).json()["data"]["num_uses"] == -1  # the last use
    gone = lookup_self(api, token)
    assert gone.status_code == 403 and errors(gone) == ["permission denied"]


def test_lookup_self_of_the_root_token_from_settings_shows_the_token_presented(api):
    data = api.get("auth/token/lookup-self").json()["data"]
    assert data["id"] == "root" and data["policies"] == ["root"]
    assert data["path"] == "auth/token/root" and data["orphan"] is True
    assert data["expire_time"] is None and data["renewable"] is False
    assert len(data["accessor"]) == 24
    assert api.get("auth/token/lookup-self").json()["data"]["accessor"] == data["accessor"]


def test_bearer_tokens_work_like_the_vault_header(api):
    token = create(api, policies=["default"])["client_token"]
    response = requests.get(
        f"{api.url}/v1/auth/token/lookup-self",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 200 and response.json()["data"]["id"] == token


def test_lookup_by_token_and_by_accessor(api):
    auth = create(api, policies=["default"], num_uses=5)
    by_token = call(api, "POST", "auth/token/lookup", body={"token": auth["client_token"]})
    assert by_token.json()["data"]["id"] == auth["client_token"]
    assert by_token.json()["data"]["num_uses"] == 5  # another's lookup is not its use
    by_accessor = call(
        api, "POST", "auth/token/lookup-accessor", body={"accessor": auth["accessor"]}
    )
    assert by_accessor.json()["data"]["id"] == "" and by_accessor.json()["data"]["num_uses"] == 5
    assert by_accessor.json()["data"]["accessor"] == auth["accessor"]
    own = call(api, "POST", "auth/token/lookup", body={})
    assert own.json()["data"]["id"] == "root"
    bad = call(api, "POST", "auth/token/lookup", body={"token": "hvs.nope"})
    assert bad.status_code == 403 and errors(bad) == ["bad token"]
    for body in ({"accessor": "nope"}, {}):
        response = call(api, "POST", "auth/token/lookup-accessor", body=body)
        what = "invalid accessor" if body else "missing accessor"
        assert response.status_code == 400
        assert errors(response) == [f"1 error occurred:\n\t* {what}\n\n"]


def test_a_token_is_never_taken_from_the_url(api):
    token = create(api, policies=["default"])["client_token"]
    response = api.get("auth/token/lookup", params={"token": token})
    assert response.status_code == 400 and "never taken from the URL" in errors(response)[0]
    assert token not in response.text
    assert api.get("auth/token/lookup").json()["data"]["id"] == "root"  # no token: self


# -- renew -------------------------------------------------------------------------------------


def test_renew_by_token_self_and_accessor(api):
    auth = create(api, policies=["default"], ttl="10m", explicit_max_ttl="30m")
    token, accessor = auth["client_token"], auth["accessor"]
    renewed = call(api, "PUT", "auth/token/renew", body={"token": token, "increment": 1200})
    assert renewed.json()["auth"]["lease_duration"] == 1200
    assert renewed.json()["auth"]["client_token"] == token
    capped = call(api, "POST", "auth/token/renew-self", token, {"increment": "1h"})
    assert 1795 <= capped.json()["auth"]["lease_duration"] <= 1800
    assert capped.json()["warnings"][0].startswith(
        'TTL of "1h" exceeded the effective max_ttl of "'
    )
    shorter = call(
        api, "POST", "auth/token/renew-accessor", body={"accessor": accessor, "increment": "5m"}
    )
    assert shorter.json()["auth"]["lease_duration"] == 300  # a renewal may shorten
    assert shorter.json()["auth"]["client_token"] == ""
    data = call(api, "POST", "auth/token/lookup", body={"token": token}).json()["data"]
    assert data["creation_ttl"] == 600 and 295 <= data["ttl"] <= 300
    assert data["last_renewal"].endswith("Z") and isinstance(data["last_renewal_time"], int)


@pytest.mark.parametrize(
    ("path", "token_body", "message"),
    [
        ("renew", {}, "missing token ID"),
        ("renew", {"token": "hvs.nope"}, "token not found"),
        ("renew-self", {}, "lease is not renewable"),  # the root token
        ("renew-accessor", {"accessor": "nope"}, "1 error occurred:\n\t* invalid accessor\n\n"),
        ("renew-accessor", {}, "1 error occurred:\n\t* missing accessor\n\n"),
        (
            "renew-self",
            {"increment": "-1h"},
            'Field validation failed: error converting input for field "increment": cannot '
            "provide negative value '-3600'",
        ),
    ],
)
def test_renew_refuses_with_vaults_texts(api, path, token_body, message):
    response = call(api, "POST", f"auth/token/{path}", body=token_body)
    assert response.status_code == 400 and errors(response) == [message]


def test_a_token_created_not_renewable_is_not(api):
    token = create(api, policies=["default"], ttl="10m", renewable=False)["client_token"]
    response = call(api, "POST", "auth/token/renew-self", token, {})
    assert errors(response) == ["lease is not renewable"]


# -- revoke ------------------------------------------------------------------------------------


def test_revoking_a_parent_revokes_its_tree_at_once(api):
    parent = create(api, policies=["ops"], ttl="1h")["client_token"]
    child = create(api, parent)
    grandchild = create(api, child["client_token"])["client_token"]  # ops, inherited
    child_key = f"keymgmt/key/t-{time.monotonic_ns()}"
    assert call(api, "POST", child_key, grandchild, {"type": "ecdsa-p256"}).status_code == 204
    assert call(api, "PUT", "auth/token/revoke", body={"token": parent}).status_code == 204
    for token in (parent, child["client_token"], grandchild):
        response = call(api, "POST", "auth/token/lookup", body={"token": token})
        assert response.status_code == 403 and errors(response) == ["bad token"]
        denied = call(api, "GET", child_key, token)
        assert denied.status_code == 403 and errors(denied) == ["permission denied"]
    gone = call(api, "POST", "auth/token/lookup-accessor", body={"accessor": child["accessor"]})
    assert errors(gone) == ["1 error occurred:\n\t* invalid accessor\n\n"]


def test_revoke_self_accessor_and_orphan(api):
    top = create(api, policies=["ops"])["client_token"]
    below = create(api, top)["client_token"]
    assert call(api, "PUT", "auth/token/revoke-self", top).status_code == 204
    assert lookup_self(api, below).status_code == 403

    top = create(api, policies=["ops"])
    below = create(api, top["client_token"])["client_token"]
    response = call(api, "POST", "auth/token/revoke-accessor", body={"accessor": top["accessor"]})
    assert response.status_code == 204 and lookup_self(api, below).status_code == 403

    top = create(api, policies=["ops"])["client_token"]
    below = create(api, top)["client_token"]
    assert call(api, "PUT", "auth/token/revoke-orphan", body={"token": top}).status_code == 204
    assert lookup_self(api, top).status_code == 403
    assert lookup_self(api, below).json()["data"]["orphan"] is True


def test_revoke_answers_as_vault_for_what_is_not_there(api):
    assert call(api, "PUT", "auth/token/revoke", body={"token": "hvs.nope"}).status_code == 204
    assert errors(call(api, "PUT", "auth/token/revoke", body={})) == ["missing token ID"]
    unknown = call(api, "POST", "auth/token/revoke-accessor", body={"accessor": "nope"})
    assert unknown.status_code == 200
    assert unknown.json()["warnings"] == ["No token found with this accessor"]
    missing = call(api, "POST", "auth/token/revoke-accessor", body={})
    assert errors(missing) == ["1 error occurred:\n\t* missing accessor\n\n"]
    assert errors(call(api, "PUT", "auth/token/revoke-orphan", body={})) == ["missing token ID"]
    absent = call(api, "PUT", "auth/token/revoke-orphan", body={"token": "hvs.nope"})
    assert errors(absent) == ["token to revoke not found"]
    non_root = create(api, policies=["ops"])["client_token"]
    refused = call(api, "PUT", "auth/token/revoke-orphan", non_root, {"token": non_root})
    assert errors(refused) == ["root or sudo privileges required to revoke and orphan"]


def test_the_root_token_from_settings_stays(api):
    for path, body in (("revoke-self", None), ("revoke", {"token": "root"})):
        response = call(api, "PUT", f"auth/token/{path}", body=body)
        assert response.status_code == 400 and "remove KEYMGMT_ROOT_TOKEN" in errors(response)[0]
    assert api.get("auth/token/lookup-self").status_code == 200


def test_only_the_operations_vault_has(api):
    for method, path in (
        ("GET", "auth/token/create"),
        ("DELETE", "auth/token/revoke"),
        ("GET", "auth/token/renew-self"),
        ("GET", "auth/token/lookup-accessor"),
    ):
        assert api.request(method, path).status_code == 405, path
    anonymous = requests.get(f"{api.url}/v1/auth/token/create", timeout=30)
    assert anonymous.status_code == 403  # no token: denied before anything else


# -- expiry and the tidy timer -----------------------------------------------------------------


def test_a_parent_that_expires_takes_its_children_with_it(api):
    parent = create(api, policies=["ops"], ttl="2s")["client_token"]
    child = create(api, parent, ttl="1h")
    assert child["lease_duration"] == 3600
    wait_until(lambda: lookup_self(api, parent).status_code == 403, timeout=30, what="expiry")
    assert errors(lookup_self(api, child["client_token"])) == ["permission denied"]


def test_the_tidy_timer_removes_expired_tokens_rows(api, azurite):
    ending = create(api, policies=["default"], ttl="1s")
    wait_until(lambda: lookup_self(api, ending["client_token"]).status_code == 403, timeout=30)
    time.sleep(1)  # past the second its expiry entry is filed under
    tables = TableServiceClient.from_connection_string(azurite.connection_string)
    table = tables.get_table_client(api.host.settings["KEYMGMT_TABLE_PREFIX"] + "state")
    accessors = "PartitionKey eq '_token_accessor'"

    def held() -> int:
        return sum(1 for _ in table.query_entities(accessors))

    before = held()
    assert requests.post(f"{api.url}/admin/functions/token_tidy", timeout=60).status_code == 202
    wait_until(lambda: held() < before, timeout=60, what="the tidy to remove the rows")
    assert lookup_self(api, ending["client_token"]).status_code == 403


# -- odd input -----------------------------------------------------------------------------

ODD = [
    "",
    " ",
    "\x00",
    "\ud800",
    "é",
    "x" * 70_000,
    "-1",
    "1e3",
    "NaN",
    -1,
    2**63,
    10**30,
    1.5,
    True,
    [],
    ["a"] * 100,
    {"a": {"b": 1}},
    {f"k{i}": "v" * 1024 for i in range(64)},
    ["p" * 2000] * 60,
]
FIELDS = {
    "create": [
        "id",
        "policies",
        "meta",
        "no_parent",
        "renewable",
        "ttl",
        "type",
        "explicit_max_ttl",
        "display_name",
        "num_uses",
        "period",
    ],
    "lookup": ["token"],
    "lookup-accessor": ["accessor"],
    "renew": ["token", "increment"],
    "revoke": ["token"],
    "revoke-accessor": ["accessor"],
    "revoke-orphan": ["token"],
}


@pytest.mark.parametrize(
    ("path", "name"), [(path, name) for path, names in FIELDS.items() for name in names]
)
def test_odd_values_are_refused_or_taken_never_a_500(api, path, name):
    for value in ODD:
        response = api.post(f"auth/token/{path}", json={name: value})
        assert response.status_code < 500, (name, repr(value)[:60], response.text[:300])
        if isinstance(value, str) and len(value) > 1000:
            assert value[:1000] not in response.text  # a long value is never echoed whole
