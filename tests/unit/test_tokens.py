"""The token store's pure parts: Go durations, Vault's policy, name and TTL rules, and how a
token renders. The expected values are OpenBao 2.7.2's answers to the same input."""

import datetime as dt
import json

import pytest

from shared.api import tokens as api
from shared.errors import InvalidRequest
from shared.records import TokenInfo
from shared.tokens import (
    calculate_ttl,
    display_name,
    expiry_slot,
    resolve_policies,
    sanitize_policies,
)

H = 3600
MAX = 768 * H

# -- the token store's rules ----------------------------------------------------------------


def test_policies_are_sanitized_as_vault_does():
    assert sanitize_policies(["B", "a", "a", " ", ""], True) == ["a", "b", "default"]
    assert sanitize_policies(["p1", "root", "p2"], True) == ["root"]
    assert sanitize_policies([], True) == ["default"]
    assert sanitize_policies([], False) == []
    assert sanitize_policies(["a,b"], False) == ["a,b"]  # never comma-split


@pytest.mark.parametrize(
    ("requested", "parent", "sudo", "no_default", "expected"),
    [
        ([], ["root"], True, False, ["root"]),
        (["p1"], ["root"], True, False, ["default", "p1"]),
        (["default"], ["root"], True, True, []),
        ([], ["default", "tokadmin"], False, False, ["default", "tokadmin"]),
        ([], ["default", "tokadmin"], False, True, ["tokadmin"]),
        (["tokadmin"], ["default", "tokadmin"], False, True, ["tokadmin"]),
        (["tokadmin"], ["default", "tokadmin"], False, False, ["default", "tokadmin"]),
        (["default"], ["default", "tokadmin"], False, False, ["default"]),
        (["TokAdmin"], ["tokadmin"], False, False, ["tokadmin"]),  # no default: parent has none
    ],
)
def test_policies_resolve_as_vault_resolves_them(requested, parent, sudo, no_default, expected):
    assert resolve_policies(requested, parent, sudo=sudo, no_default_policy=no_default) == expected


def test_a_child_without_sudo_gets_only_a_subset_of_its_parents_policies():
    with pytest.raises(InvalidRequest, match=r"^child policies must be subset of parent$"):
        resolve_policies(["reader"], ["default", "tokadmin"], sudo=False, no_default_policy=False)
    with pytest.raises(InvalidRequest, match=r"^child policies must be subset of parent$"):
        resolve_policies(["root"], ["default", "tokadmin"], sudo=False, no_default_policy=False)
    with pytest.raises(InvalidRequest, match=r'^cannot assign policy "response-wrapping"$'):
        resolve_policies(["response-wrapping"], ["root"], sudo=True, no_default_policy=False)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("", "token"),
        ("my app", "token-my-app"),
        ("My App!", "token-My-App"),
        ("a!!", "token-a-"),  # one trailing dash trimmed, as Vault's TrimSuffix
        ("terraform", "token-terraform"),
        ("ci/cd:é", "token-ci-cd-"),
    ],
)
def test_display_names_are_sanitized_as_vault_does(name, expected):
    assert display_name(name) == expected


def ttl(**options):
    values = {
        "increment": 0,
        "backend_ttl": 0,
        "period": 0,
        "explicit_max_ttl": 0,
        "start": 1000,
        "now": 1000,
        "default_ttl": MAX,
        "max_ttl": MAX,
    }
    return calculate_ttl(**{**values, **options})


def test_ttls_follow_vaults_calculation():
    assert ttl() == (MAX, [])
    assert ttl(backend_ttl=H) == (H, [])
    assert ttl(backend_ttl=2 * H, explicit_max_ttl=1200) == (
        1200,
        ['TTL of "2h" exceeded the effective max_ttl of "20m"; TTL value is capped accordingly'],
    )
    assert ttl(backend_ttl=1000 * H) == (
        MAX,
        [
            'TTL of "1000h" exceeded the effective max_ttl of "768h"; TTL value is capped '
            "accordingly"
        ],
    )
    assert ttl(period=1800) == (1800, [])
    assert ttl(period=1000 * H) == (
        MAX,
        [
            'period of "1000h" exceeded the effective max_ttl of "768h"; period value is '
            "capped accordingly"
        ],
    )
    # Periodic: no limit from creation unless an explicit max is set.
    assert ttl(period=1800, now=1000 + 2 * MAX) == (1800, [])
    assert ttl(period=1800, explicit_max_ttl=3600, now=1000 + 3000)[0] == 600


def test_a_renewal_counts_from_the_tokens_creation_and_can_shorten_it():
    assert ttl(increment=300, backend_ttl=1800, now=1100) == (300, [])
    assert ttl(increment=0, backend_ttl=1200, now=1100) == (1200, [])  # its last TTL again
    assert ttl(increment=3600, explicit_max_ttl=1800, now=1100)[0] == 1700
    with pytest.raises(InvalidRequest, match="past the max TTL, cannot renew"):
        ttl(increment=60, explicit_max_ttl=60, now=1060)


def test_the_expiry_index_sorts_by_time():
    early = expiry_slot(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "hbbb")
    late = expiry_slot(dt.datetime(2030, 1, 1, tzinfo=dt.UTC), "haaa")
    assert early < late and early.endswith(":hbbb") and len(early.split(":")[0]) == 12


# -- field decoding -------------------------------------------------------------------------


def test_fields_decode_as_vaults_framework_decodes_them():
    assert api._duration(90, "ttl") == 90
    assert api._duration(True, "ttl") == 1  # TypeString holds a boolean as "1"
    assert api._duration("", "ttl") is None
    assert api._duration("1h0m0s", "ttl") == 3600
    assert api._string_list("a,b", "policies") == ["a,b"]
    assert api._string_list(["a", 1], "policies") == ["a", "1"]
    assert api._increment(1800, "increment") == 1800
    assert api._increment("30m", "increment") == 1800
    with pytest.raises(InvalidRequest) as refused:
        api._increment("-1h", "increment")
    assert refused.value.messages == [
        'Field validation failed: error converting input for field "increment": cannot '
        "provide negative value '-3600'"
    ]
    with pytest.raises(InvalidRequest) as refused:
        api._increment("x", "increment")
    assert refused.value.messages == [
        'Field validation failed: error converting input for field "increment": time: '
        'invalid duration "x"'
    ]


# -- rendering ------------------------------------------------------------------------------

WHEN = dt.datetime(2026, 12, 1, 19, 45, 15, 764500, tzinfo=dt.UTC)


def test_times_render_as_gos_rfc3339_with_trailing_zeros_trimmed():
    assert api.go_time(WHEN) == "2026-12-01T19:45:15.7645Z"
    assert api.go_time(WHEN.replace(microsecond=0)) == "2026-12-01T19:45:15Z"


def test_a_lookup_renders_vaults_fields_sorted():
    token = TokenInfo(
        id="hvs.x",
        accessor="acc",
        display_name="token-My-App",
        policies=("default", "kms-admin"),
        path="auth/token/create",
        renewable=True,
        ttl=3599,
        creation_ttl=3600,
        lease_ttl=3600,
        explicit_max_ttl=7200,
        num_uses=5,
        creation_time=1796154315,
        issue_time=WHEN,
        expire_time=WHEN + dt.timedelta(hours=1),
        meta={"team": "kms"},
    )
    assert json.dumps(api.render_lookup(token)) == (
        '{"accessor": "acc", "creation_time": 1796154315, "creation_ttl": 3600, '
        '"display_name": "token-My-App", "entity_id": "", "expire_time": '
        '"2026-12-01T20:45:15.7645Z", "explicit_max_ttl": 7200, "id": "hvs.x", '
        '"issue_time": "2026-12-01T19:45:15.7645Z", "meta": {"team": "kms"}, "num_uses": 5, '
        '"orphan": false, "path": "auth/token/create", "policies": ["default", "kms-admin"], '
        '"renewable": true, "ttl": 3599, "type": "service"}'
    )
    renewed = api.render_lookup(
        TokenInfo(
            id="",
            accessor="a",
            display_name="t",
            policies=(),
            path="p",
            period=1800,
            last_renewal=WHEN,
        )
    )
    assert renewed["last_renewal"] == "2026-12-01T19:45:15.7645Z"
    assert renewed["last_renewal_time"] == int(WHEN.timestamp()) and renewed["period"] == 1800
    assert list(renewed) == sorted(renewed)


def test_the_auth_block_has_vaults_fields_in_vaults_order():
    token = TokenInfo(
        id="hvs.x",
        accessor="acc",
        display_name="t",
        policies=("default",),
        path="p",
        lease_ttl=3600,
        renewable=True,
    )
    assert json.dumps(api.render_auth(token)) == (
        '{"client_token": "hvs.x", "accessor": "acc", "policies": ["default"], '
        '"token_policies": ["default"], "metadata": null, "lease_duration": 3600, '
        '"renewable": true, "entity_id": "", "token_type": "service", "orphan": false, '
        '"mfa_requirement": null, "num_uses": 0}'
    )
    bare = api.render_auth(
        TokenInfo(id="", accessor="acc", display_name="t", policies=(), path="p")
    )
    assert "token_policies" not in bare and bare["policies"] == []  # Vault's omitempty
