"""The vault side of BYOK: unwrap a ``key_hsm`` transfer blob with this vault's KEK.

Each step of Microsoft's BYOK specification (CKM_RSA_AES_KEY_WRAP) is checked in order and a
failure becomes 400 ``BadParameter`` with a message naming the step.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding

from .errors import bad_parameter
from .keys import CURVE_NAMES, OCT_SIZES, KeyMaterial, check_rsa_size, family
from .tokens import b64url_decode

SCHEMA_VERSION = "1.0.0"
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")
ALG = "dir"
ENC = "CKM_RSA_AES_KEY_WRAP"


class Kek:
    """What the unwrap needs to know about the key named by ``header.kid``."""

    def __init__(
        self, *, kid: str, kty: str, key_ops: list[str], enabled: bool, material: KeyMaterial
    ) -> None:
        self.kid = kid
        self.kty = kty
        self.key_ops = key_ops
        self.enabled = enabled
        self.material = material


def _decode_blob(key_hsm: str) -> dict[str, Any]:
    # base64url, padded or not; the standard alphabet (+ and /) is not base64url
    if not _BASE64URL.fullmatch(key_hsm):
        raise bad_parameter("BYOK: key_hsm is not valid base64url.")
    try:
        raw = b64url_decode(key_hsm)
    except ValueError as exc:
        raise bad_parameter("BYOK: key_hsm is not valid base64url.") from exc
    try:
        blob = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_parameter(
            "BYOK: key_hsm does not decode to a JSON transfer blob "
            '({"schema_version", "header", "ciphertext", "generator"}).'
        ) from exc
    if not isinstance(blob, dict):
        raise bad_parameter("BYOK: the transfer blob must be a JSON object.")
    return blob


def unwrap_transfer_blob(
    key_hsm: str, *, find_kek: Callable[[str], Kek | None], is_managed_hsm: bool
) -> KeyMaterial:
    """Validate and unwrap; return the target key material. Never logs key material."""
    blob = _decode_blob(key_hsm)
    if blob.get("schema_version") != SCHEMA_VERSION:
        raise bad_parameter(
            f"BYOK: unsupported transfer blob schema_version {blob.get('schema_version')!r}; "
            f"expected {SCHEMA_VERSION!r}."
        )
    header = blob.get("header")
    if not isinstance(header, dict):
        raise bad_parameter("BYOK: the transfer blob has no header object.")
    if header.get("alg") != ALG:
        raise bad_parameter(
            f"BYOK: unsupported header.alg {header.get('alg')!r}; expected {ALG!r}."
        )
    if header.get("enc") != ENC:
        raise bad_parameter(
            f"BYOK: unsupported header.enc {header.get('enc')!r}; expected {ENC!r}."
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise bad_parameter("BYOK: header.kid must name the key exchange key (KEK) of this vault.")
    kek = find_kek(kid)
    if kek is None:
        raise bad_parameter(
            f"BYOK: the key exchange key {kid} named in header.kid is not a key of this vault. "
            "Download the KEK public key from the vault you import into."
        )
    if kek.kty != "RSA-HSM" or not isinstance(kek.material, rsa.RSAPrivateKey):
        raise bad_parameter(f"BYOK: the key exchange key {kid} is not an RSA-HSM key.")
    if not kek.enabled:
        raise bad_parameter(f"BYOK: the key exchange key {kid} is disabled.")
    if kek.key_ops != ["import"]:
        raise bad_parameter(
            f'BYOK: the key exchange key {kid} must have key_ops exactly ["import"]; it has '
            f"{json.dumps(kek.key_ops)}."
        )
    ciphertext_text = blob.get("ciphertext")
    if not isinstance(ciphertext_text, str):
        raise bad_parameter("BYOK: the transfer blob has no ciphertext.")
    try:
        ciphertext = b64url_decode(ciphertext_text)
    except ValueError as exc:
        raise bad_parameter("BYOK: the transfer blob ciphertext is not valid base64url.") from exc
    modulus_len = (kek.material.key_size + 7) // 8
    if len(ciphertext) <= modulus_len + 8:
        raise bad_parameter(
            "BYOK: the ciphertext is too short: it must be the RSA-OAEP part "
            f"({modulus_len} bytes for this KEK) followed by the AES key wrap part."
        )
    try:
        aes_key = kek.material.decrypt(
            ciphertext[:modulus_len],
            padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None),  # noqa: S303
        )
    except ValueError as exc:
        raise bad_parameter(
            f"BYOK: RSA-OAEP (SHA-1) decryption of the transfer key with KEK {kid} failed: the "
            "blob was wrapped for a different key exchange key, or its RSA part was modified."
        ) from exc
    if len(aes_key) not in (16, 24, 32):
        raise bad_parameter(
            f"BYOK: the transfer key is {len(aes_key)} bytes; an AES key of 16, 24 or 32 bytes "
            "is required."
        )
    try:
        target = aes_key_unwrap_with_padding(aes_key, ciphertext[modulus_len:])
    except InvalidUnwrap as exc:
        raise bad_parameter(
            "BYOK: AES key wrap with padding (RFC 5649) unwrap of the target key failed the "
            "integrity check: the key wrap part of the ciphertext was modified or truncated."
        ) from exc
    return _target_material(target, is_managed_hsm=is_managed_hsm)


def is_pkcs8(der: bytes) -> bool:
    """Whether DER bytes are a PKCS#8 PrivateKeyInfo: SEQUENCE { INTEGER version,
    SEQUENCE algorithm, ... }. PKCS#1 (RSAPrivateKey) and SEC1 (ECPrivateKey) follow the version
    with an INTEGER or OCTET STRING instead, and cryptography's loader accepts those too."""

    def header(pos: int) -> tuple[int, int, int] | None:  # tag, content start, content length
        if pos + 2 > len(der):
            return None
        tag, first = der[pos], der[pos + 1]
        if first < 0x80:
            return tag, pos + 2, first
        count = first & 0x7F
        if count == 0 or count > 4 or pos + 2 + count > len(der):
            return None
        return tag, pos + 2 + count, int.from_bytes(der[pos + 2 : pos + 2 + count], "big")

    outer = header(0)
    if outer is None or outer[0] != 0x30:
        return False
    version = header(outer[1])
    if version is None or version[0] != 0x02:
        return False
    algorithm = header(version[1] + version[2])
    return algorithm is not None and algorithm[0] == 0x30


def _target_material(target: bytes, *, is_managed_hsm: bool) -> KeyMaterial:
    if not is_pkcs8(target):
        if is_managed_hsm and len(target) * 8 in OCT_SIZES:
            return target
        raise bad_parameter(
            "BYOK: the unwrapped target key is not a PKCS#8 (RFC 5208) private key."
        )
    try:
        key = serialization.load_der_private_key(target, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        if is_managed_hsm and len(target) * 8 in OCT_SIZES:
            return target
        raise bad_parameter(
            "BYOK: the unwrapped target key is not a PKCS#8 (RFC 5208) private key."
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise bad_parameter("BYOK: the target key must be an RSA or EC private key.")
    return key


def check_target_type(material: KeyMaterial, *, kty: str, crv: str | None) -> str | None:
    """The unwrapped key must agree with the request's ``kty``/``crv``; return the curve."""
    wanted = family(kty)
    if isinstance(material, rsa.RSAPrivateKey):
        got = "RSA"
    elif isinstance(material, ec.EllipticCurvePrivateKey):
        got = "EC"
    else:
        got = "oct"
    if got != wanted:
        raise bad_parameter(
            f"BYOK: key type mismatch: the request says kty {kty!r} but the transfer blob holds "
            f"an {got} key."
        )
    if isinstance(material, rsa.RSAPrivateKey):
        if material.key_size < 2048:
            raise bad_parameter(
                f"BYOK: the target RSA key is {material.key_size} bits; Key Vault accepts RSA "
                "keys of 2048, 3072 or 4096 bits."
            )
        check_rsa_size(material.key_size)
        return None
    if isinstance(material, ec.EllipticCurvePrivateKey):
        actual = CURVE_NAMES.get(material.curve.name)
        if actual is None:
            raise bad_parameter(
                f"BYOK: the target key's curve {material.curve.name} is not supported."
            )
        if crv is not None and crv != actual:
            raise bad_parameter(
                f"BYOK: curve mismatch: the request says crv {crv!r} but the transfer blob holds "
                f"a {actual} key."
            )
        return actual
    if len(material) * 8 not in OCT_SIZES:
        raise bad_parameter("BYOK: symmetric target keys must be 128, 192 or 256 bits.")
    return None
