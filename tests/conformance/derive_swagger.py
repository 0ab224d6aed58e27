"""Print the endpoints of a conformance description (see checker.py) for some operations of a
Swagger 2.0 (OpenAPI 2) file, the form Microsoft publishes the Azure DevOps REST API in
(github.com/MicrosoftDocs/vsts-rest-api-specs, `specification/<area>/<version>/*.json`).

    python -m tests.conformance.derive_swagger workItemTracking.json \\
        "Wiql_Query By Wiql" "Work Items_Get Work Items Batch" "Work Item Type States_List"

Path parameters the spec marks `x-ms-required: false` become `optional`; the `api-version`
parameter is left to the description's `version`; body and 200-response schemas have their
`$ref`s resolved and their objects closed (`additionalProperties: false` unless the spec says
otherwise), except a bare `{"type": "object"}`, which stands for .NET's `object` (any value,
e.g. a work item field's). Anything
the spec says only in words (the 200-id cap of workItemsBatch) is added by hand, marked
`x-added` in the description.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

KEEP = ("type", "format", "enum", "items", "properties", "required", "additionalProperties")


def resolve(spec: Mapping[str, Any], node: Any, depth: int = 0) -> Any:
    """`node` with every `$ref` inlined and `allOf` merged (depth-limited: the models nest)."""
    if depth > 8:
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
    if node.get("type") == "object" and not {"properties", "additionalProperties", "allOf"} & set(
        node
    ):
        return {}  # a bare object: .NET's `object`, any JSON value (a work item field's value)
    out: dict[str, Any] = {}
    for base in node.get("allOf", []):
        merged = resolve(spec, base, depth + 1)
        out.setdefault("properties", {}).update(merged.get("properties", {}))
        out.setdefault("type", merged.get("type"))
    for key in KEEP:
        if key in node:
            value = node[key]
            if key == "properties":
                out.setdefault("properties", {}).update(
                    {k: resolve(spec, v, depth + 1) for k, v in value.items()}
                )
            elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
                out[key] = resolve(spec, value, depth + 1)
            else:
                out[key] = value
    if out.get("type") == "object" and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def endpoints(spec: Mapping[str, Any], operations: list[str]) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            if op.get("operationId") not in operations:
                continue
            endpoint: dict[str, Any] = {
                "operation": op["operationId"],
                "method": method.upper(),
                "path": path,
                "path_params": {},
                "query": {},
            }
            for param in op.get("parameters", []):
                if "$ref" in param:
                    continue  # the shared api-version parameter: the description's `version`
                described = {k: param[k] for k in ("type", "format", "enum") if k in param}
                if param["in"] == "path":
                    if param.get("x-ms-required") is False:
                        described["optional"] = True
                    endpoint["path_params"][param["name"]] = described
                elif param["in"] == "query":
                    if param.get("required"):
                        described["required"] = True
                    endpoint["query"][param["name"]] = described
                elif param["in"] == "body":
                    endpoint["body"] = {
                        "required": bool(param.get("required")),
                        "schema": resolve(spec, param["schema"]),
                    }
            answer = (op.get("responses") or {}).get("200", {}).get("schema")
            if answer is not None:
                endpoint["response"] = {"schema": resolve(spec, answer)}
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
