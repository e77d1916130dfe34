"""``sys/policy``, ``sys/policies/acl`` and ``sys/capabilities*``: ACL policies as Vault serves
them (reference: ../shared/reference/vault-auth-policy-audit.md §3.8-3.9).

``sys/policy`` is the legacy form (the policy text under ``rules``, and every answer repeated
at the top level of the JSON, which hvac reads); ``sys/policies/acl`` the current one (under
``policy``, in ``data`` only). Both list ``root`` last.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared import names, vaultapi
from shared.api import Context, PathSpec
from shared.audit import multierror
from shared.errors import InvalidRequest, NotFound, PermissionDenied
from shared.policies import MAX_POLICY_TEXT, decode_text
from shared.policy import ACL, ROOT_POLICY
from shared.vaultapi import ApiResponse, Field


def _text(value: object, name: str) -> str:
    return vaultapi.weak_str(value, name, max_length=MAX_POLICY_TEXT * 2)


def _with_top_level(data: dict[str, Any], warnings: list[str] | None = None) -> ApiResponse:
    """Vault's legacy sys/ answers: ``data``'s keys repeated at the top level."""
    payload = vaultapi.envelope(data, warnings)
    payload.update(data)
    return vaultapi.raw_json(200, payload)


POLICY_PARAM = {"name": names.POLICY}
ACL_FIELDS = [Field("policy", _text, "the policy's text, HCL or JSON (may be base64-encoded)")]
LEGACY_FIELDS = [
    Field("policy", _text, "the policy's text, HCL or JSON (may be base64-encoded)"),
    Field("rules", _text, "deprecated: the policy's text; use policy"),
]


# -- sys/policies/acl ----------------------------------------------------------------------------


def _list_acl(ctx: Context) -> ApiResponse:
    return vaultapi.ok({"keys": [*ctx.service.policies.names(), ROOT_POLICY]})


def _read_acl(ctx: Context) -> ApiResponse:
    record = ctx.service.policies.read(ctx.params["name"])
    if record is None:
        raise NotFound()
    return vaultapi.ok({"name": record.name, "policy": record.text})


def _write_acl(ctx: Context) -> ApiResponse:
    text = ctx.data.get("policy")
    ctx.service.policies.write(ctx.params["name"], decode_text(text or ""))
    return vaultapi.written()  # Vault drops the unknown-field warning on this 204 path


def _delete(ctx: Context) -> ApiResponse:
    ctx.service.policies.delete(ctx.params["name"])
    return vaultapi.written()


# -- sys/policy (legacy) -------------------------------------------------------------------------


def _list_legacy(ctx: Context) -> ApiResponse:
    keys = [*ctx.service.policies.names(), ROOT_POLICY]
    return _with_top_level({"keys": keys, "policies": keys})


def _read_legacy(ctx: Context) -> ApiResponse:
    record = ctx.service.policies.read(ctx.params["name"])
    if record is None:
        raise NotFound()
    return _with_top_level({"name": record.name, "rules": record.text})


def _write_legacy(ctx: Context) -> ApiResponse:
    data = ctx.data
    warnings: list[str] = []
    text = data.get("policy")
    if not text and data.has("rules"):
        text = data.get("rules")
        warnings.append("'rules' is deprecated, please use 'policy' instead")
    ctx.service.policies.write(ctx.params["name"], decode_text(text or ""))
    return vaultapi.written(warnings)


# -- sys/capabilities* ---------------------------------------------------------------------------


def _paths(ctx: Context) -> list[str]:
    paths = list(ctx.data.get("paths") or [])
    single = ctx.data.get("path")
    if single:
        paths.append(single)
    if not paths:
        raise InvalidRequest("paths must be supplied")
    return [path.strip().lstrip("/") for path in paths]


def _capabilities(acl: ACL, paths: list[str]) -> ApiResponse:
    data: dict[str, Any] = {path: acl.capabilities(path) for path in paths}
    if len(data) == 1:  # the Go CLI reads the legacy key
        data["capabilities"] = next(iter(data.values()))
    return _with_top_level(data)


def _capabilities_self(ctx: Context) -> ApiResponse:
    assert ctx.token is not None  # an authenticated path
    return _capabilities(ctx.service.policies.acl(ctx.token.policies), _paths(ctx))


def _capabilities_of(field: str) -> Callable[[Context], ApiResponse]:
    """``sys/capabilities`` (``field`` token) and ``sys/capabilities-accessor`` (accessor):
    the capabilities of the token the body names."""

    def handler(ctx: Context) -> ApiResponse:
        value = ctx.data.get(field)
        if not value:
            raise InvalidRequest(f"missing {field}")
        tokens = ctx.service.tokens
        if field == "token":
            try:
                info = tokens.lookup(value)
            except PermissionDenied:  # OpenBao: 400, its text through go-multierror
                raise InvalidRequest(multierror("invalid token")) from None
        else:
            info = tokens.lookup_accessor(value)
        return _capabilities(ctx.service.policies.acl(info.policies), _paths(ctx))

    return handler


def _secret(value: object, name: str) -> str:
    return vaultapi.weak_str(value, name, max_length=256).strip()


CAPABILITY_FIELDS = [
    Field("paths", vaultapi.comma_list, "the paths to report on"),
    Field("path", _secret, "deprecated: one path; use paths"),
    Field("token", _secret, "sys/capabilities: the token to report for"),
    Field("accessor", _secret, "sys/capabilities-accessor: the accessor of the token"),
]


POLICIES_ACL = PathSpec(
    "sys/policies/acl",
    operations={"list": _list_acl},
    mounted=False,
    synopsis="List the ACL policies.",
    help="Every ACL policy's name, sorted, with root last (root is built in and empty).",
)
POLICY_ACL = PathSpec(
    "sys/policies/acl/:name",
    fields=ACL_FIELDS,
    params=POLICY_PARAM,
    operations={"read": _read_acl, "update": _write_acl, "delete": _delete},
    mounted=False,
    synopsis="Read, write or delete an ACL policy.",
    help="The policy's text is HCL or JSON (docs/policies.md says what it may contain). Names "
    "are stored lower-cased. root cannot be written or deleted; default cannot be deleted.",
)
POLICY_LIST_LEGACY = PathSpec(
    "sys/policy",
    operations={"read": _list_legacy, "list": _list_legacy},
    mounted=False,
    synopsis="List the ACL policies (legacy form).",
    help="As sys/policies/acl, with the names under keys and policies, in data and at the top "
    "level of the answer.",
)
POLICY_LEGACY = PathSpec(
    "sys/policy/:name",
    fields=LEGACY_FIELDS,
    params=POLICY_PARAM,
    operations={"read": _read_legacy, "update": _write_legacy, "delete": _delete},
    mounted=False,
    synopsis="Read, write or delete an ACL policy (legacy form).",
    help="As sys/policies/acl/:name; the text is read back under rules, and may be written "
    "under rules (deprecated) or policy.",
)
CAPABILITIES_SELF = PathSpec(
    "sys/capabilities-self",
    fields=CAPABILITY_FIELDS,
    operations={"update": _capabilities_self},
    mounted=False,
    synopsis="What the calling token may do on paths.",
    help="For each path of paths (or the legacy path), the capabilities the caller's policies "
    "grant there: sorted, deny when none, root for a root token. With one path, the list is "
    "also under capabilities.",
)
CAPABILITIES = PathSpec(
    "sys/capabilities",
    fields=CAPABILITY_FIELDS,
    operations={"update": _capabilities_of("token")},
    mounted=False,
    synopsis="What a given token may do on paths.",
    help="As sys/capabilities-self, for the token in token.",
)
CAPABILITIES_ACCESSOR = PathSpec(
    "sys/capabilities-accessor",
    fields=CAPABILITY_FIELDS,
    operations={"update": _capabilities_of("accessor")},
    mounted=False,
    synopsis="What the token behind an accessor may do on paths.",
    help="As sys/capabilities-self, for the token whose accessor is in accessor.",
)
