"""The azurerm provider's schema, read from the npm package ``@cdktf/provider-azurerm``.

The package (pinned in package.json, installed by ``npm ci``) is generated from ``terraform
providers schema -json`` of one azurerm release and describes it in its jsii type assembly
(``.jsii``, JSON):

* each resource or data source is a class whose base is ``cdktf.TerraformResource`` or
  ``cdktf.TerraformDataSource``; its docs summary links the registry page and names the
  Terraform type (``.../docs/resources/key_vault azurerm_key_vault}``);
* its initializer's ``config`` parameter is a struct (``kind: interface, datatype: true``) with one
  property per argument: ``optional: true`` unless required, the Terraform name in the docs link's
  anchor (``...#storage_account_name``); a struct-typed property is a nested block, a single
  struct when the block has at most one item, an array of structs otherwise;
* attributes the provider computes are immutable getters on the class (on the block's
  ``<struct>OutputReference`` class for nested blocks) with no config property. They carry no docs
  link, so only their jsii (camelCase) name is known: lookups convert the Terraform name with the
  generator's own rule (:func:`jsii_name`), checked against every linked argument when loading.

Only what the schema checks need is kept, as plain frozen dataclasses.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "@cdktf/provider-azurerm"
JSII = REPO / "node_modules" / PACKAGE / ".jsii"

_TYPE_LINK = re.compile(
    r"\{@link https://registry\.terraform\.io/providers/hashicorp/azurerm/(?P<version>[^/]+)"
    r"/docs/(?P<kind>resources|data-sources)/\w+ (?P<type>azurerm_\w+)\}"
)
_ARGUMENT_LINK = re.compile(
    r"\{@link https://registry\.terraform\.io/providers/hashicorp/azurerm/[^/]+"
    r"/docs/(?:resources|data-sources)/\w+#(?P<name>\w+) "
)
_BASES = {"cdktf.TerraformResource": "resource", "cdktf.TerraformDataSource": "data"}
# cdktf renames a property that would clash with a member of its base classes.
_RENAMED_SUFFIX = "Attribute"


class SchemaNotInstalled(RuntimeError):
    """The npm package holding the schema is not in node_modules."""


def jsii_name(name: str) -> str:
    """The jsii property name cdktf generates for a Terraform name (``auth_settings_v2`` ->
    ``authSettingsV2``, ``kerberos_5i_read`` -> ``kerberos5IRead``): the ``camelcase`` npm
    package's rule, which also upper-cases a letter that follows digits."""
    head, *rest = name.split("_")
    camel = head + "".join(part[:1].upper() + part[1:] for part in rest)
    return re.sub(r"(?<=\d)[a-z]", lambda m: m.group(0).upper(), camel)


def _spelt_back(jname: str) -> str:
    """A Terraform name for a jsii name (a hint only: jsii_name is not one-to-one)."""
    jname = jname.removesuffix(_RENAMED_SUFFIX) or jname
    return re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), jname)


@dataclass(frozen=True)
class Argument:
    """One argument of a resource or block: a plain attribute, or a nested block."""

    name: str
    required: bool
    block: Block | None = None  # the nested block's own schema, when this is a block
    min_items: int = 0
    max_items: int | None = None  # 1 for a block cdktf models as a single object

    @property
    def is_block(self) -> bool:
        return self.block is not None


@dataclass(frozen=True)
class Block:
    """The schema of a resource, data source or nested block."""

    arguments: Mapping[str, Argument]
    # Computed-only attributes, keyed by their jsii (camelCase) name: the .jsii has no Terraform
    # spelling for them. A computed-only nested block maps to its schema, an attribute to None.
    computed: Mapping[str, Block | None] = field(default_factory=dict)

    def computed_only(self, name: str) -> bool:
        """Is the Terraform name ``name`` an attribute only the provider sets?"""
        return name not in self.arguments and self._computed_key(name) is not None

    def has(self, name: str) -> bool:
        """Does a reference ``<...>.name`` name something this block has?"""
        return name in self.arguments or self._computed_key(name) is not None

    def nested(self, name: str) -> Block | None:
        """The schema of nested block ``name`` (argument or computed), None for an attribute."""
        if name in self.arguments:
            return self.arguments[name].block
        key = self._computed_key(name)
        return self.computed[key] if key is not None else None

    def names(self) -> list[str]:
        """Everything a reference may name, for "did you mean" hints: computed-only names are
        spelt back from their jsii names, which may misplace an underscore next to a digit."""
        computed = [_spelt_back(k) for k in self.computed]
        return [*self.arguments, *computed]

    def _computed_key(self, name: str) -> str | None:
        key = jsii_name(name)
        for candidate in (key, key + _RENAMED_SUFFIX):
            if candidate in self.computed:
                return candidate
        return None


@dataclass(frozen=True)
class Schema:
    """Every resource and data source type of one azurerm release."""

    provider_version: str
    resources: Mapping[str, Block]
    data_sources: Mapping[str, Block]
    # Linked arguments whose jsii name jsii_name() does not reproduce: the rule the computed-only
    # lookups rely on would be wrong for them. Empty for the pinned package.
    naming_mismatches: tuple[tuple[str, str], ...] = ()


def load(jsii_path: Path = JSII) -> Schema:
    """The schema in ``jsii_path``, read once per process (the file is about 85 MB)."""
    return _load(jsii_path.resolve())


@functools.lru_cache(maxsize=2)
def _load(jsii_path: Path) -> Schema:
    if not jsii_path.is_file():
        raise SchemaNotInstalled(
            f"{jsii_path} is missing: the azurerm schema comes from the npm package {PACKAGE} "
            "(a devDependency in package.json). Run `npm ci` in the repository root (make test "
            "does)."
        )
    with jsii_path.open(encoding="utf-8") as f:
        types = json.load(f)["types"]
    return _Extractor(types).schema()


class _Extractor:
    """Turns the jsii type table into Blocks, each struct once."""

    def __init__(self, types: dict[str, dict[str, Any]]) -> None:
        self.types = types
        self.blocks: dict[str, Block] = {}
        self.mismatches: list[tuple[str, str]] = []

    def schema(self) -> Schema:
        kinds: dict[str, dict[str, Block]] = {"resource": {}, "data": {}}
        versions = set()
        for cls in self.types.values():
            kind = _BASES.get(cls.get("base", ""))
            if kind is None:
                continue
            link = _TYPE_LINK.search(cls.get("docs", {}).get("summary", ""))
            if link is None:
                raise ValueError(f"{cls['fqn']}: no registry link naming its Terraform type")
            versions.add(link["version"])
            config = next(p for p in cls["initializer"]["parameters"] if p["name"] == "config")
            kinds[kind][link["type"]] = self.block(config["type"]["fqn"], cls)
        return Schema(
            provider_version=", ".join(sorted(versions)),
            resources=kinds["resource"],
            data_sources=kinds["data"],
            naming_mismatches=tuple(self.mismatches),
        )

    def block(self, struct_fqn: str, reader: dict[str, Any] | None) -> Block:
        """A block from its config struct and the class that reads it back (its computed
        attributes): the resource class, or ``<struct>OutputReference`` for a nested block."""
        if struct_fqn in self.blocks:
            return self.blocks[struct_fqn]
        if reader is None:
            reader = self.types.get(struct_fqn + "OutputReference")
        arguments: dict[str, Argument] = {}
        config_names = set()
        for prop in self.types[struct_fqn].get("properties", []):
            config_names.add(prop["name"])
            name = self._terraform_name(prop)
            arguments[name] = self._argument(name, prop)
        block = Block(arguments=arguments, computed=self._computed(reader, config_names))
        self.blocks[struct_fqn] = block
        return block

    def _terraform_name(self, prop: dict[str, Any]) -> str:
        docs = prop.get("docs", {})
        links = _ARGUMENT_LINK.findall(docs.get("summary", "") + " " + docs.get("remarks", ""))
        if not links:
            raise ValueError(f"argument {prop['name']}: no registry link naming it")
        name = links[-1]
        if prop["name"] not in (jsii_name(name), jsii_name(name) + _RENAMED_SUFFIX):
            self.mismatches.append((name, prop["name"]))
        return name

    def _argument(self, name: str, prop: dict[str, Any]) -> Argument:
        required = not prop.get("optional", False)
        struct, single = self._struct_of(prop["type"])
        if struct is None:
            return Argument(name=name, required=required)
        return Argument(
            name=name,
            required=required,
            block=self.block(struct, None),
            min_items=1 if required else 0,
            max_items=1 if single else None,
        )

    def _struct_of(self, jtype: dict[str, Any]) -> tuple[str | None, bool]:
        """(struct fqn, single) when a property's type is a block's struct, else (None, False)."""
        if self._is_struct(jtype.get("fqn")):
            return jtype["fqn"], True
        for member in jtype.get("union", {}).get("types", []):
            collection = member.get("collection", {})
            element = collection.get("elementtype", {}).get("fqn")
            if collection.get("kind") == "array" and self._is_struct(element):
                return element, False
        return None, False

    def _is_struct(self, fqn: str | None) -> bool:
        t = self.types.get(fqn or "")
        return t is not None and t.get("kind") == "interface" and bool(t.get("datatype"))

    def _computed(
        self, reader: dict[str, Any] | None, config_names: set[str]
    ) -> dict[str, Block | None]:
        """Getters with no config property and no setter: what only the provider sets."""
        computed: dict[str, Block | None] = {}
        for prop in (reader or {}).get("properties", []):
            jname = prop["name"]
            if prop.get("static") or not prop.get("immutable") or jname in config_names:
                continue
            if jname.endswith("Input") and jname[: -len("Input")] in config_names:
                continue
            computed[jname] = self._computed_block(prop["type"].get("fqn", ""))
        return computed

    def _computed_block(self, fqn: str) -> Block | None:
        """The schema of a computed-only nested block, from its List/Map/OutputReference class."""
        if fqn not in self.types:
            return None
        for suffix in ("OutputReference", "List", "Map"):
            if fqn.endswith(suffix):
                element = fqn[: -len(suffix)]
                break
        else:
            return None
        reader = self.types.get(element + "OutputReference")
        if reader is None:
            return None
        if self._is_struct(element):
            return self.block(element, reader)
        key = element + "#computed"
        if key not in self.blocks:
            self.blocks[key] = Block(arguments={}, computed=self._computed(reader, set()))
        return self.blocks[key]
