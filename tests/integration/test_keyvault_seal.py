"""The production seal mode: data keys wrapped by a Key Vault key (the emulator's)."""

import os

import pytest

from shared import service as service_module
from shared import settings as settings_module
from shared.errors import RowTampered, SealError
from shared.seal import Sealed
from shared.store import version_rk
from tests.fixtures.funchost import emulator_settings


@pytest.fixture
def kv_sealed(azurite, table_prefix, kv, kv_key_client, monkeypatch):
    seal = kv_key_client().create_rsa_key(
        f"seal-{table_prefix}", size=3072, key_operations=["wrapKey", "unwrapKey"]
    )
    env = emulator_settings(kv)
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):  # read by azure-identity itself
        monkeypatch.setenv(name, env.pop(name))
    settings = settings_module.load(
        {
            "KEYMGMT_STORAGE": azurite.connection_string,
            "KEYMGMT_TABLE_PREFIX": table_prefix,
            "KEYMGMT_SEAL_KEY_ID": f"{kv.vault_url('keyvault-name')}/keys/{seal.name}",
            "KEYMGMT_DEFAULT_MOUNTS": "keymgmt",
            "AZURE_TENANT_ID": kv.tenant_id,
            **env,
        }
    )
    return service_module.build(settings), seal


def test_material_is_wrapped_by_the_key_vault_key(kv_sealed):
    svc, seal = kv_sealed
    svc.keys.write(
        "keymgmt",
        "k",
        key_type="ecdsa-p256",
        min_enabled_version=None,
        deletion_allowed=None,
        auto_rotate_period=None,
    )
    svc.keys.rotate("keymgmt", "k")
    entity = svc.store.table.get_entity("keymgmt", version_rk("k", 2))
    # The versioned id is kept, so rows still open after the seal key gets a new version.
    assert entity["seal_kid"] == seal.id
    assert len(bytes(entity["seal_dek"])) == 3072 // 8
    material = svc.keys.unseal("keymgmt", "k", 2)
    assert material.startswith(b"0\x81")  # PKCS#8 DER of a P-256 key
    assert svc.keys.unseal("keymgmt", "k", 1) != material


def test_a_wrapped_data_key_that_key_vault_cannot_open_is_a_seal_error(kv_sealed):
    svc, _ = kv_sealed
    sealed = svc.sealer.seal(b"material", "ctx")
    damaged = Sealed(sealed.seal_key_id, os.urandom(len(sealed.wrapped_dek)), sealed.ciphertext)
    with pytest.raises(SealError, match="unwrapKey failed"):
        svc.sealer.open(damaged, "ctx")
    # In a row, the same damage is caught by the row check first, naming the row.
    svc.keys.write(
        "keymgmt",
        "t",
        key_type="aes256-gcm96",
        min_enabled_version=None,
        deletion_allowed=None,
        auto_rotate_period=None,
    )
    entity = svc.store.table.get_entity("keymgmt", version_rk("t", 1))
    entity["seal_dek"] = os.urandom(len(bytes(entity["seal_dek"])))
    svc.store.table.upsert_entity(entity)
    with pytest.raises(RowTampered, match="keymgmt/key:t:0000000001"):
        svc.keys.unseal("keymgmt", "t", 1)
