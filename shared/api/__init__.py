"""The Vault-compatible API: one module per group of paths, each path declared as data.

A ``PathSpec`` names a path's route parameters, fields, existence check and the handler for
each Vault operation; ``handle`` applies the transport rules every path shares (token, mount,
operation, body, parameter names, create or update, errors), so handlers get checked input.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared import vaultapi
from shared.api import generic
from shared.audit import Trail
from shared.errors import DeniedByPolicy, EngineError, PermissionDenied
from shared.names import PARAM_RULES, is_mount_name
from shared.policy import ACL, ROOT_POLICY, requires_sudo
from shared.records import TokenInfo
from shared.vaultapi import ApiRequest, ApiResponse, Field, FieldData
from shared.wrapping import requested_ttl, wrapped

if TYPE_CHECKING:
    from shared.service import Service

log = logging.getLogger(__name__)


@dataclass
class Context:
    request: ApiRequest
    params: Mapping[str, str]  # checked against the path's declared names once handle() runs
    service_factory: Callable[[], Service]  # built on first use
    data: FieldData = field(default_factory=lambda: FieldData({}, ()))
    # Vault's logical operation, resolved: read, list, create, update or delete. A write is
    # create or update by the path's existence check (update when it has none).
    operation: str = ""
    token: TokenInfo | None = None  # the caller's token, on an authenticated path
    path: str = ""  # the request's path as ACL policies see it (acl_path)
    wrap_ttl: int = 0  # the response wrapping asked for (X-Vault-Wrap-TTL), seconds; 0: none
    # Rows the existence check read, by name, for the handler to start from (keys: "key").
    looked_up: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def service(self) -> Service:
        # Built only when a path needs it: sys/health answers without storage.
        return self.service_factory()

    @property
    def mount(self) -> str:
        return self.params["mount"]


Handler = Callable[[Context], ApiResponse]
ExistenceCheck = Callable[[Context], bool]


@dataclass(frozen=True)
class PathSpec:
    """One path of the API, as Vault's sdk/framework ``Path`` declares one.

    ``params`` says what each ``:param`` of the pattern names (a kind of
    ``shared.names.PARAM_RULES``); ``handle`` checks each against its rule before any handler
    runs. ``existence``, when set, makes a write (POST/PUT) Vault's ``create`` operation while
    the item does not exist and ``update`` once it does (HandleExistenceCheck); ``operations``
    may then map ``create``, and a path that maps only ``update`` runs its update handler for
    both (the operation on the context still says which it was). Without an existence check a
    write is always ``update``, as in Vault. ``synopsis`` and ``help`` are Vault's HelpSynopsis
    and HelpDescription.
    """

    pattern: str
    fields: Sequence[Field] = ()
    operations: Mapping[str, Handler] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    existence: ExistenceCheck | None = None
    authenticated: bool = True
    mounted: bool = True  # lives under an enabled keymgmt mount
    # Recorded by the audit devices; Vault answers sys/health and its kin outside the audit
    # broker, and so does this server.
    audited: bool = True
    synopsis: str = ""
    help: str = ""
    # None for a path of Vault's logical router: every verb reaches handle(), which answers
    # 405 for an unsupported operation, as Vault does. Set only for the few paths OpenBao
    # serves outside that router (sys/health, sys/seal-status...): the methods they answer,
    # every other one 405 with an empty error list (shared.api.generic.refusal).
    methods: tuple[str, ...] | None = None
    # The error for a request whose own token is refused, when the path answers otherwise
    # than Vault's 403 (sys/wrapping/unwrap validates the wrapping token first); it only
    # chooses the text: nothing acts for a refused token.
    refused_token: Callable[[Context], EngineError] | None = None

    def __post_init__(self) -> None:
        in_pattern = set(re.findall(r"[:*](\w+)", self.pattern))
        for param, kind in self.params.items():
            if param not in in_pattern:
                raise ValueError(f"{self.pattern}: no parameter :{param} to declare")
            if kind not in PARAM_RULES:
                raise ValueError(f"{self.pattern}: :{param} names an unknown kind {kind!r}")
        if "create" in self.operations and self.existence is None:
            raise ValueError(f"{self.pattern}: a create handler needs an existence check")

    @property
    def route(self) -> str:
        """The Functions route template (relative to routePrefix "v1")."""
        # ``:name`` is one segment; a final ``*name`` takes the rest of the path, slashes too.
        route = re.sub(r":(\w+)", r"{\1}", re.sub(r"\*(\w+)$", r"{*\1}", self.pattern))
        if self.mounted:  # the empty pattern is the mount's own root (shared/api/help.py)
            return f"{{mount}}/{route}" if route else "{mount}"
        return route

    @property
    def function_name(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "_", self.pattern.replace(":", "")).strip("_")

    def handler(self, operation: str) -> Handler | None:
        """The handler for a resolved operation: ``create`` falls back to ``update``."""
        handler = self.operations.get(operation)
        if handler is None and operation == "create":
            handler = self.operations.get("update")
        if handler is None and operation == "header" and "HEAD" in (self.methods or ()):
            handler = self.operations.get("read")  # sys/health answers HEAD as GET
        return handler

    def supports(self, operation: str) -> bool:
        """Whether a request for ``operation`` (before create/update resolution) may reach a
        handler; a path that maps only ``create`` still answers 405 once the item exists."""
        if operation == "update" and self.existence is not None:
            return self.handler("create") is not None
        return self.handler(operation) is not None

    def checked_params(self, params: Mapping[str, str]) -> dict[str, str]:
        """The route parameters, each declared one checked (and normalised) by its rule."""
        checked = dict(params)
        for param, kind in self.params.items():
            checked[param] = PARAM_RULES[kind](params.get(param, ""))
        return checked


def acl_path(spec: PathSpec, params: Mapping[str, str], operation: str) -> str:
    """The request's path as ACL policies see it: under its mount, without ``/v1/``, and
    for a list with the trailing ``/`` Vault adds (so ``keymgmt/key/`` for LIST keymgmt/key)."""
    path = re.sub(r"[:*](\w+)", lambda m: params.get(m.group(1), ""), spec.pattern)
    if spec.mounted:
        path = f"{params['mount']}/{path}"
    return path + "/" if operation == "list" else path


def _acl(spec: PathSpec, context: Context) -> ACL | None:
    """The caller's ACL, or None where none applies (an unauthenticated path, a root token)."""
    token = context.token
    if not spec.authenticated or token is None or ROOT_POLICY in token.policies:
        return None
    acl: ACL = context.service.policies.acl(token.policies)
    return acl


def _allows(acl: ACL, path: str, operation: str, context: Context) -> bool:
    """Whether the ACL grants ``operation`` on ``path`` with the request's parameters: the body
    as sent for a write, the query (but ``list``) for a read; sudo where the path needs it."""
    if operation in ("read", "list"):
        sent: Mapping[str, object] = {k: v for k, v in context.request.query.items() if k != "list"}
    else:
        sent = context.data.raw
    allowed: bool = acl.allows(
        path, operation, sent, sudo=requires_sudo(path), wrap_ttl=context.wrap_ttl
    )
    return allowed


def _wrapped(context: Context, response: ApiResponse) -> ApiResponse:
    """The answer, response-wrapped when the request asked for it (shared/wrapping.py)."""
    if not context.wrap_ttl:
        return response
    token = context.token
    display = token.display_name if token is not None else ""
    return wrapped(
        response,
        ttl=context.wrap_ttl,
        path=context.path,
        display=display,
        service=context.service,
    )


def handle(
    spec: PathSpec,
    request: ApiRequest,
    params: Mapping[str, str],
    service_factory: Callable[[], Service],
) -> ApiResponse:
    from shared.api import help  # imports this module's PathSpec

    # A backend's root answers help only; anything else there is a path no spec routes.
    if generic.is_unrouted(spec, request) or (spec in help.ROOTS and not help.asked(request)):
        return generic.handle_unrouted(request, service_factory)
    refused = generic.refusal(spec, request)  # before the token, unaudited, as in OpenBao
    if refused is not None:
        return refused
    # Vault audits a help request on any path, its unaudited status paths too.
    trail = Trail(request, audited=spec.audited or help.asked(request))
    context = Context(request, params, service_factory)
    with trail.active():
        response = _handle(spec, request, context, trail)
        return trail.after(context, spec, response)  # fail closed: a 500 if nothing recorded it


def _handle(spec: PathSpec, request: ApiRequest, context: Context, trail: Trail) -> ApiResponse:
    from shared.api import help

    params = context.params
    try:
        # As Vault's parseRequest: a bad X-Vault-Wrap-TTL is refused before the token is. The
        # unaudited status paths (sys/health and kin) are raw handlers there: header ignored.
        if spec.audited:
            context.wrap_ttl = requested_ttl(request.headers)
        if spec.authenticated:  # first: nothing of the request is looked at before the token
            try:
                context.token = context.service.tokens.check(request.token, request.remote_address)
            except PermissionDenied:
                if spec.refused_token is None:
                    raise
                raise spec.refused_token(context) from None
        if help.asked(request):  # before the operation: help answers on every path
            return help.answer(spec, context, trail)
        op = vaultapi.operation(request)
        # As Vault's router: the mount first (404), then the path (404), then the operation.
        if spec.mounted and (
            not is_mount_name(params["mount"])
            or not context.service.mounts.exists(
                params["mount"], for_write=op not in ("read", "list")
            )
        ):
            raise generic.no_handler(request, params["mount"], op)
        generic.check_path(spec, request, op, lambda: context.service)
        if not spec.supports(op):
            raise generic.unsupported_operation(spec)
        if op in ("update", "delete"):
            raw = vaultapi.parse_body(request, context.service.settings.max_body_bytes)
            context.data = FieldData(raw, spec.fields)
        acl = _acl(spec, context)
        path = context.path = acl_path(spec, params, op)
        if acl is not None and not (
            _allows(acl, path, op, context)
            or (op == "update" and spec.existence and _allows(acl, path, "create", context))
        ):
            raise DeniedByPolicy()  # before anything of the request is checked or looked up
        context.params = spec.checked_params(params)
        context.operation = op
        if op == "update" and spec.existence is not None:
            # As Vault: the fields are checked before the existence check runs (so bad input
            # costs no lookup), and the check decides between create and update.
            context.data.validate()
            context.operation = "update" if spec.existence(context) else "create"
            if acl is not None and not _allows(acl, path, context.operation, context):
                raise DeniedByPolicy()
        handler = spec.handler(context.operation)
        if handler is None:  # a path that maps create but not update, on an existing item
            raise generic.unsupported_operation(spec)
        trail.before(context, spec)  # the request entry, before anything acts
        return _wrapped(context, handler(context))
    except EngineError as exc:
        return vaultapi.from_exception(exc)
    except Exception:
        log.exception("unexpected failure on %s %s", request.method, spec.pattern)
        return vaultapi.error(500, "internal error; the server log has the details")
