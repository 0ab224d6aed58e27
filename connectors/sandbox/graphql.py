"""GraphQL, the subset the Linear sandbox answers: one query operation read, checked against the
slice of Linear's schema served, executed through a resolver for the root fields, and projected
onto exactly what it selected; plus Linear's `IssueFilter` / `TeamFilter` inputs and the ordering
of `issues`, evaluated on the sandbox's stored nodes.

The reader takes an operation header with variable definitions (types, defaults), fields, aliases,
arguments, object / list / enum / string / number literals and `$variables`. Fragments, directives,
mutations and subscriptions are refused with an explicit error, never ignored. Every refusal is a
`GraphQLError` that knows its HTTP status and renders Linear's error body.

    op = parse(query)
    check_variables(op, variables)
    data = execute(op, variables, root)  # root(selection, arguments) answers a root field
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Node = dict[str, Any]
SortKey = Callable[[Mapping[str, Any]], Any]


def iso(value: datetime) -> str:
    """Linear's DateTime text: UTC, milliseconds, `Z` (fixed width, so it sorts as it reads)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# The language: errors, a reader for the subset used, variables, schema checks, execution and
# projection of results onto selections
# ---------------------------------------------------------------------------------------------
class GraphQLError(Exception):
    """Answered as Linear does: `{"errors":[{message, extensions{code,type,…}}]}`."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "GRAPHQL_VALIDATION_FAILED",
        type_: str = "graphql error",
        status: int = 400,
    ) -> None:
        super().__init__(message)
        self.message, self.code, self.type, self.status = message, code, type_, status

    def body(self) -> dict[str, Any]:
        return {
            "errors": [
                {
                    "message": self.message,
                    "extensions": {
                        "code": self.code,
                        "type": self.type,
                        "userError": True,
                        "userPresentableMessage": self.message,
                    },
                }
            ],
            "data": None,
        }


@dataclass(frozen=True, slots=True)
class Var:
    name: str


@dataclass(frozen=True, slots=True)
class EnumValue:
    name: str


@dataclass(slots=True)
class Selection:
    name: str
    alias: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    fields: list[Selection] | None = None  # None: a leaf

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass(slots=True)
class Operation:
    name: str | None
    variables: dict[str, tuple[str, Any]]  # name -> (type text, default)
    fields: list[Selection]


_TOKEN = re.compile(
    r"""
    (?P<skip>[\s,\ufeff]+|\#[^\n]*)
  | (?P<spread>\.\.\.)
  | (?P<punct>[!$():=@\[\]{}|])
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
    """,
    re.VERBOSE,
)


class _Reader:
    """Recursive descent over the GraphQL subset the connectors and tests send."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None:
                raise GraphQLError(f"Syntax Error: Unexpected character {text[pos]!r}.")
            kind = match.lastgroup or ""
            if kind != "skip":
                self.tokens.append((kind, match.group()))
            pos = match.end()
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("eof", "")

    def take(self, text: str | None = None, kind: str | None = None) -> str:
        got_kind, got = self.peek()
        if (text is not None and got != text) or (kind is not None and got_kind != kind):
            want = text or kind
            raise GraphQLError(f"Syntax Error: Expected {want}, found {got or '<EOF>'!r}.")
        self.i += 1
        return got

    def accept(self, text: str) -> bool:
        if self.peek()[1] == text and self.peek()[0] != "string":
            self.i += 1
            return True
        return False

    # -- grammar -------------------------------------------------------------------------------
    def operation(self) -> Operation:
        name: str | None = None
        variables: dict[str, tuple[str, Any]] = {}
        kind, word = self.peek()
        if kind == "name" and word in ("mutation", "subscription", "fragment"):
            raise GraphQLError(f"The Linear sandbox only answers queries, not {word}s.")
        if kind == "name" and word == "query":
            self.i += 1
            if self.peek()[0] == "name":
                name = self.take(kind="name")
            if self.accept("("):
                while not self.accept(")"):
                    self.take("$")
                    var = self.take(kind="name")
                    self.take(":")
                    type_text = self.type_ref()
                    default = self.value(const=True) if self.accept("=") else None
                    variables[var] = (type_text, default)
        fields = self.selection_set()
        if self.peek()[0] != "eof":
            raise GraphQLError("This anonymous operation must be the only defined operation.")
        return Operation(name, variables, fields)

    def type_ref(self) -> str:
        if self.accept("["):
            inner = self.type_ref()
            self.take("]")
            text = f"[{inner}]"
        else:
            text = self.take(kind="name")
        return text + ("!" if self.accept("!") else "")

    def selection_set(self) -> list[Selection]:
        self.take("{")
        fields: list[Selection] = []
        while not self.accept("}"):
            if self.peek()[0] == "spread":
                raise GraphQLError("The Linear sandbox does not support fragments.")
            fields.append(self.selection())
        return fields

    def selection(self) -> Selection:
        name = self.take(kind="name")
        alias = None
        if self.accept(":"):
            alias, name = name, self.take(kind="name")
        args: dict[str, Any] = {}
        if self.accept("("):
            while not self.accept(")"):
                arg = self.take(kind="name")
                self.take(":")
                args[arg] = self.value()
        if self.peek()[1] == "@":
            raise GraphQLError("The Linear sandbox does not support directives.")
        fields = self.selection_set() if self.peek()[1] == "{" else None
        return Selection(name, alias, args, fields)

    def value(self, const: bool = False) -> Any:
        kind, text = self.peek()
        if kind == "punct" and text == "$" and not const:
            self.i += 1
            return Var(self.take(kind="name"))
        if kind == "number":
            self.i += 1
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "string":
            self.i += 1
            return json.loads(text)
        if kind == "name":
            self.i += 1
            return {"true": True, "false": False, "null": None}.get(text, EnumValue(text))
        if self.accept("["):
            items = []
            while not self.accept("]"):
                items.append(self.value(const))
            return items
        if self.accept("{"):
            obj = {}
            while not self.accept("}"):
                key = self.take(kind="name")
                self.take(":")
                obj[key] = self.value(const)
            return obj
        raise GraphQLError(f"Syntax Error: Unexpected {text or '<EOF>'!r}.")


def parse(query: str) -> Operation:
    """Read one query operation (GraphQLError: syntax, or what the sandbox does not support)."""
    return _Reader(query).operation()


def resolve(value: Any, variables: Mapping[str, Any], declared: Mapping[str, Any]) -> Any:
    """An argument's value with `$variables` substituted (undeclared ones are errors)."""
    if isinstance(value, Var):
        if value.name not in declared:
            raise GraphQLError(f'Variable "${value.name}" is not defined.')
        return variables.get(value.name, declared[value.name][1])
    if isinstance(value, EnumValue):
        return value.name
    if isinstance(value, list):
        return [resolve(v, variables, declared) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, variables, declared) for k, v in value.items()}
    return value


def check_variables(op: Operation, variables: Mapping[str, Any]) -> None:
    for name, (type_text, default) in op.variables.items():
        if type_text.endswith("!") and variables.get(name, default) is None:
            raise GraphQLError(
                f'Variable "${name}" of required type "{type_text}" was not provided.',
                code="BAD_USER_INPUT",
                type_="invalid input",
            )


_SCALARS = {
    "Query": "",
    "User": "id name email",
    "Team": "id key name",
    "WorkflowState": "id name type",
    "IssueLabel": "id name",
    "PageInfo": "hasNextPage hasPreviousPage startCursor endCursor",
    "Edge": "cursor",
    "TeamConnection": "",
    "IssueConnection": "",
    "IssueLabelConnection": "",
    "Issue": "id identifier number title description priority priorityLabel estimate url "
    "createdAt updatedAt startedAt completedAt canceledAt archivedAt trashed previousIdentifiers",
}
_OBJECTS: dict[str, dict[str, str]] = {
    "Query": {"viewer": "User", "teams": "TeamConnection", "issues": "IssueConnection"},
    "Issue": {"state": "WorkflowState", "team": "Team", "labels": "IssueLabelConnection"},
    **{
        f"{kind}Connection": {"nodes": kind, "edges": f"{kind}Edge", "pageInfo": "PageInfo"}
        for kind in ("Team", "Issue", "IssueLabel")
    },
    **{f"{kind}Edge": {"node": kind} for kind in ("Team", "Issue", "IssueLabel")},
}


def validate_selection(fields: list[Selection] | None, type_name: str, where: str) -> None:
    """Static check of a selection against the schema subset served (as GraphQL validates a
    query before running it, whatever the data)."""
    if fields is None:
        raise GraphQLError(
            f'Field "{where}" of type "{type_name}" must have a selection of subfields.'
        )
    scalars = set(_SCALARS["Edge" if type_name.endswith("Edge") else type_name].split())
    objects = _OBJECTS.get(type_name, {})
    for sel in fields:
        if sel.name == "__typename" or sel.name in scalars:
            if sel.fields is not None:
                raise GraphQLError(
                    f'Field "{sel.name}" must not have a selection since it is a scalar.'
                )
        elif sel.name in objects:
            validate_selection(sel.fields, objects[sel.name], sel.name)
        else:
            raise GraphQLError(f'Cannot query field "{sel.name}" on type "{type_name}".')


def project(value: Any, fields: list[Selection] | None, where: str) -> Any:
    """Keep only what the query selected (GraphQL answers exactly its selection set)."""
    if value is None:
        return None
    if isinstance(value, list):
        return [project(v, fields, where) for v in value]
    if isinstance(value, dict):
        if fields is None:
            raise GraphQLError(
                f'Field "{where}" of type "{value.get("__typename", "Object")}" must have a '
                "selection of subfields."
            )
        out: dict[str, Any] = {}
        for sel in fields:
            if sel.name not in value:
                raise GraphQLError(
                    f'Cannot query field "{sel.name}" on type "{value.get("__typename", where)}".'
                )
            out[sel.key] = project(value[sel.name], sel.fields, sel.name)
        return out
    if fields is not None:
        raise GraphQLError(f'Field "{where}" must not have a selection since it is a scalar.')
    return value


def execute(
    op: Operation,
    variables: Mapping[str, Any],
    root: Callable[[Selection, dict[str, Any]], Any],
) -> dict[str, Any]:
    """The `data` of an operation: the selection is validated against the schema, then each root
    field is answered by `root(selection, arguments)` (variables substituted) and projected onto
    what the query selected."""
    validate_selection(op.fields, "Query", "query")
    data: dict[str, Any] = {}
    for sel in op.fields:
        args = {k: resolve(v, variables, op.variables) for k, v in sel.args.items()}
        data[sel.key] = project(root(sel, args), sel.fields, sel.name)
    return data


# ---------------------------------------------------------------------------------------------
# Filters (IssueFilter / TeamFilter subsets) evaluated on stored nodes
# ---------------------------------------------------------------------------------------------
_COMPARATORS = {"eq", "neq", "in", "nin", "gt", "gte", "lt", "lte", "null", "eqIgnoreCase"}
_DATE_FIELDS = ("createdAt", "updatedAt", "startedAt", "completedAt", "canceledAt", "archivedAt")


def _date_operand(value: Any) -> Any:
    if value is None or isinstance(value, list):
        return [_date_operand(v) for v in value] if isinstance(value, list) else None
    text = str(value)
    if text.lstrip("-").startswith("P"):
        raise GraphQLError("The Linear sandbox does not accept ISO 8601 durations in filters.")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise GraphQLError(
            f'Variable value "{text}" is not a valid DateTimeOrDuration.',
            code="BAD_USER_INPUT",
            type_="invalid input",
        ) from None
    return iso(parsed)


def compare(
    actual: Any, cond: Any, type_name: str, operand: Callable[[Any], Any] = lambda v: v
) -> bool:
    if not isinstance(cond, Mapping):
        raise GraphQLError(f'Expected type "{type_name}" to be an object.')
    results = []  # every operator is checked (and validated), no short cut
    for op, raw in cond.items():
        if op not in _COMPARATORS:
            raise GraphQLError(f'Field "{op}" is not defined by type "{type_name}".')
        want = operand(raw)
        if op == "null":
            ok = (actual is None) == bool(want)
        elif op == "eq":
            ok = actual == want
        elif op == "neq":
            ok = actual != want
        elif op == "eqIgnoreCase":
            ok = actual is not None and str(actual).casefold() == str(want).casefold()
        elif op == "in":
            ok = actual in (want or [])
        elif op == "nin":
            ok = actual not in (want or [])
        elif actual is None or want is None:
            ok = False
        else:
            ok = {
                "gt": actual > want,
                "gte": actual >= want,
                "lt": actual < want,
                "lte": actual <= want,
            }[op]
        results.append(ok)
    return all(results)


def _combine(
    node: Mapping[str, Any], flt: Mapping[str, Any], one: Callable[[Mapping, Mapping], bool]
) -> bool:
    """`and`/`or` plus one field per key; every branch is evaluated, so every one is validated."""
    results = []
    for key, cond in flt.items():
        if key == "and":
            results.append(all([_combine(node, sub, one) for sub in cond or []]))
        elif key == "or":
            subs = [_combine(node, sub, one) for sub in cond or []]
            results.append(any(subs) if subs else True)
        else:
            results.append(one(node, {key: cond}))
    return all(results)


def match_team(team: Mapping[str, Any], flt: Mapping[str, Any]) -> bool:
    def one(node: Mapping, pair: Mapping) -> bool:
        ((key, cond),) = pair.items()
        if key not in ("id", "key", "name"):
            raise GraphQLError(f'Field "{key}" is not defined by type "TeamFilter".')
        return compare(node.get(key), cond, "StringComparator")

    if not isinstance(flt, Mapping):
        raise GraphQLError('Expected type "TeamFilter" to be an object.')
    return _combine(team, flt, one)


def match_issue(issue: Mapping[str, Any], flt: Mapping[str, Any]) -> bool:
    def one(node: Mapping, pair: Mapping) -> bool:
        ((key, cond),) = pair.items()
        if key in _DATE_FIELDS:
            return compare(node.get(key), cond, "DateComparator", _date_operand)
        if key in ("id", "number"):
            return compare(node.get(key), cond, "IDComparator")
        if key == "team":
            return match_team(node["team"], cond)
        if key == "state":
            if not isinstance(cond, Mapping) or set(cond) - {"type", "name", "id"}:
                raise GraphQLError('Field is not defined by type "WorkflowStateFilter".')
            return all(
                compare(node["state"].get(k), c, "StringComparator") for k, c in cond.items()
            )
        raise GraphQLError(f'Field "{key}" is not defined by type "IssueFilter".')

    if not isinstance(flt, Mapping):
        raise GraphQLError('Expected type "IssueFilter" to be an object.')
    return _combine(issue, flt, one)


_PROBE_ISSUE: dict[str, Any] = {  # what a filter is validated against before any data
    **dict.fromkeys(_DATE_FIELDS),
    "id": "",
    "number": 0,
    "team": {"id": "", "key": "", "name": ""},
    "state": {"id": "", "name": "", "type": ""},
}
_ARGUMENTS = {  # the arguments each root field with arguments declares
    "issues": {"after", "before", "filter", "first", "includeArchived", "last", "orderBy"},
    "teams": {"after", "before", "filter", "first", "includeArchived", "last", "orderBy"},
}


# ---------------------------------------------------------------------------------------------
# Root field lists evaluated on stored nodes
# ---------------------------------------------------------------------------------------------
def check_arguments(args: Mapping[str, Any], field_name: str) -> None:
    """Refuse arguments the root field `field_name` (issues, teams) does not declare."""
    for name in args:
        if name not in _ARGUMENTS[field_name]:
            raise GraphQLError(f'Unknown argument "{name}" on field "Query.{field_name}".')


def select_teams(teams: Iterable[Node], args: Mapping[str, Any]) -> tuple[list[Node], SortKey]:
    """The teams `teams(...)` lists (arguments checked, `filter` applied) in Linear's order, and
    the key of that order (cursors resolve against it)."""
    check_arguments(args, "teams")
    listed = list(teams)
    if args.get("filter") is not None:
        match_team(_PROBE_ISSUE["team"], args["filter"])
        listed = [t for t in listed if match_team(t, args["filter"])]

    def sort_key(team: Mapping[str, Any]) -> Any:
        return team["id"]

    listed.sort(key=sort_key, reverse=True)
    return listed, sort_key


def select_issues(issues: Iterable[Node], args: Mapping[str, Any]) -> tuple[list[Node], SortKey]:
    """The issues `issues(...)` lists: arguments checked, those with `archivedAt` (archived or
    trashed) hidden unless `includeArchived`, `filter` applied, newest first by `orderBy`
    (createdAt by default) with ties by id, as Linear lists them; and the key of that order
    (cursors resolve against it)."""
    check_arguments(args, "issues")
    order = args.get("orderBy") or "createdAt"
    if order not in ("createdAt", "updatedAt"):
        raise GraphQLError(f'Value "{order}" does not exist in "PaginationOrderBy" enum.')
    nodes = list(issues)
    if not args.get("includeArchived"):
        nodes = [n for n in nodes if n["archivedAt"] is None]
    if args.get("filter") is not None:
        match_issue(_PROBE_ISSUE, args["filter"])  # validates it even when nothing is stored
        nodes = [n for n in nodes if match_issue(n, args["filter"])]

    def sort_key(node: Mapping[str, Any]) -> tuple[str, str]:
        return (node[order], node["id"])

    nodes.sort(key=sort_key, reverse=True)  # newest first, as Linear lists them
    return nodes, sort_key
