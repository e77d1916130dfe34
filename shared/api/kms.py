"""``kms``, ``kms/:name``, ``kms/:name/key``, ``kms/:name/key/:key_name``, ``kms/:name/health``.

The engine answers with records; this module renders them as the API's JSON.
"""

from __future__ import annotations

from typing import Any

from shared import names, vaultapi
from shared.api import Context, PathSpec
from shared.distribution import DistributionStatus
from shared.providers import PROTECTIONS, PROVIDERS, PURPOSES, Health
from shared.records import KmsRecord, rfc3339
from shared.vaultapi import ApiResponse, Field


def _lower(value: object, name: str) -> str | None:
    """Trimmed and lower-cased; an empty string is as if the field was not sent (its
    default applies)."""
    return vaultapi.weak_str(value, name).strip().lower() or None


def _string(value: object, name: str) -> str:
    return vaultapi.weak_str(value, name).strip()


PROVIDER_FIELDS = [
    # Required on create only: an update keeps the stored type (the engine knows which).
    Field(
        "provider",
        _lower,
        f"KMS provider type: {', '.join(PROVIDERS)}",
        allowed=tuple(PROVIDERS),
    ),
    Field("key_collection", _string, "the Azure Key Vault name"),
    Field(
        "credentials",
        vaultapi.kv_pairs,
        "client_id, client_secret, tenant_id, environment (key=value pairs); never returned",
    ),
]

PURPOSE_TAKES = f"a comma list of {', '.join(PURPOSES)}"

DISTRIBUTION_FIELDS = [
    Field(
        "purpose",
        vaultapi.comma_list,
        PURPOSE_TAKES,
        required=True,
        allowed=PURPOSES,
        takes=PURPOSE_TAKES,
    ),
    Field(
        "protection",
        _lower,
        "hsm (default, BYOK) or software",
        default="hsm",
        allowed=PROTECTIONS,
    ),
    Field(
        "expiration_period",
        vaultapi.duration_seconds,
        "ext: each imported version expires this long after its import (e.g. 90d)",
        default=0,
        minimum=0,
        takes="a positive duration, or 0 for none",
    ),
]


def render_kms(record: KmsRecord) -> dict[str, Any]:
    return {"provider": record.provider, "key_collection": record.key_collection}


def render_distribution(status: DistributionStatus) -> dict[str, Any]:
    dist = status.distribution
    data: dict[str, Any] = {
        "distribution_time": rfc3339(dist.distribution_time),
        "name": dist.remote_name,
        "protection": dist.protection,
        "purpose": ",".join(sorted(dist.purpose)),
        "versions": {str(v): vid for v, vid in sorted(dist.versions.items())},
    }
    if dist.expiration_period:
        data["expiration_period"] = dist.expiration_period
    if status.pending_versions:
        data["pending_versions"] = list(status.pending_versions)
    return data


def render_health(health: Health) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if health.endpoint is not None:
        data["vault_url"] = health.endpoint
    if health.host is not None:
        data["host"] = health.host
    if health.private_ranges is not None:
        data["private_ranges"] = list(health.private_ranges)
    data["credential"] = health.credential
    if health.dns_error is not None:
        data["dns_error"] = health.dns_error
    if health.addresses is not None:
        data["addresses"] = [{"address": a.address, "private": a.private} for a in health.addresses]
        data["all_private"] = health.all_private
    data["token"] = health.token
    data["key_vault"] = health.service
    if health.diagnosis is not None:
        data["diagnosis"] = health.diagnosis
    if health.permissions is not None:
        permissions: dict[str, Any] = {"missing": list(health.permissions.missing)}
        if health.permissions.effect:
            permissions["effect"] = health.permissions.effect
        if health.permissions.probe_error:
            permissions["probe_error"] = health.permissions.probe_error
        data["permissions"] = permissions
    return data


def _list_kms(ctx: Context) -> ApiResponse:
    return vaultapi.listing(ctx.service.kms.names(ctx.mount))


def _read_kms(ctx: Context) -> ApiResponse:
    return vaultapi.ok(render_kms(ctx.service.kms.read(ctx.mount, ctx.params["name"])))


def _write_kms(ctx: Context) -> ApiResponse:
    data = ctx.data
    ctx.service.kms.write(
        ctx.mount,
        ctx.params["name"],
        provider=data.get("provider"),
        key_collection=data.get("key_collection"),
        credentials=data.get("credentials"),
    )
    return vaultapi.written(data.warnings)


def _delete_kms(ctx: Context) -> ApiResponse:
    ctx.service.kms.delete(ctx.mount, ctx.params["name"])
    return vaultapi.written()


def _list_distributed(ctx: Context) -> ApiResponse:
    return vaultapi.listing(
        ctx.service.distribution.list_distributed(ctx.mount, ctx.params["name"])
    )


def _distribute(ctx: Context) -> ApiResponse:
    data = ctx.data
    warnings = ctx.service.distribution.distribute(
        ctx.mount,
        ctx.params["name"],
        ctx.params["key_name"],
        purpose=data.get("purpose"),
        protection=data.get("protection"),
        expiration_period=data.get("expiration_period"),
    )
    return vaultapi.written(data.warnings + warnings)


def _kms_exists(ctx: Context) -> bool:
    return ctx.service.kms.exists(ctx.mount, ctx.params["name"])


def _distribution_exists(ctx: Context) -> bool:
    return ctx.service.distribution.exists(ctx.mount, ctx.params["name"], ctx.params["key_name"])


def _read_distribution(ctx: Context) -> ApiResponse:
    status = ctx.service.distribution.read(ctx.mount, ctx.params["name"], ctx.params["key_name"])
    return vaultapi.ok(render_distribution(status))


def _remove(ctx: Context) -> ApiResponse:
    ctx.service.distribution.remove(ctx.mount, ctx.params["name"], ctx.params["key_name"])
    return vaultapi.written()


def _health(ctx: Context) -> ApiResponse:
    return vaultapi.ok(render_health(ctx.service.kms.health(ctx.mount, ctx.params["name"])))


KMS_PARAM = {"name": names.KMS_PROVIDER}

PROVIDERS_PATH = PathSpec(
    "kms",
    operations={"list": _list_kms},
    synopsis="List the KMS providers of this mount.",
    help="Lists the names of the KMS providers configured in this Key Management mount. A "
    "mount with none answers 404, as Vault does.",
)
PROVIDER_PATH = PathSpec(
    "kms/:name",
    fields=PROVIDER_FIELDS,
    params=KMS_PARAM,
    existence=_kms_exists,
    operations={"read": _read_kms, "update": _write_kms, "delete": _delete_kms},
    synopsis="Configure, read or delete a KMS provider.",
    help="A write creates the KMS provider when it does not exist (Vault's create operation: "
    "provider and key_collection are required) and updates it when it does (update: only "
    "credentials may change). Credentials are sealed and never returned. A delete is refused "
    "while any key is distributed to the provider.",
)
DISTRIBUTED = PathSpec(
    "kms/:name/key",
    params=KMS_PARAM,
    operations={"list": _list_distributed},
    synopsis="List the keys distributed to a KMS provider.",
    help="Lists the names of the keys this KMS provider holds. A provider holding none "
    "answers 404.",
)
DISTRIBUTION = PathSpec(
    "kms/:name/key/:key_name",
    fields=DISTRIBUTION_FIELDS,
    params={"name": names.KMS_PROVIDER, "key_name": names.KEY},
    existence=_distribution_exists,
    operations={"read": _read_distribution, "update": _distribute, "delete": _remove},
    synopsis="Distribute a key to a KMS provider, read its distribution, or remove it.",
    help="A write distributes the key (Vault's create operation when it is not distributed "
    "yet, update when it is): every enabled version is imported into the provider, with "
    "Key Vault's BYOK format for protection=hsm. A read shows the remote key's name and "
    "the versions imported. A delete removes the key from the provider (in Key Vault: a "
    "soft delete, recoverable for the vault's retention period).",
)
HEALTH = PathSpec(
    "kms/:name/health",
    params=KMS_PARAM,
    operations={"read": _health},
    synopsis="ext: check the path from this service to the provider's vault.",
    help="Resolves the vault's name, says whether every address it resolves to is private "
    "(a private endpoint), gets a token with the provider's credential and makes one "
    "harmless Key Vault call; names the permission that is missing, if one is.",
)
