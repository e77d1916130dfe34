"""The JWT auth method (``auth/<mount>/*`` of type ``jwt``), as OpenBao's builtin and Vault's
vault-plugin-auth-jwt: config, roles and the bearer-JWT login, with their texts and order.

Signature verification is PyJWT's (``shared/auth/keys.py``); the claim checks below follow
the order and texts of hashicorp/cap's ``jwt.Validator`` (issuer, subject, audience, then
the times with leeways) and of the plugin's ``path_login.go`` after it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.auth import JWT, keys
from shared.auth.common import JWT_TEXTS, max_ttl_warnings, render_token_settings, token_settings
from shared.errors import InvalidRequest
from shared.vaultapi import FieldData

TYPE = JWT
SOURCES = (
    "jwt_validation_pubkeys",
    "jwks_url",
    "jwks_pairs",
    "oidc_discovery_url",
    "provider_config",
)
EXACTLY_ONE = (
    "exactly one of 'jwt_validation_pubkeys', 'jwks_url', 'jwks_pairs', 'oidc_discovery_url', "
    "or 'provider_config' must be set"
)
DEFAULT_CLOCK_SKEW = 60  # when clock_skew_leeway is 0 (-1 turns it off)
MAX_LEEWAY = 3600  # ours: a leeway longer than an hour would make expiry meaningless

CONFIG_DEFAULTS: Mapping[str, Any] = {
    "oidc_discovery_url": "",
    "oidc_discovery_ca_pem": "",
    "oidc_client_id": "",
    "oidc_response_mode": "",
    "oidc_response_types": [],
    "jwks_url": "",
    "jwks_ca_pem": "",
    "jwt_validation_pubkeys": [],
    "jwt_supported_algs": [],
    "bound_issuer": "",
    "default_role": "",
    "namespace_in_state": True,
}


# -- config ------------------------------------------------------------------------------------


def config_from(data: FieldData) -> tuple[dict[str, Any], dict[str, str]]:
    """A new config from a write (Vault's jwt config write replaces the whole config): its
    settings and its secrets (``oidc_client_secret``, sealed by the caller)."""
    settings = {name: data.get(name, default) for name, default in CONFIG_DEFAULTS.items()}
    secret = data.get("oidc_client_secret", "") or ""
    if data.has("provider_config") and data.get("provider_config"):
        raise InvalidRequest(
            "provider_config is not supported by this server (it calls no provider APIs such "
            "as Microsoft Graph); leave it empty"
        )
    if data.has("jwks_pairs") and data.get("jwks_pairs"):
        raise InvalidRequest(
            "jwks_pairs is not supported by this server; use jwks_url (with jwks_ca_pem)"
        )
    sources = [
        settings["jwt_validation_pubkeys"],
        settings["jwks_url"],
        settings["oidc_discovery_url"],
    ]
    if sum(1 for s in sources if s) != 1:
        raise InvalidRequest(EXACTLY_ONE)
    if bool(settings["oidc_client_id"]) != bool(secret):
        raise InvalidRequest("both 'oidc_client_id' and 'oidc_client_secret' must be set for OIDC")
    for alg in settings["jwt_supported_algs"]:
        if alg not in keys.ALLOWED_ALGORITHMS:
            raise InvalidRequest(
                f'invalid jwt_supported_algs: unsupported signing algorithm "{alg[:32]}"'
            )
    for pem in settings["jwt_validation_pubkeys"]:
        keys.load_public_key(pem)
    for name in ("oidc_discovery_ca_pem", "jwks_ca_pem"):
        if settings[name]:
            keys.tls_context(settings[name])
    if settings["oidc_discovery_url"]:
        try:
            _discovery(settings)
        except Exception as exc:
            raise InvalidRequest(f"error checking oidc discovery URL: {exc}") from None
    elif settings["jwks_url"]:
        try:
            keys.fetch_json(settings["jwks_url"], keys.tls_context(settings["jwks_ca_pem"]))
        except Exception as exc:
            raise InvalidRequest(f"error checking jwks URL: {exc}") from None
    return settings, ({"oidc_client_secret": secret} if secret else {})


def render_config(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``GET config``, in OpenBao's keys (sorted); the client secret is never shown."""
    shown = {name: settings.get(name, default) for name, default in CONFIG_DEFAULTS.items()}
    shown.update({"override_allowed_server_names": [], "provider_config": {}, "status": "valid"})
    return dict(sorted(shown.items()))


def _discovery(settings: Mapping[str, Any]) -> keys.Discovery:
    """The provider's metadata; its issuer must be the discovery URL (go-oidc's rule)."""
    url = str(settings["oidc_discovery_url"]).rstrip("/")
    found = keys.discover(
        url + "/.well-known/openid-configuration", str(settings["oidc_discovery_ca_pem"])
    )
    if found.issuer != settings["oidc_discovery_url"] and found.issuer != url:
        raise InvalidRequest(
            "oidc: issuer did not match the issuer returned by provider, expected "
            f'"{settings["oidc_discovery_url"]}" got "{found.issuer[:200]}"'
        )
    return found


# -- roles -------------------------------------------------------------------------------------

ROLE_DEFAULTS: Mapping[str, Any] = {
    "role_type": "oidc",
    "bound_audiences": [],
    "user_claim": "",
    "user_claim_json_pointer": False,
    "bound_subject": "",
    "bound_claims": None,
    "bound_claims_type": "string",
    "claim_mappings": None,
    "groups_claim": "",
    "clock_skew_leeway": 0,
    "expiration_leeway": 0,
    "not_before_leeway": 0,
    "max_age": 0,
    "allowed_redirect_uris": None,
    "oidc_scopes": None,
    "verbose_oidc_logging": False,
    "callback_mode": "client",
}


def role_from(
    data: FieldData, existing: Mapping[str, Any], *, system_max: int
) -> tuple[dict[str, Any], list[str]]:
    """The role after a write: sent fields replace stored ones (Vault merges a role
    update); checked in the plugin's order, with its texts. The role and its warnings."""
    role: dict[str, Any] = {}
    for name, default in ROLE_DEFAULTS.items():
        role[name] = data.get(name) if data.has(name) else existing.get(name, default)
    # OpenBao does not keep a role's type across writes: one that does not send it is oidc.
    role["role_type"] = data.get("role_type") if data.has("role_type") else "oidc"
    if role["role_type"] not in ("oidc", "jwt"):
        raise InvalidRequest(f"invalid 'role_type': {str(role['role_type'])[:32]}")
    role.update(token_settings(data, existing, system_max=system_max, texts=JWT_TEXTS))
    if role["role_type"] == "oidc" and not role["allowed_redirect_uris"]:
        raise InvalidRequest(
            "'allowed_redirect_uris' must be set if 'role_type' is 'oidc' or unspecified."
        )
    if role["bound_claims_type"] not in ("string", "glob"):
        raise InvalidRequest(f"invalid 'bound_claims_type': {str(role['bound_claims_type'])[:32]}")
    for claim, expected in (role["bound_claims"] or {}).items():
        values = expected if isinstance(expected, list) else [expected]
        if role["bound_claims_type"] == "glob" and not all(isinstance(v, str) for v in values):
            raise InvalidRequest(f"claim is not a string or list: {claim}")
    if role["user_claim_json_pointer"]:
        raise InvalidRequest(
            "user_claim_json_pointer is not supported by this server: name a top-level claim"
        )
    if role["role_type"] == "jwt" and not (
        role["bound_audiences"]
        or role["token_bound_cidrs"]
        or role["bound_subject"]
        or role["bound_claims"]
    ):
        raise InvalidRequest(
            "must have at least one bound constraint when creating/updating a role"
        )
    if not role["user_claim"]:
        raise InvalidRequest("a user claim must be defined on the role")
    for key in (role["claim_mappings"] or {}).values():
        if key == "role":
            raise InvalidRequest(
                'metadata key "role" is reserved and may not be a mapping destination'
            )
    for name in ("clock_skew_leeway", "expiration_leeway", "not_before_leeway"):
        if role[name] < -1 or role[name] > MAX_LEEWAY:
            raise InvalidRequest(
                f"{name} must be -1 (off), 0 (the default) or up to {MAX_LEEWAY} seconds"
            )
    return role, max_ttl_warnings(role, system_max)


def render_role(role: Mapping[str, Any]) -> dict[str, Any]:
    shown = {name: role.get(name, default) for name, default in ROLE_DEFAULTS.items()}
    shown.update(render_token_settings(role))
    shown.update(
        {
            "oauth2_metadata": None,
            "oidc_disable_confirmation": False,
            "token_policies_template_claims": False,
            "token_strictly_bind_ip": False,
        }
    )
    return dict(sorted(shown.items()))


# -- login -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Who logged in: the alias name (the user claim) and the token's metadata."""

    name: str
    metadata: dict[str, str]


def _key_set(config: Mapping[str, Any], token: str) -> tuple[list[Any], str]:
    """The keys that may have signed ``token``, and the issuer its source vouches for (the
    discovered provider's; "" for static keys and a bare JWKS URL)."""
    if config["jwt_validation_pubkeys"]:
        return [keys.load_public_key(pem) for pem in config["jwt_validation_pubkeys"]], ""
    if config["jwks_url"]:
        client = keys.jwks_client(config["jwks_url"], config["jwks_ca_pem"])
        return keys.jwks_keys(client, token), ""
    found = _discovery(config)
    client = keys.jwks_client(found.jwks_uri, config["oidc_discovery_ca_pem"])
    return keys.jwks_keys(client, token), found.issuer


# Claims every login token must carry. Stricter than Vault, which checks only the ones present:
# a bearer token without an expiry, an issuer or an audience is a credential for anyone who
# holds it, for ever, anywhere. (nbf is checked when present; without it iat is the start, as
# in Vault: some issuers, Google's ID tokens among them, send no nbf.)
REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud")


def _number(claims: Mapping[str, Any], name: str, what: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(f"error validating token: invalid {what} ({name}) claim: not a number")
    return float(value)


def _leeway(value: int, default: int) -> int:
    return 0 if value == -1 else (value or default)


def validate(
    token: str, config: Mapping[str, Any], role: Mapping[str, Any], now: float | None = None
) -> dict[str, Any]:
    """The token's claims, once its signature and standard claims pass (cap's order)."""
    algorithms = list(config.get("jwt_supported_algs") or keys.ALLOWED_ALGORITHMS)
    try:
        key_set, discovered = _key_set(config, token)
        claims = keys.verified_claims(token, key_set, algorithms)
    except keys.SignatureError as exc:
        raise InvalidRequest(f"error validating token: {exc}") from None
    missing = [name for name in REQUIRED_CLAIMS if claims.get(name) in (None, "", [])]
    if missing:
        raise InvalidRequest(
            f"error validating token: the token has no {', '.join(missing)} claim: this server "
            f"requires {', '.join(REQUIRED_CLAIMS)} in every login token"
        )
    # With discovery, the token must also come from the provider discovered (go-oidc's rule;
    # Vault checks only bound_issuer): a key set shared by several issuers does not let one
    # stand in for another.
    for issuer in (config.get("bound_issuer") or "", discovered):
        if issuer and claims.get("iss") != issuer:
            raise InvalidRequest("error validating token: invalid issuer (iss) claim")
    subject = role.get("bound_subject") or ""
    if subject and claims.get("sub") != subject:
        raise InvalidRequest("error validating token: invalid subject (sub) claim")
    audiences = role.get("bound_audiences") or []
    if audiences:
        aud = claims.get("aud")
        token_audiences = aud if isinstance(aud, list) else [aud] if aud is not None else []
        if not any(a in audiences for a in token_audiences if isinstance(a, str)):
            raise InvalidRequest(
                "error validating token: invalid audience (aud) claim: audience claim does not "
                "match any expected audience"
            )
    now = time.time() if now is None else now
    # As OpenBao 2.7.2 answers (observed; see docs/auth.md): one leeway, clock_skew_leeway
    # (60 s when 0, none when -1), for every time claim; expiration_leeway and
    # not_before_leeway are stored and shown but change nothing. Without nbf, iat is when the
    # token becomes valid.
    skew = _leeway(role.get("clock_skew_leeway", 0), DEFAULT_CLOCK_SKEW)
    exp = _number(claims, "exp", "expiration time")
    nbf = _number(claims, "nbf", "not before")
    iat = _number(claims, "iat", "issued at")
    if exp is not None and now > exp + skew:
        raise InvalidRequest(
            "error validating token: invalid expiration time (exp) claim: token is expired"
        )
    starts = nbf if nbf is not None else iat
    if starts is not None and now < starts - skew:
        raise InvalidRequest(
            "error validating token: invalid not before (nbf) claim: token not yet valid"
        )
    if iat is not None and iat > now + skew:
        raise InvalidRequest(
            "error validating token: invalid issued at (iat) claim: token issued in the future"
        )
    return claims


def _glob(pattern: str, value: str) -> bool:
    """go-glob: ``*`` matches any run of characters; nothing else is special."""
    return (
        re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), value) is not None
    )


def claim_value(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by name, or by JSON pointer (``/groups/0``, ``/address/country``) as Vault's
    getClaim takes one; None when absent."""
    if not name.startswith("/"):
        return claims.get(name)
    value: Any = claims
    for raw in name[1:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def check_bound_claims(claims: Mapping[str, Any], role: Mapping[str, Any]) -> None:
    for claim, expected in (role.get("bound_claims") or {}).items():
        actual = claim_value(claims, claim)
        if actual is None:
            raise InvalidRequest(f'error validating claims: claim "{claim}" is missing')
        wanted = expected if isinstance(expected, list) else [expected]
        values = actual if isinstance(actual, list) else [actual]
        glob = role.get("bound_claims_type") == "glob"
        matched = any(
            isinstance(v, str)
            and any((_glob(w, v) if glob else w == v) for w in wanted if isinstance(w, str))
            for v in values
        )
        if not matched:
            raise InvalidRequest(
                f'error validating claims: claim "{claim}" does not match any associated bound '
                "claim values"
            )


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(int(value)) if float(value).is_integer() else str(value)
    return None


def login_identity(claims: Mapping[str, Any], role: Mapping[str, Any]) -> Identity:
    """After validation: the audience rule, bound claims, then the identity (user claim,
    metadata from claim_mappings, groups claim), in the plugin's order and texts."""
    if claims.get("aud") and not role.get("bound_audiences"):
        raise InvalidRequest("audience claim found in JWT but no audiences bound to the role")
    check_bound_claims(claims, role)
    user_claim = role["user_claim"]
    raw = claims.get(user_claim)
    if raw is None:
        raise InvalidRequest(f'claim "{user_claim}" not found in token')
    name = _text(raw)
    if name is None or not name:
        raise InvalidRequest(f'claim "{user_claim}" could not be converted to string')
    metadata: dict[str, str] = {}
    for claim, key in (role.get("claim_mappings") or {}).items():
        value = claim_value(claims, claim)
        if value is None:
            continue
        text = _text(value)
        if text is None:
            raise InvalidRequest(f"error converting claim '{claim}' to string")
        metadata[key] = text
    groups_claim = role.get("groups_claim") or ""
    if groups_claim:
        groups = claims.get(groups_claim)
        if groups is None:
            raise InvalidRequest(
                f'failed to fetch groups: "{groups_claim}" claim not found in token'
            )
        if not isinstance(groups, (list, str)):
            raise InvalidRequest(f'"{groups_claim}" claim could not be converted to string list')
    return Identity(name, metadata)
