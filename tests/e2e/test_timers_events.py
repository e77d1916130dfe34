"""Timers and Key Vault events on the local stack: host with timers, Azurite, emulator
whose Event Grid webhook points at the host."""

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.fixtures.azurite import free_port
from tests.fixtures.funchost import Api, emulator_settings, engine_settings, serving
from tests.helpers import wait_until
from tools.kvemu import Emulator
from tools.kvemu.events import key_event

VAULT = "keyvault-name"


@pytest.fixture(scope="module")
def stack(azurite, tmp_path_factory):
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/runtime/webhooks/eventgrid?functionName=keyvault_events"
    emulator = Emulator(
        {VAULT: 0}, cert_dir=tmp_path_factory.mktemp("events-kv"), eventgrid_webhook=webhook
    )
    # the host's managed identity holds the role our Terraform assigns on target vaults
    emulator.grant(VAULT, emulator.system_identity.object_id, "Key Vault Crypto Officer")
    with emulator:
        settings = engine_settings(
            azurite,
            f"ev{os.getpid()}",
            KEYMGMT_ALLOW_SHORT_ROTATION="true",
            KEYMGMT_ROTATION_SCHEDULE="*/2 * * * * *",
            KEYMGMT_RECONCILE_SCHEDULE="0 0 0 1 1 *",  # run by hand through the admin endpoint
            AZURE_TENANT_ID=emulator.tenant_id,
            **emulator_settings(emulator),
        )
        with serving(settings, timers=True, port=port) as host:
            api = Api(host)
            provider = f"mi-{uuid.uuid4().hex[:6]}"
            # No client secret: the managed identity (local identity endpoint) is used.
            assert (
                api.put(
                    f"keymgmt/kms/{provider}",
                    json={"provider": "azurekeyvault", "key_collection": VAULT},
                ).status_code
                == 204
            )
            yield api, emulator, provider


def distributed_key(api, provider, purpose="sign,verify", **options):
    name = f"k{uuid.uuid4().hex[:8]}"
    assert api.post(f"keymgmt/key/{name}", json={"type": "rsa-2048"}).status_code == 204
    response = api.put(f"keymgmt/kms/{provider}/key/{name}", json={"purpose": purpose, **options})
    assert response.status_code == 204, response.text
    return name


def remote_versions(emulator, remote_name):
    for vault in emulator.describe():
        for key in vault.get("keys", []):
            if key.get("name") == remote_name:
                return key.get("versions", [])
    return []


def test_scheduled_rotation_reaches_key_vault_on_its_own(stack):
    api, emulator, provider = stack
    name = distributed_key(api, provider)
    assert api.post(f"keymgmt/key/{name}", json={"auto_rotate_period": "3s"}).status_code == 204
    wait_until(lambda: api.get(f"keymgmt/key/{name}").json()["data"]["latest_version"] >= 2)
    api.post(f"keymgmt/key/{name}", json={"auto_rotate_period": 0})
    dist = wait_until(
        lambda: (
            (d := api.get(f"keymgmt/kms/{provider}/key/{name}").json()["data"])
            and "2" in d["versions"]
            and d
        )
    )
    assert len(remote_versions(emulator, dist["name"])) >= 2
    status = api.get("sys/keymgmt/rotation").json()["data"]
    assert {"due", "rotated", "failed", "duration_ms"} <= set(status)


def test_out_of_band_version_is_drift_by_event_and_by_reconciler(stack, monkeypatch):
    api, emulator, provider = stack
    name = distributed_key(api, provider)
    remote = api.get(f"keymgmt/kms/{provider}/key/{name}").json()["data"]["name"]

    from azure.identity import ManagedIdentityCredential
    from azure.keyvault.keys import KeyClient

    monkeypatch.setenv("IDENTITY_ENDPOINT", emulator.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", emulator.identity_header)
    client = KeyClient(
        emulator.vault_url(VAULT),
        ManagedIdentityCredential(),
        verify_challenge_resource=False,
        connection_verify=emulator.ca_path,
    )
    foreign = client.create_rsa_key(remote, size=2048)  # a new version, made outside the engine

    def reported():
        drift = api.get("sys/keymgmt/reconcile").json()["data"]["reported_by_events"]
        return [d for d in drift if d["version"] == foreign.properties.version]

    [event_drift] = wait_until(reported)
    assert event_drift["key"] == name and event_drift["disabled"] is False

    response = requests.post(f"{api.url}/admin/functions/reconciler", json={}, timeout=120)
    assert response.status_code == 202
    status = api.get("sys/keymgmt/reconcile").json()["data"]
    mine = [d for d in status["drift"] if d["key"] == name]
    assert mine and foreign.properties.version in mine[0]["drift"]
    assert "not created by this engine" in mine[0]["drift"]
    # Never deleted: the foreign version is still there, enabled.
    assert client.get_key(remote, foreign.properties.version).properties.enabled


def expiry_event(emulator, dist, kind="KeyNearExpiry", version=None, schema="eventgrid"):
    version = version or dist["versions"]["1"]
    event = key_event(
        kind,
        vault=VAULT,
        key_id=f"{emulator.vault_url(VAULT)}/keys/{dist['name']}/{version}",
        name=dist["name"],
        version=version,
        nbf=None,
        exp=int(time.time()) + 86400,
    )
    if schema == "cloudevents":
        event = {
            "specversion": "1.0",
            "id": event["id"],
            "source": event["topic"],
            "subject": event["subject"],
            "type": event["eventType"],
            "time": event["eventTime"],
            "data": event["data"],
        }
    return event


def deliver(api, event):
    webhook = f"{api.url}/runtime/webhooks/eventgrid?functionName=keyvault_events"
    return requests.post(
        webhook, json=[event], timeout=120, headers={"aeg-event-type": "Notification"}
    ).status_code


@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
def test_near_expiry_delivered_three_times_rotates_once(stack, schema):
    api, emulator, provider = stack
    # Expiring in 20 days: inside the 30 days before exp when Key Vault sends KeyNearExpiry.
    name = distributed_key(api, provider, expiration_period="20d")
    dist = api.get(f"keymgmt/kms/{provider}/key/{name}").json()["data"]
    event = expiry_event(emulator, dist, schema=schema)
    with ThreadPoolExecutor(3) as pool:  # duplicates, at the same time
        assert list(pool.map(lambda _: deliver(api, event), range(3))) == [202, 202, 202]
    assert deliver(api, event) == 202  # and once more, late
    key = api.get(f"keymgmt/key/{name}").json()["data"]
    assert key["latest_version"] == 2
    dist = wait_until(
        lambda: (
            (d := api.get(f"keymgmt/kms/{provider}/key/{name}").json()["data"])
            and "2" in d["versions"]
            and d
        )
    )
    assert sorted(dist["versions"]) == ["1", "2"]


@pytest.mark.parametrize(
    ("options", "kind"),
    [
        ({}, "KeyNearExpiry"),  # no exp at all in Key Vault
        ({"expiration_period": "90d"}, "KeyNearExpiry"),  # exp is 90 days away
        ({"expiration_period": "20d"}, "KeyExpired"),  # near, but not expired
    ],
)
def test_a_forged_expiry_event_is_checked_with_key_vault_and_rotates_nothing(stack, options, kind):
    api, emulator, provider = stack
    name = distributed_key(api, provider, **options)
    dist = api.get(f"keymgmt/kms/{provider}/key/{name}").json()["data"]
    assert deliver(api, expiry_event(emulator, dist, kind)) == 202
    assert api.get(f"keymgmt/key/{name}").json()["data"]["latest_version"] == 1


def test_forged_new_version_events_add_no_drift_and_malformed_ones_are_ignored(stack):
    api, emulator, provider = stack
    name = distributed_key(api, provider)
    dist = api.get(f"keymgmt/kms/{provider}/key/{name}").json()["data"]

    def drift():
        entries = api.get("sys/keymgmt/reconcile").json()["data"]["reported_by_events"]
        return [d for d in entries if d.get("key") == name]

    for version in ("0" * 32, "f" * 32):  # versions Key Vault never had
        event = expiry_event(emulator, dist, "KeyNewVersionCreated", version=version)
        assert deliver(api, event) == 202
    malformed = expiry_event(emulator, dist, "KeyNearExpiry")
    for data in (
        {**malformed["data"], "Version": ["x"]},
        {**malformed["data"], "ObjectName": {"a": 1}},
        {**malformed["data"], "VaultName": "x" * 5000},
        {**malformed["data"], "Version": "../../etc"},
        "not an object",
    ):
        assert deliver(api, {**malformed, "data": data}) == 202
    assert drift() == []
    assert api.get(f"keymgmt/key/{name}").json()["data"]["latest_version"] == 1


def test_unrelated_events_are_ignored(stack):
    api, _, _ = stack
    webhook = f"{api.url}/runtime/webhooks/eventgrid?functionName=keyvault_events"
    other = {
        "id": "1",
        "topic": "t",
        "subject": "s",
        "eventType": "Microsoft.KeyVault.SecretNewVersionCreated",
        "eventTime": "2026-11-28T00:00:00Z",
        "data": {"ObjectName": "x"},
        "dataVersion": "1",
    }
    assert (
        requests.post(
            webhook, json=[other], headers={"aeg-event-type": "Notification"}, timeout=60
        ).status_code
        == 202
    )
    validation = requests.post(
        webhook,
        json=[
            {
                "id": "2",
                "topic": "t",
                "subject": "",
                "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                "eventTime": "2026-11-28T00:00:00Z",
                "data": {"validationCode": "abc"},
                "dataVersion": "1",
            }
        ],
        headers={"aeg-event-type": "SubscriptionValidation"},
        timeout=60,
    )
    assert validation.json() == {"validationResponse": "abc"}


def test_expiration_period_sets_exp_on_each_imported_version(stack):
    api, emulator, provider = stack
    name = f"k{uuid.uuid4().hex[:8]}"
    api.post(f"keymgmt/key/{name}", json={"type": "rsa-2048"})
    response = api.put(
        f"keymgmt/kms/{provider}/key/{name}", json={"purpose": "sign", "expiration_period": "90d"}
    )
    assert response.status_code == 204, response.text
    api.post(f"keymgmt/key/{name}/rotate")
    dist = api.get(f"keymgmt/kms/{provider}/key/{name}").json()["data"]
    assert dist["expiration_period"] == 90 * 86400 and sorted(dist["versions"]) == ["1", "2"]
    versions = remote_versions(emulator, dist["name"])
    assert len(versions) == 2
    for version in versions:
        assert abs(version["exp"] - (time.time() + 90 * 86400)) < 600
    bad = api.put(
        f"keymgmt/kms/{provider}/key/{name}x", json={"purpose": "sign", "expiration_period": "soon"}
    )
    assert bad.status_code == 400 and "expiration_period" in bad.json()["errors"][0]
