"""Help and OpenAPI built from the PathSpec declarations (shared/api/help.py), without a server.

The OpenAPI documents are checked with openapi-spec-validator (the OpenAPI Initiative's
schemas); the help text against OpenBao's pathHelpTemplate as it renders (the layout was
captured from ``bao server -dev``; the oracle comparison is tests/integration/test_help_oracle.py).
"""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from shared import policy, vaultapi
from shared.api import PathSpec, help, keys, kms, routes, sys
from shared.vaultapi import ApiRequest, Field


def test_help_is_asked_by_any_non_empty_help_parameter_or_the_help_verb() -> None:
    assert help.asked(ApiRequest("GET", query={"help": "1"}))
    assert help.asked(ApiRequest("GET", query={"help": "0"}))  # OpenBao: any value but ""
    assert help.asked(ApiRequest("POST", query={"help": "true"}))
    assert help.asked(ApiRequest("HELP"))
    assert not help.asked(ApiRequest("GET", query={"help": ""}))
    assert not help.asked(ApiRequest("GET", query={"list": "true"}))


def test_path_help_follows_openbaos_template() -> None:
    text = help.help_text(keys.KEY, "key/web")
    head, _, rest = text.partition("\n\n")
    assert head == (
        "Request:        key/web\nMatching Route: ^key/(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)$"
    )
    synopsis, _, rest = rest.partition("\n\n")
    assert synopsis == keys.KEY.synopsis
    parameters, _, description = rest.partition("\n\n## DESCRIPTION\n\n")
    assert description == keys.KEY.help
    # Sorted by name, the route's own parameter among them, each typed as Vault types it.
    assert parameters.startswith("## PARAMETERS\n\n    auto_rotate_period (duration (sec))\n\n")
    listed = [
        line.strip()
        for line in parameters.splitlines()
        if line.startswith("    ") and "(" in line and not line.startswith("        ")
    ]
    assert listed == [
        "auto_rotate_period (duration (sec))",
        "deletion_allowed (bool)",
        "min_enabled_version (int)",
        "name (string)",
        "replica_regions (any)",
        "type (string)",
    ]
    assert "    name (string)\n\n        Name of the key.\n" in parameters


def test_a_path_without_fields_has_no_parameters_section() -> None:
    # OpenBao's template leaves two blank lines there (sys/mounts?help=1 shows them).
    text = help.help_text(sys.MOUNTS, "mounts")
    assert text == (
        f"Request:        mounts\nMatching Route: ^mounts$\n\n{sys.MOUNTS.synopsis}\n\n\n"
        f"## DESCRIPTION\n\n{sys.MOUNTS.help}"
    )
    bare = PathSpec("sys/bare", mounted=False, operations={"read": lambda ctx: None})  # type: ignore[arg-type, return-value]
    assert help.help_text(bare, "bare").endswith(
        "<no synopsis>\n\n\n## DESCRIPTION\n\n<no description>"
    )


@pytest.mark.parametrize(
    ("field", "kind"),
    [
        (Field("a", vaultapi.weak_str), "string"),
        (Field("a", vaultapi.weak_int), "int"),
        (Field("a", vaultapi.weak_bool), "bool"),
        (Field("a", vaultapi.duration_seconds), "duration (sec)"),
        (Field("a", vaultapi.comma_list), "comma-string slice"),
        (Field("a", vaultapi.kv_pairs), "keypair"),
        (kms.PROVIDER_FIELDS[0], "string"),  # a module's own decoder, by its annotation
    ],
)
def test_field_types_are_vaults_names(field: Field, kind: str) -> None:
    assert help.field_type(field) == kind


def test_every_declared_path_has_a_synopsis_and_every_field_a_type() -> None:
    for spec in routes.ALL:
        assert spec.synopsis.strip(), spec.pattern
        for f in spec.fields:
            assert help.field_type(f) in help._OAS_TYPES, (spec.pattern, f.name)


def _mounts() -> list[help.MountView]:
    return [
        help.MountView(help.SYS, {}),
        help.MountView(help.TOKEN, {}),
        help.MountView(help.Backend("keymgmt/", "keymgmt", "secrets", False), {}),
        help.MountView(help.Backend("my-keys/", "keymgmt", "secrets", False), {}),
        help.MountView(help.Backend("auth/jwt/", "jwt", "auth", False), {}),
    ]


@pytest.mark.parametrize("generic", [False, True])
def test_the_whole_document_is_valid_openapi_3(generic: bool) -> None:
    doc = help.build_document(_mounts(), routes.ALL, generic_mount_paths=generic)
    validate(doc)  # raises on an invalid document
    paths = doc["paths"]
    if generic:
        assert "/{keymgmt_mount_path}/key/{name}" in paths
        assert "/{my_keys_mount_path}/kms/{name}/key/{key_name}" in paths
        assert "/auth/{jwt_mount_path}/login" in paths
        item = paths["/{keymgmt_mount_path}/key/{name}"]
        mount_param = [p for p in item["parameters"] if p["name"] == "keymgmt_mount_path"]
        assert mount_param[0]["schema"]["default"] == "keymgmt"
    else:
        assert {"/keymgmt/key/{name}", "/my-keys/key/{name}", "/auth/jwt/login"} <= set(paths)
    assert "/sys/mounts/{path}" in paths and "/auth/token/create" in paths
    assert "/sys/internal/ui/mounts/{path}" in paths
    ids = [
        op["operationId"]
        for item in paths.values()
        for k, op in item.items()
        if k in ("get", "post", "delete")
    ]
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_a_paths_operations_and_request_schema_come_from_its_declaration() -> None:
    doc = help.build_document(_mounts()[2:3], routes.ALL, generic_mount_paths=False)
    item = doc["paths"]["/keymgmt/key/{name}"]
    assert set(item) == {"description", "parameters", "get", "post", "delete"}
    assert item["parameters"][0] == {
        "name": "name",
        "description": "Name of the key.",
        "in": "path",
        "schema": {"type": "string"},
        "required": True,
    }
    ref = item["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["properties"]["type"]["enum"] == list(keys.KEY_FIELDS[0].allowed)
    assert schema["properties"]["auto_rotate_period"] == {
        "type": "integer",
        "format": "seconds",
        "description": keys.KEY_FIELDS[3].description,
    }
    dist = doc["paths"]["/keymgmt/kms/{name}/key/{key_name}"]
    ref = dist["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["required"] == ["purpose"]
    assert schema["properties"]["purpose"]["items"]["enum"] == list(
        kms.DISTRIBUTION_FIELDS[0].allowed
    )
    assert schema["properties"]["protection"]["default"] == "hsm"
    # A list-only path: GET with the list parameter required; no write, no delete.
    listing = doc["paths"]["/keymgmt/key"]
    assert set(listing) == {"description", "get"}
    assert listing["get"]["parameters"][0]["name"] == "list"
    assert listing["get"]["parameters"][0]["required"] is True
    # A path whose trigger takes only some methods documents only those.
    health = help.build_document(_mounts()[:1], routes.ALL, generic_mount_paths=False)
    assert set(health["paths"]["/sys/health"]) == {"description", "get"}


def test_mount_access_as_openbaos_hasmountaccess() -> None:
    def acl(text: str) -> policy.ACL:
        return policy.ACL([policy.parse("p", text)])

    assert policy.ACL.root().has_mount_access("keymgmt/")
    assert acl('path "keymgmt/*" { capabilities = ["read"] }').has_mount_access("keymgmt/")
    assert acl('path "keymgmt/key/web" { capabilities = ["read"] }').has_mount_access("keymgmt/")
    assert acl('path "+/key/web" { capabilities = ["read"] }').has_mount_access("keymgmt/")
    assert acl('path "auth/jwt/login" { capabilities = ["update"] }').has_mount_access("auth/jwt/")
    # OpenBao's quirk, pinned against the oracle in tests/integration/test_help_oracle.py:
    # a prefix rule covering the mount shows it even when it denies, unless a "+" rule exists.
    assert acl('path "keymgmt/*" { capabilities = ["deny"] }').has_mount_access("keymgmt/")
    both = 'path "keymgmt/*" { capabilities = ["deny"] }\npath "+/x" { capabilities = ["deny"] }'
    assert not acl(both).has_mount_access("keymgmt/")
    assert not acl('path "other/*" { capabilities = ["read"] }').has_mount_access("keymgmt/")
    assert not acl('path "keymgmt2/*" { capabilities = ["read"] }').has_mount_access("keymgmt/")
    assert not acl('path "+/x/+" { capabilities = ["deny"] }').has_mount_access("keymgmt/")


def test_a_backends_root_help_lists_its_paths_as_openbaos_root_template() -> None:
    backend = help.Backend("keymgmt/", "keymgmt", "secrets", False)
    answer = help.root_help(backend, routes.ALL)
    text = answer["help"]
    assert text.startswith(f"## DESCRIPTION\n\n{help.BACKEND_HELP['keymgmt']}\n\n## PATHS\n\n")
    engine = [s for s in routes.ALL if s.mounted and s not in help.ROOTS]
    routes_shown = [line.strip() for line in text.splitlines() if line.startswith("    ^")]
    assert routes_shown == sorted(help.route_regex(s) for s in engine)
    assert f"    ^key/?$\n        {keys.KEYS.synopsis}\n" in text
    validate(answer["openapi"])
    assert "/key/{name}" in answer["openapi"]["paths"]
    assert all(not p.startswith("/keymgmt/") for p in answer["openapi"]["paths"])
    token = help.root_help(help.TOKEN, routes.ALL)["help"]
    assert token.startswith("## DESCRIPTION\n\n\n\n## PATHS")  # as OpenBao's, no description
    assert "    ^create$\n" in token
