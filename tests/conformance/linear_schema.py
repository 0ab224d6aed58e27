"""Check the Linear sandbox's served schema (connectors/sandbox/linear.graphql) against Linear's
published one: every type, field, argument, input field and enum value we serve exists in
Linear's schema with the same kind, type and nullability, and what we leave out is listed in
`graphql.UNSERVED`. Linear's schema is not vendored here (it is theirs): fetch
`linear/linear: packages/sdk/src/schema.graphql` and run

    python tests/conformance/linear_schema.py path/to/schema.graphql

It prints each difference and exits 1 when there is one. The comparison itself is unit-tested
(tests/unit/test_conformance_linear_schema.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    build_schema,
)

from connectors.sandbox import graphql

BUILT_IN = ("String", "Int", "Float", "Boolean", "ID")


def _kind(named: Any) -> str:
    return type(named).__name__


def differences(ours: GraphQLSchema, linear: GraphQLSchema) -> list[str]:
    """Where the served schema is not Linear's, in words; [] when it is."""
    out: list[str] = []
    for name, mine in ours.type_map.items():
        if name.startswith("__") or name in BUILT_IN:
            continue
        theirs = linear.type_map.get(name)
        if theirs is None:
            out.append(f"Linear has no type {name}")
            continue
        if _kind(theirs) != _kind(mine):
            out.append(f"{name}: {_kind(mine)} here, {_kind(theirs)} at Linear")
            continue
        if isinstance(mine, GraphQLEnumType) and isinstance(theirs, GraphQLEnumType):
            if set(mine.values) != set(theirs.values):
                out.append(f"{name}: enum values differ")
        if isinstance(mine, GraphQLObjectType) and isinstance(theirs, GraphQLObjectType):
            if [i.name for i in mine.interfaces] != [i.name for i in theirs.interfaces]:
                out.append(f"{name}: interfaces differ")
        if isinstance(mine, GraphQLInputObjectType) and isinstance(theirs, GraphQLInputObjectType):
            for field, spec in mine.fields.items():
                if field not in theirs.fields:
                    out.append(f"{name}.{field}: not Linear's")
                elif str(spec.type) != str(theirs.fields[field].type):
                    out.append(f"{name}.{field}: {spec.type} here, {theirs.fields[field].type}")
            left_out = set(theirs.fields) - set(mine.fields)
            if left_out != graphql.UNSERVED.get(name, set()):
                out.append(f"{name}: left out {sorted(left_out)}, UNSERVED says otherwise")
        elif isinstance(mine, GraphQLObjectType | GraphQLInterfaceType) and isinstance(
            theirs, GraphQLObjectType | GraphQLInterfaceType
        ):
            for field, spec in mine.fields.items():
                where = f"{name}.{field}"
                if field not in theirs.fields:
                    out.append(f"{where}: not Linear's")
                    continue
                if str(spec.type) != str(theirs.fields[field].type):
                    out.append(f"{where}: {spec.type} here, {theirs.fields[field].type}")
                their_args = theirs.fields[field].args
                for arg, arg_spec in spec.args.items():
                    if arg not in their_args:
                        out.append(f"{where}({arg}): not Linear's")
                    elif str(arg_spec.type) != str(their_args[arg].type):
                        out.append(f"{where}({arg}): {arg_spec.type} here, {their_args[arg].type}")
                if set(their_args) - set(spec.args) != graphql.UNSERVED.get(where, set()):
                    out.append(f"{where}: arguments left out differ from UNSERVED")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    linear = build_schema(Path(argv[1]).read_text(encoding="utf-8"))
    found = differences(graphql.SCHEMA, linear)
    for line in found:
        print(line)
    print(f"{len(found)} difference(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
