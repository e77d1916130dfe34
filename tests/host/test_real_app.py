"""The local host serving the real app at the repository root (routePrefix "v1")."""

from __future__ import annotations

import requests

from tests.fixtures.funchost import FuncHost


def test_health_get(funchost: FuncHost) -> None:
    response = requests.get(f"{funchost.url}/v1/sys/health", timeout=60)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["initialized"] is True
    assert body["sealed"] is False


def test_health_head(funchost: FuncHost) -> None:
    response = requests.head(f"{funchost.url}/v1/sys/health", timeout=60)
    assert response.status_code == 200
    assert response.content == b""


def test_undeclared_method_on_a_real_route_is_404(funchost: FuncHost) -> None:
    # sys/health declares GET and HEAD only.
    assert requests.post(f"{funchost.url}/v1/sys/health", timeout=60).status_code == 404
    # sys/seal-status declares GET only: HEAD is not implied.
    assert requests.head(f"{funchost.url}/v1/sys/seal-status", timeout=60).status_code == 404


def test_list_verb_is_not_routed_but_get_list_true_is(funchost: FuncHost) -> None:
    headers = {"X-Vault-Token": "root"}
    url = f"{funchost.url}/v1/keymgmt/key"
    listed = requests.request("LIST", url, headers=headers, timeout=60)
    assert listed.status_code == 404
    assert "errors" not in listed.text  # the host's 404: the engine never saw it
    via_get = requests.get(url, params={"list": "true"}, headers=headers, timeout=60)
    assert via_get.headers["Content-Type"].startswith("application/json")
    assert "errors" in via_get.json() or "data" in via_get.json()
