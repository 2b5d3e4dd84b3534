"""Validates XML fragments against Microsoft's EWS schema (messages.xsd, which imports types.xsd).

Usage: python3 validate.py FILE...   Each FILE holds one element from the EWS messages or types
namespace (a request body, or a SOAP header element). Exit 0 if all are valid; otherwise each
error is printed and the exit code is 1. Needs the `xmlschema` package (pip install xmlschema).
"""
import os
import sys

import xmlschema

here = os.path.dirname(os.path.abspath(__file__))
schema = xmlschema.XMLSchema(os.path.join(here, "messages.xsd"))
failed = 0
for path in sys.argv[1:]:
    errors = list(schema.iter_errors(path))
    for e in errors:
        print(f"{path}: {e.reason} at {e.path}", file=sys.stderr)
    failed += bool(errors)
print(f"{len(sys.argv) - 1 - failed} valid, {failed} invalid")
sys.exit(1 if failed else 0)
