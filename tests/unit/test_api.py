"""How the API renders the engine's records in Vault's wire format."""

from __future__ import annotations

import datetime as dt
import json

from shared.api import keys, sys
from shared.records import KeyRecord, KeyVersions, Mount, TokenInfo, VersionRecord

# -- rendering: records in Vault's wire format -----------------------------------------------------

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)


def test_a_key_renders_as_vault_sends_it():
    key = KeyRecord("keymgmt", "k", "rsa-2048", 3, 2, True, WHEN, auto_rotate_period=86400)
    rendered = keys.render_key(
        KeyVersions(key, (VersionRecord(2, WHEN, "PEM"), VersionRecord(3, WHEN, None)))
    )
    assert json.dumps(rendered) == (
        '{"name": "k", "type": "rsa-2048", "deletion_allowed": true, "latest_version": 3, '
        '"min_enabled_version": 2, "versions": {"2": {"creation_time": '
        '"2026-01-02T03:04:05.678901Z", "public_key": "PEM"}, "3": {"creation_time": '
        '"2026-01-02T03:04:05.678901Z"}}, "auto_rotate_period": 86400}'
    )


def test_the_root_token_renders_as_lookup_self_showed_it():
    token = TokenInfo(display_name="root", policies=("root",), path="auth/token/root", orphan=True)
    assert json.dumps(sys.render_token(token)) == (
        '{"accessor": "", "creation_ttl": 0, "display_name": "root", "entity_id": "", '
        '"expire_time": null, "explicit_max_ttl": 0, "id": "", "meta": null, "num_uses": 0, '
        '"orphan": true, "path": "auth/token/root", "policies": ["root"], "renewable": false, '
        '"ttl": 0, "type": "service"}'
    )


def test_mounts_render_under_their_path_with_a_slash():
    mount = Mount("m1", "keymgmt", "d", "12345678-0000-4000-8000-000000000000", WHEN)
    rendered = sys.render_mounts([mount])
    assert list(rendered) == ["m1/"]
    assert rendered["m1/"]["accessor"] == "keymgmt_12345678"
    assert list(rendered["m1/"]) == [
        "type",
        "description",
        "accessor",
        "uuid",
        "config",
        "options",
        "local",
        "seal_wrap",
        "external_entropy_access",
        "plugin_version",
        "running_plugin_version",
        "running_sha256",
        "deprecation_status",
    ]
