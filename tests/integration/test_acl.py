"""Every path checks the caller's policies, over real HTTP: tokens created through
``auth/token/create`` with policies written through ``sys/policies/acl``. The capability table
per keymgmt operation is in docs/policies.md."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.fixtures.funchost import Api
from tests.helpers import errors

DENIED = ["1 error occurred:\n\t* permission denied\n\n"]  # a valid token, refused by its ACL


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def policy(api: Api, text: str) -> str:
    name = uid("pol")
    response = api.put(f"sys/policies/acl/{name}", json={"policy": text})
    assert response.status_code == 204, response.text
    return name


def token(api: Api, *policies: str, **options: Any) -> Api:
    """A client holding a new token with ``policies`` (and ``default``)."""
    response = api.post("auth/token/create", json={"policies": list(policies), **options})
    assert response.status_code == 200, response.text
    return Api(api.host, response.json()["auth"]["client_token"])


def key(api: Api, **body: Any) -> str:
    name = uid("k")
    response = api.post(f"keymgmt/key/{name}", json={"type": "ecdsa-p256", **body})
    assert response.status_code == 204, response.text
    return name


def denied(response: Any) -> bool:
    return response.status_code == 403 and errors(response) == DENIED


def test_a_read_only_token_reads_and_lists_keys_and_nothing_else(api: Api):
    reader = token(api, policy(api, 'path "keymgmt/key/*" { capabilities = ["read", "list"] }'))
    existing = key(api)
    assert reader.get(f"keymgmt/key/{existing}").status_code == 200
    assert reader.list("keymgmt/key").status_code == 200
    assert denied(reader.post(f"keymgmt/key/{uid('k')}", json={"type": "rsa-2048"}))
    assert denied(reader.post(f"keymgmt/key/{existing}", json={"deletion_allowed": True}))
    assert denied(reader.post(f"keymgmt/key/{existing}/rotate"))
    assert denied(reader.delete(f"keymgmt/key/{existing}"))
    assert denied(reader.list("keymgmt/kms"))
    assert denied(reader.get("keymgmt/kms/some"))
    assert denied(reader.put("keymgmt/kms/some", json={"provider": "azurekeyvault"}))
    assert denied(reader.get("sys/mounts"))
    assert api.get(f"keymgmt/key/{existing}").json()["data"]["latest_version"] == 1


def test_a_token_for_one_mount_cannot_touch_another(api: Api):
    mount = uid("m")
    assert api.post(f"sys/mounts/{mount}", json={"type": "keymgmt"}).status_code == 204
    scoped = token(api, policy(api, 'path "keymgmt/*" { capabilities = ["create", "read"] }'))
    assert scoped.post(f"keymgmt/key/{uid('k')}", json={"type": "rsa-2048"}).status_code == 204
    assert denied(scoped.post(f"{mount}/key/{uid('k')}", json={"type": "rsa-2048"}))
    assert denied(scoped.list(f"{mount}/key"))


def test_create_and_update_are_told_apart_by_the_existence_check(api: Api):
    creator = token(api, policy(api, 'path "keymgmt/key/*" { capabilities = ["create"] }'))
    updater = token(api, policy(api, 'path "keymgmt/key/*" { capabilities = ["update"] }'))
    new = uid("k")
    assert denied(updater.post(f"keymgmt/key/{new}", json={"type": "rsa-2048"}))
    assert creator.post(f"keymgmt/key/{new}", json={"type": "rsa-2048"}).status_code == 204
    assert denied(creator.post(f"keymgmt/key/{new}", json={"deletion_allowed": True}))
    assert updater.post(f"keymgmt/key/{new}", json={"deletion_allowed": True}).status_code == 204
    # rotate has no existence check: it is always update
    assert denied(creator.post(f"keymgmt/key/{new}/rotate"))
    assert updater.post(f"keymgmt/key/{new}/rotate").status_code == 204


def test_a_denied_parameter_stops_the_cli_string_and_the_json_boolean_alike(api: Api):
    text = """
    path "keymgmt/key/*" {
      capabilities = ["create", "read", "update"]
      denied_parameters = { "deletion_allowed" = ["true"] }
    }
    """
    admin = token(api, policy(api, text))
    name = key(api)
    assert denied(admin.post(f"keymgmt/key/{name}", json={"deletion_allowed": "true"}))
    assert denied(admin.post(f"keymgmt/key/{name}", json={"deletion_allowed": True}))
    assert admin.post(f"keymgmt/key/{name}", json={"deletion_allowed": False}).status_code == 204
    assert api.get(f"keymgmt/key/{name}").json()["data"]["deletion_allowed"] is False


def test_allowed_and_required_parameters(api: Api):
    text = """
    path "keymgmt/key/*" {
      capabilities = ["create"]
      allowed_parameters = { "type" = ["rsa-*"] }
      required_parameters = ["type"]
    }
    """
    maker = token(api, policy(api, text))
    assert maker.post(f"keymgmt/key/{uid('k')}", json={"type": "rsa-3072"}).status_code == 204
    assert denied(maker.post(f"keymgmt/key/{uid('k')}", json={"type": "ecdsa-p256"}))
    assert denied(maker.post(f"keymgmt/key/{uid('k')}", json={}))
    assert denied(
        maker.post(f"keymgmt/key/{uid('k')}", json={"type": "rsa-2048", "deletion_allowed": 1})
    )


def test_a_policy_change_applies_to_existing_tokens(api: Api):
    name = policy(api, 'path "keymgmt/key/*" { capabilities = ["read"] }')
    holder = token(api, name)
    existing = key(api)
    assert holder.get(f"keymgmt/key/{existing}").status_code == 200
    text = 'path "keymgmt/key/*" { capabilities = ["deny"] }'
    assert api.put(f"sys/policies/acl/{name}", json={"policy": text}).status_code == 204
    assert denied(holder.get(f"keymgmt/key/{existing}"))  # same instance: at once
    assert api.delete(f"sys/policies/acl/{name}").status_code == 204
    assert denied(holder.get(f"keymgmt/key/{existing}"))  # gone: grants nothing


def test_the_default_policy_lets_a_token_look_itself_up_and_nothing_more(api: Api):
    plain = token(api, "default")  # with no policies, a child would inherit root's
    assert plain.get("auth/token/lookup-self").status_code == 200
    caps = plain.post("sys/capabilities-self", json={"paths": ["keymgmt/key/a", "sys/mounts"]})
    assert caps.json()["data"] == {"keymgmt/key/a": ["deny"], "sys/mounts": ["deny"]}
    assert denied(plain.list("keymgmt/key"))
    bare = token(api, policy(api, 'path "keymgmt/key/*" { capabilities = ["read"] }'),
                 no_default_policy=True)  # fmt: skip
    assert denied(bare.get("auth/token/lookup-self"))


def test_capabilities_report_what_a_token_holds(api: Api):
    name = policy(
        api,
        'path "keymgmt/key/*" { capabilities = ["read", "list"] }\n'
        'path "keymgmt/key/prod-*" { capabilities = ["update"] }',
    )
    holder = token(api, name)
    mine = holder.post("sys/capabilities-self", json={"path": "keymgmt/key/prod-1"}).json()
    assert mine["data"] == {"keymgmt/key/prod-1": ["update"], "capabilities": ["update"]}
    created = api.post("auth/token/create", json={"policies": [name]}).json()["auth"]
    by_token = api.post(
        "sys/capabilities", json={"token": created["client_token"], "paths": ["keymgmt/key/a"]}
    )
    assert by_token.json()["data"]["keymgmt/key/a"] == ["list", "read"]
    by_accessor = api.post(
        "sys/capabilities-accessor",
        json={"accessor": created["accessor"], "paths": ["keymgmt/key/a"]},
    )
    assert by_accessor.json()["data"]["keymgmt/key/a"] == ["list", "read"]
    assert denied(holder.post("sys/capabilities", json={"token": "x", "paths": ["a"]}))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "sys/policies/acl/default"),
        ("PUT", "sys/policies/acl/mine"),
        ("DELETE", "sys/policies/acl/mine"),
        ("LIST", "sys/policies/acl"),
        ("POST", "sys/mounts/elsewhere"),
        ("DELETE", "sys/mounts/keymgmt"),
    ],
)
def test_sys_paths_need_their_own_grants(api: Api, method: str, path: str):
    plain = token(api, policy(api, 'path "keymgmt/*" { capabilities = ["create", "read"] }'))
    body = {"policy": 'path "x" { capabilities = ["read"] }', "type": "keymgmt"}
    if method == "LIST":
        response = plain.list(path)
    else:
        response = plain.request(method, path, json=body if method in ("PUT", "POST") else None)
    assert denied(response), (method, path, response.status_code, response.text)


def test_sudo_on_the_token_store_paths_comes_from_the_policy(api: Api):
    plain = 'path "auth/token/*" { capabilities = ["update"] }'
    with_sudo = 'path "auth/token/*" { capabilities = ["update", "sudo"] }'
    without = token(api, policy(api, plain))
    refused = without.post("auth/token/create", json={"no_parent": True})
    assert refused.status_code == 400
    assert errors(refused) == ["root or sudo privileges required to create orphan token"]
    holder = token(api, policy(api, with_sudo))
    made = holder.post("auth/token/create", json={"no_parent": True, "period": "1h"})
    assert made.status_code == 200, made.text
    assert made.json()["auth"]["orphan"] is True
