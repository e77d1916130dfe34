"""Faults on demand, as the SDK sees them."""

from __future__ import annotations

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from tests.emulator.helpers import error_of, unique
from tools.kvemu import Emulator


def _statuses(kv: Emulator, start: int, operation_id: str) -> list[int]:
    return [r.status for r in kv.recorded()[start:] if r.operation_id == operation_id]


def test_single_throttle_with_retry_after_is_absorbed_by_the_sdk_retry(kv, kv_key_client):
    client = kv_key_client()
    name = unique("thr")
    client.create_ec_key(name)
    kv.fault("keyvault-name", "throttle", op="get", times=1, retry_after=1)
    start = len(kv.recorded())
    assert client.get_key(name).name == name
    assert _statuses(kv, start, "GetKey") == [429, 200]


def test_persistent_throttle_without_retry_after_surfaces_429(kv, kv_key_client) -> None:
    client = kv_key_client(retry_total=0)
    kv.fault("keyvault-name", "throttle", op="create")
    with pytest.raises(HttpResponseError) as info:
        client.create_ec_key(unique("thr"))
    assert info.value.status_code == 429
    assert info.value.error.code == "Throttled"
    assert "Retry-After" not in info.value.response.headers
    assert "VaultRequestTypeLimitReached" in info.value.error.message


def test_forbidden_by_connection_is_surfaced_with_key_vaults_message(kv, kv_key_client) -> None:
    kv.fault("second-vault", "forbidden_by_connection")
    with pytest.raises(HttpResponseError) as info:
        kv_key_client("second-vault").create_ec_key(unique("pl"))
    assert info.value.status_code == 403
    code, inner, message = error_of(info.value.response.json())
    assert (code, inner) == ("Forbidden", "ForbiddenByConnection")
    assert message.startswith(
        "Public network access is disabled and request is not from a trusted service nor via "
        "an approved private link."
    )
    assert "Vault: second-vault;" in message
    kv.clear_faults()
    assert kv_key_client("second-vault").create_ec_key(unique("pl")).key.crv == "P-256"


def test_fault_scoped_to_one_operation_leaves_others_alone(kv, kv_key_client) -> None:
    client = kv_key_client(retry_total=0)
    name = unique("scope")
    client.create_ec_key(name)
    kv.fault("keyvault-name", "server_error", op="update", status=500)
    assert client.get_key(name).name == name
    with pytest.raises(HttpResponseError) as info:
        client.update_key_properties(name, tags={"x": "y"})
    assert info.value.status_code == 500


def test_single_server_error_is_retried(kv, kv_key_client) -> None:
    client = kv_key_client(retry_backoff_factor=0.01)
    name = unique("5xx")
    client.create_ec_key(name)
    kv.fault("keyvault-name", "server_error", op="get", times=1, status=503)
    start = len(kv.recorded())
    assert client.get_key(name).name == name
    assert _statuses(kv, start, "GetKey") == [503, 200]


def test_latency_delays_but_serves(kv, kv_key_client) -> None:
    client = kv_key_client()
    name = unique("lat")
    client.create_ec_key(name)
    kv.fault("keyvault-name", "latency", op="get", times=1, delay=0.2)
    assert client.get_key(name).name == name
    assert kv.faults.list() == []  # consumed by that request


def test_dropped_connection(kv, kv_key_client) -> None:
    name = unique("drop")
    kv_key_client().create_ec_key(name)
    kv.fault("keyvault-name", "drop", op="get", times=1)
    assert kv_key_client(retry_backoff_factor=0.01).get_key(name).name == name  # retried
    kv.fault("keyvault-name", "drop", op="get")
    with pytest.raises((ServiceResponseError, ServiceRequestError)):
        kv_key_client(retry_total=0).get_key(name)


def test_control_api_adds_lists_and_clears_faults(kv: Emulator, kv_key_client) -> None:
    client = kv_key_client(retry_total=0)
    created = requests.post(
        f"{kv.control_url}/faults",
        json={"vault": "keyvault-name", "kind": "throttle", "op": "list", "times": 2},
        timeout=10,
    )
    assert created.status_code == 201
    listed = requests.get(f"{kv.control_url}/faults", timeout=10).json()["faults"]
    assert listed[0]["kind"] == "throttle" and listed[0]["times"] == 2
    with pytest.raises(HttpResponseError) as info:
        list(client.list_properties_of_keys())
    assert info.value.status_code == 429
    assert requests.delete(f"{kv.control_url}/faults", timeout=10).status_code == 200
    list(client.list_properties_of_keys())
    bad = requests.post(f"{kv.control_url}/faults", json={"kind": "nope"}, timeout=10)
    assert bad.status_code == 400 and "unknown fault kind" in bad.text


def test_control_api_inspection_never_shows_key_material(kv: Emulator, kv_key_client) -> None:
    name = unique("insp")
    kv_key_client().create_rsa_key(name, size=2048, tags={"t": "v"})
    vaults = requests.get(f"{kv.control_url}/vaults", timeout=10).json()["vaults"]
    vault = next(v for v in vaults if v["name"] == "keyvault-name")
    key = next(k for k in vault["keys"] if k["name"] == name)
    assert key["versions"][0]["tags"] == {"t": "v"} and key["versions"][0]["key_size"] == 2048
    text = str(vaults)
    for private in ("material", "pkcs8", '"d"', "'d'"):
        assert private not in text
