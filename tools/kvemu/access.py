"""Who may do what in a vault: Azure RBAC or vault access policies, default deny.

A real vault uses one of two permission models (docs/kvemu.md cites the sources):

* **RBAC** (``enableRbacAuthorization``): role assignments of a principal; each role is a list
  of data-action patterns (``*`` is a wildcard), each keys operation needs one data action.
* **Access policies**: per principal (object id) a list of key permissions (``get``, ``list``,
  ``create``, ...; case-insensitive, as the portal, CLI and Terraform spell them differently);
  each keys operation needs one permission, named in the REST API description.

A caller with nothing granted is refused, as a new vault refuses everyone but what its
creator was given.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Iterable

from .errors import KvError, forbidden
from .tokens import Principal

RBAC = "rbac"
ACCESS_POLICY = "access_policy"
PERMISSION_MODELS = (RBAC, ACCESS_POLICY)

# The key permissions an access policy can hold (Azure portal / az keyvault set-policy names).
KEY_PERMISSIONS = (
    "get",
    "list",
    "update",
    "create",
    "import",
    "delete",
    "recover",
    "backup",
    "restore",
    "decrypt",
    "encrypt",
    "unwrapKey",
    "wrapKey",
    "verify",
    "sign",
    "purge",
    "release",
    "rotate",
    "getrotationpolicy",
    "setrotationpolicy",
)
_PERMISSIONS_LOWER = {p.lower(): p for p in KEY_PERMISSIONS}

_V = "Microsoft.KeyVault/vaults"
# Built-in roles, keys part: their dataActions as Azure publishes them (built-in role list).
ROLES: dict[str, tuple[str, ...]] = {
    "Key Vault Administrator": (f"{_V}/*",),
    "Key Vault Crypto Officer": (f"{_V}/keys/*", f"{_V}/keyrotationpolicies/*"),
    "Key Vault Crypto User": (
        f"{_V}/keys/read",
        f"{_V}/keys/update/action",
        f"{_V}/keys/backup/action",
        f"{_V}/keys/encrypt/action",
        f"{_V}/keys/decrypt/action",
        f"{_V}/keys/wrap/action",
        f"{_V}/keys/unwrap/action",
        f"{_V}/keys/sign/action",
        f"{_V}/keys/verify/action",
        f"{_V}/keyrotationpolicies/read",
    ),
    "Key Vault Crypto Service Encryption User": (
        f"{_V}/keys/read",
        f"{_V}/keys/wrap/action",
        f"{_V}/keys/unwrap/action",
    ),
    "Key Vault Crypto Service Release User": (f"{_V}/keys/release/action",),
    "Key Vault Reader": (f"{_V}/*/read", f"{_V}/secrets/readMetadata/action"),
}


def normalize_permissions(permissions: Iterable[str]) -> frozenset[str]:
    """Access policy key permissions in their canonical spelling; unknown names refused."""
    out = set()
    for p in permissions:
        canonical = _PERMISSIONS_LOWER.get(str(p).lower())
        if canonical is None:
            raise ValueError(f"unknown key permission {p!r}; allowed: {', '.join(KEY_PERMISSIONS)}")
        out.add(canonical)
    return frozenset(out)


def role_allows(patterns: Iterable[str], action: str) -> bool:
    wanted = action.lower()
    return any(fnmatch.fnmatchcase(wanted, p.lower()) for p in patterns)


class AccessControl:
    """Role assignments (RBAC vaults) and access policies (the others), per vault."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._roles: dict[str, dict[str, set[str]]] = {}  # vault → oid → data actions
        self._policies: dict[str, dict[str, frozenset[str]]] = {}  # vault → oid → permissions

    def assign_role(self, vault: str, principal: str, patterns: Iterable[str]) -> None:
        with self._lock:
            self._roles.setdefault(vault, {}).setdefault(principal, set()).update(patterns)

    def set_policy(self, vault: str, object_id: str, permissions: Iterable[str]) -> None:
        """Replace the principal's key permissions (as an access policy entry is replaced)."""
        normalized = normalize_permissions(permissions)
        with self._lock:
            if normalized:
                self._policies.setdefault(vault, {})[object_id] = normalized
            else:
                self._policies.get(vault, {}).pop(object_id, None)

    def roles(self, vault: str) -> dict[str, list[str]]:
        with self._lock:
            return {p: sorted(a) for p, a in self._roles.get(vault, {}).items()}

    def policies(self, vault: str) -> dict[str, list[str]]:
        with self._lock:
            return {p: sorted(a) for p, a in self._policies.get(vault, {}).items()}

    def clear(self, vault: str | None = None) -> None:
        with self._lock:
            for table in (self._roles, self._policies):
                if vault is None:
                    table.clear()
                else:
                    table.pop(vault, None)

    def check(
        self,
        *,
        vault: str,
        model: str,
        principal: Principal,
        action: str,
        permission: str,
        resource: str,
    ) -> None:
        """Raise Key Vault's 403 unless the principal may perform the operation."""
        entry: frozenset[str] | None = None
        with self._lock:
            if model == RBAC:
                patterns = self._roles.get(vault, {}).get(principal.object_id, set())
                if role_allows(patterns, action):
                    return
            else:
                entry = self._policies.get(vault, {}).get(principal.object_id)
                if entry is not None and permission in entry:
                    return
        caller = f"appid={principal.app_id};oid={principal.object_id};iss={principal.issuer}"
        if model == RBAC:
            raise forbidden(
                "Caller is not authorized to perform action on resource.\r\n"
                "If role assignments, deny assignments or role definitions were changed "
                "recently, please observe propagation time.\r\n"
                f"Caller: {caller}\r\n"
                f"Action: '{action}'\r\n"
                f"Resource: '{resource.lower()}'\r\n"
                "Assignment: (not found)\r\nDenyAssignmentId: null\r\n"
                "DecisionReason: 'DeniedWithNoValidRBAC' \r\n"
                f"Vault: {vault};location=local\r\n",
                "ForbiddenByRbac",
            )
        raise KvError(
            403,
            "Forbidden",
            f"The user, group or application '{caller}' does not have keys {permission} "
            f"permission on key vault '{vault};location=local'. For help resolving this issue, "
            "please see https://go.microsoft.com/fwlink/?linkid=2125287",
            # seen live: AccessDenied for a caller with no policy entry, ForbiddenByPolicy for
            # one whose entry lacks the permission (docs/kvemu.md: the split is inferred)
            inner="ForbiddenByPolicy" if entry is not None else "AccessDenied",
        )
