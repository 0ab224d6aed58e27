"""tests/conformance/linear_schema.py: the comparison of the served schema with Linear's."""

from __future__ import annotations

from graphql import build_schema, print_schema

from connectors.sandbox import graphql
from tests.conformance.linear_schema import differences


def test_a_schema_with_everything_we_serve_has_no_difference() -> None:
    # Linear's schema holds more than we serve; ours alone is the smallest that can agree, once
    # the parts UNSERVED names are added back: check only that nothing we serve differs.
    found = differences(graphql.SCHEMA, graphql.SCHEMA)
    assert all("left out" in d or "arguments left out" in d for d in found), found


def test_a_changed_type_or_a_missing_field_is_found() -> None:
    sdl = print_schema(graphql.SCHEMA)
    assert "title: String!" in sdl
    changed = build_schema(sdl.replace("title: String!", "title: Int!", 1))
    found = differences(graphql.SCHEMA, changed)
    assert any("title" in d and "Int!" in d for d in found), found
