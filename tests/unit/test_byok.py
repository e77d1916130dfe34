"""shared.byok: the BYOK transfer blob (CKM_RSA_AES_KEY_WRAP), checked with an in-test unwrap."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding

from shared.byok import build_transfer_blob

KID = "https://myvault.vault.azure.net/keys/KEKforBYOK/0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def kek() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _unwrap(blob: bytes, kek: rsa.RSAPrivateKey) -> tuple[bytes, bytes]:
    """Return (aes_key, target) the way the service does."""
    parsed = json.loads(blob)
    ciphertext = base64.urlsafe_b64decode(
        parsed["ciphertext"] + "=" * (-len(parsed["ciphertext"]) % 4)
    )
    size = kek.key_size // 8
    aes_key = kek.decrypt(
        ciphertext[:size],
        padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None),  # noqa: S303 - BYOK spec
    )
    return aes_key, aes_key_unwrap_with_padding(aes_key, ciphertext[size:])


def _pkcs8(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_blob_shape(kek) -> None:
    blob = build_transfer_blob(b"\x00" * 32, kek.public_key(), KID, generator="unit 1.0")
    parsed = json.loads(blob.decode("utf-8"))
    assert set(parsed) == {"schema_version", "header", "ciphertext", "generator"}
    assert parsed["schema_version"] == "1.0.0"
    assert parsed["header"] == {"kid": KID, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"}
    assert parsed["generator"] == "unit 1.0"
    assert "=" not in parsed["ciphertext"]
    assert set(parsed["ciphertext"]) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )


@pytest.mark.parametrize(
    "target",
    [
        lambda: _pkcs8(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        lambda: _pkcs8(ec.generate_private_key(ec.SECP256R1())),
        lambda: bytes(range(32)),  # a raw AES-256 key (Managed HSM)
    ],
    ids=["rsa-2048", "ec-p256", "oct-256"],
)
def test_round_trip_returns_the_exact_target_bytes(kek, target) -> None:
    data = target()
    aes_key, unwrapped = _unwrap(
        build_transfer_blob(data, kek.public_key(), KID, generator="g"), kek
    )
    assert unwrapped == data
    assert len(aes_key) == 32


@pytest.mark.parametrize("kek_bits", [2048, 3072])
def test_ciphertext_is_rsa_part_then_kwp_part(kek_bits) -> None:
    kek = rsa.generate_private_key(public_exponent=65537, key_size=kek_bits)
    data = b"\x07" * 138  # a P-256 PKCS#8 is 138 bytes
    parsed = json.loads(build_transfer_blob(data, kek.public_key(), KID, generator="g"))
    raw = base64.urlsafe_b64decode(parsed["ciphertext"] + "=" * (-len(parsed["ciphertext"]) % 4))
    assert len(raw) == kek_bits // 8 + (-(-len(data) // 8) * 8 + 8)


def test_fresh_aes_key_per_blob(kek) -> None:
    first, _ = _unwrap(build_transfer_blob(b"x" * 20, kek.public_key(), KID, generator="g"), kek)
    second, _ = _unwrap(build_transfer_blob(b"x" * 20, kek.public_key(), KID, generator="g"), kek)
    assert first != second


def test_target_bytes_are_not_parsed(kek) -> None:
    # Any bytes are wrapped as given; validating the key is the vault's job.
    _, unwrapped = _unwrap(
        build_transfer_blob(b"not a key", kek.public_key(), KID, generator="g"), kek
    )
    assert unwrapped == b"not a key"


def test_refuses_unsuitable_inputs(kek) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the refusal under test
    with pytest.raises(ValueError, match="2048, 3072 or 4096"):
        build_transfer_blob(b"k", small.public_key(), KID, generator="g")
    with pytest.raises(TypeError):
        build_transfer_blob(
            b"k", ec.generate_private_key(ec.SECP256R1()).public_key(), KID, generator="g"
        )
    with pytest.raises(ValueError, match="versioned key id"):
        build_transfer_blob(b"k", kek.public_key(), "KEKforBYOK", generator="g")
    with pytest.raises(ValueError, match="empty"):
        build_transfer_blob(b"", kek.public_key(), KID, generator="g")
