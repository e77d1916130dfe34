"""Vault's HTTP conventions, in one place: body and field parsing, envelopes, errors, lists.

Framework-neutral: the adapters in ``functions/`` turn a trigger's request into ``ApiRequest``
and ``ApiResponse`` back into the trigger's response. Field parsing follows Vault's
``sdk/framework`` weak decoding, because the CLI sends every value as a string.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import math
import re
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from shared.errors import EngineError, InvalidRequest, PayloadTooLarge
from shared.names import MAX_DURATION

JSON = "application/json"


@dataclass(frozen=True)
class ApiRequest:
    method: str  # upper case; LIST when a list was asked for with the verb
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    # The client's address as the platform's front end reports it (the adapter fills it in);
    # "" when unknown. Used for token_bound_cidrs and the audit log's remote_address.
    remote_address: str = ""
    # The path as sent, after /v1/ and percent-decoded ("" when the adapter does not know
    # it): whether it ends in "/" matters to Vault's router (shared.api.generic).
    path: str = ""

    @property
    def token(self) -> str | None:
        # Surrounding whitespace is not part of a token, on either side (as Vault trims it).
        token = self.headers.get("x-vault-token", "").strip()
        if token:
            return token
        # OpenBao's getTokenFromReq: only "Bearer " exactly, case and the one space as RFC
        # 6750 writes it; "bearer x" or "Bearer\tx" is no token (OpenBao answers 403).
        auth = self.headers.get("authorization", "").strip()
        if auth.startswith("Bearer ") and auth[len("Bearer ") :].strip():
            return auth[len("Bearer ") :].strip()
        return None


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


# -- responses ---------------------------------------------------------------------------------


def _json_response(status: int, payload: Any) -> ApiResponse:
    return ApiResponse(status, json.dumps(payload).encode(), {"Content-Type": JSON})


# The id of the request being handled, set by handle(): the answer's request_id is the id its
# audit entries carry (shared.audit), as in Vault.
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "keymgmt_request_id", default=None
)


class Ignored(str):
    """The warning that a request sent fields its path does not declare. As in Vault's
    framework it goes on an answer the handler gives, never alone: a write that answers
    nothing else answers 204 and drops it (sdk/framework/backend.go HandleRequest)."""


def _ordered(warnings: Sequence[str]) -> list[str]:
    """The handler's own warnings first, then the ignored-fields one, as Vault adds them."""
    return [w for w in warnings if not isinstance(w, Ignored)] + [
        w for w in warnings if isinstance(w, Ignored)
    ]


def envelope(data: Any, warnings: Sequence[str] | None = None) -> dict[str, Any]:
    return {
        "request_id": REQUEST_ID.get() or str(uuid.uuid4()),
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": data,
        "wrap_info": None,
        "warnings": _ordered(warnings) if warnings else None,
        "auth": None,
    }


def ok(data: Mapping[str, Any], warnings: Sequence[str] | None = None) -> ApiResponse:
    return _json_response(200, envelope(dict(data), warnings))


def authenticated(auth: Mapping[str, Any], warnings: Sequence[str] | None = None) -> ApiResponse:
    """An answer that carries a token (create, renew, a login): the envelope with ``data``
    null and the token in ``auth`` (its TTL there; the envelope's own lease is empty)."""
    payload = envelope(None, warnings)
    payload["auth"] = dict(auth)
    return _json_response(200, payload)


def written(warnings: Sequence[str] | None = None) -> ApiResponse:
    """A write's answer: 204, or 200 with only warnings when the handler has something to
    say. The ignored-fields warning alone is not that: Vault answers 204 and drops it."""
    if warnings and not all(isinstance(w, Ignored) for w in warnings):
        return _json_response(200, envelope(None, warnings))
    return ApiResponse(204)


def listing(names: Sequence[str], warnings: Sequence[str] | None = None) -> ApiResponse:
    if not names:
        return not_found()
    return ok({"keys": sorted(names)}, warnings)


def not_found() -> ApiResponse:
    return _json_response(404, {"errors": []})


def error(status: int, *messages: str) -> ApiResponse:
    return _json_response(status, {"errors": list(messages)})


def from_exception(exc: EngineError) -> ApiResponse:
    if exc.status == 404 and not exc.messages:
        return not_found()
    return error(exc.status, *(exc.messages or [type(exc).__name__]))


def raw_json(status: int, payload: Any) -> ApiResponse:
    """A non-enveloped JSON answer (sys/health and friends answer bare objects)."""
    return _json_response(status, payload)


NAMESPACE_HEADER = "X-Vault-Namespace"


def finished(request: ApiRequest, response: ApiResponse) -> ApiResponse:
    """The headers OpenBao's HTTP handler puts on every answer (wrapGenericHandler):
    ``Cache-Control: no-store``, and the request's namespace header echoed when it sent one.
    A response's own headers win."""
    headers = {"Cache-Control": "no-store"}
    namespace = request.headers.get(NAMESPACE_HEADER.lower(), "")
    if namespace:
        headers[NAMESPACE_HEADER] = namespace
    headers.update(response.headers)
    return dataclasses.replace(response, headers=headers)


# -- request parsing ---------------------------------------------------------------------------

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse_go_bool(value: str, name: str) -> bool:
    """Go's strconv.ParseBool, which Vault uses for ``?list=``."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidRequest(f"{name}: invalid boolean value; use true or false")


def is_list(request: ApiRequest) -> bool:
    if request.method == "LIST":
        return True
    raw = request.query.get("list")
    if request.method == "GET" and raw is not None:
        return parse_go_bool(raw, "list")
    return False


def operation(request: ApiRequest) -> str:
    """Vault's logical operation: read, list, update (POST/PUT), delete."""
    if is_list(request):
        return "list"
    method = request.method
    if method == "GET":
        return "read"
    if method == "HEAD":
        # OpenBao's HeaderOperation, which no logical path serves (405); sys/health, a path
        # outside its router, answers HEAD as GET (PathSpec.methods).
        return "header"
    if method in ("POST", "PUT"):
        return "update"
    if method == "DELETE":
        return "delete"
    return method.lower()


MAX_JSON_DEPTH = 32  # the deepest body any path takes is 2 levels (credentials as an object)


class _NotFinite(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotFinite(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite("number out of range")
    return value


def _depth(value: Any) -> int:
    """How deeply ``value`` nests (iteratively: a deep body must not exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_body(request: ApiRequest, max_bytes: int) -> dict[str, Any]:
    """The body as a dict: a JSON object, ``null`` or empty (→ {}), or a form (→ strings).
    Numbers must be finite and nesting shallow; nothing of the body is repeated in errors."""
    body = request.body
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"request body too large: {len(body)} bytes, limit {max_bytes}")
    text = body.strip()
    if not text:
        return {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(text.decode(), keep_blank_values=True, strict_parsing=True))
        except (UnicodeDecodeError, ValueError):
            raise InvalidRequest("request body is not a valid form") from None
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise InvalidRequest(
            f"failed to parse JSON input: nested more than {MAX_JSON_DEPTH} levels deep"
        ) from None
    except _NotFinite:
        raise InvalidRequest(
            "failed to parse JSON input: numbers must be finite (NaN, Infinity and "
            "out-of-range numbers are refused)"
        ) from None
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("failed to parse JSON input: request body is not valid JSON") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")
        raise InvalidRequest(f"request body must be a JSON object, got {kind}")
    if _depth(value) > MAX_JSON_DEPTH:
        raise InvalidRequest(
            f"failed to parse JSON input: nested more than {MAX_JSON_DEPTH} levels deep"
        )
    return value


# -- weak field decoding (Vault's mapstructure.WeakDecode) -------------------------------------


# Validation messages name the field and what it takes, never the value sent: a value may be a
# secret sent in the wrong field or with the wrong type.


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else "a value of another type"


MAX_INT = 2**63 - 1  # what Table Storage's Int64 holds


def weak_int(value: Any, name: str) -> int:
    result: int | None = None
    if isinstance(value, bool):
        result = int(value)
    elif isinstance(value, int):
        result = value
    elif isinstance(value, float) and value.is_integer():
        result = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0
        if len(text) <= 20:
            try:
                result = int(text, 10)
            except ValueError:
                result = None
    if result is None:
        raise InvalidRequest(
            f"Field validation failed: {name} must be an integer, got {_kind(value)}"
        )
    if not -MAX_INT <= result <= MAX_INT:
        raise InvalidRequest(f"Field validation failed: {name} is out of range")
    return result


def weak_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return False
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise InvalidRequest(
        f"Field validation failed: {name} must be true or false, got {_kind(value)}"
    )


MAX_STRING = 1024  # the longest value of any string field, unless the field says otherwise


def weak_str(value: Any, name: str, max_length: int = MAX_STRING) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = str(value)
    else:
        raise InvalidRequest(
            f"Field validation failed: {name} must be a string, got {_kind(value)}"
        )
    if len(text) > max_length:
        raise InvalidRequest(
            f"Field validation failed: {name} is too long: {len(text)} characters, at most "
            f"{max_length}"
        )
    return text


def comma_list(value: Any, name: str) -> list[str]:
    """Vault's TypeCommaStringSlice: ``"a,b"`` or ``["a", "b"]``; items trimmed."""
    if value is None:
        return []
    if isinstance(value, str):
        items = weak_str(value, name).split(",") if value.strip() else []
    elif isinstance(value, list):
        if len(value) > MAX_LIST:
            raise InvalidRequest(f"Field validation failed: {name} has more than {MAX_LIST} items")
        items = []
        for item in value:
            items.extend(comma_list(weak_str(item, name), name))
    else:
        raise InvalidRequest(
            f"Field validation failed: {name} must be a comma-separated string or a list, "
            f"got {_kind(value)}"
        )
    result = [item.strip() for item in items if item.strip()]
    if len(result) > MAX_LIST:
        raise InvalidRequest(f"Field validation failed: {name} has more than {MAX_LIST} items")
    return result


MAX_LIST = 64


def kv_pairs(value: Any, name: str) -> dict[str, str]:
    """Vault's TypeKVPairs: a JSON object, a list of ``"k=v"``, or one ``"k=v"`` string.
    Errors name keys, never values (these are credentials)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        pairs = list(value.items())
    else:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise InvalidRequest(
                f"Field validation failed: {name} must be key=value pairs "
                '(an object, a list of "k=v" strings, or one "k=v" string), got '
                f"{_kind(value)}"
            )
        pairs = []
        for item in items:
            if not isinstance(item, str):
                raise InvalidRequest(
                    f'Field validation failed: {name} must hold "key=value" strings, got '
                    f"{_kind(item)}"
                )
            key, sep, val = item.partition("=")
            if not sep or not key.strip():
                raise InvalidRequest(f'Field validation failed: {name}: an item is not "key=value"')
            pairs.append((key.strip(), val))
    if len(pairs) > MAX_LIST:
        raise InvalidRequest(f"Field validation failed: {name} has more than {MAX_LIST} pairs")
    result: dict[str, str] = {}
    for key, val in pairs:
        key = str(key)
        shown = (
            key
            if len(key) <= 64 and key.isprintable()
            else key[:64].encode("unicode_escape").decode() + "..."
        )
        result[key] = weak_str(val, f"{name}.{shown}")
    return result


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
}


def duration_seconds(value: Any, name: str) -> int:
    """A Vault duration: seconds as a number or string, or ``"24h"``, ``"30d"``, ``"1h30m"``;
    at most MAX_DURATION, so every date it yields and every stored Int64 is in range."""
    seconds: float | None = None
    if isinstance(value, bool):
        seconds = None
    elif isinstance(value, (int, float)):
        seconds = value
    elif isinstance(value, str) and len(value) <= 64:
        text = value.strip()
        if text == "":
            return 0
        if text.isdigit():
            seconds = int(text)
        else:
            pos, total = 0, 0.0
            for match in _DURATION.finditer(text):
                if match.start() != pos:
                    break
                total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
                pos = match.end()
            if pos == len(text) and pos > 0:
                seconds = total
    if seconds is None or (isinstance(seconds, float) and not math.isfinite(seconds)):
        raise InvalidRequest(
            f"Field validation failed: {name}: invalid duration; use seconds or units like "
            "24h, 30d, 1h30m"
        )
    if abs(seconds) > MAX_DURATION:
        raise InvalidRequest(
            f"Field validation failed: {name} must be at most {MAX_DURATION // 86400}d "
            f"({MAX_DURATION} seconds)"
        )
    return int(seconds)


def accepted(value: Any, name: str) -> Any:
    """The decoder of a field accepted for compatibility and otherwise ignored: any value."""
    return value


_ABSENT: Any = object()  # FieldData.get without a caller's default


@dataclass(frozen=True)
class Field:
    """One declared body field of a path, as Vault's framework declares them (FieldSchema).

    ``FieldData`` enforces the keyword options, so handlers get values they can use as they
    are: ``default`` when the field is absent (or null); ``allowed``, the values the decoded
    value (each item, for a list) must be one of; ``minimum``, the least a decoded number may
    be; ``required``, that the field must be sent. ``takes`` says in a few words what the
    field takes, for the messages of ``required`` and ``minimum`` (derived when empty).
    Messages name the field and what it takes, never the value sent.
    """

    name: str
    decode: Callable[[Any, str], Any]
    description: str = ""
    _: KW_ONLY
    default: Any = None
    allowed: Collection[str] = ()
    minimum: int | None = None
    required: bool = False
    takes: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed", tuple(self.allowed))
        if self.required and self.default is not None:
            raise ValueError(f"field {self.name}: a required field has no default")

    def check(self, value: Any) -> Any:
        """``value`` (decoded) if it is one this field takes, else InvalidRequest."""
        if self.allowed:
            items = value if isinstance(value, list) else [value]
            if any(item not in self.allowed for item in items):
                raise InvalidRequest(f"invalid {self.name}: allowed are {', '.join(self.allowed)}")
        if self.minimum is not None and value < self.minimum:
            raise InvalidRequest(f"{self.name} must be {self.takes or f'at least {self.minimum}'}")
        return value

    def missing(self) -> InvalidRequest:
        """The error for a required field that was not sent."""
        what = self.takes or (
            f"allowed are {', '.join(self.allowed)}" if self.allowed else self.description
        )
        return InvalidRequest(
            f"{self.name} is required: {what}" if what else f"{self.name} is required"
        )


class FieldData:
    """The parsed body of one request against a path's declared fields."""

    def __init__(self, raw: Mapping[str, Any], fields: Sequence[Field]) -> None:
        self._raw = raw
        self._fields = {f.name: f for f in fields}
        unknown = sorted(k for k in raw if k not in self._fields)
        shown = [k if len(k) <= 64 else k[:64] + "..." for k in unknown[:20]]
        if len(unknown) > 20:
            shown.append(f"(and {len(unknown) - 20} more)")
        self.warnings: list[str] = (
            [Ignored(f"Endpoint ignored these unrecognized parameters: [{' '.join(shown)}]")]
            if unknown
            else []
        )

    @property
    def raw(self) -> Mapping[str, Any]:
        """The body as sent (what ACL parameter constraints are checked against)."""
        return self._raw

    def has(self, name: str) -> bool:
        """Whether the field was sent (a JSON null counts as not sent)."""
        return name in self._raw and self._raw[name] is not None

    def get(self, name: str, default: Any = _ABSENT) -> Any:
        """The field's decoded and checked value; when it was not sent, ``default`` if given,
        else the declared default (InvalidRequest if the field is required). ``required`` is
        checked here, when a handler asks: a delete on the same path never demands it."""
        spec = self._fields[name]
        if not self.has(name):
            if spec.required:
                raise spec.missing()
            return spec.default if default is _ABSENT else default
        value = spec.decode(self._raw[name], name)
        if value is None:  # the decoder's word for "as if not sent" (an empty string, say)
            if spec.required:
                raise spec.missing()
            return spec.default if default is _ABSENT else default
        return spec.check(value)

    def validate(self) -> None:
        """Decode and check every declared field that was sent (Vault's FieldData.Validate),
        in declaration order; ``required`` is left to the handler's ``get``."""
        for name in self._fields:
            if self.has(name):
                self.get(name)
