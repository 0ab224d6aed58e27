"""GraphQL for the Linear sandbox: the schema it serves, documents read and executed the way
Linear's server reads them, Linear's query complexity, and Linear's filters and orderings
evaluated on the sandbox's stored nodes.

The schema is `linear.graphql` (next to this file), a subset of Linear's published schema with
Linear's names, types, nullability and arguments. Documents go through graphql-core, the Python
port of graphql-js (the reference implementation Linear's API runs on), so a document is parsed,
validated and its variables coerced by the same rules and refused with the same texts: an unknown
field or argument, a wrong variable type, a number where a String goes, `eqIgnoreCase` on an id
comparator. Fragments, aliases, directives and variables with defaults work as in GraphQL.

Every refusal is a `GraphQLError` that knows its HTTP status and renders Linear's error body.

    prepared = prepare(query, variables)       # parse, validate, coerce, score (or GraphQLError)
    data = execute(prepared, resolvers)        # resolvers["Query.issues"](parent, args) …

Complexity (`complexity`) is scored as Linear documents it (docs/trackers/linear.md#rate-limits):
each property 0.1 point, each object 1 point, a connection multiplies its children's points by
its `first` / `last` argument or by 50 when both are absent; rounded up. `prepare` refuses a query
above `MAX_COMPLEXITY` with Linear's "Query too complex" answer.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInputObjectType,
    GraphQLInt,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    build_schema,
    default_field_resolver,
    execute_sync,
    get_named_type,
    get_operation_ast,
    is_input_object_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    validate,
    value_from_ast,
)
from graphql import GraphQLError as CoreError
from graphql import parse as core_parse
from graphql.execution.values import get_variable_values
from graphql.language import DocumentNode

Node = dict[str, Any]
SortKey = Callable[[Mapping[str, Any]], Any]
#: A resolver the sandbox supplies for one field, "Type.field": (parent value, arguments) -> value.
Resolver = Callable[[Any, dict[str, Any]], Any]

SCHEMA_FILE = Path(__file__).with_name("linear.graphql")
MAX_COMPLEXITY = 10_000  # points; Linear refuses any single query above it
DEFAULT_PAGE = 50  # what a connection without `first` / `last` lists, and is scored at


def iso(value: datetime) -> str:
    """Linear's DateTime text: UTC, milliseconds, `Z` (fixed width, so it sorts as it reads)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# Errors, as Linear answers them
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Problem:
    """One entry of an error body: graphql-js's message and, for a document, where it points."""

    message: str
    locations: tuple[tuple[int, int], ...] = ()


class GraphQLError(Exception):
    """Answered as Linear does: `{"errors": [{message, locations?, extensions {code, type,
    userError, userPresentableMessage?}}], "data": null}` with HTTP `status`.

    `presentable`: the `userPresentableMessage` (True: the message itself; False: none, as
    Linear's validation errors come); `extra`: more `extensions` keys; `more`: further entries
    (a document can break several rules at once and graphql-js names them all)."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "GRAPHQL_VALIDATION_FAILED",
        type_: str = "graphql error",
        status: int = 400,
        presentable: str | bool = True,
        locations: Sequence[tuple[int, int]] = (),
        extra: Mapping[str, Any] | None = None,
        more: Sequence[Problem] = (),
    ) -> None:
        super().__init__(message)
        self.message, self.code, self.type, self.status = message, code, type_, status
        self.presentable = presentable
        self.problems = [Problem(message, tuple(locations)), *more]
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        errors = []
        for problem in self.problems:
            extensions: dict[str, Any] = {"code": self.code, "type": self.type, "userError": True}
            if self.presentable is True:
                extensions["userPresentableMessage"] = problem.message
            elif self.presentable:
                extensions["userPresentableMessage"] = self.presentable
            extensions.update(self.extra)
            entry: dict[str, Any] = {"message": problem.message}
            if problem.locations:
                entry["locations"] = [{"line": ln, "column": col} for ln, col in problem.locations]
            entry["extensions"] = extensions
            errors.append(entry)
        return {"errors": errors, "data": None}


_QUOTED = re.compile(r"'((?:[^'\\\n]|\\.)*)'")


def js_quotes(message: str) -> str:
    """graphql-core's message in graphql-js's words: graphql-core quotes names and values the
    Python way ('x'), graphql-js (and so Linear) the JSON way ("x"); the texts are the same."""
    return _QUOTED.sub(lambda m: '"' + m.group(1).replace('"', '\\"') + '"', message)


def _problems(errors: Iterable[CoreError]) -> list[Problem]:
    return [
        Problem(
            _served(js_quotes(e.message)),
            tuple((loc.line, loc.column) for loc in e.locations or ()),
        )
        for e in errors
    ]


def _refusal(
    errors: Sequence[CoreError], *, code: str = "GRAPHQL_VALIDATION_FAILED", type_: str = ""
) -> GraphQLError:
    first, *rest = _problems(errors)
    return GraphQLError(
        first.message,
        code=code,
        type_=type_ or "graphql error",
        presentable=False,
        locations=first.locations,
        more=rest,
    )


# ---------------------------------------------------------------------------------------------
# The schema
# ---------------------------------------------------------------------------------------------
#: Fields Linear's schema has on the inputs served here and the sandbox does not evaluate
#: (linear/linear@8335e09): a document using one is refused naming it as not served, never as
#: unknown (it is not) and never ignored (the answer would be wrong).
UNSERVED: dict[str, frozenset[str]] = {
    "IssueFilter": frozenset(
        "accumulatedStateUpdatedAt activity addedToCycleAt addedToCyclePeriod ageTime assignee "
        "attachments autoArchivedAt autoClosedAt children comments creator customerCount "
        "customerImportantCount cycle cycleTime delegate description dueDate estimate "
        "hasActiveAgentSessions hasBlockedByRelations hasBlockingRelations "
        "hasDismissedAgentSessions hasDuplicateRelations hasErroredAgentSessions "
        "hasMergedAgentPullRequests hasRelatedRelations hasSharedUsers hasSuggestedAssignees "
        "hasSuggestedLabels hasSuggestedProjects hasSuggestedRelatedIssues "
        "hasSuggestedSimilarIssues hasSuggestedTeams labels lastAppliedTemplate leadTime needs "
        "parent priority project projectMilestone reactions recurringIssueTemplate releases "
        "searchableContent sharedWith slaBreachesAt slaStatus snoozedBy snoozedUntilAt "
        "sourceMetadata subscribers suggestions triageTime triagedAt".split()
    ),
    "TeamFilter": frozenset(
        "ancestors createdAt description issues members owners parent private releasePipelines "
        "restrictedBy retiredAt updatedAt users visibility".split()
    ),
    "WorkflowStateFilter": frozenset(
        "createdAt description issues position team updatedAt".split()
    ),
    "IssueLabelFilter": frozenset("createdAt creator isGroup parent team updatedAt".split()),
    # arguments, as "Type.field"
    "Query.issues": frozenset({"sort"}),  # [INTERNAL] in Linear's schema
}

_SUGGESTION = r"(?: Did you mean [^?]*\?)?"
_UNKNOWN_INPUT_FIELD = re.compile(r'Field "(\w+)" is not defined by type "(\w+)"\.' + _SUGGESTION)
_UNKNOWN_ARGUMENT = re.compile(r'Unknown argument "(\w+)" on field "(\w+\.\w+)"\.' + _SUGGESTION)


def _served(message: str) -> str:
    """graphql-js's "unknown" texts, made explicit where Linear does know the name."""

    def field(match: re.Match[str]) -> str:
        name, owner = match.groups()
        if name in UNSERVED.get(owner, ()):
            return f'The Linear sandbox does not serve "{owner}.{name}" (Linear\'s schema has it).'
        return match.group(0)

    def argument(match: re.Match[str]) -> str:
        name, owner = match.groups()
        if name in UNSERVED.get(owner, ()):
            return (
                f'The Linear sandbox does not serve the argument "{name}" of "{owner}" '
                "(Linear's schema has it)."
            )
        return match.group(0)

    return _UNKNOWN_ARGUMENT.sub(argument, _UNKNOWN_INPUT_FIELD.sub(field, message))


def _date_operand(value: Any) -> str:
    if isinstance(value, str):
        return _date_text(value)
    raise GraphQLError(
        f"Variable value {_shown(value)} is not a valid DateTimeOrDuration.",
        code="BAD_USER_INPUT",
        type_="invalid input",
    )


@functools.lru_cache(maxsize=4096)
def _date_text(value: str) -> str:
    """A DateTimeOrDuration operand as the sandbox compares it (ISO UTC milliseconds). Durations
    (`-P2W1D`) are Linear's too, but the sandbox does not evaluate them: refused, not misread."""
    if value.lstrip("-").startswith("P"):
        raise GraphQLError("The Linear sandbox does not accept ISO 8601 durations in filters.")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise GraphQLError(
            f'Variable value "{value}" is not a valid DateTimeOrDuration.',
            code="BAD_USER_INPUT",
            type_="invalid input",
        ) from None
    return iso(parsed)


def _shown(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def load_schema(path: Path = SCHEMA_FILE) -> GraphQLSchema:
    """The served schema, built from its SDL."""
    return build_schema(path.read_text(encoding="utf-8"))


SCHEMA = load_schema()


def _input(type_name: str) -> GraphQLInputObjectType:
    found = SCHEMA.get_type(type_name)
    if not isinstance(found, GraphQLInputObjectType):
        raise KeyError(f"{type_name} is not an input type of the sandbox's schema")
    return found


# ---------------------------------------------------------------------------------------------
# Documents: prepare (parse, validate, coerce, score), then execute
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Prepared:
    """A document Linear would run: its operation, its variables as given (coerced by the
    schema), the root fields it asks for, and its complexity in points (unrounded)."""

    document: DocumentNode
    operation: OperationDefinitionNode
    variables: dict[str, Any]
    roots: tuple[str, ...]
    complexity: float

    @property
    def points(self) -> int:
        """The complexity as Linear reports it (`X-Complexity`): rounded up."""
        return math.ceil(self.complexity - 1e-9)

    @property
    def name(self) -> str | None:
        return self.operation.name.value if self.operation.name else None


def prepare(
    query: str, variables: Mapping[str, Any] | None = None, operation_name: str | None = None
) -> Prepared:
    """Parse, validate and score a document as Linear does, or raise the GraphQLError Linear
    answers with: a syntax or validation error (GRAPHQL_VALIDATION_FAILED), variables that do not
    fit their declared types (BAD_USER_INPUT), a query above MAX_COMPLEXITY (INPUT_ERROR)."""
    try:
        document = core_parse(query)
    except CoreError as exc:
        raise _refusal([exc]) from None
    errors = validate(SCHEMA, document)
    if errors:
        raise _refusal(errors)
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        message = (
            f'Unknown operation named "{operation_name}".'
            if operation_name
            else "Must provide operation name if query contains multiple operations."
        )
        raise GraphQLError(message, code="BAD_USER_INPUT", type_="invalid input", presentable=False)
    if operation.operation is not OperationType.QUERY:
        kind = operation.operation.value
        raise GraphQLError(f"The Linear sandbox only answers queries, not {kind}s.")
    declared = operation.variable_definitions or ()
    values = get_variable_values(SCHEMA, declared, dict(variables or {}))
    if isinstance(values, list):
        raise _refusal(values, code="BAD_USER_INPUT", type_="invalid input")
    coerced = getattr(values, "coerced", values)  # graphql-core 3.3 wraps the dict of 3.2
    score = complexity(document, operation, coerced)
    if score > MAX_COMPLEXITY:
        shown = f"{score:.1f}".removesuffix(".0")
        raise GraphQLError(
            "Query too complex",
            code="INPUT_ERROR",
            type_="invalid input",
            presentable=(
                f"The query is too complex. Complexity: {shown}. "
                f"Maximum allowed complexity: {MAX_COMPLEXITY}."
            ),
            extra={"statusCode": 400, "meta": {}, "http": {"status": 400}},
        )
    roots = tuple(
        sel.name.value
        for sel in _fields(operation.selection_set, _fragments(document))
        if not sel.name.value.startswith("__")
    )
    return Prepared(document, operation, dict(variables or {}), roots, score)


def execute(prepared: Prepared, resolvers: Mapping[str, Resolver]) -> dict[str, Any]:
    """The `data` of a prepared document. `resolvers["Type.field"](parent, args)` answers the
    fields the sandbox computes (root lists, an issue's labels); every other field is read from
    the parent's stored dict. A resolver's GraphQLError is the answer; anything else that goes
    wrong while executing is the sandbox's own fault (HTTP 500)."""

    def resolve(source: Any, info: Any, **args: Any) -> Any:
        fn = resolvers.get(f"{info.parent_type.name}.{info.field_name}")
        if fn is not None:
            return fn(source, args)
        return default_field_resolver(source, info, **args)

    result = execute_sync(
        SCHEMA,
        prepared.document,
        variable_values=prepared.variables,
        operation_name=prepared.name,
        field_resolver=resolve,
    )
    for error in result.errors or ():
        if isinstance(error.original_error, GraphQLError):
            raise error.original_error
    if result.errors:
        raise GraphQLError(
            result.errors[0].message,
            code="INTERNAL_SERVER_ERROR",
            type_="internal error",
            status=500,
        )
    assert isinstance(result.data, dict)
    return result.data


def operation_name(query: str) -> str | None:
    """The operation's name, or None (anonymous or unreadable): for logs and benchmarks."""
    try:
        document = core_parse(query)
    except CoreError:
        return None
    operation = get_operation_ast(document)
    return operation.name.value if operation is not None and operation.name else None


# ---------------------------------------------------------------------------------------------
# Complexity, as Linear documents it
# ---------------------------------------------------------------------------------------------
def complexity(
    document: DocumentNode,
    operation: OperationDefinitionNode | None = None,
    variables: Mapping[str, Any] | None = None,
    schema: GraphQLSchema | None = None,
) -> float:
    """Linear's score of one operation, in points, before rounding up: each property (a field
    of a scalar or enum type) 0.1, each object 1, and a connection (a field of a `…Connection`
    type) multiplies its children's points (`nodes`, `edges` and `pageInfo` alike, as the rule
    reads) by its `first` or `last` argument, the larger when both are given, or by 50 when
    neither is. Fragments count as the fields they select; a directive does not change a count."""
    schema = schema or SCHEMA
    operation = operation or get_operation_ast(document)
    if operation is None:
        raise ValueError("the document has no operation to score")
    root = schema.query_type
    assert root is not None
    scorer = _Scorer(schema, _fragments(document), dict(variables or {}))
    return scorer.cost(operation.selection_set, root) / 10


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def _fields(
    selection_set: SelectionSetNode | None, fragments: Mapping[str, FragmentDefinitionNode]
) -> list[FieldNode]:
    """The fields a selection set selects, fragments spread in place."""
    found: list[FieldNode] = []
    for sel in selection_set.selections if selection_set else ():
        if isinstance(sel, FieldNode):
            found.append(sel)
        elif isinstance(sel, InlineFragmentNode):
            found += _fields(sel.selection_set, fragments)
        elif isinstance(sel, FragmentSpreadNode):
            found += _fields(fragments[sel.name.value].selection_set, fragments)
    return found


@dataclass(frozen=True, slots=True)
class _Scorer:
    schema: GraphQLSchema
    fragments: Mapping[str, FragmentDefinitionNode]
    variables: dict[str, Any]

    def cost(self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType) -> int:
        """Tenths of a point (integers, so 0.1 + 0.2 is exactly 0.3)."""
        total = 0
        for sel in selection_set.selections if selection_set else ():
            if isinstance(sel, InlineFragmentNode):
                named = sel.type_condition.name.value if sel.type_condition else None
                condition = self.schema.get_type(named) if named else None
                total += self.cost(sel.selection_set, condition or parent)
                continue
            if isinstance(sel, FragmentSpreadNode):
                fragment = self.fragments[sel.name.value]
                condition = self.schema.get_type(fragment.type_condition.name.value)
                total += self.cost(fragment.selection_set, condition or parent)
                continue
            assert isinstance(sel, FieldNode)
            fields = getattr(parent, "fields", {})
            if sel.name.value not in fields:  # __typename: a property (the rest fails validation)
                total += 1
                continue
            named_type = get_named_type(fields[sel.name.value].type)
            if is_leaf_type(named_type):
                total += 1
            elif named_type.name.endswith("Connection"):
                total += self.page_size(sel) * self.cost(sel.selection_set, named_type)
            else:
                total += 10 + self.cost(sel.selection_set, named_type)
        return total

    def page_size(self, field: FieldNode) -> int:
        sizes = []
        for arg in field.arguments or ():
            if arg.name.value in ("first", "last"):
                value = value_from_ast(arg.value, GraphQLInt, self.variables)
                if isinstance(value, int):
                    sizes.append(value)
        return max(sizes) if sizes else DEFAULT_PAGE


# ---------------------------------------------------------------------------------------------
# Inputs (filters) checked and evaluated on stored nodes
# ---------------------------------------------------------------------------------------------
def check_input(value: Any, type_name: str) -> None:
    """Refuse a filter value that does not fit the input type `type_name` (its fields, nested
    inputs, list items), as graphql-js does before anything runs; operands of DateTimeOrDuration
    are read here too. Requests are already checked by `prepare`: this guards direct calls."""
    if value is None:
        return
    input_type = _input(type_name)
    if not isinstance(value, Mapping):
        raise GraphQLError(f'Expected type "{type_name}" to be an object.')
    for key, item in value.items():
        if key not in input_type.fields:
            raise GraphQLError(_served(f'Field "{key}" is not defined by type "{type_name}".'))
        _check_value(item, input_type.fields[key].type)


def _check_value(value: Any, field_type: Any) -> None:
    if value is None:
        return
    inner = field_type.of_type if is_non_null_type(field_type) else field_type
    if is_list_type(inner):
        for item in value if isinstance(value, list) else [value]:
            _check_value(item, inner.of_type)
        return
    named = get_named_type(inner)
    if is_input_object_type(named):
        check_input(value, named.name)
    elif isinstance(named, GraphQLScalarType) and named.name == "DateTimeOrDuration":
        _date_operand(value)


#: What each comparator operator asks of the stored value (`actual`) and the operand (`want`).
_TEXT = {
    "contains": lambda a, w: w in a,
    "containsIgnoreCase": lambda a, w: w.casefold() in a.casefold(),
    "containsIgnoreCaseAndAccent": lambda a, w: _plain(w) in _plain(a),
    "notContains": lambda a, w: w not in a,
    "notContainsIgnoreCase": lambda a, w: w.casefold() not in a.casefold(),
    "startsWith": lambda a, w: a.startswith(w),
    "startsWithIgnoreCase": lambda a, w: a.casefold().startswith(w.casefold()),
    "notStartsWith": lambda a, w: not a.startswith(w),
    "endsWith": lambda a, w: a.endswith(w),
    "notEndsWith": lambda a, w: not a.endswith(w),
    "eqIgnoreCase": lambda a, w: a.casefold() == w.casefold(),
    "neqIgnoreCase": lambda a, w: a.casefold() != w.casefold(),
}
_ORDER = {
    "gt": lambda a, w: a > w,
    "gte": lambda a, w: a >= w,
    "lt": lambda a, w: a < w,
    "lte": lambda a, w: a <= w,
}


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@functools.cache
def _of_dates(comparator: str) -> bool:
    fields = _input(comparator).fields.values()
    return any(get_named_type(f.type).name == "DateTimeOrDuration" for f in fields)


def compare(actual: Any, cond: Any, type_name: str) -> bool:
    """One comparator (`StringComparator`, `IDComparator`, `DateComparator`, …) on one stored
    value. The operators are the comparator's own in the schema (no `eqIgnoreCase` on an id);
    all must hold. DateTimeOrDuration operands are compared as ISO UTC text."""
    comparator = _input(type_name)
    if not isinstance(cond, Mapping):
        raise GraphQLError(f'Expected type "{type_name}" to be an object.')
    dates = _of_dates(type_name)
    results = []  # every operator is checked (and validated), no short cut
    for op, raw in cond.items():
        if op not in comparator.fields:
            raise GraphQLError(f'Field "{op}" is not defined by type "{type_name}".')
        want: Any = raw
        if dates and op != "null":
            want = (
                [_date_operand(w) for w in raw]
                if isinstance(raw, list)
                else (None if raw is None else _date_operand(raw))
            )
        if op == "null":
            results.append((actual is None) == bool(want))
        elif op == "eq":
            results.append(actual == want)
        elif op == "neq":
            results.append(actual != want)
        elif op == "in":
            results.append(actual in (want or []))
        elif op == "nin":
            results.append(actual not in (want or []))
        elif actual is None or want is None:
            results.append(False)
        elif op in _ORDER:
            results.append(_ORDER[op](actual, want))
        else:
            results.append(_TEXT[op](str(actual), str(want)))
    return all(results)


def match(node: Mapping[str, Any] | None, flt: Any, type_name: str) -> bool:
    """Does a stored node pass a filter of input type `type_name` (IssueFilter, TeamFilter,
    WorkflowStateFilter, IssueLabelFilter), already checked (`check_input`)? `and` / `or`
    combine; each other field is a comparator on the node's value of that name, or a nested
    filter on the related node (a missing related node matches nothing)."""
    if flt is None:
        return True
    input_type = _input(type_name)
    results = []
    for key, cond in flt.items():
        if cond is None:
            continue
        if key == "and":
            results.append(all([match(node, sub, type_name) for sub in cond]))
        elif key == "or":
            subs = [match(node, sub, type_name) for sub in cond]
            results.append(any(subs) if subs else True)
        else:
            inner = get_named_type(input_type.fields[key].type)
            value = (node or {}).get(key)
            if inner.name.endswith("Filter"):
                results.append(value is not None and match(value, cond, inner.name))
            else:
                results.append(compare(value, cond, inner.name))
    return all(results)


def match_team(team: Mapping[str, Any], flt: Any) -> bool:
    check_input(flt, "TeamFilter")
    return match(team, flt, "TeamFilter")


def match_issue(issue: Mapping[str, Any], flt: Any) -> bool:
    check_input(flt, "IssueFilter")
    return match(issue, flt, "IssueFilter")


# ---------------------------------------------------------------------------------------------
# Root field lists evaluated on stored nodes
# ---------------------------------------------------------------------------------------------
def check_arguments(args: Mapping[str, Any], field_name: str) -> None:
    """Refuse arguments the root field `field_name` (issues, teams) does not declare."""
    query_type = SCHEMA.query_type
    assert isinstance(query_type, GraphQLObjectType)
    declared = query_type.fields[field_name].args
    for name in args:
        if name not in declared:
            raise GraphQLError(_served(f'Unknown argument "{name}" on field "Query.{field_name}".'))
    order = args.get("orderBy")
    if order is not None and order not in ("createdAt", "updatedAt"):
        raise GraphQLError(f'Value "{order}" does not exist in "PaginationOrderBy" enum.')


def select_teams(teams: Iterable[Node], args: Mapping[str, Any]) -> tuple[list[Node], SortKey]:
    """The teams `teams(...)` lists (arguments checked, `filter` applied) in Linear's order, and
    the key of that order (cursors resolve against it)."""
    check_arguments(args, "teams")
    check_input(args.get("filter"), "TeamFilter")
    listed = [t for t in teams if match(t, args.get("filter"), "TeamFilter")]

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
    check_input(args.get("filter"), "IssueFilter")  # even when nothing is stored
    order = args.get("orderBy") or "createdAt"
    nodes = list(issues)
    if not args.get("includeArchived"):
        nodes = [n for n in nodes if n["archivedAt"] is None]
    nodes = [n for n in nodes if match(n, args.get("filter"), "IssueFilter")]

    def sort_key(node: Mapping[str, Any]) -> tuple[str, str]:
        return (node[order], node["id"])

    nodes.sort(key=sort_key, reverse=True)  # newest first, as Linear lists them
    return nodes, sort_key
