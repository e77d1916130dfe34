"""Security properties of infra/, checked on the parsed Terraform.

Every checker runs twice: on the real tree (no problem allowed) and on a copy broken in the one
way the checker exists to catch (the problem must be reported).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
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


def _change(body: dict[str, object], changes: dict[str, object]) -> None:
    """Set each attribute of ``body`` to its new value; None removes it."""
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value


def _broken(tree: ic.Tree, rtype: str, name: str, **changes: object) -> ic.Tree:
    broken = tree.copy()
    _change(ic.resource(broken, rtype, name), changes)
    return broken


def _broken_variable(tree: ic.Tree, variable: str, change: dict[str, object]) -> ic.Tree:
    """A copy with one variable's attributes changed."""
    broken = tree.copy()
    _change(broken.variables[variable], change)
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
    # Target vault permissions: one grant per vault, of its model, with only the key permissions.
    (
        ic.check_target_vault_permissions,
        "azurerm_role_assignment",
        "app_target_vault",
        {"for_each": "${local.target_vaults}"},
    ),
    (
        ic.check_target_vault_permissions,
        "azurerm_role_assignment",
        "app_target_vault",
        {"principal_id": "${data.azurerm_client_config.current.object_id}"},
    ),
    (
        ic.check_target_vault_permissions,
        "azurerm_key_vault_access_policy",
        "app_target_vault",
        {"for_each": "${local.target_vaults}"},
    ),
    (
        ic.check_target_vault_permissions,
        "azurerm_key_vault_access_policy",
        "app_target_vault",
        {"for_each": "${local.target_vaults_rbac}"},
    ),
    (
        ic.check_target_vault_permissions,
        "azurerm_key_vault_access_policy",
        "app_target_vault",
        {"key_permissions": ["Create", "Delete", "Get", "Import", "Update", "List"]},
    ),
    (
        ic.check_target_vault_permissions,
        "azurerm_key_vault_access_policy",
        "app_target_vault",
        {"key_permissions": ["Create", "Delete", "Get", "Update"]},
    ),
    (
        ic.check_target_vault_permissions,
        "azurerm_key_vault_access_policy",
        "app_target_vault",
        {"key_permissions": '${concat(local.target_vault_key_permissions, ["Purge"])}'},
    ),
    (
        ic.check_target_vault_permissions,
        "azurerm_key_vault_access_policy",
        "app_target_vault",
        {"key_permissions": '${setunion(local.target_vault_key_permissions, ["Backup"])}'},
    ),
    (
        ic.check_target_vault_permissions,
        "azurerm_key_vault_access_policy",
        "app_target_vault",
        {"secret_permissions": ["Get"]},
    ),
    (
        ic.check_target_vault_permissions,
        "azurerm_key_vault_access_policy",
        "app_target_vault",
        {"object_id": "${data.azurerm_client_config.current.object_id}"},
    ),
    (
        ic.check_target_vault_permissions,
        "azurerm_key_vault_access_policy",
        "app_target_vault",
        {"tenant_id": None},
    ),
    # The audit trail (audit.tf, its role in rbac.tf; more in test_audit.py).
    (
        ic.check_audit_storage,
        "azurerm_storage_container",
        "audit",
        {"container_access_type": "blob"},
    ),
    (
        ic.check_audit_storage,
        "azurerm_storage_container",
        "audit",
        {"storage_account_id": "${var.other_account_id}"},
    ),
    (ic.check_audit_storage, "azurerm_storage_container", "audit", {"lifecycle": None}),
    (
        ic.check_audit_storage,
        "azurerm_storage_container_immutability_policy",
        "audit",
        {"protected_append_writes_enabled": False},
    ),
    (
        ic.check_audit_storage,
        "azurerm_storage_container_immutability_policy",
        "audit",
        {"protected_append_writes_enabled": None},
    ),
    (
        ic.check_audit_storage,
        "azurerm_storage_container_immutability_policy",
        "audit",
        {"protected_append_writes_enabled": False, "protected_append_writes_all_enabled": True},
    ),
    (
        ic.check_audit_storage,
        "azurerm_storage_container_immutability_policy",
        "audit",
        {"immutability_period_in_days": 1},
    ),
    (
        ic.check_audit_storage,
        "azurerm_storage_container_immutability_policy",
        "audit",
        {"locked": True},
    ),
    (
        ic.check_audit_storage,
        "azurerm_storage_container_immutability_policy",
        "audit",
        {"storage_container_resource_manager_id": "${azurerm_storage_container.deployment.id}"},
    ),
    (
        ic.check_audit_storage,
        "azurerm_storage_container_immutability_policy",
        "audit",
        {"lifecycle": None},
    ),
    (
        ic.check_audit_role,
        "azurerm_role_assignment",
        "app_audit_blob",
        {"scope": "${azurerm_storage_account.this.id}"},
    ),
    (
        ic.check_audit_role,
        "azurerm_role_assignment",
        "app_audit_blob",
        {"role_definition_name": "Storage Blob Data Owner"},
    ),
    (
        ic.check_audit_role,
        "azurerm_role_assignment",
        "app_audit_blob",
        {"principal_id": "${data.azurerm_client_config.current.object_id}"},
    ),
    (
        ic.check_role_assignments,
        "azurerm_role_assignment",
        "app_audit_blob",
        {"principal_type": None},
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
    # Into the map that holds the setting today, if one does (a later map wins in the merge).
    target = next(
        (
            n
            for n, m in tree.locals.items()
            if n.startswith("app_settings_") and isinstance(m, dict) and setting in m
        ),
        "app_settings_engine",
    )
    broken.locals[target] = {**broken.locals[target], setting: value}
    assert ic.check_app_settings(broken) != []


def test_root_token_digest_is_allowed_but_raw_token_is_not(tree: ic.Tree) -> None:
    value = tree.locals["app_settings_root_token"]["KEYMGMT_ROOT_TOKEN_SHA256"]
    assert value == "${nonsensitive(sha256(local.root_token))}"
    broken = tree.copy()
    broken.locals["app_settings_root_token"] = {"KEYMGMT_ROOT_TOKEN_SHA256": "${local.root_token}"}
    assert any("raw secret" in p for p in ic.check_app_settings(broken))


def test_the_least_privilege_role_is_checked(tree: ic.Tree) -> None:
    broken = tree.copy()
    broken.locals["target_vault_data_actions"] = [
        *tree.locals["target_vault_data_actions"],
        "Microsoft.KeyVault/vaults/keys/sign/action",
    ]
    assert any(
        "data actions must be exactly" in p for p in ic.check_target_vault_permissions(broken)
    )
    broken = _broken(tree, "azurerm_role_assignment", "app_target_vault", role_definition_id=None)
    assert any(
        "custom role must be the default" in p for p in ic.check_target_vault_permissions(broken)
    )


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


APP = ("azurerm_function_app_flex_consumption", "this")


@pytest.mark.parametrize(
    "change",
    [
        {"http_concurrency": None},
        {"http_concurrency": 16},
        {"http_concurrency": "${var.maximum_instance_count}"},
        {"instance_memory_in_mb": 4096},
        {"maximum_instance_count": None},
    ],
    ids=["no-http-concurrency", "literal", "wrong-variable", "literal-memory", "no-maximum"],
)
def test_scale_setting_removed_or_miswired_is_caught(
    tree: ic.Tree, change: dict[str, object]
) -> None:
    assert ic.check_scale_settings(tree) == []
    assert ic.check_scale_settings(_broken(tree, *APP, **change)) != []


@pytest.mark.parametrize(
    "value",
    [None, "16", "${tostring(var.maximum_instance_count)}", "${tostring(var.instance_memory_mb)}"],
    ids=["removed", "literal", "other-variable", "memory"],
)
def test_thread_pool_not_matched_to_concurrency_is_caught(tree: ic.Tree, value: object) -> None:
    broken = tree.copy()
    worker = broken.locals["app_settings_worker"]
    assert worker[ic.THREAD_POOL_SETTING] == "${tostring(var.http_per_instance_concurrency)}"
    _change(worker, {ic.THREAD_POOL_SETTING: value})
    assert any(ic.THREAD_POOL_SETTING in p for p in ic.check_scale_settings(broken))


@pytest.mark.parametrize("setting", sorted(ic.FLEX_SCALE_APP_SETTINGS))
def test_scale_app_setting_flex_ignores_is_caught(tree: ic.Tree, setting: str) -> None:
    broken = tree.copy()
    broken.locals["app_settings_worker"][setting] = "4"
    assert ic.check_scale_settings(broken) == [
        f"app setting {setting} does not apply to Flex Consumption"
    ]


@pytest.mark.parametrize(
    "change",
    [{"default": 0}, {"default": 2.5}, {"default": 1001}, {"type": "string"}, {"validation": []}],
    ids=["zero", "fraction", "too-many", "string", "unvalidated"],
)
def test_broken_concurrency_variable_is_caught(tree: ic.Tree, change: dict[str, object]) -> None:
    broken = _broken_variable(tree, "http_per_instance_concurrency", change)
    assert ic.check_scale_settings(broken) != []


def test_concurrency_removed_from_the_text_is_caught(tmp_path: Path) -> None:
    """The same through the parser: the argument deleted from function_app.tf's text."""
    copy_dir = tmp_path / "infra"
    shutil.copytree(ic.INFRA_DIR, copy_dir, ignore=shutil.ignore_patterns(".terraform", "*.md"))
    app = copy_dir / "function_app.tf"
    line = "  http_concurrency = var.http_per_instance_concurrency\n"
    assert app.read_text().count(line) == 1
    app.write_text(app.read_text().replace(line, ""))
    problems = ic.check_scale_settings(ic.load_tree(copy_dir))
    assert problems == [
        "azurerm_function_app_flex_consumption.this: http_concurrency must be "
        "var.http_per_instance_concurrency"
    ]


@pytest.mark.parametrize(
    "version", [">= 4.0, < 5.0", ">= 4.42, < 5.0", ">= 4.46", ">= 4.46, < 6.0", "~> 3.117"]
)
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


# --- Target vault permission model -----------------------------------------------------------
# The shape is checked above (check_target_vault_permissions); what the locals, validations and
# the precondition evaluate to is asked of Terraform itself, on a provider-free module built from
# the real files: variables.tf, the locals of targets.tf and the checking output.

# Key permissions of the app's access policy on an access_policy target vault (the seed
# document's set); List only with target_vault_access_policy_list.
KEY_PERMISSIONS = ["Create", "Delete", "Get", "Import", "Update"]
SAMPLE_VAULT_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-app"
    "/providers/Microsoft.KeyVault/vaults/{}"
)
SAMPLE_VAULTS = ("kv-a", "KV-B", "kv-c")  # a mixed-case id: keys are lowercase vault names
# (target_vault_permission_model, target_vault_permission_models) -> model of each sample vault.
PERMISSION_SCENARIOS = [
    ("rbac", {}, {"kv-a": "rbac", "kv-b": "rbac", "kv-c": "rbac"}),
    (
        "access_policy",
        {},
        {"kv-a": "access_policy", "kv-b": "access_policy", "kv-c": "access_policy"},
    ),
    ("rbac", {"KV-b": "access_policy"}, {"kv-a": "rbac", "kv-b": "access_policy", "kv-c": "rbac"}),
    (
        "access_policy",
        {"kv-c": "rbac"},
        {"kv-a": "access_policy", "kv-b": "access_policy", "kv-c": "rbac"},
    ),
]
SCENARIOS = [(d, e, lst) for d, e, _ in PERMISSION_SCENARIOS for lst in (False, True)]
SCENARIO_IDS = [
    f"{d}{''.join(f'+{k}={v}' for k, v in e.items())}{'+list' if lst else ''}"
    for d, e, lst in SCENARIOS
]
MODELS = {(d, tuple(e.items())): m for d, e, m in PERMISSION_SCENARIOS}
# Inputs that must fail the plan, and the message that says why.
BAD_INPUTS = [
    ({"target_vault_permission_model": "both"}, 'target_vault_permission_model must be "rbac"'),
    ({"target_vault_permission_model": "RBAC"}, 'target_vault_permission_model must be "rbac"'),
    (
        {"target_vault_permission_models": {"kv-a": "policy"}},
        "target_vault_permission_models values must be",
    ),
    (
        {
            "target_key_vault_ids": [SAMPLE_VAULT_ID.format("kv-a")],
            "target_vault_permission_models": {"kv-typo": "access_policy"},
        },
        "names a vault that is not in target_key_vault_ids",
    ),
]
BAD_INPUT_IDS = ["model-both", "model-RBAC", "exception-value", "exception-unknown-vault"]
TERRAFORM = shutil.which("terraform")


def _block(path: Path, header: str) -> str:
    """A top-level block of a terraform-fmt'ed file: from its header line to the next '}' line."""
    lines = path.read_text().splitlines()
    start = lines.index(header)
    end = lines.index("}", start)
    return "\n".join(lines[start : end + 1]) + "\n"


def _permissions_module(infra: Path, module: Path) -> Path:
    """variables.tf, the target locals and the checking output of ``infra``: no providers."""
    return _provider_free_module(
        infra,
        module,
        _block(infra / "targets.tf", "locals {")
        + _block(infra / "outputs.tf", 'output "target_vault_permission_models" {')
        + 'output "rbac" { value = keys(local.target_vaults_rbac) }\n'
        + 'output "access_policy" { value = keys(local.target_vaults_access_policy) }\n'
        + 'output "key_permissions" { value = local.target_vault_key_permissions }\n',
    )


def _provider_free_module(infra: Path, module: Path, main_tf: str) -> Path:
    """A module of ``infra``'s variables.tf plus ``main_tf``, initialised (no providers)."""
    if TERRAFORM is None:
        pytest.skip("terraform is not installed")
    module.mkdir(parents=True, exist_ok=True)
    shutil.copy(infra / "variables.tf", module / "variables.tf")
    (module / "main.tf").write_text(main_tf)
    proc = _terraform(module, "init", "-backend=false")
    assert proc.returncode == 0, proc.stderr
    return module


@pytest.fixture(scope="module")
def permissions_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _permissions_module(ic.INFRA_DIR, tmp_path_factory.mktemp("permissions"))


def _terraform(
    module: Path, *args: str, variables: dict[str, object] | None = None
) -> subprocess.CompletedProcess[str]:
    var_file = module / "test.tfvars.json"
    var_file.write_text(json.dumps({"location": "westeurope", **(variables or {})}))
    extra = ["-no-color"]
    if args[0] in ("init", "apply", "plan"):
        extra.append("-input=false")
    if args[0] in ("apply", "plan"):
        extra.append(f"-var-file={var_file}")
    return subprocess.run(
        [str(TERRAFORM), f"-chdir={module}", *args, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "TF_IN_AUTOMATION": "1"},
    )


def _scenario_variables(default: str, exceptions: dict[str, str], listing: bool) -> dict:
    return {
        "target_key_vault_ids": [SAMPLE_VAULT_ID.format(v) for v in SAMPLE_VAULTS],
        "target_vault_permission_model": default,
        "target_vault_permission_models": exceptions,
        "target_vault_access_policy_list": listing,
    }


def _evaluated(module: Path, variables: dict[str, object]) -> dict[str, object]:
    """What Terraform makes of the inputs: the vaults of each grant, the key permissions and
    the model of each vault."""
    proc = _terraform(module, "apply", "-auto-approve", variables=variables)
    if proc.returncode != 0:
        return {"error": " ".join(proc.stderr.split())}
    out = json.loads(_terraform(module, "output", "-json").stdout)
    return {name: value["value"] for name, value in out.items()}


def _expected(default: str, exceptions: dict[str, str], listing: bool) -> dict[str, object]:
    models = MODELS[(default, tuple(exceptions.items()))]
    return {
        "rbac": sorted(v for v, m in models.items() if m == "rbac"),
        "access_policy": sorted(v for v, m in models.items() if m == "access_policy"),
        "key_permissions": KEY_PERMISSIONS + ["List"] * listing,
        "target_vault_permission_models": models,
    }


def _mismatches(module: Path) -> list[str]:
    """Every way the module's evaluation differs from what the scenarios and bad inputs want."""
    found = []
    for default, exceptions, listing in SCENARIOS:
        got = _evaluated(module, _scenario_variables(default, exceptions, listing))
        want = _expected(default, exceptions, listing)
        found += [
            f"{name} for {(default, exceptions, listing)}: {got.get(name)} != {value}"
            for name, value in want.items()
            if got.get(name) != value
        ]
    for variables, message in BAD_INPUTS:
        proc = _terraform(module, "plan", variables=variables)
        if proc.returncode != 1 or message not in " ".join(proc.stderr.split()):
            found.append(f"{variables} is not refused with {message!r}")
    return found


@pytest.mark.parametrize(("default", "exceptions", "listing"), SCENARIOS, ids=SCENARIO_IDS)
def test_each_target_vault_gets_one_grant_of_its_model(
    permissions_module: Path, default: str, exceptions: dict[str, str], listing: bool
) -> None:
    got = _evaluated(permissions_module, _scenario_variables(default, exceptions, listing))
    assert got == _expected(default, exceptions, listing)
    assert not set(got["rbac"]) & set(got["access_policy"])  # one grant per vault


def test_defaults_keep_todays_role_assignment(permissions_module: Path) -> None:
    got = _evaluated(permissions_module, {"target_key_vault_ids": [SAMPLE_VAULT_ID.format("kv-a")]})
    assert got["rbac"] == ["kv-a"] and got["access_policy"] == []
    assert got["key_permissions"] == KEY_PERMISSIONS


@pytest.mark.parametrize(("variables", "message"), BAD_INPUTS, ids=BAD_INPUT_IDS)
def test_terraform_rejects_bad_permission_inputs(
    permissions_module: Path, variables: dict[str, object], message: str
) -> None:
    proc = _terraform(permissions_module, "plan", variables=variables)
    assert proc.returncode == 1
    assert message in " ".join(proc.stderr.split()), proc.stderr


def _permission_problems(tree: ic.Tree) -> list[str]:
    problems = ic.check_target_vault_permissions(tree)
    assert problems, "the broken copy was not caught"
    return problems


def test_missing_access_policy_is_caught(tree: ic.Tree) -> None:
    broken = tree.copy()
    broken.resources = [r for r in broken.resources if r[0] != "azurerm_key_vault_access_policy"]
    assert "no azurerm_key_vault_access_policy" in " ".join(_permission_problems(broken))


@pytest.mark.parametrize(
    ("variable", "change"),
    [
        ("target_vault_permission_model", {"validation": None}),
        ("target_vault_permission_model", {"default": "access_policy"}),
        ("target_vault_permission_model", {"type": "${any}"}),
        ("target_vault_permission_models", {"validation": None}),
        ("target_vault_access_policy_list", {"default": True}),
    ],
    ids=["no-validation", "default-access-policy", "untyped", "map-no-validation", "list-on"],
)
def test_broken_permission_variables_are_caught(
    tree: ic.Tree, variable: str, change: dict[str, object]
) -> None:
    _permission_problems(_broken_variable(tree, variable, change))


def test_missing_unknown_vault_precondition_is_caught(tree: ic.Tree) -> None:
    broken = tree.copy()
    broken.outputs["target_vault_permission_models"] = {
        k: v
        for k, v in broken.outputs["target_vault_permission_models"].items()
        if k != "precondition"
    }
    assert any("precondition" in p for p in _permission_problems(broken))


def test_the_real_files_have_no_mismatch(permissions_module: Path) -> None:
    assert _mismatches(permissions_module) == []


RBAC_FILTER = (
    "target_vaults_rbac          = { for name, vault in local.target_vaults : name => vault "
    'if vault.permission_model == "rbac" }'
)
POLICY_FILTER = (
    "target_vaults_access_policy = { for name, vault in local.target_vaults : name => vault "
    'if vault.permission_model == "access_policy" }'
)
LIST_SWITCH = 'var.target_vault_access_policy_list ? ["List"] : []'
EXCEPTIONS_LOCAL = (
    "{ for name, model in var.target_vault_permission_models : lower(name) => model }"
)
EXCEPTION_LOOKUP = (
    'lookup(local.target_vault_permission_models, lower(element(split("/", id), 8)), '
    "var.target_vault_permission_model)"
)
MODEL_RULE = 'contains(["rbac", "access_policy"], var.target_vault_permission_model)'
MODELS_RULE = 'contains(["rbac", "access_policy"], model)'
UNKNOWN_VAULT_RULE = (
    "alltrue([for name in keys(local.target_vault_permission_models) : "
    "contains(keys(local.target_vaults), name)])"
)


@pytest.mark.parametrize(
    ("file", "old", "new"),
    [
        # no filter: every vault would get a role and an access policy
        ("targets.tf", RBAC_FILTER, "target_vaults_rbac          = local.target_vaults"),
        ("targets.tf", POLICY_FILTER, "target_vaults_access_policy = local.target_vaults"),
        ("targets.tf", RBAC_FILTER, RBAC_FILTER.replace("==", "!=")),  # inverted
        ("targets.tf", LIST_SWITCH, '["List"]'),  # List regardless of the switch
        ("targets.tf", LIST_SWITCH, "[]"),  # List never, even when asked for
        ("targets.tf", EXCEPTIONS_LOCAL, "var.target_vault_permission_models"),  # case kept
        ("targets.tf", EXCEPTION_LOOKUP, "var.target_vault_permission_model"),  # ignored
        ("variables.tf", MODEL_RULE, MODEL_RULE.replace('"rbac",', '"rbac", "both",')),
        ("variables.tf", MODEL_RULE, MODEL_RULE.replace("var.", "lower(var.") + ")"),
        ("variables.tf", MODELS_RULE, 'model != ""'),  # any value
        ("variables.tf", 'must be \\"rbac\\" (a role', "is invalid (a role"),  # vague
        ("outputs.tf", UNKNOWN_VAULT_RULE, "length(local.target_vaults) >= 0"),  # typos pass
    ],
    ids=[
        "rbac-unfiltered",
        "policy-unfiltered",
        "rbac-inverted",
        "list-always",
        "list-never",
        "exceptions-case",
        "exceptions-ignored",
        "accepts-both",
        "accepts-RBAC",
        "map-accepts-any-value",
        "vague-message",
        "unknown-vault-accepted",
    ],
)
def test_broken_copies_are_caught_by_terraform(
    tmp_path: Path, file: str, old: str, new: str
) -> None:
    infra = tmp_path / "infra"
    shutil.copytree(ic.INFRA_DIR, infra, ignore=shutil.ignore_patterns(".terraform", "*.md"))
    text = (infra / file).read_text()
    assert text.count(old) == 1, f"{old!r} is not in {file} once"
    (infra / file).write_text(text.replace(old, new))
    assert _mismatches(_permissions_module(infra, tmp_path / "module")), "not caught"


@pytest.fixture(scope="module")
def variables_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """variables.tf alone, with no provider: Terraform evaluates its validations."""
    if TERRAFORM is None:
        pytest.skip("terraform is not installed")
    module = tmp_path_factory.mktemp("variables")
    shutil.copy(ic.INFRA_DIR / "variables.tf", module / "variables.tf")
    (module / "main.tf").write_text('output "ok" { value = var.maximum_instance_count }\n')
    proc = _terraform(module, "init", "-backend=false")
    assert proc.returncode == 0, proc.stderr
    return module


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"maximum_instance_count": 39},
            "maximum_instance_count must be an integer from 40 to 1000",
        ),
        ({"maximum_instance_count": 1}, "refuse a maximum below 40"),
        (
            {"always_ready_http_instances": 1, "zone_redundant": True},
            "needs at least 2 always-ready instances",
        ),
        (
            {"root_token_delivery": "keyvault_reference"},
            "cannot be resolved from a network-restricted vault",
        ),
        ({"target_vault_private_endpoint_approval": "sometimes"}, '"automatic" or "manual"'),
        ({"http_per_instance_concurrency": 0}, "must be an integer from 1 to 1000"),
        ({"http_per_instance_concurrency": 1001}, "must be an integer from 1 to 1000"),
        ({"http_per_instance_concurrency": 2.5}, "must be an integer from 1 to 1000"),
    ],
)
def test_terraform_refuses_settings_that_cannot_deploy(
    variables_module: Path, variables: dict[str, object], message: str
) -> None:
    proc = _terraform(variables_module, "plan", variables=variables)
    assert proc.returncode == 1, proc.stdout
    assert message in " ".join(proc.stderr.split()), proc.stderr


@pytest.mark.parametrize(
    "variables",
    [
        {"maximum_instance_count": 40},
        {"always_ready_http_instances": 1, "zone_redundant": False},
        {"always_ready_http_instances": 2, "zone_redundant": True},
        {"always_ready_http_instances": 0, "zone_redundant": True},
        {"http_per_instance_concurrency": 1},
        {"http_per_instance_concurrency": 1000},
    ],
)
def test_terraform_accepts_the_settings_that_deploy(
    variables_module: Path, variables: dict[str, object]
) -> None:
    proc = _terraform(variables_module, "plan", variables=variables)
    assert proc.returncode == 0, proc.stderr
