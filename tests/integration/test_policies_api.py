"""ACL policy endpoints over real HTTP (``sys/policies/acl``, the legacy ``sys/policy``,
``sys/capabilities-self``), with the shapes and texts of the reference's OpenBao captures
(../shared/reference/vault-auth-policy-audit.md §3.8-3.9)."""

from __future__ import annotations

import base64
import uuid

from tests.fixtures.funchost import Api
from tests.helpers import errors

READER = 'path "keymgmt/key/*" {\n  capabilities = ["read", "list"]\n}\n'


def pname() -> str:
    return f"p-{uuid.uuid4().hex[:10]}"


def test_write_read_list_delete_an_acl_policy(api: Api):
    name = pname()
    assert api.put(f"sys/policies/acl/{name}", json={"policy": READER}).status_code == 204
    read = api.get(f"sys/policies/acl/{name}")
    assert read.status_code == 200
    assert read.json()["data"] == {"name": name, "policy": READER}
    assert "policy" not in read.json()  # sys/policies/acl answers in data only
    listed = api.list("sys/policies/acl").json()["data"]["keys"]
    assert name in listed and "default" in listed and listed[-1] == "root"
    assert api.delete(f"sys/policies/acl/{name}").status_code == 204
    assert api.get(f"sys/policies/acl/{name}").status_code == 404
    assert api.get(f"sys/policies/acl/{name}").json() == {"errors": []}
    assert api.delete(f"sys/policies/acl/{name}").status_code == 204  # gone is fine


def test_names_are_stored_lower_cased(api: Api):
    name = pname()
    assert api.put(f"sys/policies/acl/{name.upper()}", json={"policy": READER}).status_code == 204
    assert api.get(f"sys/policies/acl/{name}").json()["data"]["name"] == name
    assert name in api.list("sys/policies/acl").json()["data"]["keys"]


def test_a_base64_encoded_policy_is_decoded(api: Api):
    name = pname()
    encoded = base64.b64encode(READER.encode()).decode()
    assert api.put(f"sys/policies/acl/{name}", json={"policy": encoded}).status_code == 204
    assert api.get(f"sys/policies/acl/{name}").json()["data"]["policy"] == READER


def test_the_legacy_form_repeats_data_at_the_top_level(api: Api):
    name = pname()
    written = api.put(f"sys/policy/{name}", json={"rules": READER})
    assert written.status_code == 200  # the deprecation warning turns the 204 into a 200
    assert written.json()["warnings"] == ["'rules' is deprecated, please use 'policy' instead"]
    read = api.get(f"sys/policy/{name}").json()
    assert read["rules"] == READER and read["data"] == {"name": name, "rules": READER}
    listing = api.get("sys/policy").json()
    assert listing["keys"] == listing["policies"] == listing["data"]["keys"]
    assert name in listing["keys"] and listing["keys"][-1] == "root"


def test_root_and_default_are_built_in(api: Api):
    assert errors(api.put("sys/policies/acl/root", json={"policy": READER})) == [
        'cannot update "root" policy'
    ]
    assert errors(api.delete("sys/policies/acl/root")) == ['cannot delete "root" policy']
    assert errors(api.delete("sys/policies/acl/default")) == ["cannot delete default policy"]
    assert api.get("sys/policies/acl/root").json()["data"]["policy"] == ""
    default = api.get("sys/policies/acl/default").json()["data"]["policy"]
    assert 'path "auth/token/lookup-self"' in default


def test_bad_policies_are_refused_and_nothing_is_stored(api: Api):
    name = pname()
    cases = [
        ({"policy": ""}, "'policy' parameter not supplied or empty"),
        ({}, "'policy' parameter not supplied or empty"),
        ({"policy": 'path "x" { capabilities = ["reed"] }'}, 'invalid capability "reed"'),
        ({"policy": 'path "x" { capabilities = ['}, "failed to parse policy"),
    ]
    for body, says in cases:
        response = api.put(f"sys/policies/acl/{name}", json=body)
        assert response.status_code == 400, (body, response.text)
        assert says in errors(response)[0], (body, errors(response))
    assert api.get(f"sys/policies/acl/{name}").status_code == 404


def test_capabilities_self_for_root_answers_root_in_both_forms(api: Api):
    many = api.post("sys/capabilities-self", json={"paths": ["keymgmt/key/a", "sys/mounts"]})
    assert many.status_code == 200
    assert many.json()["data"] == {"keymgmt/key/a": ["root"], "sys/mounts": ["root"]}
    one = api.post("sys/capabilities-self", json={"path": "keymgmt/key/a"}).json()
    assert one["data"] == {"keymgmt/key/a": ["root"], "capabilities": ["root"]}
    assert one["capabilities"] == ["root"]  # repeated at the top level, where the CLI reads
    assert errors(api.post("sys/capabilities-self", json={})) == ["paths must be supplied"]
