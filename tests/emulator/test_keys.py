"""The keys API through the real KeyClient / CryptographyClient over HTTPS."""

from __future__ import annotations

import re
import time
from urllib.parse import urlparse

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.keys import JsonWebKey, KeyType
from azure.keyvault.keys.crypto import (
    EncryptionAlgorithm,
    KeyWrapAlgorithm,
    SignatureAlgorithm,
)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from tests.emulator.helpers import error_of, raw, sha256, unique
from tests.fixtures.kvemu import PURGEABLE_VAULT, grant_baseline
from tools.kvemu import Emulator

VERSION = re.compile(r"^[0-9a-f]{32}$")


def _rsa_public(key) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(
        int.from_bytes(key.e, "big"), int.from_bytes(key.n, "big")
    ).public_key()


def test_create_rsa_ec_and_hsm_keys_with_ids_from_the_request(kv: Emulator, kv_key_client) -> None:
    client = kv_key_client()
    url = urlparse(kv.vault_url("keyvault-name"))
    rsa_key = client.create_rsa_key(unique("rsa"), size=2048)
    hsm_key = client.create_rsa_key(unique("rsahsm"), size=3072, hardware_protected=True)
    ec_key = client.create_ec_key(unique("ec"), curve="P-384")
    ec_hsm = client.create_ec_key(unique("echsm"), hardware_protected=True)

    assert rsa_key.key_type == KeyType.rsa and len(rsa_key.key.n) == 256
    assert hsm_key.key_type == KeyType.rsa_hsm and len(hsm_key.key.n) == 384
    assert ec_key.key_type == KeyType.ec and ec_key.key.crv == "P-384"
    assert ec_hsm.key_type == KeyType.ec_hsm and ec_hsm.key.crv == "P-256"
    for key in (rsa_key, hsm_key, ec_key, ec_hsm):
        parsed = urlparse(key.id)
        assert (parsed.scheme, parsed.netloc) == ("https", url.netloc)
        assert VERSION.match(key.properties.version)
        assert key.key.d is None and key.key.p is None  # public parts only
        assert key.properties.created_on is not None and key.properties.enabled
        assert key.properties.recoverable_days == 90
    assert sorted(rsa_key.key.key_ops) == sorted(
        ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]
    )
    assert sorted(ec_key.key.key_ops) == ["sign", "verify"]


def test_raw_bodies_use_integer_times_and_no_private_members(kv: Emulator, kv_key_client) -> None:
    name = unique("rawk")
    kv_key_client().create_rsa_key(name, size=2048)
    token = kv.issue_token()
    body = raw(kv, "GET", f"/keys/{name}/", token=token).json()
    assert isinstance(body["attributes"]["created"], int)
    assert body["attributes"]["recoveryLevel"] == "Recoverable"  # purge protection is on
    assert body["attributes"]["hsmPlatform"] == "0"  # a software key
    assert set(body["key"]) == {"kid", "kty", "key_ops", "n", "e"}
    assert "=" not in body["key"]["n"]


def test_get_latest_and_by_version(kv: Emulator, kv_key_client) -> None:
    client = kv_key_client()
    name = unique("ver")
    first = client.create_rsa_key(name, size=2048)
    second = client.create_rsa_key(name, size=2048)
    assert client.get_key(name).id == second.id  # GET /keys/name/ (trailing slash)
    assert client.get_key(name, first.properties.version).id == first.id
    token = kv.issue_token()
    assert raw(kv, "GET", f"/keys/{name}", token=token).json()["key"]["kid"] == second.id
    with pytest.raises(ResourceNotFoundError) as info:
        client.get_key(name, "0" * 32)
    assert info.value.error.code == "KeyNotFound"


def test_api_version_is_required_and_checked(kv: Emulator) -> None:
    token = kv.issue_token()
    missing = raw(kv, "GET", "/keys", token=token, api_version=None)
    assert missing.status_code == 400 and error_of(missing.json())[0] == "BadParameter"
    old = raw(kv, "GET", "/keys", token=token, api_version="7.3")
    assert old.status_code == 400 and "7.3" in error_of(old.json())[2]
    for version in ("7.4", "7.5", "7.6", "2025-07-01"):
        assert raw(kv, "GET", "/keys", token=token, api_version=version).status_code == 200


def test_invalid_names_and_key_types_are_bad_parameters(kv: Emulator, kv_key_client) -> None:
    client = kv_key_client()
    with pytest.raises(HttpResponseError) as info:
        client.create_rsa_key("bad_name", size=2048)
    assert info.value.status_code == 400 and info.value.error.code == "BadParameter"
    with pytest.raises(HttpResponseError) as info:
        client.create_rsa_key(unique("small"), size=1024)
    assert "1024" in info.value.error.message
    with pytest.raises(HttpResponseError) as info:
        client.create_oct_key(unique("oct"))
    assert "Managed HSM" in info.value.error.message
    with pytest.raises(HttpResponseError) as info:
        client.create_ec_key(unique("ecops"), key_operations=["wrapKey"])
    assert 'Unsupported key operation(s): "wrapKey"' in info.value.error.message


def test_import_plaintext_software_keys(kv: Emulator, kv_key_client, kv_crypto_client) -> None:
    client = kv_key_client()
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    n = private.private_numbers()

    def b(i: int) -> bytes:
        return i.to_bytes((i.bit_length() + 7) // 8, "big")

    jwk = JsonWebKey(
        kty="RSA",
        n=b(n.public_numbers.n),
        e=b(n.public_numbers.e),
        d=b(n.d),
        p=b(n.p),
        q=b(n.q),
        dp=b(n.dmp1),
        dq=b(n.dmq1),
        qi=b(n.iqmp),
        key_ops=["sign", "verify"],
    )
    imported = client.import_key(unique("imp"), jwk)
    assert imported.key.n == b(n.public_numbers.n) and imported.key.d is None
    digest = sha256(b"imported")
    result = kv_crypto_client(imported.id).sign(SignatureAlgorithm.rs256, digest)
    private.public_key().verify(
        result.signature, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
    )

    ec_private = ec.generate_private_key(ec.SECP256R1())
    numbers = ec_private.private_numbers()
    ec_jwk = JsonWebKey(
        kty="EC",
        crv="P-256",
        x=numbers.public_numbers.x.to_bytes(32, "big"),
        y=numbers.public_numbers.y.to_bytes(32, "big"),
        d=numbers.private_value.to_bytes(32, "big"),
        key_ops=["sign", "verify"],
    )
    ec_imported = client.import_key(unique("impec"), ec_jwk)
    assert ec_imported.key.x == numbers.public_numbers.x.to_bytes(32, "big")


def test_list_keys_and_versions_page_with_absolute_next_links(kv: Emulator, kv_key_client) -> None:
    client = kv_key_client("second-vault")
    prefix = unique("page")
    names = [f"{prefix}-{i}" for i in range(3)]
    for name in names:
        client.create_ec_key(name)
    for _ in range(4):
        client.create_ec_key(names[0])
    listed = [p.name for p in client.list_properties_of_keys(max_page_size=2)]
    assert [n for n in listed if n.startswith(prefix)] == names
    versions = list(client.list_properties_of_key_versions(names[0], max_page_size=2))
    assert len(versions) == 5 and all(VERSION.match(v.version) for v in versions)

    token = kv.issue_token()
    page = raw(kv, "GET", "/keys", vault="second-vault", token=token, params={"maxresults": "2"})
    link = page.json()["nextLink"]
    assert link.startswith(kv.vault_url("second-vault") + "/keys?")
    assert "maxresults=2" in link and "$skiptoken=" in link
    bad = raw(kv, "GET", "/keys", token=token, params={"maxresults": "26"})
    assert bad.status_code == 400


def test_update_attributes_key_ops_and_tags(kv: Emulator, kv_key_client) -> None:
    client = kv_key_client()
    name = unique("upd")
    key = client.create_rsa_key(name, size=2048, tags={"a": "1"})
    later = int(time.time()) + 3600
    updated = client.update_key_properties(
        name,
        key.properties.version,
        enabled=False,
        not_before=None,
        expires_on=None,
        key_operations=["sign", "verify"],
        tags={"b": "2"},
    )
    assert updated.properties.enabled is False
    assert updated.properties.tags == {"b": "2"}
    assert sorted(updated.key.key_ops) == ["sign", "verify"]
    token = kv.issue_token()
    patched = raw(
        kv,
        "PATCH",
        f"/keys/{name}/",
        token=token,
        json_body={"attributes": {"exp": later, "nbf": later - 7200}},
    ).json()
    assert patched["attributes"]["exp"] == later and patched["attributes"]["enabled"] is False
    assert client.get_key(name).properties.expires_on.timestamp() == later  # disabled: still read
    [listed] = list(client.list_properties_of_key_versions(name))
    assert listed.expires_on.timestamp() == later and listed.enabled is False


def test_soft_delete_recover_and_purge(kv: Emulator, kv_key_client) -> None:
    client = kv_key_client(PURGEABLE_VAULT)
    name = unique("del")
    client.create_rsa_key(name, size=2048)
    poller = client.begin_delete_key(name, _polling_interval=0)
    deleted = poller.result()  # the DELETE's answer; the deletion itself is still running
    assert deleted.recovery_id == f"{kv.vault_url(PURGEABLE_VAULT)}/deletedkeys/{name}"
    assert deleted.deleted_date and deleted.scheduled_purge_date
    with pytest.raises(ResourceNotFoundError):
        client.get_key(name)
    # until the deletion completes: not yet under /deletedkeys, and the name cannot be reused
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_key(name)
    with pytest.raises(ResourceExistsError) as info:
        client.create_rsa_key(name, size=2048)
    assert error_of(info.value.response.json()) == (
        "Conflict",
        "ObjectIsBeingDeleted",
        f"Key {name} is currently being deleted and cannot be re-created; retry later.",
    )
    poller.wait()  # the SDK polls GET /deletedkeys/<name> until it answers
    with pytest.raises(ResourceExistsError) as info:
        client.create_rsa_key(name, size=2048)
    assert info.value.status_code == 409
    assert info.value.response.json()["error"]["innererror"]["code"] == (
        "ObjectIsDeletedButRecoverable"
    )
    assert name in [d.name for d in client.list_deleted_keys()]
    assert client.get_deleted_key(name).name == name

    recovered = client.begin_recover_deleted_key(name, _polling_interval=0).result()
    assert recovered.name == name and client.get_key(name).id == recovered.id

    client.begin_delete_key(name, _polling_interval=0).wait()
    client.purge_deleted_key(name)
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_key(name)
    assert client.create_rsa_key(name, size=2048).name == name  # the name is free again


def test_sign_verify_algorithms(kv: Emulator, kv_key_client, kv_crypto_client) -> None:
    client = kv_key_client()
    rsa_key = client.create_rsa_key(unique("sig"), size=2048)
    crypto = kv_crypto_client(rsa_key.id)
    public = _rsa_public(rsa_key.key)
    for alg, hash_cls, pad in (
        (SignatureAlgorithm.rs256, hashes.SHA256, padding.PKCS1v15()),
        (SignatureAlgorithm.rs384, hashes.SHA384, padding.PKCS1v15()),
        (SignatureAlgorithm.rs512, hashes.SHA512, padding.PKCS1v15()),
        (
            SignatureAlgorithm.ps256,
            hashes.SHA256,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
        ),
    ):
        h = hashes.Hash(hash_cls())
        h.update(alg.value.encode())
        digest = h.finalize()
        signature = crypto.sign(alg, digest).signature
        public.verify(signature, digest, pad, utils.Prehashed(hash_cls()))
        assert crypto.verify(alg, digest, signature).is_valid

    for curve, alg in (
        ("P-256", SignatureAlgorithm.es256),
        ("P-384", SignatureAlgorithm.es384),
        ("P-521", SignatureAlgorithm.es512),
    ):
        key = client.create_ec_key(unique("ecs"), curve=curve)
        size = {"P-256": 32, "P-384": 48, "P-521": 64}[curve]
        digest = bytes(range(size))
        signature = kv_crypto_client(key.id).sign(alg, digest).signature
        assert kv_crypto_client(key.id).verify(alg, digest, signature).is_valid


def test_remote_encrypt_verify_wrap_when_get_is_not_granted(
    kv: Emulator, kv_key_client, kv_crypto_client
) -> None:
    """Without keys/get the SDK cannot work locally, so every call reaches the emulator."""
    client = kv_key_client()
    key = client.create_rsa_key(unique("remote"), size=2048)
    kv.clear_grants("keyvault-name")
    kv.grant(
        "keyvault-name",
        kv.system_identity.object_id,
        ["sign", "verify", "encrypt", "decrypt", "wrapKey", "unwrapKey"],
    )
    before = len(kv.recorded())
    crypto = kv_crypto_client(key.id)
    for alg in (EncryptionAlgorithm.rsa_oaep, EncryptionAlgorithm.rsa_oaep_256):
        encrypted = crypto.encrypt(alg, b"secret bytes")
        assert crypto.decrypt(alg, encrypted.ciphertext).plaintext == b"secret bytes"
    for alg in (KeyWrapAlgorithm.rsa_oaep, KeyWrapAlgorithm.rsa_oaep_256):
        wrapped = crypto.wrap_key(alg, b"k" * 32)
        assert crypto.unwrap_key(alg, wrapped.encrypted_key).key == b"k" * 32
    digest = sha256(b"v")
    signature = crypto.sign(SignatureAlgorithm.ps256, digest).signature
    assert crypto.verify(SignatureAlgorithm.ps256, digest, signature).is_valid
    assert not crypto.verify(SignatureAlgorithm.ps256, sha256(b"w"), signature).is_valid
    seen = {r.operation_id for r in kv.recorded()[before:] if r.status == 200}
    assert {"encrypt", "decrypt", "wrapKey", "unwrapKey", "sign", "verify"} <= seen


def test_key_ops_enabled_and_validity_window_are_enforced(
    kv: Emulator, kv_key_client, kv_crypto_client
) -> None:
    client = kv_key_client()
    key = client.create_rsa_key(unique("ops"), size=2048, key_operations=["sign", "verify"])
    crypto = kv_crypto_client(key.id)
    kv.clear_grants("keyvault-name")
    kv.grant("keyvault-name", kv.system_identity.object_id, ["decrypt", "sign", "verify"])
    with pytest.raises(HttpResponseError) as info:
        crypto.decrypt(EncryptionAlgorithm.rsa_oaep, b"x" * 256)
    assert info.value.status_code == 403
    assert error_of(info.value.response.json()) == (
        "Forbidden",
        "KeyOperationForbidden",
        "Operation decrypt is not permitted on this key.",
    )
    grant_baseline(kv)

    past = int(time.time()) - 3600
    expired = client.create_rsa_key(unique("exp"), size=2048, expires_on=None)
    client.update_key_properties(expired.name, expires_on=_dt(past))
    disabled = client.create_rsa_key(unique("dis"), size=2048, enabled=False)
    # without keys/get the SDK cannot check locally: the emulator must refuse
    kv.clear_grants("keyvault-name")
    kv.grant("keyvault-name", kv.system_identity.object_id, ["sign", "verify"])
    digest = sha256(b"e")
    with pytest.raises(HttpResponseError) as info:
        kv_crypto_client(expired.id).sign(SignatureAlgorithm.rs256, digest)
    assert info.value.status_code == 403 and "expired" in info.value.error.message

    with pytest.raises(HttpResponseError) as info:
        kv_crypto_client(disabled.id).sign(SignatureAlgorithm.rs256, digest)
    assert info.value.status_code == 403 and "disabled" in info.value.error.message


def _dt(ts: int):
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.UTC)


def test_kek_refuses_everything_but_import_and_serves_its_public_key(
    kv: Emulator, kv_key_client, kv_crypto_client
) -> None:
    client = kv_key_client()
    kek = client.create_rsa_key(
        unique("kek"), size=2048, hardware_protected=True, key_operations=["import"]
    )
    assert kek.key.key_ops == ["import"] and kek.key_type == KeyType.rsa_hsm
    fetched = client.get_key(kek.name, kek.properties.version)
    assert fetched.key.n == kek.key.n and fetched.key.d is None
    with pytest.raises(HttpResponseError) as info:
        kv_crypto_client(kek.id).sign(SignatureAlgorithm.rs256, sha256(b"k"))
    assert info.value.status_code == 403
    with pytest.raises(HttpResponseError) as info:
        client.create_rsa_key(
            unique("kek2"), size=2048, hardware_protected=True, key_operations=["import", "sign"]
        )
    assert info.value.status_code == 400
    with pytest.raises(HttpResponseError) as info:
        client.create_rsa_key(unique("kek3"), size=2048, key_operations=["import"])
    assert "RSA-HSM" in info.value.error.message


def test_rotate_adds_a_version(kv: Emulator, kv_key_client) -> None:
    client = kv_key_client()
    name = unique("rot")
    first = client.create_ec_key(name)
    rotated = client.rotate_key(name)
    assert rotated.properties.version != first.properties.version
    assert rotated.key.crv == "P-256"
    assert len(list(client.list_properties_of_key_versions(name))) == 2


def test_managed_hsm_vault_allows_oct_keys(tmp_path, monkeypatch, conformance) -> None:
    from azure.identity import ManagedIdentityCredential
    from azure.keyvault.keys import KeyClient
    from azure.keyvault.keys.crypto import CryptographyClient

    from tests.emulator.helpers import assert_conforms

    with Emulator(hsm_vaults={"test-hsm": 0}, cert_dir=tmp_path, record=True) as emulator:
        emulator.grant("test-hsm", emulator.system_identity.object_id, "Key Vault Crypto Officer")
        monkeypatch.setenv("IDENTITY_ENDPOINT", emulator.identity_endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", emulator.identity_header)
        credential = ManagedIdentityCredential()
        client = KeyClient(
            emulator.vault_url("test-hsm"),
            credential,
            connection_verify=emulator.ca_path,
            verify_challenge_resource=False,
        )
        key = client.create_oct_key(unique("aes"), size=256, hardware_protected=True)
        assert key.key_type == KeyType.oct_hsm and key.key.k is None
        crypto = CryptographyClient(
            key, credential, connection_verify=emulator.ca_path, verify_challenge_resource=False
        )
        wrapped = crypto.wrap_key(KeyWrapAlgorithm.aes_256, b"w" * 32)
        assert crypto.unwrap_key(KeyWrapAlgorithm.aes_256, wrapped.encrypted_key).key == b"w" * 32
        sealed = crypto.encrypt(EncryptionAlgorithm.a256_gcm, b"plain")
        opened = crypto.decrypt(
            EncryptionAlgorithm.a256_gcm,
            sealed.ciphertext,
            iv=sealed.iv,
            authentication_tag=sealed.tag,
        )
        assert opened.plaintext == b"plain"
        assert_conforms(emulator, conformance)
