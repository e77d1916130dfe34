"""checkov over infra/: no failed check, no parsing error, and it does fail on a public vault.

checkov lives in its own venv (<repo>/.venv-checkov, made by `make test` from
requirements-checkov.txt) because it ships an `hcl2` package that clashes with python-hcl2.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import infra_checks as ic
import pytest

REPO = ic.INFRA_DIR.parent
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"

# Inline skips in infra/*.tf (each justified next to the resource). A new skip must be added here
# on purpose, so a reviewer sees it.
EXPECTED_SKIPS = {
    ("CKV2_AZURE_1", "azurerm_storage_account.this"),
    ("CKV_AZURE_33", "azurerm_storage_account.this"),
    ("CKV2_AZURE_21", "azurerm_storage_container.deployment"),
    ("CKV2_AZURE_21", "azurerm_storage_container.dead_letter"),
    ("CKV2_AZURE_21", "azurerm_storage_container.audit"),
    ("CKV_AZURE_40", "azurerm_key_vault_key.seal[0]"),
    ("CKV_AZURE_41", "azurerm_key_vault_secret.root_token[0]"),
    ("CKV_AZURE_211", "azurerm_service_plan.this"),
    ("CKV_AZURE_212", "azurerm_service_plan.this"),
}
# Checks that carry the security properties: they must have run and passed.
MUST_PASS = {
    "CKV_AZURE_189",  # Key Vault public network access disabled
    "CKV_AZURE_110",  # Key Vault purge protection
    "CKV_AZURE_109",  # Key Vault firewall default deny
    "CKV2_AZURE_32",  # Key Vault private endpoint
    "CKV_AZURE_59",  # storage public network access disabled
    "CKV2_AZURE_33",  # storage private endpoint
    "CKV2_AZURE_40",  # storage shared key disabled
    "CKV_AZURE_44",  # storage TLS 1.2
    "CKV2_AZURE_31",  # subnets have an NSG
    "CKV_AZURE_34",  # blob containers private (the audit container among them)
}


def run_checkov(directory: Path) -> dict[str, Any]:
    if not CHECKOV.exists():
        pytest.fail(
            f"checkov is not installed at {CHECKOV}: run `make test`, which creates "
            ".venv-checkov from requirements-checkov.txt"
        )
    # No --quiet: with it the JSON report keeps only failed checks, and the test also wants to
    # see what passed and what was skipped. --skip-download: no call to Prisma Cloud.
    proc = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(directory),
            "--framework",
            "terraform",
            "--skip-download",
            "--compact",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode in (0, 1), f"checkov crashed ({proc.returncode}): {proc.stderr[-2000:]}"
    report = json.loads(proc.stdout)
    if isinstance(report, list):  # one entry per framework
        report = next(r for r in report if r.get("check_type") == "terraform")
    return report


@pytest.mark.slow
def test_checkov_passes_on_infra() -> None:
    report = run_checkov(ic.INFRA_DIR)
    summary, results = report["summary"], report["results"]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in results["failed_checks"]]
    assert failed == []
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 30
    skipped = {(c["check_id"], c["resource"]) for c in results["skipped_checks"]}
    assert skipped == EXPECTED_SKIPS
    passed = {c["check_id"] for c in results["passed_checks"]}
    assert MUST_PASS <= passed, f"not evaluated or not passed: {sorted(MUST_PASS - passed)}"


@pytest.mark.slow
def test_checkov_fails_on_public_vault(tmp_path: Path) -> None:
    broken = tmp_path / "infra"
    shutil.copytree(ic.INFRA_DIR, broken, ignore=shutil.ignore_patterns(".terraform", "*.md"))
    keyvault_tf = broken / "keyvault.tf"
    text = keyvault_tf.read_text()
    assert text.count("public_network_access_enabled = false") == 1
    keyvault_tf.write_text(
        text.replace(
            "public_network_access_enabled = false", "public_network_access_enabled = true"
        )
    )
    report = run_checkov(broken)
    failed = {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}
    assert ("CKV_AZURE_189", "azurerm_key_vault.engine") in failed
