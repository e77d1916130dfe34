"""shared/events.py's ``handle`` in this process, against Azurite and the Key Vault emulator
(real SDK clients, the host's managed identity): outcomes and effects of Key Vault events.

``handle`` takes the event type and its ``data``; the schema (Event Grid or CloudEvents) is
unwrapped by the trigger adapter (functions/events.py), and both schemas are delivered through
the host in tests/e2e/test_timers_events.py, as are: near-expiry delivered several times
rotating once, forged expiry events (no exp, exp far, KeyExpired for a near exp), forged
new-version ids, malformed data through the webhook and drift by event with the default
settings. This module covers the rest: every outcome ``handle`` returns, what it reads from
Key Vault before it acts, and what it leaves alone.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import pytest

from shared import events
from shared.errors import EngineError
from tests.fixtures.funchost import build_service, emulator_settings
from tests.fixtures.kvemu import SECOND_VAULT, VAULT
from tools.kvemu import Emulator
from tools.kvemu.events import key_event

MOUNT = "keymgmt"


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_service(azurite: Any, kv: Emulator, **extra: str) -> Any:
    return build_service(azurite, uid("ev").replace("-", ""), **emulator_settings(kv), **extra)


@pytest.fixture
def svc(azurite, kv, kv_managed_identity):
    """The engine on the emulator; its Key Vault calls use the (baseline-granted) managed
    identity, which ``kv_managed_identity`` points at the emulator."""
    return make_service(azurite, kv)


@pytest.fixture
def client(kv_key_client):
    """Someone else's Key Vault client (changes made outside the engine)."""
    return kv_key_client()


class Distributed:
    """A key of the engine distributed to ``VAULT`` through a fresh provider."""

    def __init__(self, svc: Any, kv: Emulator, expiration_period: int = 0) -> None:
        self.svc = svc
        self.kms, self.key = uid("kms"), uid("k")
        svc.kms.write(
            MOUNT,
            self.kms,
            provider="azurekeyvault",
            key_collection=VAULT,
            credentials={"tenant_id": kv.tenant_id},
        )
        svc.keys.write(
            MOUNT, self.key, key_type="ecdsa-p256", min_enabled_version=None,
            deletion_allowed=True, auto_rotate_period=None,
        )  # fmt: skip
        svc.distribution.distribute(
            MOUNT,
            self.kms,
            self.key,
            purpose=["sign", "verify"],
            protection="software",
            expiration_period=expiration_period,
        )

    @property
    def dist(self) -> Any:
        return self.svc.store.get_distribution(MOUNT, self.kms, self.key)

    @property
    def remote(self) -> str:
        return self.dist.remote_name

    def version_id(self, engine_version: int = 1) -> str:
        return self.dist.versions[engine_version]

    def latest(self) -> int:
        return self.svc.keys.get(MOUNT, self.key).latest_version

    def tags(self, engine_version: int) -> dict[str, str]:
        return {
            "keymgmt-mount": MOUNT,
            "keymgmt-key": self.key,
            "keymgmt-version": str(engine_version),
            "key_name": self.remote,
        }


def data(kv: Emulator, name: str, version: str, vault: str = VAULT) -> dict[str, Any]:
    """Key Vault's event data (as the emulator, and Key Vault, send it)."""
    return key_event(
        "KeyNewVersionCreated",
        vault=vault,
        key_id=f"{kv.vault_url(VAULT)}/keys/{name}/{version}",
        name=name,
        version=version,
        nbf=None,
        exp=int(time.time()) + 86400,
    )["data"]


def handle(svc: Any, kind: str, payload: Any) -> str:
    return events.handle(svc, f"Microsoft.KeyVault.{kind}", payload, event_id=str(uuid.uuid4()))


def kv_calls(kv: Emulator, since: int) -> list[str | None]:
    """Key Vault operations served since ``since`` (an index into ``kv.recorded()``)."""
    return [r.operation_id for r in kv.recorded()[since:]]


def drift_rows(svc: Any, key: str) -> list[dict[str, Any]]:
    return [row for row in svc.store.event_drift() if row.get("key") == key]


# -- ignored before anything is looked up --------------------------------------------------------


@pytest.fixture(scope="module")
def valid_shape() -> dict[str, Any]:
    return {
        "VaultName": VAULT,
        "ObjectType": "Key",
        "ObjectName": "some-key",
        "Version": "0123456789abcdef0123456789abcdef",
    }


@pytest.mark.parametrize(
    "event_type",
    [
        "Microsoft.KeyVault.SecretNewVersionCreated",
        "Microsoft.KeyVault.CertificateNearExpiry",
        "Microsoft.KeyVault.VaultAccessPolicyChanged",
        "Microsoft.KeyVault.keynewversioncreated",  # event types are exact
        "Microsoft.KeyVault.KeyNewVersionCreated ",
        "KeyNearExpiry",
        "",
    ],
)
def test_other_event_types_are_ignored(svc, kv, valid_shape, event_type):
    since = len(kv.recorded())
    assert events.handle(svc, event_type, valid_shape) == "ignored"
    assert kv_calls(kv, since) == []


NO_DATA, EMPTY = "no data", "empty data"


@pytest.mark.parametrize(
    "change",
    [
        NO_DATA,
        EMPTY,
        {"ObjectType": "Secret"},
        {"ObjectType": "Certificate"},
        {"ObjectType": None},
        {"VaultName": None},
        {"ObjectName": None},
        {"Version": None},
        {"Version": 12345},
        {"VaultName": 7},
        {"ObjectName": ["some-key"]},
        {"VaultName": "kv"},  # vault names have 3 to 24 characters
        {"VaultName": "v" * 25},
        {"VaultName": "1vault"},  # and start with a letter
        {"VaultName": "vault-"},  # and end with a letter or digit
        {"VaultName": "key_vault"},
        {"VaultName": f"{VAULT}.vault.azure.net"},
        {"VaultName": f" {VAULT}"},
        {"ObjectName": ""},
        {"ObjectName": "a" * 128},  # Key Vault key names have at most 127 characters
        {"ObjectName": "some_key"},
        {"ObjectName": "some-key\n"},
        {"ObjectName": "../some-key"},
        {"Version": ""},
        {"Version": "v" * 65},
        {"Version": "0123-4567"},
        {"Version": "abc/def"},
    ],
)
@pytest.mark.parametrize("kind", ["KeyNewVersionCreated", "KeyNearExpiry", "KeyExpired"])
def test_malformed_events_are_ignored_without_raising_or_asking_key_vault(
    svc, kv, valid_shape, kind, change
):
    payload = {NO_DATA: None, EMPTY: {}}.get(change) if isinstance(change, str) else None
    if isinstance(change, dict):
        payload = {**valid_shape, **change}
    since = len(kv.recorded())
    assert handle(svc, kind, payload) == "ignored"
    assert kv_calls(kv, since) == []


def test_a_missing_object_type_counts_as_a_key(svc, kv, valid_shape):
    shape = {k: v for k, v in valid_shape.items() if k != "ObjectType"}
    assert handle(svc, "KeyNewVersionCreated", shape) == "not ours"  # looked up, not ignored


# -- not this engine's ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["KeyNewVersionCreated", "KeyNearExpiry", "KeyExpired"])
def test_events_for_keys_the_engine_did_not_distribute_are_not_ours(svc, kv, client, kind):
    other = client.create_ec_key(uid("someone-elses"), curve="P-256")  # exists in Key Vault
    since = len(kv.recorded())
    payload = data(kv, other.name, other.properties.version)
    assert handle(svc, kind, payload) == "not ours"
    assert kv_calls(kv, since) == []  # not even read
    assert svc.store.event_drift() == []


@pytest.mark.parametrize("kind", ["KeyNewVersionCreated", "KeyNearExpiry"])
def test_our_key_name_in_another_vault_is_not_ours(svc, kv, kind):
    ours = Distributed(svc, kv, expiration_period=20 * 86400)
    since = len(kv.recorded())
    payload = data(kv, ours.remote, ours.version_id(), vault=SECOND_VAULT)
    assert handle(svc, kind, payload) == "not ours"
    assert kv_calls(kv, since) == []
    assert ours.latest() == 1
    assert drift_rows(svc, ours.key) == []


def test_the_vault_name_is_matched_without_regard_to_case(svc, kv):
    ours = Distributed(svc, kv)
    payload = data(kv, ours.remote, ours.version_id(), vault=VAULT.upper())
    assert handle(svc, "KeyNewVersionCreated", payload) == "confirmed"


def test_the_key_name_is_matched_exactly(svc, kv):
    ours = Distributed(svc, kv)
    for name in (ours.remote + "0", ours.remote[:-1], ours.key):
        assert handle(svc, "KeyNewVersionCreated", data(kv, name, ours.version_id())) == "not ours"


def test_events_for_a_removed_distribution_are_not_ours(svc, kv, client):
    """An event for the old name finds no distribution behind it (with or without its owner
    entry; one left over is covered below)."""
    ours = Distributed(svc, kv, expiration_period=20 * 86400)
    remote, version = ours.remote, ours.version_id()
    svc.distribution.remove(MOUNT, ours.kms, ours.key)
    for kind in ("KeyNewVersionCreated", "KeyNearExpiry", "KeyExpired"):
        assert handle(svc, kind, data(kv, remote, version)) == "not ours"
    assert ours.latest() == 1
    assert drift_rows(svc, ours.key) == []


def test_a_removed_distribution_keeps_its_name_taken_until_the_clean_up(svc, kv, monkeypatch):
    """Key Vault hides a key being deleted from every read, so the owner entry outlives the
    removal (written again by it) and the clean-up takes it only after its grace period."""
    from shared import cleanup

    ours = Distributed(svc, kv)
    remote = ours.remote
    before = {r.remote_name: r.written for r in svc.store.owner_rows()}[remote]
    svc.distribution.remove(MOUNT, ours.kms, ours.key)
    after = {r.remote_name: r.written for r in svc.store.owner_rows()}
    assert remote in after and after[remote] > before  # rewritten: its grace starts now
    cleanup.cleanup(svc)
    assert remote in {r.remote_name for r in svc.store.owner_rows()}
    monkeypatch.setattr(cleanup, "OWNER_ROW_GRACE", dt.timedelta(0))
    cleanup.cleanup(svc)
    assert remote not in {r.remote_name for r in svc.store.owner_rows()}


def test_an_owner_entry_that_does_not_match_its_distribution_is_not_ours(svc, kv):
    """An owner entry written for a name the distribution did not end up with (a distribute
    that lost, or moved to a free name) is ignored when read."""
    ours = Distributed(svc, kv)
    stale = f"{ours.key}-1"  # another "<key>-<time>" name pointing at the same distribution
    svc.store.own_remote(VAULT, stale, MOUNT, ours.kms, ours.key)
    assert handle(svc, "KeyNewVersionCreated", data(kv, stale, ours.version_id())) == "not ours"
    assert handle(svc, "KeyNearExpiry", data(kv, stale, ours.version_id())) == "not ours"
    assert drift_rows(svc, ours.key) == []


# -- KeyNewVersionCreated --------------------------------------------------------------------------


def test_a_recorded_import_is_confirmed_without_asking_key_vault(svc, kv):
    ours = Distributed(svc, kv)
    since = len(kv.recorded())
    assert handle(svc, "KeyNewVersionCreated", data(kv, ours.remote, ours.version_id())) == (
        "confirmed"
    )
    assert kv_calls(kv, since) == []
    assert drift_rows(svc, ours.key) == []


def test_every_recorded_version_is_confirmed(svc, kv):
    ours = Distributed(svc, kv)
    svc.keys.rotate(MOUNT, ours.key)  # imports version 2
    assert sorted(ours.dist.versions) == [1, 2]
    for engine_version in (1, 2):
        payload = data(kv, ours.remote, ours.version_id(engine_version))
        assert handle(svc, "KeyNewVersionCreated", payload) == "confirmed"


def test_an_unrecorded_version_with_our_tags_is_left_to_the_reconciler(svc, kv, client):
    """An import that landed but was not recorded yet (its answer was lost): no drift."""
    ours = Distributed(svc, kv)
    pending = client.create_ec_key(ours.remote, curve="P-256", tags=ours.tags(2))
    since = len(kv.recorded())
    payload = data(kv, ours.remote, pending.properties.version)
    assert handle(svc, "KeyNewVersionCreated", payload) == "ours, pending"
    assert kv_calls(kv, since) == ["GetKey"]  # read from Key Vault, one version, no listing
    assert drift_rows(svc, ours.key) == []
    assert client.get_key(ours.remote, pending.properties.version).properties.enabled


def test_a_version_tagged_for_another_key_is_drift(svc, kv, client):
    ours = Distributed(svc, kv)
    tags = {**ours.tags(2), "keymgmt-key": "another-key"}
    foreign = client.create_ec_key(ours.remote, curve="P-256", tags=tags)
    payload = data(kv, ours.remote, foreign.properties.version)
    assert handle(svc, "KeyNewVersionCreated", payload) == "drift"
    [row] = drift_rows(svc, ours.key)
    assert row["version"] == foreign.properties.version and row["disabled"] is False


def test_drift_is_recorded_once_however_often_the_event_comes(svc, kv, client):
    ours = Distributed(svc, kv)
    foreign = client.create_ec_key(ours.remote, curve="P-256")
    payload = data(kv, ours.remote, foreign.properties.version)
    for _ in range(3):
        assert handle(svc, "KeyNewVersionCreated", payload) == "drift"
    [row] = drift_rows(svc, ours.key)
    assert row == {
        "time": row["time"],
        "vault": VAULT,
        "name": ours.remote,
        "version": foreign.properties.version,
        "mount": MOUNT,
        "provider": ours.kms,
        "key": ours.key,
        "drift": "a Key Vault version of an engine key that the engine did not create",
        "disabled": False,
    }
    # The engine's own record is untouched: the foreign version is not adopted.
    assert sorted(ours.dist.versions) == [1]
    assert ours.latest() == 1


def test_with_disable_foreign_versions_a_foreign_version_is_disabled(
    azurite, kv, kv_managed_identity, client
):
    svc = make_service(azurite, kv, KEYMGMT_DISABLE_FOREIGN_VERSIONS="true")
    ours = Distributed(svc, kv)
    foreign = client.create_ec_key(ours.remote, curve="P-256")
    version = foreign.properties.version
    assert client.get_key(ours.remote, version).properties.enabled
    payload = data(kv, ours.remote, version)
    assert handle(svc, "KeyNewVersionCreated", payload) == "drift, disabled"
    assert client.get_key(ours.remote, version).properties.enabled is False
    [row] = drift_rows(svc, ours.key)
    assert row["version"] == version and row["disabled"] is True
    # The engine's own version is left enabled; a repeat delivery changes nothing more.
    assert client.get_key(ours.remote, ours.version_id()).properties.enabled
    assert handle(svc, "KeyNewVersionCreated", payload) == "drift, disabled"
    assert len(drift_rows(svc, ours.key)) == 1


def test_a_foreign_version_that_cannot_be_disabled_is_still_reported(
    azurite, kv, kv_managed_identity, client
):
    svc = make_service(azurite, kv, KEYMGMT_DISABLE_FOREIGN_VERSIONS="true")
    ours = Distributed(svc, kv)
    foreign = client.create_ec_key(ours.remote, curve="P-256")
    kv.clear_grants(VAULT)
    kv.grant(VAULT, kv.system_identity.object_id, ["get"])  # may read, may not update
    payload = data(kv, ours.remote, foreign.properties.version)
    assert handle(svc, "KeyNewVersionCreated", payload) == "drift"
    [row] = drift_rows(svc, ours.key)
    assert row["disabled"] is False


def test_a_new_version_event_is_not_recorded_when_key_vault_cannot_be_asked(svc, kv, client):
    ours = Distributed(svc, kv)
    foreign = client.create_ec_key(ours.remote, curve="P-256")
    kv.fault(VAULT, "forbidden_by_connection", "get")
    payload = data(kv, ours.remote, foreign.properties.version)
    with pytest.raises(EngineError) as caught:
        handle(svc, "KeyNewVersionCreated", payload)
    assert caught.value.status >= 500  # the adapter lets Event Grid deliver it again
    assert drift_rows(svc, ours.key) == []
    kv.clear_faults()
    assert handle(svc, "KeyNewVersionCreated", payload) == "drift"  # the redelivery works


def test_a_version_of_a_key_deleted_in_key_vault_is_not_drift(svc, kv, client):
    ours = Distributed(svc, kv)
    foreign = client.create_ec_key(ours.remote, curve="P-256")
    client.begin_delete_key(ours.remote).wait()
    payload = data(kv, ours.remote, foreign.properties.version)
    assert handle(svc, "KeyNewVersionCreated", payload) == "not in Key Vault"
    assert drift_rows(svc, ours.key) == []


# -- KeyNearExpiry and KeyExpired ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["KeyExpired", "KeyNearExpiry"])
def test_an_expiry_key_vault_bears_out_rotates_once_and_distributes(svc, kv, kind):
    """exp a minute away: near expiry, and within KeyExpired's slack."""
    ours = Distributed(svc, kv, expiration_period=60)
    payload = data(kv, ours.remote, ours.version_id())
    since = len(kv.recorded())
    assert handle(svc, kind, payload) == "rotated"
    assert kv_calls(kv, since)[0] == "GetKey"  # Key Vault was asked before the rotation
    assert ours.latest() == 2
    assert sorted(ours.dist.versions) == [1, 2]  # the new version reached Key Vault
    assert handle(svc, kind, payload) == "already rotated"
    assert ours.latest() == 2


def test_an_expiry_for_an_older_version_is_already_rotated_without_asking(svc, kv):
    ours = Distributed(svc, kv, expiration_period=60)
    svc.keys.rotate(MOUNT, ours.key)
    since = len(kv.recorded())
    for kind in ("KeyNearExpiry", "KeyExpired"):
        assert handle(svc, kind, data(kv, ours.remote, ours.version_id(1))) == "already rotated"
    assert kv_calls(kv, since) == []
    assert ours.latest() == 2


def test_an_expiry_for_a_version_the_engine_did_not_import_rotates_nothing(svc, kv, client):
    ours = Distributed(svc, kv, expiration_period=60)
    foreign = client.create_ec_key(ours.remote, curve="P-256")
    for kind in ("KeyNearExpiry", "KeyExpired"):
        payload = data(kv, ours.remote, foreign.properties.version)
        assert handle(svc, kind, payload) == "unknown version"
    assert ours.latest() == 1
    assert drift_rows(svc, ours.key) == []  # an expiry event never records drift


def test_an_expiry_for_a_version_that_lost_our_tags_rotates_nothing(svc, kv, client):
    ours = Distributed(svc, kv, expiration_period=60)
    client.update_key_properties(ours.remote, ours.version_id(), tags={"owner": "someone"})
    since = len(kv.recorded())
    assert handle(svc, "KeyExpired", data(kv, ours.remote, ours.version_id())) == "not confirmed"
    assert kv_calls(kv, since) == ["GetKey"]
    assert ours.latest() == 1


def test_an_expiry_whose_exp_was_moved_out_in_key_vault_rotates_nothing(svc, kv, client):
    ours = Distributed(svc, kv, expiration_period=60)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
    client.update_key_properties(ours.remote, ours.version_id(), expires_on=later)
    for kind in ("KeyNearExpiry", "KeyExpired"):
        assert handle(svc, kind, data(kv, ours.remote, ours.version_id())) == "not confirmed"
    assert ours.latest() == 1


def test_an_expiry_for_a_key_deleted_in_key_vault_rotates_nothing(svc, kv, client):
    ours = Distributed(svc, kv, expiration_period=60)
    client.begin_delete_key(ours.remote).wait()
    for kind in ("KeyNearExpiry", "KeyExpired"):
        assert handle(svc, kind, data(kv, ours.remote, ours.version_id())) == "not confirmed"
    assert ours.latest() == 1


@pytest.mark.parametrize("fault", ["forbidden_by_connection", "server_error"])
def test_an_expiry_is_not_acted_on_while_key_vault_cannot_confirm_it(svc, kv, fault):
    ours = Distributed(svc, kv, expiration_period=60)
    kv.fault(VAULT, fault, "get", status=503)
    payload = data(kv, ours.remote, ours.version_id())
    with pytest.raises(EngineError) as caught:
        handle(svc, "KeyExpired", payload)
    assert caught.value.status >= 500  # the adapter lets Event Grid deliver it again
    assert ours.latest() == 1
    kv.clear_faults()
    assert handle(svc, "KeyExpired", payload) == "rotated"  # the redelivery is acted on
    assert ours.latest() == 2
