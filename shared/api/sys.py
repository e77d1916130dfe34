"""``sys/*``: the minimum the Vault CLI, hvac and Terraform call."""

from __future__ import annotations

import time
from typing import Any

from shared import vaultapi
from shared.api import Context, Handler, PathSpec
from shared.errors import InvalidRequest, NotFound
from shared.records import Mount
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


# -- rendering: the engine's records in Vault's wire format -------------------------------------


def render_mount(mount: Mount) -> dict[str, Any]:
    """One entry of ``sys/mounts``, as Vault shows a secrets engine."""
    return {
        "type": mount.type,
        "description": mount.description,
        "accessor": f"{mount.type}_{mount.uuid[:8]}",
        "uuid": mount.uuid,
        "config": {"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": False},
        "options": None,
        "local": False,
        "seal_wrap": False,
        "external_entropy_access": False,
        "plugin_version": "",
        "running_plugin_version": "",
        "running_sha256": "",
        "deprecation_status": "supported",
    }


def render_mounts(mounts: list[Mount]) -> dict[str, Any]:
    """``sys/mounts``: each mount under its path with a trailing slash."""
    return {f"{mount.name}/": render_mount(mount) for mount in mounts}


# -- handlers ----------------------------------------------------------------------------------


def _list_mounts(ctx: Context) -> ApiResponse:
    mounts = render_mounts(ctx.service.mounts.list())
    payload = vaultapi.envelope(mounts)
    payload.update(mounts)  # real Vault repeats the map at top level
    return vaultapi.raw_json(200, payload)


def _read_mount(ctx: Context) -> ApiResponse:
    name = ctx.params["path"].strip("/")
    for mount in ctx.service.mounts.list():
        if mount.name == name:
            return vaultapi.ok(render_mount(mount))
    raise InvalidRequest(f"no mount at {name}/")


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


def _read_only(
    pattern: str,
    handler: Handler,
    *,
    synopsis: str,
    help: str,
    authenticated: bool = True,
    methods: tuple[str, ...] | None = None,
) -> PathSpec:
    """A ``sys/``-style path outside any mount that only answers reads."""
    return PathSpec(
        pattern,
        operations={"read": handler},
        methods=methods,
        authenticated=authenticated,
        audited=authenticated,  # the unauthenticated status paths are Vault's unaudited ones
        mounted=False,
        synopsis=synopsis,
        help=help,
    )


HEALTH = _read_only(
    "sys/health",
    _health,
    synopsis="Check the health of the server.",
    help="Answers without a token (GET or HEAD): initialized, sealed, standby, the server "
    "time and version. The status code follows activecode (200 by default), as Vault's "
    "does.",
    authenticated=False,
    methods=("GET", "HEAD"),
)
SEAL_STATUS = _read_only(
    "sys/seal-status",
    _seal_status,
    synopsis="Check the seal status of the server.",
    help="Answers without a token, in Vault's shape. This server is never sealed: its key "
    "material is sealed by a Key Vault key instead (KEYMGMT_SEAL_KEY_ID).",
    authenticated=False,
    methods=GET,  # served outside OpenBao's logical router, as sys/health
)
LEADER = _read_only(
    "sys/leader",
    _leader,
    synopsis="Check the high availability status of the server.",
    help="Answers without a token, in Vault's shape: there is no leader election here, every "
    "instance serves (ha_enabled is false).",
    authenticated=False,
    methods=GET,  # served outside OpenBao's logical router, as sys/health
)
INIT = _read_only(
    "sys/init",
    _init,
    synopsis="Check whether the server is initialized.",
    help="Answers without a token: always initialized, as there is nothing to initialize.",
    authenticated=False,
    methods=GET,  # served outside OpenBao's logical router, as sys/health
)
MOUNTS = _read_only(
    "sys/mounts",
    _list_mounts,
    synopsis="List the mounted secrets engines.",
    help="Every keymgmt mount under its path with a trailing slash, in data and, as real "
    "Vault sends it, at the top level of the answer too.",
)
MOUNT = PathSpec(
    "sys/mounts/:path",
    fields=MOUNT_FIELDS,
    mounted=False,
    operations={"read": _read_mount, "update": _enable, "delete": _disable},
    synopsis="Enable, read or disable a secrets engine mount.",
    help="A write enables a keymgmt mount at the path (type keymgmt is required; the path is "
    "one segment, and the Functions host's own routes are refused). A delete disables it; "
    "unlike Vault, it is refused while the mount still holds keys or KMS providers (delete "
    "them first), so no Key Vault copy is left without its record.",
)
ROTATION_STATUS = _read_only(
    "sys/keymgmt/rotation",
    _rotation_status,
    synopsis="ext: the last rotation sweep's summary",
    help="What the last scheduled rotation sweep did: keys rotated, skipped and failed, and "
    "when it ran. 404 until a sweep has run.",
)
RECONCILE_STATUS = _read_only(
    "sys/keymgmt/reconcile",
    _reconcile_status,
    synopsis="ext: the last reconciler result and drift reported by Key Vault events",
    help="What the last reconciler run found and repaired in the KMS providers, and the "
    "drift Key Vault's events reported since (reported_by_events).",
)
