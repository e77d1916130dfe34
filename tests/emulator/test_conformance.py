"""Responses conform to ../shared/specs/keyvault-keys.json (every emulator test is checked by
the autouse fixture in conftest.py; this module proves the checker bites and covers every
emulated operation in one scenario)."""

from __future__ import annotations

import pytest
from azure.keyvault.keys.crypto import EncryptionAlgorithm, KeyWrapAlgorithm, SignatureAlgorithm

from tests.emulator.conformance import Conformance, spec_path
from tests.emulator.helpers import raw, sha256, unique
from tests.fixtures.kvemu import PURGEABLE_VAULT, grant_baseline
from tools.kvemu import Emulator
from tools.kvemu.api import OPERATIONS


@pytest.fixture
def spec(conformance: Conformance | None) -> Conformance:
    if conformance is None:
        pytest.skip(f"keys API spec not found at {spec_path()} (set KEYMGMT_KEYVAULT_SPEC)")
    return conformance


def test_every_declared_operation_is_in_the_spec(spec: Conformance) -> None:
    assert {op.operation_id for op in OPERATIONS} <= set(spec.responses)


def test_the_checker_rejects_what_the_spec_does_not_allow(spec: Conformance) -> None:
    good = {"kid": "https://h/keys/n/v", "value": "abc_-"}
    assert spec.problems("sign", 200, good) == []
    assert spec.problems("sign", 200, {**good, "value": "ab=="})  # padded base64url
    assert spec.problems("sign", 200, {**good, "extra": 1})  # unknown member
    assert spec.problems("GetKey", 200, {"attributes": {"created": "2024-01-01"}})
    assert spec.problems("PurgeDeletedKey", 204, {"unexpected": "body"})
    assert spec.problems("GetKey", 404, {"error": {"message": "no code"}})
    assert spec.problems("GetKeys", 200, {"value": [], "nextLink": None}) == []


def test_scenario_covering_every_emulated_operation(
    kv: Emulator, kv_key_client, kv_crypto_client, spec: Conformance
) -> None:
    client = kv_key_client()
    start = len(kv.recorded())
    name = unique("conf")
    key = client.create_rsa_key(name, size=2048, tags={"t": "1"})
    client.get_key(name)
    client.update_key_properties(name, tags={"t": "2"})
    list(client.list_properties_of_keys(max_page_size=1))
    list(client.list_properties_of_key_versions(name))
    client.rotate_key(name)
    kv.clear_grants("keyvault-name")  # without keys/get, the SDK cannot do crypto locally
    kv.grant(
        "keyvault-name",
        kv.system_identity.object_id,
        ["sign", "verify", "encrypt", "decrypt", "wrapKey", "unwrapKey"],
    )
    crypto = kv_crypto_client(key.id)
    digest = sha256(b"c")
    signature = crypto.sign(SignatureAlgorithm.rs256, digest).signature
    crypto.verify(SignatureAlgorithm.rs256, digest, signature)
    ciphertext = crypto.encrypt(EncryptionAlgorithm.rsa_oaep_256, b"p").ciphertext
    crypto.decrypt(EncryptionAlgorithm.rsa_oaep_256, ciphertext)
    wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep, b"k" * 16).encrypted_key
    crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep, wrapped)
    grant_baseline(kv)
    client.begin_delete_key(name, _polling_interval=0).wait()
    client.get_deleted_key(name)
    list(client.list_deleted_keys())
    client.begin_recover_deleted_key(name, _polling_interval=0).result()
    purgeable = kv_key_client(PURGEABLE_VAULT)
    purgeable.create_ec_key(name)
    purgeable.begin_delete_key(name, _polling_interval=0).wait()
    purgeable.purge_deleted_key(name)
    raw(kv, "POST", f"/keys/{name}/backup", token=kv.issue_token())  # 501 in the envelope
    seen = {r.operation_id for r in kv.recorded()[start:] if r.status < 300}
    emulated = {op.operation_id for op in OPERATIONS if op.handler is not None}
    assert emulated - {"ImportKey"} <= seen  # ImportKey: test_byok.py
