"""Structural security checks over the Terraform in infra/, parsed with python-hcl2.

Each ``check_*`` function takes a parsed tree and returns a list of problems (empty = pass), so
the tests can run the same checker on the real tree and on a deliberately broken copy.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

INFRA_DIR = Path(__file__).resolve().parents[2] / "infra"

# Setting names the engine (shared/settings.py) and the Functions host read in Azure.
REQUIRED_APP_SETTINGS = {
    "KEYMGMT_STORAGE__tableServiceUri",
    "KEYMGMT_STORAGE__blobServiceUri",
    "KEYMGMT_STORAGE__credential",
    "KEYMGMT_AUDIT_DEVICES",
    "KEYMGMT_TABLE_PREFIX",
    "KEYMGMT_SEAL_KEY_ID",
    "KEYMGMT_DEFAULT_MOUNTS",
    "KEYMGMT_ROTATION_SCHEDULE",
    "KEYMGMT_RECONCILE_SCHEDULE",
    "KEYMGMT_TOKEN_TIDY_SCHEDULE",
    "AZURE_TENANT_ID",
    "AZURE_ENVIRONMENT",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__blobServiceUri",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}
# Set only when their variable is (app_settings_optional drops empty values).
OPTIONAL_APP_SETTINGS = {"KEYMGMT_KEYVAULT_URLS", "KEYMGMT_PRIVATE_RANGES", "AZURE_AD_RESOURCE"}
# Development-only settings that must never reach Azure.
FORBIDDEN_APP_SETTINGS = {"KEYMGMT_SEAL_KEY", "KEYMGMT_STORAGE", "FUNCTIONS_EXTENSION_VERSION"}
KEYVAULT_EVENT_TYPES = {
    "Microsoft.KeyVault.KeyNewVersionCreated",
    "Microsoft.KeyVault.KeyNearExpiry",
    "Microsoft.KeyVault.KeyExpired",
}
# Setting names whose value is a secret: only a Key Vault reference may stand there.
_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PWD|_KEY)$", re.IGNORECASE)
BROAD_ROLES = {"Owner", "Contributor", "Key Vault Administrator", "User Access Administrator"}

# A literal app-setting value that looks like a credential.
_SECRET_LITERAL = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"AccountKey=",
        r"SharedAccessSignature=",
        r"SharedAccessKey=",
        r"InstrumentationKey=",
        r"\bsig=",
        r"password\s*[=:]",
        r"secret\s*[=:]",
        r"BEGIN [A-Z ]*PRIVATE KEY",
        r"^[A-Za-z0-9+/]{32,}={0,2}$",  # base64 blob (a raw key, KEYMGMT_SEAL_KEY style)
        r"^[0-9a-f]{32,}$",  # hex key or token digest pasted as a literal
        r"^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.",  # JWT
    )
]
# An interpolation that feeds a raw secret into a setting (a digest of it is fine).
_SECRET_REFERENCE = re.compile(
    r"(primary_access_key|secondary_access_key|primary_connection_string|"
    r"secondary_connection_string|instrumentation_key|random_password\.[\w\[\]*.]+\.result|"
    r"var\.root_token\b|local\.root_token\b(?!_))"
)


@dataclass
class Tree:
    """The merged top-level blocks of every .tf file in one directory."""

    resources: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    providers: list[dict[str, Any]] = field(default_factory=list)

    def of_type(self, rtype: str) -> list[tuple[str, dict[str, Any]]]:
        return [(name, body) for t, name, body in self.resources if t == rtype]

    def copy(self) -> Tree:
        return copy.deepcopy(self)


def parse_file(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        return hcl2.load(
            f,
            serialization_options=hcl2.SerializationOptions(
                strip_string_quotes=True, explicit_blocks=False
            ),
        )


def load_tree(directory: Path = INFRA_DIR) -> Tree:
    tree = Tree()
    files = sorted(directory.glob("*.tf"))
    if not files:
        raise FileNotFoundError(f"no .tf files in {directory}")
    for path in files:
        doc = parse_file(path)
        for block in doc.get("resource", []):
            for rtype, named in block.items():
                for name, body in named.items():
                    tree.resources.append((rtype, name, body))
        for block in doc.get("variable", []):
            tree.variables.update(block)
        for block in doc.get("output", []):
            tree.outputs.update(block)
        for block in doc.get("locals", []):
            tree.locals.update({k: v for k, v in block.items() if k != "__comments__"})
        tree.terraform.extend(doc.get("terraform", []))
        tree.providers.extend(doc.get("provider", []))
    return tree


def _first(body: dict[str, Any], key: str) -> dict[str, Any]:
    """First nested block ``key`` of a resource body ({} when absent)."""
    value = body.get(key) or [{}]
    return value[0] if isinstance(value, list) else value


def _refs(expr: Any, rtype: str, name: str) -> bool:
    """Does an expression reference resource rtype.name (or rtype.name[...])?"""
    return isinstance(expr, str) and re.search(rf"\b{rtype}\.{name}\b", expr) is not None


def _private_endpoints_for(tree: Tree, rtype: str, name: str) -> list[tuple[str, set[str]]]:
    """Private endpoints whose connection points at rtype.name, with their subresources."""
    found = []
    for pe_name, pe in tree.of_type("azurerm_private_endpoint"):
        psc = _first(pe, "private_service_connection")
        if _refs(psc.get("private_connection_resource_id"), rtype, name):
            subresources = psc.get("subresource_names", [])
            if isinstance(subresources, str):  # ["${each.key}"] style is a list; toset() is not
                subresources = [subresources]
            expanded: set[str] = set()
            for sub in subresources:
                if sub == "${each.key}":
                    expanded |= _for_each_literal_keys(pe)
                else:
                    expanded.add(sub)
            dns_group = _first(pe, "private_dns_zone_group")
            if dns_group.get("private_dns_zone_ids"):
                found.append((pe_name, expanded))
    return found


def _for_each_literal_keys(body: dict[str, Any]) -> set[str]:
    """Keys of a literal ``for_each = toset([...])``."""
    expr = body.get("for_each", "")
    return set(re.findall(r'"([^"]+)"', expr)) if isinstance(expr, str) else set()


def check_storage_accounts(tree: Tree) -> list[str]:
    """Storage: identity only, TLS 1.2, no public network, private endpoints (blob/queue/table)."""
    problems = []
    accounts = tree.of_type("azurerm_storage_account")
    if not accounts:
        problems.append("no azurerm_storage_account")
    for name, body in accounts:
        where = f"azurerm_storage_account.{name}"
        expected = {
            "shared_access_key_enabled": False,
            "public_network_access_enabled": False,
            "allow_nested_items_to_be_public": False,
            "min_tls_version": "TLS1_2",
            "https_traffic_only_enabled": True,
        }
        for attr, value in expected.items():
            if body.get(attr) != value:
                problems.append(f"{where}: {attr} must be {value!r}, got {body.get(attr)!r}")
        covered = set().union(
            *[subs for _, subs in _private_endpoints_for(tree, "azurerm_storage_account", name)]
        )
        missing = {"blob", "queue", "table"} - covered
        if missing:
            problems.append(f"{where}: no private endpoint with DNS zone for {sorted(missing)}")
    return problems


def check_key_vaults(tree: Tree) -> list[str]:
    """Key Vaults: premium, RBAC, purge protection, no public access, deny ACL, private endpoint."""
    problems = []
    vaults = tree.of_type("azurerm_key_vault")
    if not vaults:
        problems.append("no azurerm_key_vault")
    for name, body in vaults:
        where = f"azurerm_key_vault.{name}"
        expected = {
            "sku_name": "premium",
            "rbac_authorization_enabled": True,
            "purge_protection_enabled": True,
            "public_network_access_enabled": False,
        }
        for attr, value in expected.items():
            if body.get(attr) != value:
                problems.append(f"{where}: {attr} must be {value!r}, got {body.get(attr)!r}")
        if "enable_rbac_authorization" in body:
            problems.append(f"{where}: use rbac_authorization_enabled, not the deprecated name")
        if _first(body, "network_acls").get("default_action") != "Deny":
            problems.append(f"{where}: network_acls.default_action must be Deny")
        pes = _private_endpoints_for(tree, "azurerm_key_vault", name)
        if not any("vault" in subs for _, subs in pes):
            problems.append(f"{where}: no private endpoint (subresource vault) with DNS zone")
    return problems


def check_target_vaults(tree: Tree) -> list[str]:
    """Each target vault: a grant for the app, a private endpoint, an Event Grid subscription.

    Which grant, and with what, is check_target_vault_permissions's business.
    """
    problems = []
    pes = [
        body
        for _, body in tree.of_type("azurerm_private_endpoint")
        if "target_vaults" in str(body.get("for_each", ""))
        and _first(body, "private_service_connection").get("subresource_names") == ["vault"]
        and _first(body, "private_dns_zone_group").get("private_dns_zone_ids")
    ]
    if not pes:
        problems.append("no private endpoint (subresource vault) for the target vaults")
    roles = [
        body
        for _, body in tree.of_type("azurerm_role_assignment")
        if "target_vaults" in str(body.get("for_each", ""))
    ]
    if not roles:
        problems.append("no role assignment on the target vaults")
    subs = tree.of_type("azurerm_eventgrid_system_topic_event_subscription")
    if not subs:
        problems.append("no Event Grid subscription for the target vaults")
    for name, body in subs:
        endpoint = _first(body, "azure_function_endpoint").get("function_id", "")
        if not endpoint.endswith("/functions/keyvault_events"):
            problems.append(f"{name}: must deliver to the keyvault_events function")
        types = body.get("included_event_types")
        if isinstance(types, str) and types.startswith("${local."):
            types = tree.locals.get(types[len("${local.") : -1])
        if set(types or []) != KEYVAULT_EVENT_TYPES:
            problems.append(f"{name}: included_event_types must be {sorted(KEYVAULT_EVENT_TYPES)}")
    return problems


def _preconditions(tree: Tree) -> list[dict[str, Any]]:
    """Every precondition block, on outputs and in resources' lifecycle blocks."""
    found = list(
        itertools.chain.from_iterable(b.get("precondition", []) for b in tree.outputs.values())
    )
    for _, _, body in tree.resources:
        found += _first(body, "lifecycle").get("precondition", [])
    return found


# What the engine calls on a target vault (docs/kvemu.md, "Permissions per engine call").
ENGINE_DATA_ACTIONS = {
    "Microsoft.KeyVault/vaults/keys/read",
    "Microsoft.KeyVault/vaults/keys/create/action",
    "Microsoft.KeyVault/vaults/keys/import/action",
    "Microsoft.KeyVault/vaults/keys/update/action",
    "Microsoft.KeyVault/vaults/keys/delete",
}


def _variable_problems(tree: Tree, expected: dict[str, tuple[str, Any, bool]]) -> list[str]:
    """Each variable declared with its type and default, and validated where it must be."""
    problems = []
    for name, (vtype, default, validated) in expected.items():
        body = tree.variables.get(name)
        if body is None:
            problems.append(f"variable {name} missing")
            continue
        if body.get("type") != vtype or body.get("default") != default:
            problems.append(f"variable {name} must be {vtype} with default {default!r}")
        if validated and not body.get("validation"):
            problems.append(f"variable {name}: no validation")
    return problems


def check_target_vault_permissions(tree: Tree) -> list[str]:
    """Each target vault gets exactly one grant, of its permission model, with only what it needs.

    The shape, read here: rbac vaults get the role assignment, access_policy vaults an access
    policy for the app's identity with keys only; each iterates over its own filtered local, the
    policy takes its permissions from one local, the variables are typed and validated, and a
    precondition rejects exceptions for unknown vaults. What the locals and validations
    evaluate to is Terraform's to say: tests/infra/test_structure.py asks it.
    """
    problems: list[str] = []
    grants = {
        "azurerm_role_assignment": "${local.target_vaults_rbac}",
        "azurerm_key_vault_access_policy": "${local.target_vaults_access_policy}",
    }
    for rtype, for_each in grants.items():
        found = [
            (n, b)
            for n, b in tree.of_type(rtype)
            if "target_vaults" in str(b.get("for_each", ""))
            # grants on the vaults themselves (not, say, the dead-letter container's)
            and (rtype != "azurerm_role_assignment" or b.get("scope") == "${each.value.id}")
        ]
        if not found:
            problems.append(f"no {rtype} for the target vaults")
        for name, body in found:
            if body.get("for_each") != for_each:
                problems.append(
                    f"{rtype}.{name}: for_each must be {for_each} (only the vaults of its model)"
                )
    roles = dict(tree.of_type("azurerm_role_definition"))
    custom = roles.get("target_vault", {})
    wanted_actions = sorted(ENGINE_DATA_ACTIONS)
    permissions = custom.get("permissions") or [{}]
    permissions = permissions[0] if isinstance(permissions, list) else permissions
    if not custom:
        problems.append(
            "no azurerm_role_definition.target_vault (the engine's least-privilege role)"
        )
    elif sorted(tree.locals.get("target_vault_data_actions") or []) != wanted_actions or (
        permissions.get("data_actions") != "${local.target_vault_data_actions}"
        or permissions.get("actions") not in ([], None)
    ):
        problems.append(
            f"azurerm_role_definition.target_vault: data actions must be exactly {wanted_actions} "
            "and no control-plane actions"
        )
    for name, body in tree.of_type("azurerm_role_assignment"):
        if body.get("for_each") != grants["azurerm_role_assignment"]:
            continue
        where = f"azurerm_role_assignment.{name}"
        if "azurerm_role_definition.target_vault" not in str(body.get("role_definition_id", "")):
            problems.append(f"{where}: the custom role must be the default")
        if body.get("principal_id") != "${local.principal_id}":
            problems.append(
                f"{where}: principal_id must be the app's identity (local.principal_id)"
            )
        if body.get("scope") != "${each.value.id}":
            problems.append(f"{where}: scope must be the target vault (each.value.id)")
    for name, body in tree.of_type("azurerm_key_vault_access_policy"):
        where = f"azurerm_key_vault_access_policy.{name}"
        expected = {
            "key_vault_id": "${each.value.id}",
            "object_id": "${local.principal_id}",
            "tenant_id": "${local.tenant_id}",
            "key_permissions": "${local.target_vault_key_permissions}",
        }
        for attr, value in expected.items():
            if body.get(attr) != value:
                problems.append(f"{where}: {attr} must be {value}, got {body.get(attr)!r}")
        for attr in ("secret_permissions", "certificate_permissions", "storage_permissions"):
            if body.get(attr):
                problems.append(f"{where}: {attr} must be empty (the engine uses keys only)")
        if body.get("application_id"):
            problems.append(f"{where}: application_id makes a compound identity; leave it unset")
    expected_vars = {
        "target_vault_permission_model": ("string", "rbac", True),
        "target_vault_permission_models": ("${map(string)}", {}, True),
        "target_vault_access_policy_list": ("bool", False, False),
    }
    problems += _variable_problems(tree, expected_vars)
    if not any(
        "target_vault_permission_models" in str(p.get("condition", ""))
        for p in _preconditions(tree)
    ):
        problems.append("no precondition rejects target_vault_permission_models of unknown vaults")
    return problems


def check_role_assignments(tree: Tree) -> list[str]:
    """Every role assignment names its principal type and avoids broad roles."""
    problems = []
    for name, body in tree.of_type("azurerm_role_assignment"):
        ptype = body.get("principal_type")
        if not ptype or not (
            ptype in {"ServicePrincipal", "User", "Group"} or str(ptype).startswith("${var.")
        ):
            problems.append(f"azurerm_role_assignment.{name}: principal_type missing or invalid")
        role = body.get("role_definition_name")
        if role in BROAD_ROLES:
            problems.append(f"azurerm_role_assignment.{name}: broad role {role!r}")
    return problems


def app_settings(tree: Tree) -> dict[str, Any]:
    """All app settings: the locals named app_settings_* plus literal maps on the apps."""
    merged: dict[str, Any] = {}
    for key, value in tree.locals.items():
        if key.startswith("app_settings") and isinstance(value, dict):
            merged.update(value)
    for rtype in ("azurerm_function_app_flex_consumption", "azurerm_linux_function_app"):
        for _, body in tree.of_type(rtype):
            if isinstance(body.get("app_settings"), dict):
                merged.update(body["app_settings"])
    return merged


def check_app_settings(tree: Tree) -> list[str]:
    """Required names present, no development-only names, nothing secret in plain text."""
    problems = []
    settings = app_settings(tree)
    apps = tree.of_type("azurerm_function_app_flex_consumption")
    if not apps:
        problems.append("no azurerm_function_app_flex_consumption")
    for name, body in apps:
        if body.get("app_settings") != "${local.app_settings}" and not isinstance(
            body.get("app_settings"), dict
        ):
            problems.append(f"{name}: app_settings must be local.app_settings or a literal map")
    if not isinstance(tree.locals.get("app_settings"), str) and apps:
        # local.app_settings is the merge(...) of the app_settings_* maps checked below.
        if not any(isinstance(b.get("app_settings"), dict) for _, b in apps):
            problems.append("local.app_settings missing")
    missing = REQUIRED_APP_SETTINGS - set(settings)
    if missing:
        problems.append(f"app settings missing: {sorted(missing)}")
    if "KEYMGMT_ROOT_TOKEN_SHA256" not in settings:
        problems.append("no root token setting (KEYMGMT_ROOT_TOKEN_SHA256)")
    for key, value in settings.items():
        if key in FORBIDDEN_APP_SETTINGS:
            problems.append(f"app setting {key} is development-only")
        text = "" if value is None else str(value)
        literal = re.sub(r"\$\{.*?\}", "", text)
        if _SECRET_NAME.search(key) and text and not text.startswith("@Microsoft.KeyVault("):
            problems.append(f"app setting {key}: a secret must be a Key Vault reference")
        for pattern in _SECRET_LITERAL:
            if literal and pattern.search(literal):
                problems.append(
                    f"app setting {key}: literal looks like a secret ({pattern.pattern})"
                )
        for expr in re.findall(r"\$\{(.*?)\}", text):
            if _SECRET_REFERENCE.search(expr) and "sha256(" not in expr:
                problems.append(f"app setting {key}: interpolates a raw secret ({expr})")
    return problems


# The audit trail (infra/audit.tf): variables with their type, default and whether a validation
# must guard them.
AUDIT_VARIABLES = {
    "audit_container_name": ("string", "audit", True),
    "audit_retention_days": ("number", 365, True),
    "audit_retention_locked": ("bool", False, False),
    "audit_blob_rotate": ("string", "day", True),
    "audit_devices": (
        '${list(object({path = string, type = string, description = optional(string, ""), '
        "options = optional(map(string), {})}))}",
        None,
        True,
    ),
    "auth_azure_resource": ("string", "", True),
}


def _prevents_destroy(body: dict[str, Any]) -> bool:
    return _first(body, "lifecycle").get("prevent_destroy") is True


def check_audit_storage(tree: Tree) -> list[str]:
    """The audit container: private, in the app's account, under a WORM policy that allows
    protected appends to append blobs, retention and lock from validated variables."""
    problems: list[str] = []
    containers = dict(tree.of_type("azurerm_storage_container"))
    container = containers.get("audit")
    if container is None:
        return ["no azurerm_storage_container.audit"]
    where = "azurerm_storage_container.audit"
    if container.get("container_access_type") != "private":
        problems.append(f"{where}: container_access_type must be private")
    if container.get("storage_account_id") != "${azurerm_storage_account.this.id}":
        problems.append(f"{where}: must be in the app's storage account (through Resource Manager)")
    if container.get("name") != "${var.audit_container_name}":
        problems.append(f"{where}: name must be var.audit_container_name")
    if not _prevents_destroy(container):
        problems.append(f"{where}: lifecycle.prevent_destroy must be true")
    policies = [
        (n, b)
        for n, b in tree.of_type("azurerm_storage_container_immutability_policy")
        if b.get("storage_container_resource_manager_id") == "${azurerm_storage_container.audit.id}"
    ]
    if len(policies) != 1:
        problems.append("the audit container needs exactly one immutability policy")
    for name, body in policies:
        where = f"azurerm_storage_container_immutability_policy.{name}"
        if body.get("protected_append_writes_enabled") is not True:
            problems.append(f"{where}: protected_append_writes_enabled must be true (appends only)")
        if body.get("protected_append_writes_all_enabled") not in (False, None):
            problems.append(f"{where}: protected_append_writes_all_enabled must stay false")
        if body.get("immutability_period_in_days") != "${var.audit_retention_days}":
            problems.append(
                f"{where}: immutability_period_in_days must be var.audit_retention_days"
            )
        if body.get("locked") != "${var.audit_retention_locked}":
            problems.append(f"{where}: locked must be var.audit_retention_locked")
        if not _prevents_destroy(body):
            problems.append(f"{where}: lifecycle.prevent_destroy must be true")
    problems += _variable_problems(tree, AUDIT_VARIABLES)
    return problems


def check_audit_role(tree: Tree) -> list[str]:
    """The app's identity may write blobs in the audit container, with a role scoped to it."""
    found = [
        (n, b)
        for n, b in tree.of_type("azurerm_role_assignment")
        if b.get("scope") == "${azurerm_storage_container.audit.id}"
    ]
    if not found:
        return ["no role assignment scoped to the audit container"]
    problems = []
    for name, body in found:
        where = f"azurerm_role_assignment.{name}"
        if body.get("principal_id") != "${local.principal_id}":
            problems.append(
                f"{where}: principal_id must be the app's identity (local.principal_id)"
            )
        if body.get("role_definition_name") != "Storage Blob Data Contributor":
            problems.append(f"{where}: role must be Storage Blob Data Contributor")
    return problems


def check_audit_settings(tree: Tree) -> list[str]:
    """The blob endpoint, the devices and auth/azure's resource reach the app from infra/."""
    problems = []
    settings = app_settings(tree)
    blob = str(settings.get("KEYMGMT_STORAGE__blobServiceUri", ""))
    if "azurerm_storage_account.this.primary_blob_endpoint" not in blob:
        problems.append(
            "KEYMGMT_STORAGE__blobServiceUri must be the account's primary blob endpoint"
        )
    if settings.get("KEYMGMT_AUDIT_DEVICES") != "${jsonencode(local.audit_devices)}":
        problems.append("KEYMGMT_AUDIT_DEVICES must be jsonencode(local.audit_devices)")
    optional = tree.locals.get("app_settings_optional") or {}
    if optional.get("AZURE_AD_RESOURCE") != "${var.auth_azure_resource}":
        problems.append(
            "AZURE_AD_RESOURCE must be var.auth_azure_resource, in app_settings_optional"
        )
    return problems


def check_function_app(tree: Tree) -> list[str]:
    """HTTPS only, Python, VNet integration, identity-based deployment storage."""
    problems = []
    for name, body in tree.of_type("azurerm_function_app_flex_consumption"):
        where = f"azurerm_function_app_flex_consumption.{name}"
        if body.get("https_only") is not True:
            problems.append(f"{where}: https_only must be true")
        if body.get("runtime_name") != "python":
            problems.append(f"{where}: runtime_name must be python")
        if not body.get("virtual_network_subnet_id"):
            problems.append(f"{where}: no VNet integration")
        if "StorageAccountConnectionString" in str(body.get("storage_authentication_type")):
            problems.append(f"{where}: deployment storage must use a managed identity")
        if body.get("storage_access_key") or not _first(body, "identity"):
            problems.append(f"{where}: must use a managed identity, not keys")
    return problems


# Throughput per instance (docs/performance.md): the Flex Consumption scale settings, each from its
# variable, and the Python worker's thread pool sized from the same variable as the per-instance
# HTTP concurrency.
SCALE_ARGUMENTS = {
    "instance_memory_in_mb": "instance_memory_mb",
    "maximum_instance_count": "maximum_instance_count",
    "http_concurrency": "http_per_instance_concurrency",
}
THREAD_POOL_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"
# Scale settings Flex Consumption takes from functionAppConfig instead (Microsoft's guide to
# migrating Consumption apps to Flex Consumption drops them): set as app settings they would
# only mislead.
FLEX_SCALE_APP_SETTINGS = {
    "FUNCTIONS_WORKER_PROCESS_COUNT",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY",
    "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
}


def check_scale_settings(tree: Tree) -> list[str]:
    """Instance memory, maximum instances and per-instance HTTP concurrency come from their
    variables; the worker's thread pool is the same number as the HTTP concurrency; the
    concurrency variable is an integer default within 1..1000, validated."""
    problems = []
    for name, body in tree.of_type("azurerm_function_app_flex_consumption"):
        where = f"azurerm_function_app_flex_consumption.{name}"
        for argument, variable in SCALE_ARGUMENTS.items():
            if body.get(argument) != f"${{var.{variable}}}":
                problems.append(f"{where}: {argument} must be var.{variable}")
    settings = app_settings(tree)
    for key in sorted(FLEX_SCALE_APP_SETTINGS & set(settings)):
        problems.append(f"app setting {key} does not apply to Flex Consumption")
    threads = settings.get(THREAD_POOL_SETTING)
    if threads not in (
        "${tostring(var.http_per_instance_concurrency)}",
        "${var.http_per_instance_concurrency}",
    ):
        problems.append(
            f"app setting {THREAD_POOL_SETTING} must be var.http_per_instance_concurrency, "
            f"got {threads!r}"
        )
    body = tree.variables.get("http_per_instance_concurrency")
    if body is None:
        return [*problems, "variable http_per_instance_concurrency missing"]
    default = body.get("default")
    if body.get("type") != "number" or not (
        isinstance(default, int) and not isinstance(default, bool) and 1 <= default <= 1000
    ):
        problems.append(
            "variable http_per_instance_concurrency must be a number with an integer default "
            f"from 1 to 1000, got {body.get('type')!r} {default!r}"
        )
    conditions = " ".join(str(v.get("condition", "")) for v in body.get("validation", []))
    for bound in (">= 1", "<= 1000", "floor(var.http_per_instance_concurrency)"):
        if bound not in conditions:
            problems.append(f"variable http_per_instance_concurrency: no validation of {bound!r}")
    return problems


def check_variables(tree: Tree) -> list[str]:
    """Every variable has a non-empty description and a type."""
    problems = []
    for name, body in tree.variables.items():
        if not str(body.get("description", "")).strip():
            problems.append(f"variable {name}: no description")
        if "type" not in body:
            problems.append(f"variable {name}: no type")
    return problems


def check_outputs(tree: Tree) -> list[str]:
    """The outputs include the function URL and the identity's principal id."""
    problems = []
    url = tree.outputs.get("function_app_url", {})
    if "default_hostname" not in str(url.get("value", "")):
        problems.append("output function_app_url must come from the app's default_hostname")
    principal = tree.outputs.get("identity_principal_id", {})
    if "principal_id" not in str(principal.get("value", "")):
        problems.append("output identity_principal_id missing")
    for name, body in tree.outputs.items():
        if not str(body.get("description", "")).strip():
            problems.append(f"output {name}: no description")
        if "root_token" in str(body.get("value", "")) and body.get("sensitive") is not True:
            if "secret" not in name:
                problems.append(f"output {name}: exposes the root token without sensitive = true")
    return problems


def _version_bounds(constraint: str) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    lower = upper = None
    for part in constraint.split(","):
        m = re.fullmatch(r"\s*(>=|<|~>|=)?\s*([\d.]+)\s*", part)
        if not m:
            continue
        op = m.group(1) or "="
        ver = tuple(int(x) for x in [*m.group(2).split("."), "0", "0"][:3])
        if op == ">=":
            lower = ver
        elif op == "<":
            upper = ver
    return lower, upper


def check_versions(tree: Tree) -> list[str]:
    """terraform >= 1.9 (cross-variable validations); azurerm >= 4.46, < 5; storage_use_azuread."""
    problems = []
    required_version = next(
        (t["required_version"] for t in tree.terraform if "required_version" in t), ""
    )
    low, _ = _version_bounds(required_version)
    if low is None or low < (1, 9, 0):
        problems.append(f"terraform required_version must be >= 1.9, got {required_version!r}")
    azurerm = {}
    for block in tree.terraform:
        for providers in block.get("required_providers", []):
            azurerm = providers.get("azurerm", azurerm)
    if azurerm.get("source") != "hashicorp/azurerm":
        problems.append("azurerm must come from hashicorp/azurerm")
    low, high = _version_bounds(str(azurerm.get("version", "")))
    if low is None or low < (4, 46, 0):
        problems.append(f"azurerm lower bound must be >= 4.46, got {azurerm.get('version')!r}")
    if high is None or high > (5, 0, 0) or high < (4, 47, 0):
        problems.append(f"azurerm must be pinned below 5.0, got {azurerm.get('version')!r}")
    azurerm_providers = [p["azurerm"] for p in tree.providers if "azurerm" in p]
    if not azurerm_providers or any(
        p.get("storage_use_azuread") is not True for p in azurerm_providers
    ):
        problems.append("provider azurerm must set storage_use_azuread = true")
    return problems


def check_checkov_skips(tree: Tree) -> list[str]:
    """Every inline checkov skip names a check and gives a real justification."""
    problems = []
    for rtype, name, body in tree.resources:
        for comment in body.get("__comments__", []):
            text = comment.get("value", "")
            if "checkov:skip" not in text:
                continue
            m = re.fullmatch(r"\s*checkov:skip=(CKV2?_[A-Z]+_\d+):(.*)", text)
            if not m or len(m.group(2).strip()) < 40:
                problems.append(f"{rtype}.{name}: unjustified checkov skip {text!r}")
    return problems


ALL_CHECKS = (
    check_storage_accounts,
    check_key_vaults,
    check_target_vaults,
    check_target_vault_permissions,
    check_role_assignments,
    check_app_settings,
    check_audit_storage,
    check_audit_role,
    check_audit_settings,
    check_function_app,
    check_scale_settings,
    check_variables,
    check_outputs,
    check_versions,
    check_checkov_skips,
)


def resource(tree: Tree, rtype: str, name: str) -> dict[str, Any]:
    """The body of one resource, for tests that break a parsed copy."""
    for t, n, body in tree.resources:
        if (t, n) == (rtype, name):
            return body
    raise KeyError(f"{rtype}.{name}")
