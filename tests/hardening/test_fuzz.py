"""Property-based fuzz of every writable path, over real HTTP (local host, Azurite, Key Vault
emulator), with what an attacker or a confused client sends.

Paths: ``sys/mounts/:path``, ``key/:name``, ``key/:name/rotate``, ``kms/:name``,
``kms/:name/key/:key_name`` (POST, PUT, DELETE), lists through ``GET ?list=``, and the token
headers. Bodies: every JSON type in every declared field (huge and unicode strings, control
characters, huge and negative integers, NaN/Infinity/1e999 as raw JSON text, nested values),
unknown fields, duration strings, forms, raw and deeply nested JSON; names in the path that are
too long, dotted, unicode or percent-encoded.

Every answer must be below 500 and must not carry a credential (or token) value that was sent;
a refused write (4xx) must leave what the API shows unchanged (read before and after); a write
that succeeded must show its effect.

Two parametrized tests send the cases a leak or an overflow is most likely on once each,
whatever the budget: every form of ``credentials``, and the edge numbers of every numeric field.

Budget: ``KEYMGMT_FUZZ_EXAMPLES`` examples per property (default below: the module runs in
about a minute on two cores); ``KEYMGMT_FUZZ_SHRINK=1`` also shrinks a failure to a minimal
example (slow over HTTP: off by default). Examples are derandomized, so CI sees the same ones.
The module has its own host (own table prefix) so that whole-mount reads (``sys/mounts``,
lists) only change by what the fuzz itself does.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fixtures.funchost import emulator_settings, engine_settings, serving
from tests.fixtures.kvemu import VAULT

pytestmark = [pytest.mark.xdist_group("hardening")]

EXAMPLES = int(os.environ.get("KEYMGMT_FUZZ_EXAMPLES", "120"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    phases=[Phase.explicit, Phase.generate]
    + ([Phase.shrink] if os.environ.get("KEYMGMT_FUZZ_SHRINK") else []),
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)
TRACE = bool(os.environ.get("KEYMGMT_FUZZ_TRACE"))  # print every probe (with -s)
MOUNT = "keymgmt"
KEY_TYPES = (
    "aes256-gcm96",
    "rsa-2048",
    "rsa-3072",
    "rsa-4096",
    "ecdsa-p256",
    "ecdsa-p384",
    "ecdsa-p521",
)
# Go's strconv.ParseBool, which the API follows for ?list=
GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


# -- what goes on the wire ---------------------------------------------------------------------


class Raw(str):
    """A value sent as literal JSON text (NaN, Infinity, 1e999, a 5000-digit integer)."""


def dump(value: Any) -> str:
    """JSON text for ``value``; ``Raw`` values go in as they are."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


@dataclass(frozen=True)
class Body:
    data: bytes | None  # None: no body at all
    content_type: str | None
    note: str  # what kind of body, for failure messages
    obj: dict[str, Any] | None = None  # the fields, when the server reads it as JSON
    secrets: tuple[str, ...] = ()  # values that must never come back

    def __repr__(self) -> str:  # hypothesis prints the falsifying example with this
        return (
            f"Body({self.note}, content_type={self.content_type!r}, "
            f"data={_short(self.data)}, secrets={list(self.secrets)})"
        )


def _short(data: bytes | str | None, limit: int = 400) -> str:
    if data is None:
        return "None"
    text = data.decode("utf-8", "backslashreplace") if isinstance(data, bytes) else data
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} chars)"


JSON_TYPES = ("application/json", None, "application/json; charset=utf-8", "APPLICATION/JSON")
OTHER_TYPES = ("text/plain", "application/octet-stream", "multipart/form-data; boundary=x")
FORM = "application/x-www-form-urlencoded"


def json_body(obj: dict[str, Any], content_type: str | None = "application/json") -> Body:
    return Body(dump(obj).encode(), content_type, "json", obj if content_type != FORM else None)


def raw_body(text: str | bytes, content_type: str | None = "application/json") -> Body:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return Body(data, content_type, "raw")


# -- value strategies --------------------------------------------------------------------------

EDGE_INTS = [
    0, 1, -1, 2, 3, 59, 60, 3599, 3600, 86400, 2**31 - 1, 2**31, 2**32, 2**53, 2**53 + 1,
    2**62, 2**63 - 1, 2**63, 2**64, 2**64 + 1, -(2**31), -(2**53), -(2**63), -(2**63) - 1,
    -(2**64), 10**20, 10**400,
]  # fmt: skip
RAW_NUMBERS = [
    Raw(t)
    for t in (
        "NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-999", "-0", "-0.0", "0.5",
        "1.0", "1E3", "3600.0", "3599.9999999", "1" + "0" * 5000, "9" * 400,
    )
]  # fmt: skip
NASTY_STRINGS = [
    "", " ", "\x00", "\t", "\n", "\r\n", "\x1b[31m", "\x7f", "\ud800", "\udfff", "\ufeff",
    "\u202e", "\u200b", "é", "ключ", "\U0001d54f", "٣", "\uff11", "null", "true", "false",
    "True", "0", "1",
    "-1", "2", " 2 ", "+1", "0x10", "1_0", "1e3", "1.5", "NaN", "Infinity", "%00", "%s%n",
    "{{7*7}}", "${jndi:x}", "'; DROP TABLE x; --", "../../etc/passwd", "a:b", "a/b", "a#b",
    "a?b", "key:x:", "PartitionKey", "a,b", "a=b", "=", ",", "rsa-2048,aes256-gcm96",
]  # fmt: skip
DURATIONS = [
    "1e9h", "99999999999d", "-5s", "1.5.2h", "24h", "30d", "1h30m", "0", "0s", "1h", "59m",
    "3600", "3599", "1.5h", "9" * 25 + "s", "9" * 25, "106751991d", "2562047788015215h",
    "1d1d", "h", "5 m", "PT1H", "-0", "-1h", "1µs", "1ns", "1h-1m", "∞", "24H", "1y", "1w",
    " 24h ", "24h\x00", "0.0001s", "\u0661h",
]  # fmt: skip
UNKNOWN_FIELDS = [
    "colour", "Type", "TYPE", "type ", "", "__proto__", "constructor", "name", "latest_version",
    "versions", "keys", "errors", "data", "x" * 300, "ключ", "\x00", "PartitionKey", "RowKey",
]  # fmt: skip


def huge_strings() -> st.SearchStrategy[str]:
    """60-70 thousand characters (built from a short seed: cheap to generate)."""
    seeds = st.sampled_from(["x", "é", "\U0001d54f", "\x00", "a,b=", "9", "rsa-2048,"])
    return st.builds(
        lambda seed, n: (seed * (n // len(seed) + 1))[:n], seeds, st.integers(60_000, 70_000)
    )


def strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(NASTY_STRINGS),
        st.text(max_size=30),
        st.text(st.characters(categories=["Cc", "Cs", "Zs", "Cf", "So"]), max_size=12),
        huge_strings(),
    )


def numbers() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(EDGE_INTS),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(RAW_NUMBERS),
    )


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.booleans(), numbers(), strings(), st.sampled_from(DURATIONS))


def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value: scalars, and arrays and objects of them (a few levels)."""
    return st.recursive(
        scalars(),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(
                st.one_of(st.text(max_size=8), st.sampled_from(UNKNOWN_FIELDS)),
                children,
                max_size=4,
            ),
        ),
        max_leaves=6,
    )


@dataclass(frozen=True)
class Field:
    """A declared field: values it accepts, near misses, and whether a write needs it."""

    valid: tuple[Any, ...]
    near: tuple[Any, ...] = ()
    required: bool = False

    def accepted(self) -> st.SearchStrategy[Any]:
        return st.sampled_from(self.valid)

    def wrong(self) -> st.SearchStrategy[Any]:
        """A near miss or any JSON value at all."""
        return st.one_of(st.sampled_from(self.near), json_values()) if self.near else json_values()

    def anything(self) -> st.SearchStrategy[Any]:
        return st.one_of(self.accepted(), self.wrong())


def field(valid: Sequence[Any], near: Sequence[Any] = (), *, required: bool = False) -> Field:
    return Field(tuple(valid), tuple(near), required)


def deep(kind: str, depth: int, name: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    if kind == "object":
        return '{"a":' * depth + "1" + "}" * depth
    return f'{{"{name}":' + "[" * depth + "]" * depth + "}"


RAW_BODIES = [
    "", " ", "null", "{}", "[]", "[1]", '"text"', "1", "true", "{", "{not json", "}", "nul",
    "{}{}", '{"a":1}garbage', '{"a":1,"a":2}', "\ufeff{}", "{'a': 1}", '{"a":}', "[" * 10,
    '{"a": "\\ud800"}', '{"a": "\\u0000"}', "\x00", "{\x00}", " " * 10_000,
]  # fmt: skip
RAW_BYTES = [b"\xff\xfe\x00{", b'{"a":"\xff"}', b"\xef\xbb\xbf{}", b"\x80", b'{"a":"\xed\xa0\x80"}']
RAW_FORMS = ["a=%ZZ", "=", "&&", "type", "a=1&a=2", "%", "=x", "a=\x00", "a=%FF%FE"]


def bodies(
    fields: dict[str, Field],
    *,
    extra: st.SearchStrategy[tuple[dict[str, Any], tuple[str, ...]]] | None = None,
) -> st.SearchStrategy[Body]:
    """A request body: a JSON object of the path's fields, either accepted values with at
    most one field swapped for a near miss or any JSON value (so writes get through to the
    deeper checks) or anything in any field, unknown fields too; else a form, a raw or deeply
    nested body, or none. ``extra`` draws more fields with the secrets they carry."""
    first = next(iter(fields))
    needed = {k: f.accepted() for k, f in fields.items() if f.required}
    accepted = {k: f.accepted() for k, f in fields.items() if not f.required}
    anything = {k: f.anything() for k, f in fields.items()}
    kinds = ["mutant"] * 5 + ["json"] * 3 + ["form"] * 2 + ["raw"] * 2 + ["none"]

    @st.composite
    def draw_body(draw: Any) -> Body:
        kind = draw(st.sampled_from(kinds))
        if kind == "mutant":
            obj = draw(st.fixed_dictionaries(needed, optional=accepted))
            if draw(st.booleans()):
                name = draw(st.sampled_from(sorted(fields)))
                obj[name] = draw(fields[name].wrong())
        else:
            obj = draw(st.fixed_dictionaries({}, optional=anything))
        if kind != "mutant" or draw(st.integers(0, 3)) == 0:
            unknown = st.dictionaries(st.sampled_from(UNKNOWN_FIELDS), json_values(), max_size=2)
            obj.update(draw(unknown))
        secrets: tuple[str, ...] = ()
        if extra is not None and draw(st.integers(0, 4)) > 0:
            more, secrets = draw(extra)
            obj.update(more)
        if kind == "mutant":
            ctype = draw(st.sampled_from(JSON_TYPES))
            return replace_secrets(json_body(obj, ctype), secrets)
        if kind == "json":
            ctype = draw(st.sampled_from(JSON_TYPES * 3 + OTHER_TYPES + (FORM,)))
            return replace_secrets(json_body(obj, ctype), secrets)
        if kind == "form":
            pairs = [(k, form_value(v)) for k, v in obj.items()]
            if draw(st.booleans()) and pairs:
                pairs.append(pairs[0])  # a repeated field
            data = urlencode([(k.encode("utf-8", "surrogatepass"), v) for k, v in pairs]).encode()
            if draw(st.integers(0, 5)) == 0:
                data = draw(st.sampled_from(RAW_FORMS)).encode()
            return Body(data, FORM, "form", None, secrets)
        if kind == "raw":
            choice = draw(st.integers(0, 3))
            if choice == 0:
                depth = draw(st.sampled_from([999, 1000, 1001, 1500, 5000, 100_000]))
                shape = draw(st.sampled_from(["array", "object", "field"]))
                return raw_body(deep(shape, depth, first), draw(st.sampled_from(JSON_TYPES)))
            if choice == 1:
                return raw_body(draw(st.sampled_from(RAW_BYTES)))
            text = draw(st.sampled_from(RAW_BODIES))
            return raw_body(text, draw(st.sampled_from(JSON_TYPES + OTHER_TYPES)))
        return Body(None, draw(st.sampled_from(JSON_TYPES)), "none")

    return draw_body()


def replace_secrets(body: Body, secrets: tuple[str, ...]) -> Body:
    return Body(body.data, body.content_type, body.note, body.obj, secrets)


def form_value(value: Any) -> bytes:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (dict, list)) or value is None:
        text = dump(value)
    else:
        text = str(value)
    return text.encode("utf-8", "surrogatepass")


# -- names in the path -------------------------------------------------------------------------

BAD_NAMES = [
    "a" * 101, "a" * 1000, "a" * 5000, "-lead", "_lead", ".", "..", ".hidden", "a..b", "ключ",
    "ké", "\U0001d542ey", "a b", "a%2Fb", "a%2fb", "a%00b", "%2e%2e", "%252e", "a%3Ab", "a:b",
    "a#b",
    "a?b", "a;b", "a*", "a'b", 'a"b', "a\\b", "\x00", "a\nb", "%E2%80%AE", "a%", "a%zz", "~",
    "a+b", "a/b", "a%20", "A" * 64 + ":", "key:x:", "\u202ekey",
]  # fmt: skip
ODD_NAMES = ["a" * 100, "a.b", "A", "0", "a_b-c.d", "a-", "Z9", "a" * 64]


def seg(name: str) -> str:
    """A path segment: literal '%' sequences go as written; '/', '?', '#' and non-ASCII are
    percent-encoded (so a name always reaches the host as one segment, or as written). A
    name that is a dot segment is encoded too: clients remove literal ``.`` and ``..``
    segments before sending (RFC 3986), so the server would never see them."""
    if name in (".", ".."):
        return name.replace(".", "%2E")
    return quote(name, safe="%!$&'()*+,;=:@-._~")


def path_names(roles: Sequence[str]) -> st.SearchStrategy[str]:
    """A role the test resolves (e.g. "fresh"), two times in three, or a literal name
    (``=<name>``): bad, odd or random."""
    literal = [f"={n}" for n in BAD_NAMES + ODD_NAMES]
    weight = max(1, 2 * len(literal) // len(roles))
    return st.one_of(
        st.sampled_from(list(roles) * weight + literal),
        st.text(min_size=1, max_size=20).map(lambda n: f"={n}"),
    )


# -- credentials (secrets) ---------------------------------------------------------------------

CREDENTIAL_KEYS = ("client_id", "client_secret", "tenant_id", "environment")


@st.composite
def credentials(draw: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``{"credentials": ...}`` in every form Vault takes (object, ["k=v"], "k=v"), wrongly
    typed (a list, an object, a number where a string goes), nested, and as a bare secret
    pasted without its name; values are unique markers (strings, or 13-digit numbers), which
    are returned too. Values may carry nasty characters after the marker: the marker must
    still never come back."""
    markers: list[str] = []

    def secret(key: str) -> Any:
        n = draw(st.integers(0, 2**40))
        shapes = ["str"] * 5 + ["nasty", "int", "list", "dict", "pairs"]
        if key == "environment":
            shapes += ["cloud"] * 3
        shape = draw(st.sampled_from(shapes))
        marker = f"zq{n:011x}"
        if shape == "cloud":  # a valid one: not a secret, lets the write go through
            return draw(st.sampled_from(["AzurePublicCloud", "azurechinacloud", ""]))
        if shape == "int":
            number = 7_300_000_000_000 + n
            markers.append(str(number))
            return number
        markers.append(marker)
        if shape == "nasty":
            return marker + draw(st.sampled_from([*NASTY_STRINGS, "=x", ",y=z", "==", "\\"]))
        if shape == "list":
            return [marker]
        if shape == "dict":
            return {"value": marker}
        if shape == "pairs":
            return [f"client_secret={marker}"]
        return marker

    keys = draw(st.lists(st.sampled_from(CREDENTIAL_KEYS), min_size=1, max_size=4, unique=True))
    if draw(st.integers(0, 3)) == 0:
        keys.append(draw(st.sampled_from(["clientsecret", "Client_Secret", "", " tenant_id"])))
    form = draw(
        st.sampled_from(["object"] * 3 + ["pairs"] * 3 + ["single", "bare", "number", "nested"])
    )
    if form == "number":
        n = 7_400_000_000_000 + draw(st.integers(0, 2**40))
        markers.append(str(n))
        return {"credentials": n}, tuple(markers)
    if form == "bare":  # credentials=<secret>: a secret pasted without "client_secret="
        marker = f"zq{draw(st.integers(0, 2**40)):011x}"
        markers.append(marker)
        tail = draw(st.sampled_from(["", "==", "=", "=abc", ",x", "\n", " "]))
        return {"credentials": marker + tail}, tuple(markers)
    values = {k: secret(k) for k in keys}

    def text(v: Any) -> str:
        return v if isinstance(v, str) else str(v) if isinstance(v, int) else dump(v)

    if form == "object":
        value: Any = values
    elif form == "single":
        k, v = next(iter(values.items()))
        value = f"{k}={text(v)}"
    elif form == "nested":
        value = [[f"{k}={text(v)}"] for k, v in values.items()]
    else:  # pairs; a wrongly typed value goes in as it is
        value = [f"{k}={v}" if isinstance(v, str) else v for k, v in values.items()]
    return {"credentials": value}, tuple(markers)


# -- the fuzz context --------------------------------------------------------------------------


class Fuzz:
    """One host, its audited API, and the objects the properties aim at (recreated when a
    successful write removed them)."""

    def __init__(self, api: Any, bare: Any, audit: Any, kv: Any) -> None:
        self.api = api
        self.bare = bare  # sends no token of its own
        self.audit = audit
        self.kv = kv
        self.tag = uuid.uuid4().hex[:6]
        self._n = itertools.count(1)
        self.named: dict[str, str] = {}

    def fresh(self, prefix: str) -> str:
        return f"{prefix}{self.tag}-{next(self._n)}"

    def must(self, method: str, path: str, **kw: Any) -> requests.Response:
        """A setup request that has to work (not part of what is fuzzed)."""
        response = self.api.request(method, path, **kw)
        assert response.status_code in (200, 204), f"setup {method} {path}: {response.text}"
        return response

    def exists(self, path: str) -> bool:
        return self.api.get(path).status_code == 200

    # keys

    def key(self, role: str, key_type: str = "ecdsa-p256", **fields: Any) -> str:
        """A key that exists under this role (created again if a fuzzed delete removed it)."""
        name = self.named.get(role)
        if name is None or not self.exists(f"{MOUNT}/key/{name}"):
            name = self.fresh(f"{role[:3]}")
            self.must("POST", f"{MOUNT}/key/{name}", json={"type": key_type, **fields})
            self.named[role] = name
        return name

    # providers and distributions

    def provider(self, role: str) -> str:
        name = self.named.get(role)
        if name is None or not self.exists(f"{MOUNT}/kms/{name}"):
            name = self.fresh(f"p{role[:3]}")
            body = {
                "provider": "azurekeyvault",
                "key_collection": VAULT,
                "credentials": {"tenant_id": self.kv.tenant_id},
            }
            self.must("PUT", f"{MOUNT}/kms/{name}", json=body)
            self.named[role] = name
        return name

    def distributed(self, provider: str, role: str) -> str:
        """An rsa-2048 key distributed to ``provider`` (distributed again if removed)."""
        key = self.key(role, "rsa-2048")
        if not self.exists(f"{MOUNT}/kms/{provider}/key/{key}"):
            self.must(
                "PUT", f"{MOUNT}/kms/{provider}/key/{key}", json={"purpose": "encrypt,decrypt"}
            )
        return key

    def undistributed(self, provider: str, role: str, key_type: str) -> str:
        """A key of this type not distributed to ``provider`` (a new one once it is)."""
        key = self.key(role, key_type)
        if self.exists(f"{MOUNT}/kms/{provider}/key/{key}"):
            del self.named[role]
            key = self.key(role, key_type)
        return key

    # reading state

    def snapshot(self, readers: Sequence[Reader]) -> list[Any]:
        return [self.read(path, params) for path, params in readers]

    def read(self, path: str, params: dict[str, str] | None = None) -> Any:
        response = self.api.get(path, params=params)
        assert response.status_code < 500, (
            f"GET {path} {params or ''} while reading state: {response.status_code} "
            f"{_short(response.content)}"
        )
        return response.status_code, normalized(response)


Reader = tuple[str, "dict[str, str] | None"]


def normalized(response: requests.Response) -> Any:
    try:
        payload = response.json()
    except ValueError:
        return response.content
    if isinstance(payload, dict):
        payload.pop("request_id", None)
    return payload


_REQUEST_ID = re.compile(r'"request_id":\s*"[^"]*"')


def echoes(secrets: Sequence[str], response: requests.Response) -> list[str]:
    """The secrets that appear in the response (its body without the request id, or a header)."""
    if not secrets:
        return []
    text = _REQUEST_ID.sub("", response.content.decode("utf-8", "replace"))
    headers = " ".join(f"{k}: {v}" for k, v in response.headers.items())
    return [s for s in secrets if s in text or s in headers]


def probe(
    fz: Fuzz,
    method: str,
    path: str,
    body: Body,
    *,
    readers: Sequence[Reader],
    headers: dict[str, Any] | None = None,
    secrets: Sequence[str] = (),
    api: Any = None,
) -> requests.Response:
    """Send one fuzzed request and check the rules every answer follows. Returns the answer
    for the property's own checks of a success."""
    api = api or fz.api
    secrets = (*body.secrets, *secrets)
    before = fz.snapshot(readers)
    sent = dict(headers or {})
    if body.content_type is not None:
        sent["Content-Type"] = body.content_type
    response = api.request(method, path, data=body.data, headers=sent)
    fz.audit.count("probe")
    status = response.status_code
    fz.audit.count(f"probe_{status // 100}xx")
    if TRACE:
        print(f"{status} {method} /v1/{path[:80]} {body!r}"[:300], _short(response.content, 200))

    def where() -> str:
        return (
            f"{method} /v1/{path} {body!r} headers={sent!r} -> {status} "
            f"{_short(response.content, 600)}"
        )

    problems: list[str] = []
    if status >= 500:
        problems.append(f"server error: {where()}")
    leaked = echoes(secrets, response)
    if leaked:
        fz.audit.failure(
            "echo",
            method=method,
            path=path,
            body=body.data,
            secrets=leaked,
            status=status,
            response=response.content,
        )
        problems.append(f"credential values {leaked} echoed: {where()}")
    if 400 <= status < 500:
        after = fz.snapshot(readers)
        for (rpath, params), old, new in zip(readers, before, after, strict=True):
            if old != new:
                fz.audit.failure(
                    "half_written",
                    method=method,
                    path=path,
                    body=body.data,
                    status=status,
                    response=response.content,
                    reader=rpath,
                    before=old,
                    after=new,
                )
                problems.append(
                    f"refused write changed GET {rpath} {params or ''}: {_short(repr(old))} "
                    f"-> {_short(repr(new))}; request: {where()}"
                )
    assert not problems, "\n".join(problems)
    return response


def effect(fz: Fuzz, ok: bool, what: str, method: str, path: str, body: Body, response: Any):
    """A success must show its effect."""
    if not ok:
        fz.audit.failure(
            "false_success",
            method=method,
            path=path,
            body=body.data,
            status=response.status_code,
            response=response.content,
            what=what,
        )
        raise AssertionError(
            f"{method} /v1/{path} {body!r} answered {response.status_code} but {what}"
        )


def sent_field(body: Body, name: str, kinds: tuple[type, ...]) -> Any:
    """The field as sent, when the server read the body as JSON and it has this type."""
    if body.obj is None or name not in body.obj:
        return None
    value = body.obj[name]
    return value if isinstance(value, kinds) and not isinstance(value, Raw) else None


@pytest.fixture(scope="module")
def fuzz_host(azurite: Any, kv_emulator: Any) -> Any:
    settings_ = engine_settings(azurite, f"fz{os.getpid()}", **emulator_settings(kv_emulator))
    with serving(settings_) as host:
        yield host


@pytest.fixture(scope="module")
def fz(fuzz_host: Any, make_api: Callable[..., Any], audit: Any, kv_emulator: Any) -> Fuzz:
    return Fuzz(make_api(fuzz_host), make_api(fuzz_host, token=None), audit, kv_emulator)


# -- sys/mounts/:path ----------------------------------------------------------------------------

MOUNT_FIELDS = {
    "type": field(
        ["keymgmt"], ["KeyMgmt", "keymgmt ", "kv", "transit", "", "keymgmt\x00"], required=True
    ),
    "description": field(["", "my mount", "ключ"], ["x" * 70_000, "\x00", 7]),
    "config": field([{}, None, {"default_lease_ttl": "1h"}], [{"max_lease_ttl": 2**64}, []]),
    "options": field([{}, None, {"version": "2"}], ["v2"]),
    "local": field([True, False], ["true", 2]),
    "seal_wrap": field([False]),
    "external_entropy_access": field([False]),
    "plugin_name": field(["keymgmt", ""]),
    "plugin_version": field(["", "v1.0.0"]),
    "path": field(["other", "keymgmt/"]),
}
RESERVED_MOUNTS = ["sys", "auth", "admin", "Admin", "runtime", "identity", "cubbyhole", "SYS"]


@FUZZ
@given(
    method=st.sampled_from(["POST", "PUT", "DELETE"]),
    target=st.one_of(
        path_names(["fresh", "fresh/", "keymgmt", "holder", "empty"]),
        st.sampled_from(RESERVED_MOUNTS).map(lambda n: f"={n}"),
    ),
    body=bodies(MOUNT_FIELDS),
)
def test_fuzz_mounts(fz: Fuzz, method: str, target: str, body: Body):
    holder = fz.named.setdefault("mount-holder", f"mh{fz.tag}")
    if target in ("holder", "keymgmt") and method == "DELETE":
        target = "holder"  # never DELETE the default mount: the other properties live there
    if target == "holder" and not fz.exists(f"{holder}/key/k1"):
        fz.api.post(f"sys/mounts/{holder}", json={"type": "keymgmt"})
        fz.must("POST", f"{holder}/key/k1", json={"type": "ecdsa-p256"})
    if target == "empty":
        name = fz.fresh("me")
        fz.must("POST", f"sys/mounts/{name}", json={"type": "keymgmt"})
    elif target in ("fresh", "fresh/"):
        name = fz.fresh("mf") + target.removeprefix("fresh")
    elif target == "holder":
        name = holder
    elif target == "keymgmt":
        name = MOUNT
    else:
        name = target[1:]
    path = f"sys/mounts/{seg(name)}"
    readers: list[Reader] = [("sys/mounts", None), (path, None)]
    if target == "holder":
        readers.append((f"{holder}/key", {"list": "true"}))
    response = probe(fz, method, path, body, readers=readers)
    if response.status_code < 300:
        mounts = fz.api.get("sys/mounts").json()
        listed = f"{name.strip('/')}/" in mounts
        if method == "DELETE":
            effect(fz, not listed, "the mount is still listed", method, path, body, response)
            if target == "holder":
                # Disabling removes the mount's keys: enabled again, it holds none.
                fz.must("POST", f"sys/mounts/{holder}", json={"type": "keymgmt"})
                left = fz.api.list(f"{holder}/key")
                effect(
                    fz,
                    left.status_code == 404,
                    f"its keys came back: {left.text}",
                    method,
                    path,
                    body,
                    response,
                )
        else:
            effect(fz, listed, "the mount is not listed", method, path, body, response)


# -- key/:name -----------------------------------------------------------------------------------

FAST_TYPES = ["aes256-gcm96", "rsa-2048", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521"]
KEY_FIELDS = {
    # rsa-3072/4096 are valid but slow to generate: named only as changes of an existing key
    "type": field(
        FAST_TYPES,
        [
            " rsa-2048 ",
            "RSA-2048",
            "rsa-1024",
            "aes128-gcm96",
            "hmac",
            "ed25519",
            "rsa-2048\n",
            "rsa-2048\x00",
            "",
            "rsa-4096",
        ],
    ),
    "min_enabled_version": field(
        [0, 1, "1", 2], [3, -1, " 1 ", "01", "1.0", 1.0, 1.5, True, "true", *EDGE_INTS]
    ),
    "deletion_allowed": field(
        [True, False, "true", "false", "True", "1", "0", "t", ""],
        ["yes", 1, 0, 2, -1, 0.5, "TRUE ", "tRue", [], {}],
    ),
    "auto_rotate_period": field(
        ["24h", "30d", "1h30m", 0, "0", 3600, 86400, "2160h"],
        [*DURATIONS, 3599, -1, *EDGE_INTS, *RAW_NUMBERS, 1.5, True],
    ),
    "replica_regions": field(["us-east-1", ["a", "b"]], ["", [1], "a,,b", {}]),
}


@FUZZ
@given(
    method=st.sampled_from(["POST", "PUT"]),
    target=path_names(["fresh", "existing", "rsa"]),
    body=bodies(KEY_FIELDS),
)
def test_fuzz_key_writes(fz: Fuzz, method: str, target: str, body: Body):
    if target == "fresh":
        name = fz.fresh("kf")
    elif target == "existing":
        name = fz.key("existing")
        if fz.api.get(f"{MOUNT}/key/{name}").json()["data"]["latest_version"] < 3:
            fz.must("POST", f"{MOUNT}/key/{name}/rotate")
            fz.must("POST", f"{MOUNT}/key/{name}/rotate")
    elif target == "rsa":
        name = fz.key("rsa", "rsa-2048")
    else:
        name = target[1:]
    path = f"{MOUNT}/key/{seg(name)}"
    readers: list[Reader] = [(path, None), (f"{MOUNT}/key", {"list": "true"})]
    before = fz.api.get(path)
    response = probe(fz, method, path, body, readers=readers)
    if response.status_code >= 300:
        return
    after = fz.api.get(path)
    effect(
        fz,
        after.status_code == 200,
        f"the key reads {after.status_code}",
        method,
        path,
        body,
        response,
    )
    data = after.json()["data"]
    sent_type = sent_field(body, "type", (str,))
    if before.status_code == 404 and body.obj is not None:
        if body.obj.get("type") is None:
            expected: str | None = "rsa-2048"
        else:
            expected = sent_type.strip() if sent_type is not None else None
        if expected is not None:
            effect(
                fz,
                data["type"] == expected,
                f"created as {data['type']}, not {expected}",
                method,
                path,
                body,
                response,
            )
    elif before.status_code == 200 and sent_type is not None:
        old = before.json()["data"]["type"]
        effect(
            fz,
            sent_type.strip() == old,
            f"a {old} key accepted type {sent_type!r}",
            method,
            path,
            body,
            response,
        )
    allowed = sent_field(body, "deletion_allowed", (bool,))
    if allowed is not None:
        effect(
            fz,
            data["deletion_allowed"] is allowed,
            f"deletion_allowed reads {data['deletion_allowed']}",
            method,
            path,
            body,
            response,
        )
    versions = sorted(map(int, data["versions"]))
    wanted = list(range(data["min_enabled_version"], data["latest_version"] + 1))
    effect(
        fz,
        versions == wanted,
        f"versions {versions} for min_enabled_version "
        f"{data['min_enabled_version']} and latest_version {data['latest_version']}",
        method,
        path,
        body,
        response,
    )


ANY_BODY = {
    "deletion_allowed": field([True, "true"], ["maybe"]),
    "type": field(FAST_TYPES, ["rsa-1"]),
}


@FUZZ
@given(target=path_names(["deletable", "protected", "missing"]), body=bodies(ANY_BODY))
def test_fuzz_key_delete(fz: Fuzz, target: str, body: Body):
    if target == "deletable":
        name = fz.key("deletable", deletion_allowed=True)
    elif target == "protected":
        name = fz.key("protected")
    elif target == "missing":
        name = fz.fresh("km")
    else:
        name = target[1:]
    path = f"{MOUNT}/key/{seg(name)}"
    response = probe(
        fz, "DELETE", path, body, readers=[(path, None), (f"{MOUNT}/key", {"list": "true"})]
    )
    if target == "protected":
        effect(
            fz,
            response.status_code == 400,
            "a key with deletion_allowed=false was deleted (or the refusal was not a 400)",
            "DELETE",
            path,
            body,
            response,
        )
    if response.status_code < 300:
        gone = fz.api.get(path).status_code
        effect(
            fz, gone in (400, 404), f"the key still reads {gone}", "DELETE", path, body, response
        )


@FUZZ
@given(
    method=st.sampled_from(["POST", "PUT", "DELETE"]),
    target=path_names(["existing", "missing"]),
    body=bodies(ANY_BODY),
)
def test_fuzz_rotate(fz: Fuzz, method: str, target: str, body: Body):
    if target == "existing":
        name = fz.key("rotating")
    elif target == "missing":
        name = fz.fresh("rm")
    else:
        name = target[1:]
    key_path = f"{MOUNT}/key/{seg(name)}"
    before = fz.api.get(key_path)
    path = f"{key_path}/rotate"
    response = probe(fz, method, path, body, readers=[(key_path, None)])
    if method == "DELETE":
        effect(
            fz,
            # A name holding '/' reaches no route here (the local host decodes %2F first).
            response.status_code == 405 or ("/" in name and response.status_code == 404),
            "DELETE on rotate is not a 405",
            method,
            path,
            body,
            response,
        )
    if response.status_code < 300:
        effect(
            fz, before.status_code == 200, "a missing key was rotated", method, path, body, response
        )
        old = before.json()["data"]["latest_version"]
        new = fz.api.get(key_path).json()["data"]
        effect(
            fz,
            new["latest_version"] == old + 1,
            f"latest_version went {old} -> {new['latest_version']}",
            method,
            path,
            body,
            response,
        )
        effect(
            fz,
            str(old + 1) in new["versions"],
            "the new version is not listed",
            method,
            path,
            body,
            response,
        )


# -- kms/:name -----------------------------------------------------------------------------------

PROVIDER_FIELDS = {
    "provider": field(
        ["azurekeyvault"],
        ["AzureKeyVault", " azurekeyvault ", "awskms", "gcpckms", "", "azurekeyvault\x00"],
        required=True,
    ),
    "key_collection": field(
        [VAULT, "second-vault"],
        [
            "Keyvault-Name",
            "kv",
            "a" * 25,
            "a--b",
            "x.managedhsm",
            "bad_name",
            "1abc",
            "keyvault-name.",
            "",
        ],
        required=True,
    ),
    "credentials": field(
        [{}, None], [[], "", "client_id=", ["=x"], {"client_id": None}, "=", [None]]
    ),
}


@FUZZ
@given(
    method=st.sampled_from(["POST", "PUT", "DELETE"]),
    target=path_names(["fresh", "existing", "held"]),
    body=bodies(PROVIDER_FIELDS, extra=credentials()),
)
def test_fuzz_kms_provider(fz: Fuzz, method: str, target: str, body: Body):
    held = fz.provider("held")
    fz.distributed(held, "held-key")
    if target == "fresh":
        name = fz.fresh("pf")
    elif target == "existing":
        name = fz.provider("existing")
    elif target == "held":
        name = held
    else:
        name = target[1:]
    path = f"{MOUNT}/kms/{seg(name)}"
    readers: list[Reader] = [(path, None), (f"{MOUNT}/kms", {"list": "true"})]
    if target == "held":
        readers.append((f"{path}/key", {"list": "true"}))
    before = fz.api.get(path)
    response = probe(fz, method, path, body, readers=readers)
    after = fz.api.get(path)
    leaked = echoes(body.secrets, after)
    if leaked:
        fz.audit.failure("echo", method="GET", path=path, secrets=leaked, response=after.content)
    assert not leaked, f"GET {path} returned credential values {leaked}: {after.text}"
    if target == "held" and method == "DELETE":
        effect(
            fz,
            response.status_code == 400,
            "a provider holding a key was deleted (or the refusal was not a 400)",
            method,
            path,
            body,
            response,
        )
    if response.status_code >= 300:
        return
    if method == "DELETE":
        effect(
            fz,
            after.status_code in (400, 404),
            f"the provider still reads {after.status_code}",
            method,
            path,
            body,
            response,
        )
        return
    effect(
        fz,
        after.status_code == 200,
        f"the provider reads {after.status_code}",
        method,
        path,
        body,
        response,
    )
    data = after.json()["data"]
    effect(
        fz,
        set(data) == {"provider", "key_collection"},
        f"it reads {sorted(data)}",
        method,
        path,
        body,
        response,
    )
    if before.status_code == 200:
        effect(
            fz,
            data == before.json()["data"],
            f"provider or key_collection changed: {before.json()['data']} -> {data}",
            method,
            path,
            body,
            response,
        )


# Every form of credentials, once each, whatever the budget: the fuzz above draws them at
# random; these are the ones a leak is most likely in.
M = "zqfixed0000"  # a marker: never expected in an answer
ECHO_FORMS = {
    "object": {"client_id": M + "1", "client_secret": M + "2", "tenant_id": M + "3"},
    "pairs": [f"client_id={M}1", f"client_secret={M}2", f"tenant_id={M}3"],
    "single": f"client_secret={M}2",
    "secret-with-equals": f"client_secret={M}2==",
    "environment-object": {"environment": M + "4"},
    "environment-pair": f"environment={M}4",
    "environment-list": [f"client_secret={M}2", f"environment={M}4"],
    "value-list": {"client_secret": [M + "2"]},
    "value-object": {"client_secret": {"value": M + "2"}},
    "value-nested-pairs": [[f"client_secret={M}2"]],
    "item-object": [f"client_id={M}1", {"client_secret": M + "2"}],
    "item-number": [f"client_id={M}1", 7300000000042],
    "number": 7400000000042,
    "unknown-key": {"clientsecret": M + "2"},
    "unknown-pair": [f"clientsecret={M}2"],
    "bare-secret": M + "2",
    "bare-secret-base64": M + "2==",
    "bare-secret-equals": M + "2=abc",
    "empty-key": f"={M}2",
}


@pytest.mark.parametrize("target", ["fresh", "existing"])
@pytest.mark.parametrize("form", sorted(ECHO_FORMS))
def test_credentials_are_never_echoed(fz: Fuzz, form: str, target: str):
    name = fz.fresh("pe") if target == "fresh" else fz.provider("existing")
    path = f"{MOUNT}/kms/{name}"
    obj = {"provider": "azurekeyvault", "key_collection": VAULT, "credentials": ECHO_FORMS[form]}
    secrets = [f"{M}{i}" for i in range(1, 5)] + ["7300000000042", "7400000000042"]
    body = replace_secrets(json_body(obj), tuple(secrets))
    probe(fz, "PUT", path, body, readers=[(path, None), (f"{MOUNT}/kms", {"list": "true"})])
    after = fz.api.get(path)
    assert not echoes(secrets, after), after.text


# The edge numbers of every integer, boolean and duration field, once each: the fuzz draws
# them at random; these are the ones an overflow is most likely on.
NUMBER_EDGES = [
    2**53, 2**62, 2**63, 2**64, -(2**63) - 1, 10**400, Raw("9" * 400), Raw("NaN"),
    Raw("Infinity"), Raw("-Infinity"), Raw("1e999"), Raw("-1e999"), "99999999999d", "1e9h",
    "-5s", "1.5.2h", "9" * 400,
]  # fmt: skip
NUMERIC_FIELDS = [
    ("key", "min_enabled_version"),
    ("key", "deletion_allowed"),
    ("key", "auto_rotate_period"),
    ("distribution", "expiration_period"),
    ("mount", "local"),
]


@pytest.mark.parametrize(("where", "name"), NUMERIC_FIELDS)
def test_number_edges_in_every_numeric_field(fz: Fuzz, where: str, name: str):
    problems = []
    for value in NUMBER_EDGES:
        if where == "key":
            path = f"{MOUNT}/key/{fz.key('edges')}"
            obj, readers = {name: value}, [(path, None)]
        elif where == "distribution":
            dp = fz.provider("dp")
            key = fz.undistributed(dp, "edges-rsa", "rsa-2048")
            path = f"{MOUNT}/kms/{dp}/key/{key}"
            obj = {"purpose": "encrypt", name: value}
            readers = [(path, None), (f"{MOUNT}/key/{key}/kms", {"list": "true"})]
        else:
            path = f"sys/mounts/{fz.fresh('mn')}"
            obj, readers = {"type": "keymgmt", name: value}, [("sys/mounts", None)]
        try:
            probe(fz, "POST", path, json_body(obj), readers=readers)
        except AssertionError as exc:
            problems.append(str(exc))
    assert not problems, "\n".join(problems)


# -- kms/:name/key/:key_name -----------------------------------------------------------------------

PURPOSES = ["encrypt", "decrypt", "sign", "verify", "wrap", "unwrap"]
DISTRIBUTION_FIELDS = {
    "purpose": field(
        [
            "encrypt,decrypt",
            "sign,verify",
            ["wrap", "unwrap"],
            "encrypt",
            ["sign"],
            ",".join(PURPOSES),
            "verify, sign",
        ],
        [
            "",
            ",",
            "ENCRYPT",
            "sign,sign",
            "bogus",
            [1, True, None],
            [["sign"]],
            ["sign", ""],
            "encrypt,bogus",
        ],
        required=True,
    ),
    "protection": field(["hsm", "software", "HSM", " Software "], ["", "none", "hsm\x00"]),
    "expiration_period": field(
        ["90d", 0, 86400, "2160h"], [*DURATIONS, -1, *EDGE_INTS, *RAW_NUMBERS]
    ),
}


@FUZZ
@given(
    method=st.sampled_from(["POST", "PUT", "DELETE"]),
    provider_target=st.sampled_from(
        ["dp"] * 30 + ["missing"] * 3 + [f"={n}" for n in BAD_NAMES[:12]]
    ),
    key_target=path_names(["fresh-rsa", "fresh-ec", "aes", "dotted", "held", "missing"]),
    body=bodies(DISTRIBUTION_FIELDS),
)
def test_fuzz_distribution(
    fz: Fuzz, method: str, provider_target: str, key_target: str, body: Body
):
    dp = fz.provider("dp")
    if provider_target == "dp":
        provider = dp
    elif provider_target == "missing":
        provider = fz.fresh("pm")
    else:
        provider = provider_target[1:]
    if key_target == "fresh-rsa":
        key = fz.undistributed(dp, "fresh-rsa", "rsa-2048")
    elif key_target == "fresh-ec":
        key = fz.undistributed(dp, "fresh-ec", "ecdsa-p256")
    elif key_target == "aes":
        key = fz.key("aes", "aes256-gcm96")
    elif key_target == "dotted":
        key = fz.named.setdefault("dotted", f"dot.{fz.tag}")
        if not fz.exists(f"{MOUNT}/key/{key}"):
            fz.must("POST", f"{MOUNT}/key/{key}", json={"type": "rsa-2048"})
    elif key_target == "held":
        key = fz.distributed(dp, "dist-held")
    elif key_target == "missing":
        key = fz.fresh("dm")
    else:
        key = key_target[1:]
    path = f"{MOUNT}/kms/{seg(provider)}/key/{seg(key)}"
    key_path = f"{MOUNT}/key/{seg(key)}"
    readers: list[Reader] = [
        (path, None),
        (key_path, None),
        (f"{key_path}/kms", {"list": "true"}),
        (f"{MOUNT}/kms/{seg(provider)}/key", {"list": "true"}),
    ]
    response = probe(fz, method, path, body, readers=readers)
    if response.status_code >= 300:
        return
    after = fz.api.get(path)
    holders = fz.api.list(f"{key_path}/kms")
    held_by = holders.json()["data"]["keys"] if holders.status_code == 200 else []
    if method == "DELETE":
        effect(
            fz,
            after.status_code in (400, 404),
            f"the distribution still reads {after.status_code}",
            method,
            path,
            body,
            response,
        )
        effect(
            fz,
            provider not in held_by,
            f"key/{key}/kms still lists {provider}",
            method,
            path,
            body,
            response,
        )
        return
    effect(
        fz,
        after.status_code == 200,
        f"the distribution reads {after.status_code}",
        method,
        path,
        body,
        response,
    )
    data = after.json()["data"]
    latest = fz.api.get(key_path).json()["data"]["latest_version"]
    effect(
        fz,
        sorted(map(int, data["versions"])) == list(range(1, latest + 1)),
        f"Key Vault holds versions {sorted(data['versions'])} of {latest}",
        method,
        path,
        body,
        response,
    )
    effect(
        fz,
        provider in held_by,
        f"key/{key}/kms does not list {provider}",
        method,
        path,
        body,
        response,
    )


# -- GET ?list= ------------------------------------------------------------------------------------

LIST_VALUES = [
    *sorted(GO_TRUE | GO_FALSE),
    "", "yes", "tRuE", " true", "true ", "1.0", "2", "-1", "on", "null", "\x00", "ключ",
    "true\x00", "%74rue", "t" * 5000,
]  # fmt: skip


@FUZZ
@given(
    method=st.sampled_from(["GET"] * 4 + ["LIST", "HEAD"]),
    where=st.sampled_from(
        [
            "key",
            "key/",
            "kms",
            "kms/",
            "kms/<dp>/key",
            "key/<held>/kms",
            "kms/<bad>/key",
            "key/<bad>/kms",
            "<nomount>/key",
            "key/<missing>/kms",
            "kms/<missing>/key",
        ]
    ),
    value=st.one_of(st.sampled_from(LIST_VALUES), st.text(max_size=10)),
    extra=st.dictionaries(
        st.sampled_from(["list", "List", "LIST", "x", "", "list[]"]),
        st.sampled_from(LIST_VALUES),
        max_size=2,
    ),
    bad=st.sampled_from(BAD_NAMES),
)
def test_fuzz_lists(fz: Fuzz, method: str, where: str, value: str, extra: dict, bad: str):
    dp = fz.provider("dp")
    held = fz.distributed(dp, "dist-held")
    path = (
        where.replace("<dp>", dp)
        .replace("<held>", held)
        .replace("<bad>", seg(bad))
        .replace("<missing>", fz.fresh("lm"))
    )
    if path.startswith("<nomount>"):
        path = path.replace("<nomount>", f"nomount{fz.tag}")
    else:
        path = f"{MOUNT}/{path}"
    params = {"list": value, **{k: v for k, v in extra.items() if k != "list"}}
    response = fz.api.request(method, path, params=params)
    fz.audit.count("probe")
    status = response.status_code
    where_ = f"{method} /v1/{path} params={params!r} -> {status} {_short(response.content)}"
    assert status < 500, where_
    if method != "GET":
        return
    if value in GO_TRUE:
        assert status in (200, 400, 404), where_
        if status == 200:
            keys = response.json()["data"]["keys"]
            assert keys == sorted(keys) and all(isinstance(k, str) for k in keys), where_
    elif value not in GO_FALSE:
        # A name with an encoded '/' may not reach any route (the host's 404).
        allowed = (400, 404) if "<bad>" in where else (400,)
        assert status in allowed, f"not a boolean, yet not refused: {where_}"


# -- token headers ---------------------------------------------------------------------------------

TOKEN_VALUES = [
    "", "ROOT", "Root", "r00t", "root\x00", "\x00root", "root\x7f", "rööt", "root,root",
    "root root", "Bearer root", "root\t", "root ", "x" * 8000, "*", "null", "undefined",
    "%72oot", "cm9vdA==", b"\xd0\xba\xd0\xbb", b"root\xff", "root",
]  # fmt: skip
AUTHORIZATION_VALUES = [
    "Bearer root", "bearer root", "BEARER root", "Bearer", "Bearer ", "Bearer  root",
    "Basic cm9vdDo=", "root", "Bearer root extra", "Token root", "Bearer ROOT", "Bearer\troot",
    "Bearer root\x00", "Bearerroot", "Bearer " + "x" * 8000, b"Bearer \xd0\xba",
]  # fmt: skip
TOKEN_OPS = [
    "create",
    "update",
    "delete",
    "rotate",
    "provider",
    "provider-delete",
    "mount",
    "mount-delete",
    "distribution-delete",
]


@st.composite
def token_headers(draw: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    headers: dict[str, Any] = {}
    markers: list[str] = []
    for header, values in (
        (draw(st.sampled_from(["X-Vault-Token", "x-vault-token", "X-VAULT-TOKEN"])), TOKEN_VALUES),
        ("Authorization", AUTHORIZATION_VALUES),
    ):
        choice = draw(st.sampled_from(["absent", "absent", "value", "value", "marker"]))
        if choice == "value":
            headers[header] = draw(st.sampled_from(values))
        elif choice == "marker":
            marker = f"zqtok{draw(st.integers(0, 2**32)):010d}"
            markers.append(marker)
            headers[header] = marker if header != "Authorization" else f"Bearer {marker}"
    return headers, tuple(markers)


def carries_root(headers: dict[str, Any]) -> bool:
    """Whether any header could be read as the root token (lenient about outer whitespace)."""
    for name, value in headers.items():
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        if name.lower() == "x-vault-token" and text.strip() == "root":
            return True
        # Only "Bearer " exactly, as OpenBao's getTokenFromReq reads it.
        if name.lower() == "authorization" and re.fullmatch(r"\s*Bearer +root\s*", text):
            return True
    return False


@FUZZ
@given(op=st.sampled_from(TOKEN_OPS), tokens=token_headers(), body=bodies(ANY_BODY))
def test_fuzz_token_headers(fz: Fuzz, op: str, tokens: Any, body: Body):
    headers, markers = tokens
    dp = fz.provider("dp")
    if op == "create":
        name = fz.fresh("tc")
        method, path, readers = "POST", f"{MOUNT}/key/{name}", [f"{MOUNT}/key/{name}"]
    elif op == "update":
        name = fz.key("token-target")
        method, path, readers = "PUT", f"{MOUNT}/key/{name}", [f"{MOUNT}/key/{name}"]
    elif op == "delete":
        name = fz.key("token-deletable", deletion_allowed=True)
        method, path, readers = "DELETE", f"{MOUNT}/key/{name}", [f"{MOUNT}/key/{name}"]
    elif op == "rotate":
        name = fz.key("token-target")
        method, path, readers = "POST", f"{MOUNT}/key/{name}/rotate", [f"{MOUNT}/key/{name}"]
    elif op == "provider":
        name = fz.fresh("tp")
        method, path, readers = "PUT", f"{MOUNT}/kms/{name}", [f"{MOUNT}/kms/{name}"]
    elif op == "provider-delete":
        name = fz.provider("token-provider")
        method, path, readers = "DELETE", f"{MOUNT}/kms/{name}", [f"{MOUNT}/kms/{name}"]
    elif op == "mount":
        name = fz.fresh("tm")
        method, path, readers = "POST", f"sys/mounts/{name}", ["sys/mounts"]
    elif op == "mount-delete":
        name = fz.fresh("tmd")
        fz.must("POST", f"sys/mounts/{name}", json={"type": "keymgmt"})
        method, path, readers = "DELETE", f"sys/mounts/{name}", ["sys/mounts"]
    else:
        key = fz.distributed(dp, "dist-held")
        path = f"{MOUNT}/kms/{dp}/key/{key}"
        method, readers = "DELETE", [path]
    if op in ("create", "provider", "mount") and body.obj is not None:
        # Give the write a chance to succeed when the token is right.
        valid = {
            "create": {"type": "ecdsa-p256"},
            "provider": {"provider": "azurekeyvault", "key_collection": VAULT},
            "mount": {"type": "keymgmt"},
        }[op]
        body = json_body({**body.obj, **valid}, body.content_type)
    response = probe(
        fz,
        method,
        path,
        body,
        readers=[(r, None) for r in readers],
        headers=headers,
        secrets=markers,
        api=fz.bare,
    )
    if not carries_root(headers):
        assert response.status_code == 403, (
            f"{method} /v1/{path} without the root token (headers {headers!r}) answered "
            f"{response.status_code}: {_short(response.content)}"
        )
        assert response.json() == {"errors": ["permission denied"]}, response.text
