"""Key material and the cryptographic operations on it. Knows nothing of HTTP.

Private material only ever leaves this module as a public JWK (``public_jwk``) or, for the
optional state file, through ``material_to_text`` (the emulator's own business).
"""

from __future__ import annotations

import base64
import os
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap,
    aes_key_wrap_with_padding,
)

from .errors import bad_parameter
from .tokens import b64url_decode, b64url_encode

KeyMaterial = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | bytes

RSA_SIZES = (2048, 3072, 4096)
OCT_SIZES = (128, 192, 256)
CURVES: dict[str, type[ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
    "P-256K": ec.SECP256K1,
}
CURVE_NAMES = {cls.name: name for name, cls in CURVES.items()}
KEY_TYPES = ("RSA", "RSA-HSM", "EC", "EC-HSM", "oct", "oct-HSM")
ALL_OPS = ("encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import", "export")
FAMILY_OPS = {
    "RSA": ("encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"),
    "EC": ("sign", "verify"),
    "oct": ("encrypt", "decrypt", "wrapKey", "unwrapKey"),
}

SIGN_ALGS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "ES256K",
)
_EC_ALG_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521", "ES256K": "P-256K"}
RSA_ENC_ALGS = ("RSA-OAEP", "RSA-OAEP-256", "RSA1_5")
AES_GCM_ALGS = {"A128GCM": 16, "A192GCM": 24, "A256GCM": 32}
AES_KW_ALGS = {"A128KW": 16, "A192KW": 24, "A256KW": 32}


def family(kty: str) -> str:
    """``RSA-HSM`` → ``RSA``; ``oct-HSM`` → ``oct``."""
    return kty.removesuffix("-HSM")


def validate_key_ops(kty: str, key_ops: list[str] | None) -> list[str]:
    """Default the operations for the key type, or refuse ones the type cannot do."""
    fam = family(kty)
    if key_ops is None:
        return list(FAMILY_OPS[fam])
    if not isinstance(key_ops, list) or not all(isinstance(op, str) for op in key_ops):
        raise bad_parameter("The parameter key_ops must be a list of strings.")
    unknown = [op for op in key_ops if op not in ALL_OPS]
    if unknown:
        raise bad_parameter(
            "Invalid key operation(s): "
            + ", ".join(f'"{op}"' for op in unknown)
            + ". Allowed values are "
            + ", ".join(f'"{op}"' for op in ALL_OPS)
            + "."
        )
    if "import" in key_ops:
        if kty != "RSA-HSM":
            raise bad_parameter(
                'The key operation "import" is only allowed on RSA-HSM key exchange keys.'
            )
        if key_ops != ["import"]:
            raise bad_parameter(
                'The key operation "import" cannot be combined with any other key operation.'
            )
        return ["import"]
    if "export" in key_ops:
        raise bad_parameter(
            'The key operation "export" requires an exportable key with a release '
            "policy, which the emulator does not support."
        )
    supported = FAMILY_OPS[fam]
    unsupported = [op for op in key_ops if op not in supported]
    if unsupported:
        raise bad_parameter(
            "Unsupported key operation(s): "
            + ", ".join(f'"{op}"' for op in unsupported)
            + ". Supported values are "
            + ", ".join(f'"{op}"' for op in supported)
            + "."
        )
    # Keep the caller's order, drop duplicates.
    return list(dict.fromkeys(key_ops))


def generate(
    kty: str, *, key_size: int | None, crv: str | None, public_exponent: int | None
) -> KeyMaterial:
    fam = family(kty)
    if fam == "RSA":
        size = key_size or 2048
        if size not in RSA_SIZES:
            raise bad_parameter(
                f"The key size {size} is not supported for {kty}. Supported sizes are 2048, "
                "3072 and 4096."
            )
        exponent = public_exponent or 65537
        if exponent != 65537:
            raise bad_parameter("The public exponent must be 65537.")
        return rsa.generate_private_key(public_exponent=exponent, key_size=size)
    if fam == "EC":
        name = crv or "P-256"
        if name not in CURVES:
            raise bad_parameter(
                f"The curve {name} is not supported. Supported curves are "
                + ", ".join(CURVES)
                + "."
            )
        return ec.generate_private_key(CURVES[name]())
    size = key_size or 256
    if size not in OCT_SIZES:
        raise bad_parameter(
            f"The key size {size} is not supported for {kty}. Supported sizes are 128, 192, 256."
        )
    return os.urandom(size // 8)


def describe(material: KeyMaterial) -> tuple[str, int | None, str | None]:
    """``(family, size, curve)`` of held material."""
    if isinstance(material, rsa.RSAPrivateKey):
        return "RSA", material.key_size, None
    if isinstance(material, ec.EllipticCurvePrivateKey):
        return "EC", None, CURVE_NAMES.get(material.curve.name)
    return "oct", len(material) * 8, None


def _int_b64(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(size, "big"))


def _b64_int(jwk: dict[str, Any], member: str) -> int:
    value = jwk.get(member)
    if not isinstance(value, str) or not value:
        raise bad_parameter(f"The JSON web key is missing the member '{member}'.")
    try:
        return int.from_bytes(b64url_decode(value), "big")
    except ValueError as exc:
        raise bad_parameter(f"The JSON web key member '{member}' is not base64url.") from exc


def public_jwk(material: KeyMaterial, *, kty: str, kid: str, key_ops: list[str]) -> dict[str, Any]:
    """The response JWK: public members only (nothing at all for symmetric keys)."""
    jwk: dict[str, Any] = {"kid": kid, "kty": kty, "key_ops": list(key_ops)}
    if isinstance(material, rsa.RSAPrivateKey):
        numbers = material.public_key().public_numbers()
        jwk["n"] = _int_b64(numbers.n, (material.key_size + 7) // 8)
        jwk["e"] = _int_b64(numbers.e)
    elif isinstance(material, ec.EllipticCurvePrivateKey):
        numbers = material.public_key().public_numbers()
        width = (material.curve.key_size + 7) // 8
        jwk["crv"] = CURVE_NAMES[material.curve.name]
        jwk["x"] = _int_b64(numbers.x, width)
        jwk["y"] = _int_b64(numbers.y, width)
    return jwk


def material_from_jwk(jwk: dict[str, Any], kty: str) -> KeyMaterial:
    """A plaintext JWK import (software keys): private members required."""
    fam = family(kty)
    if fam == "RSA":
        n, e = _b64_int(jwk, "n"), _b64_int(jwk, "e")
        d = _b64_int(jwk, "d")
        try:
            if all(jwk.get(m) for m in ("p", "q", "dp", "dq", "qi")):
                p, q = _b64_int(jwk, "p"), _b64_int(jwk, "q")
                dp, dq, qi = _b64_int(jwk, "dp"), _b64_int(jwk, "dq"), _b64_int(jwk, "qi")
            else:
                p, q = rsa.rsa_recover_prime_factors(n, e, d)
                dp, dq, qi = rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q)
            key = rsa.RSAPrivateNumbers(
                p, q, d, dp, dq, qi, rsa.RSAPublicNumbers(e, n)
            ).private_key()
        except ValueError as exc:
            raise bad_parameter(
                "The RSA JSON web key is inconsistent (invalid private key)."
            ) from exc
        check_rsa_size(key.key_size)
        return key
    if fam == "EC":
        crv = jwk.get("crv")
        if crv not in CURVES:
            raise bad_parameter(f"The JSON web key curve '{crv}' is not supported.")
        d = _b64_int(jwk, "d")
        try:
            key = ec.derive_private_key(d, CURVES[crv]())
        except ValueError as exc:
            raise bad_parameter("The EC JSON web key has an invalid private value d.") from exc
        pub = key.public_key().public_numbers()
        if jwk.get("x") and (_b64_int(jwk, "x"), _b64_int(jwk, "y")) != (pub.x, pub.y):
            raise bad_parameter("The EC JSON web key's x/y do not match its private value d.")
        return key
    raw = jwk.get("k")
    if not isinstance(raw, str):
        raise bad_parameter("The JSON web key is missing the member 'k'.")
    secret = b64url_decode(raw)
    if len(secret) * 8 not in OCT_SIZES:
        raise bad_parameter("Symmetric keys must be 128, 192 or 256 bits.")
    return secret


def check_rsa_size(size: int) -> None:
    if size not in RSA_SIZES:
        raise bad_parameter(
            f"The RSA key size {size} is not supported. Supported sizes are 2048, 3072 and 4096."
        )


def material_to_text(material: KeyMaterial) -> str:
    """Serialise for the state file only (never for an API response)."""
    if isinstance(material, bytes):
        return "oct:" + base64.b64encode(material).decode()
    der = material.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return "pkcs8:" + base64.b64encode(der).decode()


def material_from_text(text: str) -> KeyMaterial:
    kind, _, data = text.partition(":")
    raw = base64.b64decode(data)
    if kind == "oct":
        return raw
    key = serialization.load_der_private_key(raw, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("unsupported key in state file")
    return key


# --- operations -----------------------------------------------------------------------------


def _unsupported_alg(alg: str, kty: str) -> Exception:
    return bad_parameter(f"The algorithm '{alg}' is not supported for a key of type {kty}.")


def _rsa_padding_enc(alg: str) -> padding.AsymmetricPadding:
    if alg == "RSA-OAEP":
        return padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303
    if alg == "RSA-OAEP-256":
        return padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
        )
    return padding.PKCS1v15()


_SIGN_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "RS256": hashes.SHA256,
    "RS384": hashes.SHA384,
    "RS512": hashes.SHA512,
    "PS256": hashes.SHA256,
    "PS384": hashes.SHA384,
    "PS512": hashes.SHA512,
    "ES256": hashes.SHA256,
    "ES384": hashes.SHA384,
    "ES512": hashes.SHA512,
    "ES256K": hashes.SHA256,
}


def _digest_for(alg: str, digest: bytes) -> tuple[hashes.HashAlgorithm, bytes]:
    """The hash the algorithm names; the caller's digest must have its length."""
    algorithm = _SIGN_HASHES[alg]()
    if len(digest) != algorithm.digest_size:
        raise bad_parameter(
            f"The digest length {len(digest)} does not match the algorithm {alg} "
            f"(expected {algorithm.digest_size} bytes)."
        )
    return algorithm, digest


def sign(material: KeyMaterial, kty: str, alg: str, digest: bytes) -> bytes:
    if alg not in SIGN_ALGS:
        raise _unsupported_alg(alg, kty)
    if isinstance(material, rsa.RSAPrivateKey) and alg[:2] in ("RS", "PS"):
        algorithm, digest = _digest_for(alg, digest)
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if alg.startswith("RS")
            else padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.DIGEST_LENGTH)
        )
        return material.sign(digest, pad, utils.Prehashed(algorithm))
    if isinstance(material, ec.EllipticCurvePrivateKey) and alg.startswith("ES"):
        curve = CURVE_NAMES.get(material.curve.name)
        if _EC_ALG_CURVE[alg] != curve:
            raise bad_parameter(f"The algorithm {alg} does not match the key's curve {curve}.")
        algorithm, digest = _digest_for(alg, digest)
        der = material.sign(digest, ec.ECDSA(utils.Prehashed(algorithm)))
        r, s = utils.decode_dss_signature(der)
        width = (material.curve.key_size + 7) // 8
        return r.to_bytes(width, "big") + s.to_bytes(width, "big")
    raise _unsupported_alg(alg, kty)


def verify(material: KeyMaterial, kty: str, alg: str, digest: bytes, signature: bytes) -> bool:
    if alg not in SIGN_ALGS:
        raise _unsupported_alg(alg, kty)
    try:
        if isinstance(material, rsa.RSAPrivateKey) and alg[:2] in ("RS", "PS"):
            algorithm, digest = _digest_for(alg, digest)
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if alg.startswith("RS")
                else padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.AUTO)
            )
            material.public_key().verify(signature, digest, pad, utils.Prehashed(algorithm))
            return True
        if isinstance(material, ec.EllipticCurvePrivateKey) and alg.startswith("ES"):
            algorithm, digest = _digest_for(alg, digest)
            width = (material.curve.key_size + 7) // 8
            if len(signature) != 2 * width:
                return False
            der = utils.encode_dss_signature(
                int.from_bytes(signature[:width], "big"), int.from_bytes(signature[width:], "big")
            )
            material.public_key().verify(der, digest, ec.ECDSA(utils.Prehashed(algorithm)))
            return True
    except InvalidSignature:
        return False
    raise _unsupported_alg(alg, kty)


def encrypt(
    material: KeyMaterial, kty: str, alg: str, plaintext: bytes, *, aad: bytes | None = None
) -> dict[str, bytes]:
    """Return ``{"value": ...}`` plus ``iv``/``tag`` for AES-GCM."""
    if isinstance(material, rsa.RSAPrivateKey) and alg in RSA_ENC_ALGS:
        try:
            return {"value": material.public_key().encrypt(plaintext, _rsa_padding_enc(alg))}
        except ValueError as exc:
            raise bad_parameter(f"The plaintext is too long for {alg} with this key.") from exc
    if isinstance(material, bytes) and alg in AES_GCM_ALGS:
        if AES_GCM_ALGS[alg] != len(material):
            raise bad_parameter(f"The algorithm {alg} does not match the key size.")
        iv = os.urandom(12)
        sealed = AESGCM(material).encrypt(iv, plaintext, aad)
        return {"value": sealed[:-16], "iv": iv, "tag": sealed[-16:]}
    raise _unsupported_alg(alg, kty)


def decrypt(
    material: KeyMaterial,
    kty: str,
    alg: str,
    ciphertext: bytes,
    *,
    iv: bytes | None = None,
    tag: bytes | None = None,
    aad: bytes | None = None,
) -> bytes:
    if isinstance(material, rsa.RSAPrivateKey) and alg in RSA_ENC_ALGS:
        try:
            return material.decrypt(ciphertext, _rsa_padding_enc(alg))
        except ValueError as exc:
            raise bad_parameter("The ciphertext could not be decrypted with this key.") from exc
    if isinstance(material, bytes) and alg in AES_GCM_ALGS:
        if not iv or not tag:
            raise bad_parameter(f"The algorithm {alg} requires the parameters iv and tag.")
        try:
            return AESGCM(material).decrypt(iv, ciphertext + tag, aad)
        except InvalidTag as exc:
            raise bad_parameter("The ciphertext failed authentication.") from exc
    raise _unsupported_alg(alg, kty)


def _is_kw(alg: str, material: bytes) -> bool:
    """AES key wrap (RFC 3394) with a key of the size the algorithm names."""
    return (alg in AES_KW_ALGS and AES_KW_ALGS[alg] == len(material)) or alg == "CKM_AES_KEY_WRAP"


def wrap(material: KeyMaterial, kty: str, alg: str, key: bytes) -> bytes:
    if isinstance(material, rsa.RSAPrivateKey) and alg in RSA_ENC_ALGS:
        return encrypt(material, kty, alg, key)["value"]
    if isinstance(material, bytes):
        if _is_kw(alg, material):
            return aes_key_wrap(material, key)
        if alg == "CKM_AES_KEY_WRAP_PAD":
            return aes_key_wrap_with_padding(material, key)
    raise _unsupported_alg(alg, kty)


def unwrap(material: KeyMaterial, kty: str, alg: str, wrapped: bytes) -> bytes:
    if isinstance(material, rsa.RSAPrivateKey) and alg in RSA_ENC_ALGS:
        return decrypt(material, kty, alg, wrapped)
    if isinstance(material, bytes):
        try:
            if _is_kw(alg, material):
                return aes_key_unwrap(material, wrapped)
            if alg == "CKM_AES_KEY_WRAP_PAD":
                return aes_key_unwrap_with_padding(material, wrapped)
        except InvalidUnwrap as exc:
            raise bad_parameter("The wrapped key failed the key wrap integrity check.") from exc
    raise _unsupported_alg(alg, kty)
