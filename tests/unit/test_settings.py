"""Settings are read once, strictly, with errors that name the setting."""

import base64
import hashlib

import pytest

from shared import settings
from shared.settings import SettingsError

CONN = "UseDevelopmentStorage=true"
KEY = base64.b64encode(bytes(range(32))).decode()


def test_connection_string_storage_and_defaults():
    s = settings.load({"KEYMGMT_STORAGE": CONN})
    assert s.storage.connection_string == CONN and not s.storage.uses_identity
    assert s.table_prefix == "keymgmt"
    # The timers' schedules are read at indexing, from the environment (settings.schedule).
    assert settings.schedule("KEYMGMT_ROTATION_SCHEDULE", {}) == "0 */5 * * * *"
    assert settings.schedule("KEYMGMT_RECONCILE_SCHEDULE", {}) == "0 0 * * * *"
    assert s.root_token_sha256 is None


def test_identity_based_storage():
    s = settings.load(
        {
            "KEYMGMT_STORAGE__tableServiceUri": "https://acct.table.core.windows.net/",
            "KEYMGMT_STORAGE__credential": "managedidentity",
            "KEYMGMT_STORAGE__clientId": "abc",
        }
    )
    assert s.storage.uses_identity
    assert s.storage.table_service_uri == "https://acct.table.core.windows.net"
    assert s.storage.client_id == "abc"


def test_identity_based_storage_takes_only_managed_identity():
    env = {"KEYMGMT_STORAGE__tableServiceUri": "https://acct.table.core.windows.net"}
    assert settings.load({**env, "KEYMGMT_STORAGE__credential": "ManagedIdentity"}).storage
    with pytest.raises(SettingsError, match="__credential: only managedidentity"):
        settings.load({**env, "KEYMGMT_STORAGE__credential": "clientsecret"})


def test_schedules_come_from_their_settings():
    env = {"KEYMGMT_ROTATION_SCHEDULE": "0 */1 * * * *", "KEYMGMT_RECONCILE_SCHEDULE": " "}
    assert settings.schedule("KEYMGMT_ROTATION_SCHEDULE", env) == "0 */1 * * * *"
    assert settings.schedule("KEYMGMT_RECONCILE_SCHEDULE", env) == "0 0 * * * *"


def test_storage_required_and_not_both():
    with pytest.raises(SettingsError, match="KEYMGMT_STORAGE"):
        settings.load({})
    with pytest.raises(SettingsError, match="not both"):
        settings.load({"KEYMGMT_STORAGE": CONN, "KEYMGMT_STORAGE__tableServiceUri": "https://x"})


def test_root_token_is_kept_only_as_a_hash():
    s = settings.load({"KEYMGMT_STORAGE": CONN, "KEYMGMT_ROOT_TOKEN": "root"})
    assert s.root_token_sha256 == hashlib.sha256(b"root").hexdigest()
    assert "root" not in repr(s).replace("root_token_sha256", "")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("not base64!", "base64"),
        (base64.b64encode(b"short").decode(), "32 bytes"),
    ],
)
def test_bad_seal_key(value, says):
    with pytest.raises(SettingsError, match=says):
        settings.load({"KEYMGMT_STORAGE": CONN, "KEYMGMT_SEAL_KEY": value})


def test_seal_key_and_key_id_are_exclusive():
    with pytest.raises(SettingsError, match="not both"):
        settings.load(
            {
                "KEYMGMT_STORAGE": CONN,
                "KEYMGMT_SEAL_KEY": KEY,
                "KEYMGMT_SEAL_KEY_ID": "https://v.vault.azure.net/keys/seal",
            }
        )


def test_vault_url_overrides_and_lists():
    s = settings.load(
        {
            "KEYMGMT_STORAGE": CONN,
            "KEYMGMT_KEYVAULT_URLS": "Keyvault-Name=https://127.0.0.1:8443/, other=https://h:1",
            "KEYMGMT_DEFAULT_MOUNTS": "keymgmt, other",
        }
    )
    assert s.keyvault_url_overrides == {
        "keyvault-name": "https://127.0.0.1:8443",
        "other": "https://h:1",
    }
    assert s.default_mounts == ("keymgmt", "other")
    with pytest.raises(SettingsError, match="KEYMGMT_KEYVAULT_URLS"):
        settings.load({"KEYMGMT_STORAGE": CONN, "KEYMGMT_KEYVAULT_URLS": "x=http://plain"})


def test_bad_prefix_and_bool():
    with pytest.raises(SettingsError, match="KEYMGMT_TABLE_PREFIX"):
        settings.load({"KEYMGMT_STORAGE": CONN, "KEYMGMT_TABLE_PREFIX": "bad-prefix"})
    with pytest.raises(SettingsError, match="KEYMGMT_ALLOW_SHORT_ROTATION"):
        settings.load({"KEYMGMT_STORAGE": CONN, "KEYMGMT_ALLOW_SHORT_ROTATION": "perhaps"})


def test_the_challenge_resource_check_is_on_unless_a_stand_in_turns_it_off():
    """Explicit, not inferred from a loopback address: a real vault always gets the check."""
    assert settings.load({"KEYMGMT_STORAGE": CONN}).keyvault_verify_challenge_resource is True
    off = settings.load(
        {"KEYMGMT_STORAGE": CONN, "KEYMGMT_KEYVAULT_VERIFY_CHALLENGE_RESOURCE": "false"}
    )
    assert off.keyvault_verify_challenge_resource is False
    on = settings.load(
        {
            "KEYMGMT_STORAGE": CONN,
            "KEYMGMT_KEYVAULT_URLS": "kv=https://127.0.0.1:8443",  # loopback alone: still on
        }
    )
    assert on.keyvault_verify_challenge_resource is True
