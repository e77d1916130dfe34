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


def test_wrong_methods_on_a_real_route_answer_vaults_405(funchost: FuncHost) -> None:
    # No trigger declares methods, so every verb reaches the app, which answers as OpenBao's
    # handlers outside its router do: 405 with an empty error list, JSON, never the host's 404.
    for method in ("POST", "DELETE", "LIST", "PROPFIND"):
        response = requests.request(method, f"{funchost.url}/v1/sys/health", timeout=60)
        assert (response.status_code, response.json()) == (405, {"errors": []}), method
        assert response.headers["Cache-Control"] == "no-store"
    # sys/seal-status answers GET only: HEAD is not implied.
    assert requests.head(f"{funchost.url}/v1/sys/seal-status", timeout=60).status_code == 405


def test_the_list_verb_is_routed_as_get_list_true_is(funchost: FuncHost) -> None:
    headers = {"X-Vault-Token": "root"}
    url = f"{funchost.url}/v1/keymgmt/key"
    listed = requests.request("LIST", url, headers=headers, timeout=60)
    via_get = requests.get(url, params={"list": "true"}, headers=headers, timeout=60)
    assert listed.status_code == via_get.status_code
    assert listed.headers["Content-Type"] == via_get.headers["Content-Type"] == "application/json"
    assert listed.json().keys() == via_get.json().keys()


def test_every_unrouted_path_answers_vaults_json(funchost: FuncHost) -> None:
    for path in ("nope", "nope/deeper/still", "", "sys/nope"):
        response = requests.get(f"{funchost.url}/v1/{path}", timeout=60)
        assert (response.status_code, response.json()) == (403, {"errors": ["permission denied"]})
    response = requests.get(
        f"{funchost.url}/v1/nope", headers={"X-Vault-Token": "root"}, timeout=60
    )
    assert response.json() == {"errors": ['no handler for route "nope". route entry not found.']}
