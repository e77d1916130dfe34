"""shared.policy: parsing, matching, merging, parameters, sudo, root and default.

Cases come from Vault's policy documentation and from the reference's OpenBao captures
(/work/shared/reference/vault-auth-policy-audit.md §3); tests/integration/test_policy_openbao.py
checks the same ground against a live OpenBao.
"""

from __future__ import annotations

import pytest

from shared import policy
from shared.errors import InvalidRequest
from shared.policy import ACL, parse


def acl(*texts: str) -> ACL:
    return ACL([parse(f"p{i}", text) for i, text in enumerate(texts)])


def refused(text: str) -> str:
    with pytest.raises(InvalidRequest) as caught:
        parse("p", text)
    return str(caught.value)


# -- which rule applies (reference §3.2, captured on OpenBao 2.7.2) -----------------------------

PRIO = """
path "keymgmt/*"              { capabilities = ["read"] }
path "keymgmt/key/*"          { capabilities = ["list"] }
path "keymgmt/key/prod-*"     { capabilities = ["update"] }
path "keymgmt/kms/+/key/*"    { capabilities = ["create"] }
path "keymgmt/kms/azure/key/*" { capabilities = ["delete"] }
path "keymgmt/kms/+/key/exact" { capabilities = ["sudo"] }
path "keymgmt/key/denied"     { capabilities = ["deny"] }
path "keymgmt/+/+"            { capabilities = ["patch"] }
"""
PRIO2 = """
path "keymgmt/key/denied" { capabilities = ["read"] }
path "keymgmt/key/prod-a" { capabilities = ["read"] }
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("keymgmt/x", ["read"]),  # only keymgmt/*
        ("keymgmt/key/a", ["list"]),  # glob at 12 beats keymgmt/+/+ (+ at 8)
        ("keymgmt/key/a/rotate", ["list"]),  # a prefix glob covers deeper paths
        ("keymgmt/key/prod-1", ["update"]),  # longest prefix
        ("keymgmt/key/prod-a", ["read"]),  # an exact rule beats any glob
        ("keymgmt/key/denied", ["deny"]),  # one path in two policies: deny wins the merge
        ("keymgmt/kms/a", ["patch"]),  # same first position: non-glob wins
        ("keymgmt/kms/a/key", ["read"]),  # keymgmt/+/+ needs exactly three segments
        ("keymgmt/kms/aws/key/k1", ["create"]),
        ("keymgmt/kms/azure/key/k1", ["delete"]),  # glob at 22 beats + at 12
        ("keymgmt/kms/azure/key/exact", ["delete"]),  # position before non-glob
        ("keymgmt/kms/x/y/key/z", ["read"]),  # + is one segment
        ("keymgmt/kms/", ["patch"]),  # + matches the empty segment after the slash
        ("/keymgmt/x", ["read"]),  # leading slashes ignored
        ("elsewhere", ["deny"]),  # nothing matches
    ],
)
def test_priority_demo(path, expected):
    assert acl(PRIO, PRIO2).capabilities(path) == expected


@pytest.mark.parametrize(
    ("rules", "path", "expected"),
    [
        # Vault docs, "priority": the more specific rule wins, whatever it grants
        (
            'path "secret/*" { capabilities = ["create"] }\npath "secret/foo" { capabilities = '
            '["read"] }',
            "secret/foo",
            ["read"],
        ),
        # ... and a broad deny does not beat a specific allow on another path string
        (
            'path "secret/*" { capabilities = ["deny"] }\npath "secret/foo" { capabilities = '
            '["read"] }',
            "secret/foo",
            ["read"],
        ),
        ('path "secret/+/teamb" { capabilities = ["read"] }', "secret/foo/teamb", ["read"]),
        ('path "secret/+/teamb" { capabilities = ["read"] }', "secret/foo/bar/teamb", ["deny"]),
        ('path "secret/+/+/teamb" { capabilities = ["read"] }', "secret/a/b/teamb", ["read"]),
        # foo/+/bar over foo/+/ba* (non-glob), fewer +, then longer, then greater
        (
            'path "f/+/bar" { capabilities = ["read"] }\npath "f/+/ba*" { capabilities = '
            '["list"] }',
            "f/x/bar",
            ["read"],
        ),
        (
            'path "f/+/bar/baz" { capabilities = ["read"] }\npath "f/+/+/baz" { capabilities = '
            '["list"] }',
            "f/x/bar/baz",
            ["read"],
        ),
        (
            'path "f/+/bar/ba*" { capabilities = ["read"] }\npath "f/+/bar/b*" { capabilities = '
            '["list"] }',
            "f/x/bar/baz",
            ["read"],
        ),
        (
            'path "f/+/bar/+" { capabilities = ["read"] }\npath "f/+/+/baz" { capabilities = '
            '["list"] }',
            "f/x/bar/baz",
            ["read"],
        ),
        # a prefix beats a + pattern at the same position with more wildcards (OpenBao does so)
        (
            'path "k/*" { capabilities = ["list"] }\npath "k/+/r/*" { capabilities = ["deny"] }',
            "k/x/r/y",
            ["list"],
        ),
        # "*" is a glob only at the end; in the middle it is a character
        ('path "a/*/b" { capabilities = ["read"] }', "a/x/b", ["deny"]),
        ('path "a/*/b" { capabilities = ["read"] }', "a/*/b", ["read"]),
        # "/+" makes a segment pattern even when the segment is "+x" (which then is literal)
        ('path "a/+x" { capabilities = ["read"] }', "a/+x", ["read"]),
        ('path "a/+x" { capabilities = ["read"] }', "a/yx", ["deny"]),
        ('path "+" { capabilities = ["read"] }', "anything", ["read"]),
        ('path "+" { capabilities = ["read"] }', "any/thing", ["deny"]),
        ('path "*" { capabilities = ["read"] }', "any/thing", ["read"]),
        # a leading "/" in a rule is dropped (one of them)
        ('path "/lead" { capabilities = ["read"] }', "lead", ["read"]),
        ('path "//lead" { capabilities = ["read"] }', "lead", ["deny"]),
        # an empty block matches, grants nothing, and so shadows broader rules
        ('path "k/*" { capabilities = ["read"] }\npath "k/e/*" {}', "k/e/x", ["deny"]),
        # identity templating needs an entity: such a rule never applies
        (
            'path "t/{{identity.entity.id}}" { capabilities = ["read"] }\npath "t/*" { '
            'capabilities = ["list"] }',
            "t/{{identity.entity.id}}",
            ["list"],
        ),
        (
            'path "s/*" { capabilities = ["scan", "patch", "sudo"] }',
            "s/x",
            ["patch", "scan", "sudo"],
        ),
    ],
)
def test_matching(rules, path, expected):
    assert acl(rules).capabilities(path) == expected


LIST_DENY = """
path "keymgmt/kms/*"            { capabilities = ["list", "read"] }
path "keymgmt/kms/restricted/*" { capabilities = ["deny"] }
"""


def test_a_broad_list_never_beats_a_deny_on_the_listed_path():
    """GHSA-xp3c-3jw3-4vcr, fixed in OpenBao 2.6: LIST keymgmt/kms/restricted is the path
    keymgmt/kms/restricted/, which the deny glob covers; only if nothing matches the path with
    its slash is the slash dropped."""
    a = acl(LIST_DENY)
    assert not a.allows("keymgmt/kms/restricted", "list")
    assert not a.allows("keymgmt/kms/restricted/", "list")
    assert a.allows("keymgmt/kms", "list")
    assert not a.allows("keymgmt/kms/restricted/key/a", "read")
    # capabilities take the path literally (no slash added), as sys/capabilities-self does
    assert a.capabilities("keymgmt/kms/restricted") == ["list", "read"]
    assert a.capabilities("keymgmt/kms/restricted/") == ["deny"]


def test_list_finds_the_exact_rule_without_the_slash():
    a = acl('path "keymgmt/key" { capabilities = ["list"] }')
    assert a.allows("keymgmt/key", "list")
    assert a.allows("keymgmt/key/", "list")
    assert not a.allows("keymgmt/key", "read")
    # ... and a non-exact rule without it, when nothing matches with it
    b = acl('path "keymgmt/+" { capabilities = ["list"] }')
    assert b.allows("keymgmt/key", "list")


@pytest.mark.parametrize(
    ("operation", "capability"),
    [
        ("read", "read"),
        ("list", "list"),
        ("create", "create"),
        ("update", "update"),
        ("patch", "patch"),
        ("delete", "delete"),
    ],
)
def test_each_operation_needs_its_capability(operation, capability):
    others = [c for c in ("read", "list", "create", "update", "patch", "delete") if c != capability]
    assert acl(f'path "k/*" {{ capabilities = ["{capability}"] }}').allows("k/x", operation)
    assert not acl(f'path "k/*" {{ capabilities = {others!r} }}'.replace("'", '"')).allows(
        "k/x", operation
    )


def test_an_unknown_operation_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown operation"):
        acl('path "k" { capabilities = ["read"] }').allows("k", "write")


# -- sudo --------------------------------------------------------------------------------------


def test_sudo_paths_need_sudo_too():
    without = acl('path "sys/*" { capabilities = ["read", "list"] }')
    with_sudo = acl('path "sys/audit" { capabilities = ["read", "sudo"] }')
    assert policy.requires_sudo("sys/audit")
    assert not without.allows("sys/audit", "read", sudo=True)
    assert with_sudo.allows("sys/audit", "read", sudo=True)
    assert without.allows("sys/mounts", "read", sudo=policy.requires_sudo("sys/mounts"))
    assert not with_sudo.allows("sys/audit", "list", sudo=True)  # sudo adds, never replaces


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("sys/audit", True),
        ("sys/audit/file", True),
        ("sys/audit-hash/file", False),
        ("sys/auth/jwt", True),
        ("sys/rotate", True),
        ("sys/raw/x", True),
        ("auth/token/accessors/", True),
        ("auth/token/revoke-orphan/x", True),
        ("auth/token/revoke-orphan", False),  # its handler checks sudo itself
        ("sys/rawx", False),
        ("auth/token/create", False),
        ("sys/mounts/keymgmt", False),
        ("sys/policies/acl/x", False),
        ("sys/leases/lookup/x", True),
        ("sys/leases/lookup", False),
    ],
)
def test_root_protected_paths(path, expected):
    assert policy.requires_sudo(path) is expected


# -- merging (reference §3.3) ------------------------------------------------------------------


def test_merging_identical_paths():
    a = acl(
        'path "k/*" { capabilities = ["create"] allowed_parameters = { "type" = ["rsa-2048"] } }',
        'path "k/*" { capabilities = ["update"] allowed_parameters = { "type" = ["ed25519"] } }',
    )
    assert a.capabilities("k/x") == ["create", "update"]
    assert a.allows("k/x", "create", {"type": "rsa-2048"})
    assert a.allows("k/x", "update", {"type": "ed25519"})
    assert not a.allows("k/x", "update", {"type": "aes256-gcm96"})


def test_an_empty_list_wins_a_merge_and_means_any_value():
    a = acl(
        'path "k/*" { capabilities = ["create"] allowed_parameters = { "type" = ["rsa-2048"] } }',
        'path "k/*" { capabilities = ["create"] allowed_parameters = { "type" = [] } }',
    )
    assert a.allows("k/x", "create", {"type": "anything"})


def test_a_rule_without_parameters_merged_with_one_that_has_them_is_restricted():
    a = acl(
        'path "k/*" { capabilities = ["create"] }',
        'path "k/*" { capabilities = ["create"] allowed_parameters = { "type" = ["rsa-2048"] } }',
    )
    assert not a.allows("k/x", "create", {"type": "ed25519"})


def test_deny_wins_a_merge_in_either_order():
    for first, second in (("deny", "read"), ("read", "deny")):
        a = acl(
            f'path "k" {{ capabilities = ["{first}"] }}',
            f'path "k" {{ capabilities = ["{second}"] }}',
        )
        assert a.capabilities("k") == ["deny"]
        assert not a.allows("k", "read")


def test_required_and_denied_parameters_are_joined():
    a = acl(
        'path "k/*" { capabilities = ["create"] required_parameters = ["a"] '
        'denied_parameters = { "x" = ["1"] } }',
        'path "k/*" { capabilities = ["create"] required_parameters = ["b"] '
        'denied_parameters = { "x" = ["2"] } }',
    )
    assert not a.allows("k/x", "create", {"a": "1"})
    assert a.allows("k/x", "create", {"a": "1", "b": "2", "x": "3"})
    assert not a.allows("k/x", "create", {"a": "1", "b": "2", "x": "1"})
    assert not a.allows("k/x", "create", {"a": "1", "b": "2", "x": "2"})


def test_exact_and_prefix_rules_for_one_string_are_different_rules():
    a = acl('path "k" { capabilities = ["read"] }\npath "k*" { capabilities = ["update"] }')
    assert a.capabilities("k") == ["read"]
    assert a.capabilities("kx") == ["update"]


def test_two_blocks_for_one_path_in_one_policy_merge_like_two_policies():
    """OpenBao keeps every block (pyhcl alone would keep only the last): observed on 2.7.2,
    path "a" read + path "a" list gives ["list", "read"]; deny in either block wins."""
    p = parse(
        "p",
        'path "a" { capabilities = ["read"] }\npath "a" { capabilities = ["list"] }\n'
        'path "b" { capabilities = ["deny"] }\npath "b" { capabilities = ["read"] }',
    )
    assert len(p.rules) == 4
    a = ACL([p])
    assert a.capabilities("a") == ["list", "read"]
    assert a.capabilities("b") == ["deny"]


def test_repeated_attributes_in_a_block_decode_as_hcl_does():
    """HCL v1 joins a repeated list attribute and keeps the last of a repeated string (2.7.2)."""
    p = parse(
        "p",
        'path "a" {\n capabilities = ["read"]\n capabilities = ["list"]\n'
        ' required_parameters = ["x"]\n required_parameters = ["y"]\n}\n'
        'path "b" {\n policy = "write"\n policy = "read"\n}',
    )
    a = ACL([p])
    assert a.capabilities("a") == ["list", "read"]
    assert p.rules[0].required_parameters == ("x", "y")
    assert a.capabilities("b") == ["list", "read"]


# -- parameter constraints (reference §3.4) ----------------------------------------------------

PARAMS = """
path "keymgmt/key/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
  allowed_parameters  = { "type" = ["rsa-2048", "rsa-4096"], "deletion_allowed" = [] }
  denied_parameters   = { "deletion_allowed" = ["true"] }
  required_parameters = ["type"]
}
path "keymgmt/kms/*" {
  capabilities = ["create", "update"]
  allowed_parameters = { "*" = [] }
  denied_parameters = { "credentials" = [] }
}
"""


@pytest.mark.parametrize(
    ("path", "params", "allowed"),
    [
        # the captured table
        ("keymgmt/key/k1", {"type": "rsa-2048"}, True),
        ("keymgmt/key/k2", {"type": "aes256-gcm96"}, False),  # not an allowed value
        ("keymgmt/key/k3", {"deletion_allowed": False}, False),  # required type missing
        # OpenBao allows this one (JSON true is not the string "true"); the CLI's string is
        # denied, so hvac and Terraform must be too: we compare them alike
        ("keymgmt/key/k4", {"type": "rsa-4096", "deletion_allowed": True}, False),
        ("keymgmt/key/k5", {"type": "rsa-4096", "deletion_allowed": "true"}, False),
        ("keymgmt/key/k6", {"type": "rsa-4096", "foo": "bar"}, False),  # foo not allowed
        ("keymgmt/key/k7", {"type": "RSA-2048"}, False),  # values are case-sensitive
        ("keymgmt/kms/azure", {"provider": "azurekeyvault", "key_collection": "kv1"}, True),
        ("keymgmt/kms/azure2", {"provider": "azurekeyvault", "credentials": {"a": "b"}}, False),
        # more
        ("keymgmt/key/k8", {"type": "rsa-2048", "deletion_allowed": False}, True),
        ("keymgmt/key/k9", {"type": "rsa-2048", "DELETION_ALLOWED": "true"}, False),  # key case
        ("keymgmt/key/k10", {"TYPE": "rsa-2048"}, False),  # required keys are matched as sent
        # every reading the engine could make of a denied value (Go's ParseBool, numbers)
        ("keymgmt/key/k11", {"type": "rsa-2048", "deletion_allowed": "True"}, False),
        ("keymgmt/key/k12", {"type": "rsa-2048", "deletion_allowed": "t"}, False),
        ("keymgmt/key/k13", {"type": "rsa-2048", "deletion_allowed": 1}, False),
        ("keymgmt/key/k14", {"type": "rsa-2048", "deletion_allowed": " true "}, False),
        ("keymgmt/key/k15", {"type": "rsa-2048", "deletion_allowed": 0}, True),
        # Vault 1.21: a list or a comma string is allowed item by item
        ("keymgmt/key/k16", {"type": ["rsa-2048", "rsa-4096"]}, True),
        ("keymgmt/key/k17", {"type": "rsa-2048,rsa-4096"}, True),
        ("keymgmt/key/k18", {"type": "rsa-2048,aes256-gcm96"}, False),
        ("keymgmt/key/k19", {"type": []}, False),  # not vacuously allowed (fail closed)
        ("keymgmt/key/k20", {"type": ""}, False),
        ("keymgmt/key/k21", {"type": None}, False),  # null is no listed value
        ("keymgmt/key/k22", {"type": {"rsa-2048": 1}}, False),
    ],
)
def test_parameters(path, params, allowed):
    assert acl(PARAMS).allows(path, "create", params) is allowed


def test_required_parameters_apply_to_reads_and_empty_bodies():
    a = acl(PARAMS)
    assert not a.allows("keymgmt/key/k1", "read")
    assert not a.allows("keymgmt/key/k1", "update", {})
    assert a.allows("keymgmt/key/k1", "read", {"type": "rsa-2048"})
    assert a.allows("keymgmt/key/k1", "delete")  # not checked for delete or list
    assert a.allows("keymgmt/key", "list")


def test_an_empty_body_passes_allowed_and_denied_lists():
    a = acl('path "k/*" { capabilities = ["create"] denied_parameters = { "*" = [] } }')
    assert a.allows("k/x", "create", {})
    assert a.allows("k/x", "create", None)
    assert not a.allows("k/x", "create", {"a": "b"})  # "*" denies any parameter


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("rsa-2048", True),  # "rsa-*"
        ("aes256-gcm96", True),  # "*-gcm96"
        ("xsay", True),  # "*sa*"
        ("*", True),  # "*" alone is the literal star (GlobbedStringsMatch)
        ("anything", False),
        ("RSA-2048", False),
    ],
)
def test_string_values_match_globs(value, allowed):
    a = acl(
        'path "k/*" { capabilities = ["create"] '
        'allowed_parameters = { "type" = ["rsa-*", "*-gcm96", "*sa*", "*"] } }'
    )
    assert a.allows("k/x", "create", {"type": value}) is allowed


def test_vault_docs_star_with_a_restricted_parameter():
    """Vault docs: any parameter, but foo only with the value bar."""
    a = acl(
        'path "secret/foo" { capabilities = ["create"] '
        'allowed_parameters = { "*" = [], "foo" = ["bar"] } }'
    )
    assert a.allows("secret/foo", "create", {"foo": "bar", "zip": "zap"})
    assert not a.allows("secret/foo", "create", {"foo": "baz"})


@pytest.mark.parametrize(
    ("params", "allowed"),
    [
        ({"min_enabled_version": 2}, True),
        ({"min_enabled_version": "2"}, True),  # the CLI's string for an HCL number
        ({"min_enabled_version": 2.0}, True),
        ({"min_enabled_version": "02"}, False),  # allowed values are not read loosely
        ({"type": 2}, True),  # JSON number for an HCL string
        ({"deletion_allowed": False}, True),
        ({"deletion_allowed": "false"}, True),
        ({"deletion_allowed": "0"}, False),
        ({"deletion_allowed": True}, False),
    ],
)
def test_allowed_values_compare_after_normalising(params, allowed):
    a = acl(
        'path "k/*" { capabilities = ["create"] allowed_parameters = { '
        '"min_enabled_version" = [2], "type" = ["2"], "deletion_allowed" = [false] } }'
    )
    assert a.allows("k/x", "create", params) is allowed


def test_policy_names_in_parameters_compare_lower_cased():
    """As Vault 1.21 does, since policy names are stored lower-cased."""
    a = acl(
        'path "auth/token/create" { capabilities = ["update"] '
        'denied_parameters = { "policies" = ["admin"] } }'
    )
    assert not a.allows("auth/token/create", "update", {"policies": ["Admin"]})
    assert not a.allows("auth/token/create", "update", {"policies": "dev,ADMIN"})
    assert a.allows("auth/token/create", "update", {"policies": ["dev"]})


def test_parameters_are_checked_for_patch_but_not_delete():
    a = acl('path "k/*" { capabilities = ["patch", "delete"] allowed_parameters = { "a" = [] } }')
    assert not a.allows("k/x", "patch", {"b": "1"})
    assert a.allows("k/x", "delete", {"b": "1"})


# -- response wrapping (reference §3.5) --------------------------------------------------------


def test_rules_demanding_response_wrapping_allow_only_wrapped_requests_within_them():
    """AllowOperation: a rule with min/max_wrapping_ttl allows a request only when it asks
    for wrapping (X-Vault-Wrap-TTL) within them, bounds included; sys/capabilities still shows
    the rule's capabilities (OpenBao 2.7.2; the differential test checks it over HTTP)."""
    a = acl(
        'path "w/*" { capabilities = ["read", "list"] min_wrapping_ttl = "1m" '
        'max_wrapping_ttl = "1h" }'
    )
    assert a.capabilities("w/x") == ["list", "read"]
    assert not a.allows("w/x", "read")
    assert not a.allows("w/x", "list")
    assert not a.allows("w/x", "read", wrap_ttl=59)
    assert a.allows("w/x", "read", wrap_ttl=60)
    assert a.allows("w/x", "list", wrap_ttl=3600)
    assert not a.allows("w/x", "read", wrap_ttl=3601)
    only_max = acl('path "m" { capabilities = ["update"] max_wrapping_ttl = "2m" }')
    assert not only_max.allows("m", "update")
    assert only_max.allows("m", "update", wrap_ttl=1)
    assert not only_max.allows("m", "update", wrap_ttl=121)
    only_min = acl('path "n" { capabilities = ["read"] min_wrapping_ttl = 30 }')
    assert not only_min.allows("n", "read")
    assert only_min.allows("n", "read", wrap_ttl=86400)
    # Merged from two policies, the smaller of each is kept: here max below min allows nothing.
    merged = ACL(
        [
            parse("a", 'path "x" { capabilities = ["read"] min_wrapping_ttl = "10m" }'),
            parse("b", 'path "x" { capabilities = ["read"] max_wrapping_ttl = "5m" }'),
        ]
    )
    assert not any(merged.allows("x", "read", wrap_ttl=t) for t in (0, 60, 300, 600, 3600))
    p = parse(
        "p", 'path "w" { capabilities = ["read"] min_wrapping_ttl = "1m" max_wrapping_ttl = 7200 }'
    )
    assert (p.rules[0].min_wrapping_ttl, p.rules[0].max_wrapping_ttl) == (60, 7200)


def test_the_response_wrapping_policy_grants_only_unwrap_and_revoke_self():
    a = ACL([parse("response-wrapping", policy.RESPONSE_WRAPPING_POLICY)])
    assert a.allows("sys/wrapping/unwrap", "update")
    assert a.allows("auth/token/revoke-self", "update")
    for path, op in (
        ("sys/wrapping/rewrap", "update"),
        ("sys/wrapping/wrap", "update"),
        ("sys/wrapping/lookup", "update"),
        ("auth/token/lookup-self", "read"),
        ("keymgmt/key/a", "read"),
    ):
        assert not a.allows(path, op), path


# -- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("legacy", "expected"),
    [
        ("read", ["list", "read"]),
        ("write", ["create", "delete", "list", "read", "update"]),
        ("sudo", ["create", "delete", "list", "read", "sudo", "update"]),
        ("deny", ["deny"]),
    ],
)
def test_legacy_policy_values(legacy, expected):
    assert acl(f'path "k" {{ policy = "{legacy}" }}').capabilities("k") == expected


def test_legacy_policy_adds_to_capabilities_unless_deny():
    assert acl('path "k" { policy = "read" capabilities = ["update"] }').capabilities("k") == [
        "list",
        "read",
        "update",
    ]
    assert acl('path "k" { policy = "deny" capabilities = ["update"] }').capabilities("k") == [
        "deny"
    ]


def test_deny_discards_the_blocks_other_capabilities_and_settings():
    p = parse("p", 'path "k" { capabilities = ["read", "deny", "bogus"] min_wrapping_ttl = "x" }')
    assert p.rules[0].capabilities == ("deny",)
    assert ACL([p]).capabilities("k") == ["deny"]


def test_json_policies():
    a = ACL(
        [
            parse(
                "j",
                '{"path": {"keymgmt/key/*": {"capabilities": ["read", "list"]}, '
                '"keymgmt/kms/+/key/*": {"capabilities": ["read"], '
                '"allowed_parameters": {"purpose": ["encrypt", "decrypt"]}}}}',
            ),
            parse(
                "l",
                '{"path": [{"x": {"capabilities": ["read"]}}, {"x": {"capabilities": ["list"]}}]}',
            ),
        ]
    )
    assert a.capabilities("keymgmt/key/a") == ["list", "read"]
    assert a.allows("keymgmt/kms/az/key/k", "read", {"purpose": "encrypt,decrypt"})
    assert a.capabilities("x") == ["list", "read"]


def test_policy_keeps_the_text_and_lower_cases_the_name():
    text = 'path "k" { capabilities = ["read"] }  # as written\n'
    p = parse("Ops-Team", text)
    assert (p.name, p.text) == ("ops-team", text)
    assert p.rules[0].path == "k"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # OpenBao 2.7.2's very texts
        ('path "x" { capabilities = ["reed"] }', 'path "x": path "x": invalid capability "reed"'),
        ('path "x" { capabilities = ["Read"] }', 'path "x": path "x": invalid capability "Read"'),
        ('path "x" { policy = "foo" }', 'path "x": path "x": invalid policy "foo"'),
        (
            'path "/a/+*" { capabilities = ["read"] }',
            'path "/a/+*": path "a/+*": invalid use of wildcards (\'+*\' is forbidden)',
        ),
        (
            'path "x" { min_wrapping_ttl = "1h"\n max_wrapping_ttl = "1m" }',
            'path "x": max_wrapping_ttl cannot be less than min_wrapping_ttl',
        ),
        ('path "x" { capabilities : ["read"] }', "At 1:25: illegal char"),
        # ours (OpenBao adds line numbers and a multierror wrapper, or quotes the text)
        ('path "x" { capabilities = ["read"] foo = 1 }', 'path "x": invalid key "foo"'),
        ('bar = 1\npath "x" { capabilities = ["read"] }', 'invalid key "bar"'),
        ('path "x" { capabilities = "read" }', 'path "x": capabilities must be a list of strings'),
        (
            'path "x" { min_wrapping_ttl = "soon" }',
            'path "x": error parsing min_wrapping_ttl: invalid duration',
        ),
        ('path "x" { capabilities = ["read"] ', "At 1:36: unexpected end of input"),
        ('path "x" { capabilities = [read] }', "unknown token: identifier"),
        ('path "x" { policy = read }', "unknown token: identifier"),
        ('path "x" { capabilities = ["re" + "ad"] }', "At 1:33: unexpected ADD"),
        ('path "x" { capabilities = concat("read") }', "At 1:27: syntax not in HCL v1"),
        ('{"path": {"x": {"capabilities": ["read"]}}', "At 1:43: invalid JSON"),
        (
            'path "x" { allowed_parameters = { "a" = "b" } }',
            'path "x": allowed_parameters: "a" must be a list of values',
        ),
        (
            'path "x" { allowed_parameters = { "a" = [{ "b" = "c" }] } }',
            'path "x": allowed_parameters: "a": values must be strings, numbers or booleans',
        ),
        (
            'path "x" { denied_parameters = { "a" = [], "A" = ["1"] } }',
            'path "x": denied_parameters: "a" is given twice',
        ),
    ],
)
def test_parse_errors(text, message):
    assert refused(text) == f"failed to parse policy: {message}"


@pytest.mark.parametrize(
    "key",
    [
        "mfa_methods",
        "control_group",
        "expiration",
        "pagination_limit",
        "list_scan_response_keys_filter_path",
    ],
)
def test_keys_this_server_cannot_honour_are_refused(key):
    """Accepting and ignoring them would grant more than the author wrote."""
    assert refused(f'path "x" {{ capabilities = ["list"] {key} = "v" }}').startswith(
        f'failed to parse policy: path "x": {key} is not supported by this server'
    )


def test_errors_name_the_offending_key_never_a_value():
    message = refused('path "x" { capabilities = ["read"] s3cr3t = "hunter2" }')
    assert "s3cr3t" in message and "hunter2" not in message
    assert "hunter2" not in refused('path "x" { policy = hunter2 }')
    assert "hunter2" not in refused('path "x" { capabilities = ["read"] } hunter2')


def test_accepted_oddities():
    for text in (
        "",
        "# a comment only\n",
        'name = "ignored"\npath "x" { capabilities = ["read"] }',
        'path x { capabilities = ["read",], }\n,path "y" {}',
        'path "x" { capabilities = ["read"] min_wrapping_ttl = 1.5 max_wrapping_ttl = "1d" }',
        'path "x" { capabilities = ["read"] required_parameters = [1] comment = ["any"] }',
        'path "x" { allowed_parameters = { "a" = [1, 2.5, true, "s"] } }',
        'path "x" {\n comment = <<EOT\nheredoc\nEOT\n capabilities = ["read"]\n}',
    ):
        parse("p", text)


# -- root and default ----------------------------------------------------------------------


def test_root_is_allowed_everything_and_reports_root():
    root = ACL.root()
    assert root.capabilities("anything/at/all") == ["root"]
    assert root.allows("sys/audit", "delete", {"x": 1}, sudo=True)
    assert ACL([policy.Policy(policy.ROOT_POLICY, "", ())]).capabilities("x") == ["root"]


def test_root_cannot_be_combined_or_written():
    default = parse("default", policy.DEFAULT_POLICY)
    with pytest.raises(ValueError, match="other policies present along with root"):
        ACL([policy.Policy("root", "", ()), default])
    with pytest.raises(ValueError, match="other policies present along with root"):
        ACL([default], root=True)
    with pytest.raises(InvalidRequest, match='cannot update "root" policy'):
        parse("ROOT", "")


def test_no_policy_allows_nothing():
    empty = ACL([])
    assert empty.capabilities("auth/token/lookup-self") == ["deny"]
    assert not empty.allows("auth/token/lookup-self", "read")


def test_the_default_policy():
    a = ACL([parse("default", policy.DEFAULT_POLICY)])
    assert a.allows("auth/token/lookup-self", "read")
    assert a.allows("auth/token/renew-self", "update")
    assert a.allows("auth/token/revoke-self", "update")
    assert a.allows("sys/capabilities-self", "update")
    assert not a.allows("auth/token/lookup-self", "update")
    for path in ("auth/token/create", "cubbyhole/x", "sys/tools/hash", "keymgmt/key/a"):
        assert a.capabilities(path) == ["deny"]
    assert [r.path for r in parse("default", policy.DEFAULT_POLICY).rules] == [
        "auth/token/lookup-self",
        "auth/token/renew-self",
        "auth/token/revoke-self",
        "sys/capabilities-self",
        "sys/wrapping/wrap",
        "sys/wrapping/lookup",
        "sys/wrapping/unwrap",
    ]
