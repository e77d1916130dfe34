"""``sys/auth`` and ``auth/<mount>/*``: enabling auth methods and the jwt and azure methods'
config, role and login paths, as OpenBao (jwt) and vault-plugin-auth-azure declare them.

One route serves every method mounted at ``auth/<mount>/...``; its fields are the union of
the types' fields, and each handler checks the body again against its method's own fields
(so the warning about unrecognised parameters is the method's). The engine is
``shared/auth``.
"""

from __future__ import annotations

import uuid
from typing import Any

from shared import mounts, vaultapi
from shared.api import Context, PathSpec
from shared.api.sys import TUNE_FIELDS, VERSION
from shared.api.tokens import render_auth
from shared.auth import JWT
from shared.errors import InvalidRequest, NotFound, PermissionDenied
from shared.names import AUTH_PATH, ROLE
from shared.records import AuthMount
from shared.vaultapi import ApiResponse, Field, FieldData


def _text(value: Any, name: str) -> str:
    return vaultapi.weak_str(value, name, 16 * 1024)


def _pem(value: Any, name: str) -> str:
    return vaultapi.weak_str(value, name, 64 * 1024)


def _pems(value: Any, name: str) -> list[str]:
    """A list of PEM blocks (commas inside a PEM are no separators: a JSON list, or one)."""
    items = value if isinstance(value, list) else [value]
    if len(items) > vaultapi.MAX_LIST:
        raise InvalidRequest(
            f"Field validation failed: {name} has more than {vaultapi.MAX_LIST} items"
        )
    return [_pem(item, name).strip() for item in items if str(item).strip()]


def _claims_map(value: Any, name: str) -> dict[str, Any] | None:
    """bound_claims: an object of claim → a string (or number, boolean) or a list of them."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest(f"Field validation failed: {name} must be an object")
    if len(value) > vaultapi.MAX_LIST:
        raise InvalidRequest(
            f"Field validation failed: {name} has more than {vaultapi.MAX_LIST} claims"
        )
    result: dict[str, Any] = {}
    for claim, expected in value.items():
        items = expected if isinstance(expected, list) else [expected]
        if len(items) > vaultapi.MAX_LIST or not all(
            isinstance(i, (str, int, float, bool)) for i in items
        ):
            raise InvalidRequest(
                f"Field validation failed: {name}.{str(claim)[:64]} must be a string or a list "
                "of strings"
            )
        result[str(claim)[:256]] = expected
    return result


def _mapping(value: Any, name: str) -> dict[str, str] | None:
    return None if value is None else vaultapi.kv_pairs(value, name)


def _duration(value: Any, name: str) -> int:
    return vaultapi.duration_seconds(value, name)


def _lower_list(value: Any, name: str) -> list[str]:
    return vaultapi.comma_list(value, name)


TOKEN_FIELDS = [
    Field("token_policies", vaultapi.comma_list, "policies of the tokens the role issues"),
    Field("policies", vaultapi.comma_list, "use token_policies"),
    Field("token_ttl", _duration, "initial TTL of issued tokens"),
    Field("ttl", _duration, "use token_ttl"),
    Field("token_max_ttl", _duration, "maximum TTL of issued tokens"),
    Field("max_ttl", _duration, "use token_max_ttl"),
    Field("token_explicit_max_ttl", _duration, "hard cap on issued tokens' lifetime"),
    Field("token_period", _duration, "renewal period of issued (periodic) tokens"),
    Field("period", _duration, "use token_period"),
    Field("token_num_uses", vaultapi.weak_int, "uses of issued tokens (0: unlimited)"),
    Field("num_uses", vaultapi.weak_int, "use token_num_uses"),
    Field("token_no_default_policy", vaultapi.weak_bool, "leave out the default policy"),
    Field("token_type", vaultapi.weak_str, "service or default (batch is not issued)"),
    Field("token_bound_cidrs", vaultapi.comma_list, "networks issued tokens work from"),
]

JWT_CONFIG_FIELDS = [
    Field("oidc_discovery_url", _text, "OIDC issuer whose discovery document names the keys"),
    Field("oidc_discovery_ca_pem", _pem, "CA PEM to trust for the discovery URL"),
    Field("oidc_client_id", _text, "OAuth client id (the OIDC browser flow)"),
    Field("oidc_client_secret", _text, "OAuth client secret (never read back)"),
    Field("oidc_response_mode", _text, "OIDC response mode"),
    Field("oidc_response_types", vaultapi.comma_list, "OIDC response types"),
    Field("jwks_url", _text, "JWKS URL of the signing keys"),
    Field("jwks_ca_pem", _pem, "CA PEM to trust for the JWKS URL"),
    Field("jwks_pairs", vaultapi.accepted, "not supported: use jwks_url"),
    Field("jwt_validation_pubkeys", _pems, "PEM public keys that sign the JWTs"),
    Field("jwt_supported_algs", vaultapi.comma_list, "signing algorithms accepted"),
    Field("bound_issuer", _text, "the iss claim every JWT must carry"),
    Field("default_role", _text, "role of a login that names none"),
    Field("provider_config", vaultapi.accepted, "not supported"),
    Field("namespace_in_state", vaultapi.weak_bool, "OIDC flow: namespace in state"),
]
AZURE_CONFIG_FIELDS = [
    Field("tenant_id", _text, "Entra tenant of the tokens (default: AZURE_TENANT_ID)"),
    Field("resource", _text, "the aud every token must carry (default: AZURE_AD_RESOURCE)"),
    Field("environment", _text, "Azure cloud (default: AZURE_ENVIRONMENT, public)"),
    Field("client_id", _text, "client id for Azure API calls (stored; none are made)"),
    Field("client_secret", _text, "client secret (sealed; never read back)"),
    Field("identity_token_audience", _text, "not supported"),
    *(
        Field(name, vaultapi.accepted, "accepted; no Azure API calls are made")
        for name in (
            "identity_token_ttl",
            "root_password_ttl",
            "max_retries",
            "retry_delay",
            "max_retry_delay",
        )
    ),
]
# hvac sends the role's name in the body too; Vault's role paths declare it (the URL's wins).
ROLE_NAME_FIELD = Field("name", vaultapi.accepted, "the role's name (the path's)")
JWT_ROLE_FIELDS = [
    ROLE_NAME_FIELD,
    Field("role_type", vaultapi.weak_str, "jwt (bearer JWT login) or oidc (stored only)"),
    Field("bound_audiences", vaultapi.comma_list, "aud values accepted"),
    Field("user_claim", vaultapi.weak_str, "claim that names the user (required)"),
    Field("user_claim_json_pointer", vaultapi.weak_bool, "not supported"),
    Field("bound_subject", _text, "the sub claim required"),
    Field("bound_claims", _claims_map, "claims required, each any of its values"),
    Field("bound_claims_type", vaultapi.weak_str, "string or glob"),
    Field("claim_mappings", _mapping, "claims copied into the token's metadata"),
    Field("groups_claim", vaultapi.weak_str, "claim holding the groups"),
    Field("clock_skew_leeway", _duration, "leeway for all time claims (0: 60s; -1: none)"),
    Field("expiration_leeway", _duration, "leeway for exp (0: 150s; -1: none)"),
    Field("not_before_leeway", _duration, "leeway for nbf (0: 150s; -1: none)"),
    Field("max_age", _duration, "OIDC flow only"),
    Field("allowed_redirect_uris", vaultapi.comma_list, "OIDC flow only"),
    Field("oidc_scopes", vaultapi.comma_list, "OIDC flow only"),
    Field("verbose_oidc_logging", vaultapi.weak_bool, "OIDC flow only"),
    Field("callback_mode", vaultapi.weak_str, "OIDC flow only"),
    *TOKEN_FIELDS,
]
AZURE_ROLE_FIELDS = [
    ROLE_NAME_FIELD,
    Field("bound_service_principal_ids", vaultapi.comma_list, "oid values accepted"),
    Field("bound_group_ids", vaultapi.comma_list, "group ids accepted (groups claim)"),
    Field("bound_locations", vaultapi.comma_list, "refused: needs ARM reads"),
    Field("bound_subscription_ids", vaultapi.comma_list, "subscriptions (xms_mirid)"),
    Field("bound_resource_groups", vaultapi.comma_list, "resource groups (xms_mirid)"),
    Field("bound_scale_sets", vaultapi.comma_list, "refused: needs ARM reads"),
    *TOKEN_FIELDS,
]
JWT_LOGIN_FIELDS = [
    Field("role", vaultapi.weak_str, "the role to log in with (default: default_role)"),
    Field("jwt", lambda v, n: vaultapi.weak_str(v, n, 64 * 1024), "the signed JWT"),
]
AZURE_LOGIN_FIELDS = [
    Field("role", vaultapi.weak_str, "the role to log in with"),
    Field("jwt", lambda v, n: vaultapi.weak_str(v, n, 64 * 1024), "the Entra ID access token"),
    Field("subscription_id", vaultapi.weak_str, "subscription of the resource"),
    Field("resource_group_name", vaultapi.weak_str, "resource group of the resource"),
    Field("vm_name", vaultapi.weak_str, "virtual machine name"),
    Field("vmss_name", vaultapi.weak_str, "virtual machine scale set name"),
    Field("resource_id", vaultapi.weak_str, "resource ID of the resource (App Service, ...)"),
]


def _union(*lists: list[Field]) -> list[Field]:
    seen: dict[str, Field] = {}
    for fields in lists:
        for f in fields:
            seen.setdefault(f.name, f)
    return list(seen.values())


MOUNT_FIELDS = [
    Field("type", vaultapi.weak_str, "auth method type: jwt (or oidc) or azure", default=""),
    Field("description", vaultapi.weak_str, "human-friendly description", default=""),
    # Kept as a secrets engine mount keeps them (shared.mounts.enable_settings); stored only.
    Field(
        "config",
        vaultapi.accepted,
        "settings: default_lease_ttl, max_lease_ttl, force_no_cache, token_type, "
        "audit_non_hmac_request_keys, audit_non_hmac_response_keys, listing_visibility, "
        "passthrough_request_headers, allowed_response_headers",
    ),
    Field("options", vaultapi.kv_pairs, "method options (key=value); kept, unused"),
    Field("local", vaultapi.weak_bool, "kept (no replication here)", default=False),
    Field("seal_wrap", vaultapi.weak_bool, "kept (secrets are always sealed)", default=False),
    Field("external_entropy_access", vaultapi.weak_bool, "kept", default=False),
    # Accepted for compatibility with the CLI and hvac; they change nothing here.
    *(
        Field(name, vaultapi.accepted, description)
        for name, description in (
            ("plugin_name", "Name of the auth plugin; ignored here (jwt and azure are built in)."),
            ("plugin_version", "The semantic version of the plugin to use; ignored here."),
        )
    ),
]
AUTH_TUNE_FIELDS = [
    Field("token_type", vaultapi.weak_str, "default-service, default-batch, service or batch")
    if f.name == "token_type"
    else f
    for f in TUNE_FIELDS
]


# -- rendering ---------------------------------------------------------------------------------

_MOUNT_CONFIG = {
    "default_lease_ttl": 0,
    "force_no_cache": False,
    "max_lease_ttl": 0,
    "token_type": "default-service",
}
_TOKEN_UUID = str(uuid.uuid5(uuid.NAMESPACE_URL, "azure-keymgmt:auth/token"))


def _entry(
    *, type_: str, description: str, accessor: str, uuid_: str, options: Any
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "accessor": accessor,
        "config": dict(_MOUNT_CONFIG),
        "description": description,
        "external_entropy_access": False,
        "local": False,
        "options": options,
        "plugin_version": "",
        "running_plugin_version": f"v{VERSION}+builtin",
        "running_sha256": "",
        "seal_wrap": False,
        "type": type_,
        "uuid": uuid_,
    }
    if type_ != "token":
        entry["deprecation_status"] = "supported"
    return dict(sorted(entry.items()))


def render_method(mount: AuthMount) -> dict[str, Any]:
    settings = mount.settings
    entry = _entry(
        type_=mount.type,
        description=mount.description,
        accessor=mount.accessor,
        uuid_=mount.uuid,
        options=dict(settings.options),
    )
    entry["config"] = mounts.config_view(settings, auth=True)
    entry["local"] = settings.local
    entry["seal_wrap"] = settings.seal_wrap
    entry["external_entropy_access"] = settings.external_entropy_access
    return entry


TOKEN_METHOD = _entry(
    type_="token",
    description="token based credentials",
    accessor=f"auth_token_{_TOKEN_UUID[:8]}",
    uuid_=_TOKEN_UUID,
    options=None,
)


# -- sys/auth ----------------------------------------------------------------------------------


def _legacy(data: dict[str, Any]) -> ApiResponse:
    """OpenBao repeats a sys/auth answer's data at the top level (old clients read it there)."""
    payload = vaultapi.envelope(data)
    return vaultapi.raw_json(200, {**data, **payload})


def _list_methods(ctx: Context) -> ApiResponse:
    methods = {"token/": TOKEN_METHOD}
    for mount in ctx.service.auth.enabled():
        methods[f"{mount.path}/"] = render_method(mount)
    return _legacy(dict(sorted(methods.items())))


def _path(ctx: Context) -> str:
    return str(ctx.params["path"]).strip("/")


def _read_method(ctx: Context) -> ApiResponse:
    name = _path(ctx)
    if name == "token":
        return _legacy(TOKEN_METHOD)
    mount = ctx.service.auth.get(name)
    if mount is None:
        raise InvalidRequest(f"No auth engine at {name[:64]}/")
    return _legacy(render_method(mount))


def _enable(ctx: Context) -> ApiResponse:
    data = ctx.data
    ctx.service.auth.enable(
        _path(ctx),
        data.get("type"),
        data.get("description"),
        data.get("config"),
        data.get("options") or {},
        local=data.get("local"),
        seal_wrap=data.get("seal_wrap"),
        external_entropy_access=data.get("external_entropy_access"),
    )
    return vaultapi.written()


def _read_tune(ctx: Context) -> ApiResponse:
    return _legacy(ctx.service.auth.tune_view(_path(ctx)))


def _tune(ctx: Context) -> ApiResponse:
    changes = {f.name: ctx.data.get(f.name) for f in AUTH_TUNE_FIELDS if ctx.data.has(f.name)}
    ctx.service.auth.tune(_path(ctx), changes)
    return vaultapi.written()


def _disable(ctx: Context) -> ApiResponse:
    ctx.service.auth.disable(_path(ctx))
    return vaultapi.written()


SYS_AUTH = PathSpec(
    "sys/auth",
    operations={"read": _list_methods},
    mounted=False,
    synopsis="List the enabled auth methods.",
    help="Every auth method under its path with a trailing slash (token/ always), in data "
    "and, as OpenBao answers, at the top level too.",
)
SYS_AUTH_PATH = PathSpec(
    "sys/auth/:path",
    fields=MOUNT_FIELDS,
    params={"path": AUTH_PATH},
    mounted=False,
    operations={"read": _read_method, "update": _enable, "delete": _disable},
    synopsis="Enable, read or disable an auth method.",
    help="A write enables a method at the path: type jwt (oidc is the same method) or "
    "azure. A delete disables it: every token it issued is revoked, its config and roles "
    "are removed (repeat a delete that failed: it finishes the job). Needs sudo.",
)
SYS_AUTH_TUNE = PathSpec(
    "sys/auth/:path/tune",
    fields=AUTH_TUNE_FIELDS,
    params={"path": AUTH_PATH},
    mounted=False,
    operations={"read": _read_tune, "update": _tune},
    synopsis="Tune the settings of an auth method.",
    help="As sys/mounts/:path/tune, plus token_type. The settings are stored and shown as "
    "OpenBao shows them; this server's logins issue service tokens with the role's TTLs "
    "whatever they say (docs/auth.md). token/ can be read; a write to it is refused.",
)


# -- auth/<mount>/* ----------------------------------------------------------------------------


def _method(ctx: Context, what: str) -> AuthMount:
    mount = ctx.service.auth.get(str(ctx.params["mount"]))
    if mount is None:
        # Vault names the whole request path (a list's with its trailing slash): ctx.path.
        shown = ctx.path[:200] if ctx.path else f"auth/{str(ctx.params['mount'])[:64]}/{what}"
        raise NotFound(f'no handler for route "{shown}". route entry not found.')
    return mount


def _own(ctx: Context, fields: list[Field]) -> FieldData:
    """The body against the method's own fields (its unrecognised-parameter warning)."""
    data = FieldData(ctx.data.raw, fields)
    data.validate()
    return data


def _config_fields(mount: AuthMount) -> list[Field]:
    return JWT_CONFIG_FIELDS if mount.type == JWT else AZURE_CONFIG_FIELDS


def _config_exists(ctx: Context) -> bool:
    mount = _method(ctx, "config")
    if mount.type == JWT:
        return True  # the jwt config path has no existence check: a write is an update
    return ctx.service.auth.config(mount) is not None


def _read_config(ctx: Context) -> ApiResponse:
    mount = _method(ctx, "config")
    config = ctx.service.auth.render_config(mount)
    if config is None:
        raise NotFound()
    return vaultapi.ok(config)


def _write_config(ctx: Context) -> ApiResponse:
    mount = _method(ctx, "config")
    data = _own(ctx, _config_fields(mount))
    ctx.service.auth.write_config(mount, data)
    return vaultapi.written(data.warnings)


def _delete_config(ctx: Context) -> ApiResponse:
    mount = _method(ctx, "config")
    ctx.service.auth.delete_config(mount)
    return vaultapi.written()


def _role_fields(mount: AuthMount) -> list[Field]:
    return JWT_ROLE_FIELDS if mount.type == JWT else AZURE_ROLE_FIELDS


def _role_exists(ctx: Context) -> bool:
    mount = _method(ctx, "role")
    return ctx.service.auth.role(mount, ctx.params["name"]) is not None


def _read_role(ctx: Context) -> ApiResponse:
    mount = _method(ctx, "role")
    role = ctx.service.auth.render_role(mount, ctx.params["name"])
    if role is None:
        raise NotFound()
    return vaultapi.ok(role)


def _write_role(ctx: Context) -> ApiResponse:
    mount = _method(ctx, "role")
    data = _own(ctx, _role_fields(mount))
    warnings = ctx.service.auth.write_role(mount, ctx.params["name"], data)
    return vaultapi.written(warnings + data.warnings)


def _delete_role(ctx: Context) -> ApiResponse:
    mount = _method(ctx, "role")
    ctx.service.auth.delete_role(mount, ctx.params["name"])
    return vaultapi.written()


def _list_roles(ctx: Context) -> ApiResponse:
    mount = _method(ctx, "role")
    return vaultapi.listing(ctx.service.auth.roles(mount))


def _login(ctx: Context) -> ApiResponse:
    mount = ctx.service.auth.get(str(ctx.params["mount"]))
    if mount is None:
        raise PermissionDenied()  # as Vault: an unauthenticated path under no method
    fields = JWT_LOGIN_FIELDS if mount.type == JWT else AZURE_LOGIN_FIELDS
    data = _own(ctx, fields)
    token, warnings = ctx.service.auth.login(mount, data, ctx.request.remote_address)
    return vaultapi.authenticated(render_auth(token), warnings + data.warnings)


CONFIG = PathSpec(
    "auth/:mount/config",
    fields=_union(JWT_CONFIG_FIELDS, AZURE_CONFIG_FIELDS),
    params={"mount": AUTH_PATH},
    mounted=False,
    existence=_config_exists,
    operations={"read": _read_config, "update": _write_config, "delete": _delete_config},
    synopsis="Configure an auth method (jwt: where the signing keys are; azure: the tenant).",
    help="jwt: exactly one of jwt_validation_pubkeys, jwks_url or oidc_discovery_url, and "
    "bound_issuer; oidc_client_secret is never read back. azure: tenant_id and resource "
    "(the aud of the tokens), with AZURE_TENANT_ID / AZURE_AD_RESOURCE / AZURE_ENVIRONMENT "
    "as fallbacks; client_secret is sealed and never read back.",
)
ROLES = PathSpec(
    "auth/:mount/role",
    params={"mount": AUTH_PATH},
    mounted=False,
    operations={"list": _list_roles},
    synopsis="List an auth method's roles.",
    help="The names of the method's roles (LIST, or GET with ?list=true); 404 when none.",
)
ROLE_PATH = PathSpec(
    "auth/:mount/role/:name",
    fields=_union(JWT_ROLE_FIELDS, AZURE_ROLE_FIELDS),
    params={"mount": AUTH_PATH, "name": ROLE},
    mounted=False,
    existence=_role_exists,
    operations={"read": _read_role, "update": _write_role, "delete": _delete_role},
    synopsis="Create, read, update or delete a role of an auth method.",
    help="A role says which tokens may log in (jwt: bound_audiences, bound_subject, "
    "bound_claims, user_claim; azure: bound_service_principal_ids, bound_group_ids, "
    "bound_subscription_ids, bound_resource_groups) and what token they get (token_*). "
    "azure refuses bound_locations and bound_scale_sets: they need Resource Manager reads.",
)
LOGIN = PathSpec(
    "auth/:mount/login",
    fields=_union(JWT_LOGIN_FIELDS, AZURE_LOGIN_FIELDS),
    params={"mount": AUTH_PATH},
    mounted=False,
    authenticated=False,
    operations={"update": _login},
    # Every verb reaches it: a GET answers OpenBao's 405 and ?help=1 its help (bao path-help).
    synopsis="Log in with a JWT (jwt) or an Entra ID access token (azure).",
    help="Answers a service token (an orphan) with the role's policies; the JWT is never "
    "logged or echoed.",
)

# The CLI's ``bao auth tune`` (and Vault's own API client) tunes through sys/mounts/auth/...
SYS_MOUNTS_AUTH_TUNE = PathSpec(
    "sys/mounts/auth/:path/tune",
    fields=AUTH_TUNE_FIELDS,
    params={"path": AUTH_PATH},
    mounted=False,
    operations={"read": _read_tune, "update": _tune},
    synopsis=SYS_AUTH_TUNE.synopsis,
    help="The same as sys/auth/:path/tune (the path bao auth tune writes to).",
)

ALL = (
    SYS_AUTH,
    SYS_AUTH_PATH,
    SYS_AUTH_TUNE,
    SYS_MOUNTS_AUTH_TUNE,
    CONFIG,
    ROLES,
    ROLE_PATH,
    LOGIN,
)
