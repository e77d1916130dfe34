"""shared/mounts.py's pure functions: enable's settings, a tune, and the two views (the oracle
comparison is tests/integration/test_mounts_oracle.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from shared import mounts
from shared.errors import InvalidRequest
from shared.records import Mount, MountSettings

WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MOUNT = Mount("m", "keymgmt", "d", "12345678-0000-4000-8000-000000000000", WHEN)


def enable(config=None, options=None, **flags) -> MountSettings:
    flags = {"local": False, "seal_wrap": False, "external_entropy_access": False, **flags}
    return mounts.enable_settings(config, options or {}, system_max=3600, **flags)


def refused(call, *args, **kwargs) -> str:
    with pytest.raises(InvalidRequest) as caught:
        call(*args, **kwargs)
    [message] = caught.value.messages
    return message


def test_enable_reads_every_setting():
    settings = enable(
        {
            "default_lease_ttl": "10m",
            "max_lease_ttl": 1800,
            "force_no_cache": True,
            "listing_visibility": "hidden",
            "audit_non_hmac_request_keys": " a , b ,",
            "allowed_response_headers": ["X-A", 7],
            "unknown": [1],
        },
        {"z": "1", "a": "2"},
        local=True,
        seal_wrap=True,
    )
    assert settings == MountSettings(
        default_lease_ttl=600,
        max_lease_ttl=1800,
        force_no_cache=True,
        listing_visibility="hidden",
        audit_non_hmac_request_keys=("a", "b"),
        allowed_response_headers=("X-A", "7"),
        options=(("a", "2"), ("z", "1")),
        local=True,
        seal_wrap=True,
    )
    assert enable({"default_lease_ttl": "system", "max_lease_ttl": ""}) == MountSettings()


@pytest.mark.parametrize(
    ("config", "options", "message"),
    [
        (
            {"default_lease_ttl": "2h", "max_lease_ttl": "1h"},
            {},
            "given default lease TTL greater than given max lease TTL",
        ),
        (
            {"default_lease_ttl": "2h"},
            {},
            "given default lease TTL greater than system max lease TTL of 3600",
        ),
        (
            {"default_lease_ttl": "x"},
            {},
            'unable to parse default TTL of x: time: invalid duration "x"',
        ),
        (
            {"max_lease_ttl": "1.5"},
            {},
            'unable to parse max TTL of 1.5: time: missing unit in duration "1.5"',
        ),
        ({"force_no_cache": "true"}, {}, "unable to convert given mount config information"),
        (
            {"passthrough_request_headers": [True]},
            {},
            "unable to convert given mount config information",
        ),
        ({"listing_visibility": "all"}, {}, "invalid listing_visibility all"),
        ({}, {"version": "2"}, 'secrets engine "keymgmt" does not allow setting a version'),
        (
            {"plugin_version": "v1.0.0"},
            {},
            "plugin not found in the catalog: keymgmt, version=v1.0.0",
        ),
        (
            "text",
            {},
            'Field validation failed: error converting input for field "config": expected a '
            "map of settings",
        ),
    ],
)
def test_enable_refusals(config, options, message):
    assert refused(enable, config, options) == message


def test_a_tune_changes_only_what_was_sent():
    start = Mount(
        "m", "keymgmt", "d", MOUNT.uuid, WHEN,
        settings=MountSettings(default_lease_ttl=60, options=(("keep", "1"), ("drop", "2"))),
    )  # fmt: skip
    after = mounts.tuned(start, {"max_lease_ttl": "2m", "options": {"drop": "", "new": "3"}})
    assert after.description == "d"
    assert after.settings == MountSettings(
        default_lease_ttl=60, max_lease_ttl=120, options=(("keep", "1"), ("new", "3"))
    )
    assert mounts.tuned(after, {}) == after
    cleared = mounts.tuned(after, {"description": "", "default_lease_ttl": "system"})
    assert (cleared.description, cleared.settings.default_lease_ttl) == ("", 0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"default_lease_ttl": "3m"},
            "backend max lease TTL of 120 would be less than backend default lease TTL of 180",
        ),
        (
            {"max_lease_ttl": "30s"},
            "backend max lease TTL of 30 would be less than backend default lease TTL of 60",
        ),
        ({"default_lease_ttl": "soon"}, 'time: invalid duration "soon"'),
        ({"listing_visibility": "x"}, "invalid listing_visibility x"),
        ({"token_type": "batch"}, "'token_type' can only be modified on auth mounts"),
        (
            {"user_lockout_config": {"a": 1}},
            'tuning of user lockout configuration for auth type "keymgmt" not allowed',
        ),
        (
            {"options": {"version": "2"}},
            'secrets engine "keymgmt" does not allow setting a version',
        ),
    ],
)
def test_tune_refusals(changes, message):
    start = Mount(
        "m", "keymgmt", "", MOUNT.uuid, WHEN,
        settings=MountSettings(default_lease_ttl=60, max_lease_ttl=120),
    )  # fmt: skip
    assert refused(mounts.tuned, start, changes) == message


def test_a_tune_that_drops_the_max_lifts_the_check():
    start = Mount(
        "m", "keymgmt", "", MOUNT.uuid, WHEN,
        settings=MountSettings(default_lease_ttl=60, max_lease_ttl=120),
    )  # fmt: skip
    after = mounts.tuned(start, {"max_lease_ttl": "system", "default_lease_ttl": "1h"})
    assert (after.settings.default_lease_ttl, after.settings.max_lease_ttl) == (3600, 0)


def test_views_show_what_is_set_and_the_effective_ttls():
    plain = mounts.tune_view(MOUNT, 100, 200)
    assert plain == {
        "description": "d", "default_lease_ttl": 100, "max_lease_ttl": 200,
        "force_no_cache": False,
    }  # fmt: skip
    assert mounts.config_view(MOUNT.settings) == {
        "default_lease_ttl": 0, "force_no_cache": False, "max_lease_ttl": 0,
    }  # fmt: skip
    rich = Mount(
        "m", "keymgmt", "", MOUNT.uuid, WHEN,
        settings=MountSettings(
            default_lease_ttl=5, listing_visibility="unauth", options=(("o", "1"),),
            passthrough_request_headers=("X-P",), external_entropy_access=True,
        ),
    )  # fmt: skip
    assert mounts.tune_view(rich, 100, 200) == {
        "description": "", "default_lease_ttl": 5, "max_lease_ttl": 200, "force_no_cache": False,
        "external_entropy_access": True, "listing_visibility": "unauth",
        "passthrough_request_headers": ["X-P"], "options": {"o": "1"},
    }  # fmt: skip
    assert mounts.config_view(rich.settings) == {
        "default_lease_ttl": 5, "force_no_cache": False, "listing_visibility": "unauth",
        "max_lease_ttl": 0, "passthrough_request_headers": ["X-P"],
    }  # fmt: skip


def test_no_mount_texts_are_bounded_and_printable():
    assert mounts.no_mount_read("/x/").messages == ["No secret engine mount at x/"]
    long = mounts.no_mount_read("a" * 100 + "\n").messages[0]
    assert long == f"No secret engine mount at {'a' * 64}/"


# -- auth methods' settings (sys/auth/:path/tune) ----------------------------------------------


def test_an_auth_enable_keeps_token_type_and_drops_force_no_cache():
    settings = enable({"token_type": "batch", "force_no_cache": True}, auth_type="jwt")
    assert settings.token_type == "batch"
    assert settings.force_no_cache is False  # OpenBao's auth enable does not keep it
    assert enable({"token_type": "batch"}).token_type == ""  # a secrets engine has none
    view = mounts.config_view(settings, auth=True)
    assert view["token_type"] == "batch"
    assert mounts.config_view(MountSettings(), auth=True)["token_type"] == "default-service"
    assert "token_type" not in mounts.config_view(MountSettings())


def test_an_auth_enable_refuses_a_bad_token_type_and_a_version_naming_the_method():
    assert refused(enable, {"token_type": "bogus"}, auth_type="jwt") == (
        "invalid value for 'token_type'"
    )
    assert refused(enable, None, {"version": "2"}, auth_type="azure") == (
        'auth method "azure" does not allow setting a version'
    )


def test_an_auth_tune_sets_token_type_a_secrets_tune_refuses_it():
    tuned = mounts.tuned_settings(MountSettings(), {"token_type": "service"}, auth_type="jwt")
    assert tuned.token_type == "service"
    assert (
        refused(mounts.tuned_settings, MountSettings(), {"token_type": "x"}, auth_type="jwt")
        == "invalid value for 'token_type'"
    )
    assert refused(mounts.tuned, MOUNT, {"token_type": "service"}) == (
        "'token_type' can only be modified on auth mounts"
    )
    assert refused(
        mounts.tuned_settings, MountSettings(), {"user_lockout_config": {"a": 1}}, auth_type="jwt"
    ) == ('tuning of user lockout configuration for auth type "jwt" not allowed')
    view = mounts.settings_view("d", tuned, 60, 120, auth=True)
    assert (view["default_lease_ttl"], view["max_lease_ttl"], view["token_type"]) == (
        60,
        120,
        "service",
    )


def test_tune_lists_keep_empty_items_as_vault_does():
    assert mounts.tune_list([""], "x") == [""]
    assert mounts.tune_list(["a", "", " c "], "x") == ["a", "", "c"]
    assert mounts.tune_list("x,,y", "x") == ["x", "", "y"]
    assert mounts.tune_list("", "x") == [] and mounts.tune_list([], "x") == []
    assert "must be a comma-separated string" in refused(mounts.tune_list, {"a": 1}, "x")
    assert "more than" in refused(mounts.tune_list, ["a"] * 65, "x")
