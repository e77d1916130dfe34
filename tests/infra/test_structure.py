"""Security properties of infra/, checked on the parsed Terraform.

Every checker runs twice: on the real tree (no problem allowed) and on a copy broken in the one
way the checker exists to catch (the problem must be reported).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import infra_checks as ic
import pytest


@pytest.fixture(scope="module")
def tree() -> ic.Tree:
    return ic.load_tree()


@pytest.mark.parametrize("check", ic.ALL_CHECKS, ids=lambda c: c.__name__)
def test_real_tree_passes(tree: ic.Tree, check: Callable[[ic.Tree], list[str]]) -> None:
    assert check(tree) == []


def test_every_tf_file_parses() -> None:
    files = sorted(ic.INFRA_DIR.glob("*.tf"))
    assert len(files) >= 8
    for path in files:
        ic.parse_file(path)


def _broken(tree: ic.Tree, rtype: str, name: str, **changes: object) -> ic.Tree:
    broken = tree.copy()
    body = ic.resource(broken, rtype, name)
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return broken


# (checker, resource type, resource name, change) -> the checker must report it.
MUTATIONS = [
    (ic.check_key_vaults, "azurerm_key_vault", "engine", {"public_network_access_enabled": True}),
    (ic.check_key_vaults, "azurerm_key_vault", "engine", {"purge_protection_enabled": False}),
    (ic.check_key_vaults, "azurerm_key_vault", "engine", {"rbac_authorization_enabled": None}),
    (ic.check_key_vaults, "azurerm_key_vault", "engine", {"sku_name": "standard"}),
    (ic.check_key_vaults, "azurerm_key_vault", "engine", {"network_acls": [{"bypass": "None"}]}),
    (
        ic.check_storage_accounts,
        "azurerm_storage_account",
        "this",
        {"shared_access_key_enabled": True},
    ),
    (
        ic.check_storage_accounts,
        "azurerm_storage_account",
        "this",
        {"public_network_access_enabled": True},
    ),
    (ic.check_storage_accounts, "azurerm_storage_account", "this", {"min_tls_version": "TLS1_0"}),
    (
        ic.check_storage_accounts,
        "azurerm_storage_account",
        "this",
        {"allow_nested_items_to_be_public": True},
    ),
    (
        ic.check_storage_accounts,
        "azurerm_private_endpoint",
        "storage",
        {"for_each": '${toset(["blob", "table"])}'},
    ),
    (
        ic.check_role_assignments,
        "azurerm_role_assignment",
        "app_seal_key",
        {"principal_type": None},
    ),
    (
        ic.check_role_assignments,
        "azurerm_role_assignment",
        "app_storage_table",
        {"role_definition_name": "Contributor"},
    ),
    (ic.check_function_app, "azurerm_function_app_flex_consumption", "this", {"https_only": False}),
    (
        ic.check_function_app,
        "azurerm_function_app_flex_consumption",
        "this",
        {"storage_authentication_type": "StorageAccountConnectionString"},
    ),
    (
        ic.check_function_app,
        "azurerm_function_app_flex_consumption",
        "this",
        {"virtual_network_subnet_id": None},
    ),
    (ic.check_target_vaults, "azurerm_private_endpoint", "target_vault", {"for_each": "${{}}"}),
    (
        ic.check_target_vaults,
        "azurerm_eventgrid_system_topic_event_subscription",
        "keyvault_events",
        {"included_event_types": ["Microsoft.KeyVault.KeyNewVersionCreated"]},
    ),
    (
        ic.check_checkov_skips,
        "azurerm_key_vault_key",
        "seal",
        {"__comments__": [{"value": "checkov:skip=CKV_AZURE_40:ok"}]},
    ),
]


@pytest.mark.parametrize(
    ("check", "rtype", "name", "changes"),
    MUTATIONS,
    ids=[f"{m[1]}.{m[2]}:{','.join(m[3])}={next(iter(m[3].values()))}"[:90] for m in MUTATIONS],
)
def test_broken_resource_is_caught(
    tree: ic.Tree,
    check: Callable[[ic.Tree], list[str]],
    rtype: str,
    name: str,
    changes: dict[str, object],
) -> None:
    assert check(tree) == []
    assert check(_broken(tree, rtype, name, **changes)) != []


def test_vault_without_private_endpoint_is_caught(tree: ic.Tree) -> None:
    broken = tree.copy()
    broken.resources = [
        r for r in broken.resources if (r[0], r[1]) != ("azurerm_private_endpoint", "engine_vault")
    ]
    assert any("private endpoint" in p for p in ic.check_key_vaults(broken))


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("KEYMGMT_STORAGE", "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=abc=="),
        ("KEYMGMT_SEAL_KEY", "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80="),
        ("KEYMGMT_ROOT_TOKEN", "hunter2-but-long-enough-to-be-a-token-0123456789abcdef"),
        ("KEYMGMT_ROOT_TOKEN", "${random_password.root_token.result}"),
        (
            "KEYMGMT_ROOT_TOKEN_SHA256",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ),
        ("STORAGE_CONN", "${azurerm_storage_account.this.primary_connection_string}"),
        (
            "APPINSIGHTS_INSTRUMENTATIONKEY",
            "${azurerm_application_insights.this.instrumentation_key}",
        ),
        ("DB", "Server=x;User Id=app;Password=Sup3rS3cret"),
    ],
)
def test_secret_in_app_settings_is_caught(tree: ic.Tree, setting: str, value: str) -> None:
    broken = tree.copy()
    broken.locals["app_settings_engine"] = dict(broken.locals["app_settings_engine"])
    broken.locals["app_settings_engine"][setting] = value
    assert ic.check_app_settings(broken) != []


def test_root_token_digest_is_allowed_but_raw_token_is_not(tree: ic.Tree) -> None:
    value = tree.locals["root_token_setting_value"]
    assert "sha256(local.root_token)" in value and "@Microsoft.KeyVault(SecretUri=" in value
    broken = tree.copy()
    broken.locals["root_token_setting_value"] = value.replace(
        "nonsensitive(sha256(local.root_token))", "local.root_token"
    )
    assert ic.check_app_settings(broken) != []


def test_missing_engine_setting_is_caught(tree: ic.Tree) -> None:
    broken = tree.copy()
    broken.locals["app_settings_engine"] = {
        k: v for k, v in tree.locals["app_settings_engine"].items() if k != "KEYMGMT_SEAL_KEY_ID"
    }
    assert any("KEYMGMT_SEAL_KEY_ID" in p for p in ic.check_app_settings(broken))


def test_undescribed_variable_is_caught(tree: ic.Tree) -> None:
    broken = tree.copy()
    broken.variables["location"] = {"type": "${string}"}
    assert ic.check_variables(broken) == ["variable location: no description"]


def test_missing_outputs_are_caught(tree: ic.Tree) -> None:
    broken = tree.copy()
    del broken.outputs["function_app_url"]
    del broken.outputs["identity_principal_id"]
    assert len(ic.check_outputs(broken)) == 2


@pytest.mark.parametrize("version", [">= 4.0, < 5.0", ">= 4.42", ">= 4.42, < 6.0", "~> 3.117"])
def test_loose_provider_pin_is_caught(tree: ic.Tree, version: str) -> None:
    broken = tree.copy()
    for block in broken.terraform:
        for providers in block.get("required_providers", []):
            if "azurerm" in providers:
                providers["azurerm"] = {**providers["azurerm"], "version": version}
    assert ic.check_versions(broken) != []


def test_text_level_mutation_goes_through_the_parser(tmp_path: Path) -> None:
    """Editing the .tf text (not the parsed dict) is caught too: the parse path is real."""
    copy_dir = tmp_path / "infra"
    shutil.copytree(ic.INFRA_DIR, copy_dir, ignore=shutil.ignore_patterns(".terraform", "*.md"))
    kv = copy_dir / "keyvault.tf"
    text = kv.read_text()
    assert text.count("public_network_access_enabled = false") == 1
    kv.write_text(
        text.replace(
            "public_network_access_enabled = false", "public_network_access_enabled = true"
        )
    )
    st = copy_dir / "storage.tf"
    st.write_text(
        st.read_text().replace(
            "shared_access_key_enabled         = false", "shared_access_key_enabled         = true"
        )
    )
    broken = ic.load_tree(copy_dir)
    assert any("public_network_access_enabled" in p for p in ic.check_key_vaults(broken))
    assert any("shared_access_key_enabled" in p for p in ic.check_storage_accounts(broken))


def test_example_tfvars_only_sets_declared_variables(tree: ic.Tree) -> None:
    example = ic.INFRA_DIR / "terraform.tfvars.example"
    parsed = ic.parse_file(example)
    assert parsed, "terraform.tfvars.example is empty"
    unknown = set(parsed) - set(tree.variables) - {"__comments__"}
    assert not unknown, f"terraform.tfvars.example sets undeclared variables: {sorted(unknown)}"
    required = {n for n, body in tree.variables.items() if "default" not in body}
    assert required <= set(parsed), f"example misses required variables {required - set(parsed)}"
