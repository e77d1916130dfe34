"""Name rules for mounts, keys and KMS providers: what Table Storage row keys accept (a provider
type adds its own rules for remote names: shared/providers/)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from shared.errors import InvalidRequest

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_MOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# The rules as text, for the routes that help and OpenAPI show (shared/api/help.py).
NAME_PATTERN = _NAME.pattern
AUTH_PATH_PATTERN = _MOUNT.pattern
MAX_NAME = 100  # leaves room for "-<unix seconds>" within Key Vault's 127 characters
MAX_MOUNT = 64
MAX_DURATION = 100 * 365 * 86400  # the longest period or expiry any field takes: 100 years
# Functions host routes (admin, runtime) and our own top-level API paths.
RESERVED_MOUNTS = frozenset({"sys", "auth", "admin", "runtime", "identity", "cubbyhole"})


def _check(value: str, what: str, limit: int, pattern: re.Pattern[str], rule: str) -> str:
    """``value`` if it is present, at most ``limit`` long and matches ``pattern``; else an
    InvalidRequest naming ``what`` and the ``rule``."""
    if not value:
        raise InvalidRequest(f"{what} is required")
    if len(value) > limit:
        raise InvalidRequest(f"{what} is too long: {len(value)} characters, at most {limit}")
    if not pattern.fullmatch(value):
        raise InvalidRequest(f"invalid {what} {value!r}: {rule}")
    return value


def check_name(value: str, what: str) -> str:
    return _check(
        value,
        f"{what} name",
        MAX_NAME,
        _NAME,
        "use letters, digits, '-', '_' and '.', starting with a letter or digit",
    )


def check_mount(value: str) -> str:
    value = _check(
        value.strip("/"),
        "mount path",
        MAX_MOUNT,
        _MOUNT,
        "use one path segment of letters, digits, '-' and '_'",
    )
    if value.lower() in RESERVED_MOUNTS:
        raise InvalidRequest(f"mount path {value!r} is reserved; choose another path")
    return value


def check_auth_path(value: str) -> str:
    """An auth method's path (``sys/auth/<path>``, ``auth/<path>/...``): one segment."""
    return _check(
        value.strip("/"),
        "auth method path",
        MAX_MOUNT,
        _MOUNT,
        "use one path segment of letters, digits, '-' and '_'",
    )


def is_mount_name(value: str) -> bool:
    """Whether ``value`` could name a mount (no storage lookup for anything else)."""
    return len(value) <= MAX_MOUNT and bool(_MOUNT.fullmatch(value))


# What a route parameter names (``PathSpec.params``), and the rule its value follows: the API
# checks every parameter once, before a handler runs, so the engine gets only valid names.
# (A mount path is not one: see shared/mounts.py.)
KEY = "key"
KMS_PROVIDER = "KMS provider"
POLICY = "policy"
AUDIT_DEVICE = "audit device"
ROLE = "role"
AUTH_PATH = "auth method path"
MIGRATION_ID = "migration id"
PARAM_RULES: Mapping[str, Callable[[str], str]] = {
    KEY: lambda value: check_name(value, KEY),
    KMS_PROVIDER: lambda value: check_name(value, KMS_PROVIDER),
    # Policy names are stored lower-cased, as Vault stores them.
    POLICY: lambda value: check_name(value, POLICY).lower(),
    # Auth method roles are stored lower-cased, as Vault's jwt and azure plugins store them.
    ROLE: lambda value: check_name(value, ROLE).lower(),
    AUTH_PATH: check_auth_path,
    AUDIT_DEVICE: lambda value: check_name(value.rstrip("/"), AUDIT_DEVICE),
    # Any value: Vault answers 404 for an id it does not know, whatever its form, and the
    # lookup (shared.remount.Mover.status) reads only ids that parse as UUIDs.
    MIGRATION_ID: lambda value: value,
}
