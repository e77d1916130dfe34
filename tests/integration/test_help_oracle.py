"""Help, OpenAPI and the UI's mount listing against the oracle (``bao server -dev``), over HTTP
through the local Functions host, with raw requests, the real ``bao`` CLI and hvac.

OpenBao has no keymgmt engine, so a transit mount stands in for it under the same mount path:
the cases compare what is generic (status codes, error texts, body shapes, which mounts a token
sees, the help layout and the OpenAPI document's shape); the engine's own paths differ by
name (``key/`` here, ``keys/`` in transit) and are written per side.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import pytest
import requests
from openapi_spec_validator import validate

from tests.fixtures.openbao import BaoCli

MOUNT = f"help{os.getpid()}"


@dataclass
class Side:
    name: str
    url: str
    key_path: str  # the engine's path of one key, inside the mount

    def call(
        self, method: str, path: str, token: str | None = "root", **kw: Any
    ) -> requests.Response:
        headers = {"X-Vault-Token": token} if token else {}
        return requests.request(method, f"{self.url}/v1/{path}", headers=headers, timeout=120, **kw)

    def token(self, policy: str | None) -> str:
        """A token holding only a policy with ``policy``'s rules (no default policy)."""
        policies: list[str] = []
        if policy is not None:
            name = f"help-{uuid.uuid4().hex[:8]}"
            written = self.call("PUT", f"sys/policies/acl/{name}", json={"policy": policy})
            assert written.status_code == 204, written.text
            policies = [name]
        created = self.call(
            "POST",
            "auth/token/create",
            json={"policies": policies or ["nothing"], "no_default_policy": True},
        )
        assert created.status_code == 200, created.text
        token: str = created.json()["auth"]["client_token"]
        return token


@pytest.fixture(scope="module")
def sides(openbao: Any, funchost: Any) -> Iterator[tuple[Side, Side]]:
    oracle = Side("openbao", openbao.url, "keys/web")
    local = Side("local", funchost.url, "key/web")
    for side, engine in ((oracle, "transit"), (local, "keymgmt")):
        enabled = side.call("POST", f"sys/mounts/{MOUNT}", json={"type": engine})
        assert enabled.status_code == 204, enabled.text
        written = side.call("POST", f"{MOUNT}/{side.key_path}", json={"type": "rsa-2048"})
        assert written.status_code in (200, 204), written.text
        enabled = side.call("POST", f"sys/auth/{MOUNT}", json={"type": "jwt"})
        assert enabled.status_code == 204, enabled.text
    yield oracle, local
    for side in (oracle, local):
        side.call("POST", f"{MOUNT}/{side.key_path}/config", json={"deletion_allowed": True})
        side.call("POST", f"{MOUNT}/{side.key_path}", json={"deletion_allowed": True})
        side.call("DELETE", f"{MOUNT}/{side.key_path}")
        side.call("DELETE", f"sys/mounts/{MOUNT}")
        side.call("DELETE", f"sys/auth/{MOUNT}")


def both(sides: tuple[Side, Side], fn: Any) -> tuple[Any, Any]:
    oracle, local = sides
    return fn(oracle), fn(local)


def _shape(r: requests.Response) -> tuple[int, Any]:
    body = r.json() if r.content else None
    if isinstance(body, dict) and "errors" not in body:
        body = sorted(body)
    return r.status_code, body


# -- ?help=1 -----------------------------------------------------------------------------------


def _layout(text: str) -> list[str]:
    """The help text's skeleton: the two header labels and the section titles."""
    lines = text.splitlines()
    return [lines[0].split(":")[0], lines[1].split(":")[0]] + [
        line for line in lines if line.startswith("## ")
    ]


def test_help_on_an_engine_path_has_openbaos_shape(sides: tuple[Side, Side]) -> None:
    want, got = both(sides, lambda s: s.call("GET", f"{MOUNT}/{s.key_path}", params={"help": 1}))
    assert want.status_code == got.status_code == 200
    assert want.headers["Content-Type"] == got.headers["Content-Type"] == "application/json"
    w, g = want.json(), got.json()
    assert sorted(w) == sorted(g) == ["help", "openapi", "see_also"]
    assert w["see_also"] is g["see_also"] is None
    assert (
        _layout(w["help"])
        == _layout(g["help"])
        == [
            "Request",
            "Matching Route",
            "## PARAMETERS",
            "## DESCRIPTION",
        ]
    )
    assert g["help"].startswith("Request:        key/web\nMatching Route: ^key/(?P<name>")
    assert w["help"].startswith("Request:        keys/web\nMatching Route: ^keys/(?P<name>")
    # The path's own OpenAPI document: one path, read/write/delete, a request schema.
    assert sorted(w["openapi"]) == sorted(g["openapi"])
    assert w["openapi"]["openapi"] == g["openapi"]["openapi"] == "3.0.2"
    (wpath,), (gpath,) = w["openapi"]["paths"].values(), g["openapi"]["paths"].values()
    assert list(g["openapi"]["paths"]) == ["/key/{name}"]
    assert {"get", "post", "delete", "parameters"} <= set(wpath) & set(gpath)
    assert gpath["parameters"][0]["name"] == wpath["parameters"][0]["name"] == "name"
    validate(g["openapi"])


def test_help_on_a_sys_path_is_openbaos_text_where_the_declaration_is_vaults(
    sides: tuple[Side, Side],
) -> None:
    want, got = both(sides, lambda s: s.call("GET", "sys/mounts", params={"help": "1"}))
    w, g = want.json()["help"].splitlines(), got.json()["help"].splitlines()
    assert w[:3] == g[:3] == ["Request:        mounts", "Matching Route: ^mounts$", ""]
    assert w[4:7] == g[4:7] == ["", "", "## DESCRIPTION"]  # no fields: no PARAMETERS


@pytest.mark.parametrize(
    "case",
    [
        "no token",
        "bad token",
        "help=0",
        "policy-less token",
        "a write-only path",
        "a list with help",
        "an unauthenticated path without a token",
        "a path under no mount",
        "an auth method's login without a token",
        "an auth method's config",
        "an auth method that is not enabled",
    ],
)
def test_who_gets_help_and_where_as_openbao(sides: tuple[Side, Side], case: str) -> None:
    def ask(side: Side) -> tuple[int, Any]:
        path, params, token = f"{MOUNT}/{side.key_path}", {"help": "1"}, "root"
        if case == "no token":
            token = None
        elif case == "bad token":
            token = "hvs.nosuchtoken"
        elif case == "help=0":
            params = {"help": "0"}
        elif case == "policy-less token":
            token = side.token(None)
        elif case == "a write-only path":
            path += "/rotate"
        elif case == "a list with help":
            path, params = f"{MOUNT}/{side.key_path.split('/')[0]}", {"list": "true", "help": "1"}
        elif case == "an unauthenticated path without a token":
            path, token = "sys/health", None
        elif case == "a path under no mount":
            path = f"nosuch{os.getpid()}/{side.key_path}"
        elif case == "an auth method's login without a token":
            path, token = f"auth/{MOUNT}/login", None
        elif case == "an auth method's config":
            path = f"auth/{MOUNT}/config"
        elif case == "an auth method that is not enabled":
            path = f"auth/nosuch{os.getpid()}/config"
        r = side.call("GET", path, token=token, params=params)
        status, body = _shape(r)
        if case == "a path under no mount":  # the text names the path: transit's keys/ vs key/
            return status, side.key_path in str(body)
        return status, body

    want, got = both(sides, ask)
    assert got == want


# -- sys/internal/ui/mounts --------------------------------------------------------------------


def test_a_get_on_login_is_refused_as_openbao(sides: tuple[Side, Side]) -> None:
    want, got = both(sides, lambda s: _shape(s.call("GET", f"auth/{MOUNT}/login", token=None)))
    assert got == want == (405, {"errors": ["unsupported operation"]})


def _ui(side: Side, token: str | None) -> requests.Response:
    return side.call("GET", "sys/internal/ui/mounts", token=token)


def test_ui_mounts_without_a_token_shows_nothing_tuned_hidden(sides: tuple[Side, Side]) -> None:
    want, got = both(sides, lambda s: _ui(s, None))
    assert want.status_code == got.status_code == 200
    assert want.json()["data"] == got.json()["data"] == {"auth": {}, "secret": {}}
    assert sorted(want.json()) == sorted(got.json())  # the envelope


@pytest.mark.parametrize(
    "policy",
    [
        None,  # nothing granted: nothing shown
        'path "MOUNT/*" { capabilities = ["read"] }',
        'path "MOUNT/some/deep/path" { capabilities = ["list"] }',
        'path "MOUNT/*" { capabilities = ["deny"] }',  # shown: OpenBao's bare-mount check
        'path "MOUNT/*" { capabilities = ["deny"] }\npath "+/x" { capabilities = ["deny"] }',
        'path "+/some/+" { capabilities = ["read"] }',
        'path "auth/token/lookup-self" { capabilities = ["read"] }',
        'path "MOUNT" { capabilities = ["read"] }',
        'path "auth/MOUNT/login" { capabilities = ["update"] }',
    ],
)
def test_ui_mounts_shows_what_a_tokens_policies_reach(
    sides: tuple[Side, Side], policy: str | None
) -> None:
    def visible(side: Side) -> tuple[list[str], list[str]]:
        token = side.token(policy.replace("MOUNT", MOUNT) if policy else None)
        data = _ui(side, token).json()["data"]
        mine = [m for m in data["secret"] if m in (f"{MOUNT}/",)]  # OpenBao has cubbyhole/...
        auth = [m for m in data["auth"] if m in ("token/", f"{MOUNT}/")]
        return mine, auth

    want, got = both(sides, visible)
    assert got == want


def test_ui_mounts_with_root_lists_the_mount_as_sys_mounts_shows_it(
    sides: tuple[Side, Side],
) -> None:
    want, got = both(sides, lambda s: _ui(s, "root").json()["data"])
    assert sorted(want["secret"][f"{MOUNT}/"]) == sorted(got["secret"][f"{MOUNT}/"])
    assert sorted(want["auth"]["token/"]) == sorted(got["auth"]["token/"])
    local = sides[1]
    listed = local.call("GET", "sys/mounts").json()["data"][f"{MOUNT}/"]
    assert got["secret"][f"{MOUNT}/"] == listed


@pytest.mark.parametrize(
    ("case", "path"),
    [
        ("the mount", "MOUNT"),
        ("a path inside it", "MOUNT/KEY"),
        ("auth/token", "auth/token"),
        ("an auth method", "auth/MOUNT/role/x"),
        ("no mount", "nosuchmount"),
        ("no token", "MOUNT"),
        ("a token without access", "MOUNT"),
    ],
)
def test_ui_mount_by_path_as_openbao(sides: tuple[Side, Side], case: str, path: str) -> None:
    def ask(side: Side) -> tuple[int, Any]:
        token: str | None = "root"
        if case == "no token":
            token = None
        elif case == "a token without access":
            token = side.token('path "elsewhere/*" { capabilities = ["read"] }')
        full = path.replace("MOUNT", MOUNT).replace("KEY", side.key_path)
        r = side.call("GET", f"sys/internal/ui/mounts/{full}", token=token)
        body = r.json()
        if r.status_code == 200:
            return r.status_code, (body["data"]["path"], sorted(body["data"]))
        return r.status_code, body

    want, got = both(sides, ask)
    assert got == want


# -- sys/internal/specs/openapi ----------------------------------------------------------------


def _spec(side: Side, token: str | None, **params: str) -> requests.Response:
    return side.call("GET", "sys/internal/specs/openapi", token=token, params=params)


def test_openapi_without_a_token_documents_no_mount(sides: tuple[Side, Side]) -> None:
    want, got = both(sides, lambda s: _spec(s, None))
    assert want.status_code == got.status_code == 200
    w, g = want.json(), got.json()
    assert sorted(w) == sorted(g) and w["paths"] == g["paths"] == {}
    assert got.headers["Content-Type"] == "application/json"


def test_openapi_with_a_bad_token_is_refused(sides: tuple[Side, Side]) -> None:
    want, got = both(sides, lambda s: _shape(_spec(s, "hvs.nosuchtoken")))
    assert got == want == (403, {"errors": ["permission denied"]})


@pytest.mark.parametrize("generic", [False, True])
def test_openapi_with_root_documents_every_mount(sides: tuple[Side, Side], generic: bool) -> None:
    params = {"generic_mount_paths": "true"} if generic else {}
    want, got = both(sides, lambda s: _spec(s, "root", **params).json())
    validate(got)
    assert sorted(want) == sorted(got)
    mount = f"{{{MOUNT}_mount_path}}" if generic else MOUNT
    assert f"/{mount}/keys/{{name}}" in want["paths"]
    assert f"/{mount}/key/{{name}}" in got["paths"]
    common = {"/sys/mounts", "/sys/mounts/{path}", "/auth/token/create", "/sys/policies/acl"}
    assert common <= set(want["paths"]) & set(got["paths"])
    for path in common:  # the same operations on the generic paths both serve
        ops = {k for k in want["paths"][path] if k in ("get", "post", "delete")}
        assert ops == {k for k in got["paths"][path] if k in ("get", "post", "delete")}, path


def test_openapi_shows_only_the_mounts_a_token_reaches(sides: tuple[Side, Side]) -> None:
    def mounts(side: Side) -> list[str]:
        token = side.token(f'path "{MOUNT}/*" {{ capabilities = ["read"] }}')
        paths = _spec(side, token).json()["paths"]
        return sorted({p.split("/")[1] for p in paths})

    want, got = both(sides, mounts)
    assert got == want == [MOUNT]


# -- the CLI and hvac --------------------------------------------------------------------------


def test_bao_path_help_prints_the_help_and_its_json_is_the_openapi_document(
    sides: tuple[Side, Side], tmp_path: Path
) -> None:
    for side in sides:
        cli = BaoCli(side.url, tmp_path, token="root")
        out = cli("path-help", f"{MOUNT}/{side.key_path}").stdout
        assert out.startswith(f"Request:        {side.key_path}\nMatching Route: ^"), side.name
        assert "## DESCRIPTION" in out
        doc = json.loads(cli("path-help", "-format=json", "sys/mounts").stdout)
        assert list(doc["paths"]) == ["/mounts"], side.name
        missing = cli("path-help", f"nosuch{os.getpid()}/x/y", ok=False)
        assert missing.returncode == 2 and "Error retrieving help" in missing.stderr, side.name


def test_hvac_reads_help_and_the_ui_mounts(sides: tuple[Side, Side]) -> None:
    for side in sides:
        client = hvac.Client(url=side.url, token="root")
        helped = client.adapter.get(f"/v1/{MOUNT}/{side.key_path}", params={"help": 1})
        assert sorted(helped) == ["help", "openapi", "see_also"], side.name
        ui = client.read("sys/internal/ui/mounts")
        assert f"{MOUNT}/" in ui["data"]["secret"] and "token/" in ui["data"]["auth"], side.name


# -- a backend's root --------------------------------------------------------------------------


@pytest.mark.parametrize("root", ["MOUNT", "sys", "auth/token", "auth/MOUNT"])
def test_help_on_a_backends_root_lists_its_paths(sides: tuple[Side, Side], root: str) -> None:
    path = root.replace("MOUNT", MOUNT)
    want, got = both(sides, lambda s: s.call("GET", path, params={"help": "1"}))
    assert want.status_code == got.status_code == 200, got.text
    w, g = want.json(), got.json()
    assert sorted(w) == sorted(g) == ["help", "openapi", "see_also"]
    for text in (w["help"], g["help"]):
        assert text.startswith("## DESCRIPTION\n\n")
        assert "\n\n## PATHS\n\nThe following paths are supported by this backend." in text
    validate(g["openapi"])
    assert all(not p.startswith(f"/{path}/") for p in g["openapi"]["paths"])  # inside it
    if root == "auth/token":
        assert "/create" in w["openapi"]["paths"] and "/create" in g["openapi"]["paths"]


@pytest.mark.parametrize(
    ("method", "root", "token"),
    [
        ("GET", "MOUNT", "root"),
        ("POST", "MOUNT", "root"),
        ("DELETE", "MOUNT", "root"),
        ("GET", "MOUNT", None),
        ("GET", "auth/token", "root"),
        ("POST", "auth/MOUNT", "root"),
        ("GET", "auth/MOUNT", None),
        ("GET", "sys/", None),
    ],
)
def test_anything_else_on_a_backends_root_is_openbaos_answer(
    sides: tuple[Side, Side], method: str, root: str, token: str | None
) -> None:
    path = root.replace("MOUNT", MOUNT)
    want, got = both(sides, lambda s: _shape(s.call(method, path, token=token)))
    assert got == want


def test_bao_path_help_on_a_mount_lists_its_paths(sides: tuple[Side, Side], tmp_path: Path) -> None:
    for side in sides:
        out = BaoCli(side.url, tmp_path, token="root")("path-help", MOUNT).stdout
        assert out.startswith("## DESCRIPTION"), side.name
        assert "## PATHS" in out
    out = BaoCli(sides[1].url, tmp_path, token="root")("path-help", MOUNT).stdout
    assert "    ^key/?$\n        List the names of the keys in this mount.\n" in out


def test_openapi_by_post_takes_generic_mount_paths_in_the_body(sides: tuple[Side, Side]) -> None:
    def mounts(side: Side) -> tuple[int, bool]:
        r = side.call("POST", "sys/internal/specs/openapi", json={"generic_mount_paths": True})
        return r.status_code, any(
            p.startswith(f"/{{{MOUNT}_mount_path}}/") for p in r.json()["paths"]
        )

    want, got = both(sides, mounts)
    assert got == want == (200, True)
