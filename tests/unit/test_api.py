"""What ``handle`` does for every path from its ``PathSpec``: route parameters checked by what
they name; and how the API renders the engine's records."""

from __future__ import annotations

import datetime as dt
import json
import re
from types import SimpleNamespace

import pytest

from shared import names
from shared.api import Context, PathSpec, handle, keys, routes, sys
from shared.records import KeyRecord, KeyVersions, Mount, TokenInfo, VersionRecord
from shared.vaultapi import ApiRequest, ApiResponse

# Unauthenticated, unmounted paths: handle() needs no storage, only the body limit.
SERVICE = SimpleNamespace(settings=SimpleNamespace(max_body_bytes=4096))


def call(spec: PathSpec, method: str, params: dict[str, str], body: bytes = b"") -> ApiResponse:
    return handle(spec, ApiRequest(method, body=body), params, lambda: SERVICE)


def errors(response: ApiResponse) -> list[str]:
    return json.loads(response.body)["errors"]


class Recorder:
    """Handlers that note what they saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []

    def handler(self, label: str):
        def run(ctx: Context) -> ApiResponse:
            self.seen.append((label, dict(ctx.params)))
            return ApiResponse(204)

        return run

    def spec(self, pattern: str = "thing/:name", **options) -> PathSpec:
        operations = {
            "read": self.handler("read"),
            "list": self.handler("list"),
            "update": self.handler("update"),
            "delete": self.handler("delete"),
        }
        return PathSpec(
            pattern,
            operations=options.pop("operations", operations),
            authenticated=False,
            mounted=False,
            params=options.pop("params", {"name": names.KEY}),
            **options,
        )


# -- route parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("a#b", "invalid key name 'a#b': use letters, digits, '-', '_' and '.'"),
        ("-lead", "invalid key name '-lead'"),
        ("a" * 101, "key name is too long: 101 characters, at most 100"),
        ("", "key name is required"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "LIST", "POST", "DELETE"])
def test_a_bad_name_is_refused_before_any_handler_with_the_engines_words(method, value, says):
    recorder = Recorder()
    response = call(recorder.spec(), method, {"name": value})
    assert response.status == 400 and says in errors(response)[0]
    assert recorder.seen == []


def test_each_parameter_is_checked_by_what_it_names():
    recorder = Recorder()
    spec = recorder.spec(
        "kms/:name/key/:key_name", params={"name": names.KMS_PROVIDER, "key_name": names.KEY}
    )
    response = call(spec, "GET", {"name": "p" * 101, "key_name": "k"})
    assert errors(response) == ["KMS provider name is too long: 101 characters, at most 100"]
    response = call(spec, "GET", {"name": "p", "key_name": "k?"})
    assert "invalid key name 'k?'" in errors(response)[0]
    assert call(spec, "GET", {"name": "p", "key_name": "k.1"}).status == 204
    assert recorder.seen == [("read", {"name": "p", "key_name": "k.1"})]


def test_the_body_is_parsed_before_the_names_are_checked_as_before():
    recorder = Recorder()
    response = call(recorder.spec(), "POST", {"name": "a#b"}, b"{not json")
    assert response.status == 400 and "JSON" in errors(response)[0]


@pytest.mark.parametrize(
    ("pattern", "params", "says"),
    [
        ("thing/:name", {"nome": names.KEY}, "no parameter :nome"),
        ("thing/:name", {"name": "widget"}, "unknown kind 'widget'"),
    ],
)
def test_a_declaration_that_cannot_be_checked_fails_at_import(pattern, params, says):
    with pytest.raises(ValueError, match=says):
        PathSpec(pattern, params=params)


def test_every_parameter_of_the_key_paths_is_declared():
    # shared/api/kms.py declares its own when it takes up PathSpec.params (issue 12); until
    # then its engine checks them. sys/mounts/:path takes any path, as Vault's route does:
    # shared/mounts.py checks it.
    undeclared = [
        f"{spec.pattern}: :{param}"
        for spec in routes.ALL
        if not spec.pattern.startswith(("kms", "sys/mounts/"))
        for param in re.findall(r":(\w+)", spec.pattern)
        if param not in spec.params
    ]
    assert undeclared == []
    assert "path" not in sys.MOUNT.params


# -- rendering: records in Vault's wire format -----------------------------------------------------

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)


def test_a_key_renders_as_vault_sends_it():
    key = KeyRecord("keymgmt", "k", "rsa-2048", 3, 2, True, WHEN, auto_rotate_period=86400)
    rendered = keys.render_key(
        KeyVersions(key, (VersionRecord(2, WHEN, "PEM"), VersionRecord(3, WHEN, None)))
    )
    assert json.dumps(rendered) == (
        '{"name": "k", "type": "rsa-2048", "deletion_allowed": true, "latest_version": 3, '
        '"min_enabled_version": 2, "versions": {"2": {"creation_time": '
        '"2026-01-02T03:04:05.678901Z", "public_key": "PEM"}, "3": {"creation_time": '
        '"2026-01-02T03:04:05.678901Z"}}, "auto_rotate_period": 86400}'
    )


def test_the_root_token_renders_as_lookup_self_showed_it():
    token = TokenInfo(display_name="root", policies=("root",), path="auth/token/root", orphan=True)
    assert json.dumps(sys.render_token(token)) == (
        '{"accessor": "", "creation_ttl": 0, "display_name": "root", "entity_id": "", '
        '"expire_time": null, "explicit_max_ttl": 0, "id": "", "meta": null, "num_uses": 0, '
        '"orphan": true, "path": "auth/token/root", "policies": ["root"], "renewable": false, '
        '"ttl": 0, "type": "service"}'
    )


def test_mounts_render_under_their_path_with_a_slash():
    mount = Mount("m1", "keymgmt", "d", "12345678-0000-4000-8000-000000000000", WHEN)
    rendered = sys.render_mounts([mount])
    assert list(rendered) == ["m1/"]
    assert rendered["m1/"]["accessor"] == "keymgmt_12345678"
    assert list(rendered["m1/"]) == [
        "type",
        "description",
        "accessor",
        "uuid",
        "config",
        "options",
        "local",
        "seal_wrap",
        "external_entropy_access",
        "plugin_version",
        "running_plugin_version",
        "running_sha256",
        "deprecation_status",
    ]
