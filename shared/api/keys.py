"""``key``, ``key/:name``, ``key/:name/rotate``, ``key/:name/kms``."""

from __future__ import annotations

import functools
from typing import Any

from shared import keytypes, names, vaultapi
from shared.api import Context, PathSpec
from shared.errors import NotFound
from shared.keys import MAX_CACHED_VERSIONS, UNREAD
from shared.records import KeyVersions, VersionRecord, rfc3339
from shared.vaultapi import ApiResponse, Field


def _type(value: object, name: str) -> str:
    return vaultapi.weak_str(value, name).strip()


# The create-only default of ``type`` (rsa-2048) is the engine's: whether a write creates is
# decided inside its transaction, and an update without ``type`` must leave the type alone.
KEY_FIELDS = [
    Field(
        "type",
        _type,
        "key type, on create only: aes256-gcm96, rsa-2048 (default), rsa-3072, "
        "rsa-4096, ecdsa-p256, ecdsa-p384, ecdsa-p521",
        allowed=tuple(keytypes.KEY_TYPES),
    ),
    Field(
        "min_enabled_version",
        vaultapi.weak_int,
        "lowest version enabled for use; lower versions are disabled in every KMS",
        minimum=0,
        takes="0 (all versions) or a version number, at least 1",
    ),
    Field("deletion_allowed", vaultapi.weak_bool, "whether the key may be deleted"),
    Field(
        "auto_rotate_period",
        vaultapi.duration_seconds,
        "ext: rotate on this period (e.g. 24h, 30d); 0 turns it off; at least 1h",
        minimum=0,
        takes="0 (off) or a positive duration",
    ),
    # Never read: only named in a warning. Any value is accepted, as it always was.
    Field("replica_regions", vaultapi.accepted, "AWS only; ignored for Azure"),
]


# -- rendering: the engine's records in Vault's wire format -------------------------------------


def render_version(version: VersionRecord) -> dict[str, Any]:
    return dict(_version_view(version))


# A version never changes once written, and KeyEngine.versions hands out the same records read
# after read: a key with a thousand versions is not formatted a thousand times per read.
@functools.lru_cache(maxsize=MAX_CACHED_VERSIONS)
def _version_view(version: VersionRecord) -> tuple[tuple[str, Any], ...]:
    view: tuple[tuple[str, Any], ...] = (("creation_time", rfc3339(version.creation_time)),)
    if version.public_key is not None:
        view += (("public_key", version.public_key),)
    return view


def render_key(read: KeyVersions) -> dict[str, Any]:
    """``key/:name``'s ``data``, named as real Vault sends it (``versions``; its docs say
    ``keys``)."""
    key = read.key
    data: dict[str, Any] = {
        "name": key.name,
        "type": key.key_type,
        "deletion_allowed": key.deletion_allowed,
        "latest_version": key.latest_version,
        "min_enabled_version": key.min_enabled_version,
        "versions": {str(v.version): render_version(v) for v in read.versions},
    }
    if key.auto_rotate_period:
        data["auto_rotate_period"] = key.auto_rotate_period
        if key.next_rotation_time is not None:
            data["next_rotation_time"] = rfc3339(key.next_rotation_time)
    return data


# -- handlers ----------------------------------------------------------------------------------


def _list(ctx: Context) -> ApiResponse:
    return vaultapi.listing(ctx.service.keys.list(ctx.mount))


def _read(ctx: Context) -> ApiResponse:
    return vaultapi.ok(render_key(ctx.service.keys.read(ctx.mount, ctx.params["name"])))


def _exists(ctx: Context) -> bool:
    key = ctx.service.keys.lookup(ctx.mount, ctx.params["name"])
    ctx.looked_up["key"] = key  # the write's first attempt starts from this read
    return key is not None and key.state == "active"


def _write(ctx: Context) -> ApiResponse:
    """Create and update alike: the engine decides again inside its transaction, so a create
    that loses a race to another is answered as the update it then is."""
    data = ctx.data
    warnings = ctx.service.keys.write(
        ctx.mount,
        ctx.params["name"],
        key_type=data.get("type"),
        min_enabled_version=data.get("min_enabled_version"),
        deletion_allowed=data.get("deletion_allowed"),
        auto_rotate_period=data.get("auto_rotate_period"),
        known=ctx.looked_up.get("key", UNREAD),
    )
    if data.has("replica_regions"):
        warnings.append("replica_regions applies to AWS KMS only and was ignored")
    return vaultapi.written(data.warnings + warnings)


def _delete(ctx: Context) -> ApiResponse:
    ctx.service.keys.delete(ctx.mount, ctx.params["name"])
    return vaultapi.written()


def _rotate(ctx: Context) -> ApiResponse:
    _, warnings = ctx.service.keys.rotate(ctx.mount, ctx.params["name"])
    return vaultapi.written(ctx.data.warnings + warnings)


def _kms_of_key(ctx: Context) -> ApiResponse:
    key = ctx.service.keys.get(ctx.mount, ctx.params["name"])
    if not key.kms:
        raise NotFound()
    return vaultapi.listing(list(key.kms))


KEY_PARAM = {"name": names.KEY}

KEYS = PathSpec(
    "key",
    operations={"list": _list},
    synopsis="List the names of the keys in this mount.",
    help="Lists the keys of this Key Management mount, sorted by name. An empty mount "
    "answers 404, as Vault does.",
)
KEY = PathSpec(
    "key/:name",
    fields=KEY_FIELDS,
    params=KEY_PARAM,
    existence=_exists,
    operations={"read": _read, "update": _write, "delete": _delete},
    synopsis="Create, read, update or delete a key.",
    help="A write creates the key when it does not exist (Vault's create operation; type "
    "chooses the algorithm, rsa-2048 by default) and updates it when it does (update: "
    "min_enabled_version, deletion_allowed, auto_rotate_period; type cannot change). A "
    "read returns the key's enabled versions and their public keys. A delete needs "
    "deletion_allowed=true and no KMS provider still holding the key.",
)
ROTATE = PathSpec(
    "key/:name/rotate",
    params=KEY_PARAM,
    operations={"update": _rotate},
    synopsis="Rotate a key: add a version with new key material.",
    help="Adds a version with new material and makes it the latest. A distributed key's new "
    "version is imported into every KMS provider holding it; a provider that cannot be "
    "reached is named in warnings, and the reconciler finishes the import later.",
)
KEY_KMS = PathSpec(
    "key/:name/kms",
    params=KEY_PARAM,
    operations={"list": _kms_of_key},
    synopsis="List the KMS providers a key is distributed to.",
    help="Lists the names of the KMS providers that hold this key. A key distributed to "
    "none answers 404.",
)
