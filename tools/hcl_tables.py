"""``python -m tools.hcl_tables``: write shared/hcl_tables.json, the LR tables of the policy
parser's grammar (shared/hcl_parser.py), after a change to that grammar or to pyhcl."""

from __future__ import annotations

import json

from shared import hcl_parser


def main() -> None:
    tables = hcl_parser.compute_tables()
    hcl_parser.TABLES.write_text(json.dumps(tables, sort_keys=True, separators=(",", ":")) + "\n")
    print(f"wrote {hcl_parser.TABLES} ({len(tables['action'])} states)")


if __name__ == "__main__":
    main()
