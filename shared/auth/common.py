"""What every auth method shares: the ``token_*`` fields of a role (Vault's
``sdk/helper/tokenutil``), bound CIDRs, and how a login token is named.

Knows nothing of HTTP: the API declares the fields (``shared/api/auth.py``) and hands over a
``FieldData``; the texts are Vault's, per method where the methods differ.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.durations import go_string
from shared.errors import InvalidRequest
from shared.vaultapi import FieldData

# Every token_* field a role takes, with the legacy name Vault still accepts for it.
TOKEN_FIELDS = (
    "token_policies",
    "token_ttl",
    "token_max_ttl",
    "token_explicit_max_ttl",
    "token_period",
    "token_num_uses",
    "token_no_default_policy",
    "token_type",
    "token_bound_cidrs",
)
LEGACY_NAMES = {
    "token_policies": "policies",
    "token_ttl": "ttl",
    "token_max_ttl": "max_ttl",
    "token_period": "period",
    "token_num_uses": "num_uses",
}
TOKEN_DEFAULTS: Mapping[str, Any] = {
    "token_policies": [],
    "token_ttl": 0,
    "token_max_ttl": 0,
    "token_explicit_max_ttl": 0,
    "token_period": 0,
    "token_num_uses": 0,
    "token_no_default_policy": False,
    "token_type": "default",
    "token_bound_cidrs": [],
}
_ENTITY_NAMESPACE = uuid.UUID("5b1e7f0e-7c1a-4d55-9a61-61757468656e")  # "authen": ours alone


@dataclass(frozen=True)
class Texts:
    """The words a method's tokenutil errors use (the JWT and Azure plugins differ)."""

    ttl_over_max: str
    negative_uses: str
    period_over_max: str  # formatted with the period and the system max, Go %q style


JWT_TEXTS = Texts(
    ttl_over_max="'token_ttl' cannot be greater than 'token_max_ttl'",
    negative_uses="'token_num_uses' cannot be negative",
    period_over_max="'period' of '\"{period}\"' is greater than the backend's maximum lease TTL "
    "of '\"{max}\"'",
)
AZURE_TEXTS = Texts(
    ttl_over_max="ttl should not be greater than max_ttl",
    negative_uses="token num uses cannot be negative",
    period_over_max='token period of "{period}" is greater than the backend\'s maximum lease '
    'TTL of "{max}"',
)


def parse_cidrs(values: list[str]) -> list[str]:
    """Each item an IP address or a CIDR block, normalised (``10.0.0.1`` → ``10.0.0.1/32``);
    Vault's text for one that is neither."""
    result = []
    for value in values:
        try:
            result.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            shown = value[:64]
            raise InvalidRequest(
                f'error parsing address "{shown}": Unable to convert "{shown}" to an IPv4 or '
                "IPv6 address, or a UNIX Socket"
            ) from None
    return result


def shown_cidrs(cidrs: list[str]) -> list[str]:
    """As Vault shows bound CIDRs: a single address without its ``/32`` (``/128``)."""
    return [c.removesuffix("/128" if ":" in c else "/32") for c in cidrs]


def token_settings(
    data: FieldData, existing: Mapping[str, Any], *, system_max: int, texts: Texts
) -> dict[str, Any]:
    """The role's token_* settings: each field sent (or its legacy name, when the new one
    is not sent) replaces the stored value; the rest keep theirs. Checked as tokenutil
    checks them, with the method's texts."""
    settings: dict[str, Any] = {}
    for name in TOKEN_FIELDS:
        legacy = LEGACY_NAMES.get(name)
        if data.has(name):
            settings[name] = data.get(name)
        elif legacy and data.has(legacy):
            settings[name] = data.get(legacy)
        else:
            settings[name] = existing.get(name, TOKEN_DEFAULTS[name])
    settings["token_policies"] = sorted(
        {p.strip().lower() for p in settings["token_policies"] if p.strip()}
    )
    if "root" in settings["token_policies"]:
        # A login must never mint a root token (the root token comes from settings only).
        raise InvalidRequest("token_policies: the root policy cannot be given by a role")
    settings["token_bound_cidrs"] = parse_cidrs(list(settings["token_bound_cidrs"]))
    token_type = settings["token_type"] or "default"
    if token_type in ("batch", "default-batch"):
        raise InvalidRequest(
            "token_type: batch tokens are not supported by this server; use service (or "
            "default, which is service here)"
        )
    if token_type not in ("default", "service", "default-service"):
        raise InvalidRequest("invalid 'token_type' value")
    settings["token_type"] = token_type
    for name in ("token_ttl", "token_max_ttl", "token_explicit_max_ttl", "token_period"):
        if settings[name] < 0:
            raise InvalidRequest(f"'{name}' cannot be negative")
    if settings["token_max_ttl"] and settings["token_ttl"] > settings["token_max_ttl"]:
        raise InvalidRequest(texts.ttl_over_max)
    if settings["token_num_uses"] < 0:
        raise InvalidRequest(texts.negative_uses)
    if settings["token_period"] > system_max:
        raise InvalidRequest(
            texts.period_over_max.format(
                period=go_string(settings["token_period"]), max=go_string(system_max)
            )
        )
    return settings


def max_ttl_warnings(settings: Mapping[str, Any], system_max: int) -> list[str]:
    if settings["token_max_ttl"] > system_max:
        return [
            "token_max_ttl is greater than the system or backend mount's maximum TTL value; "
            "issued tokens' max TTL value will be truncated"
        ]
    return []


def render_token_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    shown = {name: settings.get(name, TOKEN_DEFAULTS[name]) for name in TOKEN_FIELDS}
    shown["token_bound_cidrs"] = shown_cidrs(list(shown["token_bound_cidrs"]))
    return shown


_DISPLAY = re.compile(r"[^a-zA-Z0-9-]")


def display_name(mount: str, name: str) -> str:
    """The login token's display name as Vault forms it: ``<mount path>-<name>`` (each
    character outside ``[a-zA-Z0-9-]`` made ``-``, a trailing ``-`` trimmed)."""
    return _DISPLAY.sub("-", f"{mount}-{name}")[:256].removesuffix("-")


def entity_id(mount_accessor: str, alias_name: str) -> str:
    """A stable stand-in for Vault's entity id: there is no identity store here, so the same
    principal logging in through the same method always gets the same UUID (v5 of the mount
    accessor and the alias name), and no two methods share one."""
    return str(uuid.uuid5(_ENTITY_NAMESPACE, f"{mount_accessor}\x00{alias_name}"))
