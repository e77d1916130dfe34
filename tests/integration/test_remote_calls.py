"""What one distribute and one reconcile cost: every Key Vault request (the emulator's request
log) and every Table read (a counting wrapper around the store's table client), by row. Each
thing is asked once: a repeat comes back into every request, rotation and reconciler run, and
these counts say so."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from shared.errors import EngineError
from shared.providers.azurekeyvault import KEK_NAME
from shared.store import REMOTE_PARTITION
from tests.fixtures.funchost import emulator_settings, engine_settings
from tests.integration.test_distribution import MOUNT, VAULT, key_with, provider_for, responses
from tools.kvemu import Emulator


def row_kind(partition: str, row: str) -> str:
    kind = "owner" if partition == REMOTE_PARTITION else row.split(":")[0]
    return "version" if kind == "key" and not row.endswith(":") else kind


class CountingTable:
    """The real table client, counting point reads and writes (by kind of row) and queries.
    A transaction counts once, under the kinds of rows it writes joined by '+'."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.reads: Counter[str] = Counter()
        self.writes: Counter[str] = Counter()
        self.queries = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def get_entity(self, partition: str, row: str, **options: Any) -> Any:
        self.reads[row_kind(partition, row)] += 1
        return self.real.get_entity(partition, row, **options)

    def _wrote(self, *entities: Any) -> None:
        self.writes["+".join(row_kind(e["PartitionKey"], e["RowKey"]) for e in entities)] += 1

    def create_entity(self, entity: Any, **options: Any) -> Any:
        self._wrote(entity)
        return self.real.create_entity(entity, **options)

    def update_entity(self, entity: Any, *args: Any, **options: Any) -> Any:
        self._wrote(entity)
        return self.real.update_entity(entity, *args, **options)

    def upsert_entity(self, entity: Any, *args: Any, **options: Any) -> Any:
        self._wrote(entity)
        return self.real.upsert_entity(entity, *args, **options)

    def submit_transaction(self, operations: Any, **options: Any) -> Any:
        self._wrote(*(op[1] for op in operations))
        return self.real.submit_transaction(operations, **options)

    def query_entities(self, *args: Any, **options: Any) -> Any:
        self.queries += 1
        return self.real.query_entities(*args, **options)

    def reset(self) -> None:
        self.reads.clear()
        self.writes.clear()
        self.queries = 0


@pytest.fixture
def counted(azurite: Any, kv: Emulator) -> Iterator[tuple[Any, CountingTable]]:
    from azure.data.tables import TableServiceClient

    from shared import service, settings

    prefix = f"rc{uuid.uuid4().hex[:12]}"
    tables = TableServiceClient.from_connection_string(azurite.connection_string)
    tables.create_table(f"{prefix}state")
    table = CountingTable(tables.get_table_client(f"{prefix}state"))
    loaded = settings.load(engine_settings(azurite, prefix, **emulator_settings(kv)))
    yield service.build(loaded, table_client=table), table
    tables.delete_table(f"{prefix}state")


def calls(kv: Emulator, since: int) -> Counter[str]:
    """Key Vault requests since ``since``, by operation; reads of the key exchange key apart."""
    return Counter(
        f"{r.operation_id} {KEK_NAME}" if KEK_NAME in json.dumps(r.body) else r.operation_id or "?"
        for r in responses(kv, since)
    )


def distributed(svc: Any, kv: Emulator, versions: int) -> tuple[str, str]:
    """A provider with one key distributed already (its client and the vault's key exchange
    key are warm, as in a running app), and a fresh key of ``versions`` versions."""
    provider = provider_for(svc, kv)
    svc.distribution.distribute(
        MOUNT, provider, key_with(svc, 1), purpose=["sign"], protection="hsm"
    )
    return provider, key_with(svc, versions)


def test_a_distribute_reads_each_row_once_and_lists_nothing(counted, kv: Emulator):
    svc, table = counted
    provider, key = distributed(svc, kv, versions=2)
    table.reset()
    since = len(kv.recorded())
    assert (
        svc.distribution.distribute(MOUNT, provider, key, purpose=["sign"], protection="hsm") == []
    )
    # Key Vault: whether the name is free (the live key, then a deleted one), then one import
    # per version; nothing to adopt under a name nobody used, so no second look.
    assert calls(kv, since) == {"GetKey": 1, "GetDeletedKey": 1, "ImportKey": 2}
    # Table: the provider once; the key to check it, and again before letting go of the
    # import lease; the distribution once (is there one?); the owner index once (is the name
    # free?); each version's material once. The lease is let go without a read.
    assert table.reads == {"kms": 1, "key": 2, "dist": 1, "owner": 1, "version": 2}
    assert table.queries == 0


def test_a_distribute_writes_its_row_once_per_version_and_once_to_create_it(counted, kv: Emulator):
    svc, table = counted
    provider, key = distributed(svc, kv, versions=3)
    table.reset()
    assert (
        svc.distribution.distribute(MOUNT, provider, key, purpose=["sign"], protection="hsm") == []
    )
    # The owner entry; one transaction creates the row (holding the import lease) with the key
    # and provider rows; each import but the last is recorded before the next is sent; the last
    # is recorded with the state and the lease's release. No separate claim, renewal or release.
    assert table.writes == {"owner": 1, "dist+key+kms": 1, "dist": 3}
    dist = svc.store.get_distribution(MOUNT, provider, key)
    assert sorted(dist.versions) == [1, 2, 3]
    assert (dist.state, dist.lease_owner, dist.lease_until) == ("active", "", None)


def test_a_reconcile_lists_the_remote_versions_once(counted, kv: Emulator):
    svc, table = counted
    provider, key = distributed(svc, kv, versions=1)
    svc.distribution.distribute(MOUNT, provider, key, purpose=["sign"], protection="hsm")
    dist = svc.store.get_distribution(MOUNT, provider, key)
    table.reset()
    since = len(kv.recorded())
    report = svc.reconciler.reconcile(dist)
    assert (report["imported"], report["drift"], report["errors"]) == ([], [], [])
    assert calls(kv, since) == {"GetKeyVersions": 1}
    # The provider once; the key before taking the lease and once under it; the distribution
    # is the one listed, and the lease is let go without reading it again.
    assert table.reads == {"kms": 1, "key": 2}


def test_a_reconcile_that_imports_lists_once_and_looks_for_nothing_else(counted, kv: Emulator):
    svc, table = counted
    provider, key = distributed(svc, kv, versions=1)
    svc.distribution.distribute(MOUNT, provider, key, purpose=["sign"], protection="hsm")
    kv.fault(VAULT, "server_error", "import", status=503)
    _, warnings = svc.keys.rotate(MOUNT, key)  # version 2 does not reach Key Vault
    assert warnings and "the reconciler will finish the import" in warnings[0]
    kv.clear_faults()
    dist = svc.store.get_distribution(MOUNT, provider, key)
    assert sorted(dist.versions) == [1]
    table.reset()
    since = len(kv.recorded())
    report = svc.reconciler.reconcile(dist)
    assert (report["imported"], report["drift"], report["errors"]) == ([2], [], [])
    # One listing serves the drift check, the import (nothing listed is left to adopt) and the
    # enabled flags (what this run imported is known). The key exchange key is read again:
    # its cache is dropped when an import fails, in case it was what changed.
    assert calls(kv, since) == {"GetKeyVersions": 1, f"GetKey {KEK_NAME}": 1, "ImportKey": 1}
    assert table.reads == {"kms": 1, "key": 2, "version": 1}
    assert sorted(svc.store.get_distribution(MOUNT, provider, key).versions) == [1, 2]


def test_a_removal_reads_the_distribution_once(counted, kv: Emulator):
    svc, table = counted
    provider, key = distributed(svc, kv, versions=1)
    svc.distribution.distribute(MOUNT, provider, key, purpose=["sign"], protection="hsm")
    table.reset()
    since = len(kv.recorded())
    svc.distribution.remove(MOUNT, provider, key)
    assert calls(kv, since) == {"DeleteKey": 1}
    # The distribution once (marked, leased, deleted as it was written), the provider once, the
    # key to take the provider off it, the owner index entry to release it.
    assert table.reads == {"dist": 1, "kms": 1, "key": 1, "owner": 1}
    assert svc.store.get_distribution(MOUNT, provider, key) is None
    assert svc.store.get_key(MOUNT, key).kms == ()


def test_a_rotation_imports_into_key_vault_with_one_look(counted, kv: Emulator):
    svc, table = counted
    provider, key = distributed(svc, kv, versions=1)
    svc.distribution.distribute(MOUNT, provider, key, purpose=["sign"], protection="hsm")
    table.reset()
    since = len(kv.recorded())
    assert svc.keys.rotate(MOUNT, key) == (2, [])
    # The latest version (an import a crash left unrecorded would be it), then the import.
    assert calls(kv, since) == {"GetKey": 1, "ImportKey": 1}
    # Besides what the rotation itself reads (the key is the key engine's): the distribution and
    # the provider once each, the new version's material once; the lease is let go unread.
    assert (table.reads["dist"], table.reads["kms"], table.reads["version"]) == (1, 1, 1)
    assert sorted(svc.store.get_distribution(MOUNT, provider, key).versions) == [1, 2]


def test_a_distribute_key_vault_refuses_leaves_no_owner_entry(counted, kv: Emulator):
    svc, _ = counted
    provider, key = distributed(svc, kv, versions=1)
    kv.fault(VAULT, "forbidden_by_connection", "get")  # the name check is refused
    with pytest.raises(EngineError, match="ForbiddenByConnection"):
        svc.distribution.distribute(MOUNT, provider, key, purpose=["sign"], protection="hsm")
    kv.clear_faults()
    # The owner entry is written beside the name check; a refused check takes it back.
    assert [r.remote_name for r in svc.store.owner_rows() if r.key == key] == []
    assert svc.store.get_distribution(MOUNT, provider, key) is None
