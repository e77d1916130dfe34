"""shared/seal.py with the development seal key (LocalSealKey): envelope encryption of key
material and credentials, bound to the row it belongs to."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from shared.errors import SealError
from shared.seal import LocalSealKey, Sealed, Sealer, credentials_context, material_context

NONCE = 12  # AES-GCM nonce, in front of the ciphertext and of the wrapped data key
TAG = 16  # AES-GCM tag, after them
CONTEXT = material_context("keymgmt", "k", 1)


@pytest.fixture
def seal_key() -> LocalSealKey:
    return LocalSealKey(os.urandom(32))


@pytest.fixture
def sealer(seal_key: LocalSealKey) -> Sealer:
    return Sealer(seal_key)


def flip(data: bytes, index: int) -> bytes:
    changed = bytearray(data)
    changed[index] ^= 0x01
    return bytes(changed)


# -- the seal key -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 16, 24, 31, 33, 64])
def test_the_local_seal_key_must_be_256_bits(size):
    with pytest.raises(ValueError, match="must be 32 bytes"):
        LocalSealKey(os.urandom(size))


def test_the_key_id_names_the_key_without_revealing_it():
    key = os.urandom(32)
    first, again, other = LocalSealKey(key), LocalSealKey(key), LocalSealKey(os.urandom(32))
    assert first.key_id == again.key_id  # the same key, the same id (rows open after restart)
    assert first.key_id != other.key_id
    assert first.key_id.startswith("local:")
    assert key.hex() not in first.key_id and key.hex()[:16] not in first.key_id


def test_wrap_and_unwrap_round_trip_with_a_fresh_nonce_each_time(seal_key):
    dek = os.urandom(32)
    wrapped, key_id = seal_key.wrap(dek)
    again, _ = seal_key.wrap(dek)
    assert key_id == seal_key.key_id
    assert len(wrapped) == NONCE + len(dek) + TAG
    assert wrapped != again and wrapped[:NONCE] != again[:NONCE]
    assert seal_key.unwrap(wrapped, key_id) == dek
    assert seal_key.unwrap(again, key_id) == dek


def test_unwrap_refuses_a_data_key_wrapped_by_another_seal_key(seal_key):
    other = LocalSealKey(os.urandom(32))
    wrapped, key_id = other.wrap(os.urandom(32))
    with pytest.raises(SealError) as caught:
        seal_key.unwrap(wrapped, key_id)
    assert str(caught.value) == (
        f"sealed with another seal key ({other.key_id}); this service has {seal_key.key_id}"
    )
    # Claiming this key's id does not help: the wrapped key does not open under it.
    with pytest.raises(SealError, match="the wrapped data key does not open with the seal key"):
        seal_key.unwrap(wrapped, seal_key.key_id)


# -- seal and open ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "plaintext",
    [b"", b"x", bytes(range(32)), bytes(range(256)) * 16],
    ids=["empty", "one-byte", "32-bytes", "4-KiB"],
)
def test_round_trip(sealer, seal_key, plaintext):
    sealed = sealer.seal(plaintext, CONTEXT)
    assert sealed.seal_key_id == seal_key.key_id
    assert len(sealed.ciphertext) == NONCE + len(plaintext) + TAG
    assert sealer.open(sealed, CONTEXT) == plaintext


def test_another_sealer_with_the_same_seal_key_opens_it():
    key = os.urandom(32)
    sealed = Sealer(LocalSealKey(key)).seal(b"material", CONTEXT)
    assert Sealer(LocalSealKey(key)).open(sealed, CONTEXT) == b"material"


def test_a_sealer_with_another_seal_key_refuses_naming_both_keys(sealer, seal_key):
    sealed = sealer.seal(b"material", CONTEXT)
    other = LocalSealKey(os.urandom(32))
    with pytest.raises(SealError) as caught:
        Sealer(other).open(sealed, CONTEXT)
    assert seal_key.key_id in str(caught.value) and other.key_id in str(caught.value)


def test_the_ciphertext_does_not_contain_the_plaintext(sealer):
    plaintext = os.urandom(64)
    sealed = sealer.seal(plaintext, CONTEXT)
    assert plaintext not in sealed.ciphertext
    assert plaintext not in sealed.wrapped_dek


@pytest.mark.parametrize(
    "other",
    [
        material_context("keymgmt", "k", 2),  # another version
        material_context("keymgmt", "other", 1),  # another key
        material_context("other", "k", 1),  # another mount
        credentials_context("keymgmt", "k"),  # another purpose
        CONTEXT + " ",
        CONTEXT.upper(),
        "",
    ],
)
def test_the_context_binds_opening_with_another_fails_with_the_engine_s_error(sealer, other):
    sealed = sealer.seal(b"material", CONTEXT)
    with pytest.raises(SealError) as caught:
        sealer.open(sealed, other)
    assert str(caught.value) == (
        f"sealed data does not open for {other}: the row was tampered with or moved from "
        "another key or version"
    )
    assert caught.value.status == 500
    assert sealer.open(sealed, CONTEXT) == b"material"  # the right context still opens it


@pytest.mark.parametrize("index", [0, NONCE - 1, NONCE, -TAG - 1, -TAG, -1])
def test_a_changed_ciphertext_byte_fails(sealer, index):
    """Any byte: the nonce, the encrypted bytes, the tag."""
    sealed = sealer.seal(b"some key material", CONTEXT)
    with pytest.raises(SealError, match="tampered with"):
        sealer.open(replace(sealed, ciphertext=flip(sealed.ciphertext, index)), CONTEXT)


@pytest.mark.parametrize("index", [0, NONCE - 1, NONCE, -TAG, -1])
def test_a_changed_wrapped_data_key_byte_fails(sealer, index):
    sealed = sealer.seal(b"some key material", CONTEXT)
    with pytest.raises(SealError, match="the wrapped data key does not open with the seal key"):
        sealer.open(replace(sealed, wrapped_dek=flip(sealed.wrapped_dek, index)), CONTEXT)


def test_appended_or_cut_bytes_fail(sealer):
    sealed = sealer.seal(b"some key material", CONTEXT)
    for ciphertext in (
        sealed.ciphertext + b"\x00",
        sealed.ciphertext[:-1],
        sealed.ciphertext[:NONCE],
    ):
        with pytest.raises(SealError):
            sealer.open(replace(sealed, ciphertext=ciphertext), CONTEXT)
    for wrapped in (
        sealed.wrapped_dek + b"\x00",
        sealed.wrapped_dek[:-1],
        sealed.wrapped_dek[:NONCE],
    ):
        with pytest.raises(SealError):
            sealer.open(replace(sealed, wrapped_dek=wrapped), CONTEXT)


@pytest.mark.parametrize("field", ["ciphertext", "wrapped_dek"])
@pytest.mark.parametrize("length", [0, 5])
def test_a_truncated_sealed_value_fails_with_seal_error(sealer, field, length):
    sealed = sealer.seal(b"some key material", CONTEXT)
    cut = replace(sealed, **{field: getattr(sealed, field)[:length]})
    with pytest.raises(SealError):
        sealer.open(cut, CONTEXT)


def test_a_wrapped_data_key_from_another_sealed_value_fails(sealer):
    """Each value has its own data key: swapping the wrapped keys of two rows opens neither,
    even under the same seal key and context."""
    first = sealer.seal(b"first", CONTEXT)
    second = sealer.seal(b"second", CONTEXT)
    with pytest.raises(SealError, match="tampered with"):
        sealer.open(replace(first, wrapped_dek=second.wrapped_dek), CONTEXT)
    with pytest.raises(SealError, match="tampered with"):
        sealer.open(replace(second, ciphertext=first.ciphertext), CONTEXT)


def test_each_seal_uses_a_fresh_data_key_and_nonce(sealer, seal_key):
    first = sealer.seal(b"same plaintext", CONTEXT)
    second = sealer.seal(b"same plaintext", CONTEXT)
    assert first != second
    assert first.ciphertext != second.ciphertext
    assert first.ciphertext[:NONCE] != second.ciphertext[:NONCE]
    assert first.wrapped_dek != second.wrapped_dek
    dek1 = seal_key.unwrap(first.wrapped_dek, first.seal_key_id)
    dek2 = seal_key.unwrap(second.wrapped_dek, second.seal_key_id)
    assert len(dek1) == len(dek2) == 32  # 256-bit data keys
    assert dek1 != dek2
    assert {sealer.open(first, CONTEXT), sealer.open(second, CONTEXT)} == {b"same plaintext"}


def test_many_seals_never_repeat_a_nonce_or_data_key(sealer, seal_key):
    sealed = [sealer.seal(b"v", CONTEXT) for _ in range(200)]
    assert len({s.ciphertext[:NONCE] for s in sealed}) == len(sealed)
    assert len({seal_key.unwrap(s.wrapped_dek, s.seal_key_id) for s in sealed}) == len(sealed)


# -- what a Sealed value shows ------------------------------------------------------------------


def test_repr_and_str_of_sealed_show_no_key_material(sealer, seal_key):
    plaintext = b"very-secret-material"
    sealed = sealer.seal(plaintext, CONTEXT)
    dek = seal_key.unwrap(sealed.wrapped_dek, sealed.seal_key_id)
    for shown in (repr(sealed), str(sealed), f"{sealed}", f"{sealed!r}", repr([sealed])):
        assert shown.startswith("Sealed(seal_key_id=") or shown.startswith("[Sealed(")
        assert seal_key.key_id in shown
        for secret in (plaintext, dek, sealed.wrapped_dek, sealed.ciphertext):
            assert repr(secret) not in shown
            assert secret.hex() not in shown
            assert repr(secret)[2:12] not in shown  # not even a prefix of the bytes
        assert "very-secret" not in shown


def test_sealed_is_a_value():
    sealed = Sealed("kid", b"dek", b"ct")
    assert sealed == Sealed("kid", b"dek", b"ct")
    with pytest.raises(AttributeError):
        sealed.ciphertext = b"other"  # type: ignore[misc]


# -- contexts -----------------------------------------------------------------------------------


def test_material_context_names_mount_key_and_version():
    assert material_context("keymgmt", "k", 1) == "azure-keymgmt/v1/key-material/keymgmt/k/1"
    contexts = {
        material_context(mount, key, version)
        for mount in ("keymgmt", "other")
        for key in ("k", "k2")
        for version in (1, 2, 10)
    }
    assert len(contexts) == 2 * 2 * 3  # each differs from every other


def test_credentials_context_names_mount_and_provider():
    assert credentials_context("keymgmt", "p") == "azure-keymgmt/v1/kms-credentials/keymgmt/p"
    contexts = {credentials_context(m, p) for m in ("keymgmt", "other") for p in ("p", "p2")}
    assert len(contexts) == 4


def test_material_and_credentials_contexts_never_coincide():
    materials = {material_context(m, k, v) for m in ("a", "b") for k in ("a", "b") for v in (1, 2)}
    credentials = {credentials_context(m, p) for m in ("a", "b") for p in ("a", "b", "a/1")}
    assert materials.isdisjoint(credentials)


def test_credentials_sealed_for_one_provider_do_not_open_for_another(sealer):
    sealed = sealer.seal(b'{"client_secret": "s"}', credentials_context("keymgmt", "p"))
    with pytest.raises(SealError, match="kms-credentials/keymgmt/p2"):
        sealer.open(sealed, credentials_context("keymgmt", "p2"))
    with pytest.raises(SealError, match="kms-credentials/other/p"):
        sealer.open(sealed, credentials_context("other", "p"))
    assert sealer.open(sealed, credentials_context("keymgmt", "p")) == b'{"client_secret": "s"}'
