"""shared/names.py on its own: what names of keys, providers and mounts are accepted, the
limits at their exact boundaries, and the messages a caller sees."""

from __future__ import annotations

import pytest

from shared.errors import InvalidRequest
from shared.names import (
    MAX_MOUNT,
    MAX_NAME,
    RESERVED_MOUNTS,
    check_mount,
    check_name,
    is_mount_name,
)
from shared.providers import PROVIDERS

# The Key Vault key-name rule belongs to the azurekeyvault provider type.
check_azure_key_name = PROVIDERS["azurekeyvault"].check_key_name

KEY_VAULT_MAX_NAME = 127  # Key Vault's limit on key names


def refused(call, *args) -> str:
    """The single message of the InvalidRequest ``call(*args)`` raises."""
    with pytest.raises(InvalidRequest) as caught:
        call(*args)
    assert caught.value.status == 400
    [message] = caught.value.messages
    return message


# -- check_name ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a", "A", "0", "key-1", "key_1", "key.1", "a.b.c", "9lives", "a-", "a_", "a.", "a--_..b"],
)
def test_check_name_accepts_letters_digits_dash_underscore_dot_and_returns_the_name(name):
    assert check_name(name, "key") == name


def test_check_name_requires_a_name_and_says_what_it_names():
    assert refused(check_name, "", "key") == "key name is required"
    assert refused(check_name, "", "KMS provider") == "KMS provider name is required"


def test_check_name_length_boundary_and_message():
    assert MAX_NAME == 100
    assert check_name("a" * MAX_NAME, "key") == "a" * MAX_NAME
    assert (
        refused(check_name, "a" * (MAX_NAME + 1), "key")
        == "key name is too long: 101 characters, at most 100"
    )
    assert (
        refused(check_name, "b" * 5000, "KMS provider")
        == "KMS provider name is too long: 5000 characters, at most 100"
    )


def test_a_too_long_name_is_reported_as_too_long_even_when_its_characters_are_bad_too():
    assert "too long" in refused(check_name, ":" * (MAX_NAME + 1), "key")


@pytest.mark.parametrize(
    "name",
    [
        "-a",  # must start with a letter or digit
        "_a",
        ".a",
        ".",
        "..",
        "a:b",  # the row-key separator: prefix ranges rely on its absence
        "a;b",
        "a/b",
        "a\\b",
        "a b",
        " a",
        "a ",
        "a\n",  # no trailing newline slips through ($-style matching)
        "a\x00",
        "a#b",
        "a?b",
        "a%2Fb",
        "été",  # ASCII only
        "\uff4bey",  # fullwidth letters are not [A-Za-z]
        "a٣",  # non-ASCII digits neither
    ],
)
def test_check_name_refuses_other_characters_with_the_rule_in_the_message(name):
    assert refused(check_name, name, "key") == (
        f"invalid key name {name!r}: use letters, digits, '-', '_' and '.', "
        "starting with a letter or digit"
    )


def test_check_name_names_what_is_being_named_in_the_invalid_message():
    assert refused(check_name, "-x", "KMS provider").startswith("invalid KMS provider name '-x'")


def test_the_longest_name_still_fits_key_vault_with_its_timestamp_suffix():
    # A distribution names its Key Vault key "<name>-<unix seconds>" (see MAX_NAME's comment):
    # the longest allowed name with a ten-digit timestamp (until the year 2286) fits 127.
    assert MAX_NAME + len("-") + len("9999999999") <= KEY_VAULT_MAX_NAME


# -- check_mount --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["keymgmt", "k", "0", "team-a", "team_a", "Team9", "a-_-b"])
def test_check_mount_accepts_one_segment_and_returns_it(path):
    assert check_mount(path) == path


@pytest.mark.parametrize(
    ("given", "name"),
    [("keymgmt/", "keymgmt"), ("/keymgmt", "keymgmt"), ("//keymgmt//", "keymgmt")],
)
def test_check_mount_strips_slashes_at_either_end(given, name):
    assert check_mount(given) == name


@pytest.mark.parametrize("path", ["", "/", "///"])
def test_check_mount_requires_a_path(path):
    assert refused(check_mount, path) == "mount path is required"


def test_check_mount_length_boundary_is_measured_without_the_slashes():
    assert MAX_MOUNT == 64
    assert check_mount("m" * MAX_MOUNT) == "m" * MAX_MOUNT
    assert check_mount("/" + "m" * MAX_MOUNT + "/") == "m" * MAX_MOUNT
    assert (
        refused(check_mount, "m" * (MAX_MOUNT + 1))
        == "mount path is too long: 65 characters, at most 64"
    )
    assert "too long" in refused(check_mount, "." * (MAX_MOUNT + 1))  # length is checked first


@pytest.mark.parametrize(
    "path",
    [
        "a/b",  # one path segment only
        "a//b",
        "a.b",  # '.' is allowed in key names, not in mounts
        "-a",
        "_a",
        "a:b",
        "a b",
        " a",  # only slashes are stripped, not spaces
        "a\n",
        "a#b",
        "été",
    ],
)
def test_check_mount_refuses_other_paths_with_the_rule_in_the_message(path):
    value = path.strip("/")
    assert refused(check_mount, path) == (
        f"invalid mount path {value!r}: use one path segment of letters, digits, '-' and '_'"
    )


def test_the_reserved_mounts_are_the_host_routes_and_vault_s_own():
    assert frozenset({"sys", "auth", "admin", "runtime", "identity", "cubbyhole"}) == (
        RESERVED_MOUNTS
    )


@pytest.mark.parametrize("name", sorted(RESERVED_MOUNTS))
@pytest.mark.parametrize("spelling", [str, str.upper, str.title, lambda n: f"/{n}/"])
def test_reserved_mounts_are_refused_in_any_case_and_with_slashes(name, spelling):
    given = spelling(name)
    shown = given.strip("/")
    assert refused(check_mount, given) == (f"mount path {shown!r} is reserved; choose another path")


@pytest.mark.parametrize("path", ["sys-1", "system", "admins", "my_auth", "runtime2"])
def test_names_that_only_contain_a_reserved_word_are_fine(path):
    assert check_mount(path) == path


# -- is_mount_name ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["keymgmt", "a", "team-a_1", "m" * MAX_MOUNT])
def test_is_mount_name_true_for_mount_shaped_values(value):
    assert is_mount_name(value) is True


@pytest.mark.parametrize(
    "value",
    ["", "m" * (MAX_MOUNT + 1), "a/b", "a/", "/a", "a.b", "-a", "a b", "a\n", "été", "x" * 2000],
)
def test_is_mount_name_false_for_anything_no_mount_can_be_named(value):
    assert is_mount_name(value) is False


@pytest.mark.parametrize(
    "value",
    ["keymgmt", "m" * MAX_MOUNT, "m" * (MAX_MOUNT + 1), "a.b", "-a", "", "a b", "ok_1", "a\n"],
)
def test_is_mount_name_agrees_with_check_mount_on_slash_free_values(value):
    """is_mount_name spares the storage lookup for paths that cannot be mounts: it must never
    say no to a path check_mount accepts. (It does not look at the reserved list: a reserved
    name only costs a lookup that finds nothing.)"""
    try:
        accepted = check_mount(value) == value
    except InvalidRequest:
        accepted = False
    if accepted:
        assert is_mount_name(value)
    if not is_mount_name(value):
        assert not accepted


def test_is_mount_name_does_not_strip_slashes_like_check_mount():
    assert check_mount("keymgmt/") == "keymgmt"
    assert is_mount_name("keymgmt/") is False


# -- the azurekeyvault type's key names ----------------------------------------------------


@pytest.mark.parametrize("name", ["a", "key-1", "KEY", "0-0", "-"])
def test_check_azure_key_name_accepts_letters_digits_and_dash(name):
    assert check_azure_key_name(name) is None


@pytest.mark.parametrize("name", ["key_1", "key.1", "a b", "a:b", "é", "a\n", ""])
def test_check_azure_key_name_refuses_what_key_vault_would(name):
    assert refused(check_azure_key_name, name) == (
        f"key name {name!r} cannot be distributed to Azure Key Vault, which allows only "
        "letters, digits and '-' in key names"
    )


def test_names_valid_for_the_engine_are_not_all_valid_for_key_vault():
    for name in ("under_score", "dot.ted"):
        assert check_name(name, "key") == name
        with pytest.raises(InvalidRequest, match="cannot be distributed to Azure Key Vault"):
            check_azure_key_name(name)
