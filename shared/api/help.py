"""Vault's help and OpenAPI, generated from the ``PathSpec`` declarations (one source).

``?help=<anything>`` on a path answers Vault's help shape (``help``, ``openapi``,
``see_also``) built from the path's synopsis, description and fields, as OpenBao's
sdk/framework does (Path.helpCallback, pathHelpTemplate); ``sys/internal/specs/openapi``
merges every visible backend's paths into one OpenAPI 3 document (pathInternalOpenAPI);
``sys/internal/ui/mounts`` and ``sys/internal/ui/mounts/*path`` list the mounts a caller may
see (pathInternalUIMountsRead, pathInternalUIMountRead).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared import names, vaultapi

# Imported by shared.api's handle() when a request asks for help, and by shared.api.routes:
# shared.api is complete by then.
from shared.api import Context, Handler, PathSpec, generic
from shared.audit import Trail, multierror
from shared.errors import NotFound, PermissionDenied
from shared.mounts import no_route
from shared.policy import ACL, ROOT_POLICY
from shared.records import TokenInfo
from shared.vaultapi import ApiRequest, ApiResponse, Field

OPENAPI_VERSION = "3.0.2"  # what OpenBao's NewOASDocument declares
TITLE = "azure-keymgmt API"
DESCRIPTION = (
    "HTTP API of azure-keymgmt, compatible with Vault's. All API routes are prefixed with `/v1/`."
)


def asked(request: ApiRequest) -> bool:
    """Whether the request asks for help: a non-empty ``help`` query parameter (any value,
    ``help=0`` too) or the HELP verb, as OpenBao's wrapHelpHandler decides."""
    return request.query.get("help", "") != "" or request.method == "HELP"


# -- field types -------------------------------------------------------------------------------

# Vault's FieldType names (FieldType.String()) for the shared decoders; a module's own
# decoder is typed by its return annotation (``-> str``, ``-> int``, ...).
_DECODER_TYPES: Mapping[Callable[..., Any], str] = {
    vaultapi.weak_str: "string",
    vaultapi.weak_int: "int",
    vaultapi.weak_bool: "bool",
    vaultapi.duration_seconds: "duration (sec)",
    vaultapi.comma_list: "comma-string slice",
    vaultapi.kv_pairs: "keypair",
    vaultapi.accepted: "any",
}
_OAS_TYPES: Mapping[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "int": {"type": "integer"},
    "bool": {"type": "boolean"},
    "duration (sec)": {"type": "integer", "format": "seconds"},
    "comma-string slice": {"type": "array", "items": {"type": "string"}},
    "slice": {"type": "array", "items": {"type": "string"}},
    "keypair": {"type": "object"},
    "map": {"type": "object"},
    "any": {},  # a schema without a type takes any value
}


def field_type(field: Field) -> str:
    """The field's type as Vault's help names it."""
    known = _DECODER_TYPES.get(field.decode)
    if known is not None:
        return known
    try:
        hint = typing.get_type_hints(field.decode).get("return")
    except Exception:  # a lambda or an unresolvable annotation
        hint = None
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next((a for a in typing.get_args(hint) if a is not type(None)), None)
    origin = typing.get_origin(hint) or hint
    if origin is bool:
        return "bool"
    if origin is int:
        return "duration (sec)" if "duration" in field.decode.__name__ else "int"
    if origin in (list, tuple):
        return "slice"
    if origin is dict:
        return "map"
    return "string"


# What a route parameter names, as the help's parameter list describes it.
_PARAM_DESCRIPTIONS = {"path": "The path of the mount.", "mount": "The auth method's path."}


def _param_description(spec: PathSpec, param: str) -> str:
    kind = spec.params.get(param)
    if kind is not None:
        return f"Name of the {kind}."
    return _PARAM_DESCRIPTIONS.get(param, "<no description>")


def _param_regex(spec: PathSpec, param: str, rest: bool) -> str:
    if rest:
        return f"(?P<{param}>.+)"
    kind = spec.params.get(param)
    pattern = names.AUTH_PATH_PATTERN if kind == names.AUTH_PATH else names.NAME_PATTERN
    return f"(?P<{param}>{pattern if kind else '[^/]+'})"


# -- which backend a path belongs to -----------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """A mounted backend as Vault routes to it: ``prefix`` is its mount point as a request
    path starts (``sys/``, ``auth/token/``, ``auth/jwt/``, ``keymgmt/``)."""

    prefix: str
    type: str
    tag: str  # the OpenAPI tag of its operations
    singleton: bool  # sys/ and auth/token/: never a generic {..._mount_path}

    @property
    def parameter(self) -> str:
        """The generic mount path's parameter name (pathInternalOpenAPI's rule)."""
        mount = (
            self.prefix.removeprefix("auth/") if self.prefix.startswith("auth/") else self.prefix
        )
        return mount.rstrip("/").replace("-", "_") + "_mount_path"


SYS = Backend("sys/", "system", "system", True)
TOKEN = Backend("auth/token/", "token", "auth", True)


def relative_pattern(spec: PathSpec) -> str:
    """The spec's pattern inside its backend (``key/:name``, ``mounts/:path``, ``login``)."""
    if spec.mounted:
        return spec.pattern
    if spec.pattern.startswith("auth/token/"):
        return spec.pattern.removeprefix("auth/token/")
    if spec.pattern.startswith("auth/:mount/"):
        return spec.pattern.removeprefix("auth/:mount/")
    return spec.pattern.removeprefix("sys/")


def _own_params(spec: PathSpec) -> list[tuple[str, bool]]:
    """The route parameters inside the backend (the mount's own is not one), each with
    whether it takes the rest of the path."""
    return [
        (m.group(2), m.group(1) == "*") for m in re.finditer(r"([:*])(\w+)", relative_pattern(spec))
    ]


def route_regex(spec: PathSpec) -> str:
    """The path's route as Vault's help shows it: ``^key/(?P<name>...)$``."""
    rel = relative_pattern(spec)
    regex = re.sub(r"([:*])(\w+)", lambda m: _param_regex(spec, m.group(2), m.group(1) == "*"), rel)
    slash = "/?" if "list" in spec.operations else ""
    return f"^{regex}{slash}$"


# -- help text ---------------------------------------------------------------------------------


def _indent(count: int, text: str) -> str:
    prefix = " " * count
    return "\n".join(prefix + line for line in text.splitlines())


def help_text(spec: PathSpec, request_path: str) -> str:
    """OpenBao's pathHelpTemplate, filled from the declaration: parameters sorted by name,
    each with its type and description."""
    fields = _help_fields(spec)
    text = (
        f"Request:        {request_path}\nMatching Route: {route_regex(spec)}\n\n"
        f"{spec.synopsis.strip() or '<no synopsis>'}\n\n"
    )
    if fields:
        text += "## PARAMETERS\n"
        for name, kind, description in fields:
            text += f"\n{_indent(4, name)} ({kind})\n\n{_indent(8, description)}\n"
    text += f"\n## DESCRIPTION\n\n{spec.help.strip() or '<no description>'}"
    return text.strip()


def _help_fields(spec: PathSpec) -> list[tuple[str, str, str]]:
    fields = {
        f.name: (f.name, field_type(f), f.description.strip() or "<no description>")
        for f in spec.fields
    }
    for param, _ in _own_params(spec):
        fields.setdefault(param, (param, "string", _param_description(spec, param)))
    return [fields[name] for name in sorted(fields)]


# -- OpenAPI -----------------------------------------------------------------------------------


def document(paths: Mapping[str, Any], schemas: Mapping[str, Any], version: str) -> dict[str, Any]:
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": TITLE, "description": DESCRIPTION, "version": version},
        "paths": dict(paths),
        "components": {"schemas": dict(schemas)},
    }


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _schema(field: Field) -> dict[str, Any]:
    schema = dict(_OAS_TYPES.get(field_type(field), {"type": "string"}))
    if field.description.strip():
        schema["description"] = field.description.strip()
    if field.allowed:
        if schema.get("type") == "array":
            schema["items"] = {"type": "string", "enum": list(field.allowed)}
        else:
            schema["enum"] = list(field.allowed)
    default = field.default
    if isinstance(default, tuple):
        default = list(default)
    if isinstance(default, (str, int, float, bool, list)):
        schema["default"] = default
    return schema


def path_item(
    spec: PathSpec, url: str, backend: Backend, extra_params: Sequence[Mapping[str, Any]] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One OpenAPI path item for ``spec`` served at ``url`` (the document's key), and the
    request schemas it refers to."""
    ops = spec.operations
    item: dict[str, Any] = {"description": spec.synopsis.strip()}
    parameters = [
        {
            "name": param,
            "description": _param_description(spec, param),
            "in": "path",
            "schema": {"type": "string"},
            "required": True,
        }
        for param, _ in _own_params(spec)
    ]
    parameters.extend(dict(p) for p in extra_params)
    if parameters:
        item["parameters"] = parameters
    allowed = set(spec.methods) if spec.methods else None
    base = _slug(url)
    schemas: dict[str, Any] = {}

    def operation(verb: str, responses: Mapping[str, str]) -> dict[str, Any]:
        return {
            "operationId": f"{verb}-{base}",
            "tags": [backend.tag],
            "responses": {code: {"description": text} for code, text in responses.items()},
        }

    if ("read" in ops or "list" in ops) and (allowed is None or "GET" in allowed):
        get = operation("list" if "read" not in ops else "read", {"200": "OK"})
        if "list" in ops:
            get["parameters"] = [
                {
                    "name": "list",
                    "description": "Return a list if `true`",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["true"]},
                    "required": "read" not in ops,
                }
            ]
        item["get"] = get
    writes = "update" in ops or "create" in ops
    if writes and (allowed is None or "POST" in allowed or "PUT" in allowed):
        post = operation("write", {"200": "OK", "204": "empty body"})
        if spec.fields:
            name = "".join(part.capitalize() for part in base.split("-")) + "Request"
            schema: dict[str, Any] = {
                "type": "object",
                "properties": {f.name: _schema(f) for f in spec.fields},
            }
            required = [f.name for f in spec.fields if f.required]
            if required:
                schema["required"] = required
            schemas[name] = schema
            post["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
                },
            }
        item["post"] = post
    if "delete" in ops and (allowed is None or "DELETE" in allowed):
        item["delete"] = operation("delete", {"204": "empty body"})
    return item, schemas


def _openapi_url(rel: str) -> str:
    return "/" + re.sub(r"[:*](\w+)", r"{\1}", rel)


# -- the help answer ---------------------------------------------------------------------------


def backend_of(spec: PathSpec, params: Mapping[str, str]) -> Backend:
    if spec.pattern == "auth/token":
        return TOKEN
    if spec.pattern == "auth/:mount":
        return Backend(f"auth/{params.get('mount', '')}/", "auth", "auth", False)
    if spec.mounted:
        return Backend(f"{params.get('mount', '')}/", "keymgmt", "secrets", False)
    if spec.pattern.startswith("auth/token/"):
        return TOKEN
    if spec.pattern.startswith("auth/:mount/"):
        return Backend(f"auth/{params.get('mount', '')}/", "auth", "auth", False)
    return SYS


def answer(spec: PathSpec, ctx: Context, trail: Trail) -> ApiResponse:
    """``?help=1`` on ``spec``'s path, after the token check (help needs no capability: Vault's
    ACL allows the help operation everywhere). The mount must exist; field values and the
    parameters' names are not checked (help reads nothing of the item)."""
    params = ctx.params
    if spec.mounted and not (
        names.is_mount_name(params["mount"]) and ctx.service.mounts.exists(params["mount"])
    ):
        raise generic.no_handler(ctx.request, params["mount"], "help")
    if spec.pattern.startswith("auth/:mount") and ctx.service.auth.get(params["mount"]) is None:
        raise generic.no_handler(ctx.request, f"auth/{params['mount']}", "help")
    ctx.operation = "help"
    ctx.path = backend_of(spec, params).prefix + _request_path(spec, params)
    trail.before(ctx, spec)
    if spec in ROOTS:
        from shared.api.routes import ALL  # routes lists this module's paths too

        return vaultapi.raw_json(200, root_help(backend_of(spec, params), ALL))
    backend = backend_of(spec, params)
    rel = relative_pattern(spec)
    request_path = _request_path(spec, params)
    item, schemas = path_item(spec, _openapi_url(rel), backend)
    body = {
        "help": help_text(spec, request_path),
        "openapi": document({_openapi_url(rel): item}, schemas, _version()),
        "see_also": None,
    }
    return vaultapi.raw_json(200, body)


def _request_path(spec: PathSpec, params: Mapping[str, str]) -> str:
    """The request's path inside its backend, as help's ``Request:`` line shows it."""
    return re.sub(r"[:*](\w+)", lambda m: params.get(m.group(1), ""), relative_pattern(spec))


def _version() -> str:
    from shared.api.sys import VERSION

    return VERSION


# -- who sees which mounts ---------------------------------------------------------------------


def optional_token(ctx: Context) -> TokenInfo | None:
    """On an unauthenticated path that still reads a token when one is sent (OpenBao's
    ui/mounts and OpenAPI): the token, checked (a bad one is refused), or None."""
    if ctx.request.token is None:
        return None
    token: TokenInfo = ctx.service.tokens.check(ctx.request.token, ctx.request.remote_address)
    return token


def _acl_of(ctx: Context, token: TokenInfo) -> ACL:
    if ROOT_POLICY in token.policies:
        return ACL.root()
    acl: ACL = ctx.service.policies.acl(token.policies)
    return acl


def _listing_visibility(info: Mapping[str, Any]) -> str:
    config = info.get("config")
    return str(config.get("listing_visibility", "")) if isinstance(config, Mapping) else ""


@dataclass(frozen=True)
class MountView:
    backend: Backend
    info: dict[str, Any]  # as sys/mounts or sys/auth shows it


def _mounts(ctx: Context) -> tuple[list[MountView], list[MountView]]:
    """The secrets engine mounts (as sys/mounts lists them) and the auth methods (as
    sys/auth lists them)."""
    from shared.api import auth, sys

    secret = [
        MountView(Backend(f"{m.name}/", m.type, "secrets", False), sys.render_mount(m))
        for m in ctx.service.mounts.list()
    ]
    methods = [MountView(TOKEN, auth.TOKEN_METHOD)]
    methods += [
        MountView(Backend(f"auth/{m.path}/", m.type, "auth", False), auth.render_method(m))
        for m in ctx.service.auth.enabled()
    ]
    return secret, methods


def _visible(mount: MountView, acl: ACL | None) -> bool:
    if _listing_visibility(mount.info) == "unauth":
        return True
    return acl is not None and acl.has_mount_access(mount.backend.prefix)


def _shown(mount: MountView, acl: ACL | None) -> dict[str, Any]:
    if acl is not None:
        return dict(mount.info)
    return {key: mount.info.get(key) for key in ("type", "description", "options")}


def _ui_mounts(ctx: Context) -> ApiResponse:
    token = optional_token(ctx)
    acl = _acl_of(ctx, token) if token is not None else None
    secret, methods = _mounts(ctx)
    data = {
        "auth": {
            m.backend.prefix.removeprefix("auth/"): _shown(m, acl)
            for m in methods
            if _visible(m, acl)
        },
        "secret": {m.backend.prefix: _shown(m, acl) for m in secret if _visible(m, acl)},
    }
    return vaultapi.ok(data)


def _ui_mount(ctx: Context) -> ApiResponse:
    token = optional_token(ctx)
    if token is None:
        raise PermissionDenied()
    acl = _acl_of(ctx, token)
    path = str(ctx.params["path"]).strip("/") + "/"
    shown = path[:128] if path.isprintable() else "?"
    refused = PermissionDenied(
        "preflight capability check returned 403, please ensure client's policies grant "
        f'access to path "{shown}"'
    )
    secret, methods = _mounts(ctx)
    matching = [m for m in secret + methods if path.startswith(m.backend.prefix)]
    if not matching:
        raise refused  # as OpenBao: this path must not tell which mounts exist
    mount = max(matching, key=lambda m: len(m.backend.prefix))
    if not acl.has_mount_access(mount.backend.prefix):
        raise refused
    info = dict(mount.info)
    info["path"] = mount.backend.prefix.removeprefix("auth/")
    return vaultapi.ok(dict(sorted(info.items())))


# -- sys/internal/specs/openapi ----------------------------------------------------------------


def _backend_specs(all_specs: Iterable[PathSpec], backend: Backend) -> list[PathSpec]:
    all_specs = [s for s in all_specs if s not in ROOTS]
    if backend == SYS:
        return [s for s in all_specs if not s.mounted and s.pattern.startswith("sys/")]
    if backend == TOKEN:
        return [s for s in all_specs if s.pattern.startswith("auth/token/")]
    if backend.prefix.startswith("auth/"):
        return [s for s in all_specs if s.pattern.startswith("auth/:mount/")]
    return [s for s in all_specs if s.mounted]


def openapi(
    ctx: Context, all_specs: Sequence[PathSpec], *, generic_mount_paths: bool
) -> ApiResponse:
    """The OpenAPI 3 document of every backend the caller may see: the sys/ and auth/token/
    paths, each auth method's and each keymgmt mount's (OpenBao's pathInternalOpenAPI)."""
    token = optional_token(ctx)
    acl = _acl_of(ctx, token) if token is not None else None
    secret, methods = _mounts(ctx)
    # sys/ is in OpenBao's mount table; here it is no mount sys/mounts lists, so it shows to
    # a token with anything under sys/ and, unlike the mounts, never without a token.
    mounts = [MountView(SYS, {})] if acl is not None and acl.has_mount_access(SYS.prefix) else []
    mounts += [m for m in secret + methods if _visible(m, acl)]
    doc = build_document(mounts, all_specs, generic_mount_paths=generic_mount_paths)
    return vaultapi.raw_json(200, doc)


def build_document(
    mounts: Iterable[MountView], all_specs: Sequence[PathSpec], *, generic_mount_paths: bool
) -> dict[str, Any]:
    """The OpenAPI document of ``mounts``' paths (pure: the unit tests validate it)."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for mount in mounts:
        backend = mount.backend
        prefix, extra = backend.prefix, []
        if generic_mount_paths and not backend.singleton:
            name = backend.parameter
            prefix = ("auth/" if prefix.startswith("auth/") else "") + f"{{{name}}}/"
            default = backend.prefix.removeprefix("auth/").rstrip("/")
            extra = [
                {
                    "name": name,
                    "description": "Path that the backend was mounted at",
                    "in": "path",
                    "schema": {"type": "string", "default": default},
                    "required": True,
                }
            ]
        for spec in _backend_specs(all_specs, backend):
            url = "/" + prefix + _openapi_url(relative_pattern(spec)).lstrip("/")
            item, more = path_item(spec, url, backend, extra)
            paths[url] = item
            schemas.update(more)
    return document(dict(sorted(paths.items())), schemas, _version())


def _openapi_read(ctx: Context) -> ApiResponse:
    raw = ctx.request.query.get("generic_mount_paths")
    generic = raw is not None and vaultapi.weak_bool(raw, "generic_mount_paths")
    return _openapi(ctx, generic)


def _openapi_write(ctx: Context) -> ApiResponse:
    return _openapi(ctx, bool(ctx.data.get("generic_mount_paths")))


def _openapi(ctx: Context, generic: bool) -> ApiResponse:
    from shared.api.routes import ALL  # routes lists this module's paths too

    return openapi(ctx, ALL, generic_mount_paths=generic)


# Unauthenticated as in OpenBao (sys backend's Unauthenticated paths): a token, when sent,
# decides what is shown, and a bad one is refused; no ACL rule on the path itself applies.
OPENAPI = PathSpec(
    "sys/internal/specs/openapi",
    fields=[
        Field(
            "generic_mount_paths",
            vaultapi.weak_bool,
            "Use generic mount paths",
            default=False,
        )
    ],
    mounted=False,
    authenticated=False,
    operations={"read": _openapi_read, "update": _openapi_write},
    synopsis="Generate an OpenAPI 3 document of all mounted paths.",
    help="The paths of sys/, auth/token/, every auth method and every keymgmt mount the "
    "token may see (a policy granting anything on or under the mount), generated from the "
    "same declarations as ?help=1. Without a token only mounts tuned to "
    "listing_visibility=unauth are shown. generic_mount_paths=true writes each mount's path "
    "as a parameter ({keymgmt_mount_path}) instead of its name.",
)
UI_MOUNTS = PathSpec(
    "sys/internal/ui/mounts",
    mounted=False,
    authenticated=False,
    operations={"read": _ui_mounts},
    methods=("GET",),
    synopsis="Information about mounts returned according to their tuned visibility. "
    "Internal API; its location, inputs, and outputs may change.",
    help="Lists the secrets engines (secret) and auth methods (auth) the token may see, "
    "with what sys/mounts and sys/auth show of them; without a token only those tuned to "
    "listing_visibility=unauth, with only their type, description and options.",
)
UI_MOUNT = PathSpec(
    "sys/internal/ui/mounts/*path",
    mounted=False,
    authenticated=False,
    operations={"read": _ui_mount},
    methods=("GET",),
    synopsis="Return information about the given mount.",
    help="The mount that holds the path (a keymgmt mount, auth/token or an auth method), "
    "as sys/mounts or sys/auth shows it, with its path. A token is required, and one whose "
    "policies grant nothing on or under the mount is refused with the same answer as a "
    "path under no mount, so the answer never tells which mounts exist.",
)


# -- help on a backend's root (``bao path-help keymgmt``, ``sys``, ``auth/token``) ---------------

# What Vault calls a backend's Help: the root help's DESCRIPTION.
BACKEND_HELP = {
    "system": "The system backend is built in and cannot be remounted or unmounted. It holds "
    "the paths that configure this server: mounts, auth methods, policies, audit devices, "
    "status.",
    "token": "",
    "keymgmt": "The Key Management secrets engine: keys created and rotated here, their "
    "material sealed in Azure Table Storage, distributed into Azure Key Vault (BYOK) by KMS "
    "providers.",
}


def root_help_text(backend: Backend, specs: Iterable[PathSpec]) -> str:
    """OpenBao's rootHelpTemplate: the backend's description, then every path's route and
    synopsis, sorted by route."""
    routes = sorted((route_regex(s), s.synopsis.strip()) for s in specs)
    text = (
        f"## DESCRIPTION\n\n{BACKEND_HELP.get(backend.type, '').strip()}\n\n## PATHS\n\n"
        "The following paths are supported by this backend. To view help for\n"
        "any of the paths below, use the help command with any route matching\n"
        "the path pattern. Note that depending on the policy of your auth token,\n"
        "you may or may not be able to access certain paths.\n\n"
    )
    for route, synopsis in routes:
        text += f"{_indent(4, route)}\n{_indent(8, synopsis)}\n\n"
    return text.strip()


def root_help(backend: Backend, all_specs: Sequence[PathSpec]) -> dict[str, Any]:
    """The help answer on a backend's root: its text and its paths' OpenAPI document, keyed
    inside the backend as OpenBao's handleRootHelp keys them (``/key/{name}``)."""
    specs = _backend_specs(all_specs, backend)
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for spec in specs:
        url = _openapi_url(relative_pattern(spec))
        item, more = path_item(spec, url, backend)
        paths[url] = item
        schemas.update(more)
    return {
        "help": root_help_text(backend, specs),
        "openapi": document(dict(sorted(paths.items())), schemas, _version()),
        "see_also": None,
    }


def _unsupported_path(ctx: Context) -> ApiResponse:
    raise NotFound(multierror("unsupported path"))


def _auth_root(ctx: Context) -> ApiResponse:
    if ctx.service.auth.get(ctx.params["mount"]) is None:
        raise no_route(f"auth/{ctx.params['mount']}")
    raise NotFound(multierror("unsupported path"))


def _no_path(handler: Handler) -> Mapping[str, Handler]:
    return {op: handler for op in ("read", "list", "update", "delete")}


def _root(
    pattern: str, synopsis: str, *, handler: Handler = _unsupported_path, **kw: Any
) -> PathSpec:
    return PathSpec(
        pattern,
        operations=_no_path(handler),
        synopsis=synopsis,
        help="A backend's root: ?help=1 lists its paths (bao path-help); any other request "
        "answers OpenBao's 404, unsupported path.",
        **kw,
    )


# A backend's root: only help answers there (OpenBao's handleRootHelp); anything else is
# OpenBao's 404. Listed in neither the root help nor the OpenAPI document.
MOUNT_ROOT = _root("", "The root of a keymgmt mount.", mounted=True)
SYS_ROOT = _root("sys", "The root of the system backend.", mounted=False)
TOKEN_ROOT = _root("auth/token", "The root of the token store.", mounted=False)
AUTH_ROOT = _root(
    "auth/:mount",
    "The root of an auth method.",
    handler=_auth_root,
    mounted=False,
    params={"mount": names.AUTH_PATH},
)
ROOTS = (MOUNT_ROOT, SYS_ROOT, TOKEN_ROOT, AUTH_ROOT)

# MOUNT_ROOT is reached through the catch-all (shared.api.generic.handle_unrouted), not a route.
ALL = (OPENAPI, UI_MOUNTS, UI_MOUNT, SYS_ROOT, TOKEN_ROOT, AUTH_ROOT)
