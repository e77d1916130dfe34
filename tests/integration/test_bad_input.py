"""The audit's bad inputs, each as it was sent: a clear 400 naming the field and its limit,
nothing of the input (least of all a credential) repeated, and nothing stored changed."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.fixtures.funchost import Api
from tests.helpers import errors

SECRET = "eR%HizuCVEpAKgeaUEx-an-unguessable-7f3a9c1e"  # fixed: test ids must match across workers


def name(prefix="k"):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def raw(api: Api, method: str, path: str, text: str):
    return api.request(method, path, data=text, headers={"Content-Type": "application/json"})


WRITE_PATHS = [
    ("POST", "keymgmt/key/{key}"),
    ("POST", "keymgmt/key/{key}/rotate"),
    ("PUT", "keymgmt/kms/{kms}"),
    ("PUT", "keymgmt/kms/{kms}/key/{key}"),
    ("POST", "sys/mounts/{mount}"),
    ("DELETE", "keymgmt/key/{key}"),
]


def paths(api: Api):
    key, kms = name(), name("kms")
    api.post(f"keymgmt/key/{key}", json={"type": "ecdsa-p256"})
    return {"key": key, "kms": kms, "mount": name("m")}


@pytest.mark.parametrize(("method", "path"), WRITE_PATHS)
@pytest.mark.parametrize("depth", [100, 995, 5000, 100_000])
def test_deeply_nested_json_is_refused_on_every_write_path(api: Api, method, path, depth):
    body = '{"type":' + "[" * depth + "]" * depth + "}"
    response = raw(api, method, path.format(**paths(api)), body)
    assert response.status_code == 400, response.text
    assert "nested more than 32 levels" in errors(response)[0]


@pytest.mark.parametrize("field", ["auto_rotate_period", "expiration_period"])
@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_non_finite_numbers_are_refused(api: Api, field, number):
    target = paths(api)
    path = (
        f"keymgmt/key/{target['key']}"
        if field == "auto_rotate_period"
        else f"keymgmt/kms/{target['kms']}/key/{target['key']}"
    )
    response = raw(api, "POST", path, f'{{"{field}": {number}, "purpose": "sign"}}')
    assert response.status_code == 400, response.text
    assert "numbers must be finite" in errors(response)[0]


@pytest.mark.parametrize(
    "value", [2**53, 2**62, 2**63, 2**64, "99999999999d", "3650001d", 1e300, -(2**63)]
)
def test_durations_beyond_100_years_are_refused_before_anything_is_written(api: Api, value):
    key = name()
    assert api.post(f"keymgmt/key/{key}", json={"type": "ecdsa-p256"}).status_code == 204
    before = api.get(f"keymgmt/key/{key}").json()["data"]
    response = api.post(f"keymgmt/key/{key}", json={"auto_rotate_period": value})
    assert response.status_code == 400, response.text
    assert "auto_rotate_period must be at most 36500d" in errors(response)[0]
    assert api.get(f"keymgmt/key/{key}").json()["data"] == before


@pytest.mark.parametrize("value", [2**53, 2**62, 2**63, "99999999999d"])
def test_an_expiration_period_too_long_writes_no_distribution(api: Api, value):
    target = paths(api)
    kms, key = target["kms"], target["key"]
    api.put(f"keymgmt/kms/{kms}", json={"provider": "azurekeyvault", "key_collection": "kv-x1"})
    response = api.put(
        f"keymgmt/kms/{kms}/key/{key}", json={"purpose": "sign", "expiration_period": value}
    )
    assert response.status_code == 400, response.text
    assert "expiration_period must be at most 36500d" in errors(response)[0]
    # Nothing half-written: no distribution, no provider on the key.
    assert api.get(f"keymgmt/kms/{kms}/key/{key}").status_code == 404
    assert api.list(f"keymgmt/key/{key}/kms").status_code == 404
    assert api.list(f"keymgmt/kms/{kms}/key").status_code == 404


def test_a_long_description_or_secret_is_refused_naming_the_field_and_limit(api: Api):
    mount = name("m")
    response = api.post(f"sys/mounts/{mount}", json={"type": "keymgmt", "description": "d" * 33000})
    assert response.status_code == 400
    assert "description is too long: 33000 characters, at most 1024" in errors(response)[0]
    assert api.get(f"sys/mounts/{mount}").status_code == 400  # not enabled
    kms = name("kms")
    response = api.put(
        f"keymgmt/kms/{kms}",
        json={
            "provider": "azurekeyvault",
            "key_collection": "kv-x1",
            "credentials": {"client_secret": "s" * 70000},
        },
    )
    assert response.status_code == 400
    assert "credentials.client_secret is too long" in errors(response)[0]
    assert "s" * 100 not in response.text
    assert api.get(f"keymgmt/kms/{kms}").status_code == 404


@pytest.mark.parametrize(
    "credentials",
    [
        {"client_secret": [SECRET]},
        {"client_secret": {"nested": SECRET}},
        {"environment": [SECRET]},
        {"client_id": [SECRET], "client_secret": SECRET},
        [f"client_secret={SECRET}", ["nested", SECRET]],
        [f"client_secret={SECRET}", 5],
        [SECRET],
        SECRET,
        {"client_secret": SECRET, SECRET: "x"},
        {"environment": SECRET},
        [f"environment={SECRET}"],
    ],
)
def test_no_credential_value_is_ever_echoed(api: Api, credentials):
    kms = name("kms")
    response = api.put(
        f"keymgmt/kms/{kms}",
        json={"provider": "azurekeyvault", "key_collection": "kv-x1", "credentials": credentials},
    )
    assert response.status_code == 400, response.text
    assert SECRET not in response.text and SECRET[:12] not in response.text
    assert "credentials" in errors(response)[0]
    assert api.get(f"keymgmt/kms/{kms}").status_code == 404


def test_token_is_checked_before_anything_else(api: Api):
    anonymous = Api(api.host, token="")
    response = anonymous.request("GET", "keymgmt/key", params={"list": "maybe"})
    assert response.status_code == 403
    wrong = Api(api.host, token="not-the-token")
    assert wrong.request("GET", "keymgmt/key", params={"list": "maybe"}).status_code == 403
    assert wrong.post("keymgmt/key/x", data="{" * 50).status_code == 403
    # With the token, the bad flag is named.
    response = api.request("GET", "keymgmt/key", params={"list": "maybe"})
    assert response.status_code == 400 and "list: invalid boolean" in errors(response)[0]


@pytest.mark.parametrize("token", [" root", "root ", " root ", "\troot\t", "root \t"])
def test_surrounding_whitespace_in_the_token_is_trimmed(api: Api, token):
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(api.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    connection.putrequest("GET", "/v1/auth/token/lookup-self")
    connection.putheader("X-Vault-Token", token)  # sent as is (requests would refuse it)
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 200, (token, response.read())
    connection.close()


@pytest.mark.parametrize(
    "body",
    [
        {"min_enabled_version": 2**64},
        {"min_enabled_version": "9" * 5000},
        {"deletion_allowed": [True]},
        {"type": {"a": 1}},
        {"type": "x" * 5000},
    ],
)
def test_odd_values_are_400_and_change_nothing(api: Api, body):
    key = name()
    api.post(f"keymgmt/key/{key}", json={"type": "ecdsa-p256"})
    before = api.get(f"keymgmt/key/{key}").json()["data"]
    response = api.post(f"keymgmt/key/{key}", data=json.dumps(body))
    assert response.status_code == 400, response.text
    assert len(response.text) < 600
    assert api.get(f"keymgmt/key/{key}").json()["data"] == before


@pytest.mark.parametrize("mount", ["%23x", "a%5Cb", "x" * 2000, "%C3%A9t%C3%A9", "a.b", "%01"])
def test_a_mount_that_cannot_exist_is_404_over_http(api: Api, mount):
    for method, path in (("GET", "key/k"), ("POST", "key/k"), ("DELETE", "kms/p")):
        response = api.request(method, f"{mount}/{path}", json={})
        assert response.status_code == 404, (method, response.text)
        assert "route entry not found" in errors(response)[0]


@pytest.mark.parametrize("mount", ["a#b", "x" * 2000, "été", "a.b", "\x01"])
def test_a_mount_name_that_cannot_exist_never_reaches_storage(azurite, table_prefix, mount):
    """Real Table Storage refuses such row keys (Azurite is lenient): not asked at all."""
    from shared.api import handle
    from shared.api.keys import KEY
    from shared.vaultapi import ApiRequest
    from tests.fixtures.funchost import build_service

    service = build_service(azurite, table_prefix)

    def asked(*_args, **_kwargs):
        raise AssertionError("the store was asked about a mount that cannot exist")

    service.store.get_mount = asked
    for method in ("GET", "POST", "DELETE"):
        response = handle(
            KEY,
            ApiRequest(method, headers={"x-vault-token": "root"}, body=b"{}"),
            {"mount": mount, "name": "k"},
            lambda: service,
        )
        assert response.status == 404, response.body
        assert b"route entry not found" in response.body
