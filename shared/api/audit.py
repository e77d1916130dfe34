"""``sys/audit`` and ``sys/audit-hash``: the audit devices, read-only, as OpenBao >= 2.3 serves
config-declared devices (reference: ../shared/reference/vault-auth-policy-audit.md §6.1-6.2).

Devices are declared in the app setting KEYMGMT_AUDIT_DEVICES, never through the API: a write
is refused with OpenBao's text, and so is disabling a declared device (an unknown one is
already disabled: 204, as OpenBao answers). docs/audit.md has the rest.
"""

from __future__ import annotations

from typing import Any

from shared import names, vaultapi
from shared.api import Context, PathSpec
from shared.errors import InvalidRequest
from shared.settings import AuditDevice
from shared.vaultapi import ApiResponse, Field

API_REFUSED = (
    "cannot enable audit device via API; use declarative, config-based audit device management "
    "instead"
)
DISABLE_REFUSED = "cannot disable configuration-managed audit device"


def _with_top_level(data: dict[str, Any]) -> ApiResponse:
    """Vault's legacy sys/ answers: ``data``'s keys repeated at the top level."""
    payload = vaultapi.envelope(data)
    payload.update(data)
    return vaultapi.raw_json(200, payload)


def render_device(device: AuditDevice) -> dict[str, Any]:
    """One entry of ``GET sys/audit``: the options as declared (OpenBao shows those)."""
    return {
        "description": device.description,
        "local": False,
        "options": dict(device.options),
        "path": f"{device.path}/",
        "type": device.type,
    }


def _list(ctx: Context) -> ApiResponse:
    devices = ctx.service.audit.devices
    return _with_top_level({f"{d.path}/": render_device(d) for d in devices})


def _enable(ctx: Context) -> ApiResponse:
    raise InvalidRequest(API_REFUSED)


def _disable(ctx: Context) -> ApiResponse:
    if ctx.service.audit.device(ctx.params["path"]) is not None:
        raise InvalidRequest(DISABLE_REFUSED)
    return vaultapi.written()  # not enabled: nothing to disable (OpenBao answers 204)


def _hash(ctx: Context) -> ApiResponse:
    path = ctx.params["path"]
    broker = ctx.service.audit
    if broker.device(path) is None:
        raise InvalidRequest(f'unknown audit backend "{path}/"')
    value = ctx.data.get("input")
    return _with_top_level({"hash": broker.hash(path, value)})


def _input(value: object, name: str) -> str:
    return vaultapi.weak_str(value, name, max_length=64 * 1024)


# Accepted as Vault's enable body declares them, and refused anyway.
ENABLE_FIELDS = [
    Field("type", vaultapi.accepted, "the device type"),
    Field("description", vaultapi.accepted, "a description"),
    Field("options", vaultapi.accepted, "the device's options"),
    Field("local", vaultapi.accepted, "replication: local only"),
]

AUDIT = PathSpec(
    "sys/audit",
    mounted=False,
    operations={"read": _list},
    synopsis="List the enabled audit devices.",
    help="Every device declared in KEYMGMT_AUDIT_DEVICES under its path with a trailing "
    "slash, in data and, as Vault sends it, at the top level too. Needs sudo.",
)
AUDIT_DEVICE = PathSpec(
    "sys/audit/:path",
    params={"path": names.AUDIT_DEVICE},
    fields=ENABLE_FIELDS,
    mounted=False,
    operations={"update": _enable, "delete": _disable},
    synopsis="Enable or disable an audit device (refused: devices are declared in settings).",
    help="Audit devices are declared in the app setting KEYMGMT_AUDIT_DEVICES, as OpenBao "
    "declares them in its configuration; a write is refused, as is disabling a declared "
    "device.",
)
AUDIT_HASH = PathSpec(
    "sys/audit-hash/:path",
    params={"path": names.AUDIT_DEVICE},
    fields=[Field("input", _input, "the value to hash", required=True)],
    mounted=False,
    operations={"update": _hash},
    synopsis="Hash a value as an audit device's entries hash it.",
    help="The HMAC-SHA256 of input under the device's salt, prefixed hmac-sha256:, as the "
    "device writes tokens, accessors and data values: search the log for a token by its "
    "hash. Needs update on the path, not sudo.",
)
ALL = (AUDIT, AUDIT_DEVICE, AUDIT_HASH)
