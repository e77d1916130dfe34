"""The token store: service tokens as Vault's token store issues, checks, renews and revokes
them, kept in Table Storage under salted ids only.

Knows nothing of HTTP: fields arrive decoded (``shared/api/tokens.py`` declares them) and
whether the caller has ``sudo`` is the API's to say. The rules and texts are Vault's
(``handleCreateCommon``, ``resolveTokenPolicies``, ``framework.CalculateTTL``).

What the table holds (docs/storage.md has the rows):

- a token only as ``"h" + hex(HMAC-SHA256(salt, token))``; the salt is 32 random bytes sealed
  in ``_sys/token-salt``. Its accessor is derived from the token under the salt (so lookups
  by token can show it) and stored only salted too; parents are named by their salted ids.
- a child carries ``cap``, the end of its parent's chain: checking a token is one point read
  of its own row, and a child never works past its parent. A renewal (or an orphaning)
  pushes the new end down the tree; a revocation removes the children first, the token last.
- an expiry index ordered by each token's end, which the tidy timer reads by range.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from shared.durations import human
from shared.errors import ConcurrentChange, EngineError, InvalidRequest, PermissionDenied
from shared.records import TokenEntry, TokenInfo, utcnow
from shared.settings import Settings
from shared.store import ExpiryEntry, Store, optimistic

log = logging.getLogger(__name__)

TOKEN_PREFIX = "hvs."
TOKEN_LENGTH = 24  # random base62 characters after the prefix, as Vault's
ACCESSOR_LENGTH = 24
MAX_TOKEN_LENGTH = 512  # longer is no token of ours: refused before any work
MAX_META_JSON = 16 * 1024  # a token row holds it beside the policies: one Table property each
BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
ROOT_POLICY = "root"
DEFAULT_POLICY = "default"
RESPONSE_WRAPPING_POLICY = "response-wrapping"
NON_ASSIGNABLE_POLICIES = (RESPONSE_WRAPPING_POLICY,)
CREATE_PATH = "auth/token/create"
CREATE_ORPHAN_PATH = "auth/token/create-orphan"
ROOT_PATH = "auth/token/root"
_DISPLAY_NAME = re.compile(r"[^a-zA-Z0-9-]")
_ACCESSOR_CONTEXT = b"azure-keymgmt/v1/token-accessor\x00"


def builtin_policy_exists(name: str) -> bool:
    """Before ACL policies can be written, only Vault's built-in ones exist."""
    return name in (DEFAULT_POLICY, ROOT_POLICY)


# -- Vault's rules, as pure functions ------------------------------------------------------------


def sanitize_policies(policies: Sequence[str], add_default: bool) -> list[str]:
    """Vault's ``policyutil.SanitizePolicies``: trimmed, lower-cased, without empties; ``root``
    stands alone; ``default`` added when asked (never beside ``root``); sorted and unique."""
    cleaned: list[str] = []
    default_found = False
    for policy in policies:
        name = policy.strip().lower()
        if not name:
            continue
        if name == ROOT_POLICY:
            cleaned, default_found = [ROOT_POLICY], True
            break
        default_found = default_found or name == DEFAULT_POLICY
        cleaned.append(name)
    if add_default and (not cleaned or not default_found):
        cleaned.append(DEFAULT_POLICY)
    return sorted(set(cleaned))


def resolve_policies(
    requested: Sequence[str],
    parent: Sequence[str],
    *,
    sudo: bool,
    no_default_policy: bool,
) -> list[str]:
    """A new token's policies (``resolveTokenPolicies`` without roles): none asked for inherits
    the parent's; otherwise a caller without sudo may ask only for a subset of its own, and
    gets ``default`` if it has it; a caller with sudo gets what it asks for and ``default``."""
    add_default = False
    if not requested:
        policies = sanitize_policies(parent, False)
    elif not sudo:
        asked = sanitize_policies(requested, False)
        if not set(asked) <= set(sanitize_policies(parent, False)):
            raise InvalidRequest("child policies must be subset of parent")
        policies = asked
        add_default = not no_default_policy and DEFAULT_POLICY in parent
    else:
        policies = list(requested)
        add_default = not no_default_policy
    final = sanitize_policies(policies, add_default)
    if no_default_policy:
        final = [p for p in final if p != DEFAULT_POLICY]
    for policy in final:
        if policy in NON_ASSIGNABLE_POLICIES:
            raise InvalidRequest(f'cannot assign policy "{policy}"')
    return final


def display_name(name: str) -> str:
    """``token-<name>``, each character outside ``[a-zA-Z0-9-]`` made ``-``, one trailing
    ``-`` trimmed (Vault's ``displayNameSanitize``): ``"My App!"`` → ``token-My-App``."""
    if not name:
        return "token"
    full = _DISPLAY_NAME.sub("-", "token-" + name)
    return full.removesuffix("-")


def calculate_ttl(
    *,
    increment: int,
    backend_ttl: int,
    period: int,
    explicit_max_ttl: int,
    start: int,
    now: int,
    default_ttl: int,
    max_ttl: int,
) -> tuple[int, list[str]]:
    """Vault's ``framework.CalculateTTL`` in whole seconds (``start`` and ``now`` are unix
    seconds): the TTL and the warnings about what capped it."""
    warnings: list[str] = []
    if 0 < explicit_max_ttl < max_ttl:
        max_ttl = explicit_max_ttl
    max_valid: int | None = None
    if period > 0:
        if period > max_ttl:
            warnings.append(
                f'period of "{human(period)}" exceeded the effective max_ttl of '
                f'"{human(max_ttl)}"; period value is capped accordingly'
            )
            period = max_ttl
        ttl = period
        if explicit_max_ttl > 0:
            max_valid = start + explicit_max_ttl
    else:
        ttl = increment or backend_ttl or default_ttl
        max_valid = start + max_ttl
    if max_valid is not None:
        left = max_valid - now
        if left <= 0:
            raise InvalidRequest("past the max TTL, cannot renew")
        if ttl > left:
            warnings.append(
                f'TTL of "{human(ttl)}" exceeded the effective max_ttl of "{human(left)}"; TTL '
                "value is capped accordingly"
            )
            ttl = left
    return ttl, warnings


def address_allowed(remote_address: str, cidrs: Sequence[str]) -> bool:
    """Whether ``remote_address`` (an IP, as the adapter reports it) is in one of ``cidrs``
    (Vault's ``cidrutil.RemoteAddrIsOk``); an unknown or unparseable address is in none."""
    try:
        address = ipaddress.ip_address(remote_address)
    except ValueError:
        return False
    for cidr in cidrs:
        network = ipaddress.ip_network(cidr, strict=False)
        if address.version == network.version and address in network:
            return True
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None and network.version == 4 and mapped in network:
            return True
    return False


# What renewing a login token asks of the auth method that issued it (Vault's pathLoginRenew):
# the role's current (ttl, max_ttl, period), or an InvalidRequest when the role is gone.
LoginRenewal = Callable[[TokenEntry], tuple[int, int, int]]


def expiry_slot(ends: dt.datetime, salted_id: str) -> str:
    return f"{int(ends.timestamp()):012d}:{salted_id}"


def _base62(digest: bytes, length: int) -> str:
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        chars.append(BASE62[digit])
    return "".join(chars)


def _bytes(value: str) -> bytes:
    # A JSON body may carry a lone surrogate: it names no token, but must not break hashing.
    return value.encode("utf-8", "surrogatepass")


def _new_token_id() -> str:
    return TOKEN_PREFIX + "".join(secrets.choice(BASE62) for _ in range(TOKEN_LENGTH))


def _seconds_left(ends: dt.datetime, now: dt.datetime) -> int:
    # Vault: ExpireTime.Sub(time.Now().Round(time.Second)), truncated to whole seconds.
    rounded = (now + dt.timedelta(microseconds=500_000)).replace(microsecond=0)
    return int((ends - rounded).total_seconds())


# -- the store -----------------------------------------------------------------------------------


class TokenStore:
    """Creates, checks, looks up, renews and revokes tokens; ``tidy`` removes expired ones."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        policy_exists: Callable[[str], bool] = builtin_policy_exists,
        clock: Callable[[], dt.datetime] = utcnow,
        login_renewal: LoginRenewal | None = None,
    ) -> None:
        self.store = store
        # Set by service.build once the auth methods exist (the store imports none of them).
        self.login_renewal = login_renewal
        self._root_sha256 = settings.root_token_sha256
        self._default_ttl = settings.token_default_ttl
        self._max_ttl = settings.token_max_ttl
        self._policy_exists = policy_exists
        self._now = clock

    # -- salted names ------------------------------------------------------------------------

    def salted(self, value: str) -> str:
        """Vault's SaltID for a token or an accessor: ``"h" + hex(HMAC-SHA256(salt, value))``."""
        salt, _ = self.store.token_salt()
        return "h" + hmac.new(salt, _bytes(value), hashlib.sha256).hexdigest()

    def accessor_of(self, token: str) -> str:
        """The token's accessor: 24 base62 characters derived from the token under the salt,
        so it need not be stored to be shown, and tells nothing of the token."""
        salt, _ = self.store.token_salt()
        digest = hmac.new(salt, _ACCESSOR_CONTEXT + _bytes(token), hashlib.sha256).digest()
        return _base62(digest, ACCESSOR_LENGTH)

    def _is_root(self, token: str) -> bool:
        if self._root_sha256 is None:
            return False
        digest = hashlib.sha256(_bytes(token)).hexdigest()
        return hmac.compare_digest(digest, self._root_sha256)

    # -- views -------------------------------------------------------------------------------

    def _root_info(self, token: str) -> TokenInfo:
        _, since = self.store.token_salt()  # the token store's start stands for its creation
        return TokenInfo(
            id=token,
            accessor=self.accessor_of(token),
            display_name="root",
            policies=(ROOT_POLICY,),
            path=ROOT_PATH,
            orphan=True,
            creation_time=int(since.timestamp()),
            issue_time=since,
        )

    def _info(
        self, entry: TokenEntry, *, token: str, accessor: str, now: dt.datetime | None = None
    ) -> TokenInfo:
        now = now or self._now()
        expires = entry.expire_time
        return TokenInfo(
            id=token,
            accessor=accessor,
            display_name=entry.display_name,
            policies=entry.policies,
            path=entry.path,
            type=entry.type,
            orphan=entry.parent == "",
            renewable=entry.renewable and expires is not None,
            ttl=0 if expires is None else max(0, _seconds_left(expires, now)),
            creation_ttl=entry.creation_ttl,
            lease_ttl=entry.lease_ttl,
            explicit_max_ttl=entry.explicit_max_ttl,
            period=entry.period,
            num_uses=entry.num_uses,
            creation_time=entry.creation_time,
            issue_time=entry.issue_time,
            expire_time=expires,
            last_renewal=entry.last_renewal,
            entity_id=entry.entity_id,
            meta=entry.meta,
            bound_cidrs=entry.bound_cidrs,
            entry=entry,
        )

    # -- checking a request's token ------------------------------------------------------------

    def check(self, token: str | None, remote_address: str = "") -> TokenInfo:
        """The token a request presents, or PermissionDenied: one point read of its row, plus
        one write for a token with limited uses (its last use removes it). Expired, revoked,
        used-up tokens and children of an ended parent are refused on every instance at once:
        nothing is cached. A token with bound CIDRs is refused from any other address (and
        from an unknown one), before its use is counted."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise PermissionDenied()
        if self._is_root(token):
            return self._root_info(token)
        try:
            return self._use(token, remote_address)
        except _Unknown:
            # Another instance may have recreated a lost table, with a new salt: read it
            # again (at most every token_salt_recheck seconds, on a refusal only).
            if not self.store.reload_token_salt():
                raise
            return self._use(token, remote_address)

    def _use(self, token: str, remote_address: str) -> TokenInfo:
        salted = self.salted(token)

        def use() -> TokenEntry:
            entry = self.store.get_token(salted)
            if entry is None:
                raise _Unknown()
            if not entry.alive(self._now()):
                raise PermissionDenied()
            if entry.bound_cidrs and not address_allowed(remote_address, entry.bound_cidrs):
                raise PermissionDenied()
            if entry.num_uses == 0:
                return entry
            if entry.num_uses == 1:  # the last use: it is gone before the request runs
                self.store.delete_token(entry, conditional=True)
                self._unfile(entry)
                return replace(entry, num_uses=-1)
            return self.store.update_token(replace(entry, num_uses=entry.num_uses - 1))

        entry = optimistic(use, what="the token's use count")
        return self._info(entry, token=token, accessor=self.accessor_of(token))

    # -- create ------------------------------------------------------------------------------

    def create(
        self,
        parent: TokenInfo,
        *,
        sudo: bool,
        orphan_path: bool = False,
        policies: Sequence[str] = (),
        no_default_policy: bool = False,
        meta: Mapping[str, str] | None = None,
        no_parent: bool = False,
        renewable: bool = True,
        ttl: int | None = None,
        lease: int | None = None,
        explicit_max_ttl: int | None = None,
        period: int | None = None,
        display: str = "",
        num_uses: int = 0,
        token_type: str = "",
        token_id: str = "",
        entity_alias: str = "",
    ) -> tuple[TokenInfo, list[str]]:
        """A new service token, child of ``parent`` unless ``orphan_path`` (create-orphan) or
        ``no_parent``; Vault's checks in Vault's order. Returns it and the warnings."""
        if parent.num_uses != 0:
            raise InvalidRequest("restricted use token cannot generate child tokens")
        if token_type == "batch":
            raise InvalidRequest(
                "batch tokens are not supported by this server: create a service token "
                "(type=service, the default)"
            )
        if token_type not in ("", "service"):
            raise InvalidRequest("invalid 'token_type' value")
        if num_uses < 0:
            raise InvalidRequest("number of uses cannot be negative")
        if entity_alias:
            raise InvalidRequest("'entity_alias' is only allowed in combination with token role")
        if meta is not None and len(json.dumps(dict(meta))) > MAX_META_JSON:
            raise InvalidRequest(f"meta is too large: at most {MAX_META_JSON} characters as JSON")
        if token_id and not sudo:
            raise InvalidRequest("root or sudo privileges required to specify token id")
        final = resolve_policies(
            policies, parent.policies, sudo=sudo, no_default_policy=no_default_policy
        )
        if ROOT_POLICY in final and ROOT_POLICY not in parent.policies:
            raise InvalidRequest("root tokens may not be created without parent token being root")
        if no_parent and not sudo:
            raise InvalidRequest("root or sudo privileges required to create orphan token")
        orphan = orphan_path or no_parent
        explicit = explicit_max_ttl or 0
        if explicit < 0:
            raise InvalidRequest("explicit_max_ttl must be positive")
        chosen_period = period or 0
        if chosen_period < 0:
            raise InvalidRequest("period must be positive")
        if chosen_period > 0 and not sudo:
            raise InvalidRequest("root or sudo privileges required to create periodic token")
        chosen_ttl = 0
        if ttl is not None:
            if ttl < 0:
                raise InvalidRequest("ttl must be positive")
            chosen_ttl = ttl
        elif lease is not None:
            if lease < 0:
                raise InvalidRequest("lease must be positive")
            chosen_ttl = lease

        now = self._now()
        start = int(now.timestamp())
        warnings: list[str] = []
        if chosen_period > 0 or chosen_ttl > 0 or ROOT_POLICY not in final:
            chosen_ttl, warnings = calculate_ttl(
                increment=0,
                backend_ttl=chosen_ttl,
                period=chosen_period,
                explicit_max_ttl=explicit,
                start=start,
                now=start,
                default_ttl=self._default_ttl,
                max_ttl=self._max_ttl,
            )
        if chosen_ttl == 0 and explicit > 0:  # root tokens are still bound by it
            chosen_ttl = explicit
        if chosen_ttl == 0:
            if parent.creation_ttl != 0:
                raise InvalidRequest("expiring root tokens cannot create non-expiring root tokens")
            renewable = False
        if token_id:
            self._check_custom_id(token_id)
        new_id = token_id or _new_token_id()
        salted = self.salted(new_id)
        if token_id and (self._is_root(new_id) or self.store.get_token(salted) is not None):
            raise InvalidRequest("cannot create a token with a duplicate ID")

        parent_id = ""
        parent_root = False
        cap: dt.datetime | None = None
        if not orphan:
            if parent.entry is None:
                parent_id, parent_root = self.salted(parent.id), True
            else:
                parent_id, cap = parent.entry.salted_id, parent.entry.ends
        accessor = self.accessor_of(new_id)
        entry = TokenEntry(
            salted_id=salted,
            accessor=self.salted(accessor),
            parent=parent_id,
            parent_root=parent_root,
            policies=tuple(final),
            path=CREATE_ORPHAN_PATH if orphan_path else CREATE_PATH,
            display_name=display_name(display),
            meta=dict(meta) if meta is not None else None,
            num_uses=num_uses,
            creation_time=start,
            creation_ttl=chosen_ttl,
            lease_ttl=chosen_ttl,
            explicit_max_ttl=explicit,
            period=chosen_period,
            renewable=renewable,
            issue_time=now,
            expire_time=now + dt.timedelta(seconds=chosen_ttl) if chosen_ttl else None,
            cap=cap,
        )
        entry = self._write_new(entry)
        for policy in final:
            if not self._policy_exists(policy):
                warnings.append(f'Policy "{policy}" does not exist')
        log.info(
            "token created: %s, policies %s, ttl %ds%s",
            entry.display_name,
            ",".join(final),
            chosen_ttl,
            ", orphan" if orphan else "",
        )
        return self._info(entry, token=new_id, accessor=accessor, now=now), warnings

    @staticmethod
    def _check_custom_id(token_id: str) -> None:
        if token_id.startswith(TOKEN_PREFIX):
            raise InvalidRequest("custom token ID cannot have the 'hvs.' prefix")
        if token_id.startswith("s."):
            raise InvalidRequest("custom token ID cannot have the 's.' prefix")
        if "." in token_id:
            raise InvalidRequest("custom token ID cannot have a '.' in the value")
        if (
            len(token_id) > MAX_TOKEN_LENGTH
            or not token_id.isprintable()
            or token_id.strip() != (token_id)
        ):
            raise InvalidRequest(
                f"custom token ID must be at most {MAX_TOKEN_LENGTH} printable characters, "
                "without surrounding spaces"
            )

    def create_wrapping(
        self, *, ttl: int, path: str, display: str, before_row: Callable[[str], None]
    ) -> TokenInfo:
        """A response-wrapping token (Vault's wrapInCubbyhole): an orphan with the single
        policy ``response-wrapping``, one use, ``ttl`` as its TTL and explicit max, not
        renewable, ``path`` the path whose answer it wraps. ``before_row(salted_id)`` keeps
        the response after the token's expiry entry and before its row, so the tidy finds
        what a create that dies part-way leaves."""
        now = self._now()
        new_id = _new_token_id()
        accessor = self.accessor_of(new_id)
        entry = TokenEntry(
            salted_id=self.salted(new_id),
            accessor=self.salted(accessor),
            parent="",
            policies=(RESPONSE_WRAPPING_POLICY,),
            path=path,
            display_name=display,
            meta=None,
            num_uses=1,
            creation_time=int(now.timestamp()),
            creation_ttl=ttl,
            lease_ttl=ttl,
            explicit_max_ttl=ttl,
            period=0,
            renewable=False,
            issue_time=now,
            expire_time=now + dt.timedelta(seconds=ttl),
        )
        entry = self._write_new(entry, before_row=before_row)
        return self._info(entry, token=new_id, accessor=accessor, now=now)

    def _write_new(
        self, entry: TokenEntry, *, before_row: Callable[[str], None] | None = None
    ) -> TokenEntry:
        """Write a new token's rows, each kind before what points to it: its expiry entry, its
        place among its parent's children, its accessor, then its own row (from here it
        works). A create that dies part-way leaves index rows that name no token, which the
        tidy and revocations remove. Then the parent is read again: a parent revoked (or
        renewed) meanwhile was either seen by the revocation's scan of its children, or is
        seen here."""
        ends = entry.ends
        if ends is not None:
            entry = replace(entry, expiry_slot=expiry_slot(ends, entry.salted_id))
            self.store.put_token_expiry(self._expiry_entry(entry))
        linked = bool(entry.parent) and not entry.parent_root
        if linked:
            self.store.add_token_child(entry.parent, entry.salted_id)
        self.store.put_token_accessor(entry.accessor, entry.salted_id)
        if before_row is not None:
            before_row(entry.salted_id)
        try:
            entry = self.store.create_token(entry)
        except ConcurrentChange:
            raise InvalidRequest("cannot create a token with a duplicate ID") from None
        if linked:
            parent = self.store.get_token(entry.parent)
            if parent is None or not parent.alive(self._now()):
                self._revoke_tree(entry.salted_id)
                raise PermissionDenied()
            if parent.ends != entry.cap:
                self._refresh_cap(entry.salted_id, entry.parent)
                entry = self.store.get_token(entry.salted_id) or entry
        return entry

    @staticmethod
    def _expiry_entry(entry: TokenEntry) -> ExpiryEntry:
        return ExpiryEntry(entry.expiry_slot, entry.salted_id, entry.accessor, entry.parent)

    # -- login -------------------------------------------------------------------------------

    def login(
        self,
        *,
        path: str,
        policies: Sequence[str],
        no_default_policy: bool,
        display: str,
        meta: Mapping[str, str],
        internal: Mapping[str, str],
        ttl: int,
        max_ttl: int,
        explicit_max_ttl: int,
        period: int,
        num_uses: int,
        bound_cidrs: Sequence[str],
        entity_id: str,
        file_under: Callable[[str], None],
        still_valid: Callable[[], bool],
    ) -> tuple[TokenInfo, list[str]]:
        """The orphan service token a successful login gets (Vault's LoginCreateToken): the
        role's policies (+ ``default``), TTL by CalculateTTL from the role's TTLs under the
        system maximum. ``file_under(salted_id)`` records it with its method before it
        exists; ``still_valid()`` is asked after: a method disabled meanwhile takes the token
        back (the disable lists what was filed, so no token outlives its method)."""
        final = sanitize_policies(policies, not no_default_policy)
        if no_default_policy:
            final = [p for p in final if p != DEFAULT_POLICY]
        for policy in final:
            if policy in NON_ASSIGNABLE_POLICIES or policy == ROOT_POLICY:
                raise InvalidRequest(f'cannot assign policy "{policy}"')
        if len(json.dumps(dict(meta))) > MAX_META_JSON:
            raise InvalidRequest(
                f"token metadata is too large: at most {MAX_META_JSON} characters as JSON "
                "(check the role's claim_mappings)"
            )
        now = self._now()
        start = int(now.timestamp())
        chosen_ttl, warnings = calculate_ttl(
            increment=0,
            backend_ttl=ttl,
            period=period,
            explicit_max_ttl=explicit_max_ttl,
            start=start,
            now=start,
            default_ttl=self._default_ttl,
            max_ttl=_effective_max(max_ttl, self._max_ttl),
        )
        new_id = _new_token_id()
        salted = self.salted(new_id)
        accessor = self.accessor_of(new_id)
        entry = TokenEntry(
            salted_id=salted,
            accessor=self.salted(accessor),
            parent="",
            policies=tuple(final),
            path=path,
            display_name=display,
            meta=dict(meta),
            num_uses=num_uses,
            creation_time=start,
            creation_ttl=chosen_ttl,
            lease_ttl=chosen_ttl,
            explicit_max_ttl=explicit_max_ttl,
            period=period,
            renewable=True,
            issue_time=now,
            expire_time=now + dt.timedelta(seconds=chosen_ttl),
            entity_id=entity_id,
            max_ttl=max_ttl,
            bound_cidrs=tuple(bound_cidrs),
            internal=dict(internal),
        )
        file_under(salted)
        entry = self._write_new(entry)
        if not still_valid():
            self._revoke_tree(salted)
            raise PermissionDenied()
        # No warning for a policy that does not exist: Vault's logins give none.
        log.info(
            "login token created: %s, policies %s, ttl %ds", display, ",".join(final), chosen_ttl
        )
        return self._info(entry, token=new_id, accessor=accessor, now=now), warnings

    def revoke_salted(self, salted_ids: Sequence[str]) -> None:
        """Revoke tokens by their salted ids (an auth method being disabled)."""
        for salted in salted_ids:
            self._revoke_tree(salted)

    # -- lookup ------------------------------------------------------------------------------

    def lookup(self, token: str) -> TokenInfo:
        """Another token, by the token itself (its uses are not counted): PermissionDenied
        ``bad token`` for one that does not work."""
        if self._is_root(token):
            return self._root_info(token)
        entry = self._live(self.salted(token)) if len(token) <= MAX_TOKEN_LENGTH else None
        if entry is None:
            raise PermissionDenied("bad token")
        return self._info(entry, token=token, accessor=self.accessor_of(token))

    def lookup_accessor(self, accessor: str) -> TokenInfo:
        """A token by its accessor; the answer has no token id."""
        entry = self._by_accessor(accessor)
        if entry is None:
            raise _multi("invalid accessor")
        return self._info(entry, token="", accessor=accessor)

    def _live(self, salted: str) -> TokenEntry | None:
        entry = self.store.get_token(salted)
        return entry if entry is not None and entry.alive(self._now()) else None

    def _by_accessor(self, accessor: str) -> TokenEntry | None:
        if not accessor:
            raise _multi("missing accessor")
        if len(accessor) > MAX_TOKEN_LENGTH:
            return None
        salted = self.store.token_by_accessor(self.salted(accessor))
        return None if salted is None else self._live(salted)

    # -- renew -------------------------------------------------------------------------------

    def renew(self, token: TokenInfo, increment: int) -> tuple[TokenInfo, list[str]]:
        """Extend a token's lease (Vault's RenewToken): by ``increment`` seconds, or by its
        last TTL when 0, within its explicit max TTL and the maximum TTL from its creation
        (a periodic token: by its period). Its children's caps follow it down the tree."""
        if token.entry is None or token.expire_time is None:
            raise InvalidRequest("lease is not renewable")
        salted = token.entry.salted_id
        warnings: list[str] = []
        ended: list[dt.datetime | None] = []  # its end before the renewal that won

        def attempt() -> TokenEntry:
            entry = self._live(salted)
            if entry is None:
                raise InvalidRequest("token not found")
            if entry.expire_time is None or not entry.renewable:
                raise InvalidRequest("lease is not renewable")
            ended[:] = [entry.ends]
            now = self._now()
            backend_ttl, max_ttl, period = entry.lease_ttl, entry.max_ttl, entry.period
            if entry.internal is not None and self.login_renewal is not None:
                # A login token: its method checks the role again and says the TTLs now.
                backend_ttl, max_ttl, period = self.login_renewal(entry)
            ttl, notes = calculate_ttl(
                increment=increment,
                backend_ttl=backend_ttl,
                period=period,
                explicit_max_ttl=entry.explicit_max_ttl,
                start=int(entry.issue_time.timestamp()),
                now=int(now.timestamp()),
                default_ttl=self._default_ttl,
                max_ttl=_effective_max(max_ttl, self._max_ttl),
            )
            warnings[:] = notes
            renewed = replace(
                entry,
                lease_ttl=ttl,
                max_ttl=max_ttl,
                period=period,
                expire_time=now + dt.timedelta(seconds=ttl),
                last_renewal=now,
            )
            return self._save_ends(entry, renewed)

        entry = optimistic(attempt, what="the token")
        if [entry.ends] != ended:
            self._push_down(salted)
        return self._info(entry, token=token.id, accessor=token.accessor), warnings

    def resolve(self, token: str) -> TokenInfo:
        """A token named in a request body, for renew: ``token not found`` if it does not
        work."""
        if self._is_root(token):
            return self._root_info(token)
        entry = self._live(self.salted(token)) if len(token) <= MAX_TOKEN_LENGTH else None
        if entry is None:
            raise InvalidRequest("token not found")
        return self._info(entry, token=token, accessor=self.accessor_of(token))

    def resolve_accessor(self, accessor: str) -> TokenInfo:
        """A token by its accessor, for renew-accessor (its id stays unknown)."""
        entry = self._by_accessor(accessor)
        if entry is None:
            raise _multi("invalid accessor")
        return self._info(entry, token="", accessor=accessor)

    # -- revoke ------------------------------------------------------------------------------

    def revoke(self, token: str) -> None:
        """Revoke a token and all its descendants; one that does not exist is no error."""
        if self._is_root(token):
            raise _root_stays()
        if len(token) <= MAX_TOKEN_LENGTH:
            self._revoke_tree(self.salted(token))

    def revoke_self(self, token: TokenInfo) -> None:
        if token.entry is None:
            raise _root_stays()
        self._revoke_tree(token.entry.salted_id)

    def revoke_accessor(self, accessor: str) -> bool:
        """Revoke the token an accessor names, and its descendants; False if there is none."""
        if not accessor:
            raise _multi("missing accessor")
        if len(accessor) > MAX_TOKEN_LENGTH:
            return False
        salted_accessor = self.salted(accessor)
        salted = self.store.token_by_accessor(salted_accessor)
        if salted is None:
            return False
        if self._live(salted) is None:  # gone or expired: what it left goes too
            self._revoke_tree(salted)
            self.store.drop_token_accessor(salted_accessor)
            return False
        self._revoke_tree(salted)
        return True

    def revoke_orphan(self, token: str) -> None:
        """Revoke a token alone: its children live on as orphans (their own TTLs stand)."""
        if self._is_root(token):
            raise _root_stays()
        salted = self.salted(token) if len(token) <= MAX_TOKEN_LENGTH else ""
        entry = self._live(salted) if salted else None
        if entry is None:
            raise InvalidRequest("token to revoke not found")
        for child in self.store.token_children(salted):
            self._orphan(child, salted)
        self._remove(salted, None)
        # Children it created meanwhile: a token being revoked creates none.
        for child in self.store.token_children(salted):
            self._revoke_tree(child, parent=salted)

    def _revoke_tree(self, salted: str, *, parent: str | None = None) -> None:
        """Children first, the token itself last, so a revocation that dies part-way leaves
        the token working (the caller saw no success and may retry), never a child whose
        parent is gone. After a token's row is gone its children are listed again: one
        created meanwhile read the parent after writing itself, so it either saw the parent
        gone (and removed itself) or is found here."""
        stack: list[tuple[str, str | None, bool]] = [(salted, parent, False)]
        while stack:
            current, above, expanded = stack.pop()
            if not expanded:
                stack.append((current, above, True))
                stack.extend((c, current, False) for c in self.store.token_children(current))
                continue
            if self._remove(current, above):
                stack.extend((c, current, False) for c in self.store.token_children(current))

    def _remove(self, salted: str, parent: str | None) -> bool:
        """Remove a token's rows (its own first: from then on it is refused), and its entry
        among ``parent``'s children. A token whose row names another parent than the one
        whose children listed it is not touched (the index row was stale). Whether a row
        was removed."""
        entry = self.store.get_token(salted)
        removed = False
        if entry is not None and (parent is None or entry.parent == parent):
            self.store.delete_token(entry)
            self.store.drop_token_accessor(entry.accessor)
            if entry.parent and not entry.parent_root:
                self.store.drop_token_child(entry.parent, salted)
            if entry.policies == (RESPONSE_WRAPPING_POLICY,):
                self.store.drop_wrapped(salted)  # the response it held goes with it
            if entry.expiry_slot:
                self.store.drop_token_expiry(entry.expiry_slot)
            self._unfile(entry)
            removed = True
        if parent is not None:
            self.store.drop_token_child(parent, salted)
        return removed

    def _unfile(self, entry: TokenEntry) -> None:
        """A login token that ends (revoked, expired, used up) leaves its method's index."""
        mount_uuid = (entry.internal or {}).get("mount_uuid")
        if mount_uuid:
            self.store.drop_auth_tokens(mount_uuid, [entry.salted_id])

    def _orphan(self, child: str, parent: str) -> None:
        """Make a child an orphan: no parent, no cap; its own children follow its new end."""

        def attempt() -> bool:
            entry = self.store.get_token(child)
            if entry is None or entry.parent != parent:
                return False
            saved = self._save_ends(entry, replace(entry, parent="", parent_root=False, cap=None))
            return saved.ends != entry.ends

        moved = optimistic(attempt, what="a child token")
        self.store.drop_token_child(parent, child)
        if moved:
            self._push_down(child)

    # -- ends: caps down the tree, the expiry index ----------------------------------------

    def _save_ends(self, before: TokenEntry, after: TokenEntry) -> TokenEntry:
        """Write ``after`` over ``before`` (ETag-conditioned). When its end moved, its new
        expiry entry is written first and the old one removed after: a write that loses its
        race leaves only a stale entry, which the tidy recognises and removes."""
        ends = after.ends
        slot = expiry_slot(ends, after.salted_id) if ends is not None else ""
        after = replace(after, expiry_slot=slot)
        if slot and slot != before.expiry_slot:
            self.store.put_token_expiry(self._expiry_entry(after))
        saved = self.store.update_token(after)
        if before.expiry_slot and before.expiry_slot != slot:
            self.store.drop_token_expiry(before.expiry_slot)
        return saved

    def _push_down(self, salted: str) -> None:
        """A token's end moved: its children's caps follow, and theirs' children's, as far
        as an end moves."""
        stack = [salted]
        while stack:
            parent = stack.pop()
            for child in self.store.token_children(parent):
                if self._refresh_cap(child, parent):
                    stack.append(child)

    def _refresh_cap(self, child: str, parent: str) -> bool:
        """Set a child's cap to its parent's end as stored now (both read afresh, so racing
        renewals settle on the last); whether the child's own end moved."""

        def attempt() -> bool:
            entry = self.store.get_token(child)
            if entry is None or entry.parent != parent or entry.parent_root:
                return False
            above = self.store.get_token(parent)
            if above is None:  # being revoked: the revocation removes the child
                return False
            if above.ends == entry.cap:
                return False
            saved = self._save_ends(entry, replace(entry, cap=above.ends))
            return saved.ends != entry.ends

        return optimistic(attempt, what="a child token")

    # -- tidy --------------------------------------------------------------------------------

    def tidy(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """Remove tokens that ended (with their descendants and index rows) and what dead
        creates or revocations left: reads only the expiry index entries that are due. Each
        entry alone: one that fails is counted and the rest go on."""
        now = now or self._now()
        failures: list[str] = []

        def tampered(exc: Exception) -> None:
            failures.append(str(exc))

        due = self.store.due_token_expiries(now, on_tampered=tampered)
        counts = {"revoked": 0, "leftovers": 0, "stale": 0, "extended": 0, "not_yet": 0}
        failed = len(failures)
        for item in due:
            try:
                counts[self._tidy_one(item, now)] += 1
            except EngineError as exc:
                failed += 1
                failures.append(f"expiry entry {item.slot}: {exc}")
            except Exception as exc:
                failed += 1
                failures.append(f"expiry entry {item.slot}: internal error ({type(exc).__name__})")
                log.exception("tidy of the token expiry entry %s failed", item.slot)
        return {"due": len(due), **counts, "failed": failed, "failures": failures[:50]}

    def _tidy_one(self, item: ExpiryEntry, now: dt.datetime) -> str:
        entry = self.store.get_token(item.token)
        if entry is None:  # revoked, used up, or a create that died before its row
            self.store.drop_wrapped(item.token)  # a used-up wrapping token's, if it had one
            self.store.drop_token_accessor(item.accessor)
            if item.parent:
                self.store.drop_token_child(item.parent, item.token)
            self.store.drop_token_expiry(item.slot)
            return "leftovers"
        if entry.expiry_slot != item.slot:  # its end moved since (renewed, capped anew)
            self.store.drop_token_expiry(item.slot)
            return "stale"
        if entry.alive(now):
            return "not_yet"
        own_end = entry.expire_time
        if entry.parent and not entry.parent_root and (own_end is None or own_end > now):
            # Only its parent's chain ended: unless a renewal's push-down died, it did.
            if self._refresh_cap(entry.salted_id, entry.parent):
                fresh = self.store.get_token(entry.salted_id)
                if fresh is not None and fresh.alive(now):
                    return "extended"
        self._revoke_tree(entry.salted_id)
        return "revoked"


def _effective_max(own: int, system: int) -> int:
    """A token's maximum TTL: its own (a role's token_max_ttl) when set and below the
    system's, else the system's (CalculateTTL's rule for a backend max)."""
    return own if 0 < own < system else system


class _Unknown(PermissionDenied):
    """No row for the token presented."""


def _root_stays() -> InvalidRequest:
    return InvalidRequest(
        "the root token from settings cannot be revoked: remove KEYMGMT_ROOT_TOKEN (or "
        "KEYMGMT_ROOT_TOKEN_SHA256) from the app settings to retire it"
    )


def _multi(message: str) -> InvalidRequest:
    """Vault's text for errors its token store raises as StatusBadRequest (a multierror)."""
    return InvalidRequest(f"1 error occurred:\n\t* {message}\n\n")
