"""``kms``, ``kms/:name``, ``kms/:name/key``, ``kms/:name/key/:key_name``, ``kms/:name/health``.

The engine answers with records; this module renders them as the API's JSON.
"""

from __future__ import annotations

from typing import Any

from shared import vaultapi
from shared.api import Context, PathSpec
from shared.distribution import DistributionStatus
from shared.errors import InvalidRequest
from shared.providers import Health
from shared.records import KmsRecord, rfc3339
from shared.vaultapi import ApiResponse, Field


def _lower(value: object, name: str) -> str:
    return vaultapi.weak_str(value, name).strip().lower()


def _string(value: object, name: str) -> str:
    return vaultapi.weak_str(value, name).strip()


PROVIDER_FIELDS = [
    Field("provider", _lower, "KMS provider type: azurekeyvault"),
    Field("key_collection", _string, "the Azure Key Vault name"),
    Field(
        "credentials",
        vaultapi.kv_pairs,
        "client_id, client_secret, tenant_id, environment (key=value pairs); never returned",
    ),
]

DISTRIBUTION_FIELDS = [
    Field(
        "purpose", vaultapi.comma_list, "comma list of encrypt, decrypt, sign, verify, wrap, unwrap"
    ),
    Field("protection", _lower, "hsm (default, BYOK) or software"),
    Field(
        "expiration_period",
        vaultapi.duration_seconds,
        "ext: each imported version expires this long after its import (e.g. 90d)",
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
    if not data.has("purpose"):
        raise InvalidRequest(
            "purpose is required: a comma list of encrypt, decrypt, sign, verify, wrap, unwrap"
        )
    expiration = data.get("expiration_period", 0) or 0
    if expiration < 0:
        raise InvalidRequest("expiration_period must be a positive duration, or 0 for none")
    warnings = ctx.service.distribution.distribute(
        ctx.mount,
        ctx.params["name"],
        ctx.params["key_name"],
        purpose=data.get("purpose"),
        protection=data.get("protection") or "hsm",
        expiration_period=expiration,
    )
    return vaultapi.written(data.warnings + warnings)


def _read_distribution(ctx: Context) -> ApiResponse:
    status = ctx.service.distribution.read(ctx.mount, ctx.params["name"], ctx.params["key_name"])
    return vaultapi.ok(render_distribution(status))


def _remove(ctx: Context) -> ApiResponse:
    ctx.service.distribution.remove(ctx.mount, ctx.params["name"], ctx.params["key_name"])
    return vaultapi.written()


def _health(ctx: Context) -> ApiResponse:
    return vaultapi.ok(render_health(ctx.service.kms.health(ctx.mount, ctx.params["name"])))


PROVIDERS = PathSpec("kms", operations={"list": _list_kms})
PROVIDER = PathSpec(
    "kms/:name",
    fields=PROVIDER_FIELDS,
    operations={"read": _read_kms, "update": _write_kms, "delete": _delete_kms},
)
DISTRIBUTED = PathSpec("kms/:name/key", operations={"list": _list_distributed})
DISTRIBUTION = PathSpec(
    "kms/:name/key/:key_name",
    fields=DISTRIBUTION_FIELDS,
    operations={"read": _read_distribution, "update": _distribute, "delete": _remove},
)
HEALTH = PathSpec(
    "kms/:name/health",
    operations={"read": _health},
    description="ext: private endpoint check of the provider's vault",
)
