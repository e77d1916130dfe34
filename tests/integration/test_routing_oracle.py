"""Vault's generic HTTP surface against the oracle: each case runs on a real OpenBao dev server
and on the local stack (the real app in the local Functions host), over HTTP, and both must
answer with the same status, the same ``errors`` list (or no body), ``Cache-Control:
no-store`` and the namespace header echoed. Unrouted paths and verbs, wrong methods on known
paths, HEAD, trailing slashes, LIST, namespaces, ``Authorization: Bearer`` and the 204 of a
write with unknown fields; then the same through the ``bao`` CLI and hvac.

A mount named ``rt`` exists on both sides: transit on OpenBao (it has no keymgmt), keymgmt
here, so a case that touches a key uses transit's ``keys/`` and our ``key/``. The run prints
the comparison as a table (case, OpenBao, ours, same?).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest
import requests

from tests.fixtures.funchost import FuncHost
from tests.fixtures.openbao import BaoCli, OpenBao

MOUNT = "rt"
JWT_MOUNT = "rtjwt"


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str  # on both sides, unless ``ours`` differs
    token: str | None = "root"  # None: no token header at all
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    ours: str | None = None  # our path, where OpenBao's transit spells it differently
    # A deliberate difference in the error text (docs/vault-api.md says why): the status and
    # the headers must still match.
    deliberate: str = ""

    def path_on(self, side: str) -> str:
        return self.ours if side == "ours" and self.ours is not None else self.path


KEY = f"{MOUNT}/keys/k1"  # transit
OUR_KEY = f"{MOUNT}/key/k1"  # keymgmt
NS = {"X-Vault-Namespace": "foo"}

CASES = [
    # -- unrouted paths and verbs
    Case("unknown path, no token", "GET", "nope", token=None),
    Case("unknown path, bad token", "GET", "nope", token="not-a-token"),
    Case("unknown path", "GET", "nope"),
    Case("unknown deep path", "GET", "nope/x/y"),
    Case("unknown path, POST", "POST", "nope", body={"a": "b"}),
    Case("unknown path, DELETE", "DELETE", "nope"),
    Case("unknown path, LIST", "LIST", "nope/"),
    Case("unknown path, GET ?list=true", "GET", "nope/?list=true"),
    Case(
        "unknown path, bad ?list=",
        "GET",
        "nope?list=maybe",
        deliberate="our 400 names the flag (OpenBao: an empty error list); docs/vault-http.md",
    ),
    Case("unknown verb", "FOO", "nope"),
    Case("unknown verb, no token", "FOO", "nope", token=None),
    Case("unknown verb on a known path", "FOO", "sys/mounts"),
    Case("empty path", "GET", ""),
    Case("empty path, no token", "GET", "", token=None),
    Case("a key under no mount", "GET", "nope/key/k1"),
    Case("a key list under no mount", "LIST", "nope/key"),
    Case("a key write under no mount", "POST", "nope/key/k1", body={"type": "rsa-2048"}),
    Case("unknown path under sys/", "GET", "sys/nope"),
    Case("unknown path under auth/token/", "GET", "auth/token/nope"),
    Case("auth/token without slash", "GET", "auth/token"),
    Case("unknown auth mount", "GET", "auth/nope/login"),
    Case("unknown path under an auth mount", "GET", f"auth/{JWT_MOUNT}/nope"),
    Case("unknown path under a mount", "GET", f"{MOUNT}/nope"),
    Case("a mount's own path", "GET", MOUNT),
    Case("percent-encoded path", "GET", "sp%20ace"),
    # -- the paths outside OpenBao's logical router
    Case("POST sys/health", "POST", "sys/health", token=None),
    Case("DELETE sys/health", "DELETE", "sys/health", token=None),
    Case("LIST sys/health", "LIST", "sys/health", token=None),
    Case("HEAD sys/health", "HEAD", "sys/health", token=None),
    Case("HEAD sys/seal-status", "HEAD", "sys/seal-status", token=None),
    Case("POST sys/seal-status", "POST", "sys/seal-status", token=None),
    Case("PUT sys/leader", "PUT", "sys/leader", token=None),
    Case("DELETE sys/init", "DELETE", "sys/init", token=None),
    Case("sys/health/ (a trailing slash)", "GET", "sys/health/", token=None),
    Case("sys/seal-status/ with a token", "GET", "sys/seal-status/"),
    # -- wrong methods on known paths
    Case("POST sys/mounts", "POST", "sys/mounts"),
    Case("DELETE sys/mounts", "DELETE", "sys/mounts"),
    Case("POST sys/policies/acl", "POST", "sys/policies/acl"),
    Case("POST sys/auth", "POST", "sys/auth"),
    Case("DELETE sys/audit", "DELETE", "sys/audit"),
    Case("DELETE auth/token/lookup-self", "DELETE", "auth/token/lookup-self"),
    Case("GET a login path", "GET", f"auth/{JWT_MOUNT}/login", token=None),
    # -- HEAD
    Case("HEAD sys/mounts", "HEAD", "sys/mounts"),
    Case("HEAD sys/mounts, no token", "HEAD", "sys/mounts", token=None),
    Case("HEAD an unknown path", "HEAD", "nope"),
    Case("HEAD a key", "HEAD", KEY, ours=OUR_KEY),
    # -- trailing slashes and LIST
    Case("a key with a trailing slash", "GET", f"{KEY}/", ours=f"{OUR_KEY}/"),
    Case("DELETE a key with a trailing slash", "DELETE", f"{KEY}/", ours=f"{OUR_KEY}/"),
    Case("sys/mounts/ (a trailing slash)", "GET", "sys/mounts/"),
    Case("LIST sys/mounts", "LIST", "sys/mounts"),
    Case("LIST sys/auth", "LIST", "sys/auth"),
    Case("LIST a key", "LIST", KEY, ours=OUR_KEY),
    Case("GET a key with ?list=true", "GET", f"{KEY}?list=true", ours=f"{OUR_KEY}?list=true"),
    Case("GET the key list path", "GET", f"{MOUNT}/keys/", ours=f"{MOUNT}/key/"),
    Case("LIST the keys", "LIST", f"{MOUNT}/keys", ours=f"{MOUNT}/key"),
    Case("LIST the keys/", "LIST", f"{MOUNT}/keys/", ours=f"{MOUNT}/key/"),
    Case(
        "GET the keys ?list=true", "GET", f"{MOUNT}/keys?list=true", ours=f"{MOUNT}/key?list=true"
    ),
    Case("POST a path ending in /", "POST", "nope/", body={"a": "b"}),
    Case("PUT a path ending in /, no token", "PUT", "sys/mounts/x/", token=None, body={}),
    Case("POST a login ending in /, no token", "POST", f"auth/{JWT_MOUNT}/login/", token=None),
    Case("DELETE sys/mounts/<none>/", "DELETE", "sys/mounts/never-enabled/"),
    Case("GET sys/policies/acl/nonesuch/", "GET", "sys/policies/acl/nonesuch/"),
    Case("a login under no auth method, no token", "POST", "auth/nope/login", token=None),
    Case("a login under no auth method", "POST", "auth/nope/login"),
    # -- PATCH, whose content type OpenBao checks first
    Case("PATCH without a content type", "PATCH", "nope", token=None),
    Case(
        "PATCH as JSON",
        "PATCH",
        "sys/mounts",
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
        body={},
    ),
    Case(
        "PATCH as merge patch, no token",
        "PATCH",
        "nope",
        token=None,
        headers={"Content-Type": "application/merge-patch+json"},
    ),
    Case(
        "PATCH as merge patch",
        "PATCH",
        "sys/mounts",
        headers={"Content-Type": "application/merge-patch+json"},
        body={},
    ),
    # -- namespaces
    Case("namespace foo", "GET", "sys/mounts", headers=NS),
    Case(
        "namespace foo/ on a key", "GET", KEY, headers={"X-Vault-Namespace": "foo/"}, ours=OUR_KEY
    ),
    Case("namespace foo, no token", "GET", "sys/mounts", token=None, headers=NS),
    Case("namespace foo, bad token", "GET", "sys/mounts", token="not-a-token", headers=NS),
    Case("namespace foo, unknown path", "GET", "nope", headers=NS),
    Case("namespace foo, unknown verb", "FOO", "sys/mounts", headers=NS),
    Case("namespace foo, a login", "POST", f"auth/{JWT_MOUNT}/login", token=None, headers=NS),
    Case("namespace root", "GET", "sys/mounts", headers={"X-Vault-Namespace": "root"}),
    Case("namespace root/", "GET", "sys/mounts", headers={"X-Vault-Namespace": "root/"}),
    Case("namespace /", "GET", "sys/mounts", headers={"X-Vault-Namespace": "/"}),
    Case("namespace foo, sys/health", "GET", "sys/health", token=None, headers=NS),
    Case(
        "namespace root, sys/health",
        "GET",
        "sys/health",
        token=None,
        headers={"X-Vault-Namespace": "root"},
    ),
    Case("namespace foo, sys/seal-status", "GET", "sys/seal-status", token=None, headers=NS),
    # -- the Authorization header
    Case(
        "Authorization: Bearer",
        "GET",
        "sys/mounts",
        token=None,
        headers={"Authorization": "Bearer root"},
    ),
    Case(
        "Authorization: bearer",
        "GET",
        "sys/mounts",
        token=None,
        headers={"Authorization": "bearer root"},
    ),
    Case(
        "Authorization: BEARER",
        "GET",
        "sys/mounts",
        token=None,
        headers={"Authorization": "BEARER root"},
    ),
    Case(
        "Authorization: Bearer<tab>",
        "GET",
        "sys/mounts",
        token=None,
        headers={"Authorization": "Bearer\troot"},
    ),
    # -- 204 and warnings
    Case(
        "a write with an unknown field",
        "POST",
        f"auth/{JWT_MOUNT}/role/r1",
        body={"role_type": "jwt", "user_claim": "sub", "bound_audiences": "x", "bogus": "1"},
    ),
]


@dataclass
class Answer:
    status: int
    errors: list[str] | None  # None: no JSON error body (a success, or HEAD)
    has_body: bool
    cache_control: str | None
    namespace: str | None

    def summary(self) -> str:
        shown = "" if self.errors is None else " " + json.dumps(self.errors)[:70]
        return f"{self.status}{shown}"


def answer(response: requests.Response) -> Answer:
    errors = None
    if response.content and response.status_code >= 400:
        errors = response.json().get("errors")
    return Answer(
        response.status_code,
        errors,
        bool(response.content),
        response.headers.get("Cache-Control"),
        response.headers.get("X-Vault-Namespace"),
    )


class Side:
    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url
        self.session = requests.Session()

    def send(self, case: Case) -> requests.Response:
        headers = dict(case.headers)
        if case.token is not None:
            headers["X-Vault-Token"] = case.token
        path, _, query = case.path_on(self.name).partition("?")
        url = f"{self.url}/v1/{path}" + (f"?{query}" if query else "")
        return self.session.request(
            case.method,
            url,
            headers=headers,
            json=case.body,
            timeout=60,
            allow_redirects=False,
        )

    def must(self, method: str, path: str, body: Any = None) -> None:
        response = self.session.request(
            method,
            f"{self.url}/v1/{path}",
            headers={"X-Vault-Token": "root"},
            json=body,
            timeout=60,
        )
        assert response.status_code in (200, 204), (self.name, path, response.text)


@pytest.fixture(scope="module")
def sides(openbao: OpenBao, funchost: FuncHost) -> Iterator[dict[str, Side]]:
    bao, ours = Side("openbao", openbao.url), Side("ours", funchost.url)
    bao.must("POST", f"sys/mounts/{MOUNT}", {"type": "transit"})
    bao.must("POST", KEY)
    ours.must("POST", f"sys/mounts/{MOUNT}", {"type": "keymgmt"})
    ours.must("POST", OUR_KEY, {"type": "rsa-2048"})
    for side in (bao, ours):
        side.must("POST", f"sys/auth/{JWT_MOUNT}", {"type": "jwt"})
    yield {"openbao": bao, "ours": ours}
    for side in (bao, ours):
        side.session.close()


ROWS: list[tuple[str, str, str, bool]] = []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_answers_as_openbao(sides: dict[str, Side], case: Case) -> None:
    theirs = answer(sides["openbao"].send(case))
    ours = answer(sides["ours"].send(case))
    same = (ours.status, ours.errors, ours.has_body) == (
        theirs.status,
        theirs.errors,
        theirs.has_body,
    )
    ROWS.append((case.name, theirs.summary(), ours.summary(), same or bool(case.deliberate)))
    if case.deliberate:
        assert ours.status == theirs.status and ours.errors != theirs.errors, case
    else:
        assert (ours.status, ours.errors) == (theirs.status, theirs.errors), case
    assert ours.has_body == theirs.has_body, case
    # Every answer, error or not, says no-store; the namespace header comes back as sent.
    assert ours.cache_control == theirs.cache_control == "no-store", case
    assert ours.namespace == theirs.namespace == case.headers.get("X-Vault-Namespace"), case


def test_print_the_comparison_table(capsys: pytest.CaptureFixture[str]) -> None:
    """The table for the closing note (run with -s to see it); empty when run alone."""
    lines = ["| case | OpenBao | ours | same? |", "|---|---|---|---|"]
    notes = {c.name: f"no, on purpose: {c.deliberate}" for c in CASES if c.deliberate}
    for name, theirs, ours, same in ROWS:
        verdict = notes.get(name) or ("yes" if same else "NO")
        lines.append(f"| {name} | `{theirs}` | `{ours}` | {verdict} |")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert all(same for *_, same in ROWS)


# -- the CLI and hvac ------------------------------------------------------------------------

_ADDRESS = re.compile(r"http://127\.0\.0\.1:\d+")
_REQUEST_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _cli_text(text: str) -> str:
    return _REQUEST_ID.sub("<id>", _ADDRESS.sub("<addr>", text))


CLI_CASES: list[Any] = [
    ("read an unknown path", ["read", "nope/x"]),
    ("list an unknown path", ["list", "nope"]),
    ("write an unknown path", ["write", "nope/x", "a=b"]),
    ("delete an unknown path", ["delete", "nope/x"]),
    ("read in namespace foo", ["read", "-namespace=foo", "sys/mounts"]),
    ("read under a mount", ["read", f"{MOUNT}/nope"]),
    ("kv put under no mount", ["kv", "put", "nope/x", "a=b"]),
    ("list under a mount, namespace root", ["list", "-namespace=root", f"{MOUNT}/nope"]),
    (
        "write with an unknown field",
        ["write", f"auth/{JWT_MOUNT}/role/r2", "role_type=jwt", "user_claim=sub",
         "bound_audiences=x", "bogus=1"],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "args"), CLI_CASES, ids=lambda v: v if isinstance(v, str) else "")
def test_the_cli_prints_what_it_prints_against_openbao(
    sides: dict[str, Side], tmp_path: Path, name: str, args: list[str]
) -> None:
    results = []
    for name, side in sides.items():
        home = tmp_path / name
        home.mkdir()
        cli = BaoCli(side.url, home, token="root")
        done = cli(*args, ok=False)
        results.append((done.returncode, _cli_text(done.stdout), _cli_text(done.stderr)))
    assert results[0] == results[1]
    assert "invalid character" not in results[1][2]  # never the host's HTML page


def _hvac_outcome(client: hvac.Client, call: Any) -> tuple[str, Any]:
    try:
        result = call(client)
    except hvac.exceptions.VaultError as exc:
        return type(exc).__name__, exc.errors
    if isinstance(result, requests.Response):
        return "response", result.status_code
    return "result", sorted(result.get("data", {}) or {}) if isinstance(result, dict) else result


HVAC_CASES = [
    ("read an unknown path", lambda c: c.read("nope/x")),
    ("list an unknown path (the LIST verb)", lambda c: c.list("nope")),
    ("write an unknown path", lambda c: c.write_data("nope/x", data={"a": "b"})),
    ("delete an unknown path", lambda c: c.delete("nope/x")),
    ("an unknown verb", lambda c: c.adapter.request("PROPFIND", "/v1/nope")),
    ("read with a wrong method", lambda c: c.adapter.post("/v1/sys/mounts")),
]


@pytest.mark.parametrize("call", [c for _, c in HVAC_CASES], ids=[n for n, _ in HVAC_CASES])
def test_hvac_sees_what_it_sees_against_openbao(sides: dict[str, Side], call: Any) -> None:
    outcomes = [
        _hvac_outcome(hvac.Client(url=side.url, token="root"), call) for side in sides.values()
    ]
    assert outcomes[0] == outcomes[1]


def test_hvac_lists_keys_with_the_list_verb(sides: dict[str, Side]) -> None:
    # hvac sends the LIST verb itself (the bao CLI sends GET ?list=true): the host routes it.
    client = hvac.Client(url=sides["ours"].url, token="root")
    assert client.list(f"{MOUNT}/key")["data"]["keys"] == ["k1"]
    theirs = hvac.Client(url=sides["openbao"].url, token="root")
    assert theirs.list(f"{MOUNT}/keys")["data"]["keys"] == ["k1"]
