"""ACL policies as stored (``sys/policy``, ``sys/policies/acl``) and the ACL of a token.

The language and the matching are shared/policy.py's (pure); this module keeps the texts in
the store and builds a token's ACL from them. Every instance caches the parsed policies and
reads them all again, in one range query, once the cache is ``cache_seconds`` old: a request
costs no Table read for its policies under steady traffic (the token's own row is the one point
read; see ``_current``), and a policy written on another instance takes effect here within
``cache_seconds``. A write or delete on this instance takes effect here at once.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace

from shared.errors import ConcurrentChange, InvalidRequest
from shared.names import check_name
from shared.policy import (
    ACL,
    DEFAULT_POLICY,
    RESPONSE_WRAPPING_POLICY,
    RESPONSE_WRAPPING_POLICY_NAME,
    ROOT_POLICY,
    Policy,
    parse,
)
from shared.records import PolicyRecord, utcnow
from shared.store import Store, optimistic

log = logging.getLogger(__name__)

DEFAULT = "default"


@functools.cache
def _built_in_default() -> Policy:
    """The built-in default policy, parsed once per process: at the service's build (the HCL
    parser is built on first use), not at import, which every cold start pays while the host
    indexes the app."""
    return parse(DEFAULT, DEFAULT_POLICY)


@functools.cache
def _built_in_response_wrapping() -> Policy:
    """The policy of response-wrapping tokens: built in, never stored (Vault's is too)."""
    return parse(RESPONSE_WRAPPING_POLICY_NAME, RESPONSE_WRAPPING_POLICY)


MAX_POLICY_TEXT = 16 * 1024  # characters: well inside a Table string property (32K)


def decode_text(value: str) -> str:
    """A policy text, base64-decoded when it is valid standard base64 (Vault's rule: "can be
    base64-encoded to avoid string escaping")."""
    # Go's base64.StdEncoding, which Vault uses, skips line breaks (`base64` wraps at 76).
    text = "".join(value.split())
    try:
        decoded = base64.b64decode(text, validate=True).decode()
    except (binascii.Error, ValueError):
        return value
    return decoded if decoded else value


class Policies:
    def __init__(self, store: Store, cache_seconds: float = 5.0) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._parsed: dict[str, Policy] = {}
        self._versions: dict[str, tuple[int, Policy]] = {}  # name → (stored version, parsed)
        self._loaded_at: float | None = None  # monotonic time of the last full read
        self._refreshing = False
        # One policy's own ACL, by name, with the parsed policy it was built from (a reload
        # parses anew, so a stale entry is told by identity): the audit log's
        # granting_policies asks for each of a token's policies on every request.
        self._single: dict[str, tuple[Policy, ACL]] = {}

    # -- the store ---------------------------------------------------------------------------

    def read(self, name: str) -> PolicyRecord | None:
        """The stored policy; ``default`` is its built-in text until written; ``root`` reads as
        an empty text, as in Vault."""
        name = name.lower()
        if name == ROOT_POLICY:
            return PolicyRecord(ROOT_POLICY, "", 0, utcnow())
        record = self.store.get_policy(name)
        if record is None and name == DEFAULT:
            return PolicyRecord(DEFAULT, DEFAULT_POLICY, 0, utcnow())
        return record

    def exists(self, name: str) -> bool:
        """Whether a policy of that name exists (one point read; built-in ones: none). A name
        no policy could have (see names.POLICY) exists without asking storage: not."""
        try:
            check_name(name, "policy")
        except InvalidRequest:
            return False
        return self.read(name) is not None

    def names(self) -> list[str]:
        """Every policy name, sorted, with ``default`` (always there); ``root`` is not stored."""
        names = {record.name for record in self.store.list_policies()} | {DEFAULT}
        return sorted(names)

    def write(self, name: str, text: str) -> None:
        name = name.lower()
        # The text is checked first, as OpenBao does (handlePoliciesSet before the store).
        if not text.strip():
            raise InvalidRequest("'policy' parameter not supplied or empty")
        if name == ROOT_POLICY:
            raise InvalidRequest('cannot update "root" policy')
        if name == RESPONSE_WRAPPING_POLICY_NAME:  # built in, as OpenBao's
            raise InvalidRequest(f'cannot update "{RESPONSE_WRAPPING_POLICY_NAME}" policy')
        if len(text) > MAX_POLICY_TEXT:
            raise InvalidRequest(
                f"policy is too long: {len(text)} characters, at most {MAX_POLICY_TEXT}"
            )
        parsed = parse(name, text)  # refuses what does not parse, before anything is written

        def attempt() -> int:
            current = self.store.get_policy(name)
            if current is None:
                self.store.put_policy(PolicyRecord(name, text, 1, utcnow()))
                return 1
            self.store.put_policy(
                replace(current, text=text, version=current.version + 1, modified=utcnow())
            )
            return current.version + 1

        version = optimistic(attempt, what=f"policy {name!r}")
        with self._lock:  # applies here at once; the next read of all finds it parsed
            self._parsed = {**self._parsed, name: parsed}
            self._versions = {**self._versions, name: (version, parsed)}

    def delete(self, name: str) -> None:
        name = name.lower()
        if name == ROOT_POLICY:
            raise InvalidRequest('cannot delete "root" policy')
        if name == RESPONSE_WRAPPING_POLICY_NAME:
            raise InvalidRequest(f'cannot delete "{RESPONSE_WRAPPING_POLICY_NAME}" policy')
        if name == DEFAULT:
            raise InvalidRequest("cannot delete default policy")

        def attempt() -> None:
            current = self.store.get_policy(name)
            if current is not None:
                self.store.delete_policy(current)
                if self.store.get_policy(name) is not None:
                    raise ConcurrentChange(f"policy {name!r} changed while it was being deleted")

        optimistic(attempt, what=f"policy {name!r}")
        with self._lock:
            self._parsed = {k: v for k, v in self._parsed.items() if k != name}

    # -- a token's ACL ----------------------------------------------------------------------

    def acl(self, names: Sequence[str]) -> ACL:
        """The ACL of a token holding the policies ``names``. A policy that does not exist
        grants nothing (Vault warns about it when the token is created)."""
        lowered = [name.lower() for name in names]
        if ROOT_POLICY in lowered:
            return ACL.root()
        parsed = self._current()
        return ACL([parsed[name] for name in lowered if name in parsed])

    def single_acl(self, name: str) -> ACL:
        """The ACL of the one policy ``name`` (root's for root; an empty one if it does not
        exist), built once per parsed version of the policy."""
        name = name.lower()
        if name == ROOT_POLICY:
            return ACL.root()
        policy = self._current().get(name)
        if policy is None:
            return ACL([])
        cached = self._single.get(name)
        if cached is not None and cached[0] is policy:
            return cached[1]
        acl = ACL([policy])
        self._single[name] = (policy, acl)  # a race builds it twice: same result
        return acl

    def _current(self) -> dict[str, Policy]:
        """The parsed policies, never older than ``cache_seconds``. Past half that age they
        are read again in the background while requests go on with the ones held, so under
        steady traffic no request waits for the read; past the full age a request reads them
        itself (after an idle spell, or while a background read is stuck)."""
        now = time.monotonic()
        with self._lock:
            age = None if self._loaded_at is None else now - self._loaded_at
            if age is not None and age < self.cache_seconds:
                if age >= self.cache_seconds / 2 and not self._refreshing:
                    self._refreshing = True
                    threading.Thread(target=self._refresh, daemon=True).start()
                return self._parsed
        return self.load()

    def _refresh(self) -> None:
        try:
            self.load()
        except Exception:  # the next request past the full age reads them itself
            log.warning("reading the ACL policies in the background failed", exc_info=True)
        finally:
            with self._lock:
                self._refreshing = False

    def load(self) -> dict[str, Policy]:
        """Read every policy (one range query), parsing only those changed since last time."""
        started = time.monotonic()
        with self._lock:
            known = dict(self._versions)
        parsed: dict[str, Policy] = {DEFAULT: _built_in_default()}
        versions: dict[str, tuple[int, Policy]] = {}
        for record in self.store.list_policies():
            seen = known.get(record.name)
            if seen is not None and seen[0] == record.version:
                policy = seen[1]  # unchanged: not parsed again
            else:
                try:
                    policy = parse(record.name, record.text)
                except InvalidRequest:
                    continue  # stored by a version that took more: it grants nothing now
            parsed[record.name] = policy
            versions[record.name] = (record.version, policy)
        # Last, so a stored policy of that name cannot widen what a wrapping token may do.
        parsed[RESPONSE_WRAPPING_POLICY_NAME] = _built_in_response_wrapping()
        with self._lock:
            self._parsed, self._versions, self._loaded_at = parsed, versions, started
            return parsed

    def forget(self) -> None:
        """Drop the cache (the table was recreated)."""
        with self._lock:
            self._parsed, self._versions, self._loaded_at = {}, {}, None
