"""The policy parser's stored LR tables (shared/hcl_tables.json): this grammar's, used, and
parsing as the tables ply computes do."""

import json

import pytest

from shared import hcl_parser, policy
from shared.errors import InvalidRequest

TEXTS = [
    policy.DEFAULT_POLICY,
    policy.RESPONSE_WRAPPING_POLICY,
    'path "a/*" { capabilities = ["read", "list"] }\npath "b" { capabilities = ["deny"] }',
    'path "a" {\n  capabilities = ["create"]\n  allowed_parameters = { "x" = [false, "y"] }\n}',
    'path "a" { capabilities = ["read"] min_wrapping_ttl = "1m" max_wrapping_ttl = 3600 }',
    'path "a" { capabilities = [read] }',  # bare identifier
    'path "a" { capabilities : ["read"] }',  # ':' assignment
    'path "a" { capabilities = ["read"] x = a ? b : c }',  # HCL2 conditional
    'path "a" { capabilities = [upper("read")] }',  # HCL2 function
    'path "a" { capabilities = ["read"]',  # unexpected end of input
    'path "a" } capabilities',
    "name = 1 + 2",
]


def _outcome(parser: object, text: str) -> str:
    saved = policy._parser
    policy._parser = parser
    try:
        return repr(policy.parse("p", text))
    except InvalidRequest as exc:
        return f"InvalidRequest: {exc}"
    finally:
        policy._parser = saved


def test_the_stored_tables_are_this_grammars():
    stored = json.loads(hcl_parser.TABLES.read_text())
    computed = json.loads(json.dumps(hcl_parser.compute_tables()))
    assert stored == computed, "stale: run `python -m tools.hcl_tables` and commit the file"


def test_the_parser_is_built_over_the_stored_tables():
    assert hcl_parser.build().from_stored_tables


def test_tables_for_another_grammar_are_not_used(tmp_path, monkeypatch):
    stored = json.loads(hcl_parser.TABLES.read_text())
    stored["grammar"]["rules"] = stored["grammar"]["rules"][:-1]
    other = tmp_path / "hcl_tables.json"
    other.write_text(json.dumps(stored))
    monkeypatch.setattr(hcl_parser, "TABLES", other)
    parser = hcl_parser.build()
    assert not parser.from_stored_tables  # ply computed its own
    assert _outcome(parser, TEXTS[2]).startswith("Policy(")


@pytest.mark.parametrize("text", TEXTS)
def test_stored_and_computed_tables_parse_alike(text):
    stored = hcl_parser.build()
    computed = hcl_parser.Parser()
    computed.yacc = hcl_parser._computed(computed)
    assert stored.from_stored_tables
    assert _outcome(stored, text) == _outcome(computed, text)
