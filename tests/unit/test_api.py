"""What ``handle`` does for every path from its ``PathSpec``: route parameters checked by what
they name, and a write resolved to Vault's create or update by the path's existence check."""

from __future__ import annotations

import datetime as dt
import json
import re
from types import SimpleNamespace

import pytest

from shared import names
from shared.api import Context, PathSpec, handle, keys, routes, sys
from shared.errors import UnsupportedOperation
from shared.records import KeyRecord, KeyVersions, Mount, VersionRecord
from shared.vaultapi import ApiRequest, ApiResponse, Field, weak_str

# Unauthenticated, unmounted paths: handle() needs no storage, only the body limit.
SERVICE = SimpleNamespace(settings=SimpleNamespace(max_body_bytes=4096))


def call(spec: PathSpec, method: str, params: dict[str, str], body: bytes = b"") -> ApiResponse:
    return handle(spec, ApiRequest(method, body=body), params, lambda: SERVICE)


def errors(response: ApiResponse) -> list[str]:
    return json.loads(response.body)["errors"]


class Recorder:
    """Handlers that note what they saw, and an existence check that answers as told."""

    def __init__(self, exists: bool = False) -> None:
        self.exists = exists
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.checked: list[dict[str, str]] = []

    def handler(self, label: str):
        def run(ctx: Context) -> ApiResponse:
            self.seen.append((label, ctx.operation, dict(ctx.params)))
            return ApiResponse(204)

        return run

    def existence(self, ctx: Context) -> bool:
        self.checked.append(dict(ctx.params))
        return self.exists

    def spec(self, pattern: str = "thing/:name", *, create: bool = False, **options) -> PathSpec:
        operations = {
            "read": self.handler("read"),
            "list": self.handler("list"),
            "update": self.handler("update"),
            "delete": self.handler("delete"),
        }
        if create:
            operations["create"] = self.handler("create")
        options.setdefault("existence", self.existence)
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
    assert recorder.seen == [] and recorder.checked == []


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
    assert recorder.seen == [("read", "read", {"name": "p", "key_name": "k.1"})]


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


# -- create or update --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT"])
@pytest.mark.parametrize(("exists", "operation"), [(False, "create"), (True, "update")])
def test_a_write_is_create_or_update_by_the_existence_check(method, exists, operation):
    recorder = Recorder(exists=exists)
    assert call(recorder.spec(create=True), method, {"name": "k"}, b"{}").status == 204
    assert recorder.seen == [(operation, operation, {"name": "k"})]
    assert recorder.checked == [{"name": "k"}]  # asked once, with the checked name


def test_without_a_create_handler_the_update_handler_runs_for_a_create():
    recorder = Recorder(exists=False)
    assert call(recorder.spec(), "POST", {"name": "k"}).status == 204
    assert recorder.seen == [("update", "create", {"name": "k"})]  # the context still says create


def test_a_path_without_an_existence_check_always_updates():
    recorder = Recorder()
    assert call(recorder.spec(existence=None), "POST", {"name": "k"}).status == 204
    assert recorder.seen == [("update", "update", {"name": "k"})]


@pytest.mark.parametrize(
    ("method", "operation"), [("GET", "read"), ("LIST", "list"), ("DELETE", "delete")]
)
def test_reads_lists_and_deletes_never_run_the_existence_check(method, operation):
    recorder = Recorder()
    assert call(recorder.spec(), method, {"name": "k"}).status == 204
    assert recorder.checked == [] and recorder.seen == [(operation, operation, {"name": "k"})]


def test_the_fields_are_checked_before_the_existence_check_runs():
    recorder = Recorder()
    spec = recorder.spec(fields=[Field("mode", weak_str, allowed=("a", "b"))])
    response = call(spec, "POST", {"name": "k"}, b'{"mode": "c"}')
    assert errors(response) == ["invalid mode: allowed are a, b"]
    assert recorder.checked == [] and recorder.seen == []


def test_unsupported_operation_reads_as_vaults_request_handlers_send_it():
    # handleRequest wraps it in go-multierror; handleLoginRequest returns it bare.
    assert UnsupportedOperation().messages == ["1 error occurred:\n\t* unsupported operation\n\n"]
    assert UnsupportedOperation(wrapped=False).messages == ["unsupported operation"]
    assert UnsupportedOperation().status == 405


def test_a_create_only_path_answers_405_for_an_item_that_exists():
    recorder = Recorder(exists=True)
    spec = recorder.spec(operations={"create": recorder.handler("create")})
    response = call(spec, "POST", {"name": "k"})
    # Bare, as a login path's (this spec is unauthenticated); routed paths wrap it.
    assert response.status == 405 and errors(response) == ["unsupported operation"]
    recorder.exists = False
    assert call(spec, "POST", {"name": "k"}).status == 204
    assert call(spec, "GET", {"name": "k"}).status == 405


def test_a_create_handler_needs_an_existence_check():
    with pytest.raises(ValueError, match="existence check"):
        PathSpec("thing/:name", operations={"create": lambda ctx: ApiResponse(204)})


def test_every_key_and_sys_path_has_help():
    paths = [
        *(getattr(keys, n) for n in ("KEYS", "KEY", "ROTATE", "KEY_KMS")),
        *(s for s in routes.ALL if s.pattern.startswith(("sys/", "auth/"))),
    ]
    assert [p.pattern for p in paths if not (p.synopsis and p.help)] == []
    assert keys.KEY.existence is not None


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


# A sys/mounts entry's fields, in the order Vault sends them.
MOUNT_ENTRY_FIELDS = [
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


def test_mounts_render_under_their_path_with_a_slash():
    mount = Mount("m1", "keymgmt", "d", "12345678-0000-4000-8000-000000000000", WHEN)
    rendered = sys.render_mounts([mount])
    assert list(rendered) == ["m1/"]
    assert rendered["m1/"]["accessor"] == "keymgmt_12345678"
    assert list(rendered["m1/"]) == MOUNT_ENTRY_FIELDS
