"""The audit trail's infrastructure (infra/audit.tf, its role in rbac.tf, its app settings).

As in test_structure.py, each checker runs on the real tree and on copies broken in the way it
exists to catch; what the devices local and the variables' validations evaluate to is asked of
Terraform itself, on a provider-free module made of variables.tf and audit.tf's locals.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import infra_checks as ic
import pytest
from test_structure import _block, _broken_variable, _provider_free_module, _terraform

SETTINGS_PY = ic.INFRA_DIR.parent / "shared" / "settings.py"
# The device shape fixed for every branch (issue 14): what `GET sys/audit` shows.
DEVICE_KEYS = {"path", "type", "description", "options"}
COMMON_OPTIONS = {"log_raw", "hmac_accessor", "elide_list_responses"}
OPTIONS_BY_TYPE = {
    "blob": COMMON_OPTIONS | {"container", "rotate"},
    "log": COMMON_OPTIONS,
    "file": COMMON_OPTIONS | {"file_path", "mode"},
}


@pytest.fixture(scope="module")
def tree() -> ic.Tree:
    return ic.load_tree()


def test_missing_policy_or_container_is_caught(tree: ic.Tree) -> None:
    broken = tree.copy()
    broken.resources = [
        r for r in broken.resources if r[0] != "azurerm_storage_container_immutability_policy"
    ]
    assert "exactly one immutability policy" in " ".join(ic.check_audit_storage(broken))
    broken.resources = [
        r for r in broken.resources if (r[0], r[1]) != ("azurerm_storage_container", "audit")
    ]
    assert ic.check_audit_storage(broken) == ["no azurerm_storage_container.audit"]
    broken = tree.copy()
    broken.resources = [r for r in broken.resources if r[1] != "app_audit_blob"]
    assert ic.check_audit_role(broken) == ["no role assignment scoped to the audit container"]


@pytest.mark.parametrize(
    ("variable", "change"),
    [
        ("audit_retention_days", {"validation": None}),
        ("audit_retention_days", {"default": 7}),
        ("audit_retention_locked", {"default": True}),
        ("audit_blob_rotate", {"validation": None}),
        ("audit_container_name", {"type": "${any}"}),
        ("audit_devices", {"validation": None}),
        ("auth_azure_resource", {"default": "https://management.azure.com/"}),
    ],
    ids=[
        "days-unvalidated",
        "days-7",
        "locked-by-default",
        "rotate-any",
        "name-untyped",
        "devices-unvalidated",
        "resource-default",
    ],
)
def test_broken_audit_variables_are_caught(
    tree: ic.Tree, variable: str, change: dict[str, object]
) -> None:
    broken = _broken_variable(tree, variable, change)
    assert any(variable in p for p in ic.check_audit_storage(broken))


@pytest.mark.parametrize(
    ("local", "setting", "value"),
    [
        ("app_settings_engine", "KEYMGMT_STORAGE__blobServiceUri", None),
        (
            "app_settings_engine",
            "KEYMGMT_STORAGE__blobServiceUri",
            '${trimsuffix(azurerm_storage_account.this.primary_table_endpoint, "/")}',
        ),
        ("app_settings_audit", "KEYMGMT_AUDIT_DEVICES", None),
        ("app_settings_audit", "KEYMGMT_AUDIT_DEVICES", '[{"path":"log","type":"log"}]'),
        ("app_settings_optional", "AZURE_AD_RESOURCE", None),
        ("app_settings_optional", "AZURE_AD_RESOURCE", "https://management.azure.com/"),
    ],
)
def test_broken_audit_setting_is_caught(
    tree: ic.Tree, local: str, setting: str, value: str | None
) -> None:
    broken = tree.copy()
    mapping = {k: v for k, v in broken.locals[local].items() if k != setting}
    if value is not None:
        mapping[setting] = value
    broken.locals[local] = mapping
    problems = ic.check_audit_settings(broken) + ic.check_app_settings(broken)
    assert any(setting in p for p in problems)


def test_text_level_mutation_goes_through_the_parser(tmp_path: Path) -> None:
    """Editing audit.tf's text (not the parsed dict) is caught too."""
    infra = tmp_path / "infra"
    shutil.copytree(ic.INFRA_DIR, infra, ignore=shutil.ignore_patterns(".terraform", "*.md"))
    audit_tf = infra / "audit.tf"
    text = audit_tf.read_text()
    old = "protected_append_writes_enabled       = true"
    assert text.count(old) == 1
    audit_tf.write_text(text.replace(old, "protected_append_writes_enabled       = false"))
    problems = ic.check_audit_storage(ic.load_tree(infra))
    assert any("protected_append_writes_enabled" in p for p in problems)


# --- What Terraform makes of the audit variables ---------------------------------------------


def _audit_module(infra: Path, module: Path) -> Path:
    """variables.tf and the devices local of ``infra``, with the devices as an output."""
    return _provider_free_module(
        infra,
        module,
        _block(infra / "audit.tf", "locals {")
        + 'output "devices" { value = jsonencode(local.audit_devices) }\n',
    )


@pytest.fixture(scope="module")
def audit_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _audit_module(ic.INFRA_DIR, tmp_path_factory.mktemp("audit"))


def _devices(module: Path, variables: dict[str, object]) -> list[dict[str, Any]]:
    """KEYMGMT_AUDIT_DEVICES as the app would read it, for these inputs."""
    proc = _terraform(module, "apply", "-auto-approve", variables=variables)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(_terraform(module, "output", "-json").stdout)
    devices = json.loads(out["devices"]["value"])
    assert isinstance(devices, list)
    return devices


def _shape_problems(devices: list[dict[str, Any]]) -> list[str]:
    """How a device list departs from the fixed shape."""
    problems = []
    for device in devices:
        if set(device) != DEVICE_KEYS:
            problems.append(f"{device}: keys must be {sorted(DEVICE_KEYS)}")
            continue
        if not all(isinstance(device[k], str) for k in ("path", "type", "description")):
            problems.append(f"{device}: path, type and description must be strings")
        options = device["options"]
        if not isinstance(options, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in options.items()
        ):
            problems.append(f"{device}: options must map strings to strings")
            continue
        allowed = OPTIONS_BY_TYPE.get(device["type"])
        if allowed is None:
            problems.append(f"{device}: type must be one of {sorted(OPTIONS_BY_TYPE)}")
        elif set(options) - allowed:
            problems.append(f"{device}: unknown options {sorted(set(options) - allowed)}")
    if len({d.get("path") for d in devices}) != len(devices):
        problems.append("paths must be unique")
    return problems


def test_default_devices_are_the_worm_blob_and_the_log(audit_module: Path) -> None:
    devices = _devices(audit_module, {})
    assert _shape_problems(devices) == []
    by_path = {d["path"]: d for d in devices}
    assert set(by_path) == {"blob", "log"}
    assert by_path["blob"]["type"] == "blob"
    assert by_path["blob"]["options"] == {"container": "audit", "rotate": "day"}
    assert by_path["log"]["type"] == "log"
    assert by_path["log"]["options"] == {}


def test_rotate_and_container_follow_their_variables(audit_module: Path) -> None:
    devices = _devices(
        audit_module, {"audit_blob_rotate": "hour", "audit_container_name": "audit-prod"}
    )
    blob = next(d for d in devices if d["type"] == "blob")
    assert blob["options"] == {"container": "audit-prod", "rotate": "hour"}


def test_a_custom_device_list_replaces_the_default(audit_module: Path) -> None:
    custom = [
        {
            "path": "worm",
            "type": "blob",
            "description": "primary",
            "options": {"rotate": "hour", "hmac_accessor": "false"},
        },
        {"path": "stdout", "type": "file", "options": {"file_path": "stdout", "mode": "0600"}},
    ]
    devices = _devices(audit_module, {"audit_devices": custom})
    assert _shape_problems(devices) == []
    assert devices == [
        custom[0],
        {**custom[1], "description": ""},  # optional(string, "") fills it in
    ]


def test_the_shape_check_can_fail() -> None:
    assert _shape_problems([{"path": "a", "type": "log"}]) != []
    assert _shape_problems([{"path": "a", "type": "log", "description": "", "options": []}])
    assert _shape_problems(
        [{"path": "a", "type": "log", "description": "", "options": {"rotate": "day"}}]
    )
    one = {"path": "a", "type": "log", "description": "", "options": {}}
    assert _shape_problems([one, one]) == ["paths must be unique"]


# Inputs that must fail the plan, and the message that says why.
BAD_AUDIT_INPUTS = [
    ({"audit_retention_days": 0}, "audit_retention_days must be a whole number of days from 1"),
    ({"audit_retention_days": 146001}, "from 1 to 146000"),
    ({"audit_retention_days": 1.5}, "audit_retention_days must be a whole number"),
    ({"audit_blob_rotate": "week"}, 'audit_blob_rotate must be "day" or "hour"'),
    ({"audit_container_name": "Audit"}, "audit_container_name must be 3-63 lowercase"),
    ({"audit_container_name": "au--dit"}, "audit_container_name must be 3-63 lowercase"),
    ({"audit_container_name": "ab"}, "audit_container_name must be 3-63 lowercase"),
    ({"audit_container_name": "a" * 64}, "audit_container_name must be 3-63 lowercase"),
    ({"audit_devices": []}, "audit_devices must list at least one device"),
    ({"audit_devices": [{"path": "a/b", "type": "log"}]}, "audit_devices paths must be 1-64"),
    (
        {"audit_devices": [{"path": "a", "type": "log"}, {"path": "a", "type": "log"}]},
        "audit_devices paths must be unique",
    ),
    ({"audit_devices": [{"path": "s", "type": "socket"}]}, 'types must be "blob", "log" or'),
    ({"audit_devices": [{"path": "f", "type": "file"}]}, 'of type "file" need options.file_path'),
    (
        {"audit_devices": [{"path": "b", "type": "blob", "options": {"rotation": "hour"}}]},
        "audit_devices options must be among log_raw",
    ),
    (
        {"audit_devices": [{"path": "l", "type": "log", "options": {"rotate": "day"}}]},
        "audit_devices options must be among log_raw",
    ),
    (
        {"audit_devices": [{"path": "b", "type": "blob", "options": {"rotate": "minute"}}]},
        'options.rotate must be "day" or "hour"',
    ),
    (
        {"audit_devices": [{"path": "b", "type": "blob", "options": {"container": "logs"}}]},
        "options.container must be audit_container_name",
    ),
    (
        {"audit_container_name": "worm", "audit_devices": [{"path": "b", "type": "blob"}]},
        "options.container must be audit_container_name",
    ),
    ({"auth_azure_resource": "https://x y"}, "auth_azure_resource must be empty, an https://"),
    ({"auth_azure_resource": "management.azure.com"}, "auth_azure_resource must be empty"),
]
GOOD_AUDIT_INPUTS = [
    {"audit_retention_days": 1},
    {"audit_retention_days": 146000},
    {"audit_retention_locked": True},
    {"audit_container_name": "a-1"},
    {"audit_container_name": "a" * 63},
    {
        "audit_container_name": "worm",
        "audit_devices": [{"path": "b", "type": "blob", "options": {"container": "worm"}}],
    },
    {"audit_devices": [{"path": "stdout", "type": "file", "options": {"file_path": "stdout"}}]},
    {"auth_azure_resource": "https://management.azure.com/"},
    {"auth_azure_resource": "api://keymgmt-prod"},
    {"auth_azure_resource": "00000000-1111-4222-8333-444444444444"},
]


@pytest.mark.parametrize(
    ("variables", "message"),
    BAD_AUDIT_INPUTS,
    ids=[re.sub(r"\W+", "-", json.dumps(v))[:60] for v, _ in BAD_AUDIT_INPUTS],
)
def test_terraform_refuses_bad_audit_inputs(
    audit_module: Path, variables: dict[str, object], message: str
) -> None:
    proc = _terraform(audit_module, "plan", variables=variables)
    assert proc.returncode == 1, proc.stdout
    assert message in " ".join(proc.stderr.split()), proc.stderr


@pytest.mark.parametrize(
    "variables",
    GOOD_AUDIT_INPUTS,
    ids=[re.sub(r"\W+", "-", json.dumps(v))[:60] for v in GOOD_AUDIT_INPUTS],
)
def test_terraform_accepts_good_audit_inputs(
    audit_module: Path, variables: dict[str, object]
) -> None:
    proc = _terraform(audit_module, "plan", variables=variables)
    assert proc.returncode == 0, proc.stderr


# --- The names the app reads -----------------------------------------------------------------


def _engine_setting_names() -> list[str]:
    tree = ic.load_tree()
    return sorted(n for n in ic.app_settings(tree) if n.startswith(("KEYMGMT_", "AZURE_")))


def _read_by_settings_py(name: str) -> bool:
    source = SETTINGS_PY.read_text(encoding="utf-8").replace("{STORAGE_PREFIX}", "KEYMGMT_STORAGE")
    return f'"{name}"' in source


@pytest.mark.parametrize(
    "name",
    _engine_setting_names(),
)
def test_every_engine_setting_is_read_by_the_engine(name: str) -> None:
    assert _read_by_settings_py(name), f"shared/settings.py does not read {name}"


def test_the_settings_cross_check_sees_new_names() -> None:
    names = set(_engine_setting_names())
    assert {
        "KEYMGMT_AUDIT_DEVICES",
        "KEYMGMT_STORAGE__blobServiceUri",
        "AZURE_AD_RESOURCE",
    } <= names
    assert {"KEYMGMT_SEAL_KEY_ID", "KEYMGMT_STORAGE__tableServiceUri"} <= names
    assert _read_by_settings_py("KEYMGMT_STORAGE__tableServiceUri")
    assert not _read_by_settings_py("KEYMGMT_NO_SUCH_SETTING")


def _audit_mismatches(module: Path) -> list[str]:
    """Every way a module's evaluation differs from what the tests above want."""
    found = []
    for variables, want in [
        ({}, {"blob": {"container": "audit", "rotate": "day"}, "log": {}}),
        (
            {"audit_blob_rotate": "hour", "audit_container_name": "worm"},
            {"blob": {"container": "worm", "rotate": "hour"}, "log": {}},
        ),
    ]:
        proc = _terraform(module, "apply", "-auto-approve", variables=variables)
        if proc.returncode != 0:
            found.append(f"{variables} refused: {' '.join(proc.stderr.split())[:200]}")
            continue
        out = json.loads(_terraform(module, "output", "-json").stdout)
        devices = json.loads(out["devices"]["value"])
        got = {d.get("path"): d.get("options") for d in devices}
        if got != want or _shape_problems(devices):
            found.append(f"{variables}: devices {devices}")
    for variables, message in BAD_AUDIT_INPUTS:
        proc = _terraform(module, "plan", variables=variables)
        if proc.returncode != 1 or message not in " ".join(proc.stderr.split()):
            found.append(f"{variables} is not refused with {message!r}")
    return found


def test_the_real_audit_files_have_no_mismatch(audit_module: Path) -> None:
    assert _audit_mismatches(audit_module) == []


ROTATE_RULE = 'contains(["day", "hour"], var.audit_blob_rotate)'
CONTAINER_RULE = 'lookup(d.options, "container", "audit") == var.audit_container_name'
DEFAULT_ROTATE = "rotate = var.audit_blob_rotate"
LOG_DEVICE = 'path        = "log"'


@pytest.mark.parametrize(
    ("file", "old", "new"),
    [
        ("variables.tf", ROTATE_RULE, ROTATE_RULE.replace('"hour"]', '"hour", "week"]')),
        ("variables.tf", CONTAINER_RULE, "true"),  # any container, WORM or not
        ("variables.tf", "var.audit_retention_days >= 1 &&", "var.audit_retention_days >= 0 &&"),
        ("audit.tf", DEFAULT_ROTATE, 'rotate = "day"'),  # the variable ignored
        ("audit.tf", LOG_DEVICE, 'path        = "blob"'),  # two devices on one path
    ],
    ids=["rotate-week", "any-container", "zero-days", "rotate-ignored", "duplicate-path"],
)
def test_broken_audit_copies_are_caught_by_terraform(
    tmp_path: Path, file: str, old: str, new: str
) -> None:
    infra = tmp_path / "infra"
    shutil.copytree(ic.INFRA_DIR, infra, ignore=shutil.ignore_patterns(".terraform", "*.md"))
    text = (infra / file).read_text()
    assert text.count(old) == 1, f"{old!r} is not in {file} once"
    (infra / file).write_text(text.replace(old, new))
    assert _audit_mismatches(_audit_module(infra, tmp_path / "module")), "not caught"
