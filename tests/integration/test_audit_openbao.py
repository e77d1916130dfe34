"""Differential: the same requests against a real OpenBao dev server with a config-declared
file audit device and against the local host with a file device; the entries' *structure*
(which keys, which values hashed, their types) must match, not their values.

OpenBao's fields this server does not have are named in ``NOT_HERE`` with the reason.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from shared.audit import HMAC_PREFIX, is_rfc3339
from tests.fixtures.funchost import FuncHost, engine_settings, serving
from tests.fixtures.openbao import OpenBao
from tests.helpers import write_policy

pytestmark = [pytest.mark.xdist_group("audit")]

# Keys OpenBao writes that this server does not: client_id (entity-based client counting),
# mount_running_*version (plugin versions), the sys/ mount's accessor (not a mount record
# here; keymgmt mounts, auth/token/ and auth methods have theirs), and the client's port (the
# HTTP adapter keeps the address only).
NOT_HERE = {
    "client_id",
    "mount_running_version",
    "mount_running_plugin_version",
    "mount_accessor",
    "remote_port",
}


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OpenBao, Path]]:
    log = tmp_path_factory.mktemp("bao-audit") / "audit.log"
    config = f'audit "file" "file" {{\n  options {{\n    file_path = "{log}"\n  }}\n}}\n'
    server = OpenBao(config)
    try:
        yield server, log
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ours(azurite: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FuncHost, Path]]:
    log = tmp_path_factory.mktemp("our-audit") / "audit.log"
    devices = [{"path": "file", "type": "file", "options": {"file_path": str(log)}}]
    settings = engine_settings(
        azurite, f"ad{os.getpid()}", KEYMGMT_AUDIT_DEVICES=json.dumps(devices)
    )
    with serving(settings) as host:
        yield host, log


def run_sequence(url: str) -> dict[str, str]:
    """The compared requests; returns a label for each request path."""

    def call(method: str, path: str, token: str, body: Any = None) -> requests.Response:
        # A list as GET ?list=true: Azure's front end routes no custom verb (docs/local-host.md).
        query = {"list": "true"} if method == "LIST" else None
        return requests.request(
            "GET" if method == "LIST" else method,
            f"{url}/v1/{path}",
            headers={"X-Vault-Token": token},
            json=body,
            params=query,
            timeout=60,
        )

    policy = f"p{uuid.uuid4().hex[:8]}"
    write_policy(url, policy, 'path "sys/policies/acl" { capabilities = ["list"] }')
    created = call(
        "POST",
        "auth/token/create",
        "root",
        {"policies": [policy], "display_name": "ci", "meta": {"team": "kms"}, "ttl": "1h"},
    )
    assert created.status_code == 200, created.text
    child = created.json()["auth"]["client_token"]
    assert call("GET", "auth/token/lookup-self", child).status_code == 200
    assert call("GET", "sys/mounts", child).status_code == 403  # an ACL denial
    assert call("GET", "sys/policies/acl/x", "s.bogus").status_code == 403  # an invalid token
    assert call("LIST", "sys/policies/acl", child).status_code == 200
    assert call("POST", "auth/token/create", "root", {"ttl": "abc"}).status_code == 400
    return {
        "create": "auth/token/create",
        "lookup-self": "auth/token/lookup-self",
        "denied": "sys/mounts",
        "bad-token": "sys/policies/acl/x",
        "list": "sys/policies/acl/",
    }


def shape(value: Any, drop: Callable[[str], bool] = lambda key: key in NOT_HERE) -> Any:
    """What is compared: keys, and for each leaf whether it is hashed, a time, or its type."""
    if isinstance(value, dict):
        return {k: shape(v, drop) for k, v in value.items() if not drop(k)}
    if isinstance(value, list):
        return sorted({json.dumps(shape(item, drop), sort_keys=True) for item in value})
    if isinstance(value, str):
        if value.startswith(HMAC_PREFIX):
            return "hmac"
        return "rfc3339" if is_rfc3339(value) else "str"
    return type(value).__name__


def leaves(value: Any) -> set[str]:
    """The kinds of leaves in response data (their keys differ between the two servers)."""
    if isinstance(value, dict):
        return set().union(*(leaves(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(leaves(v) for v in value)) if value else set()
    result = shape(value)
    return {result if result != "str" else "CLEAR STRING"}


def entries_for(log: Path, path: str) -> list[dict[str, Any]]:
    return [
        e for e in map(json.loads, log.read_text().splitlines()) if e["request"]["path"] == path
    ]


def test_our_entries_have_openbaos_structure(oracle, ours):
    server, bao_log = oracle
    host, our_log = ours
    paths = run_sequence(server.url)
    assert run_sequence(host.url) == paths
    for label, path in paths.items():
        theirs, mine = entries_for(bao_log, path), entries_for(our_log, path)
        if label == "create":  # the last two of the path: the refused one (ttl "abc")
            theirs, mine = theirs[-2:], mine[-2:]
            assert [e.get("error") for e in theirs] == [e.get("error") for e in mine]
        else:
            theirs, mine = theirs[:2], mine[:2]
        assert [e["type"] for e in mine] == [e["type"] for e in theirs] == ["request", "response"]
        for bao_entry, our_entry in zip(theirs, mine, strict=True):
            where = f"{label} {bao_entry['type']}"
            assert shape(our_entry["auth"]) == shape(bao_entry["auth"]), where
            our_request = {k: v for k, v in our_entry["request"].items() if k != "data"}
            bao_request = {k: v for k, v in bao_entry["request"].items() if k != "data"}
            assert shape(our_request) == shape(bao_request), where
            assert shape(our_entry["request"].get("data")) == shape(
                bao_entry["request"].get("data")
            ), where
            assert ("error" in our_entry) == ("error" in bao_entry), where
            if "response" in bao_entry:
                bao_response, our_response = bao_entry["response"], our_entry["response"]
                assert set(our_response) - NOT_HERE == set(bao_response) - NOT_HERE, where
                if "auth" in bao_response:
                    assert shape(our_response["auth"]) == shape(bao_response["auth"]), where
                if "data" in bao_response:
                    assert leaves(our_response["data"]) <= leaves(bao_response["data"]), where
                    assert "CLEAR STRING" not in leaves(our_response["data"]), where


STATUS_PATHS = ("sys/health", "sys/seal-status", "sys/leader", "sys/init")


def test_the_status_paths_are_not_audited_here_as_in_openbao(oracle, ours):
    (server, bao_log), (host, our_log) = oracle, ours
    for url in (server.url, host.url):
        for path in STATUS_PATHS:
            assert requests.get(f"{url}/v1/{path}", timeout=60).ok
        # An audited request after them: both logs exist and are complete up to it.
        assert requests.get(
            f"{url}/v1/sys/mounts", headers={"X-Vault-Token": "root"}, timeout=60
        ).ok
    for log in (bao_log, our_log):
        paths = {e["request"]["path"] for e in map(json.loads, log.read_text().splitlines())}
        assert "sys/mounts" in paths
        assert paths.isdisjoint(STATUS_PATHS), log


def test_wrapped_answers_and_unwraps_are_audited_as_in_openbao(oracle, ours):
    """A wrap's entries carry the request's wrap_ttl and the answer's wrap_info with the token
    (and, with hmac_accessor, the accessors) HMAC'd; the unwrap's carry the unwrapped data
    HMAC'd. Neither the wrapping token nor the wrapped secret is in either log in clear."""
    (server, bao_log), (host, our_log) = oracle, ours
    secret = f"wrapped-{uuid.uuid4().hex}"
    tokens = []
    for url in (server.url, host.url):
        wrapped = requests.post(
            f"{url}/v1/sys/wrapping/wrap",
            headers={"X-Vault-Token": "root", "X-Vault-Wrap-TTL": "5m"},
            json={"secret": secret},
            timeout=60,
        )
        token = wrapped.json()["wrap_info"]["token"]
        tokens.append(token)
        unwrapped = requests.post(
            f"{url}/v1/sys/wrapping/unwrap",
            headers={"X-Vault-Token": "root"},
            json={"token": token},
            timeout=60,
        )
        assert unwrapped.json()["data"] == {"secret": secret}
    for path in ("sys/wrapping/wrap", "sys/wrapping/unwrap"):
        theirs, mine = entries_for(bao_log, path)[-2:], entries_for(our_log, path)[-2:]
        assert [e["type"] for e in mine] == [e["type"] for e in theirs] == ["request", "response"]
        for bao_entry, our_entry in zip(theirs, mine, strict=True):
            where = f"{path} {bao_entry['type']}"
            assert shape(our_entry["request"]) == shape(bao_entry["request"]), where
            if "response" in bao_entry:
                assert shape(our_entry["response"]) == shape(bao_entry["response"]), where
    wrap_response = entries_for(our_log, "sys/wrapping/wrap")[-1]
    assert wrap_response["request"]["wrap_ttl"] == 300
    assert wrap_response["response"]["wrap_info"]["ttl"] == 300
    for log, token in ((bao_log, tokens[0]), (our_log, tokens[1])):
        text = log.read_text()
        assert secret not in text and token not in text, log
