"""Response wrapping, as Vault's (``wrapInCubbyhole``, ``sys/wrapping/*``): an answer asked
for with ``X-Vault-Wrap-TTL`` is kept, sealed, for a single-use wrapping token, and the caller
gets only ``wrap_info``; whoever holds the token unwraps the answer once.

Knows nothing of HTTP but Vault's envelope (the JSON answer it keeps and gives back). The
wrapping token is a token of the token store (``TokenStore.create_wrapping``: policy
``response-wrapping``, one use, the wrap TTL as its TTL and explicit max), so lookups, expiry,
the tidy and revocation treat it as Vault's are treated. The answer lives beside it, in the
token's own partition (``Store.put_wrapped``), sealed under a context naming the token's salted
id, and goes when the token does. Single use comes from the token store: the one use is spent
by a conditional delete of the token's row, so of two concurrent unwraps exactly one gets the
answer. Deliberate differences from Vault are in docs/wrapping.md.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from shared import durations
from shared.errors import EngineError, InvalidRequest, PermissionDenied
from shared.names import MAX_DURATION
from shared.records import TokenInfo, WrappedResponse
from shared.seal import Sealer
from shared.store import Store
from shared.tokens import RESPONSE_WRAPPING_POLICY, TokenStore
from shared.vaultapi import ApiResponse, raw_json

log = logging.getLogger(__name__)

WRAP_TTL_HEADER = "x-vault-wrap-ttl"  # lower case, as ApiRequest holds header names
# The answer's JSON, sealed, must fit one binary property of Table Storage (64 KiB) with the
# seal's nonce and tag: 60 KiB of JSON is far more than any answer of this server.
MAX_WRAPPED_BYTES = 60 * 1024
# The keys of Vault's envelope (logical.HTTPResponse): what is kept and unwrapped. The top-level
# copies of ``data`` some sys/ paths add are not (Vault keeps the plain HTTPResponse too).
ENVELOPE_KEYS = (
    "request_id",
    "lease_id",
    "renewable",
    "lease_duration",
    "data",
    "wrap_info",
    "warnings",
    "auth",
    "mount_type",
)
NOT_VALID = "wrapping token is not valid or does not exist"  # consts.ErrInvalidWrappingToken


class InvalidWrappingToken(InvalidRequest):
    """A token that is not a live wrapping token: 400, as Vault answers."""

    def __init__(self) -> None:
        super().__init__(NOT_VALID)


class WrappingTokenRefused(EngineError):
    """Vault's ``error validating wrapping token: ...`` (403) for a token field that holds no
    token at all."""

    status = 403

    def __init__(self, reason: str) -> None:
        super().__init__(f"error validating wrapping token: {reason}")


def parse_ttl(raw: str | None) -> int:
    """The wrap TTL of an ``X-Vault-Wrap-TTL`` value in seconds, 0 for none (absent, empty or
    zero), as Vault's ``requestWrapInfo`` parses it (``parseutil.ParseDurationSecond``);
    InvalidRequest with Vault's text for a bad or negative one."""
    if raw is None:
        return 0
    text = raw.strip()  # as Go's net/http hands header values over
    if text == "":
        return 0
    prefix = "error parsing X-Vault-Wrap-TTL header: "
    try:
        seconds = durations.parse_seconds(text)
    except InvalidRequest as exc:
        raise InvalidRequest(prefix + str(exc)) from None
    if seconds < 0:
        raise InvalidRequest(prefix + "requested wrap ttl cannot be negative")
    if seconds > MAX_DURATION:
        raise InvalidRequest(
            f"{prefix}requested wrap ttl must be at most {MAX_DURATION // 86400}d "
            f"({MAX_DURATION} seconds)"
        )
    return seconds


def requested_ttl(headers: Mapping[str, str]) -> int:
    """The wrap TTL a request asks for (its headers, names in lower case)."""
    return parse_ttl(headers.get(WRAP_TTL_HEADER))


def _rfc3339_nano(ns: int) -> str:
    """Go's RFC3339Nano in UTC (trailing zeros of the fraction dropped), as wrap_info shows
    creation_time."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def _context(salted_id: str) -> str:
    return f"azure-keymgmt/v1/wrapped-response/{salted_id}"


def is_envelope(body: Any) -> bool:
    """Whether an answer's JSON is Vault's envelope not yet wrapped (what can be wrapped)."""
    return (
        isinstance(body, dict)
        and "request_id" in body
        and "data" in body
        and "auth" in body
        and body.get("wrap_info") is None
    )


def wrapping_envelope(wrap_info: Mapping[str, Any], warnings: Any) -> dict[str, Any]:
    """What the caller of a wrapped request gets: only wrap_info (and the answer's warnings).
    ``request_id`` is empty, as Vault's and OpenBao's are on this answer."""
    return {
        "request_id": "",
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": None,
        "wrap_info": dict(wrap_info),
        "warnings": warnings or None,
        "auth": None,
    }


class Wrapping:
    """Wraps answers, and looks up, unwraps and rewraps wrapping tokens."""

    def __init__(self, store: Store, tokens: TokenStore, sealer: Sealer) -> None:
        self.store = store
        self.tokens = tokens
        self.sealer = sealer

    # -- wrapping ------------------------------------------------------------------------------

    def wrap(self, body: Mapping[str, Any], *, ttl: int, path: str, display: str) -> dict[str, Any]:
        """Keep ``body`` (an envelope) for a new wrapping token; the wrapping envelope."""
        kept = {key: body[key] for key in ENVELOPE_KEYS if key in body}
        response = json.dumps(kept, separators=(",", ":")).encode()
        auth = body.get("auth")
        wrapped_accessor = str(auth.get("accessor") or "") if isinstance(auth, Mapping) else ""
        wrap_info = self._keep(
            response, ttl=ttl, path=path, display=display, wrapped_accessor=wrapped_accessor
        )
        return wrapping_envelope(wrap_info, body.get("warnings"))

    def _keep(
        self, response: bytes, *, ttl: int, path: str, display: str, wrapped_accessor: str = ""
    ) -> dict[str, Any]:
        if len(response) > MAX_WRAPPED_BYTES:
            raise InvalidRequest(
                f"the response is too large to wrap: {len(response)} bytes of JSON, at most "
                f"{MAX_WRAPPED_BYTES}; ask for it without X-Vault-Wrap-TTL"
            )
        created = _rfc3339_nano(time.time_ns())

        def keep(salted_id: str) -> None:
            sealed = self.sealer.seal(response, _context(salted_id))
            self.store.put_wrapped(WrappedResponse(salted_id, ttl, created, path, sealed))

        token = self.tokens.create_wrapping(ttl=ttl, path=path, display=display, before_row=keep)
        log.info("response of %s wrapped, ttl %ds", path, ttl)
        wrap_info: dict[str, Any] = {
            "token": token.id,
            "accessor": token.accessor,
            "ttl": ttl,
            "creation_time": created,
            "creation_path": path,
        }
        if wrapped_accessor:
            wrap_info["wrapped_accessor"] = wrapped_accessor
        return wrap_info

    # -- the sys/wrapping paths ----------------------------------------------------------------

    def _held(self, token: str) -> tuple[TokenInfo, WrappedResponse]:
        """A live wrapping token and what it holds, its use not spent (Vault's
        validateWrappingToken: a lookup, then the policy); InvalidWrappingToken otherwise."""
        try:
            info = self.tokens.lookup(token)
        except PermissionDenied:
            raise InvalidWrappingToken() from None
        if info.policies != (RESPONSE_WRAPPING_POLICY,):
            raise InvalidWrappingToken()
        wrapped = self.store.get_wrapped(self.tokens.salted(token))
        if wrapped is None:
            raise InvalidWrappingToken()
        return info, wrapped

    def _spend(self, token: str) -> None:
        """Spend a wrapping token's one use (a third party's unwrap or rewrap): one caller
        wins; everyone else is told it is not valid."""
        try:
            spent = self.tokens.check(token)
        except PermissionDenied:
            raise InvalidWrappingToken() from None
        if spent.policies != (RESPONSE_WRAPPING_POLICY,):  # replaced meanwhile: not ours
            raise InvalidWrappingToken()

    def valid(self, token: str) -> bool:
        """Whether ``token`` is a live wrapping token holding an answer (its use not spent)."""
        try:
            self._held(token)
        except InvalidWrappingToken:
            return False
        return True

    def lookup(self, token: str) -> dict[str, Any]:
        """sys/wrapping/lookup's data: the token's creation path, time and TTL."""
        _, wrapped = self._held(token)
        return {
            "creation_path": wrapped.creation_path,
            "creation_time": wrapped.creation_time,
            "creation_ttl": wrapped.creation_ttl,
        }

    def unwrap(self, token: str, *, spent: TokenInfo | None = None) -> bytes:
        """The answer ``token`` holds (the envelope's JSON, as it was answered), once.
        ``spent``: the request's own token, whose use the request already spent (the
        wrapping token sent as X-Vault-Token); otherwise the use is spent here."""
        if spent is not None:
            if spent.policies != (RESPONSE_WRAPPING_POLICY,):
                raise InvalidWrappingToken()
            salted = self.tokens.salted(spent.id)
            wrapped = self.store.get_wrapped(salted)
            if wrapped is None:
                raise InvalidWrappingToken()
        else:
            _, wrapped = self._held(token)
            salted = wrapped.salted_id
            self._spend(token)
        response = self.sealer.open(wrapped.response, _context(salted))
        self.store.drop_wrapped(salted)  # the token is gone already: its one use is spent
        return response

    def rewrap(self, token: str, *, ttl: int, display: str) -> dict[str, Any]:
        """A new wrapping token for what ``token`` holds, with its creation path and TTL (or
        ``ttl``, when smaller and set); ``token`` is spent. The new one is made first, so an
        outage part-way leaves the old one working, never the answer lost."""
        _, wrapped = self._held(token)
        response = self.sealer.open(wrapped.response, _context(wrapped.salted_id))
        new_ttl = min(wrapped.creation_ttl, ttl) if ttl else wrapped.creation_ttl
        wrap_info = self._keep(response, ttl=new_ttl, path=wrapped.creation_path, display=display)
        try:
            self._spend(token)
        except InvalidWrappingToken:  # unwrapped or rewrapped meanwhile: it was not ours
            self.tokens.revoke(wrap_info["token"])
            raise
        self.store.drop_wrapped(wrapped.salted_id)
        return wrapping_envelope(wrap_info, None)


def wrapped(
    response: ApiResponse, *, ttl: int, path: str, display: str, service: Any
) -> ApiResponse:
    """``response``, wrapped when the request asked for it (``ttl``) and it is an answer
    Vault wraps: a 200 with the envelope. Errors, 204s and bare answers (sys/health) are not
    wrapped, as in Vault. ``path`` is the request's (creation_path), ``display`` its token's
    display name."""
    if not ttl or response.status != 200:
        return response
    try:
        body = json.loads(response.body)
    except ValueError:
        return response
    if not is_envelope(body):
        return response
    envelope = for_service(service).wrap(body, ttl=ttl, path=path, display=display)
    return raw_json(200, envelope)


def for_service(service: Any) -> Wrapping:
    """The service's wrapping, built from its parts (cheap: it holds no state)."""
    return Wrapping(service.store, service.tokens, service.sealer)
