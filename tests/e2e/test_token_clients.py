"""The token store through its real clients: the ``bao`` CLI (``bao login``, then plain
commands that read the token helper's file in a private HOME), hvac's token methods, and
Terraform's Vault provider start-up replayed over HTTP. CLI output is compared with what the
same commands print against a real OpenBao dev server."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import hvac
import pytest
import requests

from tests.fixtures.funchost import engine_settings, serving
from tests.fixtures.openbao import cli_in as cli
from tests.fixtures.openbao import cli_table as table
from tests.helpers import TOKEN_ADMIN_POLICY, write_policy


@pytest.fixture(scope="module")
def local(azurite):
    with serving(engine_settings(azurite, f"tok{os.getpid()}")) as host:
        write_policy(host.url, "ops", TOKEN_ADMIN_POLICY)  # a non-root parent's grants
        yield host


@pytest.fixture
def both(local, openbao, tmp_path):
    """The CLI against the local stack and against OpenBao, each logged in as root."""
    sides = {
        "local": cli(local.url, tmp_path, "local"),
        "openbao": cli(openbao.url, tmp_path, "bao"),
    }
    for side in sides.values():
        side("login", "root")
    return sides


# -- bao -----------------------------------------------------------------------------------


def test_bao_login_stores_the_token_and_later_commands_use_it(local, tmp_path):
    bao = cli(local.url, tmp_path, "home")
    root = bao("login", "root")
    assert "Success! You are now authenticated." in root.stdout
    assert bao.helper_token == "root"  # was "" when lookup-self did not return the id
    made = json.loads(bao("token", "create", "-format=json", "-policy=default", "-ttl=1h").stdout)
    token = made["auth"]["client_token"]
    out = bao("login", token).stdout
    assert table(out)["token"] == token and bao.helper_token == token
    assert table(out)["token_policies"] == '["default"]'
    # No BAO_TOKEN anywhere: the helper's file says who this is.
    looked_up = table(bao("token", "lookup").stdout)
    assert looked_up["id"] == token and looked_up["policies"] == "[default]"
    assert looked_up["path"] == "auth/token/create"


def test_bao_token_commands_print_what_openbao_prints(both):
    created = {}
    for name, bao in both.items():
        out = bao(
            "token",
            "create",
            "-policy=kms-admin",
            "-ttl=1h",
            "-display-name=ci",
            "-metadata=team=kms",
        )
        created[name] = table(out.stdout)
        assert 'Policy "kms-admin" does not exist' in out.stderr
    assert (
        list(created["local"])
        == list(created["openbao"])
        == [
            "token",
            "token_accessor",
            "token_duration",
            "token_renewable",
            "token_policies",
            "identity_policies",
            "policies",
            "token_meta_team",
        ]
    )
    for key in ("token_duration", "token_renewable", "token_policies", "policies"):
        assert created["local"][key] == created["openbao"][key], key
    assert created["local"]["token"].startswith("hvs.")

    looked: dict[str, dict[str, dict[str, str]]] = {}
    for name, bao in both.items():
        token, accessor = created[name]["token"], created[name]["token_accessor"]
        looked[name] = {
            "by token": table(bao("token", "lookup", token).stdout),
            "by accessor": table(bao("token", "lookup", "-accessor", accessor).stdout),
        }
    for how in ("by token", "by accessor"):
        mine, theirs = looked["local"][how], looked["openbao"][how]
        assert list(mine) == list(theirs), how
        for key in ("creation_ttl", "display_name", "explicit_max_ttl", "meta", "num_uses"):
            assert mine[key] == theirs[key], (how, key)
        for key in ("orphan", "path", "policies", "renewable", "type", "entity_id"):
            assert mine[key] == theirs[key], (how, key)
    assert looked["local"]["by token"]["id"] == created["local"]["token"]
    assert looked["local"]["by accessor"]["id"] == "n/a"
    assert looked["local"]["by token"]["display_name"] == "token-ci"
    assert looked["local"]["by token"]["meta"] == "map[team:kms]"

    renewed = {}
    for name, bao in both.items():
        out = bao("token", "renew", "-increment=30m", created[name]["token"]).stdout
        renewed[name] = table(out)
    assert list(renewed["local"]) == list(renewed["openbao"])
    assert renewed["local"]["token_duration"] == renewed["openbao"]["token_duration"] == "30m"


def test_bao_renew_and_revoke_in_every_mode(local, tmp_path):
    bao = cli(local.url, tmp_path, "home")
    bao("login", "root")

    def make(*flags: str) -> dict[str, Any]:
        out = bao("token", "create", "-format=json", *flags).stdout
        auth: dict[str, Any] = json.loads(out)["auth"]
        return auth

    def works(token: str) -> bool:
        return bao("token", "lookup", token, ok=False).returncode == 0

    # renew (self): log in as a renewable token, then plain `bao token renew`.
    own = make("-policy=default", "-ttl=10m")
    bao("login", own["client_token"])
    assert table(bao("token", "renew").stdout)["token_duration"] == "10m"
    bao("login", "root")

    done = "Success! Revoked token (if it existed)"
    token = make("-policy=default")["client_token"]
    assert bao("token", "revoke", token).stdout.strip() == done
    assert not works(token)

    accessor = make("-policy=default")
    assert bao("token", "revoke", "-accessor", accessor["accessor"]).stdout.strip() == done
    assert not works(accessor["client_token"])

    parent = make("-policy=ops")
    bao("login", parent["client_token"])
    child = make()["client_token"]
    bao("login", "root")
    assert bao("token", "revoke", "-mode=orphan", parent["client_token"]).stdout.strip() == done
    assert not works(parent["client_token"]) and works(child)
    assert table(bao("token", "lookup", child).stdout)["orphan"] == "true"

    bao("login", child)
    assert bao("token", "revoke", "-self").stdout.strip() == done
    bao("login", "root")
    assert not works(child)

    missing = bao("token", "lookup", "hvs.bogus", ok=False)
    assert missing.returncode == 2
    assert "Code: 403. Errors:\n\n* bad token" in missing.stderr


def test_bao_refuses_as_openbao_does(both):
    for bao in both.values():
        bao("login", "root")
    for bao in both.values():  # refusals the server makes (the CLI checks its own flags)
        result = bao("write", "auth/token/create", "ttl=bogus", ok=False)
        assert result.returncode == 2
        assert 'time: invalid duration "bogus"' in result.stderr
        result = bao("token", "create", "-use-limit=-1", ok=False)
        assert result.returncode == 2
        assert "number of uses cannot be negative" in result.stderr
    for bao in both.values():
        renew = bao("token", "renew", ok=False)  # the root token
        assert renew.returncode == 2 and "lease is not renewable" in renew.stderr


# -- hvac ----------------------------------------------------------------------------------


def test_hvac_token_methods(local):
    client = hvac.Client(url=local.url, token="root")
    assert client.is_authenticated()
    tokens = client.auth.token
    write_policy(local.url, "hvac-admin", TOKEN_ADMIN_POLICY)  # may make its own children
    made = tokens.create(
        policies=["hvac-admin"], ttl="1h", meta={"team": "kms"}, display_name="hvac"
    )
    auth = made["auth"]
    assert auth["policies"] == ["default", "hvac-admin"] and auth["lease_duration"] == 3600
    token, accessor = auth["client_token"], auth["accessor"]
    assert tokens.lookup(token)["data"]["display_name"] == "token-hvac"
    assert tokens.lookup_accessor(accessor)["data"]["id"] == ""
    assert tokens.renew(token, increment="30m")["auth"]["lease_duration"] == 1800
    assert tokens.renew_accessor(accessor, increment="20m")["auth"]["lease_duration"] == 1200

    own = hvac.Client(url=local.url, token=token)
    assert own.is_authenticated()
    assert own.auth.token.lookup_self()["data"]["id"] == token
    assert own.auth.token.renew_self(increment="10m")["auth"]["lease_duration"] == 600
    child = own.auth.token.create(policies=["default"])["auth"]["client_token"]
    orphan = own.auth.token.create_orphan(policies=["default"])["auth"]
    assert orphan["orphan"] is True
    own.auth.token.revoke_self()
    assert not own.is_authenticated()
    assert not hvac.Client(url=local.url, token=child).is_authenticated()
    assert hvac.Client(url=local.url, token=orphan["client_token"]).is_authenticated()

    with pytest.raises(hvac.exceptions.Forbidden, match="bad token"):
        tokens.lookup(token)
    parent = tokens.create(policies=["ops"])["auth"]["client_token"]
    kept = hvac.Client(url=local.url, token=parent).auth.token.create()["auth"]["client_token"]
    tokens.revoke_and_orphan_children(parent)
    assert hvac.Client(url=local.url, token=kept).auth.token.lookup_self()["data"]["orphan"]
    victim = tokens.create(policies=["default"])["auth"]
    tokens.revoke_accessor(victim["accessor"])
    tokens.revoke(kept)
    for gone in (victim["client_token"], kept):
        assert not hvac.Client(url=local.url, token=gone).is_authenticated()
    with pytest.raises(hvac.exceptions.InvalidRequest, match="batch tokens are not supported"):
        tokens.create(type="batch")


# -- Terraform -----------------------------------------------------------------------------


TERRAFORM_POLICY = """
path "auth/token/create" { capabilities = ["update"] }
path "sys/mounts/*" { capabilities = ["create", "read", "update", "delete"] }
path "tf*" { capabilities = ["create", "read", "update", "delete", "list"] }
"""


@pytest.fixture(params=["root", "non-root"])
def terraform_token(request, local):
    """Terraform's own token: root, or a token whose policy may create children and manage
    its mounts (what an operator gives a pipeline instead of root)."""
    if request.param == "root":
        return "root", ["root"]
    write_policy(local.url, "terraform", TERRAFORM_POLICY)
    made = requests.post(
        f"{local.url}/v1/auth/token/create",
        json={"policies": ["terraform"], "ttl": "1h"},
        headers={"X-Vault-Token": "root"},
        timeout=30,
    )
    assert made.status_code == 200, made.text
    return made.json()["auth"]["client_token"], ["default", "terraform"]


def test_terraforms_start_up_sequence(local, terraform_token):
    """What terraform-provider-vault does on every run (internal/provider/meta.go): look up
    its token, create a child token limited to max_lease_ttl_seconds (1200) named
    token_name (terraform), and use the child for every resource; the child is left to
    expire. Replayed here with the Go client's headers and JSON, then a revoke-self to show
    the child can be cleaned up early."""
    session = requests.Session()
    session.headers.update(
        {
            "X-Vault-Request": "true",
            "User-Agent": "Go-http-client/1.1",
            "X-Vault-Token": terraform_token[0],
        }
    )
    url = f"{local.url}/v1"
    info = session.get(f"{url}/auth/token/lookup-self", timeout=30)
    assert info.status_code == 200 and "namespace_path" not in info.json()["data"]
    assert isinstance(info.json()["data"]["ttl"], int)  # warnMinTokenTTL reads it
    body = (
        '{"ttl":"1200s","explicit_max_ttl":"1200s","display_name":"terraform","num_uses":0,'
        '"renewable":false,"type":"","entity_alias":""}'
    )
    created = session.post(f"{url}/auth/token/create", data=body, timeout=30)
    assert created.status_code == 200, created.text
    auth = created.json()["auth"]
    assert auth["policies"] == terraform_token[1] and auth["lease_duration"] == 1200
    assert auth["renewable"] is False and created.json()["warnings"] is None

    session.headers["X-Vault-Token"] = auth["client_token"]
    mount = f"tf{uuid.uuid4().hex[:8]}"
    enabled = session.post(f"{url}/sys/mounts/{mount}", json={"type": "keymgmt"}, timeout=30)
    assert enabled.status_code == 204, enabled.text
    key = session.put(f"{url}/{mount}/key/app", json={"type": "ecdsa-p256"}, timeout=30)
    assert key.status_code == 204
    assert session.get(f"{url}/{mount}/key/app", timeout=30).json()["data"]["latest_version"] == 1
    child = session.get(f"{url}/auth/token/lookup-self", timeout=30).json()["data"]
    assert child["display_name"] == "token-terraform" and child["explicit_max_ttl"] == 1200
    assert child["renewable"] is False and 1190 <= child["ttl"] <= 1200

    assert session.put(f"{url}/auth/token/revoke-self", timeout=30).status_code == 204
    assert session.get(f"{url}/{mount}/key/app", timeout=30).status_code == 403
