"""The emulator's directory: which resources a token may be asked for, in which format, and
which app roles and groups its claims name.

As in Entra ID, a token's format is decided by the *resource*: first-party Microsoft
resources get v1.0 tokens; an app registration gets what its ``accessTokenAcceptedVersion``
says (null or 1: v1.0, 2: v2.0). A resource that is neither is refused (AADSTS500011).
Sources: docs/kvemu.md, "Entra ID tokens and metadata".
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

GROUP_MEMBERSHIP_CLAIMS = ("None", "SecurityGroup", "DirectoryRole", "ApplicationGroup", "All")


class ResourceNotFound(Exception):
    """No first-party resource or app registration answers to the requested resource."""

    def __init__(self, resource: str) -> None:
        super().__init__(resource)
        self.resource = resource


@dataclass(frozen=True)
class FirstParty:
    """A Microsoft first-party resource: its app id and identifier URIs."""

    name: str
    app_id: str
    identifier_uris: tuple[str, ...]
    uri_pattern: re.Pattern[str] | None = None


FIRST_PARTY: tuple[FirstParty, ...] = (
    FirstParty(
        "Azure Key Vault", "cfa8b339-82a2-471a-a3c9-0fc0be7a4093", ("https://vault.azure.net",)
    ),
    FirstParty(
        "Azure Key Vault Managed HSM",
        "589d5083-6f11-4d30-a62a-a4b316a14abf",
        ("https://managedhsm.azure.net",),
    ),
    FirstParty(
        "Windows Azure Service Management API",
        "797f4846-ba00-4fd7-ba43-dac1f8f63013",
        ("https://management.azure.com", "https://management.core.windows.net"),
    ),
    FirstParty(
        "Azure Storage",
        "e406a681-f3d4-42a8-90b6-c2b029497af1",
        ("https://storage.azure.com",),
        re.compile(r"https://[a-z0-9]{3,24}\.(blob|queue|table|file|dfs)\.core\.windows\.net"),
    ),
    FirstParty(
        "Microsoft Graph", "00000003-0000-0000-c000-000000000000", ("https://graph.microsoft.com",)
    ),
)


def _norm(resource: str) -> str:
    return resource.strip().rstrip("/").lower()


@dataclass(frozen=True)
class AppRole:
    id: str
    value: str


@dataclass(frozen=True)
class AppRegistration:
    """An API's app registration (with its service principal in this tenant)."""

    client_id: str
    object_id: str
    identifier_uris: tuple[str, ...]
    access_token_version: int | None
    app_roles: tuple[AppRole, ...]
    group_membership_claims: str | None

    @property
    def token_version(self) -> int:
        return 2 if self.access_token_version == 2 else 1

    def describe(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "object_id": self.object_id,
            "identifier_uris": list(self.identifier_uris),
            "access_token_version": self.access_token_version,
            "app_roles": [{"id": r.id, "value": r.value} for r in self.app_roles],
            "group_membership_claims": self.group_membership_claims,
        }


@dataclass(frozen=True)
class Resource:
    """What a token request resolved to."""

    app_id: str
    version: int
    first_party: bool
    app: AppRegistration | None = None


def _guid(value: Any, field_name: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(f"{field_name} must be a GUID, got {value!r}") from None


def _app_roles(value: Any) -> tuple[AppRole, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError('app_roles must be a list of role values or {"value", "id"} objects')
    roles: list[AppRole] = []
    for item in value:
        if isinstance(item, str):
            item = {"value": item}
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("value"), str)
            or not item["value"]
        ):
            raise ValueError('each app role must be a non-empty string or {"value": "...", "id"?}')
        role_id = _guid(item["id"], "app role id") if "id" in item else str(uuid.uuid4())
        roles.append(AppRole(id=role_id, value=item["value"]))
    values = [r.value for r in roles]
    if len(set(values)) != len(values):
        raise ValueError("app role values must be unique within the app")
    return tuple(roles)


@dataclass
class Directory:
    """App registrations, app role assignments and group memberships (thread-safe)."""

    _apps: dict[str, AppRegistration] = field(default_factory=dict)
    _assignments: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    _groups: dict[str, set[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register_app(
        self,
        *,
        client_id: str | None = None,
        identifier_uris: Iterable[str] = (),
        access_token_version: int | None = None,
        app_roles: Any = None,
        group_membership_claims: str | None = None,
    ) -> AppRegistration:
        cid = _guid(client_id, "client_id") if client_id is not None else str(uuid.uuid4())
        if isinstance(identifier_uris, str) or not all(
            isinstance(u, str) and u.strip() for u in identifier_uris
        ):
            raise ValueError("identifier_uris must be a list of non-empty strings")
        uris = tuple(identifier_uris)
        if access_token_version not in (None, 1, 2) or isinstance(access_token_version, bool):
            raise ValueError("access_token_version must be null, 1 or 2")
        if group_membership_claims is not None and group_membership_claims not in (
            GROUP_MEMBERSHIP_CLAIMS
        ):
            allowed = ", ".join(GROUP_MEMBERSHIP_CLAIMS)
            raise ValueError(f"group_membership_claims must be null or one of {allowed}")
        app = AppRegistration(
            client_id=cid,
            object_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"kvemu:api-sp:{cid}")),
            identifier_uris=uris,
            access_token_version=access_token_version,
            app_roles=_app_roles(app_roles),
            group_membership_claims=group_membership_claims,
        )
        with self._lock:
            for uri in uris:
                if any(_norm(uri) in map(_norm, fp.identifier_uris) for fp in FIRST_PARTY) or any(
                    _norm(uri) in map(_norm, other.identifier_uris)
                    for other in self._apps.values()
                    if other.client_id != cid
                ):
                    raise ValueError(
                        "Another object with the same value for property identifierUris already "
                        f"exists: {uri}"
                    )
            self._apps[cid] = app
        return app

    def apps(self) -> list[AppRegistration]:
        with self._lock:
            return list(self._apps.values())

    def resolve(self, resource: str) -> Resource:
        """The resource principal a token request names (identifier URI or app id)."""
        wanted = _norm(resource)
        if not wanted:
            raise ResourceNotFound(resource)
        for fp in FIRST_PARTY:
            if (
                wanted == fp.app_id
                or wanted in map(_norm, fp.identifier_uris)
                or (fp.uri_pattern is not None and fp.uri_pattern.fullmatch(wanted))
            ):
                return Resource(app_id=fp.app_id, version=1, first_party=True)
        with self._lock:
            for app in self._apps.values():
                if wanted == app.client_id or wanted in map(_norm, app.identifier_uris):
                    return Resource(
                        app_id=app.client_id, version=app.token_version, first_party=False, app=app
                    )
        raise ResourceNotFound(resource)

    def find_app(self, app: str) -> AppRegistration:
        """By client id or identifier URI."""
        resolved = None
        try:
            resolved = self.resolve(app)
        except ResourceNotFound:
            pass
        if resolved is None or resolved.app is None:
            raise KeyError(f"no registered app {app!r}")
        return resolved.app

    def assign_app_role(self, app: str, principal_object_id: str, role: str) -> None:
        """Assign one of the app's roles (by value or id) to a service principal."""
        registration = self.find_app(app)
        match = next((r for r in registration.app_roles if role in (r.value, r.id)), None)
        if match is None:
            values = [r.value for r in registration.app_roles]
            raise ValueError(
                f"app {registration.client_id} has no app role {role!r}; roles: {values}"
            )
        with self._lock:
            self._assignments.setdefault((registration.client_id, principal_object_id), set()).add(
                match.value
            )

    def add_group_members(self, group_id: str, object_ids: Iterable[str]) -> list[str]:
        gid = _guid(group_id, "group_id")
        with self._lock:
            members = self._groups.setdefault(gid, set())
            members.update(object_ids)
            return sorted(members)

    def groups(self) -> Mapping[str, list[str]]:
        with self._lock:
            return {gid: sorted(members) for gid, members in self._groups.items()}

    def claims_for(self, resource: Resource, principal_object_id: str) -> dict[str, Any]:
        """``roles`` (app roles assigned to the principal on this API) and ``groups`` (when the
        API's ``groupMembershipClaims`` asks for them)."""
        claims: dict[str, Any] = {}
        if resource.app is None:
            return claims
        with self._lock:
            roles = sorted(self._assignments.get((resource.app.client_id, principal_object_id), ()))
            groups = sorted(
                g for g, members in self._groups.items() if principal_object_id in members
            )
        if roles:
            claims["roles"] = roles
        if groups and resource.app.group_membership_claims in ("SecurityGroup", "All"):
            claims["groups"] = groups
        return claims
