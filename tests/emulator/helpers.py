"""Small helpers shared by the emulator tests."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import requests

from tests.emulator.conformance import Conformance
from tools.kvemu import Emulator


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def raw(
    emulator: Emulator,
    method: str,
    path: str,
    *,
    vault: str = "keyvault-name",
    token: str | None = None,
    api_version: str | None = "2025-07-01",
    json_body: Any = None,
    params: dict[str, str] | None = None,
) -> requests.Response:
    """A plain HTTPS request to a vault (for what the SDK hides: headers, raw bodies)."""
    query = dict(params or {})
    if api_version is not None:
        query["api-version"] = api_version
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(
        method,
        emulator.vault_url(vault) + path,
        params=query,
        headers=headers,
        json=json_body,
        verify=emulator.ca_path,
        timeout=30,
    )


def system_identity_client(emulator: Emulator, vault: str, monkeypatch: Any) -> Any:
    """The real ``KeyClient`` as the system-assigned identity of a test's own emulator."""
    from azure.identity import ManagedIdentityCredential
    from azure.keyvault.keys import KeyClient

    monkeypatch.setenv("IDENTITY_ENDPOINT", emulator.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", emulator.identity_header)
    return KeyClient(
        emulator.vault_url(vault),
        ManagedIdentityCredential(),
        connection_verify=emulator.ca_path,
        verify_challenge_resource=False,
    )


def error_of(response_json: dict[str, Any]) -> tuple[str, str | None, str]:
    error = response_json["error"]
    return error["code"], (error.get("innererror") or {}).get("code"), error["message"]


def assert_conforms(emulator: Emulator, conformance: Conformance | None) -> None:
    """For emulators a test starts itself (the session one is checked automatically)."""
    if conformance is None:
        return
    problems = [
        p
        for r in emulator.recorded()
        for p in conformance.problems(r.operation_id, r.status, r.body)
    ]
    assert not problems, "\n".join(problems)


class StaticToken:
    """A TokenCredential that always presents one given token (expired/forged tokens)."""

    def __init__(self, token: str, expires_on: int = 2**31 - 1) -> None:
        self._token = token
        self._expires_on = expires_on

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, self._expires_on)
