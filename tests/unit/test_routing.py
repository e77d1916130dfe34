"""Vault's generic HTTP rules as pure functions: the namespace header, the token headers, the
answers before a path is routed, 204 and the ignored-fields warning, the transport headers."""

from __future__ import annotations

import json

import pytest

from functions._http import api_path
from shared import vaultapi
from shared.api import PathSpec, generic
from shared.errors import NotFound
from shared.vaultapi import ApiRequest, Field, FieldData


def req(method: str = "GET", path: str = "x", **headers: str) -> ApiRequest:
    return ApiRequest(
        method, {}, {k.lower().replace("_", "-"): v for k, v in headers.items()}, b"", "", path
    )


@pytest.mark.parametrize(
    ("header", "canonical"),
    [
        ("", ""),
        ("root", ""),
        ("root/", ""),
        ("/", ""),
        ("/root", ""),
        ("foo", "foo/"),
        ("/foo", "foo/"),
        ("foo/", "foo/"),
        ("foo//bar/../baz", "foo/baz/"),
        ("root/child", "root/child/"),
    ],
)
def test_namespaces_are_canonical_as_openbao_writes_them(header: str, canonical: str) -> None:
    assert generic.canonical_namespace(header) == canonical


@pytest.mark.parametrize(
    ("authorization", "token"),
    [
        ("Bearer root", "root"),
        ("Bearer   root  ", "root"),
        ("bearer root", None),
        ("BEARER root", None),
        ("Bearer\troot", None),
        ("Bearer ", None),
        ("Basic cm9vdDo=", None),
    ],
)
def test_only_bearer_as_rfc_6750_spells_it_carries_a_token(
    authorization: str, token: str | None
) -> None:
    assert req(Authorization=authorization).token == token


def test_the_vault_header_wins_over_authorization() -> None:
    assert req(X_Vault_Token="a", Authorization="Bearer b").token == "a"


def _read(context: object) -> vaultapi.ApiResponse:
    return vaultapi.written()


HEALTH = PathSpec(
    "sys/health",
    operations={"read": _read},
    mounted=False,
    authenticated=False,
    methods=("GET", "HEAD"),
)
MOUNTS = PathSpec("sys/mounts", operations={"read": _read}, mounted=False)


def test_a_path_outside_the_router_answers_its_own_methods_only() -> None:
    assert generic.refusal(HEALTH, req("GET", "sys/health")) is None
    assert generic.refusal(HEALTH, req("HEAD", "sys/health")) is None
    refused = generic.refusal(HEALTH, req("POST", "sys/health"))
    assert refused is not None and (refused.status, json.loads(refused.body)) == (
        405,
        {"errors": []},
    )
    # HEAD runs the read there, and nowhere else (OpenBao's HeaderOperation: 405).
    assert HEALTH.handler("header") is _read and MOUNTS.handler("header") is None
    assert generic.is_unrouted(HEALTH, req("GET", "sys/health/"))


def test_health_and_init_refuse_any_namespace_header() -> None:
    refused = generic.refusal(HEALTH, req("GET", "sys/health", X_Vault_Namespace="root"))
    assert refused is not None and refused.status == 400
    assert json.loads(refused.body) == {"errors": ["operation unavailable in namespaces"]}


@pytest.mark.parametrize(
    ("method", "namespace", "path", "status", "errors"),
    [
        ("FOO", "", "sys/mounts", 405, []),
        ("PROPFIND", "foo", "sys/mounts", 405, []),  # the verb before the namespace
        ("GET", "foo", "sys/mounts", 404, ["namespace not found"]),
        ("POST", "", "sys/mounts/x/", 400, ["cannot write to a path ending in '/'"]),
        ("PUT", "", "x/", 400, ["cannot write to a path ending in '/'"]),
    ],
)
def test_what_openbao_answers_before_its_router(
    method: str, namespace: str, path: str, status: int, errors: list[str]
) -> None:
    request = req(method, path, X_Vault_Namespace=namespace)
    for spec in (MOUNTS, None):
        refused = generic.refusal(spec, request)
        assert refused is not None and refused.status == status
        assert json.loads(refused.body) == {"errors": errors}


@pytest.mark.parametrize(
    ("content_type", "status", "errors"),
    [
        ("", 400, ["mime: no media type"]),
        (
            "Application/JSON; charset=utf-8",
            415,
            [
                "PATCH requires Content-Type of application/merge-patch+json, "
                "provided application/json"
            ],
        ),
    ],
)
def test_a_patch_needs_a_merge_patch_body_first(
    content_type: str, status: int, errors: list[str]
) -> None:
    refused = generic.refusal(MOUNTS, req("PATCH", "sys/mounts", Content_Type=content_type))
    assert refused is not None and (refused.status, json.loads(refused.body)) == (
        status,
        {"errors": errors},
    )
    merge = req("PATCH", "sys/mounts", Content_Type="application/merge-patch+json")
    assert generic.refusal(MOUNTS, merge) is None


@pytest.mark.parametrize("method", ["GET", "LIST", "DELETE", "HEAD", "OPTIONS"])
def test_standard_requests_go_on_to_the_router(method: str) -> None:
    assert generic.refusal(MOUNTS, req(method, "sys/mounts", X_Vault_Namespace="root/")) is None


def test_a_trailing_slash_is_not_found_but_on_a_listing_path() -> None:
    key = PathSpec("key/:name", operations={"read": lambda c: vaultapi.written()})
    listing = PathSpec("key", operations={"list": lambda c: vaultapi.written()})
    services = lambda: None  # noqa: E731 - neither path is under auth/:mount/
    with pytest.raises(NotFound) as raised:
        generic.check_path(key, req("GET", "m/key/a/"), "read", services)  # type: ignore[arg-type]
    assert raised.value.messages == ["1 error occurred:\n\t* unsupported path\n\n"]
    with pytest.raises(NotFound):
        generic.check_path(key, req("GET", "m/key/a"), "list", services)  # type: ignore[arg-type]
    generic.check_path(key, req("GET", "m/key/a"), "read", services)  # type: ignore[arg-type]
    generic.check_path(listing, req("GET", "m/key/"), "read", services)  # type: ignore[arg-type]


def test_unsupported_operations_are_worded_as_vaults_router_words_them() -> None:
    assert generic.unsupported_operation(MOUNTS).messages == [
        "1 error occurred:\n\t* unsupported operation\n\n"
    ]
    assert generic.unsupported_operation(HEALTH).messages == ["unsupported operation"]


def test_head_is_its_own_operation() -> None:
    assert vaultapi.operation(req("HEAD")) == "header"


def test_the_ignored_fields_warning_alone_is_a_204() -> None:
    data = FieldData({"type": "rsa-2048", "colour": "red"}, [Field("type", vaultapi.weak_str)])
    assert vaultapi.written(data.warnings).status == 204
    assert vaultapi.written(data.warnings).body == b""
    # With a warning of the handler's own, both are said, the handler's first (as Vault).
    mixed = vaultapi.written([*data.warnings, "replica_regions was ignored"])
    assert mixed.status == 200
    assert json.loads(mixed.body)["warnings"] == [
        "replica_regions was ignored",
        "Endpoint ignored these unrecognized parameters: [colour]",
    ]
    # On an answer with data it stays.
    read = json.loads(vaultapi.ok({"a": 1}, data.warnings).body)
    assert read["warnings"] == ["Endpoint ignored these unrecognized parameters: [colour]"]


def test_every_answer_says_no_store_and_echoes_the_namespace() -> None:
    plain = vaultapi.finished(req(), vaultapi.written())
    assert plain.headers == {"Cache-Control": "no-store"}
    echoed = vaultapi.finished(req(X_Vault_Namespace="root"), vaultapi.error(404))
    assert echoed.headers["X-Vault-Namespace"] == "root"
    assert echoed.headers["Cache-Control"] == "no-store"
    assert echoed.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("http://h/v1/keymgmt/key/a", "keymgmt/key/a"),
        ("http://h/v1/keymgmt/key/a/?x=1", "keymgmt/key/a/"),
        ("https://app.azurewebsites.net/v1/sp%20ace", "sp ace"),
        ("http://h/v1/", ""),
        ("http://h/v1", ""),
    ],
)
def test_the_path_keeps_its_trailing_slash(url: str, path: str) -> None:
    assert api_path(url) == path
