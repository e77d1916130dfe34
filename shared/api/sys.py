"""``sys/*``: the minimum the Vault CLI, hvac and Terraform call."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from shared import mounts, names, remount, vaultapi
from shared.api import Context, Handler, PathSpec
from shared.errors import NotFound
from shared.records import Mount
from shared.remount import Mover
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
    settings = mount.settings
    return {
        "type": mount.type,
        "description": mount.description,
        "accessor": f"{mount.type}_{mount.uuid[:8]}",
        "uuid": mount.uuid,
        "config": mounts.config_view(settings),
        "options": dict(settings.options),
        "local": settings.local,
        "seal_wrap": settings.seal_wrap,
        "external_entropy_access": settings.external_entropy_access,
        "plugin_version": "",
        "running_plugin_version": "",
        "running_sha256": "",
        "deprecation_status": "supported",
    }


def render_mounts(mounts: list[Mount]) -> dict[str, Any]:
    """``sys/mounts``: each mount under its path with a trailing slash."""
    return {f"{mount.name}/": render_mount(mount) for mount in mounts}


def _sys_data(data: dict[str, Any]) -> ApiResponse:
    """A ``sys/`` answer as Vault sends it: the data in the envelope and, for the clients
    written against old versions, repeated at the top level."""
    payload = vaultapi.envelope(data)
    payload.update(data)
    return vaultapi.raw_json(200, payload)


# -- handlers ----------------------------------------------------------------------------------


def _list_mounts(ctx: Context) -> ApiResponse:
    return _sys_data(render_mounts(ctx.service.mounts.list()))


def _read_mount(ctx: Context) -> ApiResponse:
    mount = ctx.service.mounts.get(ctx.params["path"])
    if mount is None:
        raise mounts.no_mount_read(ctx.params["path"])
    return _sys_data(render_mount(mount))


def _enable(ctx: Context) -> ApiResponse:
    data = ctx.data
    engine_type = data.get("type")
    settings = mounts.enable_settings(
        data.get("config"),
        data.get("options") or {},
        local=data.get("local"),
        seal_wrap=data.get("seal_wrap"),
        external_entropy_access=data.get("external_entropy_access"),
        system_max=ctx.service.mounts.system_max_ttl,
    )
    ctx.service.mounts.enable(ctx.params["path"], engine_type, data.get("description"), settings)
    return vaultapi.written()


def _disable(ctx: Context) -> ApiResponse:
    ctx.service.mounts.disable(ctx.params["path"])
    return vaultapi.written()


def _read_tune(ctx: Context) -> ApiResponse:
    return _sys_data(ctx.service.mounts.tune_view(ctx.params["path"]))


def _tune(ctx: Context) -> ApiResponse:
    changes = {f.name: ctx.data.get(f.name) for f in TUNE_FIELDS if ctx.data.has(f.name)}
    ctx.service.mounts.tune(ctx.params["path"], changes)
    return vaultapi.written()


def _mover(ctx: Context) -> Mover:
    mover = ctx.service.mounts.mover
    assert mover is not None, "shared.service.build wires the mover"
    return mover


def _remount(ctx: Context) -> ApiResponse:
    record = _mover(ctx).start(ctx.data.get("from"), ctx.data.get("to"))
    data = {"migration_id": record.id}
    payload = vaultapi.envelope(data, [remount.QUEUED])
    payload.update(data)
    return vaultapi.raw_json(200, payload)


def _remount_status(ctx: Context) -> ApiResponse:
    record = _mover(ctx).status(ctx.params["migration_id"])
    if record is None:
        raise NotFound()
    return vaultapi.ok(
        {
            "migration_id": record.id,
            "migration_info": {
                "source_mount": f"{record.source}/",
                "target_mount": f"{record.target}/",
                "status": record.status,
            },
        }
    )


def _config(value: Any, name: str) -> Any:
    """enable's ``config``: a map, checked setting by setting by shared.mounts."""
    return value


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
    Field(
        "config",
        _config,
        "settings: default_lease_ttl, max_lease_ttl, force_no_cache, "
        "audit_non_hmac_request_keys, audit_non_hmac_response_keys, listing_visibility, "
        "passthrough_request_headers, allowed_response_headers",
    ),
    Field("options", vaultapi.kv_pairs, "engine options (key=value); kept, unused by keymgmt"),
    Field(
        "local", vaultapi.weak_bool, "kept as Vault keeps it (no replication here)", default=False
    ),
    Field(
        "seal_wrap",
        vaultapi.weak_bool,
        "kept as Vault keeps it (key material is always sealed)",
        default=False,
    ),
    Field(
        "external_entropy_access",
        vaultapi.weak_bool,
        "kept as Vault keeps it",
        default=False,
    ),
    # Accepted for compatibility with the CLI and hvac; they do not change anything here.
    *(Field(name, vaultapi.accepted) for name in ("plugin_name", "plugin_version", "path")),
]

TUNE_FIELDS = [
    Field("description", vaultapi.weak_str, "human-friendly description"),
    Field("default_lease_ttl", vaultapi.weak_str, 'default lease TTL, or "system"'),
    Field("max_lease_ttl", vaultapi.weak_str, 'maximum lease TTL, or "system"'),
    Field(
        "audit_non_hmac_request_keys",
        mounts.tune_list,
        "request keys audit logs leave in the clear",
    ),
    Field(
        "audit_non_hmac_response_keys",
        mounts.tune_list,
        "response keys audit logs leave in the clear",
    ),
    Field("listing_visibility", vaultapi.weak_str, "unauth, hidden or empty"),
    Field("passthrough_request_headers", mounts.tune_list, "headers passed to the engine"),
    Field("allowed_response_headers", mounts.tune_list, "headers the engine may set"),
    Field("options", vaultapi.kv_pairs, "engine options to set (an empty value removes one)"),
    Field("plugin_version", vaultapi.weak_str, "refused: keymgmt is built in"),
    Field("token_type", vaultapi.weak_str, "refused: only auth methods have one"),
    Field("user_lockout_config", vaultapi.accepted, "refused: only auth methods have one"),
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
    params: Mapping[str, str] | None = None,
) -> PathSpec:
    """A ``sys/``-style path outside any mount that only answers reads."""
    return PathSpec(
        pattern,
        operations={"read": handler},
        params=params or {},
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
    "one segment, and the Functions host's own routes are refused), keeping its config, "
    "options and flags as Vault does. A delete disables it and removes its keys and KMS "
    "providers; unlike Vault, it is refused, naming them, while a key is still distributed "
    "to a KMS provider, so no Key Vault copy is left without its record.",
)
MOUNT_TUNE = PathSpec(
    "sys/mounts/:path/tune",
    fields=TUNE_FIELDS,
    mounted=False,
    operations={"read": _read_tune, "update": _tune},
    synopsis="Tune the settings of a secrets engine mount.",
    help="A read shows the mount's effective TTLs (the system's where it sets none), its "
    "description and the settings it sets; a write changes those sent, with Vault's rules: "
    '"system" resets a TTL, the max may not fall below the default, an empty option value '
    "removes the option.",
)
REMOUNT = PathSpec(
    "sys/remount",
    fields=[
        Field("from", vaultapi.weak_str, "the mount to move"),
        Field("to", vaultapi.weak_str, "its new path"),
    ],
    mounted=False,
    operations={"update": _remount},
    synopsis="Move a mount to a new path.",
    help="Moves the keymgmt mount at from to the path to, with its settings, keys (their "
    "versions resealed for the new path), KMS providers, distributions and index entries; "
    "both paths refuse writes until it is done. Answers the migration id, as Vault does; the "
    "move is finished when the answer comes (a move whose instance died is resumed by the "
    "clean-up). Key Vault copies keep their tags, which name the former path.",
)
REMOUNT_STATUS = _read_only(
    "sys/remount/status/:migration_id",
    _remount_status,
    params={"migration_id": names.MIGRATION_ID},
    synopsis="The status of a mount move.",
    help="source_mount, target_mount and status (in-progress, success or failure) of the move "
    "with that migration id; 404 for an unknown one.",
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
