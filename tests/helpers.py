"""Small helpers every test tier shares: Vault error bodies and polling."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def errors(response: Any) -> list[str]:
    """The ``errors`` of a Vault error answer (which is always JSON)."""
    assert response.headers["Content-Type"] == "application/json", response.headers
    messages: list[str] = response.json()["errors"]
    return messages


def error_text(response: Any) -> str:
    """Every error message of an answer in one string, for substring checks."""
    return " ".join(errors(response))


def poll(check: Callable[[], T], timeout: float = 60, interval: float = 0.25) -> T:
    """``check()`` until it returns something truthy or ``timeout`` seconds pass; its last
    value either way (for tests that report a miss themselves)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_until(
    check: Callable[[], T], timeout: float = 60, what: str = "", interval: float = 0.1
) -> T:
    """``poll`` that fails the test when ``check`` never comes true. The bound only keeps a
    broken stack from hanging the suite; nothing is asserted about time."""
    value = poll(check, timeout, interval)
    if not value:
        pytest.fail(f"gave up waiting after {timeout} s: {what or 'condition not met'}")
    return value


# A policy for tokens that make, look up, renew and revoke other tokens (no sudo), as the
# reference's OpenBao captures use: the token store's own rules are what such tests check.
TOKEN_ADMIN_POLICY = 'path "auth/token/*" { capabilities = ["create", "read", "update"] }'


def write_policy(url: str, name: str, text: str, token: str = "root") -> None:
    """Write an ACL policy through the API (``url`` is the server's base URL)."""
    import requests

    response = requests.put(
        f"{url}/v1/sys/policies/acl/{name}",
        json={"policy": text},
        headers={"X-Vault-Token": token},
        timeout=60,
    )
    assert response.status_code == 204, response.text
