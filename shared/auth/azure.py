"""The Azure auth method (``auth/<mount>/*`` of type ``azure``), as hashicorp/
vault-plugin-auth-azure v0.24: config, roles and the login with an Entra ID access token
(a managed identity's, typically for ``https://management.azure.com/``).

The token is verified as the plugin's go-oidc verifier does: issuer from the tenant's
**v1.0** discovery document (``https://sts.windows.net/<tid>/``), ``aud`` equal to the
configured ``resource``, RS256 only against the discovered ``jwks_uri``, ``exp``; then
``nbf``, then the role's principals and groups. Where the plugin reads Azure Resource Manager
(a VM's identities, location, scale set) this server reads nothing: ``bound_subscription_ids``
and ``bound_resource_groups`` are checked against the signed ``xms_mirid`` claim, and
``bound_locations`` / ``bound_scale_sets`` are refused when a role is written (a binding that
is not enforced must not be accepted). Where the plugin answers 500 for a failed verification,
this server answers 400 with the same text.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared import azure as clouds
from shared.auth import AZURE, keys
from shared.auth.common import AZURE_TEXTS, max_ttl_warnings, render_token_settings, token_settings
from shared.errors import InvalidRequest
from shared.settings import Settings
from shared.vaultapi import FieldData

TYPE = AZURE
CONFIG_FIELDS = ("tenant_id", "resource", "environment", "client_id")
BOUND_FIELDS = (
    "bound_service_principal_ids",
    "bound_group_ids",
    "bound_locations",
    "bound_subscription_ids",
    "bound_resource_groups",
    "bound_scale_sets",
)
UNENFORCED = {
    "bound_locations": "a VM's location",
    "bound_scale_sets": "a VM's scale set",
}
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_RESOURCE_GROUP = re.compile(r"[-\w._()]+")
_VM_NAME = re.compile(r"[-\w._]+")
# /subscriptions/<s>/resourcegroups/<rg>/providers/<namespace>/<type>/<name>
_MIRID = re.compile(
    r"/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)/providers/"
    r"(?P<namespace>[^/]+)/(?P<type>[^/]+)/(?P<name>[^/]+)",
    re.IGNORECASE,
)


# -- config ------------------------------------------------------------------------------------


def config_from(
    data: FieldData, existing: Mapping[str, Any], existing_secret: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The config after a write (the plugin merges: fields not sent keep their values)."""
    settings = {
        name: (data.get(name) if data.has(name) else existing.get(name, ""))
        for name in CONFIG_FIELDS
    }
    if settings["environment"]:
        clouds.cloud(settings["environment"])  # an unknown cloud is refused here
    secret = dict(existing_secret)
    if data.has("client_secret"):
        if data.get("client_secret"):
            secret["client_secret"] = data.get("client_secret")
        else:
            secret.pop("client_secret", None)
    if data.has("identity_token_audience") and data.get("identity_token_audience"):
        raise InvalidRequest(
            "identity_token_audience is not supported by this server (plugin workload identity "
            "federation is for the plugin's own calls to Azure, which it does not make)"
        )
    return settings, secret


def render_config(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``GET config``: the plugin's keys; ``client_secret`` is never read back."""
    return {
        "tenant_id": settings.get("tenant_id", ""),
        "resource": settings.get("resource", ""),
        "environment": settings.get("environment", ""),
        "client_id": settings.get("client_id", ""),
        "root_password_ttl": 15768000,
        "max_retries": 3,
        "max_retry_delay": 60,
        "retry_delay": 4,
        "identity_token_audience": "",
        "identity_token_ttl": 0,
    }


@dataclass(frozen=True)
class Effective:
    tenant_id: str
    resource: str
    authority: str  # https://<host>


def effective(settings: Mapping[str, Any], app: Settings) -> Effective:
    """Config values, else the app settings Vault's plugin falls back to (config wins)."""
    tenant = settings.get("tenant_id") or app.azure_tenant_id or ""
    resource = settings.get("resource") or app.azure_ad_resource or ""
    if not tenant:
        raise InvalidRequest("tenant_id is required")
    if not resource:
        raise InvalidRequest("resource is required")
    cloud = clouds.cloud(settings.get("environment") or app.azure_environment)
    host = app.azure_authority_host or cloud.authority_host
    authority = host if "://" in host else f"https://{host}"
    return Effective(tenant, resource, authority.rstrip("/"))


# -- roles -------------------------------------------------------------------------------------


def role_from(
    data: FieldData, existing: Mapping[str, Any], *, system_max: int
) -> tuple[dict[str, Any], list[str]]:
    role: dict[str, Any] = {
        name: (data.get(name) if data.has(name) else existing.get(name, []))
        for name in BOUND_FIELDS
    }
    role.update(token_settings(data, existing, system_max=system_max, texts=AZURE_TEXTS))
    for name, what in UNENFORCED.items():
        if role[name]:
            raise InvalidRequest(
                f"{name} is not supported by this server: checking {what} needs Azure "
                "Resource Manager reads, which it does not make; bind bound_subscription_ids "
                "and bound_resource_groups (checked against the token's signed xms_mirid "
                "claim) instead, and leave it empty"
            )
    if not any(role[name] for name in BOUND_FIELDS):
        raise InvalidRequest(
            "must have at least one bound constraint when creating/updating a role"
        )
    return role, max_ttl_warnings(role, system_max)


def render_role(role: Mapping[str, Any]) -> dict[str, Any]:
    shown = {name: list(role.get(name, [])) for name in BOUND_FIELDS}
    shown.update(render_token_settings(role))
    return shown


# -- login -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    subscription_id: str
    resource_group_name: str
    vm_name: str
    vmss_name: str
    resource_id: str


def check_request(request: Request) -> None:
    """The plugin's format checks of the login's resource fields (values are names, not
    secrets, and are shown cut to 128 characters)."""
    checks = (
        (request.subscription_id, _GUID, "invalid subscription id {!r}"),
        (request.resource_group_name, _RESOURCE_GROUP, "invalid resource group name {!r}"),
        (request.vmss_name, _VM_NAME, "invalid vmss_name {!r}"),
        (request.vm_name, _VM_NAME, "invalid vm name {!r}"),
    )
    for value, pattern, text in checks:
        if value and not pattern.fullmatch(value):
            raise InvalidRequest(text.format(value[:128]).replace("'", '"'))


def _go_time(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def verify(
    token: str, config: Effective, discovery: keys.Discovery, key_set: list[Any], now: float
) -> dict[str, Any]:
    """go-oidc's IDTokenVerifier as the plugin configures it, then its nbf check."""
    try:
        claims = keys.verified_claims(token, key_set, ["RS256"])
    except keys.SignatureError as exc:
        if str(exc) == keys.MALFORMED:
            raise InvalidRequest("oidc: malformed jwt: the token is not a JWT") from None
        alg = _alg(token)
        if alg != "RS256":
            raise InvalidRequest(
                f'oidc: id token signed with unsupported algorithm, expected ["RS256"] got '
                f'"{alg[:16]}"'
            ) from None
        raise InvalidRequest(
            "failed to verify signature: failed to verify id token signature"
        ) from None
    issuer = claims.get("iss")
    if issuer != discovery.issuer:
        raise InvalidRequest(
            "oidc: id token issued by a different provider, expected "
            f'"{discovery.issuer}" got "{str(issuer)[:200]}"'
        )
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud] if isinstance(aud, str) else []
    if config.resource not in audiences:
        shown = "[" + " ".join(f'"{a[:200]}"' for a in audiences if isinstance(a, str)) + "]"
        raise InvalidRequest(f'oidc: expected audience "{config.resource}" got {shown}')
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        raise InvalidRequest("oidc: malformed jwt: the exp claim is not a number")
    if now > exp:
        raise InvalidRequest(f"oidc: token is expired (Token Expiry: {_go_time(exp)})")
    nbf = claims.get("nbf")
    if isinstance(nbf, (int, float)) and not isinstance(nbf, bool) and now < nbf:
        raise InvalidRequest(f"token is not yet valid (Token Not Before: {_go_time(nbf)})")
    return claims


def _alg(token: str) -> str:
    try:
        return str(keys.header(token).get("alg"))
    except keys.SignatureError:
        return ""


def _specific(values: list[str]) -> bool:
    return bool(values) and values != ["*"]


def check_role(claims: Mapping[str, Any], role: Mapping[str, Any]) -> None:
    """The plugin's verifyRole: specific principals or groups are required at login."""
    principals = list(role.get("bound_service_principal_ids") or [])
    groups = list(role.get("bound_group_ids") or [])
    if not _specific(principals) and not _specific(groups):
        raise InvalidRequest(
            "expected specific bound_group_ids or bound_service_principal_ids; both cannot be "
            "empty or '*'"
        )
    oid = claims.get("oid")
    if _specific(principals) and oid not in principals:
        raise InvalidRequest(f"service principal not authorized: {str(oid)[:64]}")
    if _specific(groups):
        token_groups = claims.get("groups")
        found = (
            [g for g in token_groups if isinstance(g, str)]
            if isinstance(token_groups, list)
            else []
        )
        if not set(found) & set(groups):
            raise InvalidRequest(f"groups not authorized: [{' '.join(g[:64] for g in found[:20])}]")


def check_resource(claims: Mapping[str, Any], role: Mapping[str, Any], request: Request) -> None:
    """Resource binding against the signed ``xms_mirid`` (PR #186's matching, without the
    ARM reads): only when the role binds subscriptions or resource groups."""
    subscriptions = [s.lower() for s in role.get("bound_subscription_ids") or []]
    groups = [g.lower() for g in role.get("bound_resource_groups") or []]
    if not subscriptions and not groups:
        return
    if not request.subscription_id or not request.resource_group_name:
        raise InvalidRequest("subscription_id and resource_group_name are required")
    mirid = claims.get("xms_mirid") or claims.get("xms_az_rid")
    if not isinstance(mirid, str) or not mirid:
        raise InvalidRequest("xms_az_rid and xms_mirid claims are missing from token")
    parsed = _MIRID.fullmatch(mirid.rstrip("/"))
    if parsed is None:
        raise InvalidRequest("the token's xms_mirid claim is not an Azure resource ID")
    kind = f"{parsed['namespace']}/{parsed['type']}".lower()
    name = parsed["name"].lower()
    if request.vmss_name:
        if kind != "microsoft.compute/virtualmachinescalesets" or name != request.vmss_name.lower():
            raise InvalidRequest("xms_mirid token claim does not match vmss_name")
    elif request.vm_name:
        if kind != "microsoft.compute/virtualmachines" or name != request.vm_name.lower():
            raise InvalidRequest("xms_mirid token claim does not match vm_name")
    elif request.resource_id:
        if request.resource_id.rstrip("/").lower() != mirid.rstrip("/").lower():
            raise InvalidRequest("xms_mirid token claim does not match resource_id")
    if parsed["rg"].lower() != request.resource_group_name.lower():
        raise InvalidRequest("xms_mirid token claim does not match resource_group_name")
    if parsed["sub"].lower() != request.subscription_id.lower():
        raise InvalidRequest("xms_mirid token claim does not match subscription_id")
    if subscriptions and request.subscription_id.lower() not in subscriptions:
        raise InvalidRequest("subscription not authorized")
    if groups and request.resource_group_name.lower() not in groups:
        raise InvalidRequest("resource group not authorized")


def login_claims(
    token: str, config: Effective, ca_file: str | None, now: float | None = None
) -> dict[str, Any]:
    """Discover the tenant's v1.0 metadata and verify ``token`` against it."""
    context = keys.tls_context_file(ca_file)
    ca_key = f"file:{ca_file or ''}"
    document = f"{config.authority}/{config.tenant_id}/.well-known/openid-configuration"
    discovery = keys.discover(document, ca_key, context=context)
    key_set = keys.jwks_keys(keys.jwks_client(discovery.jwks_uri, ca_key, context=context), token)
    return verify(token, config, discovery, key_set, time.time() if now is None else now)


def metadata(role_name: str, request: Request, claims: Mapping[str, Any]) -> dict[str, str]:
    meta = {
        "role": role_name,
        "resource_group_name": request.resource_group_name,
        "subscription_id": request.subscription_id,
    }
    for name in ("vm_name", "vmss_name", "resource_id"):
        value = getattr(request, name)
        if value:
            meta[name] = value
    appid = claims.get("appid") or claims.get("azp")
    if isinstance(appid, str) and appid:
        meta["app_id"] = appid
    return meta
