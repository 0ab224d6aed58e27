"""Conformance to a tracker's published API: each request a connector made (as a sandbox
logged it: `sandbox.requests`) must be one its description allows, down to the method, the
path, every query parameter and every body field, with their types; and each successful answer
a sandbox gives must have the shape the description gives it (`check_response`).

A description is a JSON file next to this module, `<tracker>.json`, derived by hand from the
tracker's published API description (it names the file, version and commit it was read from).
It lists only the endpoints the connector uses. The format, tracker-neutral:

    {
      "tracker": "azure_devops",
      "source": {...},                    # where it was derived from (free form, for people)
      "case_insensitive_paths": true,     # literal path segments compare without case
      "array_responses": "wrapped",       # optional: an array answer comes as {count, value}
      "version": {                        # optional: an API version every request must carry
        "name": "api-version",
        "in": ["query", "accept"],        # a query parameter and/or a parameter of Accept
        "values": ["7.0"]
      },
      "endpoints": [
        {
          "operation": "Wiql_Query By Wiql",          # the spec's operationId (for messages)
          "method": "POST",
          "path": "/{organization}/{project}/{team}/_apis/wit/wiql",
          "path_params": {"project": {"type": "string", "optional": true}, ...},
          "query": {"$top": {"type": "integer", "format": "int32"}, ...},
          "body": {"required": true, "schema": {...}},   # absent: the request has no body
          "response": {"schema": {...}},                 # optional: a 2xx answer's JSON
          "version": {...} | null                        # optional: overrides the top level
        }
      ]
    }

Path templates: `{name}` is one segment (percent-decoded, not empty) described in
`path_params` (default: a required string); an `optional` one may be left out, segment and all
(as an SDK drops a route value it was not given). Query parameters a request sends must be
listed (the version parameter aside), once each, of their type (`string`, with `format`
date-time an ISO 8601 timestamp, `integer` with
`format` int32/int64, `number`, `boolean` as `true`/`false` without case, `enum`); `required`
ones must be present. Body schemas are a subset of JSON Schema (OpenAPI 2 flavour): `type`
(object, array, string, integer, number, boolean), `properties`, `required`,
`additionalProperties` (schema or bool), `items`, `minItems`, `maxItems`, `enum`, `format`
(int32, int64, date-time), `nullable`; a schema without `type` allows any value. **An object
allows only the properties it lists** unless it says `additionalProperties`: a body field (or an
answer's field) the description does not name is a violation. Keys starting with `x-` are notes.

    violations = check(load("azure_devops"), sandbox.requests)
    assert_conforms(load("azure_devops"), sandbox.requests)  # AssertionError listing them all
    check_response(description, request, status, body)     # e.g. from a sandbox response_hook
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

HERE = Path(__file__).resolve().parent
INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


class RecordedRequest(Protocol):
    """What the checker reads of a request (`connectors.sandbox.base.Request` has it)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...  # percent-encoded, without the query string
    @property
    def query(self) -> Mapping[str, list[str]]: ...
    @property
    def headers(self) -> Mapping[str, str]: ...  # lower-case names
    @property
    def body(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Violation:
    """One thing a request did that its description does not allow."""

    request: str  # "POST /org/p/_apis/wit/wiql?$top=7"
    operation: str | None  # the endpoint it matched, if any
    problem: str

    def __str__(self) -> str:
        where = f" ({self.operation})" if self.operation else ""
        return f"{self.request}{where}: {self.problem}"


@cache
def _load(tracker: str) -> str:
    return (HERE / f"{tracker}.json").read_text(encoding="utf-8")


def load(tracker: str) -> dict[str, Any]:
    """The description `tests/conformance/<tracker>.json` (a fresh copy)."""
    description = json.loads(_load(tracker))
    if not isinstance(description, dict) or not isinstance(description.get("endpoints"), list):
        raise ValueError(f"{tracker}.json is not an API description (no endpoints)")
    return description


def check(description: Mapping[str, Any], requests: Iterable[RecordedRequest]) -> list[Violation]:
    """Every violation of `description` by `requests`, in request order."""
    out: list[Violation] = []
    for request in requests:
        out.extend(check_request(description, request))
    return out


def assert_conforms(description: Mapping[str, Any], requests: Iterable[RecordedRequest]) -> None:
    """Raise AssertionError naming every violation (and how many requests were checked)."""
    requests = list(requests)
    violations = check(description, requests)
    if violations:
        shown = "\n  ".join(str(v) for v in violations[:30])
        more = f"\n  … and {len(violations) - 30} more" if len(violations) > 30 else ""
        raise AssertionError(
            f"{len(violations)} violation(s) of the {description.get('tracker')} API description "
            f"in {len(requests)} request(s):\n  {shown}{more}"
        )


@contextmanager
def conforming(description: Mapping[str, Any], sandbox: Any) -> Iterator[None]:
    """While the block runs, every successful answer of `sandbox` is checked against its
    endpoint's response schema; when it ends, every request the sandbox was sent is checked
    against `description`. Either finding is an AssertionError."""
    answers: list[Violation] = []
    sandbox.response_hook = lambda request, response: answers.extend(
        check_response(description, request, response.status, response.body)
    )
    yield
    assert_conforms(description, sandbox.requests)
    assert not answers, "sandbox answers off the published shape:\n" + "\n".join(
        str(v) for v in answers[:20]
    )


def operation(description: Mapping[str, Any], request: RecordedRequest) -> str | None:
    """The operation (endpoint) of the description a request is for, by method and path."""
    matched = _match(description, request)
    return matched[0].get("operation") if isinstance(matched, tuple) else None


def _match(
    description: Mapping[str, Any], request: RecordedRequest
) -> tuple[Mapping[str, Any], dict[str, str]] | str:
    """The endpoint and path parameters of a request, or why there is none."""
    fold = bool(description.get("case_insensitive_paths"))
    segments = _segments(request.path)
    if segments is None:
        return "the path has an empty segment"
    path_matches = [
        (endpoint, params)
        for endpoint in description["endpoints"]
        if (params := match_path(endpoint, segments, fold=fold)) is not None
    ]
    if not path_matches:
        return "no endpoint of the description has this path"
    chosen = [(e, p) for e, p in path_matches if e["method"].upper() == request.method.upper()]
    if not chosen:
        allowed = sorted({e["method"].upper() for e, _ in path_matches})
        return f"method {request.method} not allowed here ({allowed})"
    return chosen[0]


def check_request(description: Mapping[str, Any], request: RecordedRequest) -> list[Violation]:
    """The violations of one request."""
    label = _label(request)
    matched = _match(description, request)
    if isinstance(matched, str):
        return [Violation(label, None, matched)]
    endpoint, params = matched
    operation = endpoint.get("operation")
    problems = [
        *_check_path_params(endpoint, params),
        *_check_version(description, endpoint, request),
        *_check_query(description, endpoint, request),
        *_check_body(endpoint, request),
    ]
    return [Violation(label, operation, p) for p in problems]


def check_response(
    description: Mapping[str, Any], request: RecordedRequest, status: int, body: Any
) -> list[Violation]:
    """The violations of a successful answer (`body`: JSON, parsed or as bytes) to `request`
    by the response schema of its endpoint (none: nothing to check; errors are not described)."""
    if not 200 <= status < 300:
        return []
    matched = _match(description, request)
    if isinstance(matched, str) or "response" not in matched[0]:
        return []
    endpoint = matched[0]
    label, operation = _label(request), endpoint.get("operation")
    if isinstance(body, bytes | bytearray):
        try:
            body = json.loads(body)
        except ValueError:
            return [Violation(label, operation, "the answer is not JSON")]
    schema = endpoint["response"]["schema"]
    if schema.get("type") == "array" and description.get("array_responses") == "wrapped":
        schema = {
            "type": "object",
            "properties": {"count": {"type": "integer"}, "value": schema},
            "required": ["count", "value"],
        }
    return [
        Violation(label, operation, f"answer{path}: {problem}")
        for path, problem in validate(body, schema)
    ]


# -- paths --------------------------------------------------------------------------------------
def _segments(path: str) -> list[str] | None:
    parts = path.split("/")
    if parts and parts[0] == "":
        parts = parts[1:]
    if parts and parts[-1] == "":
        parts = parts[:-1]
    if any(p == "" for p in parts):
        return None
    return [unquote(p) for p in parts]


def _template_variants(endpoint: Mapping[str, Any]) -> list[list[str]]:
    """The template's segments, once per choice of which optional parameters are present."""
    template = [s for s in str(endpoint["path"]).split("/") if s]
    specs = endpoint.get("path_params") or {}
    optional = [
        i
        for i, s in enumerate(template)
        if _param_name(s) and (specs.get(_param_name(s)) or {}).get("optional")
    ]
    variants = []
    for dropped in itertools.chain.from_iterable(
        itertools.combinations(optional, n) for n in range(len(optional) + 1)
    ):
        variants.append([s for i, s in enumerate(template) if i not in dropped])
    return variants


def _param_name(segment: str) -> str | None:
    match = re.fullmatch(r"\{([^{}]+)\}", segment)
    return match.group(1) if match else None


def match_path(
    endpoint: Mapping[str, Any], segments: Sequence[str], *, fold: bool
) -> dict[str, str] | None:
    """The path parameters if `segments` (decoded) fit the endpoint's template, else None."""
    for variant in _template_variants(endpoint):
        if len(variant) != len(segments):
            continue
        params: dict[str, str] = {}
        for pattern, actual in zip(variant, segments, strict=True):
            name = _param_name(pattern)
            if name is not None:
                params[name] = actual
            elif (pattern.casefold() != actual.casefold()) if fold else (pattern != actual):
                break
        else:
            return params
    return None


def _check_path_params(endpoint: Mapping[str, Any], params: Mapping[str, str]) -> list[str]:
    specs = endpoint.get("path_params") or {}
    return [
        f"path parameter {name}: {problem}"
        for name, value in params.items()
        for problem in _check_text(value, specs.get(name) or {"type": "string"})
    ]


# -- version, query -----------------------------------------------------------------------------
def _version_spec(
    description: Mapping[str, Any], endpoint: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    if "version" in endpoint:
        spec = endpoint["version"]
        return spec if isinstance(spec, Mapping) else None
    spec = description.get("version")
    return spec if isinstance(spec, Mapping) else None


def _accept_parameter(headers: Mapping[str, str], name: str) -> str | None:
    for part in headers.get("accept", "").split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().casefold() == name.casefold():
            return value.strip()
    return None


def _check_version(
    description: Mapping[str, Any], endpoint: Mapping[str, Any], request: RecordedRequest
) -> list[str]:
    spec = _version_spec(description, endpoint)
    if spec is None:
        return []
    name, places = str(spec["name"]), list(spec.get("in") or ["query"])
    found: list[str] = []
    if "query" in places:
        found += list(request.query.get(name, []))
    if "accept" in places:
        value = _accept_parameter(request.headers, name)
        if value is not None:
            found.append(value)
    if not found:
        return [f"no {name} (in {' or '.join(places)})"]
    allowed = spec.get("values")
    return [f"{name} {v!r} is not one of {allowed}" for v in found if allowed and v not in allowed]


def _check_query(
    description: Mapping[str, Any], endpoint: Mapping[str, Any], request: RecordedRequest
) -> list[str]:
    specs: Mapping[str, Any] = endpoint.get("query") or {}
    version = _version_spec(description, endpoint)
    version_name = (
        str(version["name"]) if version and "query" in (version.get("in") or ["query"]) else None
    )
    problems = []
    for name, values in request.query.items():
        if name == version_name:
            continue
        spec = specs.get(name)
        if spec is None:
            problems.append(f"query parameter {name!r} is not in the description")
            continue
        # An `array` parameter may come once per item (OpenAPI's form style, explode: true).
        if len(values) != 1 and spec.get("type") != "array":
            problems.append(f"query parameter {name!r} sent {len(values)} times")
        item = spec.get("items") or {} if spec.get("type") == "array" else spec
        for value in values:
            problems += [f"query parameter {name}: {p}" for p in _check_text(value, item)]
    for name, spec in specs.items():
        if spec.get("required") and name not in request.query:
            problems.append(f"required query parameter {name!r} missing")
    return problems


def _check_text(value: str, spec: Mapping[str, Any]) -> list[str]:
    """A path or query value (text) against its type."""
    kind = spec.get("type", "string")
    if "enum" in spec and value not in spec["enum"]:
        return [f"{value!r} is not one of {spec['enum']}"]
    if kind == "string":
        if spec.get("format") == "date-time" and value and not _is_date_time(value):
            return [f"{value!r} is not a date-time"]
        return [] if value else ["empty"]
    if kind == "boolean":
        return [] if value.casefold() in ("true", "false") else [f"{value!r} is not a boolean"]
    if kind == "integer":
        if not re.fullmatch(r"-?\d+", value):
            return [f"{value!r} is not an integer"]
        return _check_range(int(value), spec)
    if kind == "number":
        try:
            float(value)
        except ValueError:
            return [f"{value!r} is not a number"]
        return []
    return [f"the description has an unknown parameter type {kind!r}"]


def _check_range(value: int, spec: Mapping[str, Any]) -> list[str]:
    low, high = INT_RANGES.get(str(spec.get("format")), (None, None))
    if low is not None and high is not None and not low <= value <= high:
        return [f"{value} is out of the {spec['format']} range"]
    return []


# -- bodies -------------------------------------------------------------------------------------
def _check_body(endpoint: Mapping[str, Any], request: RecordedRequest) -> list[str]:
    body_spec = endpoint.get("body")
    raw = request.body or b""
    if body_spec is None:
        return ["a body, where the description has none"] if raw.strip() else []
    if not raw.strip():
        return ["no body, where the description requires one"] if body_spec.get("required") else []
    try:
        body = json.loads(raw)
    except ValueError:
        return ["the body is not JSON"]
    return [f"body{path}: {problem}" for path, problem in validate(body, body_spec["schema"])]


def validate(value: Any, schema: Mapping[str, Any], path: str = "") -> list[tuple[str, str]]:
    """(JSON path, problem) for each way `value` breaks `schema` (the subset described above)."""
    if value is None and schema.get("nullable"):
        return []
    if "enum" in schema and value not in schema["enum"]:
        return [(path, f"{value!r} is not one of {schema['enum']}")]
    kind = schema.get("type")
    if kind == "object":
        return _validate_object(value, schema, path)
    if kind == "array":
        if not isinstance(value, list):
            return [(path, f"{_kind(value)}, not an array")]
        problems = []
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append((path, f"{len(value)} items, more than {schema['maxItems']}"))
        if "minItems" in schema and len(value) < schema["minItems"]:
            problems.append((path, f"{len(value)} items, fewer than {schema['minItems']}"))
        items = schema.get("items")
        if isinstance(items, Mapping):
            for n, item in enumerate(value):
                problems += validate(item, items, f"{path}[{n}]")
        return problems
    if kind == "string":
        if not isinstance(value, str):
            return [(path, f"{_kind(value)}, not a string")]
        if schema.get("format") == "date-time" and not _is_date_time(value):
            return [(path, f"{value!r} is not a date-time")]
        return []
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return [(path, f"{_kind(value)}, not an integer")]
        return [(path, p) for p in _check_range(value, schema)]
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return [(path, f"{_kind(value)}, not a number")]
        return []
    if kind == "boolean":
        return [] if isinstance(value, bool) else [(path, f"{_kind(value)}, not a boolean")]
    if kind is None:
        return []  # any value
    return [(path, f"the description has an unknown type {kind!r}")]


def _validate_object(value: Any, schema: Mapping[str, Any], path: str) -> list[tuple[str, str]]:
    if not isinstance(value, dict):
        return [(path, f"{_kind(value)}, not an object")]
    properties: Mapping[str, Any] = schema.get("properties") or {}
    extra = schema.get("additionalProperties", False)
    problems = [(path, f"required field {name!r} missing") for name in schema.get("required", [])
                if name not in value]  # fmt: skip
    for name, item in value.items():
        here = f"{path}.{name}"
        if name in properties:
            problems += validate(item, properties[name], here)
        elif isinstance(extra, Mapping):
            problems += validate(item, extra, here)
        elif not extra:
            problems.append((here, "a field the description does not have"))
    return problems


def _is_date_time(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in text


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _label(request: RecordedRequest) -> str:
    query = "&".join(f"{k}={v}" for k, vs in request.query.items() for v in vs)
    return f"{request.method} {request.path}" + (f"?{query}" if query else "")
