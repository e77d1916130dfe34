"""The service's configuration, read once from app settings into one typed object.

Nothing else in the app reads ``os.environ`` (the credential chain's own documented
variables, read by ``azure-identity`` itself, aside). The settings table in the README
lists every name below.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_TABLE_PREFIX = "keymgmt"
DEFAULT_ROTATION_SCHEDULE = "0 */5 * * * *"
DEFAULT_RECONCILE_SCHEDULE = "0 0 * * * *"
DEFAULT_TOKEN_TIDY_SCHEDULE = "0 */10 * * * *"
DEFAULT_TOKEN_TTL = 768 * 3600  # Vault's system default and maximum lease TTL: 32 days
STORAGE_PREFIX = "KEYMGMT_STORAGE"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


# RFC 1918: what "private" means for the health check unless KEYMGMT_PRIVATE_RANGES says.
DEFAULT_PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")


@dataclass(frozen=True)
class StorageSettings:
    """Where the engine's tables live: a connection string, or an identity-based endpoint."""

    connection_string: str | None = None
    table_service_uri: str | None = None
    # The same account's blob endpoint (identity-based), for the blob audit device.
    blob_service_uri: str | None = None
    client_id: str | None = None  # user-assigned identity for storage

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None


AUDIT_TYPES = ("file", "blob", "log")
# Every option a device type takes, with its default (as OpenBao's devices default them).
_AUDIT_COMMON_OPTIONS = {
    "log_raw": "false",
    "hmac_accessor": "true",
    "elide_list_responses": "false",
}
AUDIT_OPTIONS: Mapping[str, Mapping[str, str | None]] = {
    "file": {**_AUDIT_COMMON_OPTIONS, "file_path": None, "mode": "0600"},
    "blob": {**_AUDIT_COMMON_OPTIONS, "container": "audit", "rotate": "day"},
    "log": dict(_AUDIT_COMMON_OPTIONS),
}
AUDIT_SETTING = "KEYMGMT_AUDIT_DEVICES"


@dataclass(frozen=True)
class AuditDevice:
    """One audit device declared in KEYMGMT_AUDIT_DEVICES (OpenBao's config-declared device).

    ``options`` holds the options as declared (what ``GET sys/audit`` shows); the typed
    attributes below are those options parsed, defaults applied."""

    path: str  # without the trailing "/"
    type: str
    description: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    log_raw: bool = False
    hmac_accessor: bool = True
    elide_list_responses: bool = False
    file_path: str = ""  # file: a path, or "stdout"
    mode: int = 0o600  # file: exec bits already stripped; 0 = leave the mode alone
    container: str = "audit"  # blob
    rotate: str = "day"  # blob: "day" or "hour"


@dataclass(frozen=True)
class Settings:
    storage: StorageSettings
    table_prefix: str = DEFAULT_TABLE_PREFIX
    # Seal key: exactly one of a raw 256-bit key (development) or a Key Vault key id.
    seal_key: bytes | None = field(default=None, repr=False)
    seal_key_id: str | None = None
    # Root token: its SHA-256 hex digest; the token itself is never kept.
    root_token_sha256: str | None = field(default=None, repr=False)
    default_mounts: tuple[str, ...] = ()
    # Key Vault addressing and identity.
    keyvault_url_overrides: Mapping[str, str] = field(default_factory=dict)
    keyvault_ca_bundle: str | None = None
    # Key Vault's challenge names the resource to get a token for; the SDK checks it matches the
    # vault's domain. Only a stand-in (the local emulator, on 127.0.0.1) turns this off.
    keyvault_verify_challenge_resource: bool = True
    managed_identity_client_id: str | None = None
    azure_environment: str | None = None
    # The credential chain's documented variables (a service principal for the whole app).
    azure_client_id: str | None = None
    azure_client_secret: str | None = field(default=None, repr=False)
    azure_tenant_id: str | None = None
    azure_authority_host: str | None = None
    # auth/azure's fallback for its config's ``resource`` (the variable Vault's plugin reads).
    azure_ad_resource: str | None = None
    private_ranges: tuple[str, ...] = DEFAULT_PRIVATE_RANGES
    # Test-only knob: allow auto_rotate_period below one hour.
    allow_short_rotation: bool = False
    # Event Grid: disable Key Vault versions of our keys that the engine did not create.
    disable_foreign_versions: bool = False
    max_body_bytes: int = 1024 * 1024
    # How old another instance's policy change may be before this one sees it (seconds).
    policy_cache_seconds: float = 5.0
    # Key Vault: seconds to wait for an answer, and how long an import that got none is given
    # to land (looked for by its tags) before it is sent again.
    keyvault_read_timeout: int = 30
    unknown_import_wait: int = 90
    # Tokens (auth/token/*): the TTL a token gets when it asks for none, and the most any
    # token lives from its creation (periodic tokens aside), as Vault's default_lease_ttl and
    # max_lease_ttl; both in seconds.
    token_default_ttl: int = DEFAULT_TOKEN_TTL
    token_max_ttl: int = DEFAULT_TOKEN_TTL
    # Audit devices (KEYMGMT_AUDIT_DEVICES), and how long one may take to write an entry.
    audit_devices: tuple[AuditDevice, ...] = ()
    audit_write_timeout: float = 10.0


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = _get(env, name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _duration(env: Mapping[str, str], name: str, default: int) -> int:
    """Seconds, from ``3600``, ``"768h"``, ``"90m"`` or ``"32d"`` (Vault's duration forms)."""
    from shared.durations import parse_seconds
    from shared.errors import InvalidRequest

    raw = _get(env, name)
    if raw is None:
        return default
    try:
        seconds = parse_seconds(raw)
    except InvalidRequest:
        seconds = 0
    if seconds <= 0:
        raise SettingsError(
            f"{name} must be a positive duration (seconds, or like 768h, 90m, 32d), got {raw!r}"
        )
    return seconds


def _token_ttls(env: Mapping[str, str]) -> tuple[int, int]:
    maximum = _duration(env, "KEYMGMT_TOKEN_MAX_TTL", DEFAULT_TOKEN_TTL)
    default = _duration(env, "KEYMGMT_TOKEN_DEFAULT_TTL", min(DEFAULT_TOKEN_TTL, maximum))
    if default > maximum:
        raise SettingsError("KEYMGMT_TOKEN_DEFAULT_TTL must not exceed KEYMGMT_TOKEN_MAX_TTL")
    return default, maximum


def _csv(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _url_overrides(raw: str | None) -> dict[str, str]:
    """``name=https://host:port,name2=...`` → {name: url}."""
    result: dict[str, str] = {}
    for item in _csv(raw):
        name, sep, url = item.partition("=")
        if not sep or not name.strip() or not url.strip().startswith("https://"):
            raise SettingsError(
                "KEYMGMT_KEYVAULT_URLS must be a comma list of <vault name>=https://<host>[:port], "
                f"got item {item!r}"
            )
        result[name.strip().lower()] = url.strip().rstrip("/")
    return result


def _storage(env: Mapping[str, str]) -> StorageSettings:
    conn = _get(env, STORAGE_PREFIX)
    uri = _get(env, f"{STORAGE_PREFIX}__tableServiceUri")
    blob_uri = _get(env, f"{STORAGE_PREFIX}__blobServiceUri")
    if conn and (uri or blob_uri):
        raise SettingsError(
            f"set either {STORAGE_PREFIX} (connection string) or "
            f"{STORAGE_PREFIX}__tableServiceUri / __blobServiceUri (identity-based), not both"
        )
    if conn:
        return StorageSettings(connection_string=conn)
    if blob_uri and not blob_uri.startswith("https://"):
        raise SettingsError(f"{STORAGE_PREFIX}__blobServiceUri must be an https:// URL")
    if uri:
        # The Functions convention for identity-based connections: __credential is
        # "managedidentity", the only value it defines, and the only one the store uses
        # (ManagedIdentityCredential, user-assigned when __clientId is set).
        credential = _get(env, f"{STORAGE_PREFIX}__credential")
        if credential is not None and credential.lower() != "managedidentity":
            raise SettingsError(
                f"{STORAGE_PREFIX}__credential: only managedidentity is supported (or leave it "
                "unset)"
            )
        return StorageSettings(
            table_service_uri=uri.rstrip("/"),
            blob_service_uri=blob_uri.rstrip("/") if blob_uri else None,
            client_id=_get(env, f"{STORAGE_PREFIX}__clientId"),
        )
    raise SettingsError(
        f"storage is not configured: set {STORAGE_PREFIX} to a connection string, or "
        f"{STORAGE_PREFIX}__tableServiceUri for identity-based access"
    )


def _seal_key(env: Mapping[str, str]) -> bytes | None:
    raw = _get(env, "KEYMGMT_SEAL_KEY")
    if raw is None:
        return None
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError("KEYMGMT_SEAL_KEY must be base64 of 32 random bytes") from None
    if len(key) != 32:
        raise SettingsError(
            f"KEYMGMT_SEAL_KEY must decode to 32 bytes (AES-256), got {len(key)} bytes"
        )
    return key


def _root_token_hash(env: Mapping[str, str]) -> str | None:
    import hashlib

    digest = _get(env, "KEYMGMT_ROOT_TOKEN_SHA256")
    token = _get(env, "KEYMGMT_ROOT_TOKEN")
    if digest and token:
        raise SettingsError("set KEYMGMT_ROOT_TOKEN or KEYMGMT_ROOT_TOKEN_SHA256, not both")
    if token:
        return hashlib.sha256(token.encode()).hexdigest()
    if digest:
        digest = digest.lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise SettingsError("KEYMGMT_ROOT_TOKEN_SHA256 must be 64 hex characters")
        return digest
    return None


_DEVICE_PATH = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")


def _audit_bool(device: str, options: Mapping[str, str], name: str) -> bool:
    raw = options[name]
    if raw in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if raw in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise SettingsError(f'{AUDIT_SETTING}: device "{device}": {name} must be "true" or "false"')


def _audit_device(item: object, index: int) -> AuditDevice:
    where = f"{AUDIT_SETTING}[{index}]"
    if not isinstance(item, dict):
        raise SettingsError(f"{where} must be an object with path, type, description, options")
    unknown = sorted(set(item) - {"path", "type", "description", "options"})
    if unknown:
        raise SettingsError(
            f"{where}: unknown keys {unknown}; a device takes path, type, description, options"
        )
    path = item.get("path")
    if not isinstance(path, str) or not _DEVICE_PATH.fullmatch(path.rstrip("/")):
        raise SettingsError(
            f"{where}: path must be 1-63 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit"
        )
    path = path.rstrip("/")
    kind = item.get("type")
    if kind not in AUDIT_TYPES:
        raise SettingsError(
            f'{AUDIT_SETTING}: device "{path}": type must be one of {", ".join(AUDIT_TYPES)}'
        )
    description = item.get("description", "")
    if not isinstance(description, str):
        raise SettingsError(f'{AUDIT_SETTING}: device "{path}": description must be a string')
    declared = item.get("options") or {}
    if not isinstance(declared, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in declared.items()
    ):
        raise SettingsError(
            f'{AUDIT_SETTING}: device "{path}": options must be an object of strings to strings'
        )
    allowed = AUDIT_OPTIONS[kind]
    unknown = sorted(set(declared) - set(allowed))
    if unknown:
        raise SettingsError(
            f'{AUDIT_SETTING}: device "{path}" ({kind}): unknown options {unknown}; allowed are '
            f"{', '.join(allowed)}"
        )
    options = {k: v for k, v in allowed.items() if v is not None} | declared
    extra: dict[str, object] = {}
    if kind == "file":
        file_path = options.get("file_path", "").strip()
        if not file_path:
            raise SettingsError(f'{AUDIT_SETTING}: device "{path}" (file): file_path is required')
        try:
            mode = int(options["mode"], 8)
        except ValueError:
            mode = -1
        if not 0 <= mode <= 0o777:
            raise SettingsError(
                f'{AUDIT_SETTING}: device "{path}" (file): mode must be octal like "0600"'
            )
        extra = {"file_path": file_path, "mode": mode & ~0o111}  # exec bits stripped, as OpenBao
    elif kind == "blob":
        if not _CONTAINER.fullmatch(options["container"]):
            raise SettingsError(
                f'{AUDIT_SETTING}: device "{path}" (blob): container must be a valid container '
                "name (3-63 lower-case letters, digits and single hyphens)"
            )
        if options["rotate"] not in ("day", "hour"):
            raise SettingsError(
                f'{AUDIT_SETTING}: device "{path}" (blob): rotate must be "day" or "hour"'
            )
        extra = {"container": options["container"], "rotate": options["rotate"]}
    return AuditDevice(
        path=path,
        type=kind,
        description=description,
        options=dict(declared),
        log_raw=_audit_bool(path, options, "log_raw"),
        hmac_accessor=_audit_bool(path, options, "hmac_accessor"),
        elide_list_responses=_audit_bool(path, options, "elide_list_responses"),
        **extra,  # type: ignore[arg-type]
    )


def _audit_devices(env: Mapping[str, str], storage: StorageSettings) -> tuple[AuditDevice, ...]:
    raw = _get(env, AUDIT_SETTING)
    if raw is None:
        return ()
    try:
        items = json.loads(raw)
    except ValueError:
        raise SettingsError(f"{AUDIT_SETTING} must be a JSON array of devices") from None
    if not isinstance(items, list):
        raise SettingsError(f"{AUDIT_SETTING} must be a JSON array of devices")
    devices = tuple(_audit_device(item, i) for i, item in enumerate(items))
    seen: set[str] = set()
    for device in devices:
        if device.path in seen:
            raise SettingsError(f'{AUDIT_SETTING}: device "{device.path}" is declared twice')
        seen.add(device.path)
        if device.type == "blob" and storage.uses_identity and not storage.blob_service_uri:
            raise SettingsError(
                f'{AUDIT_SETTING}: device "{device.path}" (blob) needs the storage account\'s '
                f"blob endpoint: set {STORAGE_PREFIX}__blobServiceUri"
            )
    return devices


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    seal_key = _seal_key(env)
    seal_key_id = _get(env, "KEYMGMT_SEAL_KEY_ID")
    if seal_key is not None and seal_key_id is not None:
        raise SettingsError("set KEYMGMT_SEAL_KEY (development) or KEYMGMT_SEAL_KEY_ID, not both")
    prefix = _get(env, "KEYMGMT_TABLE_PREFIX") or DEFAULT_TABLE_PREFIX
    if not (prefix.isascii() and prefix.isalnum() and prefix[0].isalpha() and len(prefix) <= 40):
        raise SettingsError(
            "KEYMGMT_TABLE_PREFIX must be 1-40 ASCII letters and digits, starting with a letter"
        )
    ranges = _csv(_get(env, "KEYMGMT_PRIVATE_RANGES"))
    token_default_ttl, token_max_ttl = _token_ttls(env)
    storage = _storage(env)
    return Settings(
        storage=storage,
        table_prefix=prefix,
        seal_key=seal_key,
        seal_key_id=seal_key_id,
        root_token_sha256=_root_token_hash(env),
        default_mounts=_csv(_get(env, "KEYMGMT_DEFAULT_MOUNTS")),
        keyvault_url_overrides=_url_overrides(_get(env, "KEYMGMT_KEYVAULT_URLS")),
        keyvault_ca_bundle=_get(env, "KEYMGMT_KEYVAULT_CA_BUNDLE"),
        keyvault_verify_challenge_resource=_get(env, "KEYMGMT_KEYVAULT_VERIFY_CHALLENGE_RESOURCE")
        not in ("false", "False", "0"),
        managed_identity_client_id=_get(env, "KEYMGMT_MANAGED_IDENTITY_CLIENT_ID"),
        azure_environment=_get(env, "AZURE_ENVIRONMENT"),
        azure_client_id=_get(env, "AZURE_CLIENT_ID"),
        azure_client_secret=_get(env, "AZURE_CLIENT_SECRET"),
        azure_tenant_id=_get(env, "AZURE_TENANT_ID"),
        azure_authority_host=_get(env, "AZURE_AUTHORITY_HOST"),
        azure_ad_resource=_get(env, "AZURE_AD_RESOURCE"),
        private_ranges=ranges or DEFAULT_PRIVATE_RANGES,
        allow_short_rotation=_bool(env, "KEYMGMT_ALLOW_SHORT_ROTATION"),
        disable_foreign_versions=_bool(env, "KEYMGMT_DISABLE_FOREIGN_VERSIONS"),
        max_body_bytes=_int(env, "KEYMGMT_MAX_BODY_BYTES", 1024 * 1024),
        policy_cache_seconds=_int(env, "KEYMGMT_POLICY_CACHE_SECONDS", 5),
        keyvault_read_timeout=_int(env, "KEYMGMT_KEYVAULT_READ_TIMEOUT", 30),
        unknown_import_wait=_int(env, "KEYMGMT_UNKNOWN_IMPORT_WAIT", 90),
        token_default_ttl=token_default_ttl,
        token_max_ttl=token_max_ttl,
        audit_devices=_audit_devices(env, storage),
        audit_write_timeout=_int(env, "KEYMGMT_AUDIT_WRITE_TIMEOUT", 10),
    )


@functools.cache
def get() -> Settings:
    """The process-wide settings, read on first use."""
    return load()


def schedule(name: str, env: Mapping[str, str] | None = None) -> str:
    """A timer's NCRONTAB schedule from its app setting, or the default. Read when the app is
    indexed (the decorators in functions/schedules.py), so it is not part of ``Settings``."""
    defaults = {
        "KEYMGMT_ROTATION_SCHEDULE": DEFAULT_ROTATION_SCHEDULE,
        "KEYMGMT_RECONCILE_SCHEDULE": DEFAULT_RECONCILE_SCHEDULE,
        "KEYMGMT_TOKEN_TIDY_SCHEDULE": DEFAULT_TOKEN_TIDY_SCHEDULE,
    }
    return _get(os.environ if env is None else env, name) or defaults[name]
