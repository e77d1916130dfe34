"""The engine's records and its clock: what the store reads and writes, independent of Table
Storage's entity format (that mapping lives in ``shared/store.py``), and what the engine
answers with. The API renders them in Vault's wire format (``shared/api/``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.seal import Sealed


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class MountSettings:
    """What Vault keeps of a secrets engine mount besides its path, type and description (its
    MountEntry's config, options and flags), as enable and tune set them. TTLs in seconds, 0
    for the system's. Kept and shown as Vault does; keymgmt answers carry no leases, so the
    TTLs change nothing here (docs/mounts.md)."""

    default_lease_ttl: int = 0
    max_lease_ttl: int = 0
    force_no_cache: bool = False
    audit_non_hmac_request_keys: tuple[str, ...] = ()
    audit_non_hmac_response_keys: tuple[str, ...] = ()
    listing_visibility: str = ""  # "" | "unauth" | "hidden"
    passthrough_request_headers: tuple[str, ...] = ()
    allowed_response_headers: tuple[str, ...] = ()
    options: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs
    local: bool = False
    seal_wrap: bool = False
    external_entropy_access: bool = False
    # Auth methods only: the type of token their logins issue ("" = default-service).
    token_type: str = ""


@dataclass(frozen=True)
class Mount:
    name: str
    type: str
    description: str
    uuid: str
    created: dt.datetime
    # "active" | "disabling" (writes refused; see Mounts.disable) | "moving" (writes refused,
    # both ends of a sys/remount; see shared.remount)
    state: str = "active"
    changed: dt.datetime | None = None  # when the state last changed
    settings: MountSettings = MountSettings()
    moving: str = ""  # the migration id while ``moving``
    written: dt.datetime | None = field(default=None, compare=False)  # the storage's Timestamp
    etag: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class KeyRecord:
    mount: str
    name: str
    key_type: str
    latest_version: int
    min_enabled_version: int
    deletion_allowed: bool
    created: dt.datetime
    state: str = "active"  # "active" | "deleting"
    auto_rotate_period: int = 0  # seconds; 0 = no scheduled rotation
    next_rotation_time: dt.datetime | None = None
    rotation_slot: str = ""  # the rotation index entry (opaque to all but the store), "" when none
    kms: tuple[str, ...] = ()  # the KMS providers (by name) it is distributed to
    # This key's incarnation: its versions carry it, so a delete finishing late never
    # touches the versions of a key created again under the same name.
    uid: str = ""
    etag: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class VersionRecord:
    version: int
    creation_time: dt.datetime
    public_key: str | None
    sealed: Sealed | None = None  # present only when read for unsealing


@dataclass(frozen=True)
class KmsRecord:
    """A configured KMS provider: its name in the mount, and its provider type."""

    mount: str
    name: str
    provider: str  # the provider type: a key of shared.providers.PROVIDERS
    key_collection: str
    credentials: Sealed | None
    generation: int
    created: dt.datetime
    etag: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Distribution:
    mount: str
    kms: str  # the KMS provider's name
    key: str
    remote_name: str
    purpose: tuple[str, ...]
    protection: str
    distribution_time: dt.datetime
    versions: dict[int, str]  # engine version → Key Vault version id
    state: str = "active"  # "distributing" | "active" | "removing"
    expiration_period: int = 0  # seconds; 0 = no exp on imported versions
    last_error: str = ""
    # Import lease: one importer per distribution at a time, across instances.
    lease_owner: str = ""
    lease_until: dt.datetime | None = None
    # Imports that got no answer: engine version → when. Not sent again until looked for.
    uncertain: dict[int, dt.datetime] = field(default_factory=dict)
    # Versions imported again after an unknown outcome: a late first try is a duplicate of ours.
    retried: tuple[int, ...] = ()
    # Key Vault versions this engine created twice, disabled and reported once.
    duplicates: tuple[str, ...] = ()
    # The mount name the Key Vault copies' tags carry, when the mount was moved (sys/remount)
    # after they were imported; "" for the mount's own name.
    tag_mount: str = ""
    etag: str | None = field(default=None, compare=False)

    @property
    def tagged_mount(self) -> str:
        """The mount name in this distribution's Key Vault tags (its own, or the former)."""
        return self.tag_mount or self.mount


@dataclass(frozen=True)
class KeyVersions:
    """A key as a read shows it: its record and its enabled versions (public parts only,
    ``min_enabled_version`` to ``latest_version``, ascending)."""

    key: KeyRecord
    versions: tuple[VersionRecord, ...]


@dataclass(frozen=True)
class TokenEntry:
    """A stored service token: Vault's token entry and its lease, named only by salted ids
    ("h" + hex(HMAC-SHA256(salt, value))), so the table never holds a token or an accessor."""

    salted_id: str
    accessor: str  # the salted accessor
    parent: str  # the parent's salted id; "" for an orphan
    policies: tuple[str, ...]
    path: str  # the path that created it: auth/token/create or auth/token/create-orphan
    display_name: str
    meta: Mapping[str, str] | None
    num_uses: int  # uses left; 0 = unlimited
    creation_time: int  # unix seconds
    creation_ttl: int  # the TTL it was created with (seconds; 0 = never expires)
    lease_ttl: int  # the TTL of its lease now: the creation's, then each renewal's
    explicit_max_ttl: int
    period: int
    renewable: bool
    issue_time: dt.datetime
    expire_time: dt.datetime | None  # its own expiry; None = never expires
    # When its parent's chain ends (the earliest expiry of its ancestors), None for none: a
    # child never outlives its parent, and this is how one point read knows it.
    cap: dt.datetime | None = None
    parent_root: bool = False  # the parent is the root token from settings
    last_renewal: dt.datetime | None = None
    expiry_slot: str = ""  # the expiry index entry for ``ends`` (opaque to all but the store)
    type: str = "service"
    entity_id: str = ""
    # A login token's own maximum TTL (its role's token_max_ttl), 0 = the system's.
    max_ttl: int = 0
    bound_cidrs: tuple[str, ...] = ()  # networks it may be used from; () = anywhere
    # What the auth method that issued it keeps for its renewal (mount uuid, role); never shown.
    internal: Mapping[str, str] | None = None
    etag: str | None = field(default=None, compare=False)

    @property
    def ends(self) -> dt.datetime | None:
        """When it stops working: its own expiry or its parent chain's, whichever is first."""
        ends = [t for t in (self.expire_time, self.cap) if t is not None]
        return min(ends) if ends else None

    def alive(self, now: dt.datetime) -> bool:
        ends = self.ends
        return ends is None or now < ends


@dataclass(frozen=True)
class TokenInfo:
    """A token as a request presented it: its stored entry (None for the root token from
    settings), the token itself and its accessor (in memory only, for this request's answer)."""

    id: str
    accessor: str
    display_name: str
    policies: tuple[str, ...]
    path: str  # the path that created it
    type: str = "service"  # "service" (batch tokens are not issued)
    orphan: bool = False
    renewable: bool = False
    ttl: int = 0  # seconds left when it was checked; 0 = never expires
    creation_ttl: int = 0
    lease_ttl: int = 0
    explicit_max_ttl: int = 0
    period: int = 0
    num_uses: int = 0  # uses left after this request's; 0 = unlimited, -1 = this was the last
    creation_time: int = 0
    issue_time: dt.datetime | None = None
    expire_time: dt.datetime | None = None
    last_renewal: dt.datetime | None = None
    entity_id: str = ""
    meta: Mapping[str, str] | None = None
    bound_cidrs: tuple[str, ...] = ()
    entry: TokenEntry | None = field(default=None, repr=False)

    @property
    def from_settings(self) -> bool:
        """Whether it is the root token from settings (it has no entry)."""
        return self.entry is None


@dataclass(frozen=True)
class PolicyRecord:
    """An ACL policy as stored: its name (lower-cased) and text as written."""

    name: str
    text: str
    version: int
    modified: dt.datetime
    etag: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class AuthMount:
    """An enabled auth method (``sys/auth/<path>``): its type, and the uuid its config, roles
    and issued tokens are filed under (so a method enabled again at the same path starts
    empty even if a disable died part-way)."""

    path: str
    type: str  # "jwt" | "azure"
    description: str
    accessor: str  # auth_<type>_<8 hex>, as Vault names mount accessors
    uuid: str
    created: dt.datetime
    state: str = "active"  # "active" | "disabling" (logins refused; see AuthMethods.disable)
    changed: dt.datetime | None = None
    settings: MountSettings = MountSettings()  # enable's config and tune's, as a mount's
    etag: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class AuthItem:
    """A method's config (name ``""``) or one of its roles: the fields as JSON, and its
    secrets (client secrets) sealed apart."""

    mount_uuid: str
    name: str
    settings: Mapping[str, object]
    secret: Sealed | None = None
    etag: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Remount:
    """One ``sys/remount`` (a migration): moving mount ``source`` to ``target``. ``phase``:
    "copying" (the rows are copied to the target, each source row marked or removed once
    copied), "cleaning" (the target is live; the source's leftovers go), "done"."""

    id: str
    source: str
    target: str
    status: str  # "in-progress" | "success" | "failure", Vault's migration status words
    phase: str
    started: dt.datetime
    error: str = ""
    etag: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class WrappedResponse:
    """A response kept for a response-wrapping token (Vault keeps it in the token's cubbyhole):
    the answer's JSON sealed, and what sys/wrapping/lookup shows. Named by the token's salted
    id, so the table never holds the token."""

    salted_id: str
    creation_ttl: int  # seconds
    creation_time: str  # RFC 3339 with nanoseconds, as the wrap_info showed it
    creation_path: str
    response: Sealed
    etag: str | None = field(default=None, compare=False)
