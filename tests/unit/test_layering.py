"""The design card's layering rules, checked on the source and on a fresh interpreter."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_shared_never_imports_azure_functions():
    offenders = []
    for path in (ROOT / "shared").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}: {n}"
                for n in names
                if n == "azure.functions" or n.startswith("azure.functions.")
            ]
    assert offenders == []


def test_only_the_store_knows_table_storage_formats():
    """Partitions, row keys and the Table SDK belong to shared/store.py alone."""
    offenders = []
    for path in [*(ROOT / "shared").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        if path == ROOT / "shared" / "store.py":
            continue
        text = path.read_text()
        for needle in ("PartitionKey", "RowKey", "_PARTITION", "azure.data.tables"):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
        # Row-key builders (key_rk, dist_rk, ...) and raw operations on a named row.
        for match in re.finditer(r"\b\w+_rk\b|\bdelete_op\(|\b(?:create|update|upsert)_op\(", text):
            offenders.append(f"{path.relative_to(ROOT)}: {match.group(0)}")
    assert offenders == []


def test_the_engine_knows_provider_types_only_through_the_registry():
    """A new provider type (AWS KMS, GCP KMS, Managed HSM) is one module in shared/providers/
    and one entry in its registry: the engine's own modules name no type, import no type's
    module and no cloud SDK or helper."""
    offenders = []
    for name in ("kms.py", "distribution.py", "reconcile.py"):
        path = ROOT / "shared" / name
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            modules = []
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
                if node.module == "shared.providers":  # a type's module, by name
                    modules += [
                        f"shared.providers.{a.name}"
                        for a in node.names
                        if (ROOT / "shared" / "providers" / f"{a.name}.py").exists()
                    ]
            offenders += [
                f"shared/{name}: imports {m}"
                for m in modules
                if m.startswith(("shared.providers.", "azure", "shared.azure"))
            ]
        if "azurekeyvault" in text:
            offenders.append(f"shared/{name}: names azurekeyvault")
    assert offenders == []
