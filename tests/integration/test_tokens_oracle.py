"""The token store against the oracle: each case runs on a real OpenBao dev server and on the
local stack, over HTTP, and both must answer with the same statuses, error texts, warnings and
body shapes (the values that are the token store's, too: policies, TTLs, flags, uses).

Known, deliberate differences stay out of these cases and are tested on their own in
test_tokens_api.py: token ids (``s.`` there, ``hvs.`` here), batch tokens (not issued here),
the root token's display name and path (from settings here), and ACL denials (policies are
enforced by a later step; a policy the cases need is written on whichever side has them).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.helpers import wait_until

ADMIN_POLICY = (
    'path "auth/token/*" { capabilities = ["create", "read", "update", "delete", "list"] }'
)


@dataclass(frozen=True)
class Approx:
    """A number of seconds that may differ by a tick or two between the two runs."""

    value: int

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Approx) and abs(self.value - other.value) <= 3

    def __hash__(self) -> int:
        return 0


class Side:
    """One server: the oracle or the local stack, driven with its root token."""

    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url
        self.session = requests.Session()

    def call(self, method: str, path: str, token: str = "root", body: Any = None) -> Any:
        response = self.session.request(
            method,
            f"{self.url}/v1/{path}",
            headers={"X-Vault-Token": token},
            json=body,
            timeout=60,
        )
        return response

    def token(self, body: dict[str, Any], token: str = "root") -> tuple[str, str]:
        response = self.call("POST", "auth/token/create", token, body)
        assert response.status_code == 200, (self.name, response.text)
        auth = response.json()["auth"]
        return auth["client_token"], auth["accessor"]

    def admin(self, **extra: Any) -> tuple[str, str]:
        """A token with policy ``tokadmin`` (update on auth/token/*, no sudo): a caller that
        is not root."""
        return self.token({"policies": ["tokadmin"], **extra})


_CAPPED = re.compile(r'(max_ttl of )"[^"]*"')


def _warnings(body: dict[str, Any]) -> list[str] | None:
    warnings = [
        _CAPPED.sub(r'\1"<left>"', w)
        for w in body.get("warnings") or []
        if w != 'Policy "tokadmin" does not exist'
    ]
    return warnings or None


def _auth(auth: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in auth.items() if k not in ("client_token", "accessor")}
    view["client_token"] = bool(auth["client_token"])
    view["accessor"] = bool(auth["accessor"])
    view["lease_duration"] = Approx(auth["lease_duration"])
    view["keys"] = sorted(auth)
    return view


def _lookup(data: dict[str, Any]) -> dict[str, Any]:
    view = {
        k: data[k]
        for k in (
            "creation_ttl",
            "display_name",
            "entity_id",
            "explicit_max_ttl",
            "meta",
            "num_uses",
            "orphan",
            "path",
            "policies",
            "renewable",
            "type",
            "period",
        )
        if k in data
    }
    view["keys"] = sorted(data)
    view["ttl"] = Approx(data["ttl"])
    view["id"] = bool(data["id"])
    view["expires"] = data["expire_time"] is not None
    return view


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
    seen["warnings"] = _warnings(body)
    seen["envelope"] = (body["lease_id"], body["renewable"], body["lease_duration"])
    if body.get("auth"):
        seen["auth"] = _auth(body["auth"])
    if body.get("data"):
        seen["data"] = _lookup(body["data"])
    return seen


# -- the cases: each drives one side and returns what it saw ------------------------------------


def creates(s: Side) -> list[Any]:
    bodies = [
        {"policies": ["default"], "ttl": "1h", "display_name": "my app", "meta": {"team": "kms"}},
        {"policies": ["default", "foo"], "ttl": "10m", "explicit_max_ttl": "1h"},
        {},
        {"period": "30m", "policies": ["p1"]},
        {"no_parent": True, "policies": ["default"]},
        {"policies": "a,b"},
        {"policies": ["B", "a", "a", " "], "foo": 1},
        {"policies": ["root", "p1"]},
        {"policies": ["default"], "no_default_policy": True},
        {"ttl": "2h", "explicit_max_ttl": "20m", "policies": ["default"]},
        {"ttl": "1000h", "policies": ["default"]},
        {"period": "1000h", "policies": ["default"]},
        {"ttl": 90, "renewable": False, "policies": ["default"]},
        {"ttl": "2d", "num_uses": 3, "policies": ["default"]},
        {"lease": "5m", "policies": ["default"]},
        {"ttl": "0s", "explicit_max_ttl": "0s", "period": "0s", "policies": ["default"]},
        {"display_name": "My App!", "policies": ["default"]},
        {"display_name": "a!!", "policies": ["default"]},
        {"explicit_max_ttl": "1h"},
        # Terraform's child token, and the CLI's defaults.
        {
            "ttl": "1200s",
            "explicit_max_ttl": "1200s",
            "display_name": "terraform",
            "num_uses": 0,
            "renewable": False,
            "type": "",
            "entity_alias": "",
        },
        {
            "policies": ["default"],
            "meta": {"team": "kms"},
            "ttl": "1h0m0s",
            "explicit_max_ttl": "0s",
            "period": "0s",
            "display_name": "ci",
            "num_uses": 0,
            "renewable": True,
            "type": "service",
            "entity_alias": "",
        },
    ]
    return [observe(s.call("POST", "auth/token/create", body=body)) for body in bodies]


def refusals(s: Side) -> list[Any]:
    bodies = [
        {"type": "bogus"},
        {"num_uses": -1},
        {"ttl": "bogus"},
        {"ttl": "-5s"},
        {"ttl": -5},
        {"ttl": "90.5"},
        {"ttl": "1x"},
        {"ttl": "1.5d"},
        {"ttl": " 1h "},
        {"explicit_max_ttl": "-1h"},
        {"explicit_max_ttl": "nope"},
        {"period": "-1m"},
        {"entity_alias": "x"},
        {"policies": ["response-wrapping"]},
        {"id": "s.custom"},
        {"id": "a.b"},
    ]
    return [observe(s.call("POST", "auth/token/create", body=body)) for body in bodies]


def orphan_and_root_rules(s: Side) -> list[Any]:
    seen = [observe(s.call("POST", "auth/token/create-orphan", body={"policies": ["default"]}))]
    expiring_root, _ = s.token({"ttl": "1h"})
    seen.append(observe(s.call("POST", "auth/token/create", expiring_root, {})))
    seen.append(observe(s.call("POST", "auth/token/create", expiring_root, {"ttl": "10m"})))
    return seen


def non_root_parent(s: Side) -> list[Any]:
    parent, _ = s.admin(ttl="1h")
    bodies = [
        {"policies": ["reader"]},
        {},
        {"policies": ["root"]},
        {"no_default_policy": True},
        {"policies": ["tokadmin"], "no_default_policy": True},
        {"policies": ["default"]},
        {"id": "custom"},
        {"period": "1h"},
        {"no_parent": True},
        {"ttl": "2h"},
        {"ttl": "bogus"},
    ]
    seen = [observe(s.call("POST", "auth/token/create", parent, body)) for body in bodies]
    seen.append(observe(s.call("POST", "auth/token/create-orphan", parent, {})))
    seen.append(observe(s.call("POST", "auth/token/revoke-orphan", parent, {"token": parent})))
    return seen


def lookups(s: Side) -> list[Any]:
    token, accessor = s.token(
        {"policies": ["default"], "ttl": "1h", "num_uses": 5, "meta": {"env": "dev"}}
    )
    return [
        observe(s.call("POST", "auth/token/lookup", body={"token": token})),
        observe(s.call("GET", "auth/token/lookup-self", token)),
        observe(s.call("POST", "auth/token/lookup", s.admin()[0], {})),
        observe(s.call("POST", "auth/token/lookup-accessor", body={"accessor": accessor})),
        observe(s.call("POST", "auth/token/lookup-accessor", body={"accessor": "nope"})),
        observe(s.call("POST", "auth/token/lookup-accessor", body={})),
        observe(s.call("POST", "auth/token/lookup", body={"token": "nope"})),
        observe(s.call("GET", "auth/token/lookup-self", "nope")),
        observe(s.call("GET", "auth/token/lookup-self", "")),
        # The root token: from settings here, so its name and path differ; its fields do not.
        sorted(s.call("GET", "auth/token/lookup-self").json()["data"]),
    ]


def limited_uses(s: Side) -> list[Any]:
    token, _ = s.token({"num_uses": 2, "policies": ["default"]})
    seen = [observe(s.call("GET", "auth/token/lookup-self", token)) for _ in range(3)]
    parent, _ = s.admin(num_uses=3)
    seen.append(observe(s.call("POST", "auth/token/create", parent, {})))
    once, _ = s.token({"num_uses": 1, "policies": ["default"]})
    seen.append(observe(s.call("POST", "auth/token/renew-self", once, {})))
    seen.append(observe(s.call("GET", "auth/token/lookup-self", once)))
    last, _ = s.token({"num_uses": 1, "policies": ["default"]})
    seen.append(observe(s.call("PUT", "auth/token/revoke-self", last)))
    return seen


def renewals(s: Side) -> list[Any]:
    token, accessor = s.token({"policies": ["default"], "ttl": "10m", "explicit_max_ttl": "30m"})
    fixed, _ = s.token({"policies": ["default"], "ttl": "10m", "renewable": False})
    periodic, _ = s.token({"policies": ["default"], "period": "5m"})
    return [
        observe(s.call("POST", "auth/token/renew", body={"token": token, "increment": "20m"})),
        observe(s.call("POST", "auth/token/renew", body={"token": token})),
        observe(s.call("POST", "auth/token/renew-self", token, {"increment": "1h"})),
        observe(
            s.call(
                "POST", "auth/token/renew-accessor", body={"accessor": accessor, "increment": "5m"}
            )
        ),
        observe(s.call("PUT", "auth/token/renew-self", token, {"increment": 0})),  # its last TTL
        observe(s.call("POST", "auth/token/lookup", body={"token": token})),
        observe(s.call("POST", "auth/token/renew", body={"token": fixed})),
        observe(s.call("POST", "auth/token/renew", body={"token": periodic, "increment": "1h"})),
        observe(s.call("POST", "auth/token/renew-self", body={})),
        observe(s.call("POST", "auth/token/renew", body={"token": "nope"})),
        observe(s.call("POST", "auth/token/renew", body={})),
        observe(s.call("POST", "auth/token/renew", body={"token": token, "increment": "-1h"})),
        observe(s.call("POST", "auth/token/renew", body={"token": token, "increment": "x"})),
        observe(s.call("POST", "auth/token/renew-accessor", body={"accessor": "nope"})),
        observe(s.call("POST", "auth/token/renew-accessor", body={})),
    ]


def revocations(s: Side) -> list[Any]:
    parent, _ = s.admin(ttl="1h")
    child, child_accessor = s.token({}, parent)
    grandchild, _ = s.token({"policies": ["default"]}, child)
    seen = [
        observe(s.call("PUT", "auth/token/revoke", body={"token": "nope"})),
        observe(s.call("PUT", "auth/token/revoke", body={})),
        observe(s.call("POST", "auth/token/revoke-accessor", body={"accessor": "nope"})),
        observe(s.call("POST", "auth/token/revoke-accessor", body={})),
        observe(s.call("PUT", "auth/token/revoke-orphan", body={})),
        observe(s.call("PUT", "auth/token/revoke-orphan", body={"token": "nope"})),
        observe(s.call("PUT", "auth/token/revoke", body={"token": parent})),
    ]
    for token in (parent, child, grandchild):
        seen.append(observe(s.call("POST", "auth/token/lookup", body={"token": token})))
        seen.append(observe(s.call("GET", "auth/token/lookup-self", token)))
    seen.append(
        observe(s.call("POST", "auth/token/lookup-accessor", body={"accessor": child_accessor}))
    )
    # revoke-self and revoke-accessor take the subtree too.
    top, _ = s.admin()
    below, _ = s.token({"policies": ["default"]}, top)
    seen.append(observe(s.call("PUT", "auth/token/revoke-self", top)))
    seen.append(observe(s.call("GET", "auth/token/lookup-self", below)))
    top, top_accessor = s.admin()
    below, _ = s.token({"policies": ["default"]}, top)
    seen.append(
        observe(s.call("POST", "auth/token/revoke-accessor", body={"accessor": top_accessor}))
    )
    seen.append(observe(s.call("GET", "auth/token/lookup-self", below)))
    return seen


def orphaning(s: Side) -> list[Any]:
    parent, _ = s.admin()
    child, _ = s.token({}, parent)
    grandchild, _ = s.token({"policies": ["default"]}, child)
    return [
        observe(s.call("PUT", "auth/token/revoke-orphan", body={"token": parent})),
        observe(s.call("GET", "auth/token/lookup-self", parent)),
        observe(s.call("GET", "auth/token/lookup-self", child)),
        observe(s.call("GET", "auth/token/lookup-self", grandchild)),
        observe(s.call("PUT", "auth/token/revoke", body={"token": child})),
        observe(s.call("GET", "auth/token/lookup-self", grandchild)),
    ]


def expiry(s: Side) -> list[Any]:
    """A token's TTL ends it, and a parent's end ends its children, grandchildren too, though
    their own TTLs are longer; an orphan it created lives on."""
    parent, _ = s.admin(ttl="3s")
    child, _ = s.token({"ttl": "1h"}, parent)
    grandchild, _ = s.token({"policies": ["default"], "ttl": "1h"}, child)
    orphan = s.call("POST", "auth/token/create-orphan", parent, {"policies": ["default"]})
    orphan_token = orphan.json()["auth"]["client_token"]
    seen = [observe(s.call("GET", "auth/token/lookup-self", child))]
    wait_until(
        lambda: s.call("GET", "auth/token/lookup-self", parent).status_code == 403,
        timeout=30,
        what=f"{s.name}: the parent to expire",
    )
    wait_until(
        lambda: s.call("POST", "auth/token/lookup", body={"token": child}).status_code == 403,
        timeout=30,
        what=f"{s.name}: the child to go with its parent",
    )
    seen += [
        observe(s.call("GET", "auth/token/lookup-self", parent)),
        observe(s.call("GET", "auth/token/lookup-self", child)),
        observe(s.call("GET", "auth/token/lookup-self", grandchild)),
        observe(s.call("POST", "auth/token/lookup", body={"token": grandchild})),
        observe(s.call("GET", "auth/token/lookup-self", orphan_token)),
    ]
    return seen


def renewed_parent(s: Side) -> list[Any]:
    """A parent renewed past its first TTL keeps its child working past it."""
    parent, _ = s.admin(ttl="4s")
    child, _ = s.token({"policies": ["default"], "ttl": "1h"}, parent)
    seen = [observe(s.call("POST", "auth/token/renew", body={"token": parent, "increment": "1h"}))]
    time.sleep(5)  # past the parent's first TTL
    seen.append(observe(s.call("GET", "auth/token/lookup-self", child)))
    seen.append(observe(s.call("GET", "auth/token/lookup-self", parent)))
    return seen


CASES: list[Callable[[Side], list[Any]]] = [
    creates,
    refusals,
    orphan_and_root_rules,
    non_root_parent,
    lookups,
    limited_uses,
    renewals,
    revocations,
    orphaning,
    expiry,
    renewed_parent,
]


@pytest.fixture(scope="module")
def sides(openbao: Any, funchost: Any) -> tuple[Side, Side]:
    oracle, local = Side("openbao", openbao.url), Side("local", funchost.url)
    for side in (oracle, local):
        written = side.call("PUT", "sys/policies/acl/tokadmin", body={"policy": ADMIN_POLICY})
        assert written.status_code in (204, 404), written.text  # 404: no policies here yet
    return oracle, local


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_the_token_store_answers_as_openbao_does(sides: tuple[Side, Side], case: Any) -> None:
    oracle, local = sides
    expected, got = case(oracle), case(local)
    assert len(expected) == len(got)
    for step, (want, have) in enumerate(zip(expected, got, strict=True)):
        assert have == want, f"{case.__name__}, step {step}"
