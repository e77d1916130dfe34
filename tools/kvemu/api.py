"""The Key Vault keys REST API (data plane) for one vault, as a WSGI app.

The API surface is declared as data (``OPERATIONS``): each entry names the operation (our
vocabulary, also used by faults and role grants), its swagger ``operationId`` (for the
conformance test), its route, the RBAC data action, and a thin handler over ``store.Vault``.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from . import byok
from . import keys as keymod
from .errors import KvError, bad_parameter, forbidden, key_not_found
from .store import VERSION_RE, KeyEntry, KeyVersion, Vault, check_name, check_tags
from .tokens import Principal, TokenError, b64url_decode, b64url_encode

if TYPE_CHECKING:
    from .emulator import Emulator

logger = logging.getLogger(__name__)

API_VERSIONS = ("7.4", "7.5", "7.6", "2025-07-01")
MAX_RESULTS = 25
SERVICE_VERSION = "1.9.2557.1"


@dataclass
class Call:
    """One request, as the handlers see it."""

    vault: Vault
    request: Request
    args: dict[str, str]
    body: dict[str, Any]
    principal: Principal

    @property
    def base(self) -> str:
        return f"https://{self.request.host}"

    def kid(self, version: KeyVersion) -> str:
        return f"{self.base}/keys/{version.name}/{version.version}"


Handler = Callable[[Call], tuple[int, Any]]


@dataclass(frozen=True)
class Operation:
    name: str
    operation_id: str
    method: str
    rules: tuple[str, ...]
    action: str  # the RBAC data action it needs
    permission: str  # the access policy key permission it needs (REST API description)
    handler: Handler | None  # None: declared in the spec, not emulated


# --- rendering ------------------------------------------------------------------------------


def render_attributes(vault: Vault, v: KeyVersion) -> dict[str, Any]:
    attributes: dict[str, Any] = {"enabled": v.enabled}
    if v.nbf is not None:
        attributes["nbf"] = v.nbf
    if v.exp is not None:
        attributes["exp"] = v.exp
    attributes.update(
        {
            "created": v.created,
            "updated": v.updated,
            "recoveryLevel": vault.recovery_level,
            "recoverableDays": vault.recoverable_days,
            "exportable": False,
        }
    )
    # every key reports its platform: "0" software, "2" the HSM platform (api-version 7.5+)
    attributes["hsmPlatform"] = "2" if v.kty.endswith("-HSM") else "0"
    return attributes


def render_bundle(call: Call, v: KeyVersion) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "key": keymod.public_jwk(v.material, kty=v.kty, kid=call.kid(v), key_ops=v.key_ops),
        "attributes": render_attributes(call.vault, v),
    }
    if v.tags:
        bundle["tags"] = dict(v.tags)
    return bundle


def _deleted_info(call: Call, entry: KeyEntry) -> dict[str, Any]:
    return {
        "recoveryId": f"{call.base}/deletedkeys/{entry.name}",
        "deletedDate": entry.deleted_date,
        "scheduledPurgeDate": entry.scheduled_purge_date,
    }


def render_item(call: Call, v: KeyVersion, *, versioned: bool) -> dict[str, Any]:
    kid = call.kid(v) if versioned else f"{call.base}/keys/{v.name}"
    item: dict[str, Any] = {"kid": kid, "attributes": render_attributes(call.vault, v)}
    if v.tags:
        item["tags"] = dict(v.tags)
    return item


def _page(call: Call, items: list[Any], render: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    raw = call.request.args.get("maxresults")
    try:
        size = MAX_RESULTS if raw is None else int(raw)
    except ValueError as exc:
        raise bad_parameter("The parameter maxresults must be an integer.") from exc
    if not 1 <= size <= MAX_RESULTS:
        raise bad_parameter(f"The parameter maxresults must be between 1 and {MAX_RESULTS}.")
    token = call.request.args.get("$skiptoken")
    offset = 0
    if token:
        try:
            offset = int(json.loads(b64url_decode(token))["offset"])
        except (ValueError, KeyError, TypeError) as exc:
            raise bad_parameter("The parameter $skiptoken is not valid.") from exc
    page = items[offset : offset + size]
    next_link = None
    if offset + size < len(items):
        next_token = b64url_encode(json.dumps({"offset": offset + size}).encode())
        api_version = call.request.args.get("api-version")
        next_link = (
            f"{call.base}{call.request.path}?api-version={api_version}"
            f"&$skiptoken={next_token}&maxresults={size}"
        )
    return {"value": [render(i) for i in page], "nextLink": next_link}


# --- request parsing helpers -----------------------------------------------------------------


def _b64_member(body: dict[str, Any], member: str, *, required: bool = True) -> bytes | None:
    value = body.get(member)
    if value is None:
        if required:
            raise bad_parameter(f"The parameter {member} is required.")
        return None
    if not isinstance(value, str):
        raise bad_parameter(f"The parameter {member} must be a base64url string.")
    try:
        return b64url_decode(value)
    except ValueError as exc:
        raise bad_parameter(f"The parameter {member} is not valid base64url.") from exc


def _attributes(body: dict[str, Any]) -> dict[str, Any] | None:
    attributes = body.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        raise bad_parameter("The parameter attributes must be an object.")
    return attributes


def _usable(call: Call, v: KeyVersion, op: str) -> None:
    """key_ops, enabled and the nbf/exp window, as Key Vault enforces them."""
    if op not in v.key_ops:
        raise forbidden(f"Operation {op} is not permitted on this key.", "KeyOperationForbidden")
    if not v.enabled:
        raise forbidden(f"Operation {op} is not allowed on a disabled key.", "KeyDisabled")
    if op in ("decrypt", "unwrapKey", "verify"):
        return  # still allowed outside the validity window
    current = int(time.time())
    if v.exp is not None and current > v.exp:
        raise forbidden(f"Operation {op} is not allowed on an expired key.")
    if v.nbf is not None and current < v.nbf:
        raise forbidden(f"Operation {op} is not allowed on a key that is not yet valid (nbf).")


def _str_member(body: dict[str, Any], member: str) -> str:
    value = body.get(member)
    if not isinstance(value, str) or not value:
        raise bad_parameter(f"The parameter {member} is required.")
    return value


# --- handlers -------------------------------------------------------------------------------


def _check_kty(call: Call, kty: Any) -> str:
    if kty not in keymod.KEY_TYPES:
        raise bad_parameter(
            f"The key type {kty!r} is not supported. Supported types are "
            + ", ".join(keymod.KEY_TYPES)
            + "."
        )
    if keymod.family(kty) == "oct" and not call.vault.managed_hsm:
        raise bad_parameter(
            f"The key type {kty} is only supported by Managed HSM; this is a Key Vault vault."
        )
    return kty


def create_key(call: Call) -> tuple[int, Any]:
    name = call.args["name"]
    check_name(name)
    kty = _check_kty(call, call.body.get("kty"))
    if call.vault.managed_hsm and not kty.endswith("-HSM") and kty != "oct":
        kty = f"{kty}-HSM"  # Managed HSM holds every key in the HSM
    key_size, crv = call.body.get("key_size"), call.body.get("crv")
    if key_size is not None and (isinstance(key_size, bool) or not isinstance(key_size, int)):
        raise bad_parameter("The parameter key_size must be an integer.")
    key_ops = keymod.validate_key_ops(kty, call.body.get("key_ops"))
    tags = check_tags(call.body.get("tags"))
    material = keymod.generate(
        kty, key_size=key_size, crv=crv, public_exponent=call.body.get("public_exponent")
    )
    version = call.vault.add_version(
        name,
        kty=kty,
        key_ops=key_ops,
        material=material,
        attributes=_attributes(call.body),
        tags=tags,
    )
    return 200, render_bundle(call, version)


def _find_kek(call: Call) -> Callable[[str], byok.Kek | None]:
    def find(kid: str) -> byok.Kek | None:
        parts = kid.split("/")
        # https://host[:port]/keys/<name>/<version>
        if len(parts) != 6 or parts[0] != "https:" or parts[1] != "" or parts[3] != "keys":
            return None
        if parts[2].lower() != call.request.host.lower():
            return None  # another vault's KEK
        try:
            v = call.vault.get(parts[4], parts[5])
        except KvError:
            return None
        return byok.Kek(
            kid=kid, kty=v.kty, key_ops=list(v.key_ops), enabled=v.enabled, material=v.material
        )

    return find


def import_key(call: Call) -> tuple[int, Any]:
    name = call.args["name"]
    check_name(name)
    jwk = call.body.get("key")
    if not isinstance(jwk, dict):
        raise bad_parameter("The parameter key is required and must be a JSON web key.")
    kty = _check_kty(call, jwk.get("kty"))
    hsm = call.body.get("Hsm")
    if hsm is not None and not isinstance(hsm, bool):
        raise bad_parameter("The parameter Hsm must be a boolean.")
    if (hsm or call.vault.managed_hsm) and not kty.endswith("-HSM"):
        kty = f"{kty}-HSM"
    key_ops = keymod.validate_key_ops(kty, jwk.get("key_ops"))
    tags = check_tags(call.body.get("tags"))
    key_hsm = jwk.get("key_hsm")
    if key_hsm is not None:
        if not kty.endswith("-HSM"):
            raise bad_parameter("BYOK: key_hsm requires kty RSA-HSM, EC-HSM or oct-HSM.")
        if not isinstance(key_hsm, str):
            raise bad_parameter("BYOK: key_hsm is not valid base64url.")
        if keymod.family(kty) == "EC" and not jwk.get("crv"):
            raise bad_parameter("BYOK: the parameter crv is required to import an EC-HSM key.")
        material = byok.unwrap_transfer_blob(
            key_hsm, find_kek=_find_kek(call), is_managed_hsm=call.vault.managed_hsm
        )
        byok.check_target_type(material, kty=kty, crv=jwk.get("crv"))
    else:
        material = keymod.material_from_jwk(jwk, kty)
    version = call.vault.add_version(
        name,
        kty=kty,
        key_ops=key_ops,
        material=material,
        attributes=_attributes(call.body),
        tags=tags,
    )
    return 200, render_bundle(call, version)


def _version_arg(call: Call) -> str | None:
    version = call.args.get("version") or None
    if version is not None and not VERSION_RE.match(version.lower()):
        raise key_not_found(f"{call.args['name']}/{version}")
    return version


def get_key(call: Call) -> tuple[int, Any]:
    # A disabled key is still served (its public part): the private operations refuse it.
    return 200, render_bundle(call, call.vault.get(call.args["name"], _version_arg(call)))


def update_key(call: Call) -> tuple[int, Any]:
    tags = call.body.get("tags")
    version = call.vault.update(
        call.args["name"],
        _version_arg(call),
        attributes=_attributes(call.body),
        key_ops=call.body.get("key_ops"),
        tags=None if tags is None else check_tags(tags),
    )
    return 200, render_bundle(call, version)


def list_keys(call: Call) -> tuple[int, Any]:
    entries = call.vault.list_keys()
    return 200, _page(call, entries, lambda e: render_item(call, e.latest, versioned=False))


def list_versions(call: Call) -> tuple[int, Any]:
    versions = call.vault.list_versions(call.args["name"])
    return 200, _page(call, versions, lambda v: render_item(call, v, versioned=True))


def rotate_key(call: Call) -> tuple[int, Any]:
    return 200, render_bundle(call, call.vault.rotate(call.args["name"]))


def delete_key(call: Call) -> tuple[int, Any]:
    entry = call.vault.delete(call.args["name"])
    return 200, {**render_bundle(call, entry.latest), **_deleted_info(call, entry)}


def get_deleted(call: Call) -> tuple[int, Any]:
    entry = call.vault.get_deleted(call.args["name"])
    return 200, {**render_bundle(call, entry.latest), **_deleted_info(call, entry)}


def list_deleted(call: Call) -> tuple[int, Any]:
    def render(entry: KeyEntry) -> dict[str, Any]:
        return {**render_item(call, entry.latest, versioned=False), **_deleted_info(call, entry)}

    return 200, _page(call, call.vault.list_deleted(), render)


def recover_deleted(call: Call) -> tuple[int, Any]:
    entry = call.vault.recover(call.args["name"])
    return 200, render_bundle(call, entry.latest)


def purge_deleted(call: Call) -> tuple[int, Any]:
    call.vault.purge(call.args["name"])
    return 204, None


def _crypto_target(call: Call, op: str) -> KeyVersion:
    v = call.vault.get(call.args["name"], _version_arg(call))
    _usable(call, v, op)
    return v


def sign(call: Call) -> tuple[int, Any]:
    v = _crypto_target(call, "sign")
    alg = _str_member(call.body, "alg")
    digest = _b64_member(call.body, "value")
    assert digest is not None
    signature = keymod.sign(v.material, v.kty, alg, digest)
    return 200, {"kid": call.kid(v), "value": b64url_encode(signature)}


def verify(call: Call) -> tuple[int, Any]:
    v = _crypto_target(call, "verify")
    alg = _str_member(call.body, "alg")
    digest = _b64_member(call.body, "digest")
    signature = _b64_member(call.body, "value")
    assert digest is not None and signature is not None
    return 200, {"value": keymod.verify(v.material, v.kty, alg, digest, signature)}


def encrypt(call: Call) -> tuple[int, Any]:
    v = _crypto_target(call, "encrypt")
    alg = _str_member(call.body, "alg")
    plaintext = _b64_member(call.body, "value")
    assert plaintext is not None
    out = keymod.encrypt(
        v.material, v.kty, alg, plaintext, aad=_b64_member(call.body, "aad", required=False)
    )
    result = {"kid": call.kid(v)}
    result.update({k: b64url_encode(val) for k, val in out.items()})
    return 200, result


def decrypt(call: Call) -> tuple[int, Any]:
    v = _crypto_target(call, "decrypt")
    alg = _str_member(call.body, "alg")
    ciphertext = _b64_member(call.body, "value")
    assert ciphertext is not None
    plaintext = keymod.decrypt(
        v.material,
        v.kty,
        alg,
        ciphertext,
        iv=_b64_member(call.body, "iv", required=False),
        tag=_b64_member(call.body, "tag", required=False),
        aad=_b64_member(call.body, "aad", required=False),
    )
    return 200, {"kid": call.kid(v), "value": b64url_encode(plaintext)}


def wrap_key(call: Call) -> tuple[int, Any]:
    v = _crypto_target(call, "wrapKey")
    alg = _str_member(call.body, "alg")
    key = _b64_member(call.body, "value")
    assert key is not None
    return 200, {
        "kid": call.kid(v),
        "value": b64url_encode(keymod.wrap(v.material, v.kty, alg, key)),
    }


def unwrap_key(call: Call) -> tuple[int, Any]:
    v = _crypto_target(call, "unwrapKey")
    alg = _str_member(call.body, "alg")
    wrapped = _b64_member(call.body, "value")
    assert wrapped is not None
    return 200, {
        "kid": call.kid(v),
        "value": b64url_encode(keymod.unwrap(v.material, v.kty, alg, wrapped)),
    }


_KEY = "/keys/<name>"
_VER = "/keys/<name>/<version>"
_A = "Microsoft.KeyVault/vaults/keys"

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "create",
        "CreateKey",
        "POST",
        (f"{_KEY}/create",),
        f"{_A}/create/action",
        "create",
        create_key,
    ),
    Operation("import", "ImportKey", "PUT", (_KEY,), f"{_A}/import/action", "import", import_key),
    Operation("list", "GetKeys", "GET", ("/keys",), f"{_A}/read", "list", list_keys),
    Operation(
        "listVersions",
        "GetKeyVersions",
        "GET",
        (f"{_KEY}/versions",),
        f"{_A}/read",
        "list",
        list_versions,
    ),
    Operation("get", "GetKey", "GET", (_KEY, f"{_KEY}/", _VER), f"{_A}/read", "get", get_key),
    Operation(
        "update",
        "UpdateKey",
        "PATCH",
        (_KEY, f"{_KEY}/", _VER),
        f"{_A}/update/action",
        "update",
        update_key,
    ),
    Operation("delete", "DeleteKey", "DELETE", (_KEY,), f"{_A}/delete", "delete", delete_key),
    Operation(
        "rotate",
        "RotateKey",
        "POST",
        (f"{_KEY}/rotate",),
        f"{_A}/rotate/action",
        "rotate",
        rotate_key,
    ),
    Operation(
        "listDeleted",
        "GetDeletedKeys",
        "GET",
        ("/deletedkeys",),
        f"{_A}/read",
        "list",
        list_deleted,
    ),
    Operation(
        "getDeleted",
        "GetDeletedKey",
        "GET",
        ("/deletedkeys/<name>",),
        f"{_A}/read",
        "get",
        get_deleted,
    ),
    Operation(
        "recover",
        "RecoverDeletedKey",
        "POST",
        ("/deletedkeys/<name>/recover",),
        f"{_A}/recover/action",
        "recover",
        recover_deleted,
    ),
    Operation(
        "purge",
        "PurgeDeletedKey",
        "DELETE",
        ("/deletedkeys/<name>",),
        f"{_A}/purge/action",
        "purge",
        purge_deleted,
    ),
    Operation(
        "sign", "sign", "POST", (f"{_VER}/sign", f"{_KEY}//sign"), f"{_A}/sign/action", "sign", sign
    ),
    Operation(
        "verify",
        "verify",
        "POST",
        (f"{_VER}/verify", f"{_KEY}//verify"),
        f"{_A}/verify/action",
        "verify",
        verify,
    ),
    Operation(
        "encrypt",
        "encrypt",
        "POST",
        (f"{_VER}/encrypt", f"{_KEY}//encrypt"),
        f"{_A}/encrypt/action",
        "encrypt",
        encrypt,
    ),
    Operation(
        "decrypt",
        "decrypt",
        "POST",
        (f"{_VER}/decrypt", f"{_KEY}//decrypt"),
        f"{_A}/decrypt/action",
        "decrypt",
        decrypt,
    ),
    Operation(
        "wrapKey",
        "wrapKey",
        "POST",
        (f"{_VER}/wrapkey", f"{_KEY}//wrapkey"),
        f"{_A}/wrap/action",
        "wrapKey",
        wrap_key,
    ),
    Operation(
        "unwrapKey",
        "unwrapKey",
        "POST",
        (f"{_VER}/unwrapkey", f"{_KEY}//unwrapkey"),
        f"{_A}/unwrap/action",
        "unwrapKey",
        unwrap_key,
    ),
    # Declared by the spec, not emulated: answered with 501 in Key Vault's envelope.
    Operation(
        "backup", "BackupKey", "POST", (f"{_KEY}/backup",), f"{_A}/backup/action", "backup", None
    ),
    Operation(
        "restore", "RestoreKey", "POST", ("/keys/restore",), f"{_A}/restore/action", "restore", None
    ),
    Operation(
        "getRotationPolicy",
        "GetKeyRotationPolicy",
        "GET",
        (f"{_KEY}/rotationpolicy",),
        f"{_A}/rotationpolicy/read",
        "get",
        None,
    ),
    Operation(
        "updateRotationPolicy",
        "UpdateKeyRotationPolicy",
        "PUT",
        (f"{_KEY}/rotationpolicy",),
        f"{_A}/rotationpolicy/write",
        "update",
        None,
    ),
    Operation(
        "release", "release", "POST", (f"{_VER}/release",), f"{_A}/release/action", "release", None
    ),
    Operation(
        "getAttestation",
        "GetKeyAttestation",
        "GET",
        (f"{_VER}/attestation",),
        f"{_A}/read",
        "get",
        None,
    ),
    Operation(
        "getRandomBytes",
        "GetRandomBytes",
        "POST",
        ("/rng",),
        "Microsoft.KeyVault/managedHsm/rng/action",
        "get",
        None,
    ),
)

OPERATIONS_BY_NAME = {op.name: op for op in OPERATIONS}


def _url_map() -> Map:
    rules = []
    for op in OPERATIONS:
        for path in op.rules:
            rules.append(Rule(path, methods=[op.method], endpoint=op.name))
    return Map(rules, merge_slashes=False, strict_slashes=False)


URL_MAP = _url_map()


def _json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    response = Response(
        None if body is None else json.dumps(body),
        status=status,
        content_type="application/json; charset=utf-8",
    )
    for k, v in (headers or {}).items():
        response.headers[k] = v
    return response


class VaultApp:
    """WSGI app serving one vault."""

    def __init__(self, emulator: Emulator, vault: Vault) -> None:
        self.emulator = emulator
        self.vault = vault

    def challenge_header(self) -> str:
        authority = "login.microsoftonline.com" if self.vault.managed_hsm else "login.windows.net"
        return (
            f'Bearer authorization="https://{authority}/{self.emulator.tenant_id}", '
            f'resource="{self.vault.audience}"'
        )

    def _authenticate(self, request: Request) -> Principal:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        challenge = {"WWW-Authenticate": self.challenge_header()}
        if scheme.lower() != "bearer" or not token.strip():
            raise KvError(
                401,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
                headers=challenge,
            )
        try:
            return self.emulator.issuer.verify(token.strip(), audience=self.vault.audience)
        except TokenError as exc:
            raise KvError(401, "Unauthorized", str(exc), headers=challenge) from exc

    def _authorize(self, principal: Principal, op: Operation, request: Request) -> None:
        self.emulator.access.check(
            vault=self.vault.name,
            model=self.vault.permission_model,
            principal=principal,
            action=op.action,
            permission=op.permission,
            resource=f"/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/"
            f"kvemu/providers/microsoft.keyvault/vaults/{self.vault.name}",
        )

    def _apply_faults(self, request: Request, op: Operation, principal: Principal) -> None:
        for fault in self.emulator.faults.take(self.vault.name, op.name):
            if fault.kind == "latency":
                time.sleep(fault.delay)
            elif fault.kind == "throttle":
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(fault.retry_after)
                raise KvError(
                    429,
                    "Throttled",
                    "Request was not processed because too many requests were received. "
                    "Reason: VaultRequestTypeLimitReached",
                    headers=headers,
                )
            elif fault.kind == "forbidden_by_connection":
                raise forbidden(
                    "Public network access is disabled and request is not from a trusted "
                    "service nor via an approved private link.\r\n"
                    f"Caller: appid={principal.app_id};oid={principal.object_id};"
                    f"iss={principal.issuer}\r\n"
                    f"Vault: {self.vault.name};location=local",
                    "ForbiddenByConnection",
                )
            elif fault.kind == "server_error":
                raise KvError(
                    fault.status,
                    "InternalServerError" if fault.status == 500 else "ServiceUnavailable",
                    "The service encountered an internal error (injected by the emulator).",
                )
            elif fault.kind == "drop":
                sock = request.environ.get("werkzeug.socket")
                if isinstance(sock, socket.socket):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                raise ConnectionAbortedError("connection dropped by an injected fault")

    def _dispatch(self, request: Request) -> tuple[Operation | None, int, Any, dict[str, str]]:
        op: Operation | None = None
        try:
            adapter = URL_MAP.bind_to_environ(request.environ)
            try:
                endpoint, args = adapter.match()
            except NotFound as exc:
                raise KvError(
                    404, "NotFound", f"The path {request.path} is not a keys API path."
                ) from exc
            except MethodNotAllowed as exc:
                raise KvError(
                    405, "MethodNotAllowed", f"The method {request.method} is not allowed here."
                ) from exc
            op = OPERATIONS_BY_NAME[str(endpoint)]
            api_version = request.args.get("api-version")
            if not api_version:
                raise bad_parameter("The api-version query parameter is required.")
            if api_version not in API_VERSIONS:
                raise bad_parameter(
                    f"The specified version ({api_version}) is not recognized. Supported "
                    "versions are " + ", ".join(API_VERSIONS) + "."
                )
            principal = self._authenticate(request)
            self._authorize(principal, op, request)
            self._apply_faults(request, op, principal)
            if op.handler is None:
                raise KvError(501, "NotImplemented", f"The emulator does not implement {op.name}.")
            body: dict[str, Any] = {}
            if request.method in ("POST", "PUT", "PATCH") and request.get_data():
                try:
                    parsed = json.loads(request.get_data())
                except ValueError as exc:
                    raise bad_parameter("The request body is not valid JSON.") from exc
                if not isinstance(parsed, dict):
                    raise bad_parameter("The request body must be a JSON object.")
                body = parsed
            call = Call(self.vault, request, dict(args), body, principal)
            status, payload = op.handler(call)
            return op, status, payload, {}
        except KvError as exc:
            return op, exc.status, exc.body(), exc.headers

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request = Request(environ)
        if request.path == "/healthstatus" and request.method == "GET":
            response = _json_response(200, {}, self._common_headers(request))
            return response(environ, start_response)
        try:
            op, status, payload, headers = self._dispatch(request)
        except HTTPException as exc:  # pragma: no cover - defensive
            return exc(environ, start_response)
        except ConnectionAbortedError:
            raise
        except Exception:
            logger.exception("unexpected error in vault %s", self.vault.name)
            op, status, payload, headers = (
                None,
                500,
                KvError(500, "InternalServerError", "Unexpected emulator error.").body(),
                {},
            )
        self.emulator.record(self.vault.name, op.operation_id if op else None, status, payload)
        headers = {**self._common_headers(request), **headers}
        return _json_response(status, payload, headers)(environ, start_response)

    def _common_headers(self, request: Request) -> dict[str, str]:
        return {
            "x-ms-request-id": str(uuid.uuid4()),
            "x-ms-keyvault-region": "local",
            "x-ms-keyvault-service-version": SERVICE_VERSION,
            "x-ms-keyvault-network-info": (
                f"conn_type=Ipv4;addr={request.remote_addr};act_addr_fam=InterNetwork;"
            ),
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Strict-Transport-Security": "max-age=31536000;includeSubDomains",
        }
