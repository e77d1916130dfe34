"""Vault's HTTP conventions, in one place: body and field parsing, envelopes, errors, lists.

Framework-neutral: the adapters in ``functions/`` turn a trigger's request into ``ApiRequest``
and ``ApiResponse`` back into the trigger's response. Field parsing follows Vault's
``sdk/framework`` weak decoding, because the CLI sends every value as a string.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from shared.errors import EngineError, InvalidRequest, PayloadTooLarge

JSON = "application/json"


@dataclass(frozen=True)
class ApiRequest:
    method: str  # upper case; LIST when a list was asked for with the verb
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""

    @property
    def token(self) -> str | None:
        token = self.headers.get("x-vault-token")
        if token:
            return token
        auth = self.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


# -- responses ---------------------------------------------------------------------------------


def _json_response(status: int, payload: Any) -> ApiResponse:
    return ApiResponse(status, json.dumps(payload).encode(), {"Content-Type": JSON})


def envelope(data: Any, warnings: Sequence[str] | None = None) -> dict[str, Any]:
    return {
        "request_id": str(uuid.uuid4()),
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": data,
        "wrap_info": None,
        "warnings": list(warnings) if warnings else None,
        "auth": None,
    }


def ok(data: Mapping[str, Any], warnings: Sequence[str] | None = None) -> ApiResponse:
    return _json_response(200, envelope(dict(data), warnings))


def written(warnings: Sequence[str] | None = None) -> ApiResponse:
    """A write's answer: 204, or 200 with only warnings when there is something to say."""
    if warnings:
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


# -- request parsing ---------------------------------------------------------------------------

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse_go_bool(value: str, name: str) -> bool:
    """Go's strconv.ParseBool, which Vault uses for ``?list=``."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidRequest(f"{name}: invalid boolean value {value!r}; use true or false")


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
    if method in ("GET", "HEAD"):
        return "read"
    if method in ("POST", "PUT"):
        return "update"
    if method == "DELETE":
        return "delete"
    return method.lower()


def parse_body(request: ApiRequest, max_bytes: int) -> dict[str, Any]:
    """The body as a dict: a JSON object, ``null`` or empty (→ {}), or a form (→ strings)."""
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
        value = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("failed to parse JSON input: request body is not valid JSON") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")
        raise InvalidRequest(f"request body must be a JSON object, got {kind}")
    return value


# -- weak field decoding (Vault's mapstructure.WeakDecode) -------------------------------------


def weak_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0
        try:
            return int(text, 10)
        except ValueError:
            pass
    raise InvalidRequest(f"Field validation failed: {name} must be an integer, got {value!r}")


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
    raise InvalidRequest(f"Field validation failed: {name} must be true or false, got {value!r}")


def weak_str(value: Any, name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    raise InvalidRequest(f"Field validation failed: {name} must be a string, got {value!r}")


def comma_list(value: Any, name: str) -> list[str]:
    """Vault's TypeCommaStringSlice: ``"a,b"`` or ``["a", "b"]``; items trimmed."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(",") if value.strip() else []
    elif isinstance(value, list):
        items = []
        for item in value:
            items.extend(comma_list(weak_str(item, name), name))
    else:
        raise InvalidRequest(
            f"Field validation failed: {name} must be a comma-separated string or a list"
        )
    return [item.strip() for item in items if item.strip()]


def kv_pairs(value: Any, name: str) -> dict[str, str]:
    """Vault's TypeKVPairs: a JSON object, a list of ``"k=v"``, or one ``"k=v"`` string."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): weak_str(v, f"{name}.{k}") for k, v in value.items()}
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise InvalidRequest(
            f"Field validation failed: {name} must be key=value pairs "
            '(an object, a list of "k=v" strings, or one "k=v" string)'
        )
    result: dict[str, str] = {}
    for item in items:
        text = weak_str(item, name)
        key, sep, val = text.partition("=")
        if not sep or not key.strip():
            # Name the key only: the value may be a secret.
            shown = key.strip() if sep else "<no '='>"
            raise InvalidRequest(
                f"Field validation failed: {name}: invalid key pair {shown!r}; use key=value"
            )
        result[key.strip()] = val
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
    """A Vault duration: seconds as a number or string, or ``"24h"``, ``"30d"``, ``"1h30m"``."""
    if isinstance(value, bool):
        raise InvalidRequest(f"Field validation failed: {name} must be a duration like 24h or 30d")
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0
        if text.isdigit():
            return int(text)
        pos, total = 0, 0.0
        for match in _DURATION.finditer(text):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos == len(text) and pos > 0:
            return int(total)
    raise InvalidRequest(
        f"Field validation failed: {name}: invalid duration {value!r}; "
        "use seconds or units like 24h, 30d, 1h30m"
    )


@dataclass(frozen=True)
class Field:
    """One declared body field of a path, as Vault's framework declares them."""

    name: str
    decode: Callable[[Any, str], Any]
    description: str = ""


class FieldData:
    """The parsed body of one request against a path's declared fields."""

    def __init__(self, raw: Mapping[str, Any], fields: Sequence[Field]) -> None:
        self._raw = raw
        self._fields = {f.name: f for f in fields}
        unknown = sorted(k for k in raw if k not in self._fields)
        self.warnings = (
            [f"Endpoint ignored these unrecognized parameters: [{' '.join(unknown)}]"]
            if unknown
            else []
        )

    def has(self, name: str) -> bool:
        return name in self._raw and self._raw[name] is not None

    def get(self, name: str, default: Any = None) -> Any:
        if not self.has(name):
            return default
        spec = self._fields[name]
        return spec.decode(self._raw[name], name)
