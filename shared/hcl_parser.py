"""pyhcl's parser with its grammar held to HCL v1 (what Vault and OpenBao use), and its LR
tables computed ahead of time.

Duplicate keys are kept as pairs, and pyhcl's extensions (HCL2-style functions, expressions,
``:`` assignments, bare identifiers as values) are refused. The grammar lives in this module
alone so that its rule order (ply orders rules by line number) changes only when it does.

ply computes the LALR tables on every construction (about 50 ms of the first request's
service build, which parses the default policy); the ply pyhcl vendors keeps no table cache.
The tables are a pure function of the grammar, so ``hcl_tables.json`` holds them with the
grammar they were computed for, and ``build()`` uses them only when the grammar ply reads
from this class is exactly that one (its rules in ply's order, precedence and tokens);
otherwise ply computes them as before. ``python -m tools.hcl_tables`` writes the file;
tests/unit/test_hcl_tables.py fails when it is stale.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

from hcl.parser import HclParser, pickle_file  # type: ignore[import-untyped]
from hcl.ply import yacc  # type: ignore[import-untyped]

from shared.policy import _Ident, _Pairs, _position, _SyntaxError

TABLES = Path(__file__).with_name("hcl_tables.json")


def _at(parser: Any, p: Any, index: int) -> str:
    return _position(parser.source, p.lexpos(index))


def _refuse(name: str) -> Any:
    def production(self: Any, p: Any) -> None:
        # The first token of the construct (ply keeps positions for tokens only).
        offsets = [s.lexpos for s in p.slice[1:] if hasattr(s, "lexpos")]
        where = f"At {_position(self.source, offsets[0])}: " if offsets else ""
        raise _SyntaxError(f"{where}syntax not in HCL v1")

    return _in_place_of(name, production)


def _in_place_of(name: str, function: Any) -> Any:
    """``function`` as pyhcl's rule ``name``: its grammar (docstring) and its place in ply's
    rule order, which goes by line number (``co_firstlineno``, which ply reads from the
    function first). The order decides ply's reduce/reduce conflicts, so every rule keeps
    pyhcl's, whichever module defines it."""
    original = getattr(HclParser, name)
    if function.__doc__ is None:
        function.__doc__ = original.__doc__
    function.co_firstlineno = original.__code__.co_firstlineno
    return function


class Parser(HclParser):  # type: ignore[misc]
    start = "top"  # pyhcl's first rule, ply's default start
    source = ""

    def __init__(self) -> None:  # HclParser's would compute the tables: build() sets yacc
        pass

    def objectlist_flat(self, lt: list[tuple[Any, Any]], replace: bool) -> _Pairs:
        return _Pairs(lt)

    def p_objectkey_0(self, p: Any) -> None:
        p[0] = _Ident(p[1]) if p.slice[1].type == "IDENTIFIER" else p[1]

    def p_objectitem_0(self, p: Any) -> None:
        if p.slice[2].type == "COLON":
            raise _SyntaxError(f"At {_at(self, p, 2)}: illegal char")
        if p.slice[3].type == "IDENTIFIER":
            raise _SyntaxError(f"At {_at(self, p, 3)}: unknown token: identifier")
        p[0] = (p[1], p[3])

    def p_list_1(self, p: Any) -> None:
        if p.slice[1].type == "LEFTPAREN":
            raise _SyntaxError(f"At {_at(self, p, 1)}: syntax not in HCL v1")
        p[0] = []

    def p_listitem_0(self, p: Any) -> None:
        # pyhcl's grammar with BOOL added: HCL v1 lists may hold booleans, as
        # allowed_parameters = { "deletion_allowed" = [false] } does.
        """
        listitem : number
                 | object
                 | objectkey
                 | objectbrackets
                 | BOOL
        """
        p[0] = p[1]

    def p_error(self, p: Any) -> None:
        if p is None:
            end = _position(self.source, len(self.source))
            raise _SyntaxError(f"At {end}: unexpected end of input")
        raise _SyntaxError(f"At {_position(self.source, p.lexpos)}: unexpected {p.type}")


for _method in ("p_objectkey_0", "p_objectitem_0", "p_list_1", "p_listitem_0"):
    _in_place_of(_method, getattr(Parser, _method))
for _name in (
    "p_objectkey_1",  # arithmetic keys
    "p_objectbrackets_0",  # a[b]
    "p_objectbrackets_1",
    "p_objectitem_2",  # a ? b : c
    "p_booleanexp_0",
    "p_list_2",
    "p_list_of_lists_0",
    "p_list_of_lists_1",
    "p_function_0",
    "p_function_1",
    "p_function_2",
    "p_function_3",
    "p_listitems_3",
    "p_listitems_4",
    "p_listitem_1",
    "p_number_4",  # arithmetic
    "p_number_5",
    "p_number_6",
    "p_number_7",
):
    setattr(Parser, _name, _refuse(_name))


def _grammar(parser: Parser) -> tuple[Any, Any]:
    """ply's reading of the parser's rules (what ``yacc.yacc`` does before it computes the
    tables, with the same checks): its ParserReflect and Grammar."""
    pdict = {name: getattr(parser, name) for name in dir(parser)}
    pdict["__file__"] = sys.modules[pdict["__module__"]].__file__
    pdict["__package__"] = sys.modules[pdict["__module__"]].__package__
    pinfo = yacc.ParserReflect(pdict, log=yacc.NullLogger())
    pinfo.get_all()
    if pinfo.error or pinfo.validate_all():
        raise yacc.YaccError("Unable to build parser")
    grammar = yacc.Grammar(pinfo.tokens)
    for term, assoc, level in pinfo.preclist:
        grammar.set_precedence(term, assoc, level)
    for funcname, (file, line, prodname, syms) in pinfo.grammar:
        grammar.add_production(prodname, syms, funcname, file, line)
    grammar.set_start(pinfo.start)
    return pinfo, grammar


def _rules(productions: Any) -> list[list[Any]]:
    return [[p.name, list(p.prod), p.func, list(p.prec)] for p in productions]


def _key(pinfo: Any, grammar: Any) -> dict[str, Any]:
    """What the LR tables are a function of: the rules in order, precedence, tokens, start."""
    return {
        "rules": _rules(grammar.Productions),
        "precedence": [list(entry) for entry in pinfo.preclist],
        "tokens": sorted(pinfo.tokens),
        "start": grammar.Start,
    }


def _computed(parser: Parser) -> Any:
    """ply's own build, tables computed now (what HclParser.__init__ does)."""
    return yacc.yacc(module=parser, debug=False, optimize=1, debugfile=pickle_file)


def compute_tables() -> dict[str, Any]:
    """The grammar and the LR tables ply computes for it, as ``hcl_tables.json`` keeps them."""
    parser = Parser()
    lr = _computed(parser)
    pinfo, grammar = _grammar(parser)
    key = _key(pinfo, grammar)
    if key["rules"] != _rules(lr.productions):
        raise AssertionError("ply read the grammar differently from _grammar()")
    return {
        "grammar": key,
        "action": {str(state): row for state, row in lr.action.items()},
        "goto": {str(state): row for state, row in lr.goto.items()},
    }


def _stored_tables(key: dict[str, Any]) -> tuple[dict[int, Any], dict[int, Any]] | None:
    try:
        stored = json.loads(TABLES.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("grammar") != key:
        return None
    action = {int(state): row for state, row in stored["action"].items()}
    goto = {int(state): row for state, row in stored["goto"].items()}
    return action, goto


def build() -> Parser:
    """The parser: ply's LR parser over the stored tables when they are this grammar's, else
    ply's own build (``yacc.yacc``, tables computed now)."""
    parser = Parser()
    pinfo, grammar = _grammar(parser)
    stored = _stored_tables(_key(pinfo, grammar))
    parser.from_stored_tables = stored is not None
    if stored is None:
        parser.yacc = _computed(parser)
        return parser
    for production in grammar.Productions:
        production.bind(pinfo.pdict)
    tables = types.SimpleNamespace(
        lr_productions=grammar.Productions, lr_action=stored[0], lr_goto=stored[1]
    )
    parser.yacc = yacc.LRParser(tables, pinfo.error_func)
    return parser
