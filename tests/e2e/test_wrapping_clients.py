"""Response wrapping through its real clients over HTTP: the ``bao`` CLI's ``-wrap-ttl`` and
``bao unwrap`` (output compared with the same commands against a real OpenBao dev server), a
keymgmt key read wrapped and unwrapped by the wrapping token itself, a jwt login wrapped, and
hvac's ``wrap_ttl``
``sys.wrap`` and ``sys.unwrap``."""

from __future__ import annotations

import json
import uuid

import hvac
import pytest
import requests

# The auth tests' jwt method on the emulator's Entra ID: its helpers and module fixtures.
from tests.e2e.test_auth_clients import crafted, jwks_mount, root, url  # noqa: F401
from tests.fixtures.openbao import BaoCli
from tests.fixtures.openbao import cli_in as cli
from tests.fixtures.openbao import cli_table as table


@pytest.fixture
def both(funchost, openbao, tmp_path):
    """The CLI against the local stack and against OpenBao, each logged in as root."""
    sides = {
        "local": cli(funchost.url, tmp_path, "local"),
        "openbao": cli(openbao.url, tmp_path, "bao"),
    }
    for side in sides.values():
        side("login", "root")
    return sides


def test_bao_wrap_ttl_and_unwrap_print_as_against_openbao(both):
    seen = {}
    for name, bao in both.items():
        wrapped = table(bao("write", "-wrap-ttl=1m", "sys/wrapping/wrap", "foo=bar").stdout)
        token = wrapped["wrapping_token:"]
        looked = json.loads(bao("token", "lookup", "-format=json", token).stdout)["data"]
        unwrapped = table(bao("unwrap", token).stdout)
        again = bao("unwrap", token, ok=False)
        created = table(bao("token", "create", "-wrap-ttl=2m", "-policy=default").stdout)
        login = json.loads(bao("unwrap", "-format=json", created["wrapping_token:"]).stdout)
        read = table(bao("read", "-wrap-ttl=5m", "auth/token/lookup-self").stdout)
        listed = table(bao("list", "-wrap-ttl=1m", "sys/policies/acl").stdout)
        listed_keys = json.loads(bao("unwrap", "-format=json", listed["wrapping_token:"]).stdout)
        bad = bao("read", "-wrap-ttl=soon", "auth/token/lookup-self", ok=False)
        # The wrapping token as the CLI's own token (BAO_TOKEN), unwrapped twice.
        mine = table(bao("write", "-wrap-ttl=1m", "sys/wrapping/wrap", "k=v").stdout)
        holder = BaoCli(bao.url, bao.home, mine["wrapping_token:"])
        first = json.loads(holder("unwrap", "-format=json").stdout)["data"]
        second = holder("unwrap", ok=False)
        seen[name] = {
            "wrapped": sorted(wrapped),
            "ttl": wrapped["wrapping_token_ttl:"],
            "path": wrapped["wrapping_token_creation_path:"],
            "lookup": (looked["policies"], looked["num_uses"], looked["path"], looked["ttl"] > 0),
            "unwrapped": unwrapped,
            "again": (
                again.returncode,
                "wrapping token is not valid or does not exist" in again.stderr,
            ),
            "created": sorted(created),
            "login": (
                sorted(login["auth"]),
                login["auth"]["accessor"] == created["wrapped_accessor:"],
            ),
            "read": (sorted(read), read["wrapping_token_creation_path:"]),
            "list": (
                listed["wrapping_token_creation_path:"],
                "default" in listed_keys,  # bao unwrap prints a list as the list
            ),
            "holder": (
                first,
                second.returncode,
                "Code: 400" in second.stderr,
                "wrapping token is not valid or does not exist" in second.stderr,
            ),
            "bad": (
                bad.returncode,
                'error parsing X-Vault-Wrap-TTL header: time: invalid duration "soon"'
                in bad.stderr,
            ),
        }
    assert seen["local"] == seen["openbao"]
    assert seen["local"]["unwrapped"] == {"foo": "bar"}
    assert seen["local"]["again"] == (2, True)


def test_a_wrapped_key_read_is_unwrapped_by_the_wrapping_token_itself(funchost, tmp_path):
    """Any answer with data wraps: a keymgmt key read. ``bao unwrap`` with the wrapping token
    as the CLI's own token (BAO_TOKEN) spends it; the caller's root token never sees it."""
    admin = cli(funchost.url, tmp_path, "root", token="root")
    name = f"wrapped-{uuid.uuid4().hex[:8]}"
    admin("write", f"keymgmt/key/{name}", "type=ecdsa-p256")
    plain = json.loads(admin("read", "-format=json", f"keymgmt/key/{name}").stdout)["data"]
    wrapped = json.loads(
        admin("read", "-format=json", "-wrap-ttl=5m", f"keymgmt/key/{name}").stdout
    )
    assert wrapped.get("data") is None
    info = wrapped["wrap_info"]
    assert info["creation_path"] == f"keymgmt/key/{name}" and info["ttl"] == 300
    holder = cli(funchost.url, tmp_path, "holder", token=info["token"])
    unwrapped = json.loads(holder("unwrap", "-format=json").stdout)
    assert unwrapped["data"] == plain
    assert holder("unwrap", ok=False).returncode == 2


def test_hvac_wrap_ttl_and_unwrap(funchost):
    client = hvac.Client(url=funchost.url, token="root")
    wrapped = client.read("auth/token/lookup-self", wrap_ttl="5m")
    info = wrapped["wrap_info"]
    assert wrapped["data"] is None and info["creation_path"] == "auth/token/lookup-self"
    assert client.sys.unwrap(info["token"])["data"]["policies"] == ["root"]
    with pytest.raises(hvac.exceptions.InvalidRequest) as refused:
        client.sys.unwrap(info["token"])
    assert "wrapping token is not valid or does not exist" in str(refused.value)

    created = client.auth.token.create(policies=["default"], ttl="10m", wrap_ttl="2m")
    token = client.sys.unwrap(created["wrap_info"]["token"])["auth"]["client_token"]
    assert hvac.Client(url=funchost.url, token=token).auth.token.lookup_self()["data"]["ttl"] > 0

    wrapped = client.sys.wrap(payload={"answer": 42}, ttl=60)
    assert wrapped["wrap_info"]["ttl"] == 60
    assert wrapped["wrap_info"]["creation_path"] == "sys/wrapping/wrap"
    holder = hvac.Client(url=funchost.url, token=wrapped["wrap_info"]["token"])
    assert holder.sys.unwrap()["data"] == {"answer": 42}  # the wrapping token as the client's


def test_a_wrapped_login_gives_the_token_only_to_whoever_unwraps(url, root, kv):  # noqa: F811
    """A login asked for wrapped (an unauthenticated path): the caller sees only wrap_info, its
    wrapped_accessor naming the login's token; unwrapping gives the auth block, and the token
    works."""
    mount = jwks_mount(root, kv)
    wrapped = requests.post(
        f"{url}/v1/auth/{mount}/login",
        json={"role": "r", "jwt": crafted(kv)},
        headers={"X-Vault-Wrap-TTL": "2m"},
        timeout=60,
    )
    body = wrapped.json()
    assert wrapped.status_code == 200 and body["auth"] is None and body["data"] is None
    info = body["wrap_info"]
    assert info["creation_path"] == f"auth/{mount}/login" and info["ttl"] == 120
    unwrapped = requests.post(
        f"{url}/v1/sys/wrapping/unwrap", headers={"X-Vault-Token": info["token"]}, timeout=60
    )
    auth = unwrapped.json()["auth"]
    assert auth["accessor"] == info["wrapped_accessor"]
    assert "mounts-reader" in auth["policies"]
    looked = requests.get(
        f"{url}/v1/auth/token/lookup-self",
        headers={"X-Vault-Token": auth["client_token"]},
        timeout=60,
    )
    assert looked.status_code == 200 and looked.json()["data"]["path"] == f"auth/{mount}/login"
