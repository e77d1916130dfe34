"""The local host's request log: one line per request with method, path and status, plus the
``errors`` of a failed request's JSON body; never the query string or the request body, and
no colour codes (the log goes to a file here, not a terminal)."""

from __future__ import annotations

import json
import uuid

import requests

from tests.fixtures.funchost import FuncHost
from tests.helpers import wait_until
from tests.host.conftest import AppHost

ROOT_TOKEN = {"X-Vault-Token": "root"}


def test_a_failed_request_logs_its_error_messages(funchost: FuncHost) -> None:
    name = f"log{uuid.uuid4().hex[:10]}"
    body_secret = uuid.uuid4().hex  # a body field: must never be logged
    query_secret = uuid.uuid4().hex
    response = requests.post(
        f"{funchost.url}/v1/keymgmt/key/{name}",
        params={"code": query_secret},
        json={"type": "no-such-key-type", "passphrase": body_secret},
        headers=ROOT_TOKEN,
        timeout=60,
    )
    assert response.status_code >= 400
    errors = response.json()["errors"]
    assert errors
    expected = f"POST /v1/keymgmt/key/{name} {response.status_code} errors={json.dumps(errors)}"
    logs = wait_until(lambda: expected in (text := funchost.logs()) and text, what=expected)
    assert body_secret not in logs
    assert query_secret not in logs


def test_a_refused_token_is_logged_with_the_engine_s_message(funchost: FuncHost) -> None:
    path = f"/v1/keymgmt/key/log{uuid.uuid4().hex[:10]}"
    response = requests.get(
        f"{funchost.url}{path}", headers={"X-Vault-Token": "not-a-token"}, timeout=60
    )
    assert response.status_code == 403
    line = f"GET {path} 403 errors={json.dumps(response.json()['errors'])}"
    wait_until(lambda: line in funchost.logs(), what=line)
    assert "not-a-token" not in funchost.logs()


def test_successes_and_the_host_s_own_404_are_logged_without_colour(funchost: FuncHost) -> None:
    marker = uuid.uuid4().hex
    assert requests.get(f"{funchost.url}/v1/sys/health", timeout=60).status_code == 200
    # Outside routePrefix "v1" (inside it the app's catch-all answers every path).
    assert requests.get(f"{funchost.url}/no/{marker}", timeout=60).status_code == 404
    # Decoded control characters in the path must not forge a line or a colour.
    requests.get(f"{funchost.url}/no/{marker}%0Aforged-{marker}%1B[31m", timeout=60)
    logs = wait_until(
        lambda: f"GET /no/{marker}%0Aforged" in (text := funchost.logs()) and text,
        what="the request lines",
    )
    assert "GET /v1/sys/health 200" in logs
    assert f"GET /no/{marker} 404" in logs
    assert "\x1b" not in logs
    assert not any(line.startswith(f"forged-{marker}") for line in logs.splitlines())


def test_failures_of_the_test_app_are_logged_without_colour(app_host: AppHost) -> None:
    # 500 (an exception in the function), 418 (a JSON body without "errors"), 404 (no route).
    for path, status in (("api/boom", 500), ("api/custom", 418), ("api/nowhere", 404)):
        assert app_host.request("GET", path).status_code == status
    logs = wait_until(
        lambda: "GET /api/nowhere 404" in (text := app_host.host.logs()) and text,
        what="the request lines",
    )
    assert "GET /api/boom 500" in logs
    assert "GET /api/custom 418" in logs
    assert "\x1b" not in logs
