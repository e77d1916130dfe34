"""BYOK import: blobs built by shared.byok are really unwrapped with the vault's KEK."""

from __future__ import annotations

import base64
import json

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys import JsonWebKey, KeyType
from azure.keyvault.keys.crypto import SignatureAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from shared.byok import build_transfer_blob
from tests.emulator.helpers import error_of, raw, sha256, unique
from tools.kvemu import Emulator

GENERATOR = "tests/emulator 1.0"


def _pkcs8(private_key) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _public(kv_key) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(
        int.from_bytes(kv_key.key.e, "big"), int.from_bytes(kv_key.key.n, "big")
    ).public_key()


@pytest.fixture(scope="module")
def target_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def kek(kv_key_client):
    return kv_key_client().create_rsa_key(
        unique("kek"), size=2048, hardware_protected=True, key_operations=["import"]
    )


def _import(client, blob: bytes, *, kty: str = "RSA-HSM", crv: str | None = None, ops=None):
    jwk = JsonWebKey(kty=kty, t=blob, crv=crv, key_ops=ops or ["sign", "verify"])
    return client.import_key(unique("byok"), jwk, hardware_protected=True)


def _raw_import(kv: Emulator, key_hsm: str):
    """An RSA-HSM import with ``key_hsm`` exactly as given (the SDK would encode it itself)."""
    return raw(
        kv,
        "PUT",
        f"/keys/{unique('raw')}",
        token=kv.issue_token(),
        json_body={"key": {"kty": "RSA-HSM", "key_ops": ["sign"], "key_hsm": key_hsm}},
    )


def _refused(client, blob: bytes, **kwargs) -> str:
    with pytest.raises(HttpResponseError) as info:
        _import(client, blob, **kwargs)
    assert info.value.status_code == 400
    code, _, message = error_of(info.value.response.json())
    assert code == "BadParameter"
    return message


def test_rsa_round_trip_signs_with_the_imported_key(
    kv: Emulator, kv_key_client, kv_crypto_client, kek, target_rsa
) -> None:
    client = kv_key_client()
    blob = build_transfer_blob(_pkcs8(target_rsa), _public(kek), kek.id, generator=GENERATOR)
    imported = _import(client, blob)
    assert imported.key_type == KeyType.rsa_hsm
    assert imported.key.n == target_rsa.public_key().public_numbers().n.to_bytes(256, "big")
    assert imported.key.d is None and imported.key.t is None  # no key_hsm/private members back
    digest = sha256(b"byok round trip")
    signature = kv_crypto_client(imported.id).sign(SignatureAlgorithm.rs256, digest).signature
    target_rsa.public_key().verify(
        signature, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
    )


def test_ec_round_trip(kv: Emulator, kv_key_client, kv_crypto_client, kek) -> None:
    target = ec.generate_private_key(ec.SECP256R1())
    blob = build_transfer_blob(_pkcs8(target), _public(kek), kek.id, generator=GENERATOR)
    imported = _import(kv_key_client(), blob, kty="EC-HSM", crv="P-256")
    assert imported.key_type == KeyType.ec_hsm and imported.key.crv == "P-256"
    digest = sha256(b"ec")
    raw_sig = kv_crypto_client(imported.id).sign(SignatureAlgorithm.es256, digest).signature
    der = utils.encode_dss_signature(
        int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:], "big")
    )
    target.public_key().verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_import_into_existing_name_adds_a_version(kv_key_client, kek, target_rsa) -> None:
    client = kv_key_client()
    blob = build_transfer_blob(_pkcs8(target_rsa), _public(kek), kek.id, generator=GENERATOR)
    name = unique("byokver")
    for _ in range(2):
        client.import_key(name, JsonWebKey(kty="RSA-HSM", t=blob, key_ops=["sign"]))
    assert len(list(client.list_properties_of_key_versions(name))) == 2


def test_tampered_ciphertext_fails_the_rfc5649_integrity_check(kv_key_client, kek, target_rsa):
    blob = json.loads(
        build_transfer_blob(_pkcs8(target_rsa), _public(kek), kek.id, generator=GENERATOR)
    )
    ct = bytearray(base64.urlsafe_b64decode(blob["ciphertext"] + "=="))
    ct[-1] ^= 0x01
    blob["ciphertext"] = base64.urlsafe_b64encode(bytes(ct)).rstrip(b"=").decode()
    message = _refused(kv_key_client(), json.dumps(blob).encode())
    assert "RFC 5649" in message and "integrity" in message


def test_wrong_kek_fails_oaep(kv_key_client, kek, target_rsa) -> None:
    other = kv_key_client().create_rsa_key(
        unique("kekb"), size=2048, hardware_protected=True, key_operations=["import"]
    )
    # wrapped for `other`, but the header names `kek`
    blob = build_transfer_blob(_pkcs8(target_rsa), _public(other), kek.id, generator=GENERATOR)
    message = _refused(kv_key_client(), blob)
    assert "RSA-OAEP" in message and "different key exchange key" in message


def test_kek_with_other_key_ops_is_refused(kv_key_client, target_rsa) -> None:
    not_a_kek = kv_key_client().create_rsa_key(
        unique("nokek"), size=2048, hardware_protected=True, key_operations=["wrapKey", "unwrapKey"]
    )
    blob = build_transfer_blob(
        _pkcs8(target_rsa), _public(not_a_kek), not_a_kek.id, generator=GENERATOR
    )
    message = _refused(kv_key_client(), blob)
    assert 'key_ops exactly ["import"]' in message and "wrapKey" in message


def test_blob_naming_another_vaults_kek_is_refused(kv_key_client, target_rsa) -> None:
    foreign = kv_key_client("second-vault").create_rsa_key(
        unique("kekf"), size=2048, hardware_protected=True, key_operations=["import"]
    )
    blob = build_transfer_blob(
        _pkcs8(target_rsa), _public(foreign), foreign.id, generator=GENERATOR
    )
    message = _refused(kv_key_client("keyvault-name"), blob)
    assert "is not a key of this vault" in message


def test_disabled_kek_is_refused(kv_key_client, kek, target_rsa) -> None:
    kv_key_client().update_key_properties(kek.name, kek.properties.version, enabled=False)
    blob = build_transfer_blob(_pkcs8(target_rsa), _public(kek), kek.id, generator=GENERATOR)
    assert "is disabled" in _refused(kv_key_client(), blob)


def test_type_mismatch_is_refused(kv_key_client, kek) -> None:
    ec_target = ec.generate_private_key(ec.SECP256R1())
    blob = build_transfer_blob(_pkcs8(ec_target), _public(kek), kek.id, generator=GENERATOR)
    message = _refused(kv_key_client(), blob, kty="RSA-HSM")
    assert "key type mismatch" in message and "EC key" in message
    p384 = ec.generate_private_key(ec.SECP384R1())
    blob = build_transfer_blob(_pkcs8(p384), _public(kek), kek.id, generator=GENERATOR)
    assert "curve mismatch" in _refused(kv_key_client(), blob, kty="EC-HSM", crv="P-256")


def test_rsa_1024_target_is_refused(kv_key_client, kek) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the refusal under test
    blob = build_transfer_blob(_pkcs8(small), _public(kek), kek.id, generator=GENERATOR)
    message = _refused(kv_key_client(), blob)
    assert "1024 bits" in message and "2048" in message


def test_target_that_is_not_pkcs8_is_refused(kv_key_client, kek) -> None:
    blob = build_transfer_blob(b"\x01" * 48, _public(kek), kek.id, generator=GENERATOR)
    assert "not a PKCS#8" in _refused(kv_key_client(), blob)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda b: {**b, "schema_version": "2.0.0"}, "schema_version"),
        (lambda b: {**b, "header": {**b["header"], "alg": "RSA-OAEP"}}, "header.alg"),
        (lambda b: {**b, "header": {**b["header"], "enc": "A256KW"}}, "header.enc"),
    ],
    ids=["schema_version", "alg", "enc"],
)
def test_blob_header_checks(kv_key_client, kek, target_rsa, mutate, expected) -> None:
    blob = json.loads(
        build_transfer_blob(_pkcs8(target_rsa), _public(kek), kek.id, generator=GENERATOR)
    )
    assert expected in _refused(kv_key_client(), json.dumps(mutate(blob)).encode())


def test_key_hsm_that_is_not_json_or_not_base64(kv: Emulator, kv_key_client) -> None:
    assert "JSON transfer blob" in _refused(kv_key_client(), b"not json at all")
    response = _raw_import(kv, "%%%not base64%%%")
    assert response.status_code == 400
    assert "base64url" in error_of(response.json())[2]


def test_padded_base64url_key_hsm_is_accepted(kv: Emulator, kek, target_rsa) -> None:
    blob = build_transfer_blob(_pkcs8(target_rsa), _public(kek), kek.id, generator=GENERATOR)
    padded = base64.urlsafe_b64encode(blob).decode()
    response = _raw_import(kv, padded)
    assert response.status_code == 200, response.text
    assert "key_hsm" not in response.json()["key"]


def test_pkcs1_and_sec1_targets_are_refused(kv_key_client, kek, target_rsa) -> None:
    """The BYOK specification requires PKCS#8; cryptography's loader would accept these too."""
    pkcs1 = target_rsa.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    blob = build_transfer_blob(pkcs1, _public(kek), kek.id, generator=GENERATOR)
    assert "not a PKCS#8" in _refused(kv_key_client(), blob)
    sec1 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    blob = build_transfer_blob(sec1, _public(kek), kek.id, generator=GENERATOR)
    assert "not a PKCS#8" in _refused(kv_key_client(), blob, kty="EC-HSM", crv="P-256")


def test_ec_hsm_import_needs_crv(kv_key_client, kek) -> None:
    target = _pkcs8(ec.generate_private_key(ec.SECP256R1()))
    blob = build_transfer_blob(target, _public(kek), kek.id, generator=GENERATOR)
    assert "crv" in _refused(kv_key_client(), blob, kty="EC-HSM", crv=None)


def test_standard_base64_key_hsm_is_refused(kv: Emulator, kek, target_rsa) -> None:
    """key_hsm is base64url (REST spec): the standard alphabet's + and / are not accepted."""
    for pad in range(3):  # "???" encodes to "Pz8/" at one of three alignments
        generator = "x" * pad + "???"
        blob = build_transfer_blob(_pkcs8(target_rsa), _public(kek), kek.id, generator=generator)
        standard = base64.b64encode(blob).decode()
        if "/" in standard:
            break
    assert "/" in standard
    response = _raw_import(kv, standard)
    assert response.status_code == 400
    assert "base64url" in error_of(response.json())[2]
