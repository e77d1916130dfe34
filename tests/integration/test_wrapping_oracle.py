"""Response wrapping against the oracle: each case runs on a real OpenBao dev server and on the
local stack (the Functions host over HTTP, tables in Azurite), and both must answer with the
same statuses, error texts and body shapes: ``X-Vault-Wrap-TTL`` on reads, lists, writes and
token creates; ``sys/wrapping/wrap``, ``lookup``, ``unwrap``, ``rewrap``; single use; TTL
parsing; min/max_wrapping_ttl in policies.

The deliberate differences (docs/wrapping.md) are tested on their own at the end: sub-second
TTLs, a token in the URL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.helpers import wait_until

WRAPPING_ENVELOPE = [
    "auth",
    "data",
    "lease_duration",
    "lease_id",
    "renewable",
    "request_id",
    "warnings",
    "wrap_info",
]


class Side:
    """One server: the oracle or the local stack, driven with its root token."""

    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url
        self.session = requests.Session()

    def call(
        self,
        method: str,
        path: str,
        token: str | None = "root",
        body: Any = None,
        wrap: str | None = None,
    ) -> requests.Response:
        headers = {}
        if token is not None:
            headers["X-Vault-Token"] = token
        if wrap is not None:
            headers["X-Vault-Wrap-TTL"] = wrap
        return self.session.request(
            method, f"{self.url}/v1/{path}", headers=headers, json=body, timeout=60
        )

    def wrap(self, data: dict[str, Any], ttl: str = "5m", token: str = "root") -> str:
        response = self.call("POST", "sys/wrapping/wrap", token, data, wrap=ttl)
        assert response.status_code == 200, (self.name, response.text)
        token_id: str = response.json()["wrap_info"]["token"]
        return token_id

    def token(self, body: dict[str, Any]) -> str:
        response = self.call("POST", "auth/token/create", body=body)
        assert response.status_code == 200, (self.name, response.text)
        token_id: str = response.json()["auth"]["client_token"]
        return token_id


def observe(response: requests.Response) -> dict[str, Any]:
    """What a client could notice of an answer, the tokens' own values left out."""
    seen: dict[str, Any] = {"status": response.status_code}
    if not response.content:
        return seen
    body = response.json()
    if "errors" in body:
        seen["errors"] = body["errors"]
        return seen
    seen["keys"] = sorted(body)
    info = body.get("wrap_info")
    if info is not None:
        seen["wrap_info"] = {
            "keys": sorted(info),
            "ttl": info["ttl"],
            "creation_path": info["creation_path"],
            "token": bool(info["token"]),
            "accessor": bool(info["accessor"]) and info["accessor"] != info["token"],
            "wrapped_accessor": bool(info.get("wrapped_accessor")),
        }
        seen["request_id"] = body["request_id"]
        seen["data"] = body["data"]
    seen["warnings"] = body.get("warnings")
    return seen


def observe_data(response: requests.Response) -> dict[str, Any]:
    """An answer with its data (for data both servers produce alike)."""
    seen = observe(response)
    if response.status_code == 200:
        body = response.json()
        data = body.get("data")
        if isinstance(data, dict) and "creation_time" in data:  # a lookup: times differ
            data = {**data, "creation_time": bool(data["creation_time"])}
        seen["data"] = data
        seen["auth"] = sorted(body["auth"]) if body.get("auth") else None
    return seen


# -- the cases ------------------------------------------------------------------------------------


def wrapped_answers(s: Side) -> list[Any]:
    """A read, a list and a token create asked for wrapped; what the token looks like; the
    answer unwrapped once, then never again."""
    seen: list[Any] = []
    read = s.call("GET", "auth/token/lookup-self", wrap="5m")
    seen.append(observe(read))
    token = read.json()["wrap_info"]["token"]
    looked = s.call("POST", "auth/token/lookup", body={"token": token}).json()["data"]
    seen.append(
        {
            k: looked[k]
            for k in (
                "policies",
                "num_uses",
                "orphan",
                "renewable",
                "explicit_max_ttl",
                "creation_ttl",
                "path",
                "meta",
                "type",
            )
        }
    )
    seen.append(observe_data(s.call("POST", "sys/wrapping/lookup", None, {"token": token})))
    unwrapped = s.call("POST", "sys/wrapping/unwrap", token)  # the wrapping token itself
    body = unwrapped.json()
    seen.append([unwrapped.status_code, sorted(body), body["data"]["policies"]])
    seen.append(observe(s.call("POST", "sys/wrapping/unwrap", token)))  # spent: not valid
    seen.append(observe(s.call("POST", "sys/wrapping/unwrap", body={"token": token})))
    seen.append(observe(s.call("POST", "sys/wrapping/lookup", None, {"token": token})))

    listed = s.call("GET", "sys/policies/acl?list=true", wrap="90s")
    seen.append(observe(listed))
    unwrapped = s.call(
        "POST", "sys/wrapping/unwrap", body={"token": listed.json()["wrap_info"]["token"]}
    )
    seen.append([unwrapped.status_code, sorted(unwrapped.json()["data"])])

    created = s.call("POST", "auth/token/create", body={"policies": ["default"]}, wrap="2m")
    seen.append(observe(created))
    info = created.json()["wrap_info"]
    unwrapped = s.call("POST", "sys/wrapping/unwrap", body={"token": info["token"]})
    auth = unwrapped.json()["auth"]
    seen.append([unwrapped.status_code, sorted(auth), auth["accessor"] == info["wrapped_accessor"]])
    seen.append(s.call("GET", "auth/token/lookup-self", auth["client_token"]).status_code)
    return seen


def not_wrapped(s: Side) -> list[Any]:
    """What Vault does not wrap: a 204 write, an error, an answer outside the envelope."""
    policy = 'path "secret/*" { capabilities = ["read"] }'
    return [
        observe(s.call("PUT", "sys/policies/acl/wrapcase", body={"policy": policy}, wrap="5m")),
        observe(s.call("GET", "sys/policies/acl/nonexistent", wrap="5m")),
        observe(s.call("POST", "auth/token/lookup", body={"token": "nonexistent"}, wrap="5m")),
        s.call("GET", "sys/health", None, wrap="5m").json().get("wrap_info", "absent"),
        # The status paths ignore the header, even a bad one.
        s.call("GET", "sys/health", None, wrap="soon").status_code,
        s.call("GET", "sys/seal-status", None, wrap="soon").status_code,
    ]


def the_wrapping_policy(s: Side) -> list[Any]:
    """response-wrapping is built in: it cannot be written or deleted; a wrapping token may
    revoke itself (and then nothing unwraps)."""
    text = 'path "a" { capabilities = ["read"] }'
    token = s.wrap({"a": "b"})
    return [
        observe(s.call("PUT", "sys/policies/acl/response-wrapping", body={"policy": text})),
        observe(s.call("PUT", "sys/policy/response-wrapping", body={"policy": text})),
        observe(s.call("DELETE", "sys/policies/acl/response-wrapping")),
        observe(s.call("POST", "auth/token/revoke-self", token)),
        observe(s.call("POST", "sys/wrapping/lookup", None, {"token": token})),
    ]


TTLS = [
    "abc",
    "-5",
    "0",
    "0s",
    "",
    "5",
    "5m",
    "1.5",
    "1.5s",
    "2h",
    "1h30m",
    "30d",
    "40d",
    "1e3",
    "5M",
    "5d2h",
    "9999999999999",
    "-1h",
]


def ttl_parsing(s: Side) -> list[Any]:
    """X-Vault-Wrap-TTL as Vault parses it: seconds, Go durations, days; bad ones 400, even
    with a bad token (the header is parsed first); 0 and empty mean no wrapping."""
    seen = []
    for ttl in TTLS:
        response = s.call("GET", "auth/token/lookup-self", wrap=ttl)
        view = observe(response)
        view.pop("data", None)
        seen.append((ttl, view))
    seen.append(observe(s.call("GET", "auth/token/lookup-self", "bogus", wrap="abc")))
    return seen


def wrap_endpoint(s: Side) -> list[Any]:
    """sys/wrapping/wrap and rewrap: the body is the data; a rewrap moves it to a new token
    with the creation path and TTL of the first."""
    seen = [observe(s.call("POST", "sys/wrapping/wrap", body={"a": "b"}))]
    wrapped = s.call("POST", "sys/wrapping/wrap", body={"a": "b", "n": 1}, wrap="5m")
    seen.append(observe(wrapped))
    first = wrapped.json()["wrap_info"]["token"]
    seen.append(observe_data(s.call("GET", "sys/wrapping/lookup", first)))
    seen.append(
        observe_data(s.call("POST", "sys/wrapping/lookup", None, {"token": first, "zz": 1}))
    )
    rewrapped = s.call("POST", "sys/wrapping/rewrap", body={"token": first})
    seen.append(observe(rewrapped))
    second = rewrapped.json()["wrap_info"]["token"]
    seen.append(observe(s.call("POST", "sys/wrapping/unwrap", body={"token": first})))
    seen.append(observe_data(s.call("POST", "sys/wrapping/lookup", None, {"token": second})))
    seen.append(observe_data(s.call("POST", "sys/wrapping/unwrap", body={"token": second})))
    nested = {"x": {"y": [1, 2]}, "token": "abc", "empty": ""}
    seen.append(observe_data(s.call("POST", "sys/wrapping/unwrap", body={"token": s.wrap(nested)})))
    # A rewrap asked for a shorter wrap TTL gets it; a longer one keeps the first TTL.
    shorter = s.call("POST", "sys/wrapping/rewrap", body={"token": s.wrap({"a": 1})}, wrap="1m")
    seen.append(observe(shorter))
    longer = s.call("POST", "sys/wrapping/rewrap", body={"token": s.wrap({"a": 1})}, wrap="1h")
    seen.append(observe(longer))
    seen.append(observe(s.call("POST", "sys/wrapping/wrap", body={}, wrap="1m")))
    # An unwrap asked for wrapped is wrapped again, with the unwrap's path.
    again = s.call("POST", "sys/wrapping/unwrap", body={"token": s.wrap({"q": "r"})}, wrap="5m")
    seen.append(observe(again))
    token = again.json()["wrap_info"]["token"]
    seen.append(observe_data(s.call("POST", "sys/wrapping/unwrap", body={"token": token})))
    return seen


def refusals(s: Side) -> list[Any]:
    """Tokens that are no wrapping token, and values that are no token."""
    live = s.wrap({"a": "b"})
    return [
        observe(s.call("POST", "sys/wrapping/unwrap", body={"token": ""})),
        observe(s.call("POST", "sys/wrapping/unwrap", body={"token": 5})),
        observe(s.call("POST", "sys/wrapping/unwrap", body={})),
        observe(s.call("POST", "sys/wrapping/unwrap", body={"token": "s.bogus"})),
        observe(s.call("POST", "sys/wrapping/unwrap", body={"token": "root"})),
        observe(s.call("POST", "sys/wrapping/rewrap", body={"token": "s.bogus"})),
        observe(s.call("POST", "sys/wrapping/rewrap", body={})),
        observe(s.call("POST", "sys/wrapping/lookup", None, {})),
        observe(s.call("POST", "sys/wrapping/lookup", None, {"token": ""})),
        observe(s.call("POST", "sys/wrapping/lookup", None, {"token": "s.bogus"})),
        observe(s.call("POST", "sys/wrapping/lookup", body={})),  # root: no wrapping token
        # The wrapping token may unwrap, nothing else; using it elsewhere spends it.
        observe(s.call("POST", "sys/wrapping/rewrap", live)),
        observe(s.call("POST", "sys/wrapping/unwrap", live)),
    ]


def refused_callers(s: Side) -> list[Any]:
    """An unwrap or rewrap whose own token is refused answers about the wrapping token (Vault
    validates it first): not valid (400), none at all (403), or, for a valid one in the body,
    the caller's 403; nothing is spent."""
    kept = s.wrap({"a": "b"})
    return [
        observe(s.call("POST", "sys/wrapping/unwrap", None, {"token": "s.bogus"})),
        observe(s.call("POST", "sys/wrapping/unwrap", None, {})),
        observe(s.call("POST", "sys/wrapping/unwrap", None, {"token": ""})),
        observe(s.call("POST", "sys/wrapping/unwrap", None, {"token": 7})),
        observe(s.call("POST", "sys/wrapping/unwrap", None, {"token": kept})),
        observe(s.call("POST", "sys/wrapping/unwrap", "s.bogus", {})),
        observe(s.call("POST", "sys/wrapping/unwrap", "s.bogus", {"token": kept})),
        observe(s.call("POST", "sys/wrapping/rewrap", None, {"token": "s.bogus"})),
        observe(s.call("POST", "sys/wrapping/rewrap", "s.bogus", {"token": kept})),
        observe_data(s.call("POST", "sys/wrapping/unwrap", body={"token": kept})),  # not spent
    ]


POLICIES = {
    "wrap-bounds": (
        'path "auth/token/lookup-self" { capabilities = ["read"] min_wrapping_ttl = "1m" '
        'max_wrapping_ttl = "10m" }\n'
        'path "sys/wrapping/wrap" { capabilities = ["update"] max_wrapping_ttl = "2m" }\n'
        'path "sys/wrapping/unwrap" { capabilities = ["update"] }'
    ),
    "no-unwrap": 'path "auth/token/lookup-self" { capabilities = ["read"] }',
}


def policy_bounds(s: Side) -> list[Any]:
    """min/max_wrapping_ttl: a request on such a rule must ask for wrapping within them; the
    default policy lets any token unwrap a token it was given; without it, none."""
    bounded = s.token({"policies": ["wrap-bounds"], "no_default_policy": True})
    seen = [
        observe(s.call("GET", "auth/token/lookup-self", bounded, wrap=ttl)).get("status")
        for ttl in (None, "30s", "1m", "5m", "10m", "11m")
    ]
    seen += [
        observe(s.call("POST", "sys/wrapping/wrap", bounded, {"a": 1}, wrap=ttl)).get("status")
        for ttl in ("3m", "2m")
    ]
    plain = s.token({"policies": ["default"]})
    seen.append(
        observe_data(s.call("POST", "sys/wrapping/unwrap", plain, {"token": s.wrap({"a": "b"})}))
    )
    bare = s.token({"policies": ["no-unwrap"], "no_default_policy": True})
    kept = s.wrap({"a": "b"})
    seen.append(observe(s.call("POST", "sys/wrapping/unwrap", bare, {"token": kept})))
    seen.append(observe_data(s.call("POST", "sys/wrapping/unwrap", body={"token": kept})))
    return seen


def expiry(s: Side) -> list[Any]:
    """A wrapping token ends with its TTL: lookup and unwrap answer as for any invalid one."""
    token = s.wrap({"a": "b"}, ttl="1s")
    wait_until(
        lambda: s.call("POST", "sys/wrapping/lookup", None, {"token": token}).status_code != 200,
        timeout=20,
        what=f"{s.name}: the wrapping token to expire",
    )
    return [
        observe(s.call("POST", "sys/wrapping/lookup", None, {"token": token})),
        observe(s.call("POST", "sys/wrapping/unwrap", body={"token": token})),
        observe(s.call("POST", "sys/wrapping/rewrap", body={"token": token})),
    ]


CASES: list[Callable[[Side], list[Any]]] = [
    wrapped_answers,
    not_wrapped,
    the_wrapping_policy,
    ttl_parsing,
    wrap_endpoint,
    refusals,
    refused_callers,
    policy_bounds,
    expiry,
]


@pytest.fixture(scope="module")
def sides(openbao: Any, funchost: Any) -> tuple[Side, Side]:
    oracle, local = Side("openbao", openbao.url), Side("local", funchost.url)
    for side in (oracle, local):
        for name, text in POLICIES.items():
            written = side.call("PUT", f"sys/policies/acl/{name}", body={"policy": text})
            assert written.status_code == 204, written.text
    return oracle, local


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_wrapping_answers_as_openbao_does(sides: tuple[Side, Side], case: Any) -> None:
    oracle, local = sides
    expected, got = case(oracle), case(local)
    assert len(expected) == len(got)
    for step, (want, have) in enumerate(zip(expected, got, strict=True)):
        assert have == want, f"{case.__name__}, step {step}"


# -- deliberate differences, each pinned on both sides ---------------------------------------


def test_a_sub_second_ttl_is_one_second_here(sides: tuple[Side, Side]) -> None:
    """OpenBao truncates 500ms to a 0 s token that never unwraps; here a positive TTL is at
    least 1 s (the token store's ParseDurationSecond rule)."""
    oracle, local = sides
    assert (
        oracle.call("GET", "auth/token/lookup-self", wrap="500ms").json()["wrap_info"]["ttl"] == 0
    )
    assert local.call("GET", "auth/token/lookup-self", wrap="500ms").json()["wrap_info"]["ttl"] == 1


def test_a_token_in_the_url_is_refused_here(sides: tuple[Side, Side]) -> None:
    """OpenBao looks up ?token=; here no token is taken from the URL (it would be logged)."""
    oracle, local = sides
    token = oracle.wrap({"a": "b"})
    assert (
        oracle.session.get(
            f"{oracle.url}/v1/sys/wrapping/lookup", params={"token": token}
        ).status_code
        == 200
    )
    token = local.wrap({"a": "b"})
    refused = local.session.get(f"{local.url}/v1/sys/wrapping/lookup", params={"token": token})
    assert refused.status_code == 400
    assert "never taken from the URL" in refused.json()["errors"][0]
    assert token not in refused.text
    # Not spent: it still unwraps.
    assert local.call("POST", "sys/wrapping/unwrap", body={"token": token}).json()["data"] == {
        "a": "b"
    }
