"""Validate emulator responses against the official keys API description (Swagger 2.0).

Translation to JSON Schema (draft 4, which Swagger 2.0 schemas are based on):
* ``$ref: #/definitions/X`` kept, with the translated definitions attached to every schema;
* objects with ``properties`` are closed (``additionalProperties: false`` unless the spec
  says otherwise), so a member the spec does not know is a failure;
* ``readOnly``/``x-nullable`` properties may be ``null`` (Swagger 2.0 cannot say null; the
  service sends e.g. ``"nextLink": null`` and AutoRest clients accept it);
* formats ``base64url`` (no padding) and ``unixtime`` (integer) are checked;
* descriptions and other ``x-ms-*`` hints are dropped.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema

REPO = Path(__file__).resolve().parents[2]
SPEC_ENV = "KEYMGMT_KEYVAULT_SPEC"
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")

FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("base64url")
def _is_base64url(value: object) -> bool:
    return not isinstance(value, str) or bool(_B64URL.match(value))


@FORMATS.checks("unixtime")
def _is_unixtime(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def spec_path() -> Path:
    configured = os.environ.get(SPEC_ENV)
    return (
        Path(configured) if configured else REPO.parent / "shared" / "specs" / "keyvault-keys.json"
    )


def _translate(node: Any) -> Any:
    if isinstance(node, list):
        return [_translate(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-") or key in ("description", "readOnly", "example", "title"):
            continue
        if key == "properties":
            required = set(node.get("required", []))
            props = {}
            for name, prop in value.items():
                translated = _translate(prop)
                nullable = prop.get("readOnly") or prop.get("x-nullable")
                if nullable and name not in required:
                    translated = {"anyOf": [translated, {"type": "null"}]}
                props[name] = translated
            out["properties"] = props
        else:
            out[key] = _translate(value)
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


class Conformance:
    """Maps (operationId, status) to the spec's response schema and validates bodies."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.definitions = _translate(spec["definitions"])
        self.responses: dict[str, dict[str, Any]] = {}
        for path_item in spec["paths"].values():
            for method, operation in path_item.items():
                if method == "parameters":
                    continue
                self.responses[operation["operationId"]] = operation["responses"]

    @cached_property
    def error_schema(self) -> dict[str, Any]:
        return {"$ref": "#/definitions/KeyVaultError", "definitions": self.definitions}

    def schema_for(self, operation_id: str | None, status: int) -> dict[str, Any] | None:
        """The schema a body must match; ``None`` when the spec says no body."""
        if operation_id is None:
            return self.error_schema
        responses = self.responses[operation_id]
        response = responses.get(str(status))
        if response is None:
            if 200 <= status < 300:
                raise AssertionError(f"{operation_id}: the spec has no {status} response")
            response = responses["default"]
        schema = response.get("schema")
        if schema is None:
            return None
        return {**_translate(schema), "definitions": self.definitions}

    def problems(self, operation_id: str | None, status: int, body: Any) -> list[str]:
        try:
            schema = self.schema_for(operation_id, status)
        except AssertionError as exc:
            return [str(exc)]
        if schema is None:
            return [] if body is None else [f"{operation_id} {status}: the spec says no body"]
        validator = jsonschema.Draft4Validator(schema, format_checker=FORMATS)
        found = []
        for e in validator.iter_errors(body):
            where = "/".join(map(str, e.absolute_path)) or "<root>"
            found.append(f"{operation_id} {status}: {where}: {e.message}")
        if status >= 400 and isinstance(body, dict):
            error = body.get("error") or {}
            if not error.get("code") or not error.get("message"):
                found.append(f"{operation_id} {status}: error envelope without code/message")
        return found
