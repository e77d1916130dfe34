"""``sys/*`` and ``auth/token/lookup-self``: the minimum the Vault CLI, hvac and Terraform call."""

from __future__ import annotations

import time

from shared import vaultapi
from shared.api import Context, PathSpec
from shared.errors import InvalidRequest, NotFound
from shared.vaultapi import ApiResponse, Field

VERSION = "1.19.0+azure-keymgmt.0.1.0"
CLUSTER_NAME = "azure-keymgmt"
CLUSTER_ID = "00000000-0000-4000-8000-6b65796d676d"


def _health(ctx: Context) -> ApiResponse:
    """``sys/health``: unauthenticated; the status code honours ``activecode``."""
    raw = ctx.request.query.get("activecode")
    status = 200
    if raw is not None:
        try:
            status = int(raw)
        except ValueError:
            return vaultapi.error(400, f"activecode: invalid status code {raw!r}")
        if not 100 <= status <= 599:
            return vaultapi.error(400, f"activecode: status code {status} out of range")
    body = {
        "initialized": True,
        "sealed": False,
        "standby": False,
        "performance_standby": False,
        "replication_performance_mode": "disabled",
        "replication_dr_mode": "disabled",
        "server_time_utc": int(time.time()),
        "version": VERSION,
        "cluster_name": CLUSTER_NAME,
        "cluster_id": CLUSTER_ID,
    }
    return vaultapi.raw_json(status, body)


def _seal_status(_: Context) -> ApiResponse:
    return vaultapi.raw_json(
        200,
        {
            "type": "shamir",
            "initialized": True,
            "sealed": False,
            "t": 1,
            "n": 1,
            "progress": 0,
            "nonce": "",
            "version": VERSION,
            "build_date": "",
            "migration": False,
            "recovery_seal": False,
            "storage_type": "azure-table",
            "cluster_name": CLUSTER_NAME,
            "cluster_id": CLUSTER_ID,
        },
    )


def _leader(_: Context) -> ApiResponse:
    return vaultapi.raw_json(
        200,
        {
            "ha_enabled": False,
            "is_self": False,
            "active_time": "0001-01-01T00:00:00Z",
            "leader_address": "",
            "leader_cluster_address": "",
            "performance_standby": False,
            "performance_standby_last_remote_wal": 0,
        },
    )


def _init(_: Context) -> ApiResponse:
    return vaultapi.raw_json(200, {"initialized": True})


def _lookup_self(ctx: Context) -> ApiResponse:
    return vaultapi.ok(ctx.service.tokens.check(ctx.request.token))


def _list_mounts(ctx: Context) -> ApiResponse:
    mounts = ctx.service.mounts.list()
    payload = vaultapi.envelope(mounts)
    payload.update(mounts)  # real Vault repeats the map at top level
    return vaultapi.raw_json(200, payload)


def _read_mount(ctx: Context) -> ApiResponse:
    name = ctx.params["path"].strip("/")
    mounts = ctx.service.mounts.list()
    entry = mounts.get(f"{name}/")
    if entry is None:
        raise InvalidRequest(f"no mount at {name}/")
    return vaultapi.ok(entry)


def _enable(ctx: Context) -> ApiResponse:
    ctx.service.mounts.enable(ctx.params["path"], ctx.data.get("type"), ctx.data.get("description"))
    return vaultapi.written()


def _disable(ctx: Context) -> ApiResponse:
    ctx.service.mounts.disable(ctx.params["path"])
    return vaultapi.written()


# No ``allowed`` on type: Mounts.enable refuses another type naming the one sent (a type is no
# secret, and operators are told which they asked for).
MOUNT_FIELDS = [
    Field(
        "type",
        vaultapi.weak_str,
        "secrets engine type: keymgmt",
        required=True,
        takes="the secrets engine type (keymgmt)",
    ),
    Field("description", vaultapi.weak_str, "human-friendly description", default=""),
    # Accepted for compatibility with the CLI and hvac; they do not change anything here.
    *(
        Field(name, vaultapi.accepted)
        for name in (
            "config",
            "options",
            "local",
            "seal_wrap",
            "external_entropy_access",
            "plugin_name",
            "plugin_version",
            "path",
        )
    ),
]


def _rotation_status(ctx: Context) -> ApiResponse:
    status = ctx.service.store.get_status("rotation")
    if status is None:
        raise NotFound()
    return vaultapi.ok(status)


def _reconcile_status(ctx: Context) -> ApiResponse:
    status = ctx.service.store.get_status("reconcile") or {}
    status["reported_by_events"] = ctx.service.store.event_drift()
    return vaultapi.ok(status)


GET = ("GET",)
HEALTH = PathSpec(
    "sys/health",
    operations={"read": _health},
    methods=("GET", "HEAD"),
    authenticated=False,
    mounted=False,
)
SEAL_STATUS = PathSpec(
    "sys/seal-status",
    operations={"read": _seal_status},
    methods=GET,
    authenticated=False,
    mounted=False,
)
LEADER = PathSpec(
    "sys/leader", operations={"read": _leader}, methods=GET, authenticated=False, mounted=False
)
INIT = PathSpec(
    "sys/init", operations={"read": _init}, methods=GET, authenticated=False, mounted=False
)
LOOKUP_SELF = PathSpec(
    "auth/token/lookup-self", operations={"read": _lookup_self}, mounted=False, methods=GET
)
MOUNTS = PathSpec("sys/mounts", operations={"read": _list_mounts}, mounted=False, methods=GET)
MOUNT = PathSpec(
    "sys/mounts/:path",
    fields=MOUNT_FIELDS,
    mounted=False,
    operations={"read": _read_mount, "update": _enable, "delete": _disable},
)
ROTATION_STATUS = PathSpec(
    "sys/keymgmt/rotation",
    operations={"read": _rotation_status},
    mounted=False,
    methods=GET,
    description="ext: the last rotation sweep's summary",
)
RECONCILE_STATUS = PathSpec(
    "sys/keymgmt/reconcile",
    operations={"read": _reconcile_status},
    mounted=False,
    methods=GET,
    description="ext: the last reconciler result and drift reported by Key Vault events",
)
