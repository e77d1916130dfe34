"""``kms``, ``kms/:name``, ``kms/:name/key``, ``kms/:name/key/:key_name``, ``kms/:name/health``."""

from __future__ import annotations

from shared import vaultapi
from shared.api import Context, PathSpec
from shared.distribution import Distributor
from shared.errors import InvalidRequest
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


def _distributor(ctx: Context) -> Distributor:
    distributor: Distributor = ctx.service.distribution
    return distributor


def _list_providers(ctx: Context) -> ApiResponse:
    return vaultapi.listing(_distributor(ctx).list_providers(ctx.mount))


def _read_provider(ctx: Context) -> ApiResponse:
    return vaultapi.ok(_distributor(ctx).read_provider(ctx.mount, ctx.params["name"]))


def _write_provider(ctx: Context) -> ApiResponse:
    data = ctx.data
    _distributor(ctx).write_provider(
        ctx.mount,
        ctx.params["name"],
        provider=data.get("provider"),
        key_collection=data.get("key_collection"),
        credentials=data.get("credentials"),
    )
    return vaultapi.written(data.warnings)


def _delete_provider(ctx: Context) -> ApiResponse:
    _distributor(ctx).delete_provider(ctx.mount, ctx.params["name"])
    return vaultapi.written()


def _list_distributed(ctx: Context) -> ApiResponse:
    return vaultapi.listing(_distributor(ctx).list_distributed(ctx.mount, ctx.params["name"]))


def _distribute(ctx: Context) -> ApiResponse:
    data = ctx.data
    if not data.has("purpose"):
        raise InvalidRequest(
            "purpose is required: a comma list of encrypt, decrypt, sign, verify, wrap, unwrap"
        )
    expiration = data.get("expiration_period", 0) or 0
    if expiration < 0:
        raise InvalidRequest("expiration_period must be a positive duration, or 0 for none")
    warnings = _distributor(ctx).distribute(
        ctx.mount,
        ctx.params["name"],
        ctx.params["key_name"],
        purpose=data.get("purpose"),
        protection=data.get("protection") or "hsm",
        expiration_period=expiration,
    )
    return vaultapi.written(data.warnings + warnings)


def _read_distribution(ctx: Context) -> ApiResponse:
    return vaultapi.ok(
        _distributor(ctx).read_distribution(ctx.mount, ctx.params["name"], ctx.params["key_name"])
    )


def _remove(ctx: Context) -> ApiResponse:
    _distributor(ctx).remove(ctx.mount, ctx.params["name"], ctx.params["key_name"])
    return vaultapi.written()


def _health(ctx: Context) -> ApiResponse:
    return vaultapi.ok(_distributor(ctx).health(ctx.mount, ctx.params["name"]))


PROVIDERS = PathSpec("kms", operations={"list": _list_providers})
PROVIDER = PathSpec(
    "kms/:name",
    fields=PROVIDER_FIELDS,
    operations={"read": _read_provider, "update": _write_provider, "delete": _delete_provider},
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
