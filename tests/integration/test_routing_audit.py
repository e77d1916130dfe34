"""Requests to paths no spec routes are audited as OpenBao audits them: after the token check
and before routing (Core.handleRequest), so a refused token and a 404 each leave a request
and a response entry; a verb or namespace refused before that leaves none. Differential:
OpenBao with a config-declared file device against the local host with a file device."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.funchost import engine_settings, serving
from tests.fixtures.openbao import OpenBao
from tests.helpers import wait_until

pytestmark = [pytest.mark.xdist_group("audit")]


@pytest.fixture(scope="module")
def servers(
    azurite: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[str, Path]]]:
    bao_log = tmp_path_factory.mktemp("bao-audit") / "audit.log"
    config = f'audit "file" "file" {{\n  options {{\n    file_path = "{bao_log}"\n  }}\n}}\n'
    oracle = OpenBao(config)
    our_log = tmp_path_factory.mktemp("our-audit") / "audit.log"
    devices = [{"path": "file", "type": "file", "options": {"file_path": str(our_log)}}]
    settings = engine_settings(
        azurite, f"ra{os.getpid()}", KEYMGMT_AUDIT_DEVICES=json.dumps(devices)
    )
    try:
        with serving(settings) as host:
            yield {"openbao": (oracle.url, bao_log), "ours": (host.url, our_log)}
    finally:
        oracle.stop()


def _entries(log: Path, marker: str) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [e for e in lines if marker in e.get("request", {}).get("path", "")]


def _shape(entry: dict[str, Any]) -> tuple[Any, ...]:
    request = entry["request"]
    return (
        entry["type"],
        request["operation"],
        request["path"],
        entry.get("error", ""),
        # The answer's own text, HMAC'd (each server its own salt): whether it is there.
        bool((entry.get("response") or {}).get("data", {}).get("error")),
    )


@pytest.mark.parametrize(
    ("method", "token", "suffix"),
    [
        ("GET", "root", ""),
        ("GET", "not-a-token", ""),
        ("DELETE", "root", "/deeper"),
        ("LIST", "root", ""),
    ],
)
def test_an_unrouted_request_is_audited_as_openbao_audits_it(
    servers: dict[str, tuple[str, Path]], method: str, token: str, suffix: str
) -> None:
    marker = f"unrouted{uuid.uuid4().hex[:8]}"
    shapes = {}
    for name, (url, log) in servers.items():
        requests.request(
            method, f"{url}/v1/{marker}{suffix}", headers={"X-Vault-Token": token}, timeout=60
        )
        entries = wait_until(
            lambda log=log: len(_entries(log, marker)) >= 2 and _entries(log, marker),
            what=f"{name}'s entries",
        )
        shapes[name] = [_shape(e) for e in entries]
    assert shapes["ours"] == shapes["openbao"]
    assert [t for t, *_ in shapes["ours"]] == ["request", "response"]


def test_a_verb_or_namespace_refused_before_the_router_is_not_audited(
    servers: dict[str, tuple[str, Path]],
) -> None:
    marker = f"unrouted{uuid.uuid4().hex[:8]}"
    for url, _ in servers.values():
        requests.request("PROPFIND", f"{url}/v1/{marker}", headers={"X-Vault-Token": "root"})
        requests.get(
            f"{url}/v1/{marker}", headers={"X-Vault-Token": "root", "X-Vault-Namespace": "foo"}
        )
        # A marker request after them: once it is in the log, the others would be too.
        requests.get(f"{url}/v1/{marker}-after", headers={"X-Vault-Token": "root"})
    for name, (_, log) in servers.items():
        wait_until(lambda log=log: _entries(log, f"{marker}-after"), what=f"{name}'s entries")
        assert [
            e for e in _entries(log, marker) if f"{marker}-after" not in e["request"]["path"]
        ] == []
