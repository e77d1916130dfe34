"""Vault's generic HTTP rules around the paths: which methods reach a path, namespaces,
trailing slashes, and the answer for a path no ``PathSpec`` routes.

Each rule is OpenBao's (2.7.2, internal/http/handler.go and logical.go, vault/router.go),
checked against ``bao server -dev`` by tests/integration/test_routing_oracle.py; the few
differences are in docs/vault-http.md.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared import vaultapi
from shared.audit import Trail, multierror  # Go's go-multierror text, as the router words it
from shared.errors import EngineError, NotFound, UnsupportedOperation
from shared.mounts import no_route
from shared.names import is_mount_name
from shared.vaultapi import ApiRequest, ApiResponse

if TYPE_CHECKING:
    from shared.api import PathSpec
    from shared.service import Service

log = logging.getLogger(__name__)

# The methods OpenBao's logical handler parses (buildLogicalRequestNoAuth); any other verb is
# 405 with an empty error list, before the token or the path is looked at.
LOGICAL_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "LIST", "PATCH", "OPTIONS", "SCAN"}
)

# The sys/ paths OpenBao refuses in any namespace, even with the header "root"
# (restrictedSysAPIsNonLogical): only these of ours.
RESTRICTED_IN_NAMESPACES = frozenset({"sys/health", "sys/init"})


# Paths whose last parameter is Vault's ``.+`` (logical_system_paths.go): a trailing "/" is
# part of what they match, so a read or delete with one reaches them.
SLASH_TOLERANT = frozenset(
    {
        "sys/audit-hash/:path",
        "sys/audit/:path",
        "sys/auth/:path",
        "sys/mounts/:path",
        "sys/policy/:name",
        "sys/policies/acl/:name",
    }
)

WRITES = frozenset({"POST", "PUT", "PATCH"})


UNSUPPORTED_PATH = multierror("unsupported path")


def canonical_namespace(header: str) -> str:
    """OpenBao's namespace.Canonicalize: no leading "/", cleaned, one trailing "/"; "" for
    the root namespace. "root" names the root namespace too."""
    path = header[1:] if header.startswith("/") else header
    path = posixpath.normpath(path) if path else "."
    if path in (".", "/"):
        return ""
    path = path if path.endswith("/") else path + "/"
    return "" if path == "root/" else path


def _empty_405() -> ApiResponse:
    return vaultapi.error(405)


def refusal(spec: PathSpec | None, request: ApiRequest) -> ApiResponse | None:
    """The answer OpenBao gives before a request reaches its router (so before the token is
    checked, and unaudited), or None. ``spec`` None: a path no spec routes."""
    namespace = request.headers.get(vaultapi.NAMESPACE_HEADER.lower(), "")
    if spec is not None and spec.methods is not None:
        # A path OpenBao serves outside its logical router (sys/health, sys/seal-status...):
        # its own method list, no namespaces for some, the others ignore the header.
        if namespace and spec.pattern in RESTRICTED_IN_NAMESPACES:
            return vaultapi.error(400, "operation unavailable in namespaces")
        if request.method not in spec.methods:
            return _empty_405()
        return None
    if request.method not in LOGICAL_METHODS:
        return _empty_405()
    if request.method == "PATCH":
        refused = _patch_content_type(request)
        if refused is not None:
            return refused
    if canonical_namespace(namespace):
        # No namespace exists here but the root one: OpenBao's answer for a missing one.
        return vaultapi.error(404, "namespace not found")
    if request.method in WRITES and _trailing_slash(request):
        # Core.handleCancelableRequest, before the token: a write to "x/" is ambiguous.
        return vaultapi.error(400, "cannot write to a path ending in '/'")
    # A bad ?list= is 400 here only after the token (OpenBao: before it), as every input the
    # request carries: handle() looks at nothing the caller sent before the token.
    return None


MERGE_PATCH = "application/merge-patch+json"


def _patch_content_type(request: ApiRequest) -> ApiResponse | None:
    """OpenBao parses a PATCH's Content-Type before anything else (mime.ParseMediaType): none
    is 400, another than JSON merge patch 415. No path here patches, so a PATCH that passes
    ends as 405 after the token."""
    header = request.headers.get("content-type", "")
    media = header.split(";", 1)[0].strip().lower()
    if not media:
        return vaultapi.error(400, "mime: no media type")
    if media != MERGE_PATCH:
        shown = media[:64] if media.isprintable() else "?"
        return vaultapi.error(
            415, f"PATCH requires Content-Type of {MERGE_PATCH}, provided {shown}"
        )
    return None


def is_unrouted(spec: PathSpec, request: ApiRequest) -> bool:
    """A path OpenBao serves outside its router only as it is spelled: with a trailing "/"
    it is a logical path that does not exist (so a token is needed, and it is 404)."""
    return spec.methods is not None and _trailing_slash(request)


def _trailing_slash(request: ApiRequest) -> bool:
    return request.path.endswith("/")


def unsupported_operation(spec: PathSpec) -> UnsupportedOperation:
    """405: Vault's router words it as a multierror behind a token check, plainly on an
    unauthenticated path (a login)."""
    return UnsupportedOperation(wrapped=spec.authenticated)


def check_path(
    spec: PathSpec, request: ApiRequest, operation: str, service: Callable[[], Service]
) -> None:
    """NotFound where Vault's router matches no path: under an auth method that is not
    enabled; a trailing "/" on a path that lists nothing (Vault's patterns end at the last
    segment, a listing path's with "/?"), and a list of such a path (Vault adds the "/" to a
    list request's path)."""
    if spec.pattern.startswith("auth/:mount/") and request.path:
        if service().auth.get(request.path.split("/")[1]) is None:
            if not spec.authenticated:  # no method, so no unauthenticated path: a token first
                service().tokens.check(request.token, request.remote_address)
            list_path = operation == "list" and not request.path.endswith("/")
            raise _no_handler(request.path + "/" if list_path else request.path)
    if spec.supports("list") or spec.pattern in SLASH_TOLERANT:
        return
    if operation == "list" or _trailing_slash(request):
        raise NotFound(UNSUPPORTED_PATH)


def no_handler(request: ApiRequest, mount: str, operation: str) -> NotFound:
    """Vault's 404 for a path under no mount: it names the whole path as sent, a list's with
    its "/" (the mount alone, as ``shared.mounts.no_route`` does, where the adapter did not
    give the path)."""
    if not request.path:
        return no_route(mount)
    path = request.path
    return _no_handler(path + "/" if operation == "list" and not path.endswith("/") else path)


def _no_handler(path: str) -> NotFound:
    return NotFound(f'no handler for route "{_route_text(path)}". route entry not found.')


def _route_text(path: str) -> str:
    shown = path if len(path) <= 256 else path[:256] + "..."
    return shown if shown.isprintable() else shown.encode("unicode_escape").decode()


def _under_a_mount(service: Service, path: str) -> bool:
    """Whether ``path`` falls under a mount that exists: sys/, auth/token/, an enabled auth
    method, or an enabled keymgmt mount (so Vault's router finds the mount, not the path)."""
    first, _, rest = path.partition("/")
    if first == "sys":
        return True
    if first == "auth":
        method = rest.partition("/")[0]
        return method == "token" or (is_mount_name(method) and service.auth.get(method) is not None)
    return is_mount_name(first) and service.mounts.exists(first)


def handle_unrouted(request: ApiRequest, service_factory: Callable[[], Service]) -> ApiResponse:
    """A path no spec routes, as OpenBao answers it: 405 for an unknown verb and 404 for a
    namespace before anything else, 403 without a valid token, then 404, worded by whether
    the path falls under a mount. Audited as OpenBao audits it (after the token check,
    before routing: Core.handleRequest), refusals included."""
    from shared.api import Context, PathSpec, handle, help  # the package imports this module

    segment = request.path.strip("/")
    if help.asked(request) and segment and "/" not in segment:
        # Help on a mount's root (bao path-help keymgmt). Not a route of its own: a lone
        # "{mount}" ties with "{*path}" in the host's route order (tests/host/test_route_order).
        return handle(help.MOUNT_ROOT, request, {"mount": segment}, service_factory)
    refused = refusal(None, request)
    if refused is not None:
        return refused
    trail = Trail(request, audited=True)
    context = Context(request, {}, service_factory)
    spec = PathSpec("", mounted=False)  # under no mount; its entries name the path as sent
    context.path = request.path  # as the entries name it, a refused token's too
    if request.method == "LIST" and not context.path.endswith("/"):
        context.path += "/"  # as OpenBao builds a list request (?list=true too, once parsed)
    with trail.active():
        try:
            context.token = context.service.tokens.check(request.token, request.remote_address)
            context.operation = vaultapi.operation(request)  # a bad ?list= is 400, naming it
            if context.operation == "list" and not context.path.endswith("/"):
                context.path += "/"
            if _under_a_mount(context.service, request.path):
                raise NotFound(UNSUPPORTED_PATH)
            raise _no_handler(context.path)
        except EngineError as exc:
            response = vaultapi.from_exception(exc)
        except Exception:
            log.exception("unexpected failure on an unrouted %s", request.method)
            response = vaultapi.error(500, "internal error; the server log has the details")
        return trail.after(context, spec, response)
