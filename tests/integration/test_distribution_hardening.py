"""Distribution under damage and races: a version that does not unseal holds back nothing
after it, the reconciler isolates each distribution, removal racing rotation ends whole."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from azure.data.tables import UpdateMode

from shared import schedules
from shared.api.kms import render_distribution
from shared.errors import EngineError
from shared.store import version_rk
from tests.fixtures.funchost import build_service, emulator_settings
from tests.integration.test_distribution import (
    MOUNT,
    by_tag,
    key_with,
    provider_for,
    remote,
)
from tools.kvemu import Emulator


@pytest.fixture
def service(azurite: Any, kv: Emulator) -> Any:
    return build_service(azurite, f"dh{uuid.uuid4().hex[:12]}", **emulator_settings(kv))


def damage(service: Any, key: str, version: int) -> dict:
    table = service.store.table
    row = table.get_entity(MOUNT, version_rk(key, version))
    original = dict(row)
    ct = bytearray(row["seal_ct"])
    ct[-1] ^= 1
    table.upsert_entity({**row, "seal_ct": bytes(ct)}, mode=UpdateMode.REPLACE)
    return original


def test_a_version_that_does_not_unseal_does_not_block_later_imports(service, kv):
    provider, key = provider_for(service, kv), key_with(service, 3)
    original = damage(service, key, 1)
    warnings = service.distribution.distribute(
        MOUNT, provider, key, purpose=["sign", "verify"], protection="hsm"
    )
    [warning] = warnings
    assert "version 1" in warning and "integrity check" in warning
    dist = render_distribution(service.distribution.read(MOUNT, provider, key))
    assert sorted(dist["versions"]) == ["2", "3"] and dist["pending_versions"] == [1]
    assert by_tag(remote(kv, dist["name"])) == dist["versions"]
    # The reconciler reports it each run; later rotations still land.
    service.keys.rotate(MOUNT, key)
    summary = schedules.reconcile_all(service)
    [mine] = [d for d in summary["details"] if d["key"] == key]
    assert any("versions [1]" in e for e in mine["errors"]) and mine["imported"] in ([], [4])
    dist = render_distribution(service.distribution.read(MOUNT, provider, key))
    assert sorted(dist["versions"]) == ["2", "3", "4"]
    # Repaired, it is still not imported: it would become Key Vault's current version.
    service.store.table.upsert_entity(original, mode=UpdateMode.REPLACE)
    report = service.reconciler.reconcile(service.store.get_distribution(MOUNT, provider, key))
    assert report["imported"] == []
    assert any("not imported now" in e and "rotate the key" in e for e in report["errors"])
    assert sorted(by_tag(remote(kv, dist["name"]))) == ["2", "3", "4"]


def test_the_reconciler_isolates_each_distribution(service, kv, monkeypatch):
    provider = provider_for(service, kv)
    keys = [key_with(service, 1) for _ in range(3)]
    for key in keys:
        service.distribution.distribute(MOUNT, provider, key, purpose=["sign"], protection="hsm")
    for key in keys:
        service.keys.rotate(MOUNT, key)  # each has a version to import
    # One distribution row is damaged in the table; another fails unexpectedly.
    table = service.store.table
    row = table.get_entity(MOUNT, f"dist:{provider}:{keys[0]}")
    table.upsert_entity({**row, "purpose": "encrypt"}, mode=UpdateMode.REPLACE)
    real = service.reconciler.reconcile

    def failing(dist):
        if dist.key == keys[1]:
            raise ZeroDivisionError("a bug")
        return real(dist)

    monkeypatch.setattr(service.reconciler, "reconcile", failing)
    summary = schedules.reconcile_all(service)
    assert summary["errors"] >= 2
    messages = [e for d in summary["details"] for e in d["errors"]]
    assert any(f"dist:{provider}:{keys[0]} failed its integrity check" in m for m in messages)
    assert any("internal error (ZeroDivisionError)" in m for m in messages)
    # The healthy one was reconciled.
    done = render_distribution(service.distribution.read(MOUNT, provider, keys[2]))
    assert sorted(done["versions"]) == ["1", "2"]


def test_removal_racing_rotation_and_redistribution_ends_whole(service, kv):
    provider, key = provider_for(service, kv), key_with(service, 1)
    service.distribution.distribute(MOUNT, provider, key, purpose=["sign"], protection="hsm")

    def call(i: int) -> Any:
        try:
            if i % 3 == 0:
                service.distribution.remove(MOUNT, provider, key)
            elif i % 3 == 1:
                service.keys.rotate(MOUNT, key)
            else:
                service.distribution.distribute(
                    MOUNT, provider, key, purpose=["sign"], protection="hsm"
                )
        except EngineError as exc:
            return exc.status
        return "ok"

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(call, range(12)))
    assert all(r == "ok" or 400 <= r < 500 for r in results), results
    # Whatever won, the rows agree: the key lists the provider iff a distribution row exists.
    key_row = service.store.get_key(MOUNT, key)
    dist = service.store.get_distribution(MOUNT, provider, key)
    assert (provider in key_row.kms) == (dist is not None and dist.state != "removing")
    if dist is not None:
        service.reconciler.reconcile(dist)
        dist = service.store.get_distribution(MOUNT, provider, key)
        assert sorted(dist.versions) == list(range(1, key_row.latest_version + 1))
        assert by_tag(remote(kv, dist.remote_name)) == {
            str(v): vid for v, vid in dist.versions.items()
        }
