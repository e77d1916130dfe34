"""Local identity endpoints and the control API.

* ``MsiApp`` (plain HTTP, like App Service's own ``IDENTITY_ENDPOINT``): the App Service /
  Functions managed identity protocol, ``GET /msi/token?resource=...&api-version=2019-08-01``
  with ``X-IDENTITY-HEADER``; system-assigned identity and user-assigned ones by
  ``client_id``/``object_id``/``mi_res_id``. The same port serves the control API under
  ``/_control/``.
* ``AuthorityApp`` (HTTPS): an Entra-ID-like authority: the tenant's v1.0 and v2.0 OpenID
  metadata (``/<tenant>/.well-known/openid-configuration``,
  ``/<tenant>/v2.0/.well-known/openid-configuration``), their keys documents
  (``/<tenant>/discovery/keys``, ``/<tenant>/discovery/v2.0/keys``) and client-credentials
  tokens (``POST /<tenant>/oauth2/v2.0/token``, and the v1.0 ``/<tenant>/oauth2/token``).
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from .directory import ResourceNotFound
from .faults import Fault

if TYPE_CHECKING:
    from .emulator import Emulator

MSI_PATH = "/msi/token"


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body),
        status=status,
        content_type="application/json; charset=utf-8",
        headers=headers or {},
    )


class MsiApp:
    """Managed identity endpoint + control API (loopback HTTP)."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request = Request(environ)
        if request.path == MSI_PATH and request.method == "GET":
            response = self._token(request)
        elif request.path.startswith("/_control/"):
            response = self._control(request)
        else:
            response = _json(404, {"statusCode": 404, "message": "Not found."})
        return response(environ, start_response)

    def _token(self, request: Request) -> Response:
        emu = self.emulator

        def error(status: int, message: str) -> Response:
            return _json(
                status,
                {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())},
            )

        if request.headers.get("X-IDENTITY-HEADER") != emu.identity_header:
            return error(401, "The X-IDENTITY-HEADER header is missing or does not match.")
        if request.args.get("api-version") != "2019-08-01":
            return error(400, "The api-version parameter must be 2019-08-01.")
        resource = request.args.get("resource")
        if not resource:
            return error(400, "The resource parameter is required.")
        identity = emu.find_managed_identity(
            client_id=request.args.get("client_id"),
            object_id=request.args.get("object_id") or request.args.get("principal_id"),
            resource_id=request.args.get("mi_res_id"),
        )
        if identity is None:
            return error(400, "Unable to load the proper Managed Identity.")
        try:
            token, expires_on = emu.token_for(
                resource,
                object_id=identity.object_id,
                app_id=identity.client_id,
                client_auth="2",  # managed identities authenticate with a certificate
                managed_identity=identity,
            )
        except ResourceNotFound as exc:
            return error(400, "AADSTS500011: " + _resource_not_found(exc.resource, emu.tenant_id))
        return _json(
            200,
            {
                "access_token": token,
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": identity.client_id,
            },
        )

    def _control(self, request: Request) -> Response:
        emu = self.emulator
        path = request.path.removeprefix("/_control").rstrip("/")
        try:
            body = request.get_json(silent=True) if request.get_data() else {}
            if not isinstance(body, dict):
                raise ValueError("the request body must be a JSON object")
            if path == "/faults" and request.method == "POST":
                fault = emu.fault(
                    body.get("vault", "*"),
                    body["kind"],
                    op=body.get("op"),
                    times=body.get("times"),
                    retry_after=body.get("retry_after"),
                    status=int(body.get("status", 500)),
                    delay=float(body.get("delay", 0.0)),
                )
                return _json(201, {"fault": _fault_json(fault)})
            if path == "/faults" and request.method == "GET":
                return _json(200, {"faults": [_fault_json(f) for f in emu.faults.list()]})
            if path == "/faults" and request.method == "DELETE":
                emu.clear_faults()
                return _json(200, {"faults": []})
            if path == "/events" and request.method == "POST":
                event = emu.fire_event(
                    body["vault"], body["type"], body["key"], body.get("version")
                )
                return _json(202, {"event": event})
            if path == "/grants" and request.method == "POST":
                emu.grant(body["vault"], body["principal"], body.get("role") or body.get("ops"))
                return _json(201, {"grants": emu.grants(body["vault"])})
            if path == "/access-policies" and request.method == "POST":
                emu.set_access_policy(body["vault"], body["principal"], body["keys"])
                return _json(201, {"access_policies": emu.grants(body["vault"])})
            if path == "/vault-settings" and request.method == "POST":
                emu.configure_vault(
                    body["vault"],
                    permission_model=body.get("permission_model"),
                    purge_protection=body.get("purge_protection"),
                    delete_delay=body.get("delete_delay"),
                    recoverable_days=body.get("recoverable_days"),
                )
                return _json(200, {})
            if path == "/grants" and request.method == "DELETE":
                emu.clear_grants(request.args.get("vault"))
                return _json(200, {})
            if path == "/clients" and request.method == "POST":
                emu.add_client(body["client_id"], body["secret"], body.get("tenant_id"))
                return _json(201, {"client_id": body["client_id"]})
            if path == "/identities" and request.method == "POST":
                identity = emu.add_user_assigned_identity(
                    body["client_id"],
                    body.get("object_id"),
                    name=body.get("name"),
                    resource_group=body.get("resource_group"),
                    subscription_id=body.get("subscription_id"),
                )
                return _json(201, identity.describe())
            if path == "/identities" and request.method == "GET":
                return _json(200, {"identities": emu.describe_identities()})
            if path == "/apps" and request.method == "POST":
                app = emu.register_app(
                    client_id=body.get("client_id"),
                    identifier_uris=body.get("identifier_uris") or [],
                    access_token_version=body.get("access_token_version"),
                    app_roles=body.get("app_roles"),
                    group_membership_claims=body.get("group_membership_claims"),
                )
                return _json(201, app.describe())
            if path == "/apps" and request.method == "GET":
                return _json(200, {"apps": [a.describe() for a in emu.directory.apps()]})
            if path == "/app-role-assignments" and request.method == "POST":
                emu.assign_app_role(
                    _text(body, "app"), _text(body, "principal"), _text(body, "role")
                )
                return _json(201, {})
            if path == "/groups" and request.method == "POST":
                members = body.get("members")
                if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                    raise ValueError("members must be a list of object ids or client ids")
                group_id = body.get("group_id") or str(uuid.uuid4())
                listed = emu.add_group_members(group_id, members)
                return _json(201, {"group_id": str(uuid.UUID(group_id)), "members": listed})
            if path == "/signing-keys" and request.method == "GET":
                return _json(200, emu.signing_keys())
            if path == "/signing-keys/next" and request.method == "POST":
                emu.prepare_signing_key()
                return _json(201, emu.signing_keys())
            if path == "/signing-keys/rotate" and request.method == "POST":
                seconds = body.get("previous_seconds")
                if seconds is not None and (
                    isinstance(seconds, bool) or not isinstance(seconds, int | float)
                ):
                    raise ValueError("previous_seconds must be a number of seconds")
                emu.rotate_signing_key(previous_seconds=seconds)
                return _json(200, emu.signing_keys())
            if path == "/signing-keys/previous" and request.method == "DELETE":
                emu.retire_signing_keys()
                return _json(200, emu.signing_keys())
            if path == "/vaults" and request.method == "GET":
                return _json(200, {"vaults": emu.describe()})
        except (KeyError, ValueError, TypeError) as exc:
            return _json(400, {"error": {"code": "BadRequest", "message": f"{exc!s}"}})
        return _json(
            404,
            {
                "error": {
                    "code": "NotFound",
                    "message": f"No control endpoint {request.method} {request.path}.",
                }
            },
        )


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} is required (a string)")
    return value


def _resource_not_found(resource: str, tenant: str) -> str:
    return (
        f"The resource principal named {resource} was not found in the tenant "
        f"named {tenant}. This can happen if the application has not been installed by the "
        "administrator of the tenant or consented to by any user in the tenant. You might have "
        "sent your authentication request to the wrong tenant."
    )


def _fault_json(fault: Fault) -> dict[str, Any]:
    return {
        "vault": fault.vault,
        "kind": fault.kind,
        "op": fault.op,
        "times": fault.times,
        "retry_after": fault.retry_after,
        "status": fault.status,
        "delay": fault.delay,
    }


def _aad_error(status: int, error: str, code: int, description: str) -> Response:
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return _json(
        status,
        {
            "error": error,
            "error_description": (
                f"AADSTS{code}: {description}\r\nTrace ID: {trace}\r\n"
                f"Correlation ID: {correlation}\r\nTimestamp: {stamp}"
            ),
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        },
    )


def _metadata_common(base: str) -> dict[str, Any]:
    return {
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "kerberos_endpoint": f"{base}/kerberos",
        "tenant_region_scope": None,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }


def _metadata_v1(base: str, issuer: str) -> dict[str, Any]:
    """The tenant's v1.0 OpenID metadata: issuer ``https://sts.windows.net/<tenant>/``."""
    return {
        "token_endpoint": f"{base}/oauth2/token",
        **_metadata_common(base),
        "jwks_uri": f"{base}/discovery/keys",
        "response_types_supported": [
            "code", "id_token", "code id_token", "token id_token", "token",
        ],
        "scopes_supported": ["openid"],
        "issuer": issuer,
        "microsoft_multi_refresh_token": True,
        "authorization_endpoint": f"{base}/oauth2/authorize",
        "device_authorization_endpoint": f"{base}/oauth2/devicecode",
        "end_session_endpoint": f"{base}/oauth2/logout",
        "userinfo_endpoint": f"{base}/openid/userinfo",
        "check_session_iframe": f"{base}/oauth2/checksession",
        "claims_supported": [
            "sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
            "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
            "amr", "nonce", "email", "given_name", "family_name", "nickname",
        ],
    }  # fmt: skip


def _metadata_v2(base: str, issuer: str) -> dict[str, Any]:
    """The tenant's v2.0 OpenID metadata: issuer ``<authority>/<tenant>/v2.0``."""
    return {
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        **_metadata_common(base),
        "jwks_uri": f"{base}/discovery/v2.0/keys",
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
        "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
        "claims_supported": [
            "sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
            "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
            "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email",
        ],
    }  # fmt: skip


class AuthorityApp:
    """An Entra-ID-like authority: OpenID configuration and client-credentials tokens."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request = Request(environ)
        return self._route(request)(environ, start_response)

    def _route(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if not parts:
            return _json(404, {"error": "not_found"})
        tenant = parts[0]
        rest = "/".join(parts[1:])
        if tenant not in (self.emulator.tenant_id, "organizations", "common"):
            return _aad_error(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                "and are signing into the correct cloud.",
            )
        tenant = self.emulator.tenant_id
        base = f"{self.emulator.authority_host}/{tenant}"
        if rest == ".well-known/openid-configuration":
            return _json(200, _metadata_v1(base, self.emulator.issuer.issuer))
        if rest == "v2.0/.well-known/openid-configuration":
            return _json(200, _metadata_v2(base, self.emulator.issuer.issuer_v2))
        if rest == "discovery/keys":
            return _json(200, {"keys": [k.jwk() for k in self.emulator.issuer.published()]})
        if rest == "discovery/v2.0/keys":
            issuer = self.emulator.issuer.issuer_v2
            return _json(
                200, {"keys": [k.jwk(issuer=issuer) for k in self.emulator.issuer.published()]}
            )
        if rest in ("oauth2/v2.0/token", "oauth2/token") and request.method == "POST":
            return self._token(request, v1_endpoint=rest == "oauth2/token")
        return _json(404, {"error": "not_found"})

    def _token(self, request: Request, *, v1_endpoint: bool) -> Response:
        emu = self.emulator
        form = request.form
        if form.get("grant_type") != "client_credentials":
            return _aad_error(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type "
                f"'{form.get('grant_type')}'; this authority supports client_credentials only.",
            )
        client_id = form.get("client_id", "")
        client = emu.find_client(client_id)
        if client is None:
            return _aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{emu.tenant_id}'. This can happen if the application has not been installed by "
                "the administrator of the tenant or consented to by any user in the tenant. You "
                "may have sent your authentication request to the wrong tenant.",
            )
        if not client.secret_matches(form.get("client_secret", "")):
            return _aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                f"'{client_id}'.",
            )
        if v1_endpoint:  # the v1.0 endpoint names a resource, not a scope
            resource = form.get("resource", "")
            if not resource:
                return _aad_error(
                    400,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'resource'.",
                )
        else:
            scope = form.get("scope", "")
            scopes = scope.split()
            if len(scopes) != 1 or not scopes[0].endswith("/.default"):
                return _aad_error(
                    400,
                    "invalid_scope",
                    1002012,
                    f"The provided value for scope {scope} is not valid. Client credential flows "
                    "must have a scope value with /.default suffixed to the resource identifier "
                    "(application ID URI).",
                )
            resource = scopes[0]
        try:
            token, expires_on = emu.token_for(
                resource, object_id=client.object_id, app_id=client.client_id, client_auth="1"
            )
        except ResourceNotFound as exc:
            return _aad_error(
                400, "invalid_resource", 500011, _resource_not_found(exc.resource, emu.tenant_id)
            )
        lifetime = expires_on - int(datetime.datetime.now(datetime.UTC).timestamp())
        return _json(
            200,
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            },
        )
