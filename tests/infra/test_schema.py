"""infra/*.tf against the azurerm provider's own schema (the floor of the pin, azurerm 4.46.0).

No provider can be downloaded here, so `terraform validate` cannot run; the schema comes from the
npm package @cdktf/provider-azurerm instead (azurerm_schema.py). For every azurerm ``resource`` and
``data`` block: the type exists, every argument and nested block (``dynamic`` ones included) exists,
every required one is set, no computed-only attribute is set, and a block allows as many items
as are written. Every ``azurerm_<type>.<name>.<attr>`` (and ``data.``) reference anywhere in
infra/ names a declared block and an attribute its type has. Blocks of the other providers in
required_providers (random, time) are skipped; module, locals, output and variable blocks are not
schema-checked, but the references in them are.

As in test_structure.py, the check runs on the real tree (no problem allowed) and on copies broken
in each way it exists to catch (exactly that problem must be reported).
"""

from __future__ import annotations

import difflib
import functools
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azurerm_schema as azs
import hcl2
import infra_checks as ic
import pytest

# The schema is loaded once per process: keep these tests on one xdist worker.
pytestmark = pytest.mark.xdist_group("azurerm_schema")

PROVIDER = "azurerm"
# Meta-arguments Terraform itself handles, valid on every resource (data sources take a subset).
META_ARGUMENTS = frozenset(
    {"count", "for_each", "provider", "depends_on", "lifecycle", "provisioner", "connection"}
)
_DYNAMIC = "dynamic"
# One reference: [data.]azurerm_<type>.<name>, an optional index or splat, then attribute names
# (each with its own optional index).
_INDEX = r"(?:\[[^\]]*\]|\.\*)"
_REFERENCE = re.compile(
    rf"(?<![\w.])(?P<data>data\.)?(?P<type>{PROVIDER}_\w+)\.(?P<name>[A-Za-z_][\w-]*)"
    rf"{_INDEX}?(?P<path>(?:\.[A-Za-z_]\w*{_INDEX}?)*)"
)
_SEGMENT = re.compile(rf"\.([A-Za-z_]\w*){_INDEX}?")
# Top-level block kinds and how many labels they take (the rest take none).
_LABELS = {"resource": 2, "data": 2, "module": 1, "output": 1, "variable": 1, "provider": 1}


@dataclass(frozen=True)
class Declaration:
    """One resource or data block of infra/."""

    file: str
    kind: str  # "resource" or "data"
    type: str
    name: str
    body: dict[str, Any]

    @property
    def address(self) -> str:
        prefix = "data." if self.kind == "data" else ""
        return f"{prefix}{self.type}.{self.name}"


# --- Parsing ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _parse_text(text: str) -> dict[str, Any]:
    # explicit_blocks marks blocks (`x { }`) apart from attributes (`x = ...`). Cached by text:
    # a broken copy of infra/ re-parses only the file it changed. Callers do not mutate it.
    return hcl2.loads(
        text,
        serialization_options=hcl2.SerializationOptions(
            strip_string_quotes=True, explicit_blocks=True
        ),
    )


def parse_directory(directory: Path) -> dict[str, dict[str, Any]]:
    files = sorted(directory.glob("*.tf"))
    if not files:
        raise FileNotFoundError(f"no .tf files in {directory}")
    return {path.name: _parse_text(path.read_text(encoding="utf-8")) for path in files}


def _annotation(key: str) -> bool:
    """python-hcl2's own keys (__comments__, __is_block__), not Terraform's."""
    return key.startswith("__") and key.endswith("__")


def _blocks(value: Any) -> bool:
    """Is ``value`` one or more blocks (rather than an attribute's value)?"""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, dict) and v.get("__is_block__") for v in value)
    )


def _dynamic_blocks(value: Any) -> bool:
    """Is ``value`` python-hcl2's list of ``dynamic "label" { ... }`` blocks?"""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, dict) and all(_blocks([b]) for b in v.values()) for v in value)
    )


def _top_level(docs: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str, list[str], Any]]:
    """(file, kind, labels, body) of every top-level block."""
    for file, doc in docs.items():
        for kind, entries in doc.items():
            if _annotation(kind):
                continue
            for entry in entries:
                yield from _unlabel(file, kind, [], entry, _LABELS.get(kind, 0))


def _unlabel(file: str, kind: str, labels: list[str], body: Any, depth: int) -> Iterator:
    if depth == 0:
        yield file, kind, labels, body
        return
    for label, inner in body.items():
        if not _annotation(label):
            yield from _unlabel(file, kind, [*labels, label], inner, depth - 1)


def declarations(docs: dict[str, dict[str, Any]]) -> list[Declaration]:
    return [
        Declaration(file, kind, labels[0], labels[1], body)
        for file, kind, labels, body in _top_level(docs)
        if kind in ("resource", "data")
    ]


def required_providers(docs: dict[str, dict[str, Any]]) -> set[str]:
    names = set()
    for _, kind, _, body in _top_level(docs):
        if kind == "terraform":
            for providers in body.get("required_providers", []):
                names |= {n for n in providers if not _annotation(n)}
    return names


# --- Checks -------------------------------------------------------------------------------------


def _hint(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.8)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_body(
    body: dict[str, Any], block: azs.Block, where: str, meta: frozenset[str] = frozenset()
) -> list[str]:
    """Arguments and nested blocks of one resource, data source or block body."""
    problems: list[str] = []
    used = set()
    for key, value in body.items():
        if _annotation(key) or key in meta:
            continue
        if key == _DYNAMIC and key not in block.arguments and _dynamic_blocks(value):
            for entry in value:
                for name, spec in entry.items():
                    if _annotation(name):
                        continue
                    used.add(name)
                    problems += _check_use(name, spec.get("content", []), block, where, True)
            continue
        used.add(key)
        problems += _check_use(key, value, block, where, False)
    for arg in block.arguments.values():
        if arg.required and arg.name not in used:
            what = "block" if arg.is_block else "argument"
            problems.append(f"{where}: missing required {what} {arg.name!r}")
    return problems


def _check_use(name: str, value: Any, block: azs.Block, where: str, dynamic: bool) -> list[str]:
    """One argument or nested block (``dynamic`` ones: value is their content) as written."""
    as_block = dynamic or _blocks(value)
    arg = block.arguments.get(name)
    if arg is None:
        if block.computed_only(name):
            return [f"{where}: {name!r} is computed-only (set by the provider), it cannot be set"]
        what = "block" if as_block else "argument"
        return [f"{where}: unknown {what} {name!r}{_hint(name, list(block.arguments))}"]
    if arg.block is None:
        return [f"{where}: {name!r} is an argument, not a block"] if as_block else []
    if not as_block:  # attribute syntax for a block's value: nothing more to check statically
        return []
    problems = []
    if not dynamic and arg.max_items is not None and len(value) > arg.max_items:
        problems.append(f"{where}: at most {arg.max_items} {name!r} block, got {len(value)}")
    for body in value:
        problems += _check_body(body, arg.block, f"{where}.{name}")
    return problems


def check_declaration(decl: Declaration, schema: azs.Schema, providers: set[str]) -> list[str]:
    where = f"{decl.file}: {decl.address}"
    provider = decl.type.split("_", 1)[0]
    if provider != PROVIDER:
        if provider in providers:
            return []  # random_*, time_*: not in this schema
        return [f"{where}: provider {provider!r} is not in required_providers {sorted(providers)}"]
    table = schema.resources if decl.kind == "resource" else schema.data_sources
    block = table.get(decl.type)
    if block is None:
        what = "resource" if decl.kind == "resource" else "data source"
        hint = _hint(decl.type, list(table))
        return [f"{where}: unknown {what} type in azurerm {schema.provider_version}{hint}"]
    return _check_body(decl.body, block, where, META_ARGUMENTS)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            if not _annotation(key):
                yield key
                yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


def _expressions(text: str) -> Iterator[str]:
    """The ``${...}`` and ``%{...}`` parts of a string python-hcl2 gives back."""
    start = re.search(r"[$%]\{", text)
    while start:
        depth, end = 0, len(text)
        for end in range(start.start() + 1, len(text)):
            if text[end] == "{":
                depth += 1
            elif text[end] == "}":
                depth -= 1
                if depth == 0:
                    break
        yield text[start.end() : end]
        start = re.compile(r"[$%]\{").search(text, end)


def _check_reference(
    ref: re.Match[str], declared: set[str], schema: azs.Schema, where: str
) -> list[str]:
    data = bool(ref["data"])
    address = f"{'data.' if data else ''}{ref['type']}.{ref['name']}"
    if address not in declared:
        return [f"{where}: {address} is not declared in infra/"]
    block = (schema.data_sources if data else schema.resources).get(ref["type"])
    trail = address
    for segment in _SEGMENT.findall(ref["path"]):
        if block is None:  # unknown type (reported on its declaration), or a plain attribute
            break
        if not block.has(segment):
            return [f"{where}: {trail} has no attribute {segment!r}{_hint(segment, block.names())}"]
        block = block.nested(segment)
        trail += f".{segment}"
    return []


def _label(kind: str, labels: list[str]) -> str:
    if kind == "resource":
        return ".".join(labels)
    if kind == "data":
        return "data." + ".".join(labels)
    return " ".join([kind, *labels])


def check_references(docs: dict[str, dict[str, Any]], schema: azs.Schema) -> list[str]:
    declared = {d.address for d in declarations(docs)}
    problems = []
    for file, kind, labels, body in _top_level(docs):
        parts = body.items() if kind == "locals" else [(None, body)]
        for local, value in parts:
            if local is not None and _annotation(local):
                continue
            label = f"local.{local}" if local is not None else _label(kind, labels)
            for text in _strings(value):
                for expr in _expressions(text):
                    for ref in _REFERENCE.finditer(expr):
                        problems += _check_reference(ref, declared, schema, f"{file}: {label}")
    return problems


def check_schema(directory: Path, schema: azs.Schema) -> list[str]:
    """Every problem of infra-like ``directory`` against ``schema``, each once, in file order."""
    docs = parse_directory(directory)
    providers = required_providers(docs)
    problems = []
    for decl in declarations(docs):
        problems += check_declaration(decl, schema, providers)
    problems += check_references(docs, schema)
    return list(dict.fromkeys(problems))


# --- The schema itself --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def schema() -> azs.Schema:
    try:
        return azs.load()
    except azs.SchemaNotInstalled as e:
        missing = str(e)  # fail outside the handler: the message alone, no chained traceback
    pytest.fail(missing, pytrace=False)


@pytest.fixture(scope="module")
def real_problems(schema: azs.Schema) -> list[str]:
    return check_schema(ic.INFRA_DIR, schema)


def test_schema_is_the_floor_of_the_azurerm_pin(schema: azs.Schema) -> None:
    repo = ic.INFRA_DIR.parent
    pinned = json.loads((repo / "package.json").read_text())["devDependencies"][azs.PACKAGE]
    installed = json.loads((azs.JSII.parent / "package.json").read_text())
    assert installed["version"] == pinned, f"node_modules has {installed['version']}: run `npm ci`"
    assert installed["cdktf"]["provider"]["version"] == schema.provider_version
    versions = parse_directory(ic.INFRA_DIR)["versions.tf"]["terraform"][0]
    constraint = versions["required_providers"][0][PROVIDER]["version"]
    floor = re.search(r">=\s*([\d.]+)", constraint)
    assert floor, constraint
    assert schema.provider_version.startswith(floor.group(1) + "."), (
        f"infra/versions.tf pins azurerm {constraint!r} but {azs.PACKAGE} {pinned} is built from "
        f"azurerm {schema.provider_version}: pin the package version built from the new floor"
    )


def test_schema_knows_what_the_azurerm_docs_say(schema: azs.Schema) -> None:
    assert len(schema.resources) > 1000 and len(schema.data_sources) > 300
    app = schema.resources["azurerm_function_app_flex_consumption"]
    site_config = app.arguments["site_config"]
    assert site_config.required and (site_config.min_items, site_config.max_items) == (1, 1)
    assert app.arguments["storage_container_type"].required
    assert not app.arguments["always_ready"].required
    assert app.arguments["always_ready"].max_items is None  # a list block
    assert app.arguments["always_ready"].block.arguments["name"].required
    assert app.computed_only("default_hostname") and not app.computed_only("https_only")
    identity = app.arguments["identity"].block
    assert identity.computed_only("principal_id") and identity.arguments["type"].required
    assert app.nested("site_credential").has("password")  # a computed-only block
    assert app.arguments["auth_settings_v2"].max_items == 1  # digits: authSettingsV2
    assert schema.data_sources["azurerm_client_config"].computed_only("tenant_id")
    assert "azurerm_client_config" not in schema.resources


def test_naming_rule_reproduces_every_linked_argument(schema: azs.Schema) -> None:
    # Computed-only attributes are matched by jsii name: the rule must be the generator's.
    assert schema.naming_mismatches == ()
    assert azs.jsii_name("kerberos_5i_read_only_enabled") == "kerberos5IReadOnlyEnabled"


def test_missing_package_says_to_run_npm_ci(tmp_path: Path) -> None:
    with pytest.raises(azs.SchemaNotInstalled, match=r"Run `npm ci`"):
        azs.load(tmp_path / "node_modules" / azs.PACKAGE / ".jsii")


# --- The real tree ------------------------------------------------------------------------------


def test_real_tree_matches_the_azurerm_schema(real_problems: list[str]) -> None:
    assert real_problems == [], "\n".join(["", *real_problems])


def test_real_tree_is_checked(schema: azs.Schema) -> None:
    """The check has something to check: azurerm blocks, references, other providers' blocks."""
    docs = parse_directory(ic.INFRA_DIR)
    decls = declarations(docs)
    azurerm = [d for d in decls if d.type.startswith(PROVIDER + "_")]
    assert len(azurerm) >= 30 and any(d.kind == "data" for d in azurerm)
    assert {d.type.split("_")[0] for d in decls} - {PROVIDER} == {"random", "time"}
    assert {"random", "time", PROVIDER} <= required_providers(docs)


# --- Broken copies ------------------------------------------------------------------------------


def _broken_copy(tmp_path: Path, file: str, old: str | None, new: str) -> Path:
    """infra/ copied with one edit of ``file`` (``old`` None: ``new`` appended)."""
    infra = tmp_path / "infra"
    shutil.copytree(ic.INFRA_DIR, infra, ignore=shutil.ignore_patterns(".terraform", "*.md"))
    path = infra / file
    text = path.read_text(encoding="utf-8")
    if old is None:
        text += new
    else:
        assert text.count(old) == 1, f"{old!r} is not in infra/{file} once: update the mutation"
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return infra


def _new_problems(tmp_path: Path, schema: azs.Schema, real: list[str], edit: tuple) -> list[str]:
    broken = check_schema(_broken_copy(tmp_path, *edit), schema)
    return [p for p in broken if p not in real]


APP = "azurerm_function_app_flex_consumption.this"
# (file, old text, new text, the one problem the check must report)
MUTATIONS = [
    (
        "storage.tf",
        '  min_tls_version                   = "TLS1_2"\n',
        '  min_tls_version                   = "TLS1_2"\n  allow_blob_public_access = false\n',
        "storage.tf: azurerm_storage_account.this: unknown argument 'allow_blob_public_access'",
    ),
    (
        "function_app.tf",
        "  runtime_version        = var.python_version\n",
        "",
        f"function_app.tf: {APP}: missing required argument 'runtime_version'",
    ),
    (
        "function_app.tf",
        '      name           = "http"\n',
        "",
        f"function_app.tf: {APP}.always_ready: missing required argument 'name'",
    ),
    (
        "keyvault.tf",
        '  sku_name                      = "premium"\n',
        '  sku_name                      = "premium"\n  vault_uri = "https://kv.vault.azure.net/"\n',
        "keyvault.tf: azurerm_key_vault.engine: 'vault_uri' is computed-only (set by the provider),"
        " it cannot be set",
    ),
    (
        "function_app.tf",
        "    identity_ids = local.user_assigned ? [local.identity_id] : null\n",
        "    identity_ids = local.user_assigned ? [local.identity_id] : null\n"
        '    principal_id = "00000000-0000-0000-0000-000000000000"\n',
        f"function_app.tf: {APP}.identity: 'principal_id' is computed-only (set by the provider),"
        " it cannot be set",
    ),
    (
        "keyvault.tf",
        "  network_acls {\n",
        "  network_acl {\n",
        "keyvault.tf: azurerm_key_vault.engine: unknown block 'network_acl'"
        " (did you mean 'network_acls'?)",
    ),
    (
        "storage.tf",
        "    delete_retention_policy {\n",
        "    delete_retention_polcy {\n",
        "storage.tf: azurerm_storage_account.this.blob_properties: unknown block"
        " 'delete_retention_polcy' (did you mean 'delete_retention_policy'?)",
    ),
    (
        "network.tf",
        '  dynamic "security_rule" {\n',
        '  dynamic "security_rules" {\n',
        "network.tf: azurerm_network_security_group.private_endpoints: unknown block"
        " 'security_rules' (did you mean 'security_rule'?)",
    ),
    (
        "function_app.tf",
        "  identity {\n",
        '  identity {\n    type = "SystemAssigned"\n  }\n  identity {\n',
        f"function_app.tf: {APP}: at most 1 'identity' block, got 2",
    ),
    (
        "storage.tf",
        '  sas_policy {\n    expiration_period = "00.01:00:00"\n',
        '  sas_policy {\n    expiration_period = "00.01:00:00"\n    retention {\n    }\n',
        "storage.tf: azurerm_storage_account.this.sas_policy: unknown block 'retention'",
    ),
    (
        "outputs.tf",
        "  value       = azurerm_key_vault.engine.vault_uri\n",
        "  value       = azurerm_key_vault.engine.vault_url\n",
        "outputs.tf: output key_vault_uri: azurerm_key_vault.engine has no attribute 'vault_url'"
        " (did you mean 'vault_uri'?)",
    ),
    (
        "targets.tf",
        "target_vault[each.key].identity[0].principal_id",
        "target_vault[each.key].identity[0].object_id",
        "targets.tf: azurerm_role_assignment.eventgrid_dead_letter:"
        " azurerm_eventgrid_system_topic.target_vault.identity has no attribute 'object_id'",
    ),
    (
        "outputs.tf",
        "  value       = azurerm_virtual_network.this.id\n",
        "  value       = azurerm_virtual_network.main.id\n",
        "outputs.tf: output virtual_network_id: azurerm_virtual_network.main is not declared in"
        " infra/",
    ),
    (
        "monitoring.tf",
        'resource "azurerm_monitor_diagnostic_setting" "key_vault" {',
        'resource "azurerm_monitor_diagnostics_setting" "key_vault" {',
        "monitoring.tf: azurerm_monitor_diagnostics_setting.key_vault: unknown resource type in"
        " azurerm 4.46.0 (did you mean 'azurerm_monitor_diagnostic_setting'?)",
    ),
    (
        "locals.tf",
        None,
        '\ndata "azurerm_function_apps_flex" "all" {}\n',
        "locals.tf: data.azurerm_function_apps_flex.all: unknown data source type in azurerm 4.46.0"
        " (did you mean 'azurerm_function_app'?)",
    ),
    (
        "keyvault.tf",
        'resource "random_password" "root_token" {',
        'resource "randm_password" "root_token" {',
        "keyvault.tf: randm_password.root_token: provider 'randm' is not in required_providers"
        " ['azurerm', 'random', 'time']",
    ),
]
MUTATION_IDS = [
    "unknown-argument",
    "missing-required-argument",
    "missing-required-in-dynamic-content",
    "computed-only-set",
    "computed-only-set-in-block",
    "misspelt-block",
    "misspelt-nested-block",
    "misspelt-dynamic-block",
    "too-many-blocks",
    "unknown-block-in-block",
    "unknown-attribute-reference",
    "unknown-nested-attribute-reference",
    "undeclared-resource-reference",
    "unknown-resource-type",
    "unknown-data-source-type",
    "unknown-provider-prefix",
]


@pytest.mark.parametrize(("file", "old", "new", "problem"), MUTATIONS, ids=MUTATION_IDS)
def test_broken_copy_is_caught(
    tmp_path: Path,
    schema: azs.Schema,
    real_problems: list[str],
    file: str,
    old: str | None,
    new: str,
    problem: str,
) -> None:
    assert _new_problems(tmp_path, schema, real_problems, (file, old, new)) == [problem]


# Edits the check must not report: other providers' blocks and the non-resource blocks.
IGNORED = [
    (
        "keyvault.tf",
        "  length  = 48\n",
        "  length  = 48\n  not_a_random_argument = true\n",
    ),
    (
        "keyvault.tf",
        '  create_duration = "90s"\n',
        '  create_duration = "90s"\n  not_a_time_argument = true\n',
    ),
    (
        "outputs.tf",
        None,
        '\nmodule "extra" {\n  source    = "./extra"\n'
        "  vault_uri = azurerm_key_vault.engine.vault_uri\n"
        '  anything  = true\n}\n\nvariable "extra" {\n  type    = string\n  default = "x"\n}\n\n'
        "locals {\n  extra = { subnet = azurerm_subnet.function.address_prefixes }\n}\n\n"
        'output "extra" {\n  value = data.azurerm_client_config.current.tenant_id\n}\n',
    ),
]


@pytest.mark.parametrize(("file", "old", "new"), IGNORED, ids=["random", "time", "non-resource"])
def test_other_blocks_are_not_schema_checked(
    tmp_path: Path,
    schema: azs.Schema,
    real_problems: list[str],
    file: str,
    old: str | None,
    new: str,
) -> None:
    assert _new_problems(tmp_path, schema, real_problems, (file, old, new)) == []


def test_references_in_non_resource_blocks_are_checked(
    tmp_path: Path, schema: azs.Schema, real_problems: list[str]
) -> None:
    edit = (
        "outputs.tf",
        None,
        'locals {\n  extra = "${data.azurerm_client_config.current.tenant}/x"\n}\n',
    )
    assert _new_problems(tmp_path, schema, real_problems, edit) == [
        "outputs.tf: local.extra: data.azurerm_client_config.current has no attribute 'tenant'"
        " (did you mean 'tenant_id'?)"
    ]
