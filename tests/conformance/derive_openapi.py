"""Print the endpoints of a conformance description (see checker.py) for some operations of an
OpenAPI 3 file, the form Atlassian publishes the Jira Cloud platform REST API in
(`https://dac-static.atlassian.com/cloud/jira/platform/swagger-v3.v3.json`) and GitHub its REST
API (`github/rest-api-description`, `descriptions/api.github.com/api.github.com.json`).

    python -m tests.conformance.derive_openapi swagger-v3.v3.json \\
        getServerInfo getFields getCurrentUser \\
        searchAndReconsileIssuesUsingJql searchAndReconsileIssuesUsingJqlPost

Query parameters keep their schema's type (an `array` one may be repeated, as clients send
`fields=a&fields=b`); the JSON request body and the 200 answer have their `$ref`s inlined,
`allOf` merged and their objects closed (`additionalProperties: false` unless the spec says
otherwise); `nullable` is kept. What the spec says only in words is added by hand, marked
`x-added`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

KEEP = ("type", "format", "enum", "items", "properties", "required", "additionalProperties",
        "nullable", "maxItems", "minItems")  # fmt: skip


def resolve(spec: Mapping[str, Any], node: Any, depth: int = 0) -> Any:
    """`node` with every `$ref` inlined and `allOf` merged (depth-limited: the models nest)."""
    if depth > 12:
        return {}
    if isinstance(node, list):
        return [resolve(spec, n, depth + 1) for n in node]
    if not isinstance(node, Mapping):
        return node
    if "$ref" in node:
        target: Any = spec
        for part in str(node["$ref"]).lstrip("#/").split("/"):
            target = target[part]
        return resolve(spec, target, depth + 1)
    if {"oneOf", "anyOf"} & set(node):
        return {"nullable": True} if node.get("nullable") else {}  # any value: not modelled
    out: dict[str, Any] = {}
    for base in node.get("allOf", []):
        merged = resolve(spec, base, depth + 1)
        out.setdefault("properties", {}).update(merged.get("properties", {}))
        out["required"] = [*out.get("required", []), *merged.get("required", [])]
        for key in ("type", "nullable", "additionalProperties"):
            if key in merged:
                out.setdefault(key, merged[key])
    for key in KEEP:
        if key not in node:
            continue
        value = node[key]
        if key == "properties":
            out.setdefault("properties", {}).update(
                {k: resolve(spec, v, depth + 1) for k, v in value.items()}
            )
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = resolve(spec, value, depth + 1) if value else True
        elif key == "required":
            out["required"] = [*out.get("required", []), *value]
        else:
            out[key] = value
    if "properties" in out and "type" not in out:
        out["type"] = "object"
    if out.get("type") == "object" and "additionalProperties" not in out:
        out["additionalProperties"] = not out.get("properties")  # a bare object: anything
    return out


def endpoints(spec: Mapping[str, Any], operations: list[str]) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            if not isinstance(op, Mapping) or op.get("operationId") not in operations:
                continue
            endpoint: dict[str, Any] = {
                "operation": op["operationId"],
                "method": method.upper(),
                "path": path,
                "path_params": {},
                "query": {},
            }
            for param in [*methods.get("parameters", []), *op.get("parameters", [])]:
                param = resolve(spec, param) if "$ref" in param else param
                schema = resolve(spec, param.get("schema") or {})
                described = {
                    k: schema[k] for k in ("type", "format", "enum", "items") if k in schema
                }
                if param["in"] == "path":
                    endpoint["path_params"][param["name"]] = described
                elif param["in"] == "query":
                    if param.get("required"):
                        described["required"] = True
                    endpoint["query"][param["name"]] = described
            body = (op.get("requestBody") or {}).get("content", {}).get("application/json")
            if body is not None:
                endpoint["body"] = {
                    "required": bool(op["requestBody"].get("required")),
                    "schema": resolve(spec, body["schema"]),
                }
            answer = (op.get("responses") or {}).get("200", {}).get("content", {})
            answer = answer.get("application/json")
            if answer is not None:
                endpoint["response"] = {"schema": resolve(spec, answer["schema"])}
            found[op["operationId"]] = endpoint
    missing = [o for o in operations if o not in found]
    if missing:
        raise SystemExit(f"not in the spec: {missing}")
    return [found[o] for o in operations]


def main(argv: list[str]) -> None:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8-sig"))
    json.dump(endpoints(spec, argv[1:]), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main(sys.argv[1:])
